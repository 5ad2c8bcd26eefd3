//! The rotation driver: releases each running rotation's queued deliveries in waves so
//! that at most `max_in_flight` are issued and unacknowledged at once; finishes
//! rotations; fails deliveries nobody acknowledged within the delivery timeout.

use super::{JobSettings, pause};
use crate::delivery::Changes;
use crate::http::AppState;
use crate::store;
use time::OffsetDateTime;
use tokio::sync::watch;

/// Advisory lock key: one rotation driver at a time across replicas.
const LOCK_KEY: i64 = 0x6665_7272_7900_0002;

pub async fn run(state: AppState, settings: JobSettings, mut shutdown: watch::Receiver<bool>) {
    loop {
        let started = std::time::Instant::now();
        let result = pass(&state, &settings).await;
        state.stats.rotation_pass_ms.store(
            started.elapsed().as_millis() as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
        if let Err(e) = result {
            tracing::warn!(error = %e, "rotation pass failed");
        }
        if !pause(settings.rotation_tick, &state.jobs.rotation, &mut shutdown).await {
            return;
        }
    }
}

pub async fn pass(state: &AppState, settings: &JobSettings) -> Result<(), store::StoreError> {
    let st = state.clone();
    let timeout_ms = settings.delivery_timeout.as_millis() as i64;
    let changes = state
        .store
        .write(move |c| {
            let mut changes = Changes::default();
            if !super::try_xact_lock(c, LOCK_KEY)? {
                return Ok(changes);
            }
            let now = OffsetDateTime::now_utc();
            let now_ms = store::ms(now);
            let secs = timeout_ms / 1000;
            store::deliveries::expire_pending(c, now_ms - timeout_ms, &format!("not acknowledged within {secs} s"), now_ms)?;
            for rot in store::rotations::running(c)? {
                let counts = store::deliveries::rotation_counts(c, &rot.id)?;
                let count = |s: &str| counts.iter().filter(|(k, _)| k == s).map(|(_, n)| *n).sum::<i64>();
                let (queued, in_flight) = (count("queued"), count("pending"));
                if queued == 0 && in_flight == 0 {
                    store::rotations::finish(c, &rot.id, now_ms)?;
                    tracing::info!(rotation = %rot.id, service = %rot.service, "rotation finished");
                    continue;
                }
                let free = rot.max_in_flight as i64 - in_flight;
                if free <= 0 || queued == 0 {
                    continue;
                }
                let Some(service) = store::services::get(c, &rot.service, None)? else { continue };
                for d in store::deliveries::next_queued(c, &rot.id, free)? {
                    match st.issuer().renew(c, &service, &d.node_id, now) {
                        Ok(version) => {
                            store::deliveries::mark_issued(c, &d.id, version, now_ms)?;
                            changes.node(&service.name, &d.node_id);
                        }
                        Err(crate::delivery::IssueError::NodeGone(_)) => {
                            store::deliveries::supersede_node(c, &service.name, &d.node_id, now_ms)?;
                        }
                        Err(crate::delivery::IssueError::Store(e)) => return Err(e.into()),
                        Err(e) => {
                            tracing::error!(node = %d.node_id, error = %e, "rotation cannot issue; marking failed");
                            store::deliveries::finish_one(c, &d.id, "failed", Some(&e.to_string()), now_ms)?;
                        }
                    }
                }
            }
            changes.notify_in_tx(c)?;
            Ok::<_, store::StoreError>(changes)
        })
        .await?;
    changes.wake_local(&state.waiters);
    Ok(())
}
