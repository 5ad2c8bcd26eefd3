//! What an agent request needs to know about its node, served from memory: the two
//! identity serials the node accepts and its desired version.
//!
//! Entries are dropped by every wake-up of the node (local after a commit, or a NOTIFY
//! from another replica), which every change of a node's version or identity sends, so
//! a deleted or re-enrolled node is refused within the NOTIFY latency everywhere. A
//! fill races those drops by an epoch: a read that started before a drop is not kept.
//! While the LISTEN connection is down (or has not answered its ping lately) nothing is
//! served from here and every request reads the database, as before this cache.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

/// Longest an entry is trusted without a change: a safety net, not the mechanism.
pub const MAX_AGE: Duration = Duration::from_secs(600);
/// The listener's ping must have answered within this for the cache to be used.
pub const LISTEN_FRESH: Duration = Duration::from_secs(3);

/// A node as the agent API checks it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeAuth {
    pub identity_serial: String,
    pub prev_identity_serial: Option<String>,
    pub prev_identity_until: Option<i64>,
    pub desired_version: i64,
}

impl NodeAuth {
    /// The current identity, or within its window the one it renewed from (a lost
    /// renewal answer).
    pub fn accepts_serial(&self, serial: &str, now_ms: i64) -> bool {
        crate::store::nodes::accepts(
            &self.identity_serial,
            self.prev_identity_serial.as_deref(),
            self.prev_identity_until,
            serial,
            now_ms,
        )
    }
}

struct Entry {
    auth: NodeAuth,
    filled_ms: i64,
}

