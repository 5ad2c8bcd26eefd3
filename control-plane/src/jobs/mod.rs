//! Background jobs. Every replica runs them; they are safe together: the renewal
//! scheduler splits due nodes with `FOR UPDATE SKIP LOCKED`, and the rotation driver
//! runs on one replica at a time under a transaction-scoped advisory lock (so
//! `max_in_flight` holds across replicas). All their state is in the database, so a
//! restart resumes where the last run stopped.

pub mod renewal;
pub mod rotation;

use crate::http::AppState;
use std::time::Duration;
use tokio::sync::watch;

/// How the jobs pace themselves.
#[derive(Debug, Clone)]
pub struct JobSettings {
    pub renewal_tick: Duration,
    pub rotation_tick: Duration,
    /// A delivery not acknowledged this long after it was issued is marked failed.
    pub delivery_timeout: Duration,
}

impl Default for JobSettings {
    fn default() -> Self {
        Self {
            renewal_tick: Duration::from_secs(1),
            rotation_tick: Duration::from_millis(500),
            delivery_timeout: Duration::from_secs(600),
        }
    }
}

/// Starts every job; each stops when `shutdown` turns true.
pub fn spawn(state: AppState, settings: JobSettings, shutdown: watch::Receiver<bool>) {
    tokio::spawn(renewal::run(
        state.clone(),
        settings.renewal_tick,
        shutdown.clone(),
    ));
    tokio::spawn(rotation::run(state, settings, shutdown));
}

/// Sleeps for `tick`, or less when `wake` fires; false when shutting down.
pub(crate) async fn pause(
    tick: Duration,
    wake: &tokio::sync::Notify,
    shutdown: &mut watch::Receiver<bool>,
) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(tick) => true,
        _ = wake.notified() => true,
        _ = shutdown.wait_for(|s| *s) => false,
    }
}
