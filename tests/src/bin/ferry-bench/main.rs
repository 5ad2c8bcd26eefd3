//! `ferry-bench`: the fleet benchmark harness, run by `scripts/bench.sh`.
//!
//! Subcommands: `fleet` (default; one control-plane process, swarms of simulated agents
//! in child processes: enrollment storm, memory per held long-poll, refresh -> ack,
//! fan-out, sustained rotation cycles; see [`fleet`]), `refresh-latency` (the real agent
//! library in-process, issue 4's figures; see [`inproc`]) and `swarm` (a child process
//! of simulated agents, started by `fleet`; see [`swarm`]). `--smoke` shrinks `fleet` to
//! a run of a few hundred agents that the test suite runs so the harness cannot rot.

mod fleet;
mod inproc;
mod measure;
mod procs;
mod swarm;

/// The value following `name` on the command line, or `default`.
pub fn arg(name: &str, default: u64) -> u64 {
    str_arg(name)
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn str_arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.windows(2).find(|w| w[0] == name).map(|w| w[1].clone())
}

fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let command = std::env::args().nth(1).unwrap_or_else(|| "fleet".into());
    let rt = tokio::runtime::Runtime::new()?;
    match command.as_str() {
        "swarm" => rt.block_on(swarm::run(swarm_args()?)),
        "refresh-latency" => {
            rt.block_on(inproc::run());
            Ok(())
        }
        "fleet" | "--smoke" => {
            let smoke = std::env::args().any(|a| a == "--smoke");
            let (agents, extra, per) = if smoke {
                (200, 100, 100)
            } else {
                (10_000, 9_000, 5_000)
            };
            let args = fleet::FleetArgs {
                agents: arg("--agents", agents) as usize,
                extra: arg("--extra", extra) as usize,
                per_process: arg("--per-process", per) as usize,
                concurrency: arg("--concurrency", 128) as usize,
                refreshes: arg("--refreshes", if smoke { 50 } else { 1000 }) as usize,
                rate: arg("--rate", if smoke { 50 } else { 100 }),
                idle_seconds: arg("--idle-seconds", if smoke { 10 } else { 120 }),
            };
            println!(
                "fleet: {} agents (+{} for the memory point), {} per process, PostgreSQL",
                args.agents, args.extra, args.per_process
            );
            rt.block_on(fleet::run(args))
        }
        other => anyhow::bail!("unknown subcommand {other:?}: fleet, refresh-latency or swarm"),
    }
}

fn swarm_args() -> anyhow::Result<swarm::SwarmArgs> {
    use anyhow::Context;
    let need = |k: &str| str_arg(k).with_context(|| format!("{k} is required"));
    Ok(swarm::SwarmArgs {
        server: reqwest::Url::parse(&need("--server")?)?,
        ca_pem: std::fs::read_to_string(need("--ca-file")?)?,
        join_token: std::env::var("FERRY_BENCH_JOIN_TOKEN")
            .context("FERRY_BENCH_JOIN_TOKEN is required")?,
        service: ferry_shared::ServiceName::parse(&need("--service")?)?,
        prefix: need("--prefix")?,
        from: arg("--from", 0) as usize,
        count: arg("--count", 1) as usize,
        concurrency: arg("--concurrency", 64) as usize,
        max_seconds: arg("--max-seconds", 3600),
    })
}
