//! Liveness from connections: which nodes hold a long-poll on this replica, recorded
//! in the database in batches (`store::presence`) instead of a write per poll.
//!
//! A poll holds its node for as long as it is parked; other agent requests touch it.
//! Every flush (one transaction a second) heartbeats this replica's row and writes, in
//! one statement, the nodes that became held and the nodes released longer than the
//! linger ago (the gap between a poll's answer and the agent's next poll is not a
//! disconnect). A node that stays connected is written once, when it connects.

use crate::store::{self, Store, presence::PresenceWrite};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// How often presence is flushed and the replica heartbeats, by default.
pub const FLUSH_EVERY: Duration = Duration::from_secs(1);
/// A replica whose heartbeat is older than this is swept as dead.
pub const DEAD_AFTER: Duration = Duration::from_secs(5);

type Key = (Arc<str>, Arc<str>);

#[derive(Debug, Default)]
struct Entry {
    /// Polls of this node parked here now.
    held: u32,
    /// The database says this replica holds the node.
    written_held: bool,
    /// When the node was last released or touched (unix ms); 0: never.
    last_at: i64,
    /// A release or touch not yet written.
    dirty: bool,
}

/// The nodes connected to this replica.
pub struct Presence {
    replica: String,
    linger_ms: i64,
    flush_every: Duration,
    entries: Mutex<HashMap<Key, Entry>>,
}

/// A parked poll's hold on its node; released on drop.
pub struct Held {
    presence: Arc<Presence>,
    key: Key,
}

impl Drop for Held {
    fn drop(&mut self) {
        let now = store::now_ms();
        let mut map = self.presence.lock();
        if let Some(e) = map.get_mut(&self.key) {
            e.held = e.held.saturating_sub(1);
            e.last_at = now;
            e.dirty = true;
        }
    }
}

impl Presence {
    /// `replica` names this process in `replicas`; `linger` is how long a node that
    /// stopped holding a poll still counts as connected before its release is written.
    pub fn new(replica: String, linger: Duration, flush_every: Duration) -> Self {
        Self {
            replica,
            linger_ms: linger.as_millis() as i64,
            flush_every,
            entries: Mutex::default(),
        }
    }

