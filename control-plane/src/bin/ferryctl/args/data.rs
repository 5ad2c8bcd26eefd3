//! The grammar of what a service delivers besides its own certificates: `metadata`,
//! dynamic `source`s, the node `inventory`, imported `certificate`s and the
//! `certificate-source` bucket.
//!
//! Secrets never come from the command line: source headers are read from a file of
//! `Name: value` lines, an imported private key from a key file.

use clap::{Args, Subcommand};
use ferry_shared::sources::{
    MAX_SOURCE_INTERVAL_SECONDS, MIN_SOURCE_INTERVAL_SECONDS, SourceScope,
};
use ferry_shared::{NodeId, ServiceName};
use std::path::PathBuf;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// The data commands, at the top level of the command tree.
#[derive(Debug, Subcommand)]
pub enum DataCommand {
    /// Set, show, list and delete metadata delivered to a service's nodes.
    #[command(subcommand)]
    Metadata(MetadataCmd),
    /// Set, show, list and delete dynamic sources: URLs fetched periodically and
    /// delivered as one metadata key.
    #[command(subcommand)]
    Source(SourceCmd),
    /// Set, show and delete the inventory of nodes a service expects.
    #[command(subcommand)]
    Inventory(InventoryCmd),
    /// Import a certificate and key for a node of a service with key mode `imported`.
    #[command(subcommand)]
    Certificate(CertificateCmd),
    /// Set, show and delete the S3 bucket an imported service's certificates come from.
    #[command(subcommand)]
    CertificateSource(CertificateSourceCmd),
}

/// The service, and the node when the entry is one node's override.
#[derive(Debug, Args, Clone)]
pub struct MetadataScope {
    pub service: ServiceName,
    /// Address this node's override instead of the service-wide entry.
    #[arg(long, value_name = "NODE")]
    pub node: Option<NodeId>,
}

#[derive(Debug, Subcommand)]
pub enum MetadataCmd {
    /// Set KEY to VALUE_JSON, a JSON document: quote strings, e.g. '"prod"'.
    Set {
        #[command(flatten)]
        scope: MetadataScope,
        key: String,
        /// The value, as JSON (`'"prod"'`, `42`, `'{"tier":1}'`).
        value_json: String,
        /// Forget the entry after this many seconds.
        #[arg(long, value_name = "SECONDS", conflicts_with = "expires_at")]
        ttl: Option<u64>,
        /// Forget the entry at this time (RFC 3339).
        #[arg(long, value_name = "RFC3339", value_parser = parse_time)]
        expires_at: Option<OffsetDateTime>,
    },
    /// Show one entry.
    Get {
        #[command(flatten)]
        scope: MetadataScope,
        key: String,
    },
    /// List the entries of the service (or of one node's overrides).
    List {
        #[command(flatten)]
        scope: MetadataScope,
    },
    /// Delete one entry.
    Delete {
        #[command(flatten)]
        scope: MetadataScope,
        key: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum SourceCmd {
    /// Create or replace a source.
    Set(SourceSetArgs),
    /// Show one source and its fetch status.
    Get { service: ServiceName, name: String },
    /// List the sources of a service.
    List { service: ServiceName },
    /// Delete a source and the metadata it delivered.
    Delete { service: ServiceName, name: String },
}

#[derive(Debug, Args)]
pub struct SourceSetArgs {
    pub service: ServiceName,
    pub name: String,
    /// http(s) URL to fetch; with --scope node it may contain `{node}`.
    #[arg(long, value_name = "URL")]
    pub url: String,
    /// Fetch this often.
    #[arg(
        long,
        value_name = "SECONDS",
        value_parser = clap::value_parser!(u64)
            .range(MIN_SOURCE_INTERVAL_SECONDS..=MAX_SOURCE_INTERVAL_SECONDS)
    )]
    pub interval: u64,
    /// One fetch for the service, or one per node.
    #[arg(long, value_name = "service|node", value_parser = parse_scope)]
    pub scope: Option<SourceScope>,
    /// The metadata key the answer is delivered as (default: the source's name).
    #[arg(long, value_name = "KEY")]
    pub key: Option<String>,
    /// File of `Name: value` lines sent as request headers (values are never shown).
    #[arg(long, value_name = "FILE")]
    pub header_file: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum InventoryCmd {
    /// Set where the inventory is read from and what to do with unknown nodes.
    Set {
        service: ServiceName,
        /// s3://bucket/key or http(s) URL of the inventory.
        #[arg(long, value_name = "URL")]
        url: String,
        /// Flag unknown nodes with an alert, or revoke them (server default flag).
        #[arg(long, value_name = "flag|revoke", value_parser = ["flag", "revoke"])]
        policy: Option<String>,
        /// Read the inventory this often (server default 300).
        #[arg(long, value_name = "SECONDS")]
        interval: Option<u64>,
        /// How long a listed node may stay unenrolled before it is reported.
        #[arg(long, value_name = "SECONDS")]
        grace: Option<u64>,
    },
    /// Show the inventory source and what its last sync found.
    Show { service: ServiceName },
    /// Stop reading the inventory.
    Delete { service: ServiceName },
}

#[derive(Debug, Subcommand)]
pub enum CertificateCmd {
    /// Deliver FILE's certificate (leaf first, then its chain) and key to NODE.
    Import {
        service: ServiceName,
        node: NodeId,
        /// PEM certificate chain, leaf first.
        #[arg(long, value_name = "FILE")]
        cert_file: PathBuf,
        /// PEM private key of the leaf (read, sent, never printed).
        #[arg(long, value_name = "FILE")]
        key_file: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum CertificateSourceCmd {
    /// Import the service's certificates from an S3 prefix.
    Set {
        service: ServiceName,
        /// s3://bucket/prefix/ holding NODE.pem and NODE.key.
        #[arg(long, value_name = "URL")]
        url: String,
        /// Read the bucket this often (server default 60).
        #[arg(long, value_name = "SECONDS")]
        interval: Option<u64>,
    },
    /// Show the bucket and its last sync.
    Show { service: ServiceName },
    /// Stop importing from the bucket.
    Delete { service: ServiceName },
}

fn parse_time(s: &str) -> Result<OffsetDateTime, String> {
    OffsetDateTime::parse(s, &Rfc3339)
        .map_err(|_| "expected an RFC 3339 time, e.g. 2026-01-02T03:04:05Z".to_owned())
}

fn parse_scope(s: &str) -> Result<SourceScope, String> {
    SourceScope::parse(s).ok_or_else(|| "expected service or node".to_owned())
}

#[cfg(test)]
mod tests {
    use super::super::{Cli, Command};
    use super::*;
    use clap::Parser;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("ferryctl").chain(args.iter().copied()))
    }

