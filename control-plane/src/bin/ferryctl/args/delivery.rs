//! The grammar of forced delivery and rotation: `refresh`, `delivery show`, `rotate`,
//! `rotation show`.
//!
//! Ids and idempotency keys are checked here like names are in the parent module: an id
//! ends up in a URL path and a key in a header, so neither may carry `/`, `..` or
//! control characters.

use clap::{Args, Subcommand};
use ferry_shared::{NodeId, ServiceName};

/// Longest id accepted; the server's are 24 hex digits.
const MAX_ID_CHARS: usize = 128;
/// Longest idempotency key accepted.
const MAX_KEY_CHARS: usize = 200;

/// The forced delivery and rotation commands, at the top level of the command tree.
#[derive(Debug, Subcommand)]
pub enum DeliveryCommand {
    /// Deliver a fresh certificate to one node now.
    Refresh(RefreshArgs),
    /// Show forced deliveries.
    #[command(subcommand)]
    Delivery(DeliveryCmd),
    /// Re-issue the certificates of every node of a service, a few at a time.
    Rotate(RotateArgs),
    /// Show the progress of service rotations.
    #[command(subcommand)]
    Rotation(RotationCmd),
}

#[derive(Debug, Args)]
pub struct RefreshArgs {
    pub service: ServiceName,
    pub node: NodeId,
    /// Makes a retry safe: the server answers a repeated key with the same delivery.
    /// A random key is generated when absent (printed with --json).
    #[arg(long, value_name = "KEY", value_parser = parse_idempotency_key)]
    pub idempotency_key: Option<String>,
    /// Wait until the node has installed the new certificate, showing progress on stderr.
    #[arg(long)]
    pub wait: bool,
    /// Give up waiting after this long (with --wait).
    #[arg(
        long,
        value_name = "SECONDS",
        default_value_t = 120,
        requires = "wait",
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub timeout: u64,
}

#[derive(Debug, Subcommand)]
pub enum DeliveryCmd {
    /// Show one forced delivery and its state.
    Show {
        #[arg(value_parser = parse_id)]
        id: String,
    },
}

#[derive(Debug, Args)]
pub struct RotateArgs {
    pub service: ServiceName,
    /// Deliveries in flight at once (server default 100).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_in_flight: Option<u32>,
    /// Wait until every node has its new certificate, showing a progress bar on stderr.
    #[arg(long)]
    pub wait: bool,
    /// Give up waiting after this long (with --wait).
    #[arg(
        long,
        value_name = "SECONDS",
        default_value_t = 3600,
        requires = "wait",
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub timeout: u64,
}

#[derive(Debug, Subcommand)]
pub enum RotationCmd {
    /// Show the progress of one rotation.
    Show {
        service: ServiceName,
        #[arg(value_parser = parse_id)]
        id: String,
    },
}

/// A delivery or rotation id: ASCII letters, digits, `-` and `_`, so it is one safe
/// URL path segment. Also used on ids the server returns before polling them.
pub fn parse_id(s: &str) -> Result<String, String> {
    let ok = !s.is_empty()
        && s.chars().count() <= MAX_ID_CHARS
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(s.to_owned())
    } else {
        Err(format!(
            "expected an id of 1 to {MAX_ID_CHARS} letters, digits, '-' or '_'"
        ))
    }
}

