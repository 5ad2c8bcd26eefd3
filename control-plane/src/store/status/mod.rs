//! The status summary's counts: one line per service ([`lines`], [`page`]) and the
//! fleet total ([`fleet`], aggregated in SQL). Each figure comes from a counter or from
//! an index that holds only the nodes it counts (migrations 0005 and 0010), so a page
//! costs its services plus their nodes that are not fine, and the fleet total costs the
//! number of services plus the nodes that are not fine, never a scan of the fleet:
//!
//! - nodes: `services.node_count`, kept by triggers on node insert and delete;
//! - pending: nodes behind their desired version or without an installed certificate
//!   yet (the `nodes_pending` partial index), less the stale ones;
//! - stale and expiring within `alert_before`: the firing alerts the detector keeps;
//! - expiring within 24 h: nodes minus those without a certificate minus those valid for
//!   more than 24 h, both read from `nodes_cert_not_after` / `nodes_service_expiry`
//!   (small ends with short-lived certificates);
//! - deliveries in the last hour: the `deliveries_created` index;
//! - never enrolled: inventory rows without a node (only services with an inventory).

mod fleet;

pub use fleet::{fleet, postgres_statement};

use super::schema::{alerts, deliveries, nodes, services};
use super::{Conn, on_backend};
use diesel::dsl::count_star;
use diesel::prelude::*;
use std::collections::{HashMap, HashSet};

const DAY_MS: i64 = 86_400_000;
const HOUR_MS: i64 = 3_600_000;
/// Alert reasons that make an enrolled node stale (others, like `not-in-inventory`,
/// are counted as firing alerts only).
const STALE_REASONS: [&str; 3] = ["lagging", "unseen", "expiring"];

/// One service's counts (`service` is `*` for the fleet total).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServiceCounts {
    pub service: String,
    pub nodes: i64,
    /// Acknowledged their desired version and not stale.
    pub ok: i64,
    /// Behind their desired version or without a certificate yet, and not stale.
    pub pending: i64,
    /// With at least one firing staleness alert (lagging, unseen, expiring).
    pub stale: i64,
    /// Listed in the service's inventory, not enrolled.
    pub never_enrolled: i64,
    pub expiring_24h: i64,
    /// With a firing `expiring` alert: inside the service's `alert_before`.
    pub expiring_alert_before: i64,
    pub deliveries_last_hour: i64,
    pub firing_alerts: i64,
    pub outage_budget_seconds: i64,
}

/// A service as the summary reads it: name, node counter, certificate TTL and
/// `renew_before` (for the outage budget).
type ServiceHead = (String, i64, i64, i64);

/// Lines of every service, in name order (for `/metrics` and the dashboard, which
/// need them all).
pub fn counts(c: &mut Conn<'_>, now: i64) -> QueryResult<Vec<ServiceCounts>> {
    let heads: Vec<ServiceHead> = on_backend!(c, c => services::table
        .order(services::name)
        .select((services::name, services::node_count, services::cert_ttl_seconds, services::renew_before_seconds))
        .load(c))?;
    lines(c, now, heads, None)
}

/// Up to `limit` lines in name order after the service named `after`, of the services
/// of `tenant` (None: every service).
pub fn page(
    c: &mut Conn<'_>,
    now: i64,
    tenant: Option<&str>,
    after: Option<&str>,
    limit: i64,
) -> QueryResult<Vec<ServiceCounts>> {
    let after = after.unwrap_or("").to_owned();
    let tenant = tenant.map(str::to_owned);
    let heads: Vec<ServiceHead> = on_backend!(c, c => {
        let mut q = services::table
            .filter(services::name.gt(&after))
            .order(services::name)
            .limit(limit)
            .select((services::name, services::node_count, services::cert_ttl_seconds, services::renew_before_seconds))
            .into_boxed();
        if let Some(t) = &tenant {
            q = q.filter(services::tenant.eq(t));
        }
        q.load(c)
    })?;
    let names: Vec<String> = heads.iter().map(|h| h.0.clone()).collect();
    if names.is_empty() {
        return Ok(Vec::new());
    }
    lines(c, now, heads, Some(&names))
}

/// The line of the service named `name`, if there is one (visibility is the caller's
/// to check).
pub fn named(c: &mut Conn<'_>, now: i64, name: &str) -> QueryResult<Option<ServiceCounts>> {
    let heads: Vec<ServiceHead> = on_backend!(c, c => services::table
        .filter(services::name.eq(name))
        .select((services::name, services::node_count, services::cert_ttl_seconds, services::renew_before_seconds))
        .load(c))?;
    let names = [name.to_owned()];
    Ok(lines(c, now, heads, Some(&names))?.pop())
}

