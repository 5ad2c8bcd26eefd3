//! Processes of a fleet benchmark: the real `ferry-control-plane` binary (so its memory
//! is its own, allocator included) and swarms of simulated agents (child processes of
//! this binary, because one process may hold at most 20,000 open files here).

use anyhow::{Context, bail};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};

/// A binary next to this one (`target/<profile>/`).
pub fn sibling(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let path = exe.parent().context("executable directory")?.join(name);
    anyhow::ensure!(path.exists(), "{} is not built", path.display());
    Ok(path)
}

/// Resident memory of a process, KiB (`VmRSS` of /proc/<pid>/status).
pub fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .context("VmRSS in /proc/<pid>/status")
}

/// One `ferry-control-plane serve` process over PostgreSQL.
pub struct ControlPlaneProc {
    child: Child,
    pub url: reqwest::Url,
    pub ca_pem: String,
    pub admin_token: String,
    pub http: reqwest::Client,
}

impl ControlPlaneProc {
    pub async fn start(data_dir: &Path, database_url: &str, pool: u32) -> anyhow::Result<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let config = data_dir.join("control-plane.toml");
        std::fs::write(&config, format!("db_pool_size = {pool}\n"))?;
        let log = std::fs::File::create(data_dir.join("control-plane.log"))?;
        let child = Command::new(sibling("ferry-control-plane")?)
            .arg("serve")
            .arg("--config")
            .arg(&config)
            .arg("--data-dir")
            .arg(data_dir)
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .env("FERRY_DATABASE_URL", database_url)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .context("start ferry-control-plane")?;
        let url = reqwest::Url::parse(&format!("https://localhost:{port}"))?;
        // The CA is fetched unverified once, over loopback, from the process just started.
        let probe = reqwest::Client::builder()
            .tls_danger_accept_invalid_certs(true)
            .build()?;
        let started = Instant::now();
        let ca_pem = loop {
            let r = probe.get(url.join("/v1/control-plane-ca")?).send().await;
            if let Ok(r) = r
                && r.status().is_success()
                && data_dir.join("admin-token").exists()
            {
                break r.text().await?;
            }
            if started.elapsed() > Duration::from_secs(60) {
                bail!("the control plane did not come up; see its log in {data_dir:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let admin_token = std::fs::read_to_string(data_dir.join("admin-token"))?
            .trim()
            .to_owned();
        let http = reqwest::Client::builder()
            .tls_certs_only(reqwest::Certificate::from_pem_bundle(ca_pem.as_bytes())?)
            .build()?;
        Ok(Self {
            child,
            url,
            ca_pem,
            admin_token,
            http,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id().unwrap_or(0)
    }

    pub fn rss_kib(&self) -> anyhow::Result<u64> {
        rss_kib(self.pid())
    }

    /// An admin API call; returns the status and the JSON body.
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<(u16, Value)> {
        let mut req = self
            .http
            .request(method, self.url.join(path)?)
            .bearer_auth(&self.admin_token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await?;
        let status = resp.status().as_u16();
        let body = resp.json().await.unwrap_or(Value::Null);
        Ok((status, body))
    }

    /// `/metrics` sample `name` (first series).
    pub async fn metric(&self, name: &str) -> anyhow::Result<f64> {
        let text = self
            .http
            .get(self.url.join("/metrics")?)
            .bearer_auth(&self.admin_token)
            .send()
            .await?
            .text()
            .await?;
        text.lines()
            .find(|l| l.starts_with(name) && !l.starts_with('#'))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .with_context(|| format!("{name} in /metrics"))
    }

    pub async fn stop(mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }
}

/// A swarm child process; dropping it (or [`Swarm::stop`]) closes its stdin and kills it.
pub struct Swarm {
    child: Child,
    _stdin: ChildStdin,
    lines: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
}

pub struct SwarmPlan<'a> {
    pub cp: &'a ControlPlaneProc,
    pub service: &'a str,
    pub join_token: &'a str,
    pub prefix: &'a str,
    pub from: usize,
    pub count: usize,
    pub concurrency: usize,
}

impl Swarm {
    pub fn spawn(plan: &SwarmPlan<'_>, ca_file: &Path) -> anyhow::Result<Self> {
        let mut child = Command::new(std::env::current_exe()?)
            .arg("swarm")
            .args(["--server", plan.cp.url.as_str(), "--service", plan.service])
            .arg("--ca-file")
            .arg(ca_file)
            .args(["--prefix", plan.prefix])
            .args(["--from", &plan.from.to_string()])
            .args(["--count", &plan.count.to_string()])
            .args(["--concurrency", &plan.concurrency.to_string()])
            .env("FERRY_BENCH_JOIN_TOKEN", plan.join_token)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .context("start a swarm")?;
        let stdin = child.stdin.take().context("swarm stdin")?;
        let stdout = child.stdout.take().context("swarm stdout")?;
        Ok(Self {
            child,
            _stdin: stdin,
            lines: BufReader::new(stdout).lines(),
        })
    }

    /// Waits for the `enrolled ok=N failed=F ms=T` line: (ok, failed, ms).
    pub async fn enrolled(&mut self) -> anyhow::Result<(u64, u64, u64)> {
        while let Some(line) = self.lines.next_line().await? {
            if let Some(rest) = line.strip_prefix("enrolled ") {
                let field = |k: &str| -> u64 {
                    rest.split_whitespace()
                        .find_map(|kv| kv.strip_prefix(k))
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0)
                };
                return Ok((field("ok="), field("failed="), field("ms=")));
            }
        }
        bail!("a swarm ended before it enrolled")
    }

    /// Keeps reading the swarm's `stats` lines (unused here) so its stdout pipe never fills
    /// and blocks it.
    pub fn drain(mut self) -> RunningSwarm {
        let task =
            tokio::spawn(async move { while let Ok(Some(_)) = self.lines.next_line().await {} });
        RunningSwarm {
            child: self.child,
            _stdin: self._stdin,
            task,
        }
    }
}

pub struct RunningSwarm {
    child: Child,
    _stdin: ChildStdin,
    task: tokio::task::JoinHandle<()>,
}

impl RunningSwarm {
    pub async fn stop(mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
        self.task.abort();
    }
}

/// CPU seconds (user + system) of one process, from /proc/<pid>/stat.
fn cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the parenthesised command name; utime and stime are the 14th and 15th.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

/// CPU seconds of every process whose command is `comm` (PostgreSQL's backends).
fn cpu_seconds_of(comm: &str) -> f64 {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0.0;
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == comm)
        })
        .map(cpu_seconds)
        .sum()
}

