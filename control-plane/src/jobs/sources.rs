//! Dynamic metadata sources: fetches customer URLs when they are due and delivers
//! their JSON answers as metadata, only when the answer changed.
//!
//! Due work comes only from the `source_fetches_due` index. A replica claims rows (on
//! PostgreSQL `FOR UPDATE SKIP LOCKED`, so replicas split them) by moving their
//! `next_fetch_at` to the end of a lease, commits, and only then fetches: no database
//! connection is held during a fetch. At most `concurrency` fetches run at once per
//! replica (a semaphore; a slow customer API holds a permit no longer than the timeout),
//! so one customer cannot exhaust the runtime or the connection pool. Each fetch target
//! (the source's URL, or one node's URL) has its own backoff and circuit breaker; see
//! `record` for what a result changes. A replica dying mid-fetch leaves its rows due
//! again when the lease ends.

mod fetch;
mod record;

pub use fetch::{Answer, target_url};
pub use record::resolve_if_clear;

use super::pause;
use crate::http::AppState;
use crate::store::{self, StoreError, source_fetches::FetchRow, sources::SourceRow};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

/// The alert reason this job fires and resolves.
pub const REASON: &str = "source-failing";
/// One replica at a time resolves alerts left without a failing fetch.
const LOCK_KEY: i64 = 0x6665_7272_7900_0007;
/// How often such alerts are looked for (a source or node deleted, a source changed).
const SWEEP_EVERY: Duration = Duration::from_secs(5);
/// A claim lasts the timeout plus this margin.
const LEASE_MARGIN_MS: i64 = 30_000;
/// Shortest wait between claims when due rows were all held by another replica.
const MIN_WAIT: Duration = Duration::from_millis(50);

/// How dynamic sources are fetched.
#[derive(Debug, Clone)]
pub struct SourceSettings {
    /// Longest wait between looks for due fetches (the job otherwise sleeps exactly
    /// until the next one is due, or until a source is created or changed).
    pub tick: Duration,
    /// Fetches in flight at once on this replica.
    pub concurrency: usize,
    /// Per-request timeout, the body included.
    pub timeout: Duration,
    /// First retry delay after a failure; doubles per consecutive failure, never beyond
    /// the source's interval.
    pub retry_base: Duration,
    /// Consecutive failures that open a target's circuit.
    pub open_after: u32,
    /// How long an open circuit waits before its half-open trial fetch (at least the
    /// source's interval).
    pub cooldown: Duration,
    /// Consecutive failures that fire the `source-failing` alert.
    pub alert_after: u32,
}

impl Default for SourceSettings {
    fn default() -> Self {
        Self {
            tick: Duration::from_secs(1),
            concurrency: 16,
            timeout: Duration::from_secs(10),
            retry_base: Duration::from_secs(1),
            open_after: 5,
            cooldown: Duration::from_secs(60),
            alert_after: 5,
        }
    }
}

/// A claimed row with its source as it was when claimed.
struct Claimed {
    row: FetchRow,
    source: SourceRow,
}

pub async fn run(state: AppState, settings: SourceSettings, mut shutdown: watch::Receiver<bool>) {
    let client = match state.outbound.client(settings.timeout) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "cannot build the source client; dynamic sources will not be fetched");
            return;
        }
    };
    let permits = Arc::new(Semaphore::new(settings.concurrency.max(1)));
    let mut swept: Option<Instant> = None;
    loop {
        if swept.is_none_or(|t| t.elapsed() >= SWEEP_EVERY) {
            swept = Some(Instant::now());
            match sweep(&state).await {
                Ok(0) => {}
                Ok(_) => state.jobs.webhooks.notify_one(),
                Err(e) => tracing::warn!(error = %e, "source alert sweep failed"),
            }
        }
        // Claim only what can start now: wait for one free permit, take the others free.
        let first = tokio::select! {
            p = permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return, // never closed
            },
            _ = shutdown.wait_for(|s| *s) => return,
        };
        let mut held = vec![first];
        while let Ok(p) = permits.clone().try_acquire_owned() {
            held.push(p);
        }
        let wanted = held.len();
        match claim(&state, wanted, &settings).await {
            Ok(claimed) => {
                let n = claimed.len();
                for (job, permit) in claimed.into_iter().zip(held) {
                    let (st, cl, se) = (state.clone(), client.clone(), settings.clone());
                    tokio::spawn(run_one(st, cl, se, job, permit));
                }
                if n == wanted {
                    continue; // maybe more are due: claim again as permits free up
                }
            }
            Err(e) => tracing::warn!(error = %e, "claiming source fetches failed"),
        }
        let wait = match state.store.read(store::source_fetches::next_due).await {
            Ok(Some(due)) => Duration::from_millis((due - store::now_ms()).max(0) as u64),
            Ok(None) => settings.tick,
            Err(e) => {
                tracing::warn!(error = %e, "reading the next source fetch failed");
                settings.tick
            }
        };
        let wait = wait.clamp(MIN_WAIT, settings.tick.max(MIN_WAIT));
        if !pause(wait, &state.jobs.sources, &mut shutdown).await {
            return;
        }
    }
}

