//! `ferry-control-plane`: serve, migrate, check-config, admin create-token.

use clap::{Args, Parser, Subcommand};
use ferry_control_plane::config::{Config, Overrides};
use std::io::IsTerminal;
use std::process::ExitCode;

/// Exit code for an invalid configuration (EX_USAGE).
const EXIT_CONFIG: u8 = 64;

#[derive(Parser)]
#[command(name = "ferry-control-plane", version, about = "Ferry control plane")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Clone, Default)]
struct ConfigArgs {
    /// TOML config file.
    #[arg(long)]
    config: Option<std::path::PathBuf>,
    /// Data directory (SQLite file, master key file, admin-token). Env: FERRY_DATA_DIR.
    #[arg(long)]
    data_dir: Option<String>,
    /// HTTPS listen address. Env: FERRY_LISTEN.
    #[arg(long)]
    listen: Option<String>,
    /// PostgreSQL URL; omit for the embedded SQLite store. Env: FERRY_DATABASE_URL.
    #[arg(long)]
    database_url: Option<String>,
    /// Log JSON lines.
    #[arg(long)]
    log_json: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Run the control plane.
    Serve(ConfigArgs),
    /// Apply database migrations and exit.
    Migrate(ConfigArgs),
    /// Validate the configuration and exit (0 valid, 64 invalid).
    CheckConfig(ConfigArgs),
    /// Administrative actions on the database, without a running server.
    Admin {
        #[command(subcommand)]
        action: AdminCommand,
    },
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Create an API token (for a tenant, or an admin token without --tenant).
    CreateToken {
        #[arg(long)]
        tenant: Option<String>,
        #[arg(
            long,
            default_value = "created with ferry-control-plane admin create-token"
        )]
        description: String,
        #[command(flatten)]
        config: ConfigArgs,
    },
}

fn load(args: &ConfigArgs) -> Result<Config, ExitCode> {
    let overrides = Overrides {
        config: args.config.clone(),
        data_dir: args.data_dir.clone(),
        listen: args.listen.clone(),
        database_url: args.database_url.clone(),
        log_json: args.log_json,
    };
    Config::load(&overrides, &|k| std::env::var(k).ok()).map_err(|e| {
        eprintln!("error: {e}");
        ExitCode::from(EXIT_CONFIG)
    })
}

fn init_logging(json: bool) {
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
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

fn fail(e: anyhow::Error) -> ExitCode {
    eprintln!("error: {e:#}");
    ExitCode::FAILURE
}

#[tokio::main]
async fn main() -> ExitCode {
    // One crypto provider for the process; Err only means it is already installed.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let cli = Cli::parse();
    match cli.command {
        Command::CheckConfig(args) => match load(&args) {
            Ok(cfg) => {
                println!(
                    "configuration valid (data dir {}, listen {})",
                    cfg.data_dir.display(),
                    cfg.listen
                );
                ExitCode::SUCCESS
            }
            Err(code) => code,
        },
        Command::Migrate(args) => {
            let cfg = match load(&args) {
                Ok(c) => c,
                Err(code) => return code,
            };
            init_logging(cfg.log_json);
            match ferry_control_plane::startup::open_store(&cfg) {
                Ok(_) => ExitCode::SUCCESS,
                Err(e) => fail(e),
            }
        }
        Command::Admin {
            action:
                AdminCommand::CreateToken {
                    tenant,
                    description,
                    config,
                },
        } => {
            let cfg = match load(&config) {
                Ok(c) => c,
                Err(code) => return code,
            };
            match ferry_control_plane::startup::create_token_offline(
                &cfg,
                tenant.as_deref(),
                &description,
            )
            .await
            {
                Ok(token) => {
                    println!("{token}");
                    ExitCode::SUCCESS
                }
                Err(e) => fail(e),
            }
        }
        Command::Serve(args) => {
            let cfg = match load(&args) {
                Ok(c) => c,
                Err(code) => return code,
            };
            init_logging(cfg.log_json);
            let token_path = cfg.admin_token_path();
            let app = match ferry_control_plane::startup::App::build(cfg).await {
                Ok(app) => app,
                Err(e) => return fail(e),
            };
            if let Some(token) = &app.new_admin_token {
                // Shown once, and only to a person at a terminal: a token must not end up
                // in a log collector that captures stdout.
                if std::io::stdout().is_terminal() {
                    println!(
                        "admin token (shown once; also in {}): {token}",
                        token_path.display()
                    );
                } else {
                    println!("admin token written to {}", token_path.display());
                }
            }
            println!(
                "listening on https://{} (CA fingerprint {})",
                app.local_addr(),
                app.ca_fingerprint()
            );
            let (tx, rx) = tokio::sync::watch::channel(false);
            tokio::spawn(async move {
                shutdown_signal().await;
                let _ = tx.send(true);
            });
            match app.serve(rx).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => fail(e),
            }
        }
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        },
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
