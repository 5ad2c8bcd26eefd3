//! `nodes`: enrolled nodes, keyed by (service, node id), with the serials of the
//! identity certificates that may currently authenticate them.

use super::schema::nodes;
use super::{Conn, on_backend};
use diesel::prelude::*;

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = nodes)]
pub struct NodeRow {
    pub service: String,
    pub node_id: String,
    pub state: String,
    pub identity_serial: String,
    pub prev_identity_serial: Option<String>,
    pub identity_not_after: i64,
    pub enrolled_at: i64,
    pub last_seen: Option<i64>,
    pub desired_version: i64,
    pub acked_version: i64,
    pub cert_not_after: Option<i64>,
    pub desired_hash: Option<String>,
    pub acked_hash: Option<String>,
    pub acked_at: Option<i64>,
    pub renew_at: Option<i64>,
    pub clock_skew_ms: Option<i64>,
    pub last_error: Option<String>,
    pub hook_exit_code: Option<i32>,
    pub agent_version: Option<String>,
    pub desired_at: Option<i64>,
    pub unseen_at: Option<i64>,
    /// The replica holding the node's long-poll now (no `unseen_at` meanwhile).
    pub held_by: Option<String>,
    /// Until when (unix ms) `prev_identity_serial` is accepted.
    pub prev_identity_until: Option<i64>,
    /// SHA-256 of the public key the node enrolled with (see `ca::issue::csr_key_id`).
    pub identity_key: Option<String>,
}

/// How long the identity a renewal replaced keeps working: long enough to retry a
/// renewal whose answer was lost, short enough that a stolen old identity is useless.
pub const PREV_IDENTITY_WINDOW_MS: i64 = 10 * 60 * 1000;

impl NodeRow {
    /// Whether a certificate with `serial` may act for this node at `now_ms`: the
    /// current identity, or (within its window) the one it renewed from.
    pub fn accepts_serial(&self, serial: &str, now_ms: i64) -> bool {
        accepts(
            &self.identity_serial,
            self.prev_identity_serial.as_deref(),
            self.prev_identity_until,
            serial,
            now_ms,
        )
    }
}

/// The one rule for which serials act for a node (rows, cache entries, acks).
pub fn accepts(
    current: &str,
    prev: Option<&str>,
    prev_until: Option<i64>,
    serial: &str,
    now_ms: i64,
) -> bool {
    current == serial || (prev == Some(serial) && prev_until.is_some_and(|u| now_ms < u))
}

pub fn get(c: &mut Conn<'_>, service: &str, node_id: &str) -> QueryResult<Option<NodeRow>> {
    on_backend!(c, c => nodes::table.find((service, node_id)).select(NodeRow::as_select()).first(c).optional())
}

/// What the agent API checks on a request: the accepted serials and the desired
/// version (cached per replica by `delivery::nodecache`).
pub fn auth(
    c: &mut Conn<'_>,
    service: &str,
    node_id: &str,
) -> QueryResult<Option<crate::delivery::NodeAuth>> {
    type Auth = (String, Option<String>, Option<i64>, i64);
    let row: Option<Auth> = on_backend!(c, c => nodes::table
        .find((service, node_id))
        .select((
            nodes::identity_serial,
            nodes::prev_identity_serial,
            nodes::prev_identity_until,
            nodes::desired_version,
        ))
        .first(c)
        .optional())?;
    Ok(row.map(
        |(identity_serial, prev_identity_serial, prev_identity_until, desired_version)| {
            crate::delivery::NodeAuth {
                identity_serial,
                prev_identity_serial,
                prev_identity_until,
                desired_version,
            }
        },
    ))
}

/// The node row, locked until the transaction ends on PostgreSQL (SQLite's writers
/// are serialized already): whoever computes the next desired version from it is not
/// overtaken by a concurrent bump.
pub fn get_for_update(
    c: &mut Conn<'_>,
    service: &str,
    node_id: &str,
) -> QueryResult<Option<NodeRow>> {
    macro_rules! q {
        () => {
            nodes::table
                .find((service, node_id))
                .select(NodeRow::as_select())
        };
    }
    match c {
        Conn::Pg(c) => q!().for_update().first(*c).optional(),
        Conn::Sqlite(c) => q!().first(*c).optional(),
    }
}

