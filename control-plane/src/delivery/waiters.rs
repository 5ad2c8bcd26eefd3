//! In-process registry of held long-polls, keyed by service and node.
//!
//! A poll registers *before* it re-reads the database, so a change committed between
//! the read and the wait still wakes it. Entries disappear with their last waiter.
//! Every wake also drops the woken nodes from the [`NodeCache`], so whatever wakes a
//! poll (a version or identity change, here or on another replica) also makes the next
//! request of that node read the database.

use super::nodecache::NodeCache;
use super::servicecache::ServiceCache;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

type ByNode = HashMap<String, Arc<Notify>>;

pub struct Waiters {
    services: Mutex<HashMap<String, ByNode>>,
    /// The agent API's view of each node, dropped by every wake.
    pub cache: NodeCache,
    /// The service-level part of bundles, dropped by every service-wide wake.
    pub services_cache: ServiceCache,
    /// How many polls each node holds here (capped).
    pub polls: super::polls::PollLimit,
}

impl Default for Waiters {
    /// One replica (SQLite): every change wakes locally, no listener needed.
    fn default() -> Self {
        Self::new(false)
    }
}

/// A registered interest in one node's changes; unregisters on drop.
pub struct WaitHandle<'a> {
    waiters: &'a Waiters,
    service: String,
    node: String,
    pub notify: Arc<Notify>,
}

impl Waiters {
    /// `needs_listener`: other replicas change nodes too (PostgreSQL), so the cache is
    /// trusted only while the LISTEN connection is up.
    pub fn new(needs_listener: bool) -> Self {
        Self {
            services: Mutex::default(),
            cache: NodeCache::new(needs_listener),
            services_cache: ServiceCache::default(),
            polls: Default::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, ByNode>> {
        self.services.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn register(&self, service: &str, node: &str) -> WaitHandle<'_> {
        let notify = self
            .lock()
            .entry(service.to_owned())
            .or_default()
            .entry(node.to_owned())
            .or_insert_with(|| Arc::new(Notify::new()))
            .clone();
        WaitHandle {
            waiters: self,
            service: service.to_owned(),
            node: node.to_owned(),
            notify,
        }
    }

    /// Wakes the polls held for these nodes of `service`.
    pub fn wake_nodes<'n>(&self, service: &str, nodes: impl IntoIterator<Item = &'n str>) {
        let nodes: Vec<&str> = nodes.into_iter().collect();
        self.cache.invalidate_nodes(service, nodes.iter().copied());
        let map = self.lock();
        if let Some(by_node) = map.get(service) {
            for n in nodes {
                if let Some(notify) = by_node.get(n) {
                    notify.notify_waiters();
                }
            }
        }
    }

    /// Wakes every poll held for `service` (bulk changes are coalesced to this).
    pub fn wake_service(&self, service: &str) {
        self.cache.invalidate_service(service);
        self.services_cache.invalidate(service);
        if let Some(by_node) = self.lock().get(service) {
            by_node.values().for_each(|n| n.notify_waiters());
        }
    }

    /// Wakes everything (after the cross-replica listener lost notifications).
    pub fn wake_all(&self) {
        self.cache.invalidate_all();
        self.services_cache.invalidate_all();
        self.lock()
            .values()
            .flat_map(|m| m.values())
            .for_each(|n| n.notify_waiters());
    }

    /// Polls held right now.
    pub fn held(&self) -> usize {
        self.lock()
            .values()
            .flat_map(|m| m.values())
            .map(|n| Arc::strong_count(n) - 1)
            .sum()
    }
}

impl Drop for WaitHandle<'_> {
    fn drop(&mut self) {
        let mut map = self.waiters.lock();
        if let Some(by_node) = map.get_mut(&self.service) {
            // Two references left: the map's and ours, so this is the last waiter.
            if by_node
                .get(&self.node)
                .is_some_and(|n| Arc::strong_count(n) <= 2)
            {
                by_node.remove(&self.node);
            }
            if by_node.is_empty() {
                map.remove(&self.service);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_wake_reaches_only_the_named_node_and_entries_are_cleaned_up() {
        let w = Waiters::default();
        let a = w.register("web", "a");
        let b = w.register("web", "b");
        {
            let (wa, wb) = (a.notify.notified(), b.notify.notified());
            tokio::pin!(wa, wb);
            wa.as_mut().enable();
            wb.as_mut().enable();
            w.wake_nodes("web", ["a"]);
            tokio::time::timeout(Duration::from_millis(100), wa)
                .await
                .expect("a woken");
            assert!(
                tokio::time::timeout(Duration::from_millis(50), wb)
                    .await
                    .is_err(),
                "b must not wake"
            );
            assert_eq!(w.held(), 2);
        }
        drop((a, b));
        assert_eq!(w.held(), 0);
        assert!(w.lock().is_empty());
    }
}
