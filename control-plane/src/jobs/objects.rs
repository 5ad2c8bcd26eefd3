//! Syncs what services read from customer storage, each source on one replica at a time
//! (claimed by moving its `next_sync_at`):
//!
//! - inventory: the node ids a service should have (JSON array or one id per line).
//!   Listed ids without an enrolled node are never-enrolled and alerted after the grace
//!   period; enrolled nodes the inventory does not list are alerted (`flag`) or revoked
//!   (`revoke`).
//! - certificates (`imported` key mode): `{node}.pem` + `{node}.key` under a bucket
//!   prefix, imported when their ETags change, for nodes that have enrolled.

use super::{alerting, pause};
use crate::delivery::Changes;
use crate::http::AppState;
use crate::objects::{ObjectError, ObjectUrl};
use crate::store::{self, StoreError, objects::SourceRow};
use ferry_shared::NodeId;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;
use tokio::sync::watch;

/// Reasons this job fires and resolves.
pub const NEVER_ENROLLED: &str = "never-enrolled";
pub const NOT_IN_INVENTORY: &str = "not-in-inventory";

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error(transparent)]
    Object(#[from] ObjectError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Invalid(String),
}

impl From<diesel::result::Error> for SyncError {
    fn from(e: diesel::result::Error) -> Self {
        Self::Store(e.into())
    }
}

pub async fn run(state: AppState, tick: Duration, mut shutdown: watch::Receiver<bool>) {
    let idle = tokio::sync::Notify::new();
    loop {
        if let Err(e) = pass(&state).await {
            tracing::warn!(error = %e, "object sync pass failed");
        }
        if !pause(tick, &idle, &mut shutdown).await {
            return;
        }
    }
}

/// Syncs every due source this replica can claim; returns how many it synced.
pub async fn pass(state: &AppState) -> Result<usize, StoreError> {
    let now = store::now_ms();
    let due = state
        .store
        .read(move |c| store::objects::due(c, now, 50))
        .await?;
    let mut synced = 0;
    for row in due {
        let claimed = row.clone();
        if !state
            .store
            .write(move |c| store::objects::claim(c, &claimed, now).map_err(StoreError::from))
            .await?
        {
            continue;
        }
        let result = match row.kind.as_str() {
            store::objects::INVENTORY => sync_inventory(state, &row).await,
            _ => sync_certificates(state, &row).await,
        };
        let error = result.err().map(|e| e.to_string());
        if let Some(e) = &error {
            let origin = crate::outbound::origin(&row.url);
            tracing::warn!(service = %row.service, kind = %row.kind, %origin, error = %e, "object sync failed");
        }
        let (s, k) = (row.service.clone(), row.kind.clone());
        state
            .store
            .write(move |c| {
                store::objects::finish(c, &s, &k, store::now_ms(), error.as_deref())
                    .map_err(StoreError::from)
            })
            .await?;
        synced += 1;
    }
    Ok(synced)
}

/// Node ids from a JSON array of strings or a newline list (`#` comments allowed).
/// Errors say where the inventory is wrong, never what it says (the text is the
/// answer of a URL a tenant chose, and errors reach `last_error` and the log).
pub fn parse_inventory(bytes: &[u8]) -> Result<HashSet<String>, SyncError> {
    let text = std::str::from_utf8(bytes)
        .map_err(|_| SyncError::Invalid("the inventory is not UTF-8".into()))?;
    let ids: Vec<String> = if text.trim_start().starts_with('[') {
        serde_json::from_str(text).map_err(|e| {
            SyncError::Invalid(format!(
                "the inventory is not a JSON array of strings (line {}, column {})",
                e.line(),
                e.column()
            ))
        })?
    } else {
        text.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(str::to_owned)
            .collect()
    };
    ids.into_iter()
        .enumerate()
        .map(|(i, id)| {
            NodeId::parse(&id).map(|n| n.to_string()).map_err(|_| {
                SyncError::Invalid(format!("inventory entry {} is not a valid node id", i + 1))
            })
        })
        .collect()
}

