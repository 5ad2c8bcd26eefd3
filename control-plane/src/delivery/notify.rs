//! Wake-ups across replicas: PostgreSQL NOTIFY inside the transaction that changes
//! versions (delivered at COMMIT), and one LISTEN connection per replica feeding the
//! in-process [`Waiters`]. Changes are coalesced per service: one notification names
//! many nodes, or `*` for all of a service's nodes. On SQLite (one replica) only the
//! local wake applies.

use super::waiters::Waiters;
use crate::store::Conn;
use diesel::prelude::*;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

pub const CHANNEL: &str = "ferry_bundle";
/// PostgreSQL caps a payload at 8000 bytes; above this a service-wide wake is sent.
const MAX_PAYLOAD: usize = 7000;

/// Nodes whose desired version changed in one transaction.
#[derive(Debug, Default, Clone)]
pub struct Changes {
    by_service: BTreeMap<String, Option<Vec<String>>>, // None: every node of the service
}

impl Changes {
    pub fn node(&mut self, service: &str, node: &str) {
        if let Some(nodes) = self
            .by_service
            .entry(service.to_owned())
            .or_insert_with(|| Some(Vec::new()))
        {
            nodes.push(node.to_owned());
        }
    }

    pub fn service(&mut self, service: &str) {
        self.by_service.insert(service.to_owned(), None);
    }

    pub fn is_empty(&self) -> bool {
        self.by_service.is_empty()
    }

    fn payloads(&self) -> Vec<String> {
        self.by_service
            .iter()
            .map(|(svc, nodes)| match nodes {
                Some(nodes)
                    if svc.len() + nodes.iter().map(|n| n.len() + 1).sum::<usize>()
                        < MAX_PAYLOAD =>
                {
                    format!("{svc}\n{}", nodes.join("\n"))
                }
                _ => format!("{svc}\n*"),
            })
            .collect()
    }

    /// Queues the notifications in the current transaction (PostgreSQL only).
    pub fn notify_in_tx(&self, c: &mut Conn<'_>) -> QueryResult<()> {
        if let Conn::Pg(c) = c {
            for payload in self.payloads() {
                diesel::sql_query("SELECT pg_notify($1, $2)")
                    .bind::<diesel::sql_types::Text, _>(CHANNEL)
                    .bind::<diesel::sql_types::Text, _>(payload)
                    .execute(*c)?;
            }
        }
        Ok(())
    }

    /// Wakes this replica's waiters (after COMMIT).
    pub fn wake_local(&self, waiters: &Waiters) {
        for (svc, nodes) in &self.by_service {
            match nodes {
                Some(nodes) => waiters.wake_nodes(svc, nodes.iter().map(String::as_str)),
                None => waiters.wake_service(svc),
            }
        }
    }
}

/// Applies one received payload to the local waiters.
fn apply(payload: &str, waiters: &Waiters) {
    let mut lines = payload.lines();
    let Some(svc) = lines.next() else { return };
    let nodes: Vec<&str> = lines.collect();
    if nodes == ["*"] {
        waiters.wake_service(svc);
    } else {
        waiters.wake_nodes(svc, nodes);
    }
}

/// Runs the LISTEN loop on a dedicated thread until `stop` is set. When the connection
/// drops, notifications in the gap are lost: the node cache stops being trusted at
/// once, and after reconnecting every waiter is woken so each re-reads its node. A ping
/// every second proves the connection still receives; the cache is not trusted when
/// the last answer is older than [`super::nodecache::LISTEN_FRESH`].
pub fn spawn_listener(
    url: String,
    waiters: Arc<Waiters>,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    const PING_EVERY: Duration = Duration::from_secs(1);
    std::thread::Builder::new()
        .name("ferry-listen".into())
        .spawn(move || {
            let mut backoff = Duration::from_millis(100);
            let mut first = true;
            while !stop.load(Ordering::Relaxed) {
                let listening = PgConnection::establish(&url)
                    .map_err(|e| e.to_string())
                    .and_then(|mut c| {
                        diesel::sql_query(format!("LISTEN {CHANNEL}"))
                            .execute(&mut c)
                            .map(|_| c)
                            .map_err(|e| e.to_string())
                    });
                let mut conn = match listening {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::warn!(error = %e, "LISTEN connection failed; retrying");
                        std::thread::sleep(backoff);
                        backoff = (backoff * 2).min(Duration::from_secs(5));
                        continue;
                    }
                };
                backoff = Duration::from_millis(100);
                if !first {
                    tracing::info!("LISTEN connection restored; waking every held poll to re-read");
                }
                first = false;
                // Whatever changed while nobody listened: every node re-reads.
                waiters.wake_all();
                waiters.cache.listening(true, crate::store::now_ms());
                let mut pinged = std::time::Instant::now();
                'poll: while !stop.load(Ordering::Relaxed) {
                    for n in conn.notifications_iter() {
                        match n {
                            Ok(n) => apply(&n.payload, &waiters),
                            Err(e) => {
                                tracing::warn!(error = %e, "LISTEN connection lost");
                                break 'poll;
                            }
                        }
                    }
                    if pinged.elapsed() >= PING_EVERY {
                        if let Err(e) = diesel::sql_query("SELECT 1").execute(&mut conn) {
                            tracing::warn!(error = %e, "LISTEN connection lost");
                            break 'poll;
                        }
                        waiters.cache.listen_alive(crate::store::now_ms());
                        pinged = std::time::Instant::now();
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
                waiters.cache.listening(false, crate::store::now_ms());
            }
        })
        .unwrap_or_else(|e| panic!("cannot spawn the LISTEN thread: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_coalesce_per_service_and_fall_back_to_a_wildcard() {
        let mut c = Changes::default();
        c.node("web", "a");
        c.node("web", "b");
        c.node("api", "x");
        assert_eq!(
            c.payloads(),
            vec!["api\nx".to_owned(), "web\na\nb".to_owned()]
        );
        for i in 0..2000 {
            c.node("big", &format!("node-{i:05}"));
        }
        assert!(c.payloads().contains(&"big\n*".to_owned()));
        c.service("api");
        assert!(c.payloads().contains(&"api\n*".to_owned()));
    }
}