/// Visible ASCII only, so the key is a valid header value and reads back unchanged.
fn parse_idempotency_key(s: &str) -> Result<String, String> {
    let ok = !s.is_empty() && s.len() <= MAX_KEY_CHARS && s.bytes().all(|b| b.is_ascii_graphic());
    if ok {
        Ok(s.to_owned())
    } else {
        Err(format!(
            "expected 1 to {MAX_KEY_CHARS} visible ASCII characters (no spaces)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Cli, Command};
    use super::*;
    use clap::Parser;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("ferryctl").chain(args.iter().copied()))
    }

    #[test]
    fn refresh_defaults_and_flags() {
        let cli = parse(&["refresh", "web", "n-1"]).expect("valid");
        let Command::Deliveries(DeliveryCommand::Refresh(a)) = cli.command else {
            panic!("parsed as {:?}", cli.command);
        };
        assert_eq!((a.service.as_str(), a.node.as_str()), ("web", "n-1"));
        assert_eq!((a.idempotency_key, a.wait, a.timeout), (None, false, 120));

        let cli = parse(&[
            "refresh",
            "web",
            "n-1",
            "--idempotency-key",
            "deploy-42",
            "--wait",
            "--timeout",
            "30",
            "--json",
        ])
        .expect("valid");
        assert!(cli.global.json);
        let Command::Deliveries(DeliveryCommand::Refresh(a)) = cli.command else {
            panic!("parsed as {:?}", cli.command);
        };
        assert_eq!(a.idempotency_key.as_deref(), Some("deploy-42"));
        assert_eq!((a.wait, a.timeout), (true, 30));
    }

    #[test]
    fn rotate_defaults_and_flags() {
        let cli = parse(&["rotate", "web"]).expect("valid");
        let Command::Deliveries(DeliveryCommand::Rotate(a)) = cli.command else {
            panic!("parsed as {:?}", cli.command);
        };
        assert_eq!((a.max_in_flight, a.wait, a.timeout), (None, false, 3600));

        let cli = parse(&["rotate", "web", "--max-in-flight", "5", "--wait"]).expect("valid");
        let Command::Deliveries(DeliveryCommand::Rotate(a)) = cli.command else {
            panic!("parsed as {:?}", cli.command);
        };
        assert_eq!((a.service.as_str(), a.max_in_flight), ("web", Some(5)));
        assert_eq!((a.wait, a.timeout), (true, 3600));
    }

    #[test]
    fn show_commands_take_ids() {
        let cli = parse(&["delivery", "show", "0af3c9d2e1b4a5f607182930"]).expect("valid");
        assert!(matches!(
            cli.command,
            Command::Deliveries(DeliveryCommand::Delivery(DeliveryCmd::Show { ref id })) if id == "0af3c9d2e1b4a5f607182930"
        ));
        let cli = parse(&["rotation", "show", "web", "r_1"]).expect("valid");
        let Command::Deliveries(DeliveryCommand::Rotation(RotationCmd::Show { service, id })) =
            cli.command
        else {
            panic!("parsed as {:?}", cli.command);
        };
        assert_eq!((service.as_str(), id.as_str()), ("web", "r_1"));
    }

    #[test]
    fn bad_values_are_usage_errors() {
        let long_key = "k".repeat(MAX_KEY_CHARS + 1);
        for args in [
            &["refresh", "web"][..],
            &["refresh", "web", "../x"],
            &["refresh", "web", "n-1", "--timeout", "5"],
            &["refresh", "web", "n-1", "--wait", "--timeout", "0"],
            &["refresh", "web", "n-1", "--idempotency-key", "has space"],
            &["refresh", "web", "n-1", "--idempotency-key", ""],
            &["refresh", "web", "n-1", "--idempotency-key", &long_key],
            &["rotate", "web", "--max-in-flight", "0"],
            &["rotate", "web", "--timeout", "60"],
            &["delivery", "show", "../../v1/audit"],
            &["delivery", "show", ""],
            &["rotation", "show", "web"],
            &["rotation", "show", "web", "a/b"],
        ] {
            let err = parse(args).expect_err(&format!("{args:?} accepted"));
            assert_eq!(err.exit_code(), 2, "{args:?}");
        }
    }

    #[test]
    fn ids_are_single_safe_path_segments() {
        assert!(parse_id("0af3c9d2e1b4a5f607182930").is_ok());
        assert!(parse_id("dlv_A-1").is_ok());
        for bad in [
            "",
            "..",
            "a/b",
            "a b",
            "a%2f",
            "é",
            &"x".repeat(MAX_ID_CHARS + 1),
        ] {
            assert!(parse_id(bad).is_err(), "{bad:?}");
        }
    }
}
