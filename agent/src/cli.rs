//! The command line: subcommands and flags (clap derive), and how the flags combine with
//! the config file into a [`RawConfig`].
//!
//! Subcommand and flag names are an interface: packaging scripts and the end-to-end tests
//! call them. Flags are all optional here; missing or invalid settings are reported by
//! [`RawConfig::validate`] in one line (exit 64), not by clap.

use crate::config::{
    AgentConfig, ConfigError, DEFAULT_CONFIG_PATH, DEFAULT_STATE_DIR, RawConfig, Secret,
};
use clap::{Args, Parser, Subcommand};
use std::path::{Path, PathBuf};

#[derive(Debug, Parser)]
#[command(
    name = "ferry-agent",
    version,
    about = "Ferry node agent: enrolls this node, keeps its identity renewed and installs its bundles."
)]
pub struct Cli {
    /// Log JSON lines instead of text (level from RUST_LOG, default info).
    #[arg(long, global = true)]
    pub log_json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Enroll this node now with a join token (replacing any identity in the state dir).
    Enroll(SettingsArgs),
    /// Enroll if the state dir has no identity, then keep it renewed and install bundles
    /// until SIGINT/SIGTERM.
    Run(SettingsArgs),
    /// Show this node's identity and installed bundle; exit 0 when the identity and the
    /// installed certificate (if any) are valid, 1 otherwise.
    Status(StatusArgs),
    /// Validate a config file: exit 0, or print one line and exit 64.
    CheckConfig(CheckConfigArgs),
}

/// Settings of `enroll` and `run`; each overrides the same key of the config file.
#[derive(Debug, Default, Args)]
pub struct SettingsArgs {
    /// TOML config file (`run` reads /etc/ferry/agent.toml by default when it exists).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Control plane base URL (https://...).
    #[arg(long, value_name = "URL")]
    pub server: Option<String>,
    /// Service this node belongs to.
    #[arg(long, value_name = "SVC")]
    pub service: Option<String>,
    /// This node's id within the service.
    #[arg(long, value_name = "ID")]
    pub node_id: Option<String>,
    /// Join token for enrollment.
    #[arg(
        long,
        value_name = "TOKEN",
        env = "FERRY_JOIN_TOKEN",
        hide_env_values = true
    )]
    pub join_token: Option<String>,
    /// File holding the join token (read each time the agent enrolls).
    #[arg(long, value_name = "FILE")]
    pub join_token_file: Option<PathBuf>,
    /// Pin of the control plane's CA, printed with the join token.
    #[arg(long, value_name = "sha256:HEX", conflicts_with = "ca_file")]
    pub ca_fingerprint: Option<String>,
    /// PEM file of the control plane's CA certificates.
    #[arg(long, value_name = "PEM")]
    pub ca_file: Option<PathBuf>,
    /// Directory for the key, certificates and agent state [default: /var/lib/ferry-agent].
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Where delivered bundles are installed.
    #[arg(long, value_name = "DIR")]
    pub install_dir: Option<PathBuf>,
    /// Keep this path as a symlink to the installed per-key metadata files.
    #[arg(long, value_name = "DIR")]
    pub metadata_dir: Option<PathBuf>,
    /// Command run (sh -c) after a bundle is installed.
    #[arg(long, value_name = "CMD")]
    pub reload_command: Option<String>,
    /// Seconds before the reload command is killed [default: 30].
    #[arg(long, value_name = "SECONDS")]
    pub reload_timeout_seconds: Option<u64>,
    /// Seconds the control plane may hold a long-poll, 1-55 [default: 55].
    #[arg(long, value_name = "SECONDS")]
    pub poll_wait_seconds: Option<u64>,
    /// Identity key algorithm: ecdsa-p256 (default), ed25519 or rsa-2048.
    #[arg(long, value_name = "TYPE")]
    pub key_type: Option<String>,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[arg(long, value_name = "DIR", default_value = DEFAULT_STATE_DIR)]
    pub state_dir: PathBuf,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// Liveness only: exit 0 while a `ferry-agent run` holds this state dir and its
    /// heartbeat is fresh, whatever else is wrong (for a liveness probe: restarting helps
    /// only a dead or wedged process). Without it, every check counts (readiness).
    #[arg(long)]
    pub live: bool,
}

#[derive(Debug, Args)]
pub struct CheckConfigArgs {
    #[arg(long, value_name = "FILE", default_value = DEFAULT_CONFIG_PATH)]
    pub config: PathBuf,
}

