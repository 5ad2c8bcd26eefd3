//! The rotation driver: releases each running rotation's queued deliveries in waves so
//! that at most `max_in_flight` are issued and unacknowledged at once; finishes
//! rotations; fails deliveries nobody acknowledged within the delivery timeout.

use super::{JobSettings, pause};
use crate::delivery::{Changes, IssueError};
use crate::http::AppState;
use crate::store::{self, services::ServiceRow};
use ferry_shared::KeyMode;
use std::collections::HashMap;
use time::OffsetDateTime;
use tokio::sync::watch;

/// Advisory lock key: one rotation driver at a time across replicas.
const LOCK_KEY: i64 = 0x6665_7272_7900_0002;
/// Deliveries released per pass at most (over all rotations): a wave is delivered as
/// soon as its transaction commits, not after the whole rotation is issued.
const WAVE: i64 = 500;
/// Signing stops after this (RSA keys can take 100 ms each); the rest is queued again.
const SIGN_BUDGET: std::time::Duration = std::time::Duration::from_secs(3);

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

/// One pass: expire what nobody acknowledged, finish rotations, and release the next
/// wave of each. A wave is put in flight first (one short transaction under the
/// driver's lock), its certificates are signed on every core outside any transaction,
/// then stored in one transaction; at most `WAVE` per pass, and the driver comes back
/// at once while a rotation has more to release.
pub async fn pass(state: &AppState, settings: &JobSettings) -> Result<(), store::StoreError> {
    let timeout_ms = settings.delivery_timeout.as_millis() as i64;
    let now = OffsetDateTime::now_utc();
    let now_ms = store::ms(now);
    let waves = state
        .store
        .write(move |c| {
            let mut waves = Vec::new();
            if !super::try_xact_lock(c, LOCK_KEY)? {
                return Ok(waves);
            }
            let secs = timeout_ms / 1000;
            store::deliveries::expire_pending(
                c,
                now_ms - timeout_ms,
                &format!("not acknowledged within {secs} s"),
                now_ms,
            )?;
            let mut budget = WAVE;
            for rot in store::rotations::running(c)? {
                let counts = store::deliveries::rotation_counts(c, &rot.id)?;
                let count = |s: &str| {
                    counts
                        .iter()
                        .filter(|(k, _)| k == s)
                        .map(|(_, n)| *n)
                        .sum::<i64>()
                };
                let (queued, in_flight) = (count("queued"), count("pending"));
                if queued == 0 && in_flight == 0 {
                    store::rotations::finish(c, &rot.id, now_ms)?;
                    tracing::info!(rotation = %rot.id, service = %rot.service, "rotation finished");
                    continue;
                }
                let free = (rot.max_in_flight as i64 - in_flight).min(budget);
                if free <= 0 || queued == 0 {
                    continue;
                }
                let Some(service) = store::services::get(c, &rot.service, None)? else {
                    continue;
                };
                let wave = store::deliveries::next_queued(c, &rot.id, free)?;
                let ids: Vec<String> = wave.iter().map(|d| d.id.clone()).collect();
                store::deliveries::mark_in_flight(c, &ids, now_ms)?;
                budget -= wave.len() as i64;
                waves.push((service, wave, queued > free));
            }
            Ok::<_, store::StoreError>(waves)
        })
        .await?;
    if waves.is_empty() {
        return Ok(());
    }
    let more = waves.iter().any(|(_, _, more)| *more);
    let central = KeyMode::Central.to_string();
    let work: Vec<(ServiceRow, String)> = waves
        .iter()
        .filter(|(svc, _, _)| svc.key_mode == central)
        .flat_map(|(svc, wave, _)| wave.iter().map(|d| (svc.clone(), d.node_id.clone())))
        .collect();
    let st = state.clone();
    let signed = tokio::task::spawn_blocking(move || {
        let deadline = std::time::Instant::now() + SIGN_BUDGET;
        let signed = crate::delivery::batch::sign_all(&st.issuer(), &work, now, deadline);
        work.into_iter()
            .map(|(svc, node)| (svc.name, node))
            .zip(signed)
            .collect::<HashMap<_, _>>()
    })
    .await
    .map_err(|_| store::StoreError::Task)?;

    let st = state.clone();
    let in_flight: Vec<String> = waves
        .iter()
        .flat_map(|(_, w, _)| w.iter().map(|d| d.id.clone()))
        .collect();
    let stored = state
        .store
        .write(move |c| {
            let mut changes = Changes::default();
            let mut signed = signed;
            let mut unsigned = Vec::new();
            for (service, wave, _) in &waves {
                // The signed certificates of the wave in one batch (node-id order: the
                // lock order), the rest one by one.
                let mut batch = Vec::new();
                let mut outcomes = Vec::new();
                for d in wave {
                    match signed.remove(&(service.name.clone(), d.node_id.clone())) {
                        Some(Some(Ok(s))) => batch.push((d.node_id.clone(), s)),
                        Some(Some(Err(e))) => outcomes.push((d.node_id.clone(), Err(e))),
                        // Past the signing budget: back in the queue for the next pass.
                        Some(None) => unsigned.push(d.id.clone()),
                        None => outcomes.push((d.node_id.clone(), st.issuer().renew(c, service, &d.node_id, now))),
                    }
                }
                outcomes.extend(st.issuer().store_signed_all(c, service, batch, now)?);
                let delivery: HashMap<&str, &str> = wave.iter().map(|d| (d.node_id.as_str(), d.id.as_str())).collect();
                let mut issued = Vec::new();
                for (node, outcome) in outcomes {
                    let Some(id) = delivery.get(node.as_str()) else { continue };
                    match outcome {
                        Ok(version) => {
                            issued.push((id.to_string(), version));
                            changes.node(&service.name, &node);
                        }
                        Err(IssueError::NodeGone(_)) => {
                            store::deliveries::supersede_node(c, &service.name, &node, now_ms)?;
                        }
                        Err(IssueError::Store(e)) => return Err(e.into()),
                        Err(e) => {
                            tracing::error!(node = %node, error = %e, "rotation cannot issue; marking failed");
                            store::deliveries::finish_one(c, id, "failed", Some(&e.to_string()), now_ms)?;
                        }
                    }
                }
                store::deliveries::mark_issued_many(c, &issued, now_ms)?;
            }
            store::deliveries::requeue(c, &unsigned)?;
            changes.notify_in_tx(c)?;
            Ok::<_, store::StoreError>(changes)
        })
        .await;
    let changes = match stored {
        Ok(changes) => changes,
        Err(e) => {
            // Nothing was stored: the wave goes back to the queue rather than wait for
            // the delivery timeout.
            let requeue = state
                .store
                .write(move |c| {
                    store::deliveries::requeue(c, &in_flight).map_err(store::StoreError::from)
                })
                .await;
            if let Err(r) = requeue {
                tracing::warn!(error = %r, "cannot put an unissued wave back; it fails by the delivery timeout");
            }
            return Err(e);
        }
    };
    changes.wake_local(&state.waiters);
    if more {
        state.jobs.rotation.notify_one();
    }
    Ok(())
}