async fn sync_inventory(state: &AppState, row: &SourceRow) -> Result<(), SyncError> {
    let bytes = state.objects.get(&ObjectUrl::parse(&row.url)?).await?;
    let ids = parse_inventory(&bytes)?;
    let row = row.clone();
    let changes = state
        .store
        .write(move |c| {
            let now = store::now_ms();
            store::objects::replace_inventory(c, &row.service, &ids, now)?;
            let mut want = BTreeMap::new();
            for (node, listed_at) in store::objects::never_enrolled(c, &row.service)? {
                if listed_at + row.grace_seconds * 1000 <= now {
                    want.insert(
                        (node, NEVER_ENROLLED.to_owned()),
                        "listed in the inventory but never enrolled".to_owned(),
                    );
                }
            }
            let mut changes = Changes::default();
            let tenant = store::services::get(c, &row.service, None)?.map(|s| s.tenant);
            for node in store::objects::not_in_inventory(c, &row.service)? {
                if row.policy == "revoke" {
                    store::nodes::delete(c, &row.service, &node)?;
                    store::metadata::delete_node(c, &row.service, &node)?;
                    store::deliveries::supersede_node(c, &row.service, &node, now)?;
                    store::audit::record(
                        c,
                        &revoke_audit(tenant.clone(), &row.service, &node, now),
                    )?;
                    changes.node(&row.service, &node);
                } else {
                    want.insert(
                        (node, NOT_IN_INVENTORY.to_owned()),
                        "enrolled but not listed in the inventory".to_owned(),
                    );
                }
            }
            alerting::reconcile(
                c,
                &row.service,
                &[NEVER_ENROLLED, NOT_IN_INVENTORY],
                &want,
                now,
            )?;
            changes.notify_in_tx(c)?;
            Ok::<_, SyncError>(changes)
        })
        .await?;
    changes.wake_local(&state.waiters);
    Ok(())
}

fn revoke_audit(
    tenant: Option<String>,
    service: &str,
    node: &str,
    now: i64,
) -> store::audit::NewAudit {
    store::audit::NewAudit {
        at: now,
        actor: "inventory".into(),
        tenant,
        action: "node.revoke".into(),
        target: format!("{service}/{node}"),
        detail: serde_json::json!({ "reason": "not listed in the inventory" }).to_string(),
    }
}

async fn sync_certificates(state: &AppState, row: &SourceRow) -> Result<(), SyncError> {
    let ObjectUrl::S3 {
        bucket,
        key: prefix,
    } = ObjectUrl::parse(&row.url)?
    else {
        return Err(SyncError::Invalid(
            "a certificate source must be s3://bucket/prefix/".into(),
        ));
    };
    let listed = state.objects.list(&bucket, &prefix).await?;
    let etag_of: HashMap<&str, &str> = listed
        .iter()
        .map(|l| (l.name.as_str(), l.etag.as_str()))
        .collect();
    let mut failures = Vec::new();
    for l in &listed {
        let Some(node) = l.name.strip_suffix(".pem") else {
            continue;
        };
        let Some(key_etag) = etag_of.get(format!("{node}.key").as_str()) else {
            continue;
        };
        let Ok(node) = NodeId::parse(node).map(|n| n.to_string()) else {
            continue;
        };
        let etags = format!("{} {key_etag}", l.etag);
        match import_one(state, row, &bucket, &prefix, &node, etags).await {
            Ok(()) => {}
            Err(e) => failures.push(format!("{node}: {e}")),
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(SyncError::Invalid(failures.join("; ")))
    }
}

async fn import_one(
    state: &AppState,
    row: &SourceRow,
    bucket: &str,
    prefix: &str,
    node: &str,
    etags: String,
) -> Result<(), SyncError> {
    let (s, n) = (row.service.clone(), node.to_owned());
    let (enrolled, last) = state
        .store
        .read(move |c| {
            Ok((
                store::nodes::get(c, &s, &n)?.is_some(),
                store::objects::imported_etags(c, &s, &n)?,
            ))
        })
        .await?;
    if !enrolled || last.as_deref() == Some(etags.as_str()) {
        return Ok(()); // picked up once the node enrolls; unchanged objects are skipped
    }
    let dir = prefix.trim_end_matches('/');
    let object = |ext: &str| ObjectUrl::S3 {
        bucket: bucket.to_owned(),
        key: if dir.is_empty() {
            format!("{node}.{ext}")
        } else {
            format!("{dir}/{node}.{ext}")
        },
    };
    let cert = state.objects.get(&object("pem")).await?;
    let key = state.objects.get(&object("key")).await?;
    let text =
        |b: Vec<u8>| String::from_utf8(b).map_err(|_| SyncError::Invalid("not UTF-8 PEM".into()));
    let checked =
        crate::ca::import::check(&text(cert)?, &text(key)?, time::OffsetDateTime::now_utc())
            .map_err(|e| SyncError::Invalid(e.to_string()))?;
    let (st, s, n) = (state.clone(), row.service.clone(), node.to_owned());
    let changes = state
        .store
        .write(move |c| {
            let Some(svc) = store::services::get(c, &s, None)? else {
                return Ok(Changes::default());
            };
            let now = time::OffsetDateTime::now_utc();
            let version = st
                .issuer()
                .import(
                    c,
                    &svc,
                    &n,
                    checked.leaf_pem,
                    &checked.chain_pem,
                    checked.key_pem,
                    checked.not_after,
                    now,
                )
                .map_err(|e| SyncError::Invalid(e.to_string()))?;
            store::objects::record_import(c, &s, &n, &etags, version, store::ms(now))?;
            let mut changes = Changes::default();
            changes.node(&s, &n);
            changes.notify_in_tx(c)?;
            Ok::<_, SyncError>(changes)
        })
        .await?;
    changes.wake_local(&state.waiters);
    Ok(())
}
