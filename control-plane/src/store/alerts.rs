//! `alerts`: firing and resolved alerts, at most one firing per (service, node, reason).

use super::schema::{alerts, nodes, services};
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

pub fn firing(c: &mut Conn<'_>) -> QueryResult<Vec<AlertRow>> {
    on_backend!(c, c => alerts::table.filter(alerts::state.eq("firing")).select(AlertRow::as_select()).load(c))
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

/// Nodes whose version lags for longer than their service's grace period. Reads the
/// partial `nodes_lagging` index, which holds only lagging nodes, then applies each
/// service's grace.
pub fn lagging(c: &mut Conn<'_>, now: i64) -> QueryResult<Vec<(String, String, i64, i64)>> {
    let rows: Vec<(String, String, i64, i64, Option<i64>, i64)> = on_backend!(c, c => nodes::table
        .inner_join(services::table.on(services::name.eq(nodes::service)))
        .filter(nodes::acked_version.lt(nodes::desired_version))
        .filter(nodes::desired_at.lt(now))
        .select((
            nodes::service,
            nodes::node_id,
            nodes::desired_version,
            nodes::acked_version,
            nodes::desired_at,
            services::grace_seconds,
        ))
        .load(c))?;
    Ok(rows
        .into_iter()
        .filter(|(_, _, _, _, at, grace)| at.is_some_and(|at| at < now - grace * 1000))
        .map(|(s, n, d, a, _, _)| (s, n, d, a))
        .collect())
}

/// Nodes not seen since their deadline (`nodes_unseen_at` index).
pub fn unseen(c: &mut Conn<'_>, now: i64) -> QueryResult<Vec<(String, String, Option<i64>)>> {
    on_backend!(c, c => nodes::table
        .filter(nodes::unseen_at.lt(now))
        .select((nodes::service, nodes::node_id, nodes::last_seen))
        .load(c))
}

/// Nodes whose installed certificate (from their ack) expires within their service's
/// `alert_before`. Reads the `nodes_cert_not_after` index up to `now + horizon_ms`
/// (the largest `alert_before` of any service), then applies each service's own.
pub fn expiring(
    c: &mut Conn<'_>,
    now: i64,
    horizon_ms: i64,
) -> QueryResult<Vec<(String, String, i64)>> {
    let rows: Vec<(String, String, Option<i64>, i64)> = on_backend!(c, c => nodes::table
        .inner_join(services::table.on(services::name.eq(nodes::service)))
        .filter(nodes::cert_not_after.lt(now + horizon_ms))
        .select((nodes::service, nodes::node_id, nodes::cert_not_after, services::alert_before_seconds))
        .load(c))?;
    Ok(rows
        .into_iter()
        .filter_map(|(s, n, na, before)| {
            na.filter(|na| *na < now + before * 1000)
                .map(|na| (s, n, na))
        })
        .collect())
}

pub fn max_alert_before_ms(c: &mut Conn<'_>) -> QueryResult<i64> {
    use diesel::dsl::max;
    on_backend!(c, c => services::table.select(max(services::alert_before_seconds)).first::<Option<i64>>(c))
        .map(|m| m.unwrap_or(0) * 1000)
}
