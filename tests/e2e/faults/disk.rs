//! What the agents of the fault scenario hold on disk: each one's `current` read back
//! and its content hash recomputed ([`sample`]), the run's tally of those samples, and
//! the final comparison of every node's ack in the database with its disk.

use super::{Member, SVC};
use ferry_shared::hash::bundle_content_hash;
use ferry_tests::ControlPlane;
use ferry_tests::agent::validity;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

/// One look at an agent's `current`.
pub enum Sample {
    Missing,
    /// A file vanished because a newer install pruned the directory mid-read.
    Raced,
    Held(Held),
}

pub struct Held {
    version: i64,
    /// Recomputed from the files.
    hash: String,
    /// What `delivery-state.json` recorded for this directory, if it names it.
    recorded: Option<String>,
    /// Why the install is torn, if it is.
    torn: Option<String>,
    not_after: i64,
}

pub fn sample(install: &Path, state: &Path) -> Sample {
    let current = install.join("current");
    let Ok(link) = std::fs::read_link(&current) else {
        return Sample::Missing;
    };
    let name = link
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default()
        .to_owned();
    let dir = install.join(&link);
    let files: Vec<_> = [
        "cert.pem",
        "chain.pem",
        "key.pem",
        "ca.pem",
        "metadata.json",
        "bundle.pem",
    ]
    .iter()
    .map(|f| std::fs::read_to_string(dir.join(f)))
    .collect();
    let recorded = recorded_hash(state, &name);
    let mut held = Held {
        version: name.parse().unwrap_or(-1),
        hash: String::new(),
        recorded,
        torn: None,
        not_after: 0,
    };
    let Ok(files) = files.into_iter().collect::<Result<Vec<_>, _>>() else {
        if std::fs::read_link(&current).ok().as_ref() != Some(&link) {
            return Sample::Raced;
        }
        held.torn = Some(format!("{name}: a file is missing"));
        return Sample::Held(held);
    };
    let [cert, chain, key, ca, metadata, bundle] = &files[..] else {
        unreachable!()
    };
    held.hash = bundle_content_hash(cert, chain, Some(key), ca, metadata);
    if *bundle != format!("{key}{cert}{chain}") {
        held.torn = Some(format!("{name}: bundle.pem is not key + cert + chain"));
    } else if held.recorded.as_ref().is_some_and(|r| *r != held.hash) {
        held.torn = Some(format!(
            "{name}: hash {} recorded {:?}",
            held.hash, held.recorded
        ));
    } else {
        held.not_after = validity(cert).1;
    }
    Sample::Held(held)
}

/// `delivery-state.json`'s content hash for the version directory `dir`.
fn recorded_hash(state: &Path, dir: &str) -> Option<String> {
    let text = std::fs::read_to_string(state.join("delivery-state.json")).ok()?;
    let v: Value = serde_json::from_str(&text).ok()?;
    ["installed", "installing"]
        .iter()
        .map(|k| &v[k])
        .find(|r| r["dir"] == dir)
        .and_then(|r| r["content_hash"].as_str().map(str::to_owned))
}

#[derive(Default)]
pub struct Tally {
    pub samples: usize,
    pub hash_checked: usize,
    pub min_left: Option<i64>,
    pub expired: Vec<String>,
    /// Expired samples of agents that were stopped on purpose (not reachable): counted
    /// apart, since the promise is for reachable nodes.
    pub expired_silenced: usize,
    pub torn: Vec<String>,
}

impl Tally {
    pub fn add(&mut self, node: &str, s: Sample, now: i64, silenced: bool) {
        let Sample::Held(h) = s else { return };
        self.samples += 1;
        self.hash_checked += usize::from(h.recorded.is_some());
        if let Some(t) = h.torn {
            self.torn.push(format!("{node} {t}"));
            return;
        }
        let left = h.not_after - now;
        if silenced {
            self.expired_silenced += usize::from(left <= 0);
            return;
        }
        self.min_left = Some(self.min_left.map_or(left, |m| m.min(left)));
        if left <= 0 {
            self.expired
                .push(format!("{node} v{} expired {}s ago", h.version, -left));
        }
    }
}

/// Waits up to 30 s for each node's acked version and hash in the database to equal
/// what its agent has on disk (renewals go on, so each node needs to match once).
/// Also returns every ack an agent recorded as accepted that the database did not have.
pub async fn check_acks(cp: &ControlPlane, agents: &[Member]) -> (usize, Vec<String>) {
    let (mut matched, mut lost) = (BTreeSet::new(), BTreeMap::new());
    let start = Instant::now();
    while matched.len() < agents.len() && start.elapsed() < Duration::from_secs(30) {
        // Disk first, then the database: acks only move the database forward.
        let disk: Vec<_> = agents
            .iter()
            .map(|a| {
                let state = std::fs::read_to_string(a.state.join("delivery-state.json"));
                let state: Value = state
                    .ok()
                    .and_then(|t| serde_json::from_str(&t).ok())
                    .unwrap_or_default();
                let acked = (state["installed"]["acked"] == true)
                    .then(|| state["installed"]["version"].as_i64())
                    .flatten();
                (acked, sample(&a.install, &a.state))
            })
            .collect();
        let page = cp
            .admin()
            .get(&format!("/v1/services/{SVC}/nodes?limit=1000"))
            .await
            .body;
        let db: BTreeMap<String, (i64, String)> = page["items"]
            .as_array()
            .expect("nodes")
            .iter()
            .map(|n| {
                let id = n["node_id"].as_str().unwrap_or_default().to_owned();
                let hash = n["acked_hash"].as_str().unwrap_or_default().to_owned();
                (id, (n["acked_version"].as_i64().unwrap_or(0), hash))
            })
            .collect();
        for (i, (acked, s)) in disk.into_iter().enumerate() {
            let node = &agents[i].node;
            let (db_version, db_hash) = db.get(node).cloned().unwrap_or_default();
            if let Some(v) = acked.filter(|v| *v > db_version) {
                lost.entry(node.clone())
                    .or_insert(format!("{node}: agent acked v{v}, db v{db_version}"));
            }
            if let Sample::Held(h) = s
                && (h.version, &h.hash) == (db_version, &db_hash)
            {
                matched.insert(i);
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    (matched.len(), lost.into_values().collect())
}
