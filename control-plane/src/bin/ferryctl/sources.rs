//! `source set|get|list|delete`, `inventory set|show|delete` and
//! `certificate-source set|show|delete`: what a service reads from elsewhere.
//!
//! Source headers (often credentials) come from a file of `Name: value` lines; they are
//! sent once and never printed: the server answers with their names only.

use crate::args::{CertificateSourceCmd, InventoryCmd, SourceCmd, SourceSetArgs};
use crate::client::Api;
use crate::commands::{Output, bad_body, done, shown, unencodable};
use crate::data::{read, segment};
use crate::error::CliError;
use crate::output::{Table, duration, fields, opt_time, time};
use ferry_shared::ServiceName;
use ferry_shared::objects::{
    InventoryStatus, ObjectSource, PutCertificateSourceRequest, PutInventoryRequest,
};
use ferry_shared::sources::{MAX_SOURCE_HEADERS, PutSourceRequest, Source};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;

pub async fn source(api: &Api, cmd: &SourceCmd, json: bool) -> Result<Output, CliError> {
    match cmd {
        SourceCmd::Set(args) => source_set(api, args, json).await,
        SourceCmd::Get { service, name } => {
            let body = api.get(&source_path(service, name), &[]).await?;
            shown(json, body, |b| {
                let s: Source = serde_json::from_value(b).map_err(bad_body)?;
                Ok(source_view(&s))
            })
        }
        SourceCmd::List { service } => {
            let body = api
                .get(&format!("/v1/services/{service}/sources"), &[])
                .await?;
            shown(json, body, |b| {
                let items = b.get("items").cloned().unwrap_or(Value::Null);
                let items: Vec<Source> = serde_json::from_value(items).map_err(bad_body)?;
                Ok(source_table(&items))
            })
        }
        SourceCmd::Delete { service, name } => {
            api.delete(&source_path(service, name)).await?;
            Ok(done(
                json,
                format!("deleted source {name} of service {service}\n"),
            ))
        }
    }
}

async fn source_set(api: &Api, a: &SourceSetArgs, json: bool) -> Result<Output, CliError> {
    let headers = match &a.header_file {
        Some(path) => headers(path)?,
        None => BTreeMap::new(),
    };
    let req = PutSourceRequest {
        url: a.url.clone(),
        interval_seconds: a.interval,
        headers,
        scope: a.scope.unwrap_or_default(),
        key: a.key.clone(),
    };
    let body = api
        .put(
            &source_path(&a.service, &a.name),
            serde_json::to_value(&req).map_err(unencodable)?,
        )
        .await?;
    shown(json, body, |b| {
        let s: Source = serde_json::from_value(b).map_err(bad_body)?;
        Ok(format!(
            "set source {} of service {}\n{}",
            s.name,
            a.service,
            source_view(&s)
        ))
    })
}

fn source_path(service: &ServiceName, name: &str) -> String {
    format!("/v1/services/{service}/sources/{}", segment(name))
}

/// The headers in `path`: one `Name: value` per line; blank lines and lines starting
/// with `#` are skipped. Errors name the line, never its value.
fn headers(path: &Path) -> Result<BTreeMap<String, String>, CliError> {
    parse_headers(&read(path, "header")?)
        .map_err(|e| CliError::Usage(format!("header file {}: {e}", path.display())))
}

fn parse_headers(text: &str) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((name, value)) = line.split_once(':') else {
            return Err(format!("line {} is not `Name: value`", i + 1));
        };
        let name = name.trim();
        if name.is_empty() || name.contains(char::is_whitespace) {
            return Err(format!("line {} has no header name", i + 1));
        }
        if out
            .insert(name.to_owned(), value.trim().to_owned())
            .is_some()
        {
            return Err(format!("line {}: header {name} is repeated", i + 1));
        }
    }
    if out.len() > MAX_SOURCE_HEADERS {
        return Err(format!("more than {MAX_SOURCE_HEADERS} headers"));
    }
    Ok(out)
}

fn source_view(s: &Source) -> String {
    let st = &s.status;
    fields(&[
        ("name", s.name.clone()),
        ("url", s.url.clone()),
        ("interval", duration(s.interval_seconds)),
        ("scope", s.scope.as_str().to_owned()),
        ("key", s.key.clone()),
        ("headers", s.header_names.join(", ")),
        ("circuit", st.circuit.clone()),
        ("last success", opt_time(st.last_success_at)),
        ("last attempt", opt_time(st.last_attempt_at)),
        ("last error", st.last_error.clone().unwrap_or_default()),
        ("failures", st.consecutive_failures.to_string()),
        ("next fetch", opt_time(st.next_fetch_at)),
        (
            "targets",
            format!("{} ({} failing)", st.targets, st.failing_targets),
        ),
        ("updated", time(s.updated_at)),
    ])
}

