//! The staleness detector: finds nodes that lag their desired version past the grace
//! period, that were not seen within `stale_after`, or whose installed certificate
//! expires within `alert_before`; fires one alert per (node, reason), resolves it when
//! the reason is gone, and fires a service-wide alert when too large a share of a
//! service is stale. The database compares (`store::staleness`: anti-joins of stale
//! causes against firing alerts) and returns only what changes; every read goes
//! through an index that holds only candidate nodes or firing alerts.
//! One replica runs a pass at a time (transaction advisory lock). It manages only its
//! own reasons (lagging, unseen, expiring, stale-share): other jobs' alerts are theirs.

use super::alerting::rfc3339 as fmt_ms;
use super::{JobSettings, pause};
use crate::http::AppState;
use crate::store::{self, alerts::AlertRow, staleness::ToFire};
use std::collections::HashSet;
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
            let horizon = store::alerts::max_alert_before_ms(c)?;
            let changes = store::staleness::changes(c, now, horizon, stale_share)?;
            report.stale_nodes = usize::try_from(changes.stale_nodes).unwrap_or(0);
            if changes.to_fire.is_empty() && changes.to_resolve.is_empty() {
                return Ok(report);
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
            for a in &changes.to_resolve {
                if store::alerts::resolve(c, &a.id, now)? {
                    outbox(c, a, "resolved")?;
                    report.resolved += 1;
                }
            }
            for f in changes.to_fire {
                let detail = detail(&f);
                let alert = AlertRow {
                    id: crate::http::new_id().map_err(|_| store::StoreError::Task)?,
                    service: f.service,
                    node_id: f.node_id,
                    reason: f.reason,
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

/// The alert's detail line, from the figures its question returned.
fn detail(f: &ToFire) -> String {
    let num = |v: Option<i64>| v.map_or_else(|| "?".to_owned(), |v| v.to_string());
    match f.reason.as_str() {
        "lagging" => format!("acknowledged version {}, desired {}", num(f.a), num(f.b)),
        "unseen" => format!(
            "last seen {}",
            f.a.map(fmt_ms).unwrap_or_else(|| "never".into())
        ),
        "expiring" => format!(
            "installed certificate expires {}",
            f.a.map(fmt_ms).unwrap_or_else(|| "?".into())
        ),
        _ => format!("{} of {} nodes are stale", num(f.a), num(f.b)),
    }
}
