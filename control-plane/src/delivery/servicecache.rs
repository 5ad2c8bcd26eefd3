//! The service-level part of a bundle, built once per change of the service and kept
//! in memory: its service-wide metadata and the policy fields a bundle carries. A poll
//! that serves a bundle then reads only the node's own rows.
//!
//! Entries are dropped by every service-wide wake-up (a service-wide metadata change,
//! a source's service value, an expiry, a policy change, a deletion: each sends one,
//! here after COMMIT and to other replicas by NOTIFY) and by a wake of everything. An
//! entry is not trusted past the earliest expiry among its values, past
//! [`nodecache::MAX_AGE`], or while the node cache does not trust the listener (the
//! same rule: no invalidation could reach us). A fill that raced a drop is not kept.

use super::nodecache::{self, NodeCache};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// What every bundle of one service shares.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceParts {
    pub key_type: String,
    pub alert_before_seconds: i64,
    /// Service-wide metadata as of the fill.
    pub metadata: BTreeMap<String, serde_json::Value>,
    /// The earliest expiry among those values (unix ms): the entry's end.
    pub expires_ms: Option<i64>,
}

struct Entry {
    parts: Arc<ServiceParts>,
    filled_ms: i64,
}

#[derive(Default)]
pub struct ServiceCache {
    map: Mutex<HashMap<String, Entry>>,
    epoch: AtomicU64,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl ServiceCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The cached parts of `service`, if they can be trusted at `now_ms`.
    pub fn get(&self, nodes: &NodeCache, service: &str, now_ms: i64) -> Option<Arc<ServiceParts>> {
        let max_age = nodecache::MAX_AGE.as_millis() as i64;
        let found = nodes.trusted(now_ms).then(|| {
            self.lock()
                .get(service)
                .filter(|e| now_ms - e.filled_ms <= max_age)
                .filter(|e| e.parts.expires_ms.is_none_or(|t| now_ms < t))
                .map(|e| e.parts.clone())
        });
        let found = found.flatten();
        let counter = if found.is_some() {
            &self.hits
        } else {
            &self.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    /// Call before reading the database for a fill; pass the result to [`Self::fill`].
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// Keeps `parts` unless something was dropped since `epoch` was taken.
    pub fn fill(
        &self,
        nodes: &NodeCache,
        epoch: u64,
        service: &str,
        parts: ServiceParts,
        now_ms: i64,
    ) {
        let mut map = self.lock();
        if self.epoch.load(Ordering::Acquire) != epoch || !nodes.trusted(now_ms) {
            return;
        }
        let parts = Arc::new(parts);
        map.insert(
            service.to_owned(),
            Entry {
                parts,
                filled_ms: now_ms,
            },
        );
    }

    pub fn invalidate(&self, service: &str) {
        let mut map = self.lock();
        self.epoch.fetch_add(1, Ordering::AcqRel);
        map.remove(service);
    }

    pub fn invalidate_all(&self) {
        let mut map = self.lock();
        self.epoch.fetch_add(1, Ordering::AcqRel);
        map.clear();
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

    fn parts(v: &str, expires_ms: Option<i64>) -> ServiceParts {
        ServiceParts {
            key_type: "ecdsa-p256".into(),
            alert_before_seconds: 600,
            metadata: BTreeMap::from([("k".to_owned(), serde_json::json!(v))]),
            expires_ms,
        }
    }

    #[test]
    fn a_service_wake_drops_the_entry_and_a_racing_fill_is_not_kept() {
        let (nodes, cache) = (NodeCache::new(false), ServiceCache::default());
        let epoch = cache.epoch();
        cache.fill(&nodes, epoch, "web", parts("a", None), 1_000);
        assert_eq!(
            cache
                .get(&nodes, "web", 1_001)
                .map(|p| p.metadata["k"].clone()),
            Some(serde_json::json!("a"))
        );

        let stale = cache.epoch();
        cache.invalidate("web");
        assert!(
            cache.get(&nodes, "web", 1_002).is_none(),
            "dropped by the wake"
        );
        cache.fill(&nodes, stale, "web", parts("old", None), 1_003);
        assert!(
            cache.get(&nodes, "web", 1_004).is_none(),
            "a fill read before the drop"
        );
    }

    #[test]
    fn an_entry_ends_at_its_earliest_expiry_and_without_a_listener() {
        let (nodes, cache) = (NodeCache::new(false), ServiceCache::default());
        cache.fill(&nodes, cache.epoch(), "web", parts("a", Some(5_000)), 1_000);
        assert!(cache.get(&nodes, "web", 4_999).is_some());
        assert!(cache.get(&nodes, "web", 5_000).is_none(), "a value expired");

        let pg = NodeCache::new(true);
        cache.fill(&pg, cache.epoch(), "api", parts("a", None), 1_000);
        assert!(
            cache.get(&pg, "api", 1_001).is_none(),
            "no listener: nothing kept or served"
        );
    }
}
