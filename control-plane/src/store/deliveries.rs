//! `deliveries`: forced refreshes and rotation entries, tracked to the ack.
//!
//! States: `queued` (rotation entry not yet issued), `pending` (issued in `version`,
//! not yet acknowledged), then `delivered`, `failed` or `superseded`.

use super::schema::deliveries;
use super::{Conn, on_backend};
use diesel::prelude::*;

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = deliveries)]
pub struct DeliveryRow {
    pub id: String,
    pub service: String,
    pub node_id: String,
    pub rotation_id: Option<String>,
    pub idempotency_key: Option<String>,
    pub state: String,
    pub version: Option<i64>,
    pub error: Option<String>,
    pub created_at: i64,
    pub issued_at: Option<i64>,
    pub finished_at: Option<i64>,
}

pub fn insert(c: &mut Conn<'_>, row: &DeliveryRow) -> QueryResult<()> {
    on_backend!(c, c => diesel::insert_into(deliveries::table).values(row).execute(c)).map(drop)
}

/// Many rows in few statements (a rotation of a large service).
pub fn insert_many(c: &mut Conn<'_>, rows: &[DeliveryRow]) -> QueryResult<()> {
    for chunk in rows.chunks(500) {
        on_backend!(c, c => diesel::insert_into(deliveries::table).values(chunk).execute(c))?;
    }
    Ok(())
}

pub fn get(c: &mut Conn<'_>, id: &str) -> QueryResult<Option<DeliveryRow>> {
    on_backend!(c, c => deliveries::table.find(id).select(DeliveryRow::as_select()).first(c).optional())
}

pub fn by_idempotency_key(
    c: &mut Conn<'_>,
    service: &str,
    key: &str,
) -> QueryResult<Option<DeliveryRow>> {
    on_backend!(c, c => deliveries::table
        .filter(deliveries::service.eq(service))
        .filter(deliveries::idempotency_key.eq(key))
        .select(DeliveryRow::as_select())
        .first(c)
        .optional())
}

/// Marks the node's pending deliveries carried by `version` or earlier as finished.
pub fn finish_up_to(
    c: &mut Conn<'_>,
    service: &str,
    node_id: &str,
    version: i64,
    state: &str,
    error: Option<&str>,
    now: i64,
) -> QueryResult<usize> {
    on_backend!(c, c => diesel::update(
        deliveries::table
            .filter(deliveries::service.eq(service))
            .filter(deliveries::node_id.eq(node_id))
            .filter(deliveries::state.eq("pending"))
            .filter(deliveries::version.le(version)),
    )
    .set((deliveries::state.eq(state), deliveries::error.eq(error), deliveries::finished_at.eq(Some(now))))
    .execute(c))
}

/// Open deliveries of a node that is gone can never be acknowledged.
pub fn supersede_node(
    c: &mut Conn<'_>,
    service: &str,
    node_id: &str,
    now: i64,
) -> QueryResult<usize> {
    on_backend!(c, c => diesel::update(
        deliveries::table
            .filter(deliveries::service.eq(service))
            .filter(deliveries::node_id.eq(node_id))
            .filter(deliveries::state.eq_any(["pending", "queued"])),
    )
    .set((
        deliveries::state.eq("superseded"),
        deliveries::error.eq(Some("node was revoked or re-enrolled before acknowledging")),
        deliveries::finished_at.eq(Some(now)),
    ))
    .execute(c))
}

/// Fails deliveries issued before `issued_before` and still unacknowledged.
pub fn expire_pending(
    c: &mut Conn<'_>,
    issued_before: i64,
    error: &str,
    now: i64,
) -> QueryResult<usize> {
    on_backend!(c, c => diesel::update(
        deliveries::table.filter(deliveries::state.eq("pending")).filter(deliveries::issued_at.lt(issued_before)),
    )
    .set((deliveries::state.eq("failed"), deliveries::error.eq(Some(error)), deliveries::finished_at.eq(Some(now))))
    .execute(c))
}

/// Counts of a rotation's deliveries by state.
pub fn rotation_counts(c: &mut Conn<'_>, rotation_id: &str) -> QueryResult<Vec<(String, i64)>> {
    use diesel::dsl::count_star;
    on_backend!(c, c => deliveries::table
        .filter(deliveries::rotation_id.eq(rotation_id))
        .group_by(deliveries::state)
        .select((deliveries::state, count_star()))
        .load(c))
}

/// The next `limit` queued entries of a rotation, in node order.
pub fn next_queued(
    c: &mut Conn<'_>,
    rotation_id: &str,
    limit: i64,
) -> QueryResult<Vec<DeliveryRow>> {
    on_backend!(c, c => deliveries::table
        .filter(deliveries::rotation_id.eq(rotation_id))
        .filter(deliveries::state.eq("queued"))
        .order(deliveries::node_id)
        .limit(limit)
        .select(DeliveryRow::as_select())
        .load(c))
}

pub fn finish_one(
    c: &mut Conn<'_>,
    id: &str,
    state: &str,
    error: Option<&str>,
    now: i64,
) -> QueryResult<()> {
    on_backend!(c, c => diesel::update(deliveries::table.find(id))
        .set((deliveries::state.eq(state), deliveries::error.eq(error), deliveries::finished_at.eq(Some(now))))
        .execute(c))
    .map(drop)
}

pub fn mark_issued(c: &mut Conn<'_>, id: &str, version: i64, now: i64) -> QueryResult<()> {
    on_backend!(c, c => diesel::update(deliveries::table.find(id))
        .set((deliveries::state.eq("pending"), deliveries::version.eq(Some(version)), deliveries::issued_at.eq(Some(now))))
        .execute(c))
    .map(drop)
}
