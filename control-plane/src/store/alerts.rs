//! `alerts`: firing and resolved alerts, at most one firing per (service, node, reason).

use super::schema::{alerts, services};
use super::{Conn, on_backend};
use diesel::prelude::*;

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = alerts)]
pub struct AlertRow {
    pub id: String,
    pub service: String,
    pub node_id: String,
    pub reason: String,
    pub state: String,
    pub detail: String,
    pub fired_at: i64,
    pub resolved_at: Option<i64>,
}

/// Firing alerts of one service (the `alerts_firing` partial index).
pub fn firing_of(c: &mut Conn<'_>, service: &str) -> QueryResult<Vec<AlertRow>> {
    on_backend!(c, c => alerts::table
        .filter(alerts::state.eq("firing"))
        .filter(alerts::service.eq(service))
        .select(AlertRow::as_select())
        .load(c))
}

pub fn insert(c: &mut Conn<'_>, row: &AlertRow) -> QueryResult<()> {
    on_backend!(c, c => diesel::insert_into(alerts::table).values(row).execute(c)).map(drop)
}

/// Resolves a firing alert; whether this call did (a concurrent resolver gets false).
pub fn resolve(c: &mut Conn<'_>, id: &str, now: i64) -> QueryResult<bool> {
    on_backend!(c, c => diesel::update(alerts::table.find(id).filter(alerts::state.eq("firing")))
        .set((alerts::state.eq("resolved"), alerts::resolved_at.eq(Some(now))))
        .execute(c))
    .map(|n| n > 0)
}

/// The firing alert of (service, node, reason), if any (the `alerts_firing` index).
pub fn firing_one(
    c: &mut Conn<'_>,
    service: &str,
    node_id: &str,
    reason: &str,
) -> QueryResult<Option<AlertRow>> {
    on_backend!(c, c => alerts::table
        .filter(alerts::service.eq(service))
        .filter(alerts::node_id.eq(node_id))
        .filter(alerts::reason.eq(reason))
        .filter(alerts::state.eq("firing"))
        .select(AlertRow::as_select())
        .first(c)
        .optional())
}

/// Firing alerts of one reason.
pub fn firing_with_reason(c: &mut Conn<'_>, reason: &str) -> QueryResult<Vec<AlertRow>> {
    on_backend!(c, c => alerts::table
        .filter(alerts::state.eq("firing"))
        .filter(alerts::reason.eq(reason))
        .select(AlertRow::as_select())
        .load(c))
}

/// Alerts of `services` (None: all), newest first, optionally of one state.
pub fn list(
    c: &mut Conn<'_>,
    services: Option<Vec<String>>,
    state: Option<String>,
    limit: i64,
) -> QueryResult<Vec<AlertRow>> {
    on_backend!(c, c => {
        let mut q = alerts::table.select(AlertRow::as_select()).order(alerts::fired_at.desc()).limit(limit).into_boxed();
        if let Some(s) = services.clone() {
            q = q.filter(alerts::service.eq_any(s));
        }
        if let Some(st) = state.clone() {
            q = q.filter(alerts::state.eq(st));
        }
        q.load(c)
    })
}

pub fn max_alert_before_ms(c: &mut Conn<'_>) -> QueryResult<i64> {
    use diesel::dsl::max;
    on_backend!(c, c => services::table.select(max(services::alert_before_seconds)).first::<Option<i64>>(c))
        .map(|m| m.unwrap_or(0) * 1000)
}
