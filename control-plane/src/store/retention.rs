//! Removing history past the retention period, in batches, through indexes that hold
//! only candidates: finished deliveries (`deliveries_created`), finished rotations,
//! resolved alerts (`alerts_resolved_at`) and delivered webhook events
//! (`alert_events_delivered_at`). Queued or pending deliveries, running rotations,
//! firing alerts, undelivered events and the audit log are never touched.

use super::schema::{alert_events, alerts, deliveries, rotations};
use super::{Conn, on_backend};
use diesel::prelude::*;

/// Delivery states that are final.
const FINISHED: [&str; 3] = ["delivered", "failed", "superseded"];

/// Removes up to `batch` finished deliveries created before `cutoff`; returns how many.
pub fn deliveries(c: &mut Conn<'_>, cutoff: i64, batch: i64) -> QueryResult<usize> {
    let ids: Vec<String> = on_backend!(c, c => deliveries::table
        .filter(deliveries::created_at.lt(cutoff))
        .filter(deliveries::state.eq_any(FINISHED))
        .order(deliveries::created_at)
        .limit(batch)
        .select(deliveries::id)
        .load(c))?;
    if ids.is_empty() {
        return Ok(0);
    }
    on_backend!(c, c => diesel::delete(deliveries::table.filter(deliveries::id.eq_any(&ids))).execute(c))
}

/// Removes finished rotations that ended before `cutoff` (their remaining deliveries
/// go with them); returns how many.
pub fn rotations(c: &mut Conn<'_>, cutoff: i64) -> QueryResult<usize> {
    on_backend!(c, c => diesel::delete(
        rotations::table
            .filter(rotations::state.eq("done"))
            .filter(rotations::finished_at.lt(cutoff)),
    )
    .execute(c))
}

/// Removes up to `batch` alerts resolved before `cutoff`; returns how many.
pub fn alerts(c: &mut Conn<'_>, cutoff: i64, batch: i64) -> QueryResult<usize> {
    let ids: Vec<String> = on_backend!(c, c => alerts::table
        .filter(alerts::state.eq("resolved"))
        .filter(alerts::resolved_at.lt(cutoff))
        .order(alerts::resolved_at)
        .limit(batch)
        .select(alerts::id)
        .load(c))?;
    if ids.is_empty() {
        return Ok(0);
    }
    on_backend!(c, c => diesel::delete(alerts::table.filter(alerts::id.eq_any(&ids))).execute(c))
}

/// Removes up to `batch` webhook events delivered before `cutoff`; returns how many.
pub fn events(c: &mut Conn<'_>, cutoff: i64, batch: i64) -> QueryResult<usize> {
    let ids: Vec<String> = on_backend!(c, c => alert_events::table
        .filter(alert_events::delivered_at.lt(cutoff))
        .order(alert_events::delivered_at)
        .limit(batch)
        .select(alert_events::id)
        .load(c))?;
    if ids.is_empty() {
        return Ok(0);
    }
    on_backend!(c, c => diesel::delete(alert_events::table.filter(alert_events::id.eq_any(&ids))).execute(c))
}
