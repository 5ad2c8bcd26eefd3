//! The status summary's counts. Each comes from a counter or from an index that holds
//! only the nodes it counts (migration 0005), so a summary costs the number of services
//! plus the number of nodes that are not fine, never a scan of the fleet:
//!
//! - nodes: `services.node_count`, kept by triggers on node insert and delete;
//! - pending: nodes behind their desired version (the `nodes_lagging` partial index) or
//!   without an installed certificate yet (the null end of `nodes_cert_not_after`);
//! - stale and expiring within `alert_before`: the firing alerts the detector keeps;
//! - expiring within 24 h: nodes minus those without a certificate minus those valid for
//!   more than 24 h, both read from `nodes_cert_not_after` (small ends with short-lived
//!   certificates);
//! - deliveries in the last hour: the `deliveries_created` index;
//! - never enrolled: inventory rows without a node (only services with an inventory).

use super::alerts::AlertRow;
use super::schema::{deliveries, nodes, services};
use super::{Conn, on_backend};
use diesel::dsl::count_star;
use diesel::prelude::*;
use std::collections::{HashMap, HashSet};

const DAY_MS: i64 = 86_400_000;
const HOUR_MS: i64 = 3_600_000;
/// Alert reasons that make an enrolled node stale (others, like `not-in-inventory`,
/// are counted as firing alerts only).
const STALE_REASONS: [&str; 3] = ["lagging", "unseen", "expiring"];

/// One service's counts.
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

/// Counts of every service, in name order.
pub fn counts(c: &mut Conn<'_>, now: i64) -> QueryResult<Vec<ServiceCounts>> {
    let svcs: Vec<(String, i64, i64, i64)> = on_backend!(c, c => services::table
        .order(services::name)
        .select((services::name, services::node_count, services::cert_ttl_seconds, services::renew_before_seconds))
        .load(c))?;
    let lagging: Vec<(String, String)> = on_backend!(c, c => nodes::table
        .filter(nodes::acked_version.lt(nodes::desired_version))
        .select((nodes::service, nodes::node_id))
        .load(c))?;
    let no_cert: Vec<(String, String)> = on_backend!(c, c => nodes::table
        .filter(nodes::cert_not_after.is_null())
        .select((nodes::service, nodes::node_id))
        .load(c))?;
    let grouped = |c: &mut Conn<'_>, which: u8| -> QueryResult<HashMap<String, i64>> {
        let rows: Vec<(String, i64)> = on_backend!(c, c => match which {
            0 => nodes::table
                .filter(nodes::cert_not_after.ge(now + DAY_MS))
                .group_by(nodes::service)
                .select((nodes::service, count_star()))
                .load(c),
            _ => deliveries::table
                .filter(deliveries::created_at.gt(now - HOUR_MS))
                .group_by(deliveries::service)
                .select((deliveries::service, count_star()))
                .load(c),
        })?;
        Ok(rows.into_iter().collect())
    };
    let (long_lived, deliveries) = (grouped(c, 0)?, grouped(c, 1)?);
    let firing = super::alerts::firing(c)?;
    // Costs the inventories' size, and only services that have one.
    let never: HashMap<String, i64> = super::objects::never_enrolled_counts(c)?
        .into_iter()
        .collect();
    let mut lines = assemble(svcs, &lagging, &no_cert, &long_lived, &deliveries, &firing);
    for l in &mut lines {
        l.never_enrolled = never.get(&l.service).copied().unwrap_or(0);
    }
    Ok(lines)
}

/// Combines the counts; kept apart from the queries so the arithmetic is plain.
fn assemble(
    svcs: Vec<(String, i64, i64, i64)>,
    lagging: &[(String, String)],
    no_cert: &[(String, String)],
    long_lived: &HashMap<String, i64>,
    deliveries: &HashMap<String, i64>,
    firing: &[AlertRow],
) -> Vec<ServiceCounts> {
    let stale: HashSet<(&str, &str)> = firing
        .iter()
        .filter(|a| !a.node_id.is_empty() && STALE_REASONS.contains(&a.reason.as_str()))
        .map(|a| (a.service.as_str(), a.node_id.as_str()))
        .collect();
    let mut per: HashMap<&str, ServiceCounts> = HashMap::new();
    for (svc, _) in &stale {
        per.entry(svc).or_default().stale += 1;
    }
    for a in firing {
        let line = per.entry(a.service.as_str()).or_default();
        line.firing_alerts += 1;
        if a.reason == "expiring" {
            line.expiring_alert_before += 1;
        }
    }
    let mut without_cert: HashMap<&str, i64> = HashMap::new();
    for (svc, _) in no_cert {
        *without_cert.entry(svc.as_str()).or_default() += 1;
    }
    let waiting: HashSet<(&str, &str)> = lagging
        .iter()
        .chain(no_cert)
        .map(|(s, n)| (s.as_str(), n.as_str()))
        .collect();
    for (svc, node) in waiting {
        if !stale.contains(&(svc, node)) {
            per.entry(svc).or_default().pending += 1;
        }
    }
    let get = |m: &HashMap<String, i64>, s: &str| m.get(s).copied().unwrap_or(0);
    svcs.into_iter()
        .map(|(name, nodes, ttl, renew_before)| {
            let mut line = per.remove(name.as_str()).unwrap_or_default();
            line.nodes = nodes;
            line.ok = (nodes - line.pending - line.stale).max(0);
            let no_cert = without_cert.get(name.as_str()).copied().unwrap_or(0);
            line.expiring_24h = (nodes - no_cert - get(long_lived, &name)).max(0);
            line.deliveries_last_hour = get(deliveries, &name);
            line.outage_budget_seconds = ttl - renew_before;
            line.service = name;
            line
        })
        .collect()
}
