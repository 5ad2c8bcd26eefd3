//! Group-committed acks: the statements one batch of acknowledgements runs, each
//! covering the whole batch (a JSON array bound as one parameter, unpacked by
//! `json_to_recordset` on PostgreSQL and `json_each` on SQLite).
//!
//! The caller decides each ack against the locked rows of [`targets`] and writes only
//! the accepted ones, at most one per node per batch.

use super::Conn;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Nullable, Text};

/// What an ack is checked against, read with the rows locked in key order.
#[derive(Debug, Clone, QueryableByName)]
pub struct AckTarget {
    #[diesel(sql_type = Text)]
    pub service: String,
    #[diesel(sql_type = Text)]
    pub node_id: String,
    #[diesel(sql_type = BigInt)]
    pub desired_version: i64,
    #[diesel(sql_type = Nullable<Text>)]
    pub desired_hash: Option<String>,
    #[diesel(sql_type = Text)]
    pub identity_serial: String,
    #[diesel(sql_type = Nullable<Text>)]
    pub prev_identity_serial: Option<String>,
    #[diesel(sql_type = Nullable<BigInt>)]
    pub prev_identity_until: Option<i64>,
}

/// One accepted ack as written.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AckRow {
    pub service: String,
    pub node_id: String,
    pub version: i64,
    pub hash: String,
    pub installed: bool,
    pub error: Option<String>,
    pub cert_not_after: Option<i64>,
    pub hook_exit_code: Option<i32>,
    pub clock_skew_ms: Option<i64>,
    pub agent_version: Option<String>,
    pub now: i64,
}

/// `FROM <rows> AS u` for each backend: the fields of the bound JSON array.
fn rows(c: &Conn<'_>, fields: &[(&str, &str)]) -> String {
    match c {
        Conn::Pg(_) => {
            let cols: Vec<String> = fields.iter().map(|(n, t)| format!("{n} {t}")).collect();
            format!("json_to_recordset($1::json) AS u({})", cols.join(", "))
        }
        Conn::Sqlite(_) => {
            let cols: Vec<String> = fields
                .iter()
                .map(|(n, _)| format!("json_extract(j.value, '$.{n}') AS {n}"))
                .collect();
            format!("(SELECT {} FROM json_each(?1) AS j) AS u", cols.join(", "))
        }
    }
}

fn json<T: serde::Serialize>(v: &T) -> QueryResult<String> {
    serde_json::to_string(v).map_err(|e| diesel::result::Error::SerializationError(Box::new(e)))
}

/// The nodes of `keys`, locked (PostgreSQL: `FOR NO KEY UPDATE`, in key order, so two
/// batches never wait on each other in a circle; SQLite's writer is alone already).
pub fn targets(c: &mut Conn<'_>, keys: &[(String, String)]) -> QueryResult<Vec<AckTarget>> {
    #[derive(serde::Serialize)]
    struct Key<'a> {
        service: &'a str,
        node_id: &'a str,
    }
    let keys: Vec<Key> = keys
        .iter()
        .map(|(s, n)| Key {
            service: s,
            node_id: n,
        })
        .collect();
    let sql = format!(
        "SELECT n.service, n.node_id, n.desired_version, n.desired_hash, n.identity_serial, \
                n.prev_identity_serial, n.prev_identity_until \
           FROM nodes n JOIN {} ON n.service = u.service AND n.node_id = u.node_id \
          ORDER BY n.service, n.node_id{}",
        rows(c, &[("service", "text"), ("node_id", "text")]),
        if matches!(c, Conn::Pg(_)) {
            " FOR NO KEY UPDATE OF n"
        } else {
            ""
        }
    );
    let keys = json(&keys)?;
    match c {
        Conn::Pg(c) => diesel::sql_query(sql).bind::<Text, _>(keys).load(*c),
        Conn::Sqlite(c) => diesel::sql_query(sql).bind::<Text, _>(keys).load(*c),
    }
}

const ACK_FIELDS: &[(&str, &str)] = &[
    ("service", "text"),
    ("node_id", "text"),
    ("version", "bigint"),
    ("hash", "text"),
    ("installed", "boolean"),
    ("error", "text"),
    ("cert_not_after", "bigint"),
    ("hook_exit_code", "integer"),
    ("clock_skew_ms", "bigint"),
    ("agent_version", "text"),
    ("now", "bigint"),
];

/// Applies the accepted acks to their nodes in one statement: an installed version
/// moves `acked_version` only forward (an older one changes nothing) and fills
/// `desired_hash` when a metadata change had left it empty; a failure records its
/// error. Returns rows changed.
pub fn record(c: &mut Conn<'_>, acks: &[AckRow]) -> QueryResult<usize> {
    if acks.is_empty() {
        return Ok(0);
    }
    let pg = matches!(c, Conn::Pg(_));
    let n = if pg { "n." } else { "nodes." };
    let sql = format!(
        "UPDATE nodes{alias} SET \
           acked_version = CASE WHEN u.installed THEN u.version ELSE {n}acked_version END, \
           acked_hash = CASE WHEN u.installed THEN u.hash ELSE {n}acked_hash END, \
           acked_at = CASE WHEN u.installed THEN u.now ELSE {n}acked_at END, \
           cert_not_after = CASE WHEN u.installed THEN u.cert_not_after ELSE {n}cert_not_after END, \
           last_error = CASE WHEN u.installed THEN NULL ELSE u.error END, \
           desired_hash = CASE WHEN u.installed AND {n}desired_hash IS NULL \
                                AND {n}desired_version = u.version THEN u.hash \
                               ELSE {n}desired_hash END, \
           hook_exit_code = u.hook_exit_code, \
           clock_skew_ms = u.clock_skew_ms, \
           agent_version = u.agent_version \
         FROM {rows} \
         WHERE {n}service = u.service AND {n}node_id = u.node_id \
           AND (NOT u.installed OR {n}acked_version <= u.version)",
        alias = if pg { " AS n" } else { "" },
        rows = rows(c, ACK_FIELDS),
    );
    let acks = json(&acks)?;
    match c {
        Conn::Pg(c) => diesel::sql_query(sql).bind::<Text, _>(acks).execute(*c),
        Conn::Sqlite(c) => diesel::sql_query(sql).bind::<Text, _>(acks).execute(*c),
    }
}

/// Finishes every pending delivery the accepted acks carry (version at or below the
/// acked one): delivered, or failed with the ack's error. One statement.
pub fn finish_deliveries(c: &mut Conn<'_>, acks: &[AckRow]) -> QueryResult<usize> {
    if acks.is_empty() {
        return Ok(0);
    }
    let pg = matches!(c, Conn::Pg(_));
    let d = if pg { "d." } else { "deliveries." };
    let sql = format!(
        "UPDATE deliveries{alias} SET \
           state = CASE WHEN u.installed THEN 'delivered' ELSE 'failed' END, \
           error = CASE WHEN u.installed THEN NULL ELSE u.error END, \
           finished_at = u.now \
         FROM {rows} \
         WHERE {d}service = u.service AND {d}node_id = u.node_id \
           AND {d}state = 'pending' AND {d}version <= u.version",
        alias = if pg { " AS d" } else { "" },
        rows = rows(c, ACK_FIELDS),
    );
    let acks = json(&acks)?;
    match c {
        Conn::Pg(c) => diesel::sql_query(sql).bind::<Text, _>(acks).execute(*c),
        Conn::Sqlite(c) => diesel::sql_query(sql).bind::<Text, _>(acks).execute(*c),
    }
}
