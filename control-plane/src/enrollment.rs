//! Group commit of enrollments: identities are signed before any transaction (the
//! CSR check and signature are CPU, not database work), then the enrollments that
//! queue while one batch commits are written together by the next: the join tokens
//! locked once per batch in key order, uses allocated in arrival order (so `max_uses`
//! holds exactly), new nodes inserted in one statement, re-enrollments updated, the
//! audit rows in one statement, each token's use count raised once. So enrollments
//! of one service and one token no longer queue on the token's and the service's rows
//! one at a time.
//!
//! A refused enrollment (expired or used-up token) writes nothing; a batch that fails
//! is retried one enrollment at a time, so one bad row cannot fail the others. Each
//! answer is sent only after its batch committed.

use crate::delivery::Changes;
use crate::delivery::Waiters;
use crate::store::{self, Store, StoreError, audit::NewAudit, nodes::NodeRow};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

/// Enrollments written per transaction at most.
pub const MAX_BATCH: usize = 256;

/// One signed enrollment waiting to be recorded.
#[derive(Debug, Clone)]
pub struct Enrollment {
    pub token_id: String,
    pub service: String,
    pub tenant: String,
    pub node_id: String,
    pub serial: String,
    pub not_after: i64,
    pub stale_after_seconds: i64,
    /// SHA-256 of the CSR's public key: an existing node id is re-enrolled only by the
    /// key it holds, or replaced by a token that allows replacing nodes.
    pub identity_key: String,
    /// The service's bundles are issued elsewhere (imported, or from the node's own
    /// CSR): a replacement keeps the bundle row, which holds no Ferry-made key.
    pub keep_bundle: bool,
    pub now: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum EnrollError {
    #[error("join token has expired; create a new one")]
    TokenExpired,
    #[error("join token has no uses left; create a new one")]
    TokenUsedUp,
    #[error("join token is not valid for this service")]
    TokenUnknown,
    #[error(
        "node {0} is enrolled already with another key; enroll it with a join token created with --replace-nodes, or delete the node first"
    )]
    NodeExists(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the enrollment writer stopped")]
    Stopped,
}

impl From<diesel::result::Error> for EnrollError {
    fn from(e: diesel::result::Error) -> Self {
        Self::Store(e.into())
    }
}

type Job = (Enrollment, oneshot::Sender<Result<(), EnrollError>>);

/// The replica's enrollment writer.
pub struct Enrollments {
    tx: mpsc::UnboundedSender<Job>,
}

impl Enrollments {
    pub fn start(store: Store, waiters: Arc<Waiters>) -> Arc<Self> {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(writer(store, waiters, rx));
        Arc::new(Self { tx })
    }

    /// Records `e` with whatever else is queued; returns once committed.
    pub async fn submit(&self, e: Enrollment) -> Result<(), EnrollError> {
        let (done, wait) = oneshot::channel();
        self.tx.send((e, done)).map_err(|_| EnrollError::Stopped)?;
        wait.await.map_err(|_| EnrollError::Stopped)?
    }
}

async fn writer(store: Store, waiters: Arc<Waiters>, mut rx: mpsc::UnboundedReceiver<Job>) {
    let mut carry: Vec<Job> = Vec::new();
    loop {
        if carry.is_empty() {
            match rx.recv().await {
                Some(job) => carry.push(job),
                None => return,
            }
        }
        while let Ok(job) = rx.try_recv() {
            carry.push(job);
        }
        // One enrollment per node per batch (a second one is a re-enrollment of the
        // first: it waits for the next batch, in order).
        let mut seen = HashSet::new();
        let mut batch = Vec::new();
        for job in std::mem::take(&mut carry) {
            let key = (job.0.service.clone(), job.0.node_id.clone());
            let fresh = seen.insert(key);
            if fresh && batch.len() < MAX_BATCH {
                batch.push(job);
            } else {
                carry.push(job);
            }
        }
        run(&store, &waiters, batch).await;
    }
}

async fn run(store: &Store, waiters: &Waiters, batch: Vec<Job>) {
    let items: Vec<Enrollment> = batch.iter().map(|(e, _)| e.clone()).collect();
    match write(store, items).await {
        Ok((results, changes)) => {
            changes.wake_local(waiters);
            for ((_, done), r) in batch.into_iter().zip(results) {
                let _ = done.send(r);
            }
        }
        Err(e) if batch.len() > 1 => {
            tracing::warn!(error = %e, enrollments = batch.len(), "enrollment batch failed; writing one by one");
            for (item, done) in batch {
                let r = match write(store, vec![item]).await {
                    Ok((mut r, changes)) => {
                        changes.wake_local(waiters);
                        r.pop().unwrap_or(Err(EnrollError::Stopped))
                    }
                    Err(e) => Err(e),
                };
                let _ = done.send(r);
            }
        }
        Err(e) => {
            if let Some((_, done)) = batch.into_iter().next() {
                let _ = done.send(Err(e));
            }
        }
    }
}

