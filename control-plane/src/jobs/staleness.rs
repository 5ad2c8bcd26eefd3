//! The staleness detector: finds nodes that lag their desired version past the grace
//! period, that were not seen within `stale_after`, or whose installed certificate
//! expires within `alert_before`; fires one alert per (node, reason), resolves it when
//! the reason is gone, and fires a service-wide alert when too large a share of a
//! service is stale. Every read goes through an index that holds only candidate nodes.
//! One replica runs a pass at a time (transaction advisory lock). It manages only its
//! own reasons (lagging, unseen, expiring, stale-share): other jobs' alerts are theirs.

use super::alerting::rfc3339 as fmt_ms;
use super::{JobSettings, pause};
use crate::http::AppState;
use crate::store::{self, alerts::AlertRow};
use std::collections::{BTreeMap, HashMap, HashSet};
use tokio::sync::watch;

const LOCK_KEY: i64 = 0x6665_7272_7900_0003;

/// What one pass found and did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PassReport {
    pub stale_nodes: usize,
    pub fired: usize,
    pub resolved: usize,
    /// Webhook events queued in the outbox.
    pub events: usize,
}

pub async fn run(state: AppState, settings: JobSettings, mut shutdown: watch::Receiver<bool>) {
    loop {
        let started = std::time::Instant::now();
        let result = pass(&state, settings.stale_share).await;
        state.stats.staleness_pass_ms.store(
            started.elapsed().as_millis() as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
        match result {
            Ok(r) if r.fired + r.resolved > 0 => {
                tracing::info!(
                    fired = r.fired,
                    resolved = r.resolved,
                    stale = r.stale_nodes,
                    "staleness pass"
                );
                if r.events > 0 {
                    state.jobs.webhooks.notify_one();
                }
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "staleness pass failed"),
        }
        if !pause(
            settings.staleness_tick,
            &state.jobs.staleness,
            &mut shutdown,
        )
        .await
        {
            return;
        }
    }
}

pub async fn pass(state: &AppState, stale_share: f64) -> Result<PassReport, store::StoreError> {
    state
        .store
        .write(move |c| {
            let mut report = PassReport::default();
            if !super::try_xact_lock(c, LOCK_KEY)? {
                return Ok(report);
            }
            let now = store::now_ms();
            // (service, node, reason) -> detail, for every reason a node is stale now.
            let mut stale: BTreeMap<(String, String, &'static str), String> = BTreeMap::new();
            for (s, n, desired, acked) in store::alerts::lagging(c, now)? {
                stale.insert(
                    (s, n, "lagging"),
                    format!("acknowledged version {acked}, desired {desired}"),
                );
            }
            for (s, n, last_seen) in store::alerts::unseen(c, now)? {
                let seen = last_seen.map(fmt_ms).unwrap_or_else(|| "never".into());
                stale.insert((s, n, "unseen"), format!("last seen {seen}"));
            }
            let horizon = store::alerts::max_alert_before_ms(c)?;
            for (s, n, not_after) in store::alerts::expiring(c, now, horizon)? {
                stale.insert(
                    (s, n, "expiring"),
                    format!("installed certificate expires {}", fmt_ms(not_after)),
                );
            }
            let mut stale_by_service: HashMap<String, HashSet<String>> = HashMap::new();
            for (s, n, _) in stale.keys() {
                stale_by_service
                    .entry(s.clone())
                    .or_default()
                    .insert(n.clone());
            }
            report.stale_nodes = stale_by_service.values().map(HashSet::len).sum();
            let names: Vec<String> = stale_by_service.keys().cloned().collect();
            let totals: HashMap<String, i64> = store::services::node_counts(c, &names)?
                .into_iter()
                .collect();
            for (svc, nodes) in &stale_by_service {
                let total = totals.get(svc).copied().unwrap_or(0);
                if total > 0 && nodes.len() as f64 / total as f64 > stale_share {
                    let detail = format!("{} of {total} nodes are stale", nodes.len());
                    stale.insert((svc.clone(), String::new(), "stale-share"), detail);
                }
            }

            let hooked: HashSet<String> = store::services::with_webhooks(c)?
                .into_iter()
                .map(|w| w.service)
                .collect();
            let mut outbox = |c: &mut store::Conn<'_>,
                              alert: &AlertRow,
                              event: &str|
             -> Result<(), store::StoreError> {
                if !hooked.contains(&alert.service) {
                    return Ok(());
                }
                super::alerting::enqueue(c, alert, event, now)?;
                report.events += 1;
                Ok(())
            };
            let firing = store::alerts::firing(c)?;
            let open: HashSet<(String, String, String)> = firing
                .iter()
                .map(|a| (a.service.clone(), a.node_id.clone(), a.reason.clone()))
                .collect();
            for a in &firing {
                // Other jobs' alerts (sources, inventory) are theirs to resolve.
                let reason = reason_static(&a.reason);
                if reason.is_empty() {
                    continue;
                }
                if !stale.contains_key(&(a.service.clone(), a.node_id.clone(), reason)) {
                    store::alerts::resolve(c, &a.id, now)?;
                    outbox(c, a, "resolved")?;
                    report.resolved += 1;
                }
            }
            for ((svc, node, reason), detail) in stale {
                if open.contains(&(svc.clone(), node.clone(), reason.to_owned())) {
                    continue;
                }
                let alert = AlertRow {
                    id: crate::http::new_id().map_err(|_| store::StoreError::Task)?,
                    service: svc,
                    node_id: node,
                    reason: reason.to_owned(),
                    state: "firing".into(),
                    detail,
                    fired_at: now,
                    resolved_at: None,
                };
                store::alerts::insert(c, &alert)?;
                outbox(c, &alert, "firing")?;
                report.fired += 1;
            }
            Ok(report)
        })
        .await
}

/// The detector's own reasons as the static strings its map uses ('' for any other
/// job's reason: the detector leaves those alerts alone).
fn reason_static(r: &str) -> &'static str {
    match r {
        "lagging" => "lagging",
        "unseen" => "unseen",
        "expiring" => "expiring",
        "stale-share" => "stale-share",
        _ => "",
    }
}
