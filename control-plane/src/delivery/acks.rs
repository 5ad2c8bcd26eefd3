//! Group commit of acknowledgements: acks that arrive while a batch is being written
//! queue up and are written together by the next one, in one transaction of four
//! statements whatever its size (`store::acks`). Each ack's answer is sent only after
//! its batch committed, so "persisted before its 2xx" holds; a batch that fails is
//! retried ack by ack, so one bad row cannot fail the others.
//!
//! Each ack is decided against its node row locked in the batch's transaction, with
//! the same rules as one at a time: a gone node or a superseded identity is refused,
//! a version above the desired one is a conflict, and an installed desired version
//! must carry the hash that was served. At most one ack per node goes into a batch;
//! another ack of the same node waits for the next, so order per node is kept.

use super::current::Serve;
use crate::ca::Ca;
use crate::ca::sealing::MasterKey;
use crate::store::{self, Store, StoreError, acks::AckRow};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, oneshot};

/// Acks written per transaction at most.
pub const MAX_BATCH: usize = 512;
/// Served hashes remembered at most (beyond this the ack computes the hash again).
const MAX_SERVED: usize = 200_000;

/// Why an ack was refused.
#[derive(Debug, thiserror::Error)]
pub enum AckError {
    #[error("node is revoked")]
    Revoked,
    #[error("this identity certificate was superseded by a re-enrollment")]
    Superseded,
    #[error("ack names version {version} but the newest issued is {desired}")]
    AheadOfDesired { version: i64, desired: i64 },
    #[error("content hash does not match version {0}")]
    HashMismatch(i64),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot compute the served bundle: {0}")]
    Serve(String),
    #[error("the ack writer stopped")]
    Stopped,
}

impl From<diesel::result::Error> for AckError {
    fn from(e: diesel::result::Error) -> Self {
        Self::Store(e.into())
    }
}

/// One acknowledgement, already validated in shape.
#[derive(Debug, Clone)]
pub struct Ack {
    /// Serial of the client certificate it came with.
    pub serial: String,
    pub row: AckRow,
}

type Job = (Ack, oneshot::Sender<Result<(), AckError>>);

/// The replica's ack writer.
pub struct Acks {
    tx: mpsc::UnboundedSender<Job>,
    /// (service, node) -> (version, hash) of bundles served after a metadata change left
    /// `desired_hash` empty, so their acks need not assemble the bundle again.
    served: Mutex<HashMap<(String, String), (i64, String)>>,
    batches: std::sync::atomic::AtomicU64,
}

/// What deciding needs besides the database.
struct Ctx {
    store: Store,
    master: Arc<MasterKey>,
    ca: Arc<Ca>,
}

impl Acks {
    /// Starts the writer task (it ends when every `Acks` handle is dropped).
    pub fn start(store: Store, master: Arc<MasterKey>, ca: Arc<Ca>) -> Arc<Self> {
        let (tx, rx) = mpsc::unbounded_channel();
        let acks = Arc::new(Self {
            tx,
            served: Mutex::default(),
            batches: Default::default(),
        });
        let ctx = Ctx { store, master, ca };
        tokio::spawn(writer(Arc::downgrade(&acks), ctx, rx));
        acks
    }

    /// Writes `ack` with whatever else is queued; returns once it is committed.
    pub async fn submit(&self, ack: Ack) -> Result<(), AckError> {
        let (done, wait) = oneshot::channel();
        self.tx.send((ack, done)).map_err(|_| AckError::Stopped)?;
        wait.await.map_err(|_| AckError::Stopped)?
    }

    /// Remembers the hash served at `version` (used when `desired_hash` was empty).
    pub fn served(&self, service: &str, node: &str, version: i64, hash: &str) {
        let mut m = self.served.lock().unwrap_or_else(|p| p.into_inner());
        if m.len() >= MAX_SERVED {
            m.clear();
        }
        m.insert(
            (service.to_owned(), node.to_owned()),
            (version, hash.to_owned()),
        );
    }