pub fn list(
    c: &mut Conn<'_>,
    service: &str,
    after: Option<&str>,
    limit: i64,
) -> QueryResult<Vec<NodeRow>> {
    let after = after.unwrap_or("").to_owned();
    let service = service.to_owned();
    on_backend!(c, c => nodes::table
        .filter(nodes::service.eq(&service))
        .filter(nodes::node_id.gt(&after))
        .order(nodes::node_id)
        .limit(limit)
        .select(NodeRow::as_select())
        .load(c))
}

pub fn insert(c: &mut Conn<'_>, row: &NodeRow) -> QueryResult<()> {
    on_backend!(c, c => diesel::insert_into(nodes::table).values(row).execute(c)).map(drop)
}

/// Many new nodes in few statements (a batch of enrollments).
pub fn insert_many(c: &mut Conn<'_>, rows: &[NodeRow]) -> QueryResult<()> {
    for chunk in rows.chunks(500) {
        on_backend!(c, c => diesel::insert_into(nodes::table).values(chunk).execute(c))?;
    }
    Ok(())
}

/// (service, node id).
pub type NodeKey = (String, String);

/// Which of `keys` are enrolled already, with the key each enrolled with.
pub fn existing(
    c: &mut Conn<'_>,
    keys: &[(String, String)],
) -> QueryResult<Vec<(NodeKey, Option<String>)>> {
    let services: Vec<&str> = keys.iter().map(|(s, _)| s.as_str()).collect();
    let ids: Vec<&str> = keys.iter().map(|(_, n)| n.as_str()).collect();
    let found: Vec<(String, String, Option<String>)> = on_backend!(c, c => nodes::table
        .filter(nodes::service.eq_any(&services))
        .filter(nodes::node_id.eq_any(&ids))
        .select((nodes::service, nodes::node_id, nodes::identity_key))
        .load(c))?;
    let wanted: std::collections::HashSet<&(String, String)> = keys.iter().collect();
    Ok(found
        .into_iter()
        .map(|(s, n, k)| ((s, n), k))
        .filter(|(key, _)| wanted.contains(key))
        .collect())
}

/// Re-enrollment: a fresh identity replaces every earlier one (the old key may be lost
/// or compromised, so its certificates stop working at once).
pub fn reenroll(
    c: &mut Conn<'_>,
    service: &str,
    node_id: &str,
    serial: &str,
    not_after: i64,
    now: i64,
) -> QueryResult<()> {
    on_backend!(c, c => diesel::update(nodes::table.find((service, node_id)))
        .set((
            nodes::identity_serial.eq(serial),
            nodes::prev_identity_serial.eq(None::<String>),
            nodes::prev_identity_until.eq(None::<i64>),
            nodes::identity_not_after.eq(not_after),
            nodes::enrolled_at.eq(now),
        ))
        .execute(c))
    .map(drop)
}

/// A replacement (a join token allowed to replace nodes, and a key the node never
/// held): on top of [`reenroll`], the node's issued key and certificate are destroyed
/// and a new bundle is due at once, so the replacing node never receives the replaced
/// node's key. Imported bundles stay: the operator imported them for the node id.
pub fn replace(
    c: &mut Conn<'_>,
    service: &str,
    node_id: &str,
    identity_key: &str,
    keep_bundle: bool,
    now: i64,
) -> QueryResult<()> {
    on_backend!(c, c => diesel::update(nodes::table.find((service, node_id)))
        .set((
            nodes::identity_key.eq(identity_key),
            nodes::renew_at.eq(Some(now)),
            nodes::desired_hash.eq(None::<String>),
        ))
        .execute(c))?;
    if !keep_bundle {
        use super::schema::bundles;
        on_backend!(c, c => diesel::delete(bundles::table.find((service, node_id))).execute(c))?;
    }
    Ok(())
}

/// One identity renewal: the certificate presented, the one issued and its key.
#[derive(Debug, Clone, Copy)]
pub struct Renewal<'a> {
    pub presented_serial: &'a str,
    pub new_serial: &'a str,
    pub identity_key: &'a str,
    pub not_after: i64,
    pub now: i64,
}

