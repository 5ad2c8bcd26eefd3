//! `ferry-agent` binary: parses the command line, sets up logging and the runtime, and
//! maps results to exit codes (0 ok, 1 runtime failure, 64 invalid config; clap's own
//! usage errors keep exit 2). Everything else lives in the library.

use clap::Parser;
use ferry_agent::cli::{Cli, Command};
use ferry_agent::config::{DEFAULT_CONFIG_PATH, RawConfig};
use std::path::Path;
use std::process::ExitCode;
use tracing_subscriber::EnvFilter;

const EXIT_RUNTIME: u8 = 1;
const EXIT_CONFIG: u8 = 64;

fn main() -> ExitCode {
    // Err only means a provider is already installed, which is what we want anyway.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let cli = Cli::parse();
    init_logging(cli.log_json);

    match cli.command {
        Command::Enroll(args) => match args.into_config(None) {
            Ok(cfg) => block_on(async move {
                let enrolled = ferry_agent::enroll(&cfg).await?;
                println!(
                    "enrolled as {}; identity valid until {}",
                    enrolled.spiffe_id, enrolled.not_after
                );
                Ok(())
            }),
            Err(err) => fail(EXIT_CONFIG, &err.into()),
        },
        Command::Run(args) => match args.into_config(Some(Path::new(DEFAULT_CONFIG_PATH))) {
            Ok(cfg) => block_on(async move { Ok(ferry_agent::run(cfg, shutdown_signal()).await?) }),
            Err(err) => fail(EXIT_CONFIG, &err.into()),
        },
        Command::Status(args) => match ferry_agent::status(&args.state_dir) {
            Ok(status) => {
                if args.json {
                    match serde_json::to_string_pretty(&status) {
                        Ok(json) => println!("{json}"),
                        Err(err) => return fail(EXIT_RUNTIME, &err.into()),
                    }
                } else if args.live {
                    match status.heartbeat_age_seconds {
                        Some(age) => println!("agent running, heartbeat {age}s ago"),
                        None => println!("agent not running"),
                    }
                } else {
                    println!("{status}");
                }
                let ok = if args.live {
                    status.live
                } else {
                    status.healthy
                };
                if ok {
                    ExitCode::SUCCESS
                } else {
                    let why = match (args.live, status.problems.first()) {
                        (false, _) => status.problems.join("; "),
                        (true, Some(first)) => first.clone(),
                        (true, None) => "the agent is not live".to_owned(),
                    };
                    eprintln!("ferry-agent status: {why}");
                    ExitCode::from(EXIT_RUNTIME)
                }
            }
            Err(err) => fail(EXIT_RUNTIME, &err.into()),
        },
        Command::CheckConfig(args) => {
            match RawConfig::load(&args.config).and_then(RawConfig::validate) {
                Ok(_) => {
                    println!("{}: ok", args.config.display());
                    ExitCode::SUCCESS
                }
                Err(err) => fail(EXIT_CONFIG, &err.into()),
            }
        }
    }
}

fn block_on(fut: impl Future<Output = anyhow::Result<()>>) -> ExitCode {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    let result = match runtime {
        Ok(rt) => rt.block_on(fut),
        Err(err) => Err(anyhow::Error::new(err).context("could not start the async runtime")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => fail(EXIT_RUNTIME, &err),
    }
}

/// Prints `error: ...` with the cause chain joined by ": ", on one line.
fn fail(code: u8, err: &anyhow::Error) -> ExitCode {
    eprintln!("error: {err:#}");
    ExitCode::from(code)
}

/// Completes on SIGINT or SIGTERM.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let terminate = async {
        match signal(SignalKind::terminate()) {
            Ok(mut sigterm) => {
                sigterm.recv().await;
            }
            Err(err) => {
                tracing::warn!(error = %err, "cannot listen for SIGTERM; stop with SIGINT");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
}

fn init_logging(json: bool) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour only for a person at a terminal, never into a file or the journal.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}
