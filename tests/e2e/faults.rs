//! Fault injection, short form (issue 8): three control-plane replicas on one
//! PostgreSQL server of the test's own, 200 real agents spread over them (180 through
//! the agent library in-process, 20 as `ferry-agent` processes, half of those with
//! clocks 10 minutes off), 60-second certificates, and a minute of faults
//! (`chaos.rs`): replicas stopped and restarted at random (never all three down), agent
//! processes killed with SIGKILL at random (mid-install, when it falls so), PostgreSQL
//! stopped abruptly and restarted once, and five agents silenced for longer than
//! `stale_after`. Meanwhile bursts of forced refreshes are sent with an
//! `Idempotency-Key`, each sent two or three times, partly to another replica.
//!
//! Every second each agent's installed bundle is read back from disk. At the end the
//! run prints a table and holds Ferry to its promises: no agent ever held an expired
//! certificate, every forced refresh was delivered, one delivery per idempotency key,
//! no torn bundle (the recomputed content hash is the one the agent recorded), no lost
//! ack (what each agent has installed is what the database says it acked), every
//! replica ready again within seconds of the database restart, and exactly one
//! `unseen` alert, resolved, for each silenced agent and none for any other.
//!
//! Each agent has one server URL (the agent takes one), so an agent whose replica is
//! down waits for its restart on the same port.
//! `FERRY_FAULTS_LONG=1` runs the faults for ten minutes instead of one.

use ferry_tests::agent::spawn_agent;
use ferry_tests::pg_cluster::PgCluster;
use ferry_tests::{eventually, spawn_control_plane_on};
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Agents in the fleet, of which [`PROCS`] are processes.
const AGENTS: usize = 200;
const PROCS: usize = 20;
/// In-process agents stopped once for [`SILENCE`].
const SILENCED: usize = 5;
/// The service's `stale_after`; agents poll with a 5 s wait.
const STALE_AFTER: Duration = Duration::from_secs(40);
const SILENCE: Duration = Duration::from_secs(50);
/// How long replicas are stopped and refreshes sent (the short form).
const FAULTS: Duration = Duration::from_secs(60);
/// The long form, with `FERRY_FAULTS_LONG=1`.
const FAULTS_LONG: Duration = Duration::from_secs(600);
/// A replica is never down longer than this (agents renew 20 s before expiry)...
const MAX_DOWN: Duration = Duration::from_secs(8);
/// ...and stays up at least this long once restarted. Each agent takes one server URL,
/// so a replica that flapped faster than the 20 s renewal window would leave its agents
/// no reachable control plane (the long run without this showed exactly that).
const MIN_UP: Duration = Duration::from_secs(10);
/// Forced refreshes per burst; a burst every 2-4 s.
const BURST: usize = 10;
const SEED: u64 = 0x00fe_1122_f4a1_7500;
const SVC: &str = "web";

mod chaos;
mod disk;
mod refresh;
use chaos::{ProcAgent, Targets};
use disk::{Sample, Tally, check_acks, sample};
use refresh::{Refresh, refresh_bursts};

/// xorshift64*: reproducible choices from [`SEED`].
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
    fn millis(&mut self, from: u64, to: u64) -> Duration {
        Duration::from_millis(from + self.below(to - from))
    }
}