/// Renewal over mTLS. From the current identity: the presented certificate keeps
/// working for [`PREV_IDENTITY_WINDOW_MS`] (so a lost answer can be retried). From
/// that previous identity, within its window: the retry replaces the identity it
/// missed and closes the window, so an old identity can replace the current one once,
/// never again and again. Returns whether either applied (else the presented
/// identity is no longer accepted).
pub fn renew_identity(
    c: &mut Conn<'_>,
    service: &str,
    node_id: &str,
    r: &Renewal<'_>,
) -> QueryResult<bool> {
    let Renewal {
        presented_serial,
        new_serial,
        identity_key,
        not_after,
        now,
    } = *r;
    let from_current = on_backend!(c, c => diesel::update(nodes::table.find((service, node_id)))
        .filter(nodes::identity_serial.eq(presented_serial))
        .set((
            nodes::identity_serial.eq(new_serial),
            nodes::prev_identity_serial.eq(Some(presented_serial)),
            nodes::prev_identity_until.eq(Some(now + PREV_IDENTITY_WINDOW_MS)),
            nodes::identity_not_after.eq(not_after),
            nodes::identity_key.eq(identity_key),
        ))
        .execute(c))?;
    if from_current == 1 {
        return Ok(true);
    }
    let retry = on_backend!(c, c => diesel::update(nodes::table.find((service, node_id)))
        .filter(nodes::prev_identity_serial.eq(presented_serial))
        .filter(nodes::prev_identity_until.gt(now))
        .set((
            nodes::identity_serial.eq(new_serial),
            nodes::prev_identity_until.eq(Some(now)),
            nodes::identity_not_after.eq(not_after),
            nodes::identity_key.eq(identity_key),
        ))
        .execute(c))?;
    Ok(retry == 1)
}

/// Records a new desired version (the bundle row is written beside it).
pub fn set_desired(
    c: &mut Conn<'_>,
    service: &str,
    node_id: &str,
    version: i64,
    hash: &str,
    renew_at: Option<i64>,
    now: i64,
) -> QueryResult<()> {
    on_backend!(c, c => diesel::update(nodes::table.find((service, node_id)))
        .set((
            nodes::desired_version.eq(version),
            nodes::desired_hash.eq(hash),
            nodes::renew_at.eq(renew_at),
            nodes::desired_at.eq(Some(now)),
        ))
        .execute(c))
    .map(drop)
}

/// A node's new desired state, as a batch writes it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Desired {
    pub node_id: String,
    pub version: i64,
    pub hash: String,
    pub renew_at: Option<i64>,
    /// When the version was set (`desired_at`).
    pub at: i64,
}

const SET_DESIRED_PG: &str = "UPDATE nodes AS n SET desired_version = u.version, \
       desired_hash = u.hash, renew_at = u.renew_at, desired_at = u.at \
     FROM json_to_recordset($1::json) AS u(node_id text, version bigint, hash text, renew_at bigint, at bigint) \
     WHERE n.service = $2 AND n.node_id = u.node_id";

const SET_DESIRED_SQLITE: &str = "UPDATE nodes SET desired_version = u.version, \
       desired_hash = u.hash, renew_at = u.renew_at, desired_at = u.at \
     FROM (SELECT json_extract(j.value, '$.node_id') AS node_id, \
                  json_extract(j.value, '$.version') AS version, \
                  json_extract(j.value, '$.hash') AS hash, \
                  json_extract(j.value, '$.renew_at') AS renew_at, \
                  json_extract(j.value, '$.at') AS at \
             FROM json_each(?1) AS j) AS u \
     WHERE nodes.service = ?2 AND nodes.node_id = u.node_id";

/// Sets the desired state of many nodes of one service in one statement.
pub fn set_desired_many(c: &mut Conn<'_>, service: &str, rows: &[Desired]) -> QueryResult<usize> {
    if rows.is_empty() {
        return Ok(0);
    }
    use diesel::sql_types::Text;
    let json = serde_json::to_string(rows)
        .map_err(|e| diesel::result::Error::SerializationError(Box::new(e)))?;
    match c {
        Conn::Pg(c) => diesel::sql_query(SET_DESIRED_PG)
            .bind::<Text, _>(json)
            .bind::<Text, _>(service)
            .execute(*c),
        Conn::Sqlite(c) => diesel::sql_query(SET_DESIRED_SQLITE)
            .bind::<Text, _>(json)
            .bind::<Text, _>(service)
            .execute(*c),
    }
}

