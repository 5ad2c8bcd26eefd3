//! The renewal scheduler: issues the next bundle of every node whose `renew_at` has
//! come, in batches, through the `renew_at` index (never a scan of the fleet).

use super::pause;
use crate::delivery::Changes;
use crate::http::AppState;
use crate::store::{self, services::ServiceRow};
use std::collections::HashMap;
use std::time::Duration;
use time::OffsetDateTime;
use tokio::sync::watch;

/// Nodes issued per transaction.
pub const BATCH: i64 = 200;
/// A node whose issue failed is retried after this long, so it cannot block the queue.
const RETRY_FAILED_MS: i64 = 60_000;
/// Longest a pass keeps its rows locked: RSA key generation can take 100 ms a node, so
/// a full batch could hold locks for many seconds. Nodes not reached stay due.
const PASS_BUDGET: Duration = Duration::from_secs(2);

pub async fn run(state: AppState, tick: Duration, mut shutdown: watch::Receiver<bool>) {
    loop {
        let started = std::time::Instant::now();
        let result = pass(&state).await;
        state.stats.renewal_pass_ms.store(
            started.elapsed().as_millis() as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
        match result {
            Ok(n) if n as i64 == BATCH => continue, // more are due: no pause
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "renewal pass failed"),
        }
        if !pause(tick, &state.jobs.renewal, &mut shutdown).await {
            return;
        }
    }
}

/// One batch: returns how many nodes were due.
pub async fn pass(state: &AppState) -> Result<usize, store::StoreError> {
    let st = state.clone();
    let (due, changes) = state
        .store
        .write(move |c| {
            let now = OffsetDateTime::now_utc();
            let now_ms = store::ms(now);
            let due = store::nodes::due_for_renewal(c, now_ms, BATCH)?;
            let mut services: HashMap<String, Option<ServiceRow>> = HashMap::new();
            let mut changes = Changes::default();
            let started = std::time::Instant::now();
            for (svc, node) in &due {
                if started.elapsed() > PASS_BUDGET {
                    break;
                }
                if !services.contains_key(svc) {
                    services.insert(svc.clone(), store::services::get(c, svc, None)?);
                }
                let Some(service) = services.get(svc).and_then(Option::as_ref) else { continue };
                match st.issuer().renew(c, service, node, now) {
                    Ok(_) => changes.node(svc, node),
                    Err(crate::delivery::IssueError::Store(e)) => return Err(store::StoreError::from(e)),
                    // Nothing to issue: the node waits for its imported certificate.
                    Err(crate::delivery::IssueError::Imported(_)) => store::nodes::clear_renew_at(c, svc, node)?,
                    Err(e) => {
                        tracing::error!(service = %svc, node = %node, error = %e, "cannot issue bundle; retrying later");
                        store::nodes::set_desired_renew_at(c, svc, node, now_ms + RETRY_FAILED_MS)?;
                    }
                }
            }
            changes.notify_in_tx(c)?;
            Ok::<_, store::StoreError>((due.len(), changes))
        })
        .await?;
    changes.wake_local(&state.waiters);
    if due > 0 {
        tracing::debug!(issued = due, "renewal pass");
    }
    Ok(due)
}
