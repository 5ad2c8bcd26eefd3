//! `agent`: the footprint of one real `ferry-agent` process. A control plane runs in
//! this process (the harness, over PostgreSQL); the agent enrolls with a join token,
//! installs and acknowledges its first bundle, then idles on its long-poll. Measured:
//! `VmRSS` once it acked and at the end of the idle window, `VmHWM` (the peak, which
//! includes enrollment), CPU time (`utime + stime`) over the idle window as a share of
//! one core, and the size of the binary on disk.

use crate::{Opts, figure, procfs};
use anyhow::{Context, Result, bail};
use ferry_tests::{Backend, spawn_control_plane};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

/// `--agent-bin`, else `ferry-agent` of the release build, else of the debug build, in
/// the target directory this executable was built into. True: a release build.
fn agent_binary(opts: &Opts) -> Result<(PathBuf, bool)> {
    if let Some(p) = opts.get("--agent-bin") {
        let p = PathBuf::from(p);
        let release = p.parent().and_then(Path::file_name) == Some("release".as_ref());
        return Ok((p, release));
    }
    let exe = std::env::current_exe()?;
    let target = exe
        .parent()
        .and_then(Path::parent)
        .context("the target directory of this executable")?;
    [("release", true), ("debug", false)]
        .into_iter()
        .map(|(profile, release)| (target.join(profile).join("ferry-agent"), release))
        .find(|(p, _)| p.exists())
        .with_context(|| {
            format!(
                "no ferry-agent in {}/{{release,debug}}: cargo build --release -p ferry-agent",
                target.display()
            )
        })
}

pub fn run(opts: &Opts) -> Result<()> {
    let idle = Duration::from_secs(opts.num("--idle-seconds", if opts.smoke { 10 } else { 600 })?);
    let (bin, release) = agent_binary(opts)?;
    let size = std::fs::metadata(&bin)
        .with_context(|| format!("{}", bin.display()))?
        .len();
    let build = match (release, opts.get("--agent-bin").is_some()) {
        (true, _) => "release build, symbols stripped",
        (false, true) => "not a release build (--agent-bin): size not comparable",
        (false, false) => "DEBUG build only (no release ferry-agent found): not stripped",
    };
    println!(
        "agent: {} ({build}): {:.2} MiB on disk",
        bin.display(),
        size as f64 / 1_048_576.0
    );
    figure("agent.binary", size as f64 / 1_048_576.0, "MiB");
    tokio::runtime::Runtime::new()?.block_on(measure(&bin, idle))
}

async fn measure(bin: &Path, idle: Duration) -> Result<()> {
    let mut cp = spawn_control_plane(Backend::Postgres, |_| {}).await;
    cp.create_service("floors", json!({ "cert_ttl_seconds": 86_400 }))
        .await;
    let (token, _) = cp.join_token("floors", 1, 3600).await;
    let dir = tempfile::tempdir()?;
    let log_path = dir.path().join("agent.log");
    let mut agent = tokio::process::Command::new(bin)
        .args(["run", "--server", &cp.url, "--service", "floors"])
        .args(["--node-id", "n1", "--ca-fingerprint", &cp.ca_fingerprint])
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .arg("--install-dir")
        .arg(dir.path().join("install"))
        .env("FERRY_JOIN_TOKEN", &token)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path)?)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    let pid = agent.id().context("agent pid")?;
    let log = || std::fs::read_to_string(&log_path).unwrap_or_default();

    let started = Instant::now();
    let api = cp.admin();
    loop {
        let node = api.get("/v1/services/floors/nodes/n1").await.body;
        if node["acked_version"].as_i64() >= Some(1) {
            break;
        }
        if let Some(status) = agent.try_wait()? {
            bail!(
                "ferry-agent exited ({status}) before its first ack:\n{}",
                log()
            );
        }
        if started.elapsed() > Duration::from_secs(60) {
            bail!("ferry-agent did not ack a bundle within 60 s:\n{}", log());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!(
        "agent: enrolled, installed and acked version 1 in {:.2} s",
        started.elapsed().as_secs_f64()
    );
    tokio::time::sleep(Duration::from_secs(1)).await; // let the ack's work finish
    let rss_acked = procfs::status_kb(pid, "VmRSS")?;
    let (ticks0, t0) = (procfs::cpu_ticks(pid)?, Instant::now());
    while t0.elapsed() < idle {
        tokio::time::sleep(Duration::from_secs(1).min(idle)).await;
        if let Some(status) = agent.try_wait()? {
            bail!("ferry-agent exited ({status}) while idle:\n{}", log());
        }
    }
    let (ticks1, window) = (procfs::cpu_ticks(pid)?, t0.elapsed());
    let rss_end = procfs::status_kb(pid, "VmRSS")?;
    let hwm = procfs::status_kb(pid, "VmHWM")?;
    let cpu_s = (ticks1 - ticks0) as f64 / procfs::ticks_per_second() as f64;
    let cpu_pct = cpu_s / window.as_secs_f64() * 100.0;
    println!(
        "agent: VmRSS {rss_acked} KB after the ack, {rss_end} KB after {:.0} s idle; VmHWM {hwm} KB; \
         CPU {cpu_s:.2} s over the idle window = {cpu_pct:.4}% of one core",
        window.as_secs_f64()
    );
    figure("agent.rss.acked", rss_acked as f64, "KB");
    figure("agent.rss.idle", rss_end as f64, "KB");
    figure("agent.hwm", hwm as f64, "KB");
    figure("agent.cpu.idle", cpu_pct, "%core");
    agent.start_kill()?;
    agent.wait().await?;
    cp.stop().await;
    Ok(())
}