/// The per-replica cache of [`NodeAuth`].
pub struct NodeCache {
    map: Mutex<HashMap<String, HashMap<String, Entry>>>,
    epoch: AtomicU64,
    /// Whether invalidations reach us: always on SQLite (one replica, local wakes).
    listening: AtomicBool,
    /// Last time the LISTEN connection answered (unix ms); 0 for "no listener needed".
    listen_ok_ms: AtomicI64,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl NodeCache {
    /// `needs_listener`: true with PostgreSQL, where other replicas change nodes too.
    pub fn new(needs_listener: bool) -> Self {
        Self {
            map: Mutex::default(),
            epoch: AtomicU64::new(0),
            listening: AtomicBool::new(!needs_listener),
            listen_ok_ms: AtomicI64::new(if needs_listener { -1 } else { 0 }),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, HashMap<String, Entry>>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether entries may be trusted now (the LISTEN connection is up and answering,
    /// or no listener is needed).
    pub fn trusted(&self, now_ms: i64) -> bool {
        if !self.listening.load(Ordering::Acquire) {
            return false;
        }
        match self.listen_ok_ms.load(Ordering::Acquire) {
            0 => true,
            t => now_ms - t <= LISTEN_FRESH.as_millis() as i64,
        }
    }

    /// The cached node, if trusted now.
    pub fn get(&self, service: &str, node: &str, now_ms: i64) -> Option<NodeAuth> {
        let found = self.trusted(now_ms).then(|| {
            self.lock()
                .get(service)
                .and_then(|m| m.get(node))
                .filter(|e| now_ms - e.filled_ms <= MAX_AGE.as_millis() as i64)
                .map(|e| e.auth.clone())
        });
        match found.flatten() {
            Some(a) => {
                self.hits.fetch_add(1, Ordering::Relaxed);
                Some(a)
            }
            None => {
                self.misses.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    /// Call before reading the database for a fill; pass the result to [`Self::fill`].
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// Keeps `auth` unless something was invalidated since `epoch` was taken.
    pub fn fill(&self, epoch: u64, service: &str, node: &str, auth: NodeAuth, now_ms: i64) {
        let mut map = self.lock();
        // Checked under the lock that invalidations also take, so none slips between.
        if self.epoch.load(Ordering::Acquire) != epoch || !self.trusted(now_ms) {
            return;
        }
        map.entry(service.to_owned()).or_default().insert(
            node.to_owned(),
            Entry {
                auth,
                filled_ms: now_ms,
            },
        );
    }

    pub fn invalidate_nodes<'n>(&self, service: &str, nodes: impl IntoIterator<Item = &'n str>) {
        let mut map = self.lock();
        self.epoch.fetch_add(1, Ordering::AcqRel);
        if let Some(m) = map.get_mut(service) {
            for n in nodes {
                m.remove(n);
            }
            if m.is_empty() {
                map.remove(service);
            }
        }
    }

    pub fn invalidate_service(&self, service: &str) {
        let mut map = self.lock();
        self.epoch.fetch_add(1, Ordering::AcqRel);
        map.remove(service);
    }

    pub fn invalidate_all(&self) {
        let mut map = self.lock();
        self.epoch.fetch_add(1, Ordering::AcqRel);
        map.clear();
    }

    /// The LISTEN connection is (again) receiving: entries may be trusted from now on.
    pub fn listening(&self, on: bool, now_ms: i64) {
        if on {
            self.listen_ok_ms.store(now_ms, Ordering::Release);
        } else {
            self.invalidate_all();
        }
        self.listening.store(on, Ordering::Release);
    }

    /// The LISTEN connection answered a ping at `now_ms`.
    pub fn listen_alive(&self, now_ms: i64) {
        self.listen_ok_ms.store(now_ms, Ordering::Release);
    }

    /// Drops entries older than [`MAX_AGE`] (nodes that went away).
    pub fn prune(&self, now_ms: i64) {
        let max = MAX_AGE.as_millis() as i64;
        let mut map = self.lock();
        map.retain(|_, m| {
            m.retain(|_, e| now_ms - e.filled_ms <= max);
            !m.is_empty()
        });
    }

    /// (hits, misses) since start, for `/metrics`.
    pub fn counts(&self) -> (u64, u64) {
        (
            self.hits.load(Ordering::Relaxed),
            self.misses.load(Ordering::Relaxed),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(serial: &str, v: i64) -> NodeAuth {
        NodeAuth {
            identity_serial: serial.into(),
            prev_identity_serial: None,
            prev_identity_until: None,
            desired_version: v,
        }
    }

    #[test]
    fn the_identity_before_a_renewal_is_accepted_only_within_its_window() {
        let a = NodeAuth {
            identity_serial: "new".into(),
            prev_identity_serial: Some("old".into()),
            prev_identity_until: Some(1_000),
            desired_version: 1,
        };
        assert!(a.accepts_serial("new", 5_000));
        assert!(a.accepts_serial("old", 999));
        assert!(!a.accepts_serial("old", 1_000), "the window has closed");
        assert!(!a.accepts_serial("other", 0));
        let no_window = NodeAuth {
            prev_identity_until: None,
            ..a
        };
        assert!(
            !no_window.accepts_serial("old", 0),
            "no window, no previous identity"
        );
    }

    #[test]
    fn a_fill_that_raced_an_invalidation_is_not_kept() {
        let c = NodeCache::new(false);
        let e = c.epoch();
        c.invalidate_nodes("web", ["a"]);
        c.fill(e, "web", "a", auth("s1", 1), 1);
        assert_eq!(c.get("web", "a", 1), None);
        let e = c.epoch();
        c.fill(e, "web", "a", auth("s1", 1), 1);
        assert_eq!(c.get("web", "a", 1), Some(auth("s1", 1)));
        c.invalidate_service("web");
        assert_eq!(c.get("web", "a", 1), None);
    }

    #[test]
    fn nothing_is_served_while_the_listener_is_down_or_silent() {
        let c = NodeCache::new(true);
        c.fill(c.epoch(), "web", "a", auth("s1", 1), 1_000);
        assert_eq!(c.get("web", "a", 1_000), None, "no listener yet");
        c.listening(true, 1_000);
        c.fill(c.epoch(), "web", "a", auth("s1", 1), 1_000);
        assert!(c.get("web", "a", 2_000).is_some());
        assert_eq!(c.get("web", "a", 1_000 + 3_001), None, "ping too old");
        c.listen_alive(5_000);
        assert!(c.get("web", "a", 5_000).is_some());
        c.listening(false, 6_000);
        c.listening(true, 6_000);
        assert_eq!(
            c.get("web", "a", 6_000),
            None,
            "dropped with the connection"
        );
    }
}
