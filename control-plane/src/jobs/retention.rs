//! Retention: history older than the retention period (finished deliveries and
//! rotations, resolved alerts, delivered webhook events) is removed in batches, on one
//! replica at a time, so those tables stop growing with time. An idempotency key is
//! remembered as long as its delivery is kept.

use super::pause;
use crate::http::AppState;
use crate::store::{self, StoreError};
use std::time::Duration;
use tokio::sync::watch;

/// Advisory lock key of the retention pass.
const LOCK_KEY: i64 = 0x6665_7272_7900_0009;
/// Rows removed per table per transaction.
const BATCH: i64 = 1000;
/// Transactions per table per pass; what is left waits for the next pass.
const MAX_BATCHES: usize = 50;

/// What one pass removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Removed {
    pub deliveries: usize,
    pub rotations: usize,
    pub alerts: usize,
    pub events: usize,
}

pub async fn run(
    state: AppState,
    tick: Duration,
    keep: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let idle = tokio::sync::Notify::new();
    loop {
        match pass(&state, keep).await {
            Ok(r) if r != Removed::default() => tracing::info!(?r, "retention pass"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "retention pass failed"),
        }
        if !pause(tick, &idle, &mut shutdown).await {
            return;
        }
    }
}

/// Removes what is older than `keep`.
pub async fn pass(state: &AppState, keep: Duration) -> Result<Removed, StoreError> {
    let cutoff = store::now_ms() - keep.as_millis() as i64;
    let mut removed = Removed::default();
    for table in 0..4u8 {
        for _ in 0..MAX_BATCHES {
            let n = state
                .store
                .write(move |c| {
                    if !super::try_xact_lock(c, LOCK_KEY)? {
                        return Ok::<_, StoreError>(0);
                    }
                    Ok(match table {
                        0 => store::retention::deliveries(c, cutoff, BATCH)?,
                        1 => store::retention::rotations(c, cutoff)?,
                        2 => store::retention::alerts(c, cutoff, BATCH)?,
                        _ => store::retention::events(c, cutoff, BATCH)?,
                    })
                })
                .await?;
            match table {
                0 => removed.deliveries += n,
                1 => removed.rotations += n,
                2 => removed.alerts += n,
                _ => removed.events += n,
            }
            if n < BATCH as usize || table == 1 {
                break;
            }
        }
    }
    Ok(removed)
}
