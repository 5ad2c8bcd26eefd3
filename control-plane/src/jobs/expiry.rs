//! Metadata expiry: values whose `expires_at` has come are removed through the
//! `metadata_expires_at` index (never a scan) and the nodes they reached get a new
//! version, so the key leaves the installed bundles on time. Reads already leave an
//! expired value out; this job is what makes agents notice. Safe on every replica: a
//! value is removed only while it is still the expired one, and only the replica that
//! removed it bumps versions.

use super::pause;
use crate::delivery::Changes;
use crate::http::AppState;
use crate::store::{self, metadata::SERVICE_WIDE};
use std::collections::BTreeSet;
use std::time::Duration;
use tokio::sync::watch;

/// Values handled per pass.
const BATCH: i64 = 500;

pub async fn run(state: AppState, tick: Duration, mut shutdown: watch::Receiver<bool>) {
    let idle = tokio::sync::Notify::new();
    loop {
        match pass(&state).await {
            Ok(n) if n as i64 == BATCH => continue,
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "metadata expiry pass failed"),
        }
        if !pause(tick, &idle, &mut shutdown).await {
            return;
        }
    }
}

/// One pass: returns how many expired values were found.
pub async fn pass(state: &AppState) -> Result<usize, store::StoreError> {
    let now = store::now_ms();
    // A read first: most passes find nothing and take no write lock.
    let due = state
        .store
        .read(move |c| store::metadata::expired(c, now, BATCH))
        .await?;
    if due.is_empty() {
        return Ok(0);
    }
    let found = due.len();
    let changes = state
        .store
        .write(move |c| {
            let mut services = BTreeSet::new();
            let mut nodes = BTreeSet::new();
            for row in &due {
                if !store::metadata::delete_expired(c, row, now)? {
                    continue;
                }
                if row.node_id == SERVICE_WIDE {
                    services.insert(row.service.clone());
                } else {
                    nodes.insert((row.service.clone(), row.node_id.clone()));
                }
            }
            let mut changes = Changes::default();
            for svc in &services {
                store::metadata::bump_service(c, svc, now)?;
                changes.service(svc);
            }
            for (svc, node) in nodes.iter().filter(|(s, _)| !services.contains(s)) {
                store::metadata::bump_node(c, svc, node, now)?;
                changes.node(svc, node);
            }
            changes.notify_in_tx(c)?;
            Ok::<_, store::StoreError>(changes)
        })
        .await?;
    changes.wake_local(&state.waiters);
    Ok(found)
}