fn source_table(items: &[Source]) -> String {
    let mut t = Table::new(&[
        "name",
        "scope",
        "key",
        "interval",
        "circuit",
        "last success",
        "url",
    ]);
    for s in items {
        t.row(vec![
            s.name.clone(),
            s.scope.as_str().to_owned(),
            s.key.clone(),
            duration(s.interval_seconds),
            s.status.circuit.clone(),
            opt_time(s.status.last_success_at),
            s.url.clone(),
        ]);
    }
    t.render()
}

pub async fn inventory(api: &Api, cmd: &InventoryCmd, json: bool) -> Result<Output, CliError> {
    match cmd {
        InventoryCmd::Set {
            service,
            url,
            policy,
            interval,
            grace,
        } => {
            let req = PutInventoryRequest {
                url: url.clone(),
                policy: policy.clone(),
                interval_seconds: *interval,
                grace_seconds: *grace,
            };
            let body = api
                .put(
                    &inventory_path(service),
                    serde_json::to_value(&req).map_err(unencodable)?,
                )
                .await?;
            object_source(
                json,
                body,
                &format!("set the inventory of service {service}"),
            )
        }
        InventoryCmd::Show { service } => {
            let body = api.get(&inventory_path(service), &[]).await?;
            shown(json, body, |b| {
                let s: InventoryStatus = serde_json::from_value(b).map_err(bad_body)?;
                let mut text = object_view(&s.source);
                text.push_str(&fields(&[
                    ("listed", s.listed.to_string()),
                    (
                        "never enrolled",
                        listed(&s.never_enrolled, s.never_enrolled_count),
                    ),
                    (
                        "not in inventory",
                        listed(&s.not_in_inventory, s.not_in_inventory_count),
                    ),
                ]));
                Ok(text)
            })
        }
        InventoryCmd::Delete { service } => {
            api.delete(&inventory_path(service)).await?;
            Ok(done(
                json,
                format!("deleted the inventory of service {service}\n"),
            ))
        }
    }
}

fn inventory_path(service: &ServiceName) -> String {
    format!("/v1/services/{service}/inventory")
}

/// `count` and the first few names the server sent: `3 (n1, n2, ...)`.
fn listed(names: &[String], count: u64) -> String {
    if names.is_empty() {
        return count.to_string();
    }
    let more = if count > names.len() as u64 {
        ", ..."
    } else {
        ""
    };
    format!("{count} ({}{more})", names.join(", "))
}

pub async fn certificate_source(
    api: &Api,
    cmd: &CertificateSourceCmd,
    json: bool,
) -> Result<Output, CliError> {
    match cmd {
        CertificateSourceCmd::Set {
            service,
            url,
            interval,
        } => {
            let req = PutCertificateSourceRequest {
                url: url.clone(),
                interval_seconds: *interval,
            };
            let body = api
                .put(
                    &cert_source_path(service),
                    serde_json::to_value(&req).map_err(unencodable)?,
                )
                .await?;
            object_source(
                json,
                body,
                &format!("set the certificate source of service {service}"),
            )
        }
        CertificateSourceCmd::Show { service } => {
            let body = api.get(&cert_source_path(service), &[]).await?;
            shown(json, body, |b| {
                let s: ObjectSource = serde_json::from_value(b).map_err(bad_body)?;
                Ok(object_view(&s))
            })
        }
        CertificateSourceCmd::Delete { service } => {
            api.delete(&cert_source_path(service)).await?;
            Ok(done(
                json,
                format!("deleted the certificate source of service {service}\n"),
            ))
        }
    }
}

fn cert_source_path(service: &ServiceName) -> String {
    format!("/v1/services/{service}/certificate-source")
}

fn object_source(json: bool, body: Value, headline: &str) -> Result<Output, CliError> {
    shown(json, body, |b| {
        let s: ObjectSource = serde_json::from_value(b).map_err(bad_body)?;
        Ok(format!("{headline}\n{}", object_view(&s)))
    })
}

fn object_view(s: &ObjectSource) -> String {
    fields(&[
        ("url", s.url.clone()),
        ("policy", s.policy.clone()),
        ("interval", duration(s.interval_seconds)),
        ("grace", duration(s.grace_seconds)),
        ("synced", opt_time(s.synced_at)),
        ("next sync", time(s.next_sync_at)),
        ("last error", s.last_error.clone().unwrap_or_default()),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ferryctl_header_files_are_name_value_lines() {
        let h = parse_headers("# creds\nAuthorization: Bearer s3cr3t\n\nX-A:b:c\n").expect("ok");
        assert_eq!(h["Authorization"], "Bearer s3cr3t");
        assert_eq!(h["X-A"], "b:c");
        for bad in [
            "Bearer s3cr3t",
            ": s3cr3t",
            "a b: s3cr3t",
            "A: s3cr3t\nA: s3cr3t",
        ] {
            let err = parse_headers(bad).expect_err(bad);
            assert!(!err.contains("s3cr3t"), "{err}");
        }
    }

    #[test]
    fn ferryctl_listed_names_note_the_rest() {
        assert_eq!(listed(&[], 0), "0");
        assert_eq!(listed(&["a".into()], 1), "1 (a)");
        assert_eq!(listed(&["a".into()], 3), "3 (a, ...)");
    }
}
