//! The grammar of running a fleet: `status`, `alert list`, `webhook set|clear`,
//! `health`, `metrics`, and `completions` for the shell.
//!
//! A webhook's signing secret is made by the server and shown once, so `webhook set`
//! takes a file to write it to and never a secret on the command line or on stdout.

use super::PageArgs;
use clap::{Args, Subcommand, ValueEnum};
use ferry_shared::ServiceName;
use std::path::PathBuf;

/// Most alerts the server returns in one answer.
pub const MAX_ALERTS: u32 = 1000;
/// Longest webhook URL the server accepts.
const MAX_URL_CHARS: usize = 2000;

/// The fleet commands, at the top level of the command tree.
#[derive(Debug, Subcommand)]
pub enum OpsCommand {
    /// Show the fleet and each service: nodes ok, pending, stale and expiring, firing
    /// alerts, recent deliveries.
    Status(StatusArgs),
    /// List the alerts raised for stale nodes and services, newest first.
    #[command(subcommand)]
    Alert(AlertCmd),
    /// Set or clear the webhook a service's alerts are posted to.
    #[command(subcommand)]
    Webhook(WebhookCmd),
    /// Check that the control plane answers and its database is ready (no token needed).
    Health,
    /// Print the control plane's Prometheus metrics (admin).
    Metrics,
    /// Print a shell completion script (no server or token needed).
    ///
    /// For example `ferryctl completions bash > /etc/bash_completion.d/ferryctl`, or
    /// `source <(ferryctl completions zsh)` in ~/.zshrc.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

impl OpsCommand {
    /// Whether the command's request carries the API token.
    pub fn needs_token(&self) -> bool {
        !matches!(self, OpsCommand::Health | OpsCommand::Completions { .. })
    }
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Show only this service. With --json the document keeps its shape, with only this
    /// service in `services`.
    #[arg(long, value_name = "S", conflicts_with_all = ["cursor", "all"])]
    pub service: Option<ServiceName>,
    /// Services are listed a page at a time (the fleet line always covers them all).
    #[command(flatten)]
    pub page: PageArgs,
}

#[derive(Debug, Subcommand)]
pub enum AlertCmd {
    /// List alerts, newest first.
    List(AlertListArgs),
}

#[derive(Debug, Args)]
pub struct AlertListArgs {
    /// Only the alerts of this service.
    #[arg(long, value_name = "S")]
    pub service: Option<ServiceName>,
    /// Only firing or only resolved alerts (both when absent).
    #[arg(long, value_enum, value_name = "firing|resolved")]
    pub state: Option<AlertState>,
    /// Largest number of alerts to show (server default 100).
    #[arg(
        long,
        value_name = "N",
        value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_ALERTS))
    )]
    pub limit: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AlertState {
    Firing,
    Resolved,
}

impl AlertState {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertState::Firing => "firing",
            AlertState::Resolved => "resolved",
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum WebhookCmd {
    /// Post the service's alerts to URL, signed with a new secret. The secret is written
    /// to --secret-file (mode 0600, exactly the secret, no newline) and never printed;
    /// setting the webhook again replaces the secret.
    Set {
        service: ServiceName,
        /// http(s) URL that receives the alert events.
        #[arg(long, value_name = "URL", value_parser = parse_webhook_url)]
        url: String,
        /// Where to save the signing secret (the HMAC-SHA256 key of `Ferry-Signature`);
        /// an existing file is replaced.
        #[arg(long, value_name = "FILE")]
        secret_file: PathBuf,
    },
    /// Stop posting the service's alerts and forget the secret.
    Clear { service: ServiceName },
}

/// The server's rule, checked before any request: http or https, a host, and at most
/// [`MAX_URL_CHARS`] characters.
fn parse_webhook_url(s: &str) -> Result<String, String> {
    let url = reqwest::Url::parse(s).map_err(|e| format!("not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err("expected an http:// or https:// URL with a host".to_owned());
    }
    if s.chars().count() > MAX_URL_CHARS {
        return Err(format!("longer than {MAX_URL_CHARS} characters"));
    }
    Ok(s.to_owned())
}

#[cfg(test)]
mod tests {
    use super::super::{Cli, Command};
    use super::*;
    use clap::Parser;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("ferryctl").chain(args.iter().copied()))
    }