/// The lines of `heads`; `only` names them when they are not every service, so each
/// query reads only their part of its index.
fn lines(
    c: &mut Conn<'_>,
    now: i64,
    heads: Vec<ServiceHead>,
    only: Option<&[String]>,
) -> QueryResult<Vec<ServiceCounts>> {
    // Boxed so the service filter is added only for a page; one copy per backend.
    macro_rules! scoped {
        ($q:expr, $col:expr) => {{
            let mut q = $q.into_boxed();
            if let Some(names) = only {
                q = q.filter($col.eq_any(names));
            }
            q
        }};
    }
    let unsettled: Vec<(String, String)> = on_backend!(c, c => scoped!(nodes::table
        .filter(nodes::acked_version.lt(nodes::desired_version).or(nodes::cert_not_after.is_null()))
        .select((nodes::service, nodes::node_id)), nodes::service)
        .load(c))?;
    let firing: Vec<(String, String, String)> = on_backend!(c, c => scoped!(alerts::table
        .filter(alerts::state.eq("firing"))
        .select((alerts::service, alerts::node_id, alerts::reason)), alerts::service)
        .load(c))?;
    let no_cert: Vec<(String, i64)> = on_backend!(c, c => scoped!(nodes::table
        .filter(nodes::cert_not_after.is_null())
        .group_by(nodes::service)
        .select((nodes::service, count_star())), nodes::service)
        .load(c))?;
    let long_lived: Vec<(String, i64)> = on_backend!(c, c => scoped!(nodes::table
        .filter(nodes::cert_not_after.ge(now + DAY_MS))
        .group_by(nodes::service)
        .select((nodes::service, count_star())), nodes::service)
        .load(c))?;
    let deliveries: Vec<(String, i64)> = on_backend!(c, c => scoped!(deliveries::table
        .filter(deliveries::created_at.gt(now - HOUR_MS))
        .group_by(deliveries::service)
        .select((deliveries::service, count_star())), deliveries::service)
        .load(c))?;
    // Costs the inventories' size, and only services that have one.
    let never = super::objects::never_enrolled_counts(c, only)?;
    let by_service =
        |rows: Vec<(String, i64)>| -> HashMap<String, i64> { rows.into_iter().collect() };
    let mut lines = assemble(
        heads,
        &unsettled,
        &firing,
        &Grouped {
            no_cert: by_service(no_cert),
            long_lived: by_service(long_lived),
            deliveries: by_service(deliveries),
        },
    );
    let never = by_service(never);
    for l in &mut lines {
        l.never_enrolled = never.get(&l.service).copied().unwrap_or(0);
    }
    Ok(lines)
}

/// Per-service counts read straight from an index.
struct Grouped {
    no_cert: HashMap<String, i64>,
    long_lived: HashMap<String, i64>,
    deliveries: HashMap<String, i64>,
}

/// Combines the counts; kept apart from the queries so the arithmetic is plain.
/// `unsettled` holds each node behind its desired version or without a certificate
/// once; `firing` is (service, node, reason) of every firing alert.
fn assemble(
    heads: Vec<ServiceHead>,
    unsettled: &[(String, String)],
    firing: &[(String, String, String)],
    grouped: &Grouped,
) -> Vec<ServiceCounts> {
    let stale: HashSet<(&str, &str)> = firing
        .iter()
        .filter(|(_, node, reason)| !node.is_empty() && STALE_REASONS.contains(&reason.as_str()))
        .map(|(svc, node, _)| (svc.as_str(), node.as_str()))
        .collect();
    let mut per: HashMap<&str, ServiceCounts> = HashMap::new();
    for (svc, _) in &stale {
        per.entry(svc).or_default().stale += 1;
    }
    for (svc, _, reason) in firing {
        let line = per.entry(svc.as_str()).or_default();
        line.firing_alerts += 1;
        if reason == "expiring" {
            line.expiring_alert_before += 1;
        }
    }
    for (svc, node) in unsettled {
        if !stale.contains(&(svc.as_str(), node.as_str())) {
            per.entry(svc.as_str()).or_default().pending += 1;
        }
    }
    let get = |m: &HashMap<String, i64>, s: &str| m.get(s).copied().unwrap_or(0);
    heads
        .into_iter()
        .map(|(name, nodes, ttl, renew_before)| {
            let mut line = per.remove(name.as_str()).unwrap_or_default();
            line.nodes = nodes;
            line.ok = (nodes - line.pending - line.stale).max(0);
            let without_cert = get(&grouped.no_cert, &name);
            line.expiring_24h = (nodes - without_cert - get(&grouped.long_lived, &name)).max(0);
            line.deliveries_last_hour = get(&grouped.deliveries, &name);
            line.outage_budget_seconds = ttl - renew_before;
            line.service = name;
            line
        })
        .collect()
}
