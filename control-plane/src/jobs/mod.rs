//! Background jobs (renewal, rotation, staleness, webhooks, metadata expiry, dynamic
//! sources). Every replica runs them; they are safe together: the renewal
//! scheduler splits due nodes with `FOR UPDATE SKIP LOCKED`, and the rotation driver
//! runs on one replica at a time under a transaction-scoped advisory lock (so
//! `max_in_flight` holds across replicas). All their state is in the database, so a
//! restart resumes where the last run stopped.

pub mod alerting;
pub mod expiry;
pub mod objects;
pub mod renewal;
pub mod retention;
pub mod rotation;
pub mod sources;
pub mod staleness;
pub mod webhooks;

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
    pub staleness_tick: Duration,
    /// A service-wide alert fires when more than this share of its nodes is stale.
    pub stale_share: f64,
    /// How often expired metadata is looked for (keys leave bundles within this).
    pub expiry_tick: Duration,
    /// How often due inventory and certificate sources are looked for.
    pub objects_tick: Duration,
    /// Finished deliveries and rotations, resolved alerts and delivered webhook events
    /// older than this are removed.
    pub retention: Duration,
    /// How often the retention pass runs.
    pub retention_tick: Duration,
    /// Longest wait between looks for queued webhook events (a new alert wakes the
    /// sender at once).
    pub webhook_tick: Duration,
    /// Dynamic metadata sources: tick, concurrency cap, timeout, backoff, circuit, alert.
    pub sources: sources::SourceSettings,
}

impl Default for JobSettings {
    fn default() -> Self {
        Self {
            renewal_tick: Duration::from_secs(1),
            rotation_tick: Duration::from_millis(500),
            delivery_timeout: Duration::from_secs(600),
            staleness_tick: Duration::from_secs(5),
            stale_share: 0.1,
            expiry_tick: Duration::from_millis(500),
            objects_tick: Duration::from_secs(1),
            retention: Duration::from_secs(30 * 86_400),
            retention_tick: Duration::from_secs(600),
            webhook_tick: Duration::from_secs(1),
            sources: sources::SourceSettings::default(),
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
    tokio::spawn(staleness::run(
        state.clone(),
        settings.clone(),
        shutdown.clone(),
    ));
    tokio::spawn(webhooks::run(
        state.clone(),
        settings.webhook_tick,
        shutdown.clone(),
    ));
    tokio::spawn(sources::run(
        state.clone(),
        settings.sources.clone(),
        shutdown.clone(),
    ));
    tokio::spawn(retention::run(
        state.clone(),
        settings.retention_tick,
        settings.retention,
        shutdown.clone(),
    ));
    tokio::spawn(objects::run(
        state.clone(),
        settings.objects_tick,
        shutdown.clone(),
    ));
    tokio::spawn(expiry::run(
        state.clone(),
        settings.expiry_tick,
        shutdown.clone(),
    ));
    tokio::spawn(rotation::run(state, settings, shutdown));
}

/// Takes a transaction-scoped advisory lock on PostgreSQL (false: another replica holds
/// it, skip this pass). SQLite is one replica by design: always true.
pub(crate) fn try_xact_lock(c: &mut crate::store::Conn<'_>, key: i64) -> diesel::QueryResult<bool> {
    use diesel::RunQueryDsl;
    #[derive(diesel::QueryableByName)]
    struct Locked {
        #[diesel(sql_type = diesel::sql_types::Bool)]
        locked: bool,
    }
    match c {
        crate::store::Conn::Pg(c) => {
            diesel::sql_query(format!("SELECT pg_try_advisory_xact_lock({key}) AS locked"))
                .get_result::<Locked>(*c)
                .map(|l| l.locked)
        }
        crate::store::Conn::Sqlite(_) => Ok(true),
    }
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