impl SettingsArgs {
    /// Merges the config file (the explicit one, else `default_file` if it exists) with
    /// the flags, which win, and validates the result.
    pub fn into_config(self, default_file: Option<&Path>) -> Result<AgentConfig, ConfigError> {
        let file = match (&self.config, default_file) {
            (Some(path), _) => Some(RawConfig::load(path)?),
            (None, Some(path)) if path.exists() => Some(RawConfig::load(path)?),
            (None, _) => None,
        };
        file.unwrap_or_default().overlay(self.into_raw()).validate()
    }

    fn into_raw(self) -> RawConfig {
        RawConfig {
            server: self.server,
            service: self.service,
            node_id: self.node_id,
            join_token: self.join_token.map(Secret::new),
            join_token_file: self.join_token_file,
            ca_fingerprint: self.ca_fingerprint,
            ca_file: self.ca_file,
            state_dir: self.state_dir,
            install_dir: self.install_dir,
            reload_command: self.reload_command,
            reload_timeout_seconds: self.reload_timeout_seconds,
            poll_wait_seconds: self.poll_wait_seconds,
            key_type: self.key_type,
            metadata_dir: self.metadata_dir,
            target: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::CaPin;

    const PIN: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn settings(cli: Cli) -> SettingsArgs {
        match cli.command {
            Command::Enroll(s) | Command::Run(s) => s,
            other => panic!("unexpected command {other:?}"),
        }
    }

    #[test]
    fn enroll_flags_parse_into_a_config() {
        let cli = Cli::try_parse_from([
            "ferry-agent",
            "enroll",
            "--server",
            "https://cp.example:8443",
            "--service",
            "web",
            "--node-id",
            "n-1",
            "--join-token",
            "tok",
            "--ca-fingerprint",
            PIN,
            "--state-dir",
            "/tmp/x",
            "--key-type",
            "ed25519",
        ])
        .expect("valid command line");
        let cfg = settings(cli).into_config(None).expect("valid config");
        assert_eq!(cfg.node_id.as_str(), "n-1");
        assert_eq!(cfg.ca, Some(CaPin::Fingerprint(PIN.to_owned())));
        assert_eq!(cfg.key_type, ferry_shared::KeyType::Ed25519);
        assert_eq!(cfg.state_dir, PathBuf::from("/tmp/x"));
    }

    #[test]
    fn flags_override_the_config_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("agent.toml");
        let toml = format!(
            "server = \"https://a.example\"\nservice = \"web\"\nnode_id = \"n-1\"\n\
             ca_fingerprint = \"{PIN}\"\njoin_token_file = \"/run/token\"\n"
        );
        std::fs::write(&file, toml).expect("write");
        let cli = Cli::try_parse_from([
            "ferry-agent",
            "run",
            "--config",
            file.to_str().expect("utf-8"),
            "--server",
            "https://b.example",
            "--join-token",
            "from-flag",
            "--reload-command",
            "systemctl reload x",
        ])
        .expect("valid command line");
        let cfg = settings(cli).into_config(None).expect("valid config");
        assert_eq!(cfg.server.as_str(), "https://b.example/");
        assert_eq!(
            cfg.join_token,
            Some(crate::JoinTokenSource::Inline(Secret::new("from-flag")))
        );
        assert_eq!(cfg.reload_command.as_deref(), Some("systemctl reload x"));
    }

    #[test]
    fn the_default_file_is_read_only_when_it_exists() {
        let dir = tempfile::tempdir().expect("tempdir");
        let absent = dir.path().join("absent.toml");
        let cli = Cli::try_parse_from(["ferry-agent", "run", "--service", "web"]).expect("parses");
        let err = settings(cli)
            .into_config(Some(&absent))
            .expect_err("server missing");
        assert!(
            err.to_string().contains("missing setting `server`"),
            "{err}"
        );
    }

    #[test]
    fn both_ca_flags_are_a_usage_error() {
        let res = Cli::try_parse_from([
            "ferry-agent",
            "enroll",
            "--ca-fingerprint",
            PIN,
            "--ca-file",
            "x",
        ]);
        assert!(res.is_err());
    }

    #[test]
    fn status_and_check_config_have_defaults() {
        let cli = Cli::try_parse_from(["ferry-agent", "status", "--json"]).expect("parses");
        match cli.command {
            Command::Status(s) => assert!(s.json && s.state_dir == Path::new(DEFAULT_STATE_DIR)),
            other => panic!("unexpected {other:?}"),
        }
        let cli = Cli::try_parse_from(["ferry-agent", "check-config", "--config", "a.toml"])
            .expect("parses");
        assert!(matches!(cli.command, Command::CheckConfig(c) if c.config == Path::new("a.toml")));
    }
}
