//! The staleness detector's questions, answered by the database as anti-joins: which
//! (service, node, reason) is stale and has no firing alert yet (to fire), and which
//! firing alert of the detector's reasons has no stale cause any more (to resolve).
//! Only the changes cross the wire; a pass where nothing changed returns no row.
//!
//! "Stale" is one definition, `STALE` below, used by both questions: lagging (behind
//! the desired version for longer than the service's grace, `nodes_lagging`), unseen
//! (past the `unseen_at` deadline, `nodes_unseen_at`), expiring (installed certificate
//! inside the service's `alert_before`, `nodes_cert_not_after`); and stale-share, a
//! service whose stale nodes are more than the given share of its `node_count`.

use super::Conn;
use super::alerts::AlertRow;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Double, Nullable, Text};

/// The stale (service, node, reason) rows and, per service, the share past the limit.
/// Binds: $1 now, $2 now + the largest `alert_before` (the index range for expiring),
/// $3 the stale share.
const STALE: &str = "WITH stale AS ( \
    SELECT n.service AS service, n.node_id AS node_id, 'lagging' AS reason, \
           n.acked_version AS a, n.desired_version AS b \
      FROM nodes n JOIN services s ON s.name = n.service \
     WHERE n.acked_version < n.desired_version AND n.desired_at < $1 \
       AND n.desired_at < $1 - s.grace_seconds * 1000 \
    UNION ALL \
    SELECT n.service, n.node_id, 'unseen', n.last_seen, NULL \
      FROM nodes n WHERE n.unseen_at < $1 \
    UNION ALL \
    SELECT n.service, n.node_id, 'expiring', n.cert_not_after, NULL \
      FROM nodes n JOIN services s ON s.name = n.service \
     WHERE n.cert_not_after < $2 AND n.cert_not_after < $1 + s.alert_before_seconds * 1000 \
  ), per AS ( \
    SELECT service, COUNT(DISTINCT node_id) AS stale FROM stale GROUP BY service \
  ), over AS ( \
    SELECT per.service AS service, per.stale AS stale, s.node_count AS total \
      FROM per JOIN services s ON s.name = per.service \
     WHERE s.node_count > 0 AND per.stale > $3 * s.node_count \
  ) ";

// One statement, so the stale set is computed once: the firing alerts without a stale
// cause (to resolve), the stale causes without a firing alert (to fire), and a count
// row. Each question is its own UNION ALL branch: a NOT EXISTS under OR could not
// become an anti-join and would run once per firing alert (2 s at 10,000 stale).
const CHANGES: &str = "SELECT 'resolve' AS kind, al.id AS id, al.service AS service, \
           al.node_id AS node_id, al.reason AS reason, al.detail AS detail, \
           al.fired_at AS fired_at, CAST(NULL AS BIGINT) AS a, CAST(NULL AS BIGINT) AS b \
      FROM alerts al \
     WHERE al.state = 'firing' AND al.reason IN ('lagging', 'unseen', 'expiring') \
       AND NOT EXISTS (SELECT 1 FROM stale st WHERE st.service = al.service \
            AND st.node_id = al.node_id AND st.reason = al.reason) \
    UNION ALL \
    SELECT 'resolve', al.id, al.service, al.node_id, al.reason, al.detail, al.fired_at, \
           NULL, NULL FROM alerts al \
     WHERE al.state = 'firing' AND al.reason = 'stale-share' \
       AND NOT EXISTS (SELECT 1 FROM over o WHERE o.service = al.service) \
    UNION ALL \
    SELECT 'fire', '', st.service, st.node_id, st.reason, '', 0, st.a, st.b FROM stale st \
     WHERE NOT EXISTS (SELECT 1 FROM alerts al WHERE al.state = 'firing' \
        AND al.service = st.service AND al.node_id = st.node_id AND al.reason = st.reason) \
    UNION ALL \
    SELECT 'fire', '', o.service, '', 'stale-share', '', 0, o.stale, o.total FROM over o \
     WHERE NOT EXISTS (SELECT 1 FROM alerts al WHERE al.state = 'firing' \
        AND al.service = o.service AND al.node_id = '' AND al.reason = 'stale-share') \
    UNION ALL \
    SELECT 'count', '', '', '', '', '', 0, \
           (SELECT CAST(COALESCE(SUM(stale), 0) AS BIGINT) FROM per), NULL \
    ORDER BY 1, 3, 4, 5";

