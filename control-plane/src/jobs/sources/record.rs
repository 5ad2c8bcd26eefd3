//! Recording a fetch, in one transaction per fetch: a changed value becomes the
//! metadata row with the version bumps and wake-up a change needs (an unchanged one,
//! or a 304, writes only the fetch state); a failure keeps the last good value, backs
//! off, opens the circuit after repeated failures and fires the `source-failing` alert
//! (a value that would push a bundle past what the agent accepts counts as a failure);
//! a success closes the circuit and resolves the alert once no fetch of that service
//! (or node) still counts in it.

use super::super::alerting;
use super::fetch::Answer;
use super::{REASON, SourceSettings};
use crate::delivery::Changes;
use crate::store::source_fetches::{self, CLOSED, FetchRow, OPEN};
use crate::store::{self, Conn, StoreError, alerts::AlertRow, metadata::MetadataRow};
use crate::store::{metadata, sources::SourceRow};
use ferry_shared::metadata::MAX_BUNDLE_METADATA_BYTES;

/// What recording did, for the caller to act on after COMMIT.
#[derive(Debug, Default)]
pub struct Recorded {
    pub changes: Changes,
    /// Webhook events were queued.
    pub events: bool,
    /// The delivered value changed.
    pub delivered: bool,
    /// The fetch's row is now counted in a firing alert (it just crossed the threshold).
    pub fired: bool,
}

/// Delay before retry `failures` (>= 1): the base doubling per failure, never beyond
/// the source's interval (a failing source is not fetched more rarely than a healthy
/// one; the circuit breaker is what pauses it).
pub fn retry_ms(settings: &SourceSettings, failures: i32, interval_ms: i64) -> i64 {
    let base = settings.retry_base.as_millis() as i64;
    (base << (failures - 1).clamp(0, 20))
        .min(interval_ms)
        .max(1)
}

/// Records `outcome` of a fetch of `claimed` from `src` (as it was when claimed). A
/// fetch whose row is gone (source or node deleted) or whose source changed since is
/// dropped.
pub fn record(
    c: &mut Conn<'_>,
    settings: &SourceSettings,
    claimed: &FetchRow,
    src: &SourceRow,
    outcome: Result<Answer, String>,
    now: i64,
) -> Result<Recorded, StoreError> {
    let mut done = Recorded::default();
    let Some(mut row) =
        source_fetches::get_for_update(c, &claimed.service, &claimed.source, &claimed.node_id)?
    else {
        return Ok(done);
    };
    match store::sources::get(c, &src.service, &src.name)? {
        Some(current) if current.updated_at == src.updated_at => {}
        _ => return Ok(done),
    }
    let interval_ms = src.interval_seconds * 1000;
    row.last_attempt_at = Some(now);
    match outcome {
        Ok(answer) => {
            if let Answer::Value { json, hash, etag } = answer {
                if row.value_hash.as_deref() != Some(hash.as_str()) {
                    let value = value_row(&row, src, json, now);
                    let total = metadata::bundle_bytes_with(c, &value)?;
                    if total > MAX_BUNDLE_METADATA_BYTES as i64 {
                        let error = format!(
                            "the value would make a bundle carry {total} bytes of metadata; at most \
                             {MAX_BUNDLE_METADATA_BYTES} fit in a bundle the agent accepts, so the last \
                             good value stays"
                        );
                        failed(c, settings, &mut row, src, error, now, &mut done)?;
                        done.changes.notify_in_tx(c)?;
                        return Ok(done);
                    }
                    deliver(c, &row, value, now, &mut done.changes)?;
                    row.value_hash = Some(hash);
                    done.delivered = true;
                }
                row.etag = etag;
            }
            row.failures = 0;
            row.circuit = CLOSED.to_owned();
            row.last_error = None;
            row.last_success_at = Some(now);
            row.next_fetch_at = now + interval_ms;
            let was_alerting = std::mem::replace(&mut row.alerting, false);
            source_fetches::save(c, &row)?;
            if was_alerting {
                done.events = resolve_if_clear(c, &row.service, &row.node_id, now)?;
            }
        }
        Err(error) => failed(c, settings, &mut row, src, error, now, &mut done)?,
    }
    done.changes.notify_in_tx(c)?;
    Ok(done)
}