    pub fn replica(&self) -> &str {
        &self.replica
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Entry>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The node holds a poll here until the returned guard drops.
    pub fn hold(self: &Arc<Self>, service: &str, node: &str) -> Held {
        let key: Key = (service.into(), node.into());
        self.lock().entry(key.clone()).or_default().held += 1;
        Held {
            presence: self.clone(),
            key,
        }
    }

    /// The node made a request other than a poll.
    pub fn touch(&self, service: &str, node: &str) {
        let now = store::now_ms();
        let mut map = self.lock();
        let e = map.entry((service.into(), node.into())).or_default();
        e.last_at = now;
        e.dirty = true;
    }

    /// Polls held here now.
    pub fn held(&self) -> i64 {
        self.lock().values().filter(|e| e.held > 0).count() as i64
    }

    /// The writes due at `now`; with `all`, every held node (the database forgot us).
    fn due(&self, now: i64, all: bool) -> Vec<PresenceWrite> {
        let map = self.lock();
        let mut out: Vec<PresenceWrite> = map
            .iter()
            .filter_map(|((s, n), e)| {
                let held = e.held > 0;
                let write = if held {
                    all || !e.written_held
                } else {
                    e.dirty && now - e.last_at >= self.linger_ms
                };
                write.then(|| PresenceWrite {
                    service: s.to_string(),
                    node_id: n.to_string(),
                    at: if held { now } else { e.last_at },
                    held,
                })
            })
            .collect();
        // Rows in key order, so concurrent writers lock them in the same order.
        out.sort_by(|a, b| (&a.service, &a.node_id).cmp(&(&b.service, &b.node_id)));
        out
    }

    /// Marks `writes` as committed; released nodes leave the map unless they came back.
    fn committed(&self, writes: &[PresenceWrite]) {
        let mut map = self.lock();
        for w in writes {
            let key: Key = (w.service.as_str().into(), w.node_id.as_str().into());
            let Some(e) = map.get_mut(&key) else { continue };
            if w.held {
                e.written_held = true;
            } else if e.held == 0 && e.last_at == w.at {
                map.remove(&key);
            } else {
                // Held again (or touched again) since: the database now says released.
                e.written_held = false;
                e.dirty = e.held == 0;
            }
        }
    }

    /// Every held node as released now (clean shutdown).
    fn release_all(&self, now: i64) -> Vec<PresenceWrite> {
        let mut map = self.lock();
        let out = map
            .iter()
            .filter(|(_, e)| e.held > 0 || e.written_held || e.dirty)
            .map(|((s, n), e)| PresenceWrite {
                service: s.to_string(),
                node_id: n.to_string(),
                at: if e.held > 0 { now } else { e.last_at.max(1) },
                held: false,
            })
            .collect();
        map.clear();
        out
    }

    /// One flush, one transaction: heartbeat, the presence writes due, and a sweep of
    /// replicas that stopped heartbeating. Returns the number of nodes written.
    pub async fn flush(self: &Arc<Self>, store: &Store) -> Result<usize, store::StoreError> {
        let this = self.clone();
        let now = store::now_ms();
        let held = self.held();
        let dead_before = now - DEAD_AFTER.as_millis() as i64;
        let (writes, (replicas, nodes)) = store
            .write(move |c| {
                let known = store::presence::heartbeat(c, &this.replica, now, held)?;
                let writes = this.due(now, !known);
                store::presence::write(c, &this.replica, &writes)?;
                let swept = store::presence::sweep(c, dead_before)?;
                Ok::<_, store::StoreError>((writes, swept))
            })
            .await?;
        self.committed(&writes);
        if replicas > 0 {
            tracing::warn!(
                replicas,
                nodes,
                "replicas stopped heartbeating; their nodes count from the last heartbeat"
            );
        }
        Ok(writes.len())
    }

    /// Flushes every `flush_every` (a second by default) until `shutdown`, then releases every node and leaves.
    pub async fn run(self: Arc<Self>, store: Store, mut shutdown: watch::Receiver<bool>) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(self.flush_every) => {}
                _ = shutdown.wait_for(|s| *s) => break,
            }
            if let Err(e) = self.flush(&store).await {
                tracing::warn!(error = %e, "presence flush failed; retrying");
            }
        }
        let writes = self.release_all(store::now_ms());
        let this = self.clone();
        let left = store
            .write(move |c| {
                store::presence::write(c, &this.replica, &writes)?;
                store::presence::leave(c, &this.replica)?;
                Ok::<_, store::StoreError>(())
            })
            .await;
        if let Err(e) = left {
            tracing::warn!(error = %e, "cannot record this replica leaving; it will be swept");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(linger_ms: u64) -> Arc<Presence> {
        Arc::new(Presence::new(
            "r1".into(),
            Duration::from_millis(linger_ms),
            FLUSH_EVERY,
        ))
    }

    #[test]
    fn a_held_node_is_written_once_and_a_short_gap_is_not_a_release() {
        let p = p(3000);
        let first = p.hold("web", "a");
        let w = p.due(1000, false);
        assert_eq!((w.len(), w[0].held), (1, true));
        p.committed(&w);
        assert!(
            p.due(2000, false).is_empty(),
            "idle and held: nothing to write"
        );
        drop(first);
        let _second = p.hold("web", "a");
        assert!(
            p.due(store::now_ms() + 10_000, false).is_empty(),
            "re-held before anything was written"
        );
    }

    #[test]
    fn a_release_is_written_after_the_linger_with_its_own_time_and_forgotten() {
        let p = p(3000);
        let h = p.hold("web", "a");
        p.committed(&p.due(1, false));
        drop(h);
        let released = p.lock().values().next().map(|e| e.last_at).unwrap_or(0);
        assert!(p.due(released + 2999, false).is_empty(), "still lingering");
        let w = p.due(released + 3000, false);
        assert_eq!(
            w,
            vec![PresenceWrite {
                service: "web".into(),
                node_id: "a".into(),
                at: released,
                held: false
            }]
        );
        p.committed(&w);
        assert!(p.lock().is_empty());
    }

    #[test]
    fn a_forgotten_replica_writes_every_held_node_again() {
        let p = p(3000);
        let _a = p.hold("web", "a");
        let _b = p.hold("web", "b");
        p.committed(&p.due(1, false));
        assert!(p.due(2, false).is_empty());
        assert_eq!(p.due(2, true).len(), 2);
        assert_eq!(p.held(), 2);
    }
}
