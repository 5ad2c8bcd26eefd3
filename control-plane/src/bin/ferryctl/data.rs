//! `metadata set|get|list|delete`, `node bundle` and `certificate import`: build the
//! request, call the API, and show the server's JSON (`--json`) or a human view.
//!
//! A metadata value is parsed as JSON here, so a bare word is refused before any
//! request; an imported private key is read from its file, sent, and never shown.

use crate::args::{CertificateCmd, DataCommand, MetadataCmd, MetadataScope};
use crate::client::Api;
use crate::commands::{Output, bad_body, done, shown, unencodable};
use crate::error::CliError;
use crate::output::{Table, fields, opt_time, time, truncate};
use crate::sources;
use ferry_shared::metadata::{
    MetadataEntry, NodeBundleView, PutMetadataRequest, check_metadata_key,
};
use ferry_shared::objects::{ImportCertificateRequest, Imported};
use ferry_shared::{NodeId, ServiceName};
use serde_json::Value;
use std::path::Path;

/// Widest value shown in the `metadata list` table; `--json` shows all of it.
const VALUE_COLUMN: usize = 60;

pub async fn run(api: &Api, cmd: &DataCommand, json: bool) -> Result<Output, CliError> {
    match cmd {
        DataCommand::Metadata(cmd) => metadata(api, cmd, json).await,
        DataCommand::Certificate(CertificateCmd::Import {
            service,
            node,
            cert_file,
            key_file,
        }) => import(api, service, node, cert_file, key_file, json).await,
        DataCommand::Source(cmd) => sources::source(api, cmd, json).await,
        DataCommand::Inventory(cmd) => sources::inventory(api, cmd, json).await,
        DataCommand::CertificateSource(cmd) => sources::certificate_source(api, cmd, json).await,
    }
}

async fn metadata(api: &Api, cmd: &MetadataCmd, json: bool) -> Result<Output, CliError> {
    match cmd {
        MetadataCmd::Set {
            scope,
            key,
            value_json,
            ttl,
            expires_at,
        } => {
            let req = PutMetadataRequest {
                value: parse_value(value_json)?,
                expires_at: *expires_at,
                ttl_seconds: *ttl,
            };
            let body = api
                .put(
                    &entry_path(scope, key)?,
                    serde_json::to_value(&req).map_err(unencodable)?,
                )
                .await?;
            shown(json, body, |b| {
                let e: MetadataEntry = serde_json::from_value(b).map_err(bad_body)?;
                Ok(format!("set {} of {}\n{}", e.key, owner(scope), entry(&e)))
            })
        }
        MetadataCmd::Get { scope, key } => {
            let body = api.get(&entry_path(scope, key)?, &[]).await?;
            shown(json, body, |b| {
                let e: MetadataEntry = serde_json::from_value(b).map_err(bad_body)?;
                Ok(entry(&e))
            })
        }
        MetadataCmd::List { scope } => {
            let body = api.get(&list_path(scope), &[]).await?;
            shown(json, body, |b| {
                let items = b.get("items").cloned().unwrap_or(Value::Null);
                let items: Vec<MetadataEntry> = serde_json::from_value(items).map_err(bad_body)?;
                Ok(entries(&items))
            })
        }
        MetadataCmd::Delete { scope, key } => {
            api.delete(&entry_path(scope, key)?).await?;
            Ok(done(json, format!("deleted {key} of {}\n", owner(scope))))
        }
    }
}

/// VALUE_JSON as JSON; a bare word gets one line saying how to quote it.
pub fn parse_value(text: &str) -> Result<Value, CliError> {
    serde_json::from_str(text).map_err(|_| {
        let word = truncate(text, 40);
        CliError::Usage(format!(
            "VALUE_JSON {word:?} is not JSON; quote a string as JSON, e.g. '\"{}\"'",
            if word.contains(['"', '\'']) || word.is_empty() {
                "prod"
            } else {
                &word
            }
        ))
    })
}

fn owner(scope: &MetadataScope) -> String {
    match &scope.node {
        Some(node) => format!("node {node} of service {}", scope.service),
        None => format!("service {}", scope.service),
    }
}

fn list_path(scope: &MetadataScope) -> String {
    match &scope.node {
        Some(node) => format!("/v1/services/{}/nodes/{node}/metadata", scope.service),
        None => format!("/v1/services/{}/metadata", scope.service),
    }
}

fn entry_path(scope: &MetadataScope, key: &str) -> Result<String, CliError> {
    check_metadata_key(key)
        .map_err(|why| CliError::Usage(format!("metadata key {key:?} is refused: {why}")))?;
    Ok(format!("{}/{}", list_path(scope), segment(key)))
}