/// A (service, node, reason) that is stale and not alerted yet, with the figures its
/// alert's detail names: lagging (acked, desired), unseen (last seen, -), expiring
/// (certificate not-after, -), stale-share (stale nodes, node count; node is '').
#[derive(Debug, Clone, PartialEq, Eq, QueryableByName)]
pub struct ToFire {
    #[diesel(sql_type = Text)]
    pub service: String,
    #[diesel(sql_type = Text)]
    pub node_id: String,
    #[diesel(sql_type = Text)]
    pub reason: String,
    #[diesel(sql_type = Nullable<BigInt>)]
    pub a: Option<i64>,
    #[diesel(sql_type = Nullable<BigInt>)]
    pub b: Option<i64>,
}

#[derive(QueryableByName)]
struct Row {
    #[diesel(sql_type = Text)]
    kind: String,
    #[diesel(sql_type = Text)]
    id: String,
    #[diesel(sql_type = Text)]
    service: String,
    #[diesel(sql_type = Text)]
    node_id: String,
    #[diesel(sql_type = Text)]
    reason: String,
    #[diesel(sql_type = Text)]
    detail: String,
    #[diesel(sql_type = BigInt)]
    fired_at: i64,
    #[diesel(sql_type = Nullable<BigInt>)]
    a: Option<i64>,
    #[diesel(sql_type = Nullable<BigInt>)]
    b: Option<i64>,
}

/// What the detector must change now.
#[derive(Debug, Default)]
pub struct Changes {
    pub to_fire: Vec<ToFire>,
    pub to_resolve: Vec<AlertRow>,
    /// Distinct stale nodes (for the pass's log line and report).
    pub stale_nodes: i64,
}

/// The detector's statement as PostgreSQL receives it (binds `$1` now, `$2` now + the
/// largest `alert_before`, `$3` the stale share), for plans in the benchmarks.
pub fn postgres_statement() -> String {
    format!("{STALE}{CHANGES}")
}

/// The statement text for the connection's backend: PostgreSQL numbers its parameters
/// `$n`, SQLite `?n` (the same numbering, so one text serves both).
fn text(c: &Conn<'_>, tail: &str) -> String {
    let sql = format!("{STALE}{tail}");
    match c {
        Conn::Pg(_) => sql,
        Conn::Sqlite(_) => sql.replace('$', "?"),
    }
}

macro_rules! run {
    ($c:expr, $sql:expr, $now:expr, $horizon:expr, $share:expr, $row:ty) => {
        match $c {
            Conn::Pg(c) => diesel::sql_query($sql)
                .bind::<BigInt, _>($now)
                .bind::<BigInt, _>($now + $horizon)
                .bind::<Double, _>($share)
                .load::<$row>(*c),
            Conn::Sqlite(c) => diesel::sql_query($sql)
                .bind::<BigInt, _>($now)
                .bind::<BigInt, _>($now + $horizon)
                .bind::<Double, _>($share)
                .load::<$row>(*c),
        }
    };
}

/// Runs the detector's questions at `now`, in one statement: `horizon_ms` is the
/// largest `alert_before` of any service, `stale_share` the share of a service's nodes
/// that makes it stale.
pub fn changes(
    c: &mut Conn<'_>,
    now: i64,
    horizon_ms: i64,
    stale_share: f64,
) -> QueryResult<Changes> {
    let sql = text(c, CHANGES);
    let mut out = Changes::default();
    for r in run!(c, &sql, now, horizon_ms, stale_share, Row)? {
        match r.kind.as_str() {
            "resolve" => out.to_resolve.push(AlertRow {
                id: r.id,
                service: r.service,
                node_id: r.node_id,
                reason: r.reason,
                state: "firing".into(),
                detail: r.detail,
                fired_at: r.fired_at,
                resolved_at: None,
            }),
            "fire" => out.to_fire.push(ToFire {
                service: r.service,
                node_id: r.node_id,
                reason: r.reason,
                a: r.a,
                b: r.b,
            }),
            _ => out.stale_nodes = r.a.unwrap_or(0),
        }
    }
    Ok(out)
}