/// Counts a failed fetch (`error` is what the source's status shows): backs off, opens
/// the circuit after `open_after` failures and fires the alert after `alert_after`.
fn failed(
    c: &mut Conn<'_>,
    settings: &SourceSettings,
    row: &mut FetchRow,
    src: &SourceRow,
    error: String,
    now: i64,
    done: &mut Recorded,
) -> Result<(), StoreError> {
    let interval_ms = src.interval_seconds * 1000;
    row.failures = row.failures.saturating_add(1);
    if row.failures as u32 >= settings.open_after {
        row.circuit = OPEN.to_owned();
        row.next_fetch_at = now + interval_ms.max(settings.cooldown.as_millis() as i64);
    } else {
        row.circuit = CLOSED.to_owned();
        row.next_fetch_at = now + retry_ms(settings, row.failures, interval_ms);
    }
    let fires = row.failures as u32 >= settings.alert_after && !row.alerting;
    row.alerting |= fires;
    let detail = format!(
        "source {}{}: {} consecutive failures, last: {error}",
        src.name,
        if row.node_id.is_empty() {
            String::new()
        } else {
            format!(" for node {}", row.node_id)
        },
        row.failures
    );
    row.last_error = Some(error);
    source_fetches::save(c, row)?;
    if fires {
        done.fired = true;
        done.events = fire(c, row, detail, now)?;
    }
    Ok(())
}

/// The metadata row a fetched value becomes.
fn value_row(row: &FetchRow, src: &SourceRow, json: String, now: i64) -> MetadataRow {
    MetadataRow {
        service: row.service.clone(),
        node_id: row.node_id.clone(),
        key: src.key.clone(),
        value: json,
        source: Some(src.name.clone()),
        expires_at: None,
        updated_at: now,
    }
}

/// Writes the new value and bumps the versions it reaches.
fn deliver(
    c: &mut Conn<'_>,
    row: &FetchRow,
    value: MetadataRow,
    now: i64,
    changes: &mut Changes,
) -> Result<(), StoreError> {
    metadata::put(c, &value)?;
    if row.node_id.is_empty() {
        metadata::bump_service(c, &row.service, now)?;
        changes.service(&row.service);
    } else {
        metadata::bump_node(c, &row.service, &row.node_id, now)?;
        changes.node(&row.service, &row.node_id);
    }
    Ok(())
}

/// Fires the (service, node) `source-failing` alert unless it is firing already (another
/// source, or a replica racing us: the partial unique index decides, in a savepoint).
/// Whether an event was queued.
fn fire(c: &mut Conn<'_>, row: &FetchRow, detail: String, now: i64) -> Result<bool, StoreError> {
    if store::alerts::firing_one(c, &row.service, &row.node_id, REASON)?.is_some() {
        return Ok(false);
    }
    let alert = AlertRow {
        id: crate::http::new_id().map_err(|_| StoreError::Task)?,
        service: row.service.clone(),
        node_id: row.node_id.clone(),
        reason: REASON.to_owned(),
        state: "firing".into(),
        detail,
        fired_at: now,
        resolved_at: None,
    };
    let inserted = match c {
        Conn::Pg(pg) => {
            use diesel::Connection;
            pg.transaction(|pg| store::alerts::insert(&mut Conn::Pg(pg), &alert))
        }
        Conn::Sqlite(_) => store::alerts::insert(c, &alert),
    };
    match inserted {
        Ok(()) => {
            tracing::warn!(service = %row.service, source = %row.source, node = %row.node_id, failures = row.failures, "dynamic source failing; alert fired");
            alerting::event(c, &alert, "firing", now)?;
            Ok(true)
        }
        Err(e) if store::is_unique_violation(&e) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Resolves the (service, node) `source-failing` alert if no fetch counts in it any
/// more; whether an event was queued.
pub fn resolve_if_clear(
    c: &mut Conn<'_>,
    service: &str,
    node_id: &str,
    now: i64,
) -> Result<bool, StoreError> {
    if source_fetches::alerting(c, service, node_id)? > 0 {
        return Ok(false);
    }
    let Some(alert) = store::alerts::firing_one(c, service, node_id, REASON)? else {
        return Ok(false);
    };
    if !store::alerts::resolve(c, &alert.id, now)? {
        return Ok(false);
    }
    tracing::info!(service = %service, node = %node_id, "dynamic source alert resolved");
    alerting::event(c, &alert, "resolved", now)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn retries_double_up_to_the_interval() {
        let s = SourceSettings {
            retry_base: Duration::from_secs(1),
            ..SourceSettings::default()
        };
        let got: Vec<i64> = (1..=6).map(|f| retry_ms(&s, f, 10_000)).collect();
        assert_eq!(got, [1000, 2000, 4000, 8000, 10_000, 10_000]);
        assert_eq!(retry_ms(&s, 3, 1000), 1000);
        assert_eq!(retry_ms(&s, 200, 86_400_000), 86_400_000);
    }
}