/// Claims up to `limit` due rows and loads their sources.
async fn claim(
    state: &AppState,
    limit: usize,
    settings: &SourceSettings,
) -> Result<Vec<Claimed>, StoreError> {
    let lease_ms = settings.timeout.as_millis() as i64 + LEASE_MARGIN_MS;
    state
        .store
        .write(move |c| {
            let now = store::now_ms();
            let rows = store::source_fetches::claim(c, now, limit as i64, now + lease_ms)?;
            let mut sources: HashMap<(String, String), Option<SourceRow>> = HashMap::new();
            let mut out = Vec::with_capacity(rows.len());
            for row in rows {
                let key = (row.service.clone(), row.source.clone());
                if !sources.contains_key(&key) {
                    let src = store::sources::get(c, &key.0, &key.1)?;
                    sources.insert(key.clone(), src);
                }
                if let Some(Some(source)) = sources.get(&key) {
                    out.push(Claimed {
                        row,
                        source: source.clone(),
                    });
                }
            }
            Ok(out)
        })
        .await
}

/// Fetches one claimed row and records the result; the permit is held throughout.
async fn run_one(
    state: AppState,
    client: crate::outbound::OutboundClient,
    settings: SourceSettings,
    job: Claimed,
    _permit: OwnedSemaphorePermit,
) {
    let Claimed { row, source } = job;
    let outcome = match open_headers(&state, &source) {
        Ok(headers) => {
            let url = target_url(&source.url, &row.node_id);
            fetch::fetch(&client, &url, &headers, row.etag.as_deref()).await
        }
        Err(e) => Err(e),
    };
    if let Err(error) = &outcome {
        // The URL is not logged: customers put tokens in query strings.
        tracing::debug!(service = %row.service, source = %row.source, node = %row.node_id, failures = row.failures + 1, %error, "source fetch failed");
    }
    let st = settings.clone();
    let result = state
        .store
        .write(move |c| record::record(c, &st, &row, &source, outcome, store::now_ms()))
        .await;
    match result {
        Ok(done) => {
            done.changes.wake_local(&state.waiters);
            if done.events {
                state.jobs.webhooks.notify_one();
            }
        }
        Err(e) => tracing::warn!(error = %e, "recording a source fetch failed"),
    }
}

/// The source's request headers, opened from their seal.
fn open_headers(state: &AppState, src: &SourceRow) -> Result<BTreeMap<String, String>, String> {
    let aad = store::sources::aad(&src.service, &src.name);
    let plain = state
        .master
        .open(&src.headers_sealed, aad.as_bytes(), &src.key_id)
        .map_err(|e| format!("cannot open the stored headers: {e}"))?;
    serde_json::from_slice(&plain).map_err(|_| "the stored headers are corrupt".to_owned())
}

/// Resolves `source-failing` alerts no fetch counts in any more (its source was
/// deleted or changed, its node deleted). Returns how many.
pub async fn sweep(state: &AppState) -> Result<usize, StoreError> {
    state
        .store
        .write(|c| {
            if !super::try_xact_lock(c, LOCK_KEY)? {
                return Ok(0);
            }
            let now = store::now_ms();
            let mut resolved = 0;
            for a in store::alerts::firing_with_reason(c, REASON)? {
                if resolve_if_clear(c, &a.service, &a.node_id, now)? {
                    resolved += 1;
                }
            }
            Ok(resolved)
        })
        .await
}