    fn data(args: &[&str]) -> DataCommand {
        match parse(args).map(|c| c.command) {
            Ok(Command::Data(cmd)) => cmd,
            other => panic!("{args:?} parsed as {other:?}"),
        }
    }

    #[test]
    fn ferryctl_metadata_set_takes_a_node_and_an_expiry() {
        let DataCommand::Metadata(MetadataCmd::Set {
            scope,
            key,
            value_json,
            ttl,
            expires_at,
        }) = data(&[
            "metadata", "set", "web", "env", "\"prod\"", "--node", "n1", "--ttl", "60",
        ])
        else {
            panic!("not metadata set");
        };
        assert_eq!(scope.service.as_str(), "web");
        assert_eq!(scope.node.map(|n| n.to_string()).as_deref(), Some("n1"));
        assert_eq!((key.as_str(), value_json.as_str()), ("env", "\"prod\""));
        assert_eq!((ttl, expires_at), (Some(60), None));
        let DataCommand::Metadata(MetadataCmd::Set { expires_at, .. }) = data(&[
            "metadata",
            "set",
            "web",
            "env",
            "1",
            "--expires-at",
            "2030-01-02T03:04:05Z",
        ]) else {
            panic!("not metadata set");
        };
        assert!(expires_at.is_some());
    }

    #[test]
    fn ferryctl_source_set_reads_headers_from_a_file_only() {
        let DataCommand::Source(SourceCmd::Set(a)) = data(&[
            "source",
            "set",
            "web",
            "flags",
            "--url",
            "https://api.example/{node}",
            "--interval",
            "60",
            "--scope",
            "node",
            "--header-file",
            "h.txt",
        ]) else {
            panic!("not source set");
        };
        assert_eq!((a.interval, a.scope), (60, Some(SourceScope::Node)));
        assert_eq!(a.header_file, Some(PathBuf::from("h.txt")));
    }

    #[test]
    fn ferryctl_data_bad_values_are_usage_errors() {
        for args in [
            &[
                "metadata",
                "set",
                "web",
                "k",
                "1",
                "--ttl",
                "5",
                "--expires-at",
                "2030-01-01T00:00:00Z",
            ][..],
            &[
                "metadata",
                "set",
                "web",
                "k",
                "1",
                "--expires-at",
                "tomorrow",
            ],
            &["metadata", "get", "web", "k", "--node", "../x"],
            &["source", "set", "web", "s", "--url", "https://x.example"],
            &["source", "set", "web", "s", "--url", "u", "--interval", "0"],
            &[
                "source",
                "set",
                "web",
                "s",
                "--url",
                "u",
                "--interval",
                "5",
                "--scope",
                "all",
            ],
            &[
                "source",
                "set",
                "web",
                "s",
                "--url",
                "u",
                "--interval",
                "5",
                "--header",
                "a: b",
            ],
            &[
                "inventory",
                "set",
                "web",
                "--url",
                "u",
                "--policy",
                "delete",
            ],
            &["certificate", "import", "web", "n1", "--cert-file", "c.pem"],
            &[
                "certificate",
                "import",
                "web",
                "n1",
                "--cert-file",
                "c",
                "--key",
                "k",
            ],
        ] {
            let err = parse(args).expect_err(&format!("{args:?} accepted"));
            assert_eq!(err.exit_code(), 2, "{args:?}");
        }
    }
}