/// One agent of the fleet, by where it keeps its files.
#[derive(Clone)]
struct Member {
    node: String,
    install: PathBuf,
    state: PathBuf,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_database_and_agents_failing_at_random_break_no_promise() {
    let faults = match std::env::var("FERRY_FAULTS_LONG").as_deref() {
        Ok("1") => FAULTS_LONG,
        _ => FAULTS,
    };
    let started = Instant::now();
    let cluster = Arc::new(PgCluster::start());
    let first = spawn_control_plane_on(&cluster, |cfg| {
        cfg.presence_linger = Duration::from_secs(2);
        cfg.jobs.staleness_tick = Duration::from_secs(1);
        cfg.max_poll_wait = Duration::from_secs(5);
    })
    .await;
    let mut replicas = vec![first.replica().await, first.replica().await];
    replicas.insert(0, first);
    let body = replicas[0]
        .create_service(
            SVC,
            json!({ "cert_ttl_seconds": 60, "stale_after_seconds": STALE_AFTER.as_secs() }),
        )
        .await;
    assert_eq!(body["renew_before_seconds"], 20, "{body}");
    let (token, _) = replicas[0].join_token(SVC, AGENTS as u32, 600).await;
    let mut agents = Vec::new();
    for i in 0..AGENTS - PROCS {
        let cp = &replicas[i % replicas.len()];
        let short_polls = |c: &mut ferry_agent::AgentConfig| c.poll_wait = Duration::from_secs(5);
        agents.push(spawn_agent(cp, SVC, &format!("n{i:03}"), &token, short_polls).await);
    }
    let procs: Vec<ProcAgent> = (0..PROCS)
        .map(|i| {
            let skew = [None, Some("+10m"), None, Some("-10m")][i % 4];
            ProcAgent::spawn(&replicas, i % 3, format!("p{i:02}"), &token, skew)
        })
        .collect();
    let mut members: Vec<Member> = agents
        .iter()
        .enumerate()
        .map(|(i, a)| Member {
            node: format!("n{i:03}"),
            install: a.install_dir.clone(),
            state: a.state_dir.clone(),
        })
        .collect();
    members.extend(procs.iter().map(|p| Member {
        node: p.node.clone(),
        install: p.install_dir(),
        state: p.state_dir(),
    }));
    let all_held = |members: Vec<Member>| async move {
        let all = tokio::task::spawn_blocking(move || {
            members
                .iter()
                .all(|m| matches!(sample(&m.install, &m.state), Sample::Held(_)))
        });
        all.await.expect("sampler").then_some(())
    };
    eventually(
        "every agent installed a bundle",
        Duration::from_secs(90),
        || all_held(members.clone()),
    )
    .await;
    let fleet_up = started.elapsed();

    // Act: faults and refreshes for `faults`, sampling every agent every second.
    let urls: Vec<String> = replicas.iter().map(|r| r.url.clone()).collect();
    let client = replicas[0].admin().client;
    let admin = replicas[0].admin_token.clone();
    let deadline = Instant::now() + faults;
    let silenced = agents
        .drain(..SILENCED)
        .enumerate()
        .map(|(i, a)| (format!("n{i:03}"), i % 3, a))
        .collect();
    let targets = Targets {
        replicas,
        procs,
        silenced,
        cluster: cluster.clone(),
        token: token.clone(),
    };
    let chaos = tokio::spawn(chaos::run(targets, deadline));
    let nodes: Vec<String> = members.iter().map(|m| m.node.clone()).collect();
    let bursts = tokio::spawn(refresh_bursts(client, urls, admin, nodes, deadline));
    let mut tally = Tally::default();
    while Instant::now() < deadline {
        let fleet = members.clone();
        let samples = tokio::task::spawn_blocking(move || {
            let s = fleet.iter().map(|m| sample(&m.install, &m.state));
            s.collect::<Vec<_>>()
        });
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        for (i, s) in samples.await.expect("sampler").into_iter().enumerate() {
            tally.add(&members[i].node, s, now, i < SILENCED);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let (targets, log) = chaos.await.expect("chaos task");
    let refreshes = bursts.await.expect("refresh task");
    let faulted = started.elapsed();

    // Settle: every refresh tracked to its ack, every silenced node's alert resolved,
    // every node's ack equal to its disk.
    let admin = targets.replicas[0].admin();
    let ids: BTreeSet<String> = refreshes.iter().filter_map(|r| r.id.clone()).collect();
    let mut undelivered = ids.clone();
    let silenced: BTreeSet<String> = targets.silenced.iter().map(|s| s.0.clone()).collect();
    let mut unseen = BTreeMap::new();
    let settle = Instant::now();
    while settle.elapsed() < Duration::from_secs(60) {
        for id in undelivered.clone() {
            let d = admin.get(&format!("/v1/deliveries/{id}")).await.body;
            if d["state"] == "delivered" {
                undelivered.remove(&id);
            }
        }
        unseen = unseen_alerts(&admin).await;
        let resolved = silenced.iter().all(|n| {
            unseen
                .get(n)
                .is_some_and(|s: &Vec<String>| s.iter().all(|s| s == "resolved"))
        });
        if undelivered.is_empty() && resolved {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let (acks_matched, acks_lost) = check_acks(&targets.replicas[0], &members).await;
    let db = &targets.replicas[0].db;
    let keys_in_db =
        db.scalar("SELECT COUNT(*) AS n FROM deliveries WHERE idempotency_key LIKE 'faults-%'");
    let distinct_keys = db.scalar(
        "SELECT COUNT(DISTINCT idempotency_key) AS n FROM deliveries WHERE idempotency_key LIKE 'faults-%'",
    );
    let split_keys: Vec<&Refresh> = refreshes.iter().filter(|r| r.split).collect();
    let sends: usize = refreshes.iter().map(|r| r.sends).sum();
    let failed_sends: usize = refreshes.iter().map(|r| r.failed_sends).sum();
    let cross: usize = refreshes.iter().filter(|r| r.cross_replica).count();
    let alerted_once_resolved = silenced
        .iter()
        .filter(|n| {
            unseen
                .get(*n)
                .is_some_and(|s| s.len() == 1 && s[0] == "resolved")
        })
        .count();
    let false_alerts: Vec<&String> = unseen.keys().filter(|n| !silenced.contains(*n)).collect();
    let ready: Vec<String> = log
        .ready_after_pg
        .iter()
        .map(|r| r.map_or("never".into(), secs))
        .collect();

    println!(
        "\nfaults (seed {SEED:#x}): {AGENTS} agents ({PROCS} processes), 3 replicas, cert_ttl 60 s"
    );
    println!("{:<44} {:>12}", "measure", "value");
    let rows: Vec<(&str, String)> = vec![
        ("fleet enrolled and installed (s)", secs(fleet_up)),
        ("faults phase (s)", secs(faulted - fleet_up)),
        ("replica stops / restarts", format!("{}", log.outages)),
        ("agent processes killed (SIGKILL)", format!("{}", log.kills)),
        (
            "PostgreSQL restart, immediate (s)",
            log.pg_restart.map_or("-".into(), secs),
        ),
        ("  replicas ready again after it (s)", ready.join(" ")),
        ("samples of installed bundles", format!("{}", tally.samples)),
        (
            "min remaining certificate lifetime (s)",
            tally.min_left.map_or("-".into(), |m| m.to_string()),
        ),
        (
            "(1) samples holding an expired certificate",
            format!("{}", tally.expired.len()),
        ),
        (
            "    the same, of silenced agents (down)",
            format!("{}", tally.expired_silenced),
        ),
        (
            "forced refreshes (idempotency keys)",
            format!("{}", refreshes.len()),
        ),
        ("  requests sent (incl. retries)", format!("{sends}")),
        (
            "  requests failed (replica down)",
            format!("{failed_sends}"),
        ),
        ("  keys retried on another replica", format!("{cross}")),
        (
            "(2) refreshes delivered",
            format!("{}/{}", ids.len() - undelivered.len(), refreshes.len()),
        ),
        (
            "(3) deliveries with a key / distinct keys",
            format!("{keys_in_db}/{distinct_keys}"),
        ),
        (
            "    keys answered with two delivery ids",
            format!("{}", split_keys.len()),
        ),
        ("(4) torn bundles", format!("{}", tally.torn.len())),
        (
            "    samples checked against recorded hash",
            format!("{}", tally.hash_checked),
        ),
        (
            "(5) nodes whose ack equals their disk",
            format!("{acks_matched}/{AGENTS}"),
        ),
        (
            "    acks recorded by an agent, not in db",
            format!("{}", acks_lost.len()),
        ),
        (
            "(6) silenced: one unseen alert, resolved",
            format!("{alerted_once_resolved}/{SILENCED}"),
        ),
        (
            "    unseen alerts for other nodes",
            format!("{false_alerts:?}"),
        ),
        ("total wall time (s)", secs(started.elapsed())),
    ];
    for (k, v) in rows {
        println!("{k:<44} {v:>12}");
    }

    for p in &targets.procs {
        let failed = |e: &String| e.starts_with(&format!("{} ", p.node));
        if tally.expired.iter().any(failed) || false_alerts.contains(&&p.node) {
            let log = std::fs::read_to_string(p.dir.path().join("agent.log")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            println!("--- {} agent.log (last 40 lines, newest first)", p.node);
            tail.iter().for_each(|l| println!("{l}"));
        }
    }
    // Agents first, so none of them outlives its replica in the log.
    drop(agents);
    drop(targets.procs);
    assert!(
        log.outages >= 5,
        "only {} replica outages in {faults:?}",
        log.outages
    );
    assert!(
        log.kills >= 10,
        "only {} agent kills in {faults:?}",
        log.kills
    );
    assert!(
        log.ready_after_pg.len() == 3
            && log
                .ready_after_pg
                .iter()
                .all(|r| r.is_some_and(|d| d < Duration::from_secs(10))),
        "replicas not ready within 10 s of the PostgreSQL restart: {ready:?}"
    );
    assert!(
        tally.hash_checked > tally.samples / 2,
        "recorded hashes mostly unreadable"
    );
    assert!(
        tally.expired.is_empty(),
        "expired certificates held: {:?}",
        tally.expired
    );
    assert!(
        refreshes.iter().all(|r| r.id.is_some()),
        "a refresh was never accepted"
    );
    assert!(
        undelivered.is_empty(),
        "refreshes never delivered: {undelivered:?}"
    );
    assert!(
        split_keys.is_empty(),
        "one key, two deliveries: {:?}",
        split_keys[..1.min(split_keys.len())]
            .iter()
            .map(|r| &r.key)
            .collect::<Vec<_>>()
    );
    assert_eq!(
        (keys_in_db, distinct_keys),
        (refreshes.len() as i64, refreshes.len() as i64)
    );
    assert!(tally.torn.is_empty(), "torn bundles: {:?}", tally.torn);
    assert!(acks_lost.is_empty(), "acks lost: {acks_lost:?}");
    assert_eq!(
        acks_matched, AGENTS,
        "nodes whose acked bundle never matched their disk"
    );
    assert_eq!(
        alerted_once_resolved, SILENCED,
        "silenced nodes' unseen alerts: {unseen:?}"
    );
    assert!(
        false_alerts.is_empty(),
        "unseen alerts for nodes that were reachable: {false_alerts:?}"
    );
}

/// Every `unseen` alert of the service, as the states of each node's alerts.
async fn unseen_alerts(admin: &ferry_tests::control_plane::Api) -> BTreeMap<String, Vec<String>> {
    let page = admin
        .get(&format!("/v1/alerts?service={SVC}&limit=1000"))
        .await
        .body;
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for a in page["items"].as_array().into_iter().flatten() {
        if a["reason"] == "unseen" {
            let node = a["node_id"].as_str().unwrap_or_default().to_owned();
            let state = a["state"].as_str().unwrap_or_default().to_owned();
            out.entry(node).or_default().push(state);
        }
    }
    out
}

fn secs(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64())
}