/// `s` percent-encoded as one path segment: only unreserved characters stay.
pub fn segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn entry(e: &MetadataEntry) -> String {
    fields(&[
        ("key", e.key.clone()),
        ("value", e.value.to_string()),
        ("expires", opt_time(e.expires_at)),
        ("updated", time(e.updated_at)),
        ("source", e.source.clone().unwrap_or_default()),
    ])
}

fn entries(items: &[MetadataEntry]) -> String {
    let mut t = Table::new(&["key", "value", "expires", "updated", "source"]);
    for e in items {
        t.row(vec![
            e.key.clone(),
            truncate(&e.value.to_string(), VALUE_COLUMN),
            opt_time(e.expires_at),
            time(e.updated_at),
            e.source.clone().unwrap_or_default(),
        ]);
    }
    t.render()
}

/// `node bundle`: the desired bundle next to the acknowledged one.
pub async fn node_bundle(
    api: &Api,
    service: &ServiceName,
    node: &NodeId,
    json: bool,
) -> Result<Output, CliError> {
    let body = api
        .get(&format!("/v1/services/{service}/nodes/{node}/bundle"), &[])
        .await?;
    shown(json, body, |b| {
        let v: NodeBundleView = serde_json::from_value(b).map_err(bad_body)?;
        Ok(bundle(&v))
    })
}

fn bundle(v: &NodeBundleView) -> String {
    let d = v.desired.as_ref();
    let cert = d.and_then(|d| d.certificate.as_ref());
    let keys: Vec<&str> = d
        .map(|d| d.metadata.keys().map(String::as_str).collect())
        .unwrap_or_default();
    fields(&[
        ("service", v.service.clone()),
        ("node", v.node_id.clone()),
        ("in sync", if v.in_sync { "yes" } else { "no" }.to_owned()),
        (
            "desired version",
            d.map(|d| d.version.to_string()).unwrap_or_default(),
        ),
        (
            "desired hash",
            d.map(|d| d.content_hash.clone()).unwrap_or_default(),
        ),
        (
            "key mode",
            d.map(|d| d.key_mode.clone()).unwrap_or_default(),
        ),
        (
            "csr required",
            d.map(|d| d.csr_required.to_string()).unwrap_or_default(),
        ),
        (
            "certificate",
            cert.map(|c| c.serial.clone()).unwrap_or_default(),
        ),
        ("not after", opt_time(cert.map(|c| c.not_after))),
        ("metadata keys", keys.join(", ")),
        ("acked version", v.acked_version.to_string()),
        ("acked hash", v.acked_hash.clone().unwrap_or_default()),
        ("acked at", opt_time(v.acked_at)),
    ])
}

async fn import(
    api: &Api,
    service: &ServiceName,
    node: &NodeId,
    cert_file: &Path,
    key_file: &Path,
    json: bool,
) -> Result<Output, CliError> {
    let req = ImportCertificateRequest {
        certificate: read(cert_file, "certificate")?,
        private_key: read(key_file, "key")?,
    };
    let body = api
        .put(
            &format!("/v1/services/{service}/nodes/{node}/certificate"),
            serde_json::to_value(&req).map_err(unencodable)?,
        )
        .await?;
    shown(json, body, |b| {
        let i: Imported = serde_json::from_value(b).map_err(bad_body)?;
        Ok(format!(
            "imported a certificate for node {node} of service {service}: bundle version {}, \
             valid until {}\n",
            i.version,
            time(i.not_after)
        ))
    })
}

/// A local file's text; the message names the file, never its content.
pub fn read(path: &Path, what: &str) -> Result<String, CliError> {
    std::fs::read_to_string(path)
        .map_err(|e| CliError::Usage(format!("cannot read {what} file {}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ferryctl_bare_words_are_not_json_values() {
        assert_eq!(parse_value("\"prod\"").expect("json"), Value::from("prod"));
        assert_eq!(parse_value("{\"a\":1}").expect("json")["a"], 1);
        let err = parse_value("prod").expect_err("bare word");
        assert_eq!(err.exit_code(), 2);
        assert_eq!(
            err.line(),
            "error: VALUE_JSON \"prod\" is not JSON; quote a string as JSON, e.g. '\"prod\"'"
        );
        assert_eq!(err.line().lines().count(), 1);
    }

    #[test]
    fn ferryctl_keys_are_encoded_as_one_segment() {
        assert_eq!(segment("tags.json"), "tags.json");
        assert_eq!(segment("a b?#%"), "a%20b%3F%23%25");
        assert_eq!(segment("ü"), "%C3%BC");
        let scope = MetadataScope {
            service: ServiceName::parse("web").expect("name"),
            node: None,
        };
        assert!(entry_path(&scope, "../x").is_err());
        assert_eq!(
            entry_path(&scope, "env").expect("ok"),
            "/v1/services/web/metadata/env"
        );
    }
}
