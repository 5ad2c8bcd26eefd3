//! Aggregate reads for `/metrics`: per service or per state, never per node.

use super::schema::{alerts, deliveries};
use super::{Conn, on_backend};
use diesel::dsl::count_star;
use diesel::prelude::*;

/// Deliveries by state (all time).
pub fn deliveries_by_state(c: &mut Conn<'_>) -> QueryResult<Vec<(String, i64)>> {
    on_backend!(c, c => deliveries::table.group_by(deliveries::state).select((deliveries::state, count_star())).load(c))
}

/// Alerts by state.
pub fn alerts_by_state(c: &mut Conn<'_>) -> QueryResult<Vec<(String, i64)>> {
    on_backend!(c, c => alerts::table.group_by(alerts::state).select((alerts::state, count_star())).load(c))
}

/// One service's soonest installed-certificate expiry.
#[derive(QueryableByName)]
struct Soonest {
    #[diesel(sql_type = diesel::sql_types::Text)]
    service: String,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::BigInt>)]
    soonest: Option<i64>,
}

/// The soonest installed-certificate expiry of each service (from acks): one probe of
/// the `nodes_service_expiry` index per service, not a scan of the fleet.
pub fn soonest_expiry(c: &mut Conn<'_>) -> QueryResult<Vec<(String, Option<i64>)>> {
    let rows: Vec<Soonest> = on_backend!(c, c => diesel::sql_query(
        "SELECT s.name AS service, \
         (SELECT min(n.cert_not_after) FROM nodes n WHERE n.service = s.name) AS soonest \
         FROM services s",
    )
    .load(c))?;
    Ok(rows.into_iter().map(|r| (r.service, r.soonest)).collect())
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
