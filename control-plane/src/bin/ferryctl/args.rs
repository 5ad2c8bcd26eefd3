//! The command-line grammar of `ferryctl`: global connection flags and the command tree.
//!
//! Names are parsed into `ferry_shared` newtypes here, so a bad service name is a usage
//! error (exit 2) before any request is made, and never reaches a URL path.

mod data;
mod delivery;
mod ops;
mod service;
mod token;

pub use data::{
    CertificateCmd, CertificateSourceCmd, DataCommand, InventoryCmd, MetadataCmd, MetadataScope,
    SourceCmd, SourceSetArgs,
};
pub use delivery::{DeliveryCmd, DeliveryCommand, RefreshArgs, RotateArgs, RotationCmd, parse_id};
pub use ops::{AlertCmd, AlertListArgs, MAX_ALERTS, OpsCommand, StatusArgs, WebhookCmd};
pub use service::{ServiceCmd, SettingsArgs};
pub use token::TokenCmd;

use clap::{Args, Parser, Subcommand};
use ferry_shared::{NodeId, ServiceName, TenantName};
use std::path::PathBuf;

/// Where `ferryctl` looks for the control plane when neither `--server` nor
/// `FERRY_SERVER` is given.
pub const DEFAULT_SERVER: &str = "https://127.0.0.1:8443";

#[derive(Debug, Parser)]
#[command(
    name = "ferryctl",
    version,
    about = "Manage Ferry services, nodes, deliveries, join tokens, tenants and API tokens; \
             watch the fleet's status and alerts",
    propagate_version = true
)]
pub struct Cli {
    #[command(flatten, next_help_heading = "Global options")]
    pub global: GlobalOpts,
    #[command(subcommand)]
    pub command: Command,
}

/// Flags that say how to reach and authenticate to the control plane.
#[derive(Debug, Args)]
pub struct GlobalOpts {
    /// Base URL of the control plane (https only).
    #[arg(long, global = true, env = "FERRY_SERVER", default_value = DEFAULT_SERVER, value_name = "URL")]
    pub server: String,

    /// API bearer token (tenant or admin). Prefer --token-file: arguments are visible
    /// to other users of the machine.
    #[arg(
        long,
        global = true,
        env = "FERRY_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub token: Option<String>,

    /// File holding the API token (surrounding whitespace is trimmed), e.g.
    /// ferry-data/admin-token. Takes precedence over --token and FERRY_TOKEN.
    #[arg(long, global = true, env = "FERRY_TOKEN_FILE", value_name = "FILE")]
    pub token_file: Option<PathBuf>,

    /// PEM file with the CA that signed the control plane's certificate.
    #[arg(long, global = true, env = "FERRY_CA_CERT", value_name = "PEM")]
    pub ca_cert: Option<PathBuf>,

    /// Pin the control plane's CA by the SHA-256 of its DER (as printed by
    /// `join-token create`): the trust bundle is fetched, and only the matching CA is
    /// trusted afterwards.
    #[arg(
        long,
        global = true,
        env = "FERRY_CA_FINGERPRINT",
        value_name = "sha256:HEX",
        value_parser = parse_pin
    )]
    pub ca_fingerprint: Option<String>,

    /// Print the server's JSON instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
}

/// Accepts `sha256:<64 hex>` and keeps it in the canonical lowercase form.
fn parse_pin(s: &str) -> Result<String, String> {
    ferry_shared::hash::parse_fingerprint(s)
        .map(|hex| format!("sha256:{hex}"))
        .ok_or_else(|| "expected sha256: followed by 64 hex digits".to_owned())
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create, list, show, update and delete services.
    #[command(subcommand)]
    Service(ServiceCmd),
    /// Create join tokens that let nodes enroll into a service.
    #[command(subcommand)]
    JoinToken(JoinTokenCmd),
    /// List, show and revoke the enrolled nodes of a service.
    #[command(subcommand)]
    Node(NodeCmd),
    // `refresh`, `delivery`, `rotate` and `rotation`, defined in `args::delivery`.
    #[command(flatten)]
    Deliveries(DeliveryCommand),
    /// Create and list tenants (admin).
    #[command(subcommand)]
    Tenant(TenantCmd),
    /// Create, list and revoke a tenant's API tokens (role read, deliver or admin).
    #[command(subcommand)]
    Token(TokenCmd),
    /// Show the audit log, newest first (admin).
    Audit(PageArgs),
    /// Print the trust anchors delivered to nodes (PEM): what verifies node certificates.
    TrustBundle,
    /// Print the control-plane CA (PEM), e.g. to save the pinned CA for --ca-cert.
    ControlPlaneCa,
    // `status`, `alert`, `webhook`, `health`, `metrics`, `completions`: `args::ops`.
    #[command(flatten)]
    Ops(OpsCommand),
    // `metadata`, `source`, `inventory`, `certificate`, `certificate-source`:
    // `args::data`.
    #[command(flatten)]
    Data(DataCommand),
}

