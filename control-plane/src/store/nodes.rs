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
}

impl NodeRow {
    /// Whether a certificate with `serial` may act for this node: the current identity,
    /// or the one it replaced (so a renewal whose answer was lost can be retried).
    pub fn accepts_serial(&self, serial: &str) -> bool {
        self.identity_serial == serial || self.prev_identity_serial.as_deref() == Some(serial)
    }
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
    let row: Option<(String, Option<String>, i64)> = on_backend!(c, c => nodes::table
        .find((service, node_id))
        .select((nodes::identity_serial, nodes::prev_identity_serial, nodes::desired_version))
        .first(c)
        .optional())?;
    Ok(
        row.map(|(identity_serial, prev_identity_serial, desired_version)| {
            crate::delivery::NodeAuth {
                identity_serial,
                prev_identity_serial,
                desired_version,
            }
        }),
    )
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

/// Which of `keys` are enrolled already.
pub fn existing(c: &mut Conn<'_>, keys: &[(String, String)]) -> QueryResult<Vec<(String, String)>> {
    let services: Vec<&str> = keys.iter().map(|(s, _)| s.as_str()).collect();
    let ids: Vec<&str> = keys.iter().map(|(_, n)| n.as_str()).collect();
    let found: Vec<(String, String)> = on_backend!(c, c => nodes::table
        .filter(nodes::service.eq_any(&services))
        .filter(nodes::node_id.eq_any(&ids))
        .select((nodes::service, nodes::node_id))
        .load(c))?;
    let wanted: std::collections::HashSet<&(String, String)> = keys.iter().collect();
    Ok(found.into_iter().filter(|k| wanted.contains(k)).collect())
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
            nodes::identity_not_after.eq(not_after),
            nodes::enrolled_at.eq(now),
        ))
        .execute(c))
    .map(drop)
}

/// Renewal over mTLS: the presented certificate stays valid until the next renewal.
/// (Liveness is not written here: the request touches the node's presence.)
pub fn renew_identity(
    c: &mut Conn<'_>,
    service: &str,
    node_id: &str,
    presented_serial: &str,
    new_serial: &str,
    not_after: i64,
) -> QueryResult<()> {
    on_backend!(c, c => diesel::update(nodes::table.find((service, node_id)))
        .set((
            nodes::identity_serial.eq(new_serial),
            nodes::prev_identity_serial.eq(Some(presented_serial)),
            nodes::identity_not_after.eq(not_after),
        ))
        .execute(c))
    .map(drop)
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

/// Nodes whose renewal time has come, oldest first, through the `renew_at` index.
/// On PostgreSQL the rows are locked and rows other replicas hold are skipped, so
/// several schedulers split the work instead of doing it twice.
pub fn due_for_renewal(
    c: &mut Conn<'_>,
    now: i64,
    limit: i64,
) -> QueryResult<Vec<(String, String)>> {
    let q = nodes::table
        .filter(nodes::renew_at.le(now))
        .order(nodes::renew_at)
        .limit(limit)
        .select((nodes::service, nodes::node_id));
    match c {
        Conn::Pg(c) => q.for_update().skip_locked().load(*c),
        Conn::Sqlite(c) => q.load(*c),
    }
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