/// One transaction for `items`. The outer error means nothing was committed.
async fn write(
    store: &Store,
    items: Vec<Enrollment>,
) -> Result<(Vec<Result<(), EnrollError>>, Changes), EnrollError> {
    store
        .write(move |c| {
            let mut token_ids: Vec<String> = items.iter().map(|e| e.token_id.clone()).collect();
            token_ids.sort();
            token_ids.dedup();
            let mut tokens: HashMap<String, store::join_tokens::JoinTokenRow> =
                store::join_tokens::lock(c, &token_ids)?
                    .into_iter()
                    .map(|t| (t.id.clone(), t))
                    .collect();
            let keys: Vec<(String, String)> = items
                .iter()
                .map(|e| (e.service.clone(), e.node_id.clone()))
                .collect();
            let existing: HashMap<(String, String), Option<String>> =
                store::nodes::existing(c, &keys)?.into_iter().collect();
            let mut results = Vec::with_capacity(items.len());
            let (mut inserts, mut audits) = (Vec::new(), Vec::new());
            let mut used: HashMap<String, i32> = HashMap::new();
            let mut changes = Changes::default();
            for e in &items {
                let Some(t) = tokens.get_mut(&e.token_id) else {
                    results.push(Err(EnrollError::TokenUnknown));
                    continue;
                };
                if t.expires_at <= e.now {
                    results.push(Err(EnrollError::TokenExpired));
                    continue;
                }
                if t.uses >= t.max_uses {
                    results.push(Err(EnrollError::TokenUsedUp));
                    continue;
                }
                let key = (e.service.clone(), e.node_id.clone());
                let action = match existing.get(&key) {
                    None => "node.enroll",
                    Some(held) if held.as_deref() == Some(e.identity_key.as_str()) => {
                        "node.reenroll"
                    }
                    Some(_) if t.replaces_nodes => "node.replace",
                    Some(_) => {
                        results.push(Err(EnrollError::NodeExists(e.node_id.clone())));
                        continue;
                    }
                };
                t.uses += 1;
                *used.entry(t.id.clone()).or_default() += 1;
                if action == "node.enroll" {
                    inserts.push(new_node(e));
                } else {
                    store::nodes::reenroll(
                        c,
                        &e.service,
                        &e.node_id,
                        &e.serial,
                        e.not_after,
                        e.now,
                    )?;
                    if action == "node.replace" {
                        // A key the node never held: the replaced node's key and
                        // certificate are destroyed and a new bundle is issued.
                        store::nodes::replace(
                            c,
                            &e.service,
                            &e.node_id,
                            &e.identity_key,
                            e.keep_bundle,
                            e.now,
                        )?;
                    }
                    // Every earlier identity stops working: polls and node caches of
                    // every replica are told at COMMIT.
                    changes.node(&e.service, &e.node_id);
                }
                audits.push(NewAudit {
                    at: e.now,
                    actor: format!("join-token:{}", e.token_id),
                    tenant: Some(e.tenant.clone()),
                    action: action.into(),
                    target: format!("{}/{}", e.service, e.node_id),
                    detail: serde_json::json!({ "serial": e.serial }).to_string(),
                });
                results.push(Ok(()));
            }
            store::nodes::insert_many(c, &inserts)?;
            store::audit::record_many(c, &audits)?;
            for (id, n) in &used {
                store::join_tokens::add_uses(c, id, *n)?;
            }
            changes.notify_in_tx(c)?;
            Ok::<_, EnrollError>((results, changes))
        })
        .await
}

fn new_node(e: &Enrollment) -> NodeRow {
    NodeRow {
        service: e.service.clone(),
        node_id: e.node_id.clone(),
        state: "active".into(),
        identity_serial: e.serial.clone(),
        prev_identity_serial: None,
        identity_not_after: e.not_after,
        enrolled_at: e.now,
        last_seen: Some(e.now),
        desired_version: 0,
        acked_version: 0,
        cert_not_after: None,
        desired_hash: None,
        acked_hash: None,
        acked_at: None,
        // Central mode: due at once, so the scheduler issues the first bundle within a
        // tick.
        renew_at: Some(e.now),
        clock_skew_ms: None,
        last_error: None,
        hook_exit_code: None,
        agent_version: None,
        desired_at: None,
        unseen_at: Some(e.now + e.stale_after_seconds * 1000),
        held_by: None,
        prev_identity_until: None,
        identity_key: Some(e.identity_key.clone()),
    }
}
