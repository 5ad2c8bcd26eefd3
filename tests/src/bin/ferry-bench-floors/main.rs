//! `ferry-bench-floors`: the limits Ferry's own figures are compared against, measured
//! in the same run on the same machine, and the agent's footprint.
//!
//! - `hold`: server memory per idle held connection, plain TCP and a minimal
//!   tokio-rustls mTLS accept loop (server and clients in child processes: the open-file
//!   limit is per process).
//! - `pg`: PostgreSQL's LISTEN/NOTIFY round trip, one INSERT+COMMIT, pgbench TPS.
//! - `sign`: leaf certificates signed per second by the control plane's own CA code.
//! - `agent`: one real `ferry-agent` process against an in-process control plane: RSS,
//!   idle CPU, binary size.
//! - `all`: every one of them.
//!
//! Loopback only, bounded in time; every subcommand takes `--smoke` (a tiny version for
//! CI). Besides human-readable lines, each figure is printed once as
//! `figure <key> <value> <unit>`.

mod agent;
mod certs;
mod hold;
mod hold_proc;
mod pg;
mod procfs;
mod sign;

use anyhow::{Context, Result, bail};
use std::collections::HashMap;
use std::process::ExitCode;

/// The environment variable the harness reads its PostgreSQL server from.
const DB_ENV: &str = "FERRY_TEST_DATABASE_URL";

const USAGE: &str = "usage: ferry-bench-floors <hold|pg|sign|agent|all> [--smoke]
  hold  [--kind tcp|tls] [--connections N]   (default: both kinds, N = 10000 and 19000)
  pg    --url postgres://...                 (or FERRY_TEST_DATABASE_URL)
  sign
  agent [--idle-seconds S] [--agent-bin PATH] [--url postgres://...]
  all   --url postgres://... (every option above)";

/// Parsed command-line flags: `--smoke` and `--name value` pairs.
pub struct Opts {
    pub smoke: bool,
    values: HashMap<String, String>,
}

impl Opts {
    fn parse(args: &[String]) -> Result<Self> {
        let mut opts = Opts {
            smoke: false,
            values: HashMap::new(),
        };
        let mut it = args.iter();
        while let Some(a) = it.next() {
            match a.as_str() {
                "--smoke" => opts.smoke = true,
                flag if flag.starts_with("--") => {
                    let v = it.next().with_context(|| format!("{flag} needs a value"))?;
                    opts.values.insert(flag.to_owned(), v.clone());
                }
                other => bail!("unexpected argument {other:?}\n{USAGE}"),
            }
        }
        Ok(opts)
    }

    pub fn get(&self, flag: &str) -> Option<&str> {
        self.values.get(flag).map(String::as_str)
    }

    pub fn num(&self, flag: &str, default: u64) -> Result<u64> {
        self.get(flag).map_or(Ok(default), |v| {
            v.parse()
                .with_context(|| format!("{flag} {v:?} is not a number"))
        })
    }

    /// The PostgreSQL URL: `--url`, else the harness's environment variable.
    pub fn url(&self) -> Result<String> {
        self.get("--url")
            .map(str::to_owned)
            .or_else(|| std::env::var(DB_ENV).ok())
            .with_context(|| format!("give --url postgres://... (or set {DB_ENV})"))
    }
}

/// Prints one machine-readable figure line.
pub fn figure(key: &str, value: f64, unit: &str) {
    let v = if value >= 100.0 {
        format!("{value:.1}")
    } else if value >= 1.0 {
        format!("{value:.2}")
    } else {
        format!("{value:.4}")
    };
    println!("figure {key} {v} {unit}");
}

/// The p-th percentile (0..=1) of sorted values.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// The harness takes its PostgreSQL server from the environment, and the environment
/// can only be set safely for a child: when `--url` names another server than the
/// environment does, run this same command again as a child with the variable set.
fn rerun_with_db_env(opts: &Opts, args: &[String]) -> Result<Option<ExitCode>> {
    let Some(url) = opts.get("--url") else {
        return Ok(None);
    };
    if std::env::var(DB_ENV).ok().as_deref() == Some(url) {
        return Ok(None);
    }
    let status = std::process::Command::new(std::env::current_exe()?)
        .args(args)
        .env(DB_ENV, url)
        .status()
        .context("re-running with the database URL in the environment")?;
    Ok(Some(match status.code() {
        Some(0) => ExitCode::SUCCESS,
        _ => ExitCode::FAILURE,
    }))
}

fn all(opts: &Opts) -> Result<()> {
    opts.url()?; // fail before the long parts when pg and agent cannot run
    hold::run(opts)?;
    pg::run(opts)?;
    sign::run(opts)?;
    agent::run(opts)
}

fn dispatch(cmd: &str, opts: &Opts) -> Result<()> {
    match cmd {
        "hold" => hold::run(opts),
        "pg" => pg::run(opts),
        "sign" => sign::run(opts),
        "agent" => agent::run(opts),
        "all" => all(opts),
        hold_proc::SERVER => hold_proc::server(opts),
        hold_proc::CLIENTS => hold_proc::clients(opts),
        other => bail!("unknown subcommand {other:?}\n{USAGE}"),
    }
}

fn main() -> ExitCode {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(cmd) = args.first().cloned() else {
        eprintln!("{USAGE}");
        return ExitCode::FAILURE;
    };
    let run = || -> Result<ExitCode> {
        let opts = Opts::parse(&args[1..])?;
        if matches!(cmd.as_str(), "agent" | "all")
            && let Some(code) = rerun_with_db_env(&opts, &args)?
        {
            return Ok(code);
        }
        dispatch(&cmd, &opts)?;
        Ok(ExitCode::SUCCESS)
    };
    match run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("ferry-bench-floors {cmd}: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