    /// Batches committed since start.
    pub fn batches(&self) -> u64 {
        self.batches.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn served_hash(&self, service: &str, node: &str, version: i64) -> Option<String> {
        let m = self.served.lock().unwrap_or_else(|p| p.into_inner());
        m.get(&(service.to_owned(), node.to_owned()))
            .filter(|(v, _)| *v == version)
            .map(|(_, h)| h.clone())
    }

    fn forget_served(&self, keys: &[(String, String)]) {
        let mut m = self.served.lock().unwrap_or_else(|p| p.into_inner());
        for k in keys {
            m.remove(k);
        }
    }
}

async fn writer(acks: std::sync::Weak<Acks>, ctx: Ctx, mut rx: mpsc::UnboundedReceiver<Job>) {
    let ctx = Arc::new(ctx);
    let mut carry: Vec<Job> = Vec::new();
    loop {
        if carry.is_empty() {
            match rx.recv().await {
                Some(job) => carry.push(job),
                None => return,
            }
        }
        while carry.len() < MAX_BATCH * 2 {
            match rx.try_recv() {
                Ok(job) => carry.push(job),
                Err(_) => break,
            }
        }
        // One ack per node per batch; the rest wait, in order, for the next.
        let mut seen = HashSet::new();
        let mut batch = Vec::new();
        for job in std::mem::take(&mut carry) {
            let key = (job.0.row.service.clone(), job.0.row.node_id.clone());
            if batch.len() < MAX_BATCH && !seen.contains(&key) {
                seen.insert(key);
                batch.push(job);
            } else {
                seen.insert(key); // keeps a later ack of this node behind this one
                carry.push(job);
            }
        }
        let Some(acks) = acks.upgrade() else { return };
        run(&acks, &ctx, batch).await;
    }
}

async fn run(acks: &Arc<Acks>, ctx: &Arc<Ctx>, batch: Vec<Job>) {
    let items: Vec<Ack> = batch.iter().map(|(a, _)| a.clone()).collect();
    let keys: Vec<(String, String)> = items
        .iter()
        .map(|a| (a.row.service.clone(), a.row.node_id.clone()))
        .collect();
    let outcome = write(acks, ctx, items).await;
    match outcome {
        Ok(results) => {
            acks.batches
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            acks.forget_served(&keys);
            for ((_, done), r) in batch.into_iter().zip(results) {
                let _ = done.send(r);
            }
        }
        Err(e) if batch.len() > 1 => {
            tracing::warn!(error = %e, acks = batch.len(), "ack batch failed; writing its acks one by one");
            for (ack, done) in batch {
                let r = match write(acks, ctx, vec![ack]).await {
                    Ok(mut r) => r.pop().unwrap_or(Err(AckError::Stopped)),
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

/// One transaction for `items`: decides each against its locked row, writes the
/// accepted ones. The outer error means nothing was committed.
async fn write(
    acks: &Arc<Acks>,
    ctx: &Arc<Ctx>,
    items: Vec<Ack>,
) -> Result<Vec<Result<(), AckError>>, AckError> {
    let (acks, ctx2) = (acks.clone(), ctx.clone());
    ctx.store
        .write(move |c| {
            let keys: Vec<(String, String)> = items
                .iter()
                .map(|a| (a.row.service.clone(), a.row.node_id.clone()))
                .collect();
            let rows: HashMap<(String, String), store::acks::AckTarget> =
                store::acks::targets(c, &keys)?
                    .into_iter()
                    .map(|t| ((t.service.clone(), t.node_id.clone()), t))
                    .collect();
            let serve = Serve {
                master: &ctx2.master,
                trust_bundle: ctx2.ca.bundle_pem(),
                waiters: None,
            };
            let mut accepted = Vec::new();
            let mut results = Vec::with_capacity(items.len());
            for (ack, key) in items.iter().zip(&keys) {
                let r = decide(c, &acks, &serve, ack, rows.get(key));
                if r.is_ok() {
                    accepted.push(ack.row.clone());
                }
                results.push(r);
            }
            store::acks::record(c, &accepted)?;
            store::acks::finish_deliveries(c, &accepted)?;
            Ok::<_, AckError>(results)
        })
        .await
}

fn decide(
    c: &mut store::Conn<'_>,
    acks: &Acks,
    serve: &Serve<'_>,
    ack: &Ack,
    row: Option<&store::acks::AckTarget>,
) -> Result<(), AckError> {
    let row = row.ok_or(AckError::Revoked)?;
    if !store::nodes::accepts(
        &row.identity_serial,
        row.prev_identity_serial.as_deref(),
        row.prev_identity_until,
        &ack.serial,
        ack.row.now,
    ) {
        return Err(AckError::Superseded);
    }
    let a = &ack.row;
    if a.version > row.desired_version {
        return Err(AckError::AheadOfDesired {
            version: a.version,
            desired: row.desired_version,
        });
    }
    if !a.installed || a.version != row.desired_version {
        return Ok(());
    }
    // After a metadata change the hash is not stored: what this replica served, or
    // what is served now.
    let expected = match &row.desired_hash {
        Some(h) => Some(h.clone()),
        None => match acks.served_hash(&a.service, &a.node_id, a.version) {
            Some(h) => Some(h),
            None => serve
                .current(c, &a.service, &a.node_id, a.now, false)
                .map_err(|e| AckError::Serve(e.to_string()))?
                .map(|b| b.content_hash),
        },
    };
    if expected.as_deref() != Some(a.hash.as_str()) {
        return Err(AckError::HashMismatch(a.version));
    }
    Ok(())
}