/// Locks the rows of `ids` in service `service`, in node-id order (the lock order every
/// batch writer keeps, so that two batches cannot deadlock), and returns them.
pub fn lock_many(c: &mut Conn<'_>, service: &str, ids: &[String]) -> QueryResult<Vec<NodeRow>> {
    macro_rules! q {
        () => {
            nodes::table
                .filter(nodes::service.eq(service))
                .filter(nodes::node_id.eq_any(ids))
                .order(nodes::node_id)
                .select(NodeRow::as_select())
        };
    }
    match c {
        Conn::Pg(c) => q!().for_update().load(*c),
        Conn::Sqlite(c) => q!().load(*c),
    }
}

/// Nothing scheduled for the node (its certificates are imported).
pub fn clear_renew_at(c: &mut Conn<'_>, service: &str, node_id: &str) -> QueryResult<()> {
    on_backend!(c, c => diesel::update(nodes::table.find((service, node_id)))
        .set(nodes::renew_at.eq(None::<i64>))
        .execute(c))
    .map(drop)
}

/// Moves only the renewal time (a failed issue is retried later).
pub fn set_desired_renew_at(
    c: &mut Conn<'_>,
    service: &str,
    node_id: &str,
    renew_at: i64,
) -> QueryResult<()> {
    on_backend!(c, c => diesel::update(nodes::table.find((service, node_id)))
        .set(nodes::renew_at.eq(Some(renew_at)))
        .execute(c))
    .map(drop)
}

#[derive(QueryableByName)]
struct Claimed {
    #[diesel(sql_type = diesel::sql_types::Text)]
    service: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    node_id: String,
}

/// Claims up to `limit` nodes whose renewal is due (`renew_at` index, oldest first) by
/// moving their `renew_at` to `lease_until`, in one statement: no other replica picks
/// them while this one signs outside any transaction, and if it dies they come due
/// again at `lease_until`. On PostgreSQL rows another claim holds are skipped.
pub fn claim_due(
    c: &mut Conn<'_>,
    now: i64,
    limit: i64,
    lease_until: i64,
) -> QueryResult<Vec<(String, String)>> {
    const PG: &str = "UPDATE nodes SET renew_at = $1 WHERE (service, node_id) IN ( \
           SELECT service, node_id FROM nodes WHERE renew_at <= $2 \
            ORDER BY renew_at LIMIT $3 FOR UPDATE SKIP LOCKED) \
         RETURNING service, node_id";
    const SQLITE: &str = "UPDATE nodes SET renew_at = ?1 WHERE (service, node_id) IN ( \
           SELECT service, node_id FROM nodes WHERE renew_at <= ?2 \
            ORDER BY renew_at LIMIT ?3) \
         RETURNING service, node_id";
    use diesel::sql_types::BigInt;
    let rows: Vec<Claimed> = match c {
        Conn::Pg(c) => diesel::sql_query(PG)
            .bind::<BigInt, _>(lease_until)
            .bind::<BigInt, _>(now)
            .bind::<BigInt, _>(limit)
            .load(*c)?,
        Conn::Sqlite(c) => diesel::sql_query(SQLITE)
            .bind::<BigInt, _>(lease_until)
            .bind::<BigInt, _>(now)
            .bind::<BigInt, _>(limit)
            .load(*c)?,
    };
    let mut out: Vec<(String, String)> = rows.into_iter().map(|r| (r.service, r.node_id)).collect();
    out.sort();
    Ok(out)
}

/// Hands claimed nodes back (due now) when their issue did not happen: unsigned by the
/// pass's deadline, or their transaction failed. A node written since (its `renew_at`
/// is no longer the claim's) is left alone.
pub fn release_claims(
    c: &mut Conn<'_>,
    claimed: &[(String, String)],
    lease_until: i64,
    now: i64,
) -> QueryResult<()> {
    for (service, node_id) in claimed {
        on_backend!(c, c => diesel::update(nodes::table.find((service, node_id)).filter(nodes::renew_at.eq(lease_until)))
            .set(nodes::renew_at.eq(Some(now)))
            .execute(c))?;
    }
    Ok(())
}

pub fn ids_for_service(c: &mut Conn<'_>, service: &str) -> QueryResult<Vec<String>> {
    on_backend!(c, c => nodes::table
        .filter(nodes::service.eq(service))
        .order(nodes::node_id)
        .select(nodes::node_id)
        .load(c))
}

pub fn delete(c: &mut Conn<'_>, service: &str, node_id: &str) -> QueryResult<usize> {
    on_backend!(c, c => diesel::delete(nodes::table.find((service, node_id))).execute(c))
}
