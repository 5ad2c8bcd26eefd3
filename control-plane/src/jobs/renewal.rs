//! The renewal scheduler: issues the next bundle of every node whose `renew_at` has
//! come, in batches, through the `renew_at` index (never a scan of the fleet): claimed
//! in one statement, signed outside any transaction, stored in one transaction.

use super::pause;
use crate::delivery::issue::Signed;
use crate::delivery::{Changes, IssueError};
use crate::http::AppState;
use crate::store::{self, services::ServiceRow};
use ferry_shared::KeyMode;
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;
use time::OffsetDateTime;
use tokio::sync::watch;

/// Nodes issued per transaction.
pub const BATCH: i64 = 200;
/// A node whose issue failed is retried after this long, so it cannot block the queue.
const RETRY_FAILED_MS: i64 = 60_000;
/// How long a claimed node is left to the replica that claimed it before another may
/// take it: what a replica that dies mid-pass delays its nodes' renewals by.
const CLAIM_MS: i64 = 10_000;
/// Signing stops after this (RSA keys can take 100 ms each); the rest is handed back.
const SIGN_BUDGET: Duration = Duration::from_secs(3);

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

/// One batch: returns how many nodes were due. Three steps, so that no row lock is
/// held while certificates are signed: claim the due nodes (their `renew_at` moves to
/// a lease), sign the central-mode certificates on every core outside any
/// transaction, then store the whole batch in one transaction.
pub async fn pass(state: &AppState) -> Result<usize, store::StoreError> {
    let now = OffsetDateTime::now_utc();
    let now_ms = store::ms(now);
    let (due, services) = state
        .store
        .write(move |c| {
            let due = store::nodes::claim_due(c, now_ms, BATCH, now_ms + CLAIM_MS)?;
            let mut services: HashMap<String, Option<ServiceRow>> = HashMap::new();
            for (svc, _) in &due {
                if !services.contains_key(svc) {
                    services.insert(svc.clone(), store::services::get(c, svc, None)?);
                }
            }
            Ok::<_, store::StoreError>((due, services))
        })
        .await?;
    if due.is_empty() {
        return Ok(0);
    }
    let central = KeyMode::Central.to_string();
    let work: Vec<(ServiceRow, String)> = due
        .iter()
        .filter_map(|(svc, node)| {
            let service = services.get(svc)?.as_ref()?;
            (service.key_mode == central).then(|| (service.clone(), node.clone()))
        })
        .collect();
    let st = state.clone();
    let signed = tokio::task::spawn_blocking(move || {
        let deadline = std::time::Instant::now() + SIGN_BUDGET;
        let signed = crate::delivery::batch::sign_all(&st.issuer(), &work, now, deadline);
        work.into_iter()
            .map(|(svc, node)| (svc.name, node))
            .zip(signed)
            .collect::<Vec<_>>()
    })
    .await
    .map_err(|_| store::StoreError::Task)?;

    let (st, claimed) = (state.clone(), due.clone());
    let count = due.len();
    let lease_until = now_ms + CLAIM_MS;
    let stored = state
        .store
        .write(move |c| {
            let mut changes = Changes::default();
            let mut signed: HashMap<(String, String), _> = signed.into_iter().collect();
            // Per service (in name order, then node-id order: the lock order), the
            // signed certificates in one batch; the rest one by one.
            let mut batches: BTreeMap<&str, Vec<(String, Signed)>> = BTreeMap::new();
            let (mut outcomes, mut unsigned) = (Vec::new(), Vec::new());
            for (svc, node) in &due {
                match signed.remove(&(svc.clone(), node.clone())) {
                    Some(Some(Ok(s))) => batches.entry(svc.as_str()).or_default().push((node.clone(), s)),
                    Some(Some(Err(e))) => outcomes.push((svc.clone(), node.clone(), Err(e))),
                    // Past the signing budget: due again at once, for the next pass.
                    Some(None) => unsigned.push((svc.clone(), node.clone())),
                    None => {
                        // Not central: node-key mode asks for a CSR, imported has nothing.
                        let Some(service) = services.get(svc).and_then(Option::as_ref) else { continue };
                        outcomes.push((svc.clone(), node.clone(), st.issuer().renew(c, service, node, now)));
                    }
                }
            }
            for (svc, batch) in batches {
                let Some(service) = services.get(svc).and_then(Option::as_ref) else { continue };
                for (node, r) in st.issuer().store_signed_all(c, service, batch, now)? {
                    outcomes.push((svc.to_owned(), node, r));
                }
            }
            for (svc, node, issued) in outcomes {
                match issued {
                    Ok(_) => changes.node(&svc, &node),
                    Err(IssueError::Store(e)) => return Err(store::StoreError::from(e)),
                    Err(IssueError::NodeGone(_)) => {}
                    // Nothing to issue: the node waits for its imported certificate.
                    Err(IssueError::Imported(_)) => store::nodes::clear_renew_at(c, &svc, &node)?,
                    Err(e) => {
                        tracing::error!(service = %svc, node = %node, error = %e, "cannot issue bundle; retrying later");
                        store::nodes::set_desired_renew_at(c, &svc, &node, now_ms + RETRY_FAILED_MS)?;
                    }
                }
            }
            store::nodes::release_claims(c, &unsigned, lease_until, now_ms)?;
            changes.notify_in_tx(c)?;
            Ok::<_, store::StoreError>(changes)
        })
        .await;
    let changes = match stored {
        Ok(changes) => changes,
        Err(e) => {
            // Nothing was stored: hand the claims back rather than wait out the lease
            // (the database may be back by the next pass).
            let release = state
                .store
                .write(move |c| {
                    store::nodes::release_claims(c, &claimed, lease_until, now_ms)
                        .map_err(store::StoreError::from)
                })
                .await;
            if let Err(r) = release {
                tracing::warn!(error = %r, "cannot hand back claimed renewals; they come due when the claim ends");
            }
            return Err(e);
        }
    };
    changes.wake_local(&state.waiters);
    tracing::debug!(issued = count, "renewal pass");
    Ok(count)
}
