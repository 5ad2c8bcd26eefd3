//! Aggregate reads for `/metrics`: per service or per state, never per node.

use super::schema::{alerts, deliveries, nodes};
use super::{Conn, on_backend};
use diesel::dsl::{count_star, min};
use diesel::prelude::*;

/// Deliveries by state (all time).
pub fn deliveries_by_state(c: &mut Conn<'_>) -> QueryResult<Vec<(String, i64)>> {
    on_backend!(c, c => deliveries::table.group_by(deliveries::state).select((deliveries::state, count_star())).load(c))
}

/// Alerts by state.
pub fn alerts_by_state(c: &mut Conn<'_>) -> QueryResult<Vec<(String, i64)>> {
    on_backend!(c, c => alerts::table.group_by(alerts::state).select((alerts::state, count_star())).load(c))
}

/// The soonest installed-certificate expiry of each service (from acks).
pub fn soonest_expiry(c: &mut Conn<'_>) -> QueryResult<Vec<(String, Option<i64>)>> {
    on_backend!(c, c => nodes::table.group_by(nodes::service).select((nodes::service, min(nodes::cert_not_after))).load(c))
}

/// Refresh-to-ack latencies (ms) of deliveries finished since `since`, at most `limit`.
pub fn recent_latencies_ms(c: &mut Conn<'_>, since: i64, limit: i64) -> QueryResult<Vec<i64>> {
    let rows: Vec<(i64, Option<i64>)> = on_backend!(c, c => deliveries::table
        .filter(deliveries::state.eq("delivered"))
        .filter(deliveries::finished_at.gt(since))
        .select((deliveries::created_at, deliveries::finished_at))
        .limit(limit)
        .load(c))?;
    Ok(rows
        .into_iter()
        .filter_map(|(c, f)| f.map(|f| f - c))
        .collect())
}
