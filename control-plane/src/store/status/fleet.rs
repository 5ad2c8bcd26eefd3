//! The fleet line of the status summary, aggregated in SQL in one statement: exact over
//! every service the caller sees, whatever page of services it asked for, without
//! reading one line per service. Each count is read from the counter or index the
//! per-service lines use (see the parent module), so it costs the number of services
//! (summing `node_count`) plus the nodes that are not fine.
//!
//! Alerts and deliveries are not tied to services by a foreign key, so they count only
//! while their service exists (as the lines do); nodes and inventory rows go with their
//! service.

use super::{DAY_MS, HOUR_MS, STALE_REASONS, ServiceCounts};
use crate::store::{Conn, on_backend};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};

/// The fleet's counts in one row.
#[derive(Debug, QueryableByName)]
struct Totals {
    #[diesel(sql_type = BigInt)]
    nodes: i64,
    #[diesel(sql_type = BigInt)]
    pending: i64,
    #[diesel(sql_type = BigInt)]
    stale: i64,
    #[diesel(sql_type = BigInt)]
    no_cert: i64,
    #[diesel(sql_type = BigInt)]
    long_lived: i64,
    #[diesel(sql_type = BigInt)]
    deliveries: i64,
    #[diesel(sql_type = BigInt)]
    firing: i64,
    #[diesel(sql_type = BigInt)]
    expiring: i64,
    #[diesel(sql_type = BigInt)]
    never_enrolled: i64,
}

/// The statement; `p(i)` is the backend's spelling of the i-th bind (`$i` or `?i`):
/// 1 = now + 24 h, 2 = now - 1 h, 3 = the tenant (only with `tenant`).
///
/// Alerts are grouped per service before they meet `services` (streamed in order from
/// `alerts_firing`), so the join costs the services with firing alerts, not the alerts.
fn statement(p: fn(u8) -> String, tenant: bool) -> String {
    let reasons = STALE_REASONS.map(|r| format!("'{r}'")).join(", ");
    // Nodes and inventory rows go with their service: only a tenant needs a filter.
    // Deliveries and alerts stay after their service is deleted: always joined.
    let (services_where, nodes_of, visible) = match tenant {
        true => {
            let t = p(3);
            (
                format!(" WHERE s.tenant = {t}"),
                format!(" AND n.service IN (SELECT name FROM services WHERE tenant = {t})"),
                format!("(SELECT name FROM services WHERE tenant = {t})"),
            )
        }
        false => (
            String::new(),
            String::new(),
            "(SELECT name FROM services)".to_owned(),
        ),
    };
    let inventory_of = nodes_of.replace("n.service", "i.service");
    format!(
        "SELECT \
         (SELECT CAST(COALESCE(SUM(s.node_count), 0) AS BIGINT) FROM services s{services_where}) AS nodes, \
         (SELECT COUNT(*) FROM nodes n \
          WHERE (n.acked_version < n.desired_version OR n.cert_not_after IS NULL){nodes_of} \
          AND NOT EXISTS (SELECT 1 FROM alerts x WHERE x.state = 'firing' AND x.service = n.service \
              AND x.node_id = n.node_id AND x.reason IN ({reasons}))) AS pending, \
         (SELECT COUNT(*) FROM nodes n WHERE n.cert_not_after IS NULL{nodes_of}) AS no_cert, \
         (SELECT COUNT(*) FROM nodes n WHERE n.cert_not_after >= {day}{nodes_of}) AS long_lived, \
         (SELECT COUNT(*) FROM deliveries d WHERE d.created_at > {hour} AND d.service IN {visible}) AS deliveries, \
         (SELECT COUNT(*) FROM inventory i WHERE NOT EXISTS \
          (SELECT 1 FROM nodes m WHERE m.service = i.service AND m.node_id = i.node_id){inventory_of}) AS never_enrolled, \
         al.firing, al.expiring, al.stale \
         FROM (SELECT CAST(COALESCE(SUM(g.firing), 0) AS BIGINT) AS firing, \
           CAST(COALESCE(SUM(g.expiring), 0) AS BIGINT) AS expiring, \
           CAST(COALESCE(SUM(g.stale), 0) AS BIGINT) AS stale \
           FROM services s JOIN (SELECT a.service, COUNT(*) AS firing, \
             SUM(CASE WHEN a.reason = 'expiring' THEN 1 ELSE 0 END) AS expiring, \
             COUNT(DISTINCT CASE WHEN a.node_id <> '' AND a.reason IN ({reasons}) THEN a.node_id END) AS stale \
             FROM alerts a WHERE a.state = 'firing' GROUP BY a.service) g ON g.service = s.name{services_where}) al",
        day = p(1),
        hour = p(2),
    )
}

/// The admin's statement as PostgreSQL receives it (binds `$1` = now + 24 h, `$2` =
/// now - 1 h), for EXPLAIN in `ferry-bench-staleness`.
pub fn postgres_statement() -> String {
    statement(pg, false)
}

fn pg(i: u8) -> String {
    format!("${i}")
}

fn sqlite(i: u8) -> String {
    format!("?{i}")
}

/// The fleet line (`service` is `*`) over the services of `tenant` (None: every
/// service). `ok` and `expiring_24h` are derived as on each line.
pub fn fleet(c: &mut Conn<'_>, now: i64, tenant: Option<&str>) -> QueryResult<ServiceCounts> {
    let (day, hour) = (now + DAY_MS, now - HOUR_MS);
    let spelling: fn(u8) -> String = match c {
        Conn::Pg(_) => pg,
        Conn::Sqlite(_) => sqlite,
    };
    let sql = statement(spelling, tenant.is_some());
    let t: Totals = on_backend!(c, c => {
        let q = diesel::sql_query(&sql).bind::<BigInt, _>(day).bind::<BigInt, _>(hour);
        match tenant {
            Some(name) => q.bind::<Text, _>(name).get_result(c),
            None => q.get_result(c),
        }
    })?;
    Ok(ServiceCounts {
        service: "*".to_owned(),
        nodes: t.nodes,
        ok: (t.nodes - t.pending - t.stale).max(0),
        pending: t.pending,
        stale: t.stale,
        never_enrolled: t.never_enrolled,
        expiring_24h: (t.nodes - t.no_cert - t.long_lived).max(0),
        expiring_alert_before: t.expiring,
        deliveries_last_hour: t.deliveries,
        firing_alerts: t.firing,
        outage_budget_seconds: 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_bind_is_spelled_for_its_backend_and_the_tenant_scopes_every_table() {
        let admin = statement(pg, false);
        assert!(admin.contains("$1") && admin.contains("$2") && !admin.contains("$3"));
        assert!(!admin.contains("tenant"), "{admin}");
        let tenant = statement(sqlite, true);
        assert!(!tenant.contains('$'), "{tenant}");
        // nodes, pending, no_cert, long_lived, deliveries, never_enrolled and the alerts
        // (firing, expiring, stale): each reads only the tenant's services.
        assert_eq!(tenant.matches("tenant = ?3").count(), 7, "{tenant}");
    }
}
