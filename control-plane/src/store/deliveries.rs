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

/// Puts queued rotation entries in flight before their certificates are signed (state
/// `pending`, no version yet: no ack can finish them until `mark_issued`), so another
/// driver pass does not release them again. One that is never issued (its replica
/// died) fails by the delivery timeout like any unacknowledged delivery.
pub fn mark_in_flight(c: &mut Conn<'_>, ids: &[String], now: i64) -> QueryResult<()> {
    on_backend!(c, c => diesel::update(deliveries::table.filter(deliveries::id.eq_any(ids)))
        .set((deliveries::state.eq("pending"), deliveries::issued_at.eq(Some(now))))
        .execute(c))
    .map(drop)
}

/// Puts in-flight entries that were never issued (unsigned by the pass's deadline, or
/// their transaction failed) back in the queue.
pub fn requeue(c: &mut Conn<'_>, ids: &[String]) -> QueryResult<()> {
    on_backend!(c, c => diesel::update(deliveries::table
            .filter(deliveries::id.eq_any(ids))
            .filter(deliveries::state.eq("pending"))
            .filter(deliveries::version.is_null()))
        .set((deliveries::state.eq("queued"), deliveries::issued_at.eq(None::<i64>)))
        .execute(c))
    .map(drop)
}

const ISSUED_PG: &str = "UPDATE deliveries AS d SET state = 'pending', version = u.version, \
       issued_at = $2 \
     FROM json_to_recordset($1::json) AS u(id text, version bigint) WHERE d.id = u.id";

const ISSUED_SQLITE: &str = "UPDATE deliveries SET state = 'pending', version = u.version, \
       issued_at = ?2 \
     FROM (SELECT json_extract(j.value, '$.id') AS id, json_extract(j.value, '$.version') AS version \
             FROM json_each(?1) AS j) AS u \
     WHERE deliveries.id = u.id";

#[derive(serde::Serialize)]
struct Issued<'a> {
    id: &'a str,
    version: i64,
}

/// `mark_issued` for many deliveries, (id, version) each, in one statement.
pub fn mark_issued_many(c: &mut Conn<'_>, issued: &[(String, i64)], now: i64) -> QueryResult<()> {
    if issued.is_empty() {
        return Ok(());
    }
    use diesel::sql_types::{BigInt, Text};
    let rows: Vec<Issued<'_>> = issued
        .iter()
        .map(|(id, version)| Issued {
            id,
            version: *version,
        })
        .collect();
    let json = serde_json::to_string(&rows)
        .map_err(|e| diesel::result::Error::SerializationError(Box::new(e)))?;
    match c {
        Conn::Pg(c) => diesel::sql_query(ISSUED_PG)
            .bind::<Text, _>(json)
            .bind::<BigInt, _>(now)
            .execute(*c),
        Conn::Sqlite(c) => diesel::sql_query(ISSUED_SQLITE)
            .bind::<Text, _>(json)
            .bind::<BigInt, _>(now)
            .execute(*c),
    }
    .map(drop)
}