/// Where the machine's CPU went during a phase: the control plane, PostgreSQL (every
/// `postgres` process) and the simulated agents (every `ferry-bench` process but this).
pub struct CpuMeter {
    cp: u32,
    at: Instant,
    start: [f64; 3],
}

impl CpuMeter {
    pub fn start(cp: &ControlPlaneProc) -> Self {
        Self {
            cp: cp.pid(),
            at: Instant::now(),
            start: Self::sample(cp.pid()),
        }
    }

    fn sample(cp: u32) -> [f64; 3] {
        let me = cpu_seconds(std::process::id());
        [
            cpu_seconds(cp),
            cpu_seconds_of("postgres"),
            cpu_seconds_of("ferry-bench") - me,
        ]
    }

    /// Control-plane plus PostgreSQL CPU milliseconds since `start`, per one of `units`.
    pub fn server_ms_per(&self, units: usize) -> f64 {
        let end = Self::sample(self.cp);
        let server = (end[0] - self.start[0]) + (end[1] - self.start[1]);
        server * 1000.0 / units.max(1) as f64
    }

    /// `CPU (cores busy): control plane X, PostgreSQL Y, agents Z` since `start`.
    pub fn report(&self) -> String {
        let end = Self::sample(self.cp);
        let wall = self.at.elapsed().as_secs_f64().max(0.001);
        let busy = |i: usize| (end[i] - self.start[i]) / wall;
        format!(
            "CPU (cores busy of {}): control plane {:.2}, PostgreSQL {:.2}, simulated agents {:.2}",
            std::thread::available_parallelism().map_or(1, |n| n.get()),
            busy(0),
            busy(1),
            busy(2)
        )
    }
}
