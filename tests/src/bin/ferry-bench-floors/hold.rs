//! `hold`: server memory per idle held connection, plain TCP and minimal tokio-rustls
//! mTLS, measured on a server in its own process (the open-file limit is per process):
//! `VmRSS` once it listens, and again once N connections are established, idle and the
//! reading has settled. Clients are spread over child processes of at most 9,000
//! connections each. Children are this same binary (hidden subcommands, `hold_proc`),
//! started with their soft open-file limit raised to the hard one.

use crate::hold_proc::{self, Kind};
use crate::{Opts, figure, procfs};
use anyhow::{Context, Result, bail};
use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

const PER_CLIENT_PROCESS: usize = 9_000;

/// A child process of this binary, its stdin held open (closing it stops the child)
/// and its stdout read line by line on a thread.
struct Proc {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    what: String,
}

impl Proc {
    fn spawn(args: &[String], what: &str) -> Result<Self> {
        let exe = std::env::current_exe()?;
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(r#"ulimit -n "$(ulimit -Hn)" 2>/dev/null; exec "$0" "$@""#)
            .arg(exe)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting the {what}"))?;
        let stdout = child.stdout.take().context("child stdout")?;
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Ok(Self {
            stdin: child.stdin.take(),
            child,
            lines,
            what: what.to_owned(),
        })
    }

    /// The next line, within `timeout`.
    fn line(&mut self, timeout: Duration) -> Result<String> {
        match self.lines.recv_timeout(timeout) {
            Ok(l) => Ok(l),
            Err(RecvTimeoutError::Timeout) => bail!("{} silent for {timeout:?}", self.what),
            Err(RecvTimeoutError::Disconnected) => {
                let status = self.child.wait()?;
                bail!("{} exited ({status})", self.what)
            }
        }
    }

    /// Closes stdin (the child exits) and waits up to 10 s before killing it.
    fn stop(&mut self) {
        self.stdin.take();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Connection counts: `--connections`, else 500 (smoke) or 10,000 and 19,000.
fn counts(opts: &Opts) -> Result<Vec<usize>> {
    Ok(match opts.get("--connections") {
        Some(_) => vec![usize::try_from(opts.num("--connections", 0)?)?],
        None if opts.smoke => vec![500],
        None => vec![10_000, 19_000],
    })
}

pub fn run(opts: &Opts) -> Result<()> {
    let kinds = match opts.get("--kind") {
        Some(k) => vec![Kind::parse(k)?],
        None => vec![Kind::Tcp, Kind::Tls],
    };
    let certs = tempfile::tempdir()?;
    crate::certs::write(certs.path())?;
    for kind in kinds {
        for n in counts(opts)? {
            measure(kind, n, certs.path(), opts.smoke)
                .with_context(|| format!("hold {} with {n} connections", kind.as_str()))?;
        }
    }
    Ok(())
}

fn measure(kind: Kind, n: usize, dir: &std::path::Path, smoke: bool) -> Result<()> {
    if n == 0 || n > 19_500 {
        bail!("--connections must be 1..=19500 (the server's open-file limit is 20,000)");
    }
    let common = |sub: &str| -> Vec<String> {
        vec![
            sub.to_owned(),
            "--kind".into(),
            kind.as_str().into(),
            "--dir".into(),
            dir.display().to_string(),
        ]
    };
    let mut server = Proc::spawn(&common(hold_proc::SERVER), "hold server")?;
    let pid = server.child.id();
    let port = server
        .line(Duration::from_secs(10))?
        .strip_prefix("port ")
        .context("the hold server did not say its port")?
        .to_owned();
    let (interval, max_wait) = if smoke {
        (Duration::from_millis(200), Duration::from_secs(3))
    } else {
        (Duration::from_secs(1), Duration::from_secs(30))
    };
    let before = procfs::settle(pid, interval, max_wait)?;

    let started = Instant::now();
    let processes = n.div_ceil(PER_CLIENT_PROCESS);
    let mut clients = Vec::with_capacity(processes);
    for i in 0..processes {
        let share = n / processes + usize::from(i < n % processes);
        let mut args = common(hold_proc::CLIENTS);
        args.extend(["--port".into(), port.clone(), "--count".into()]);
        args.push(share.to_string());
        clients.push(Proc::spawn(&args, "hold clients")?);
    }
    let connect_timeout = Duration::from_secs(if smoke { 60 } else { 300 });
    for c in &mut clients {
        let line = c.line(connect_timeout)?;
        if !line.starts_with("connected ") {
            bail!("hold clients said {line:?}");
        }
    }
    let mut held = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    while held != n {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = server
            .line(left)
            .with_context(|| format!("the server holds {held} of {n}"))?;
        held = line
            .strip_prefix("held ")
            .and_then(|v| v.parse().ok())
            .with_context(|| format!("hold server said {line:?}"))?;
    }
    let established = started.elapsed();
    let after = procfs::settle(pid, interval, max_wait)?;
    let per_conn = (after.rss_kb as f64 - before.rss_kb as f64) / n as f64;
    println!(
        "hold {}: {n} idle connections from {processes} client process(es), established in {:.1} s; \
         server VmRSS {:.1} MiB -> {:.1} MiB ({} after {:.1} s): {per_conn:.1} KB per connection",
        kind.as_str(),
        established.as_secs_f64(),
        before.rss_kb as f64 / 1024.0,
        after.rss_kb as f64 / 1024.0,
        if after.settled {
            "settled"
        } else {
            "still moving"
        },
        after.waited.as_secs_f64(),
    );
    figure(&format!("hold.{}.{n}", kind.as_str()), per_conn, "KB/conn");
    server.stop();
    for mut c in clients {
        c.stop();
    }
    Ok(())
}
