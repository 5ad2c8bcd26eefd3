//! Alerts written by jobs: the webhook outbox event of an alert (one payload shape for
//! every job, the detector's included), and fire/resolve reconciliation for jobs other
//! than the detector (inventory, sources), in the transaction that changes the alert.

use crate::store::{self, Conn, StoreError, alert_events::EventRow, alerts::AlertRow};
use std::collections::{BTreeMap, HashSet};

/// A stored time (unix ms) as RFC 3339, as alert payloads and details show it.
pub(crate) fn rfc3339(ms: i64) -> String {
    store::from_ms(ms)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// Queues the webhook event of `alert` (`kind`: firing | resolved) in the outbox, if
/// its service has a webhook.
pub(crate) fn event(
    c: &mut Conn<'_>,
    alert: &AlertRow,
    kind: &str,
    now: i64,
) -> Result<(), StoreError> {
    if store::services::get(c, &alert.service, None)?.is_none_or(|s| s.webhook_url.is_none()) {
        return Ok(());
    }
    enqueue(c, alert, kind, now)
}

/// Queues the webhook event of `alert` whether or not its service has a webhook (the
/// caller knows it has one).
pub(crate) fn enqueue(
    c: &mut Conn<'_>,
    alert: &AlertRow,
    kind: &str,
    now: i64,
) -> Result<(), StoreError> {
    let id = crate::http::new_id().map_err(|_| StoreError::Task)?;
    let payload = serde_json::json!({
        "event_id": id,
        "event": kind,
        "alert": {
            "id": alert.id, "service": alert.service, "node_id": alert.node_id,
            "reason": alert.reason, "detail": alert.detail,
            "fired_at": rfc3339(alert.fired_at),
            "resolved_at": (kind == "resolved").then(|| rfc3339(now)),
        },
    });
    store::alert_events::insert(
        c,
        &EventRow {
            id,
            alert_id: alert.id.clone(),
            service: alert.service.clone(),
            payload: payload.to_string(),
            created_at: now,
            attempts: 0,
            next_attempt_at: now,
            lease_until: None,
            delivered_at: None,
            last_error: None,
        },
    )?;
    Ok(())
}

/// Makes the firing alerts of `service` with a reason in `reasons` exactly `want`
/// ((node, reason) -> detail): fires what is missing, resolves what is no longer true.
/// Returns (fired, resolved).
pub fn reconcile(
    c: &mut Conn<'_>,
    service: &str,
    reasons: &[&str],
    want: &BTreeMap<(String, String), String>,
    now: i64,
) -> Result<(usize, usize), StoreError> {
    let firing: Vec<AlertRow> = store::alerts::firing_of(c, service)?
        .into_iter()
        .filter(|a| reasons.contains(&a.reason.as_str()))
        .collect();
    let open: HashSet<(String, String)> = firing
        .iter()
        .map(|a| (a.node_id.clone(), a.reason.clone()))
        .collect();
    let mut resolved = 0;
    for a in &firing {
        if !want.contains_key(&(a.node_id.clone(), a.reason.clone())) {
            store::alerts::resolve(c, &a.id, now)?;
            event(c, a, "resolved", now)?;
            resolved += 1;
        }
    }
    let mut fired = 0;
    for ((node, reason), detail) in want {
        if open.contains(&(node.clone(), reason.clone())) {
            continue;
        }
        let alert = AlertRow {
            id: crate::http::new_id().map_err(|_| StoreError::Task)?,
            service: service.to_owned(),
            node_id: node.clone(),
            reason: reason.clone(),
            state: "firing".into(),
            detail: detail.clone(),
            fired_at: now,
            resolved_at: None,
        };
        store::alerts::insert(c, &alert)?;
        event(c, &alert, "firing", now)?;
        fired += 1;
    }
    Ok((fired, resolved))
}
