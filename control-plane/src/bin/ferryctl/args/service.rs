//! The grammar of services: `service create|list|show|update|delete` and the settings
//! flags that `create` and `update` share.

use super::PageArgs;
use clap::{Args, Subcommand};
use ferry_shared::api::ServiceSettings;
use ferry_shared::{KeyMode, KeyType, ServiceName, TenantName};

#[derive(Debug, Subcommand)]
pub enum ServiceCmd {
    /// Create a service.
    Create {
        name: ServiceName,
        /// Owning tenant (admin tokens only; tenant tokens always create in their own).
        #[arg(long, value_name = "T")]
        tenant: Option<TenantName>,
        #[command(flatten)]
        settings: SettingsArgs,
    },
    /// List services.
    List(PageArgs),
    /// Show one service.
    Show { name: ServiceName },
    /// Change a service's settings; unspecified settings keep their value.
    Update {
        name: ServiceName,
        #[command(flatten)]
        settings: SettingsArgs,
    },
    /// Delete a service and its nodes.
    Delete { name: ServiceName },
}

/// The settings flags shared by `service create` and `service update`.
#[derive(Debug, Args, Clone, Default, PartialEq, Eq)]
pub struct SettingsArgs {
    /// Lifetime of delivered certificates.
    #[arg(long, value_name = "SECONDS")]
    pub cert_ttl: Option<u64>,
    /// Renew this long before a certificate expires.
    #[arg(long, value_name = "SECONDS")]
    pub renew_before: Option<u64>,
    /// Key algorithm of delivered certificates.
    #[arg(long, value_name = "ecdsa-p256|ed25519|rsa-2048")]
    pub key_type: Option<KeyType>,
    /// Who generates keys: the control plane (central) or the node (node-key).
    #[arg(long, value_name = "central|node-key")]
    pub key_mode: Option<KeyMode>,
    /// A node unseen for this long is stale.
    #[arg(long, value_name = "SECONDS")]
    pub stale_after: Option<u64>,
    /// How long a node may lag its desired version before it is stale.
    #[arg(long, value_name = "SECONDS")]
    pub grace: Option<u64>,
    /// Alert when an installed certificate expires within this long.
    #[arg(long, value_name = "SECONDS")]
    pub alert_before: Option<u64>,
    /// DNS names of delivered certificates, comma-separated, with {node}, {service}
    /// and {trust_domain} (server default {node}.{service}.{trust_domain}).
    #[arg(long, value_name = "TEMPLATE")]
    pub san_template: Option<String>,
    /// Admin only: a DNS suffix the service's certificates may name (repeat for more;
    /// default: only names under <service>.<trust domain>).
    #[arg(long = "dns-suffix", value_name = "SUFFIX")]
    pub dns_suffixes: Vec<String>,
    /// Admin only: allow (true) or refuse (false) names with a leftmost `*` label.
    #[arg(long, value_name = "true|false")]
    pub wildcard_names: Option<bool>,
    /// Admin only: an IP network (CIDR) whose addresses the SAN template may name as IP
    /// SANs (repeat for more; default: none).
    #[arg(long = "ip-range", value_name = "CIDR")]
    pub ip_ranges: Vec<String>,
}

impl SettingsArgs {
    pub fn is_empty(&self) -> bool {
        *self == SettingsArgs::default()
    }

    pub fn to_settings(&self) -> ServiceSettings {
        ServiceSettings {
            cert_ttl_seconds: self.cert_ttl,
            renew_before_seconds: self.renew_before,
            key_type: self.key_type,
            key_mode: self.key_mode,
            stale_after_seconds: self.stale_after,
            grace_seconds: self.grace,
            alert_before_seconds: self.alert_before,
            san_template: self.san_template.clone(),
            dns_suffixes: (!self.dns_suffixes.is_empty()).then(|| self.dns_suffixes.clone()),
            wildcard_names: self.wildcard_names,
            ip_ranges: (!self.ip_ranges.is_empty()).then(|| self.ip_ranges.clone()),
        }
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
    fn service_create_parses_every_setting() {
        let cli = parse(&[
            "service",
            "create",
            "web",
            "--tenant",
            "acme",
            "--cert-ttl",
            "3600",
            "--renew-before",
            "1200",
            "--key-type",
            "ed25519",
            "--key-mode",
            "node-key",
            "--stale-after",
            "600",
            "--grace",
            "300",
            "--alert-before",
            "900",
            "--json",
        ])
        .expect("valid command line");
        assert!(cli.global.json);
        let Command::Service(ServiceCmd::Create {
            name,
            tenant,
            settings,
        }) = cli.command
        else {
            panic!("parsed as {:?}", cli.command);
        };
        assert_eq!(name.as_str(), "web");
        assert_eq!(tenant.map(|t| t.to_string()).as_deref(), Some("acme"));
        let s = settings.to_settings();
        assert_eq!(s.cert_ttl_seconds, Some(3600));
        assert_eq!(s.renew_before_seconds, Some(1200));
        assert_eq!(s.key_type, Some(KeyType::Ed25519));
        assert_eq!(s.key_mode, Some(KeyMode::NodeKey));
        assert_eq!(s.stale_after_seconds, Some(600));
        assert_eq!(s.grace_seconds, Some(300));
        assert_eq!(s.alert_before_seconds, Some(900));
    }
}