impl Command {
    /// Whether the command's request carries the API token (all but the public trust
    /// bundle, `health` and `completions` do), so the token is only read when it is used.
    pub fn needs_token(&self) -> bool {
        match self {
            Command::TrustBundle | Command::ControlPlaneCa => false,
            Command::Ops(ops) => ops.needs_token(),
            _ => true,
        }
    }
}

/// `--limit`, `--cursor`, `--all` of every list command.
#[derive(Debug, Args, Clone, Default, PartialEq, Eq)]
pub struct PageArgs {
    /// Largest number of items per page (the server's default when absent).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub limit: Option<u32>,
    /// Start at this cursor (the `next_cursor` of a previous page).
    #[arg(long, value_name = "CURSOR", conflicts_with = "all")]
    pub cursor: Option<String>,
    /// Follow `next_cursor` until the last page.
    #[arg(long)]
    pub all: bool,
}

#[derive(Debug, Subcommand)]
pub enum JoinTokenCmd {
    /// Create a join token and print how to enroll a node with it.
    Create {
        service: ServiceName,
        /// Lifetime of the token (server default 3600).
        #[arg(long, value_name = "SECONDS")]
        ttl: Option<u64>,
        /// Number of enrollments it allows (server default 1).
        #[arg(long, value_name = "N")]
        max_uses: Option<u32>,
        /// Allow it to enroll over an existing node, replacing that node's identity
        /// and key (otherwise enrolling an existing node id is refused).
        #[arg(long)]
        replace_nodes: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum NodeCmd {
    /// List the nodes of a service.
    List {
        service: ServiceName,
        #[command(flatten)]
        page: PageArgs,
    },
    /// Show one node.
    Show { service: ServiceName, node: NodeId },
    /// Revoke a node: its identity is refused from now on, even before it expires.
    Revoke { service: ServiceName, node: NodeId },
    /// Show the bundle a node should have next to the one it acknowledged.
    Bundle { service: ServiceName, node: NodeId },
}

#[derive(Debug, Subcommand)]
pub enum TenantCmd {
    /// Create a tenant.
    Create { name: TenantName },
    /// List tenants.
    List(PageArgs),
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::error::ErrorKind;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("ferryctl").chain(args.iter().copied()))
    }

    #[test]
    fn bad_names_and_values_are_usage_errors() {
        for args in [
            &["service", "create", "Bad_Name"][..],
            &["service", "create", "web", "--key-type", "dsa"],
            &["node", "show", "web", "../etc"],
            &["service", "list", "--limit", "0"],
            &["service", "list", "--all", "--cursor", "abc"],
            &["--ca-fingerprint", "sha256:abc", "service", "list"],
            &["token", "create"],
        ] {
            let err = parse(args).expect_err(&format!("{args:?} accepted"));
            assert_eq!(err.exit_code(), 2, "{args:?}");
        }
    }

    #[test]
    fn global_flags_work_after_the_subcommand_and_pins_are_normalised() {
        let pin = format!("sha256:{}", "AB".repeat(32));
        let cli = parse(&[
            "node",
            "list",
            "web",
            "--all",
            "--ca-fingerprint",
            &pin,
            "--token",
            "t",
        ])
        .expect("valid command line");
        assert_eq!(
            cli.global.ca_fingerprint,
            Some(format!("sha256:{}", "ab".repeat(32)))
        );
        assert_eq!(cli.global.token.as_deref(), Some("t"));
        let Command::Node(NodeCmd::List { service, page }) = cli.command else {
            panic!("parsed as {:?}", cli.command);
        };
        assert_eq!(service.as_str(), "web");
        assert_eq!(
            page,
            PageArgs {
                limit: None,
                cursor: None,
                all: true
            }
        );
    }

    #[test]
    fn join_token_and_subcommand_names_match_the_contract() {
        let cli = parse(&[
            "join-token",
            "create",
            "web",
            "--ttl",
            "60",
            "--max-uses",
            "5",
        ])
        .expect("valid command line");
        let Command::JoinToken(JoinTokenCmd::Create {
            service,
            ttl,
            max_uses,
            ..
        }) = cli.command
        else {
            panic!("parsed as {:?}", cli.command);
        };
        assert_eq!(
            (service.as_str(), ttl, max_uses),
            ("web", Some(60), Some(5))
        );
        assert!(matches!(
            parse(&["audit", "--limit", "5"]).map(|c| c.command),
            Ok(Command::Audit(PageArgs { limit: Some(5), .. }))
        ));
        assert!(matches!(
            parse(&["node", "revoke", "web", "n-1"]).map(|c| c.command),
            Ok(Command::Node(NodeCmd::Revoke { .. }))
        ));
        assert_eq!(
            parse(&[]).expect_err("no command").kind(),
            ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
        );
    }

    #[test]
    fn clap_definitions_are_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