    fn ops(args: &[&str]) -> OpsCommand {
        match parse(args).map(|c| c.command) {
            Ok(Command::Ops(cmd)) => cmd,
            other => panic!("{args:?} parsed as {other:?}"),
        }
    }

    #[test]
    fn status_and_alert_list_flags() {
        let OpsCommand::Status(all) = ops(&["status"]) else {
            panic!("not status");
        };
        assert_eq!((all.service, all.page), (None, PageArgs::default()));
        let OpsCommand::Status(StatusArgs {
            service: Some(s), ..
        }) = ops(&["status", "--service", "web"])
        else {
            panic!("no service");
        };
        assert_eq!(s.as_str(), "web");
        let OpsCommand::Status(paged) = ops(&["status", "--limit", "20", "--all"]) else {
            panic!("not status");
        };
        assert_eq!((paged.page.limit, paged.page.all), (Some(20), true));
        // One service's line has no pages to follow.
        assert!(parse(&["status", "--service", "web", "--all"]).is_err());
        assert!(parse(&["status", "--service", "web", "--cursor", "c"]).is_err());

        let OpsCommand::Alert(AlertCmd::List(a)) = ops(&[
            "alert",
            "list",
            "--service",
            "web",
            "--state",
            "firing",
            "--limit",
            "1000",
        ]) else {
            panic!("not alert list");
        };
        assert_eq!(a.service.map(|s| s.to_string()).as_deref(), Some("web"));
        assert_eq!((a.state, a.limit), (Some(AlertState::Firing), Some(1000)));
        assert_eq!(AlertState::Resolved.as_str(), "resolved");
    }

    #[test]
    fn webhook_set_takes_a_url_and_a_secret_file() {
        let OpsCommand::Webhook(WebhookCmd::Set {
            service,
            url,
            secret_file,
        }) = ops(&[
            "webhook",
            "set",
            "web",
            "--url",
            "https://hooks.example/ferry",
            "--secret-file",
            "web.secret",
        ])
        else {
            panic!("not webhook set");
        };
        assert_eq!(
            (service.as_str(), url.as_str()),
            ("web", "https://hooks.example/ferry")
        );
        assert_eq!(secret_file, PathBuf::from("web.secret"));
        assert!(matches!(
            ops(&["webhook", "clear", "web"]),
            OpsCommand::Webhook(WebhookCmd::Clear { .. })
        ));
    }

    #[test]
    fn only_health_and_completions_go_without_a_token() {
        assert!(!ops(&["health"]).needs_token());
        assert!(!ops(&["completions", "zsh"]).needs_token());
        assert!(ops(&["metrics"]).needs_token());
        assert!(ops(&["status"]).needs_token());
    }

    #[test]
    fn bad_values_are_usage_errors() {
        let long = format!("https://h.example/{}", "a".repeat(MAX_URL_CHARS));
        for args in [
            &["status", "--service", "Bad_Name"][..],
            &["status", "web"],
            &["alert", "list", "--state", "open"],
            &["alert", "list", "--limit", "0"],
            &["alert", "list", "--limit", "1001"],
            &["alert", "list", "--service", "../x"],
            &["webhook", "set", "web", "--url", "https://h.example/x"],
            &["webhook", "set", "web", "--secret-file", "f"],
            &[
                "webhook",
                "set",
                "web",
                "--url",
                "ftp://h.example/x",
                "--secret-file",
                "f",
            ],
            &[
                "webhook",
                "set",
                "web",
                "--url",
                "https://",
                "--secret-file",
                "f",
            ],
            &[
                "webhook",
                "set",
                "web",
                "--url",
                "hooks.example",
                "--secret-file",
                "f",
            ],
            &[
                "webhook",
                "set",
                "web",
                "--url",
                &long,
                "--secret-file",
                "f",
            ],
            &[
                "webhook",
                "set",
                "web",
                "--url",
                "https://h.example",
                "--secret",
                "s",
            ],
            &["webhook", "show", "web"],
            &["completions"],
            &["completions", "tcsh"],
        ] {
            let err = parse(args).expect_err(&format!("{args:?} accepted"));
            assert_eq!(err.exit_code(), 2, "{args:?}");
        }
    }
}
