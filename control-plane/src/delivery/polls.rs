//! At most [`MAX_HELD_POLLS_PER_NODE`] long-polls held per node identity on a replica.
//! A well-behaved agent holds one; a second covers a reconnect whose old connection
//! the server has not noticed dead yet. A further poll ends the oldest one held (newest
//! wins, so a live agent is never locked out by dead connections), which bounds what one
//! stolen or misbehaving identity can hold open.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::Notify;

pub const MAX_HELD_POLLS_PER_NODE: usize = 2;

type Held = VecDeque<(u64, Arc<Notify>)>;

#[derive(Default)]
pub struct PollLimit {
    held: Mutex<HashMap<(String, String), Held>>,
    next: AtomicU64,
}

/// One held poll; its place is given up on drop. `evicted` fires when a newer poll of
/// the same node took it.
pub struct PollSlot<'a> {
    limit: &'a PollLimit,
    key: (String, String),
    id: u64,
    pub evicted: Arc<Notify>,
}

impl PollLimit {
    fn lock(&self) -> MutexGuard<'_, HashMap<(String, String), Held>> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes a place for a poll of `service`/`node`, ending the oldest beyond the cap.
    pub fn hold(&self, service: &str, node: &str) -> PollSlot<'_> {
        let key = (service.to_owned(), node.to_owned());
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let evicted = Arc::new(Notify::new());
        let mut held = self.lock();
        let queue = held.entry(key.clone()).or_default();
        queue.push_back((id, evicted.clone()));
        while queue.len() > MAX_HELD_POLLS_PER_NODE {
            if let Some((_, oldest)) = queue.pop_front() {
                // A stored permit: the poll sees it even if it is not waiting yet.
                oldest.notify_one();
            }
        }
        PollSlot {
            limit: self,
            key,
            id,
            evicted,
        }
    }

    /// Polls held for `service`/`node` now.
    pub fn held(&self, service: &str, node: &str) -> usize {
        self.lock()
            .get(&(service.to_owned(), node.to_owned()))
            .map_or(0, VecDeque::len)
    }
}

impl Drop for PollSlot<'_> {
    fn drop(&mut self) {
        let mut held = self.limit.lock();
        if let Some(queue) = held.get_mut(&self.key) {
            queue.retain(|(id, _)| *id != self.id);
            if queue.is_empty() {
                held.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_third_poll_of_a_node_ends_the_oldest_and_places_are_given_back() {
        let limit = PollLimit::default();
        let first = limit.hold("web", "n1");
        let second = limit.hold("web", "n1");
        let other = limit.hold("web", "n2");
        assert_eq!(limit.held("web", "n1"), 2);

        let third = limit.hold("web", "n1");

        tokio::time::timeout(Duration::from_secs(1), first.evicted.notified())
            .await
            .expect("the oldest poll is told to end");
        let not_second =
            tokio::time::timeout(Duration::from_millis(50), second.evicted.notified()).await;
        assert!(not_second.is_err(), "only the oldest is ended");
        assert_eq!(limit.held("web", "n1"), 2);
        assert_eq!(limit.held("web", "n2"), 1);
        drop((first, second, third, other));
        assert_eq!(limit.held("web", "n1"), 0);
        assert!(limit.lock().is_empty(), "no entry left behind");
    }
}
