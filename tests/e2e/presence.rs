//! Database work in proportion to change: an idle poll reads and writes no row,
//! liveness comes from held polls and replica heartbeats, the node check is served
//! from memory and still refuses a revoked node on every replica within a second, and
//! acks are group-committed with each one decided as if it were alone.

use ferry_tests::agent::spawn_agent;
use ferry_tests::node::{enroll, mtls_client, p256};
use ferry_tests::{Backend, ControlPlane, eventually, spawn_control_plane};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

fn quick(cfg: &mut ferry_control_plane::config::Config) {
    cfg.presence_linger = Duration::from_secs(1);
    cfg.max_poll_wait = Duration::from_secs(5);
    cfg.jobs.staleness_tick = Duration::from_millis(300);
}

async fn status_of(cp: &ControlPlane, client: &reqwest::Client, path: &str) -> u16 {
    match client.get(format!("{}{path}", cp.url)).send().await {
        Ok(r) => r.status().as_u16(),
        Err(_) => 0,
    }
}

async fn installed(cp: &ControlPlane, n: i64) {
    eventually("every node installed", Duration::from_secs(30), || async {
        let s = cp.admin().get("/v1/status").await.body;
        (s["services"][0]["ok"] == n).then_some(())
    })
    .await;
}

fn polls(cp: &ControlPlane) -> u64 {
    cp.stats
        .polls_not_modified
        .load(std::sync::atomic::Ordering::Relaxed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_poll_reads_and_writes_no_database_row() {
    // Arrange: a control plane whose periodic jobs other than renewal (which issues the
    // first bundles) are quiet; its own statement rate with no agent connected is the
    // baseline. Then sixteen agents holding one-second polls, settled.
    let cp = spawn_control_plane(Backend::Postgres, |cfg| {
        quick(cfg);
        let hour = Duration::from_secs(3600);
        cfg.jobs.rotation_tick = hour;
        cfg.jobs.staleness_tick = hour;
        cfg.jobs.expiry_tick = hour;
        cfg.jobs.objects_tick = hour;
    })
    .await;
    cp.create_service("web", json!({ "cert_ttl_seconds": 3600 }))
        .await;
    let window = Duration::from_secs(10);
    tokio::time::sleep(Duration::from_secs(2)).await; // every job has started
    let quiet = cp.store.statements();
    tokio::time::sleep(window).await;
    let baseline = cp.store.statements() - quiet;
    let (token, _) = cp.join_token("web", 16, 600).await;
    let mut agents = Vec::new();
    for i in 0..16 {
        agents.push(
            spawn_agent(&cp, "web", &format!("n{i}"), &token, |c| {
                c.poll_wait = Duration::from_secs(1)
            })
            .await,
        );
    }
    installed(&cp, 16).await;
    tokio::time::sleep(Duration::from_secs(3)).await; // presence written, caches warm
    let versions = "SELECT CAST(COALESCE(SUM(xmin::text::bigint), 0) AS BIGINT) AS n FROM nodes";
    let misses_before = cp.metric("ferry_node_cache_misses_total").await;
    let (rows_before, polls_before) = (cp.db.scalar(versions), polls(&cp));
    let statements_before = cp.store.statements();

    // Act: ten seconds of idling.
    tokio::time::sleep(window).await;

    // Assert: no node row was rewritten, every node check came from memory, and the
    // statements beyond the baseline (the replica's own jobs) are not one per poll.
    let statements = cp.store.statements() - statements_before;
    let polls = polls(&cp) - polls_before;
    assert_eq!(
        cp.db.scalar(versions),
        rows_before,
        "an idle poll wrote a node row"
    );
    let misses = cp.metric("ferry_node_cache_misses_total").await - misses_before;
    assert_eq!(misses, 0.0, "an idle poll read its node from the database");
    let per_poll = statements.saturating_sub(baseline) as f64 / polls as f64;
    println!(
        "idle statements per poll: {per_poll:.3} ({statements} in {window:?} \
         for {polls} polls, {baseline} with no agent)"
    );
    // Slack: two seconds of the jobs' own rate (a tick that falls on either side of a
    // window edge); a statement per poll would exceed it several times over.
    let slack = baseline * 2 / window.as_secs();
    assert!(
        polls >= 2 * slack,
        "{polls} polls: too few to tell from {slack}"
    );
    assert!(
        statements <= baseline + slack,
        "{statements} statements for {polls} idle polls, {baseline} with no agent"
    );
    let nodes = cp.admin().get("/v1/services/web/nodes").await.body;
    for n in nodes["items"].as_array().expect("items") {
        assert!(
            n["last_seen"].is_string(),
            "a connected node shows as seen: {n}"
        );
    }
}

async fn a_dead_replicas_nodes_go_unseen_from_its_last_heartbeat(backend: Backend) {
    // Arrange: a node the database says is held by a replica that stopped
    // heartbeating 4 s ago (the sweep takes replicas silent for 5 s).
    let cp = spawn_control_plane(backend, quick).await;
    cp.create_service(
        "web",
        json!({ "cert_ttl_seconds": 600, "stale_after_seconds": 10 }),
    )
    .await;
    let (token, _) = cp.join_token("web", 1, 600).await;
    assert_eq!(enroll(&cp, "web", "n1", &token, &p256()).await.status, 200);
    let beat = ferry_control_plane::store::now_ms() - 4_000;
    cp.db.execute(&format!(
        "INSERT INTO replicas (id, started_at, heartbeat_at, held) VALUES ('gone', {beat}, {beat}, 1)"
    ));
    cp.db
        .execute("UPDATE nodes SET held_by = 'gone', unseen_at = NULL WHERE node_id = 'n1'");

    // Act: wait for the sweep.
    eventually(
        "the dead replica is swept",
        Duration::from_secs(10),
        || async {
            (cp.db
                .scalar("SELECT COUNT(*) AS n FROM replicas WHERE id = 'gone'")
                == 0)
                .then_some(())
        },
    )
    .await;

    // Assert: the node counts from the last heartbeat, and is alerted on time.
    let unseen_at = cp
        .db
        .scalar("SELECT unseen_at AS n FROM nodes WHERE node_id = 'n1'");
    assert_eq!(
        unseen_at,
        beat + 10_000,
        "deadline = last heartbeat + stale_after"
    );
    assert_eq!(
        cp.db
            .scalar("SELECT COUNT(*) AS n FROM nodes WHERE held_by IS NOT NULL"),
        0
    );
    let alert = eventually(
        "the node is alerted unseen",
        Duration::from_secs(15),
        || async {
            let a = cp.admin().get("/v1/alerts?state=firing").await.body;
            a["items"]
                .as_array()
                .and_then(|i| i.iter().find(|x| x["reason"] == "unseen").cloned())
        },
    )
    .await;
    let fired = time::OffsetDateTime::parse(
        alert["fired_at"].as_str().expect("fired_at"),
        &time::format_description::well_known::Rfc3339,
    )
    .expect("RFC 3339");
    let fired_ms = (fired.unix_timestamp_nanos() / 1_000_000) as i64;
    assert!(
        fired_ms >= unseen_at && fired_ms < unseen_at + 3_000,
        "fired {} ms after the deadline",
        fired_ms - unseen_at
    );
}

#[tokio::test]
async fn a_dead_replicas_nodes_go_unseen_from_its_last_heartbeat_sqlite() {
    a_dead_replicas_nodes_go_unseen_from_its_last_heartbeat(Backend::Sqlite).await;
}

#[tokio::test]
async fn a_dead_replicas_nodes_go_unseen_from_its_last_heartbeat_postgres() {
    a_dead_replicas_nodes_go_unseen_from_its_last_heartbeat(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_the_database_gave_up_on_writes_its_held_nodes_again() {
    // Arrange: a held, settled node.
    let cp = spawn_control_plane(Backend::Postgres, quick).await;
    cp.create_service("web", json!({})).await;
    let (token, _) = cp.join_token("web", 1, 600).await;
    let _agent = spawn_agent(&cp, "web", "n1", &token, |c| {
        c.poll_wait = Duration::from_secs(20)
    })
    .await;
    installed(&cp, 1).await;
    let held = "SELECT COUNT(*) AS n FROM nodes WHERE held_by IS NOT NULL AND unseen_at IS NULL";
    eventually(
        "the node is recorded as held",
        Duration::from_secs(10),
        || async { (cp.db.scalar(held) == 1).then_some(()) },
    )
    .await;

    // Act: what another replica's sweep does to a replica it thinks is dead.
    cp.db.execute("DELETE FROM replicas");
    cp.db
        .execute("UPDATE nodes SET held_by = NULL, unseen_at = 1");

    // Assert: the next heartbeat finds its row gone and writes its nodes again.
    eventually("held again", Duration::from_secs(5), || async {
        (cp.db.scalar(held) == 1).then_some(())
    })
    .await;
    assert_eq!(cp.db.scalar("SELECT COUNT(*) AS n FROM replicas"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_node_is_refused_on_every_replica_within_a_second() {
    // Arrange: three replicas, 10 enrolled nodes whose checks are cached everywhere.
    let first = spawn_control_plane(Backend::Postgres, |_| {}).await;
    let replicas = [first.replica().await, first.replica().await];
    let all: Vec<&ControlPlane> = std::iter::once(&first).chain(replicas.iter()).collect();
    first.create_service("web", json!({})).await;
    let (token, _) = first.join_token("web", 40, 600).await;
    let mut latencies = Vec::new();
    for round in 0..10 {
        let key = p256();
        let node = format!("r{round}");
        let enrolled = enroll(&first, "web", &node, &token, &key).await;
        assert_eq!(enrolled.status, 200, "{}", enrolled.body);
        let client = mtls_client(
            &first,
            enrolled.body["certificate"].as_str().expect("cert"),
            &key,
        );
        for cp in &all {
            for _ in 0..2 {
                assert_eq!(status_of(cp, &client, "/v1/agent/whoami").await, 200);
            }
        }

        // Act: revoke through one replica (round-robin), or supersede by re-enrolling.
        let via = all[round % 3];
        let started = Instant::now();
        if round % 2 == 0 {
            assert_eq!(
                via.admin()
                    .delete(&format!("/v1/services/web/nodes/{node}"))
                    .await
                    .status,
                204
            );
        } else {
            // The node's own key: a re-enrollment (another key would be a 409).
            assert_eq!(enroll(via, "web", &node, &token, &key).await.status, 200);
        }

        // Assert: every replica refuses the old certificate within a second.
        for cp in &all {
            let refused = loop {
                if status_of(cp, &client, "/v1/agent/whoami").await == 403 {
                    break started.elapsed();
                }
                assert!(
                    started.elapsed() < Duration::from_secs(1),
                    "still accepted on {}",
                    cp.url
                );
                tokio::time::sleep(Duration::from_millis(2)).await;
            };
            latencies.push(refused);
        }
    }
    latencies.sort();
    let ms = |d: &Duration| d.as_secs_f64() * 1000.0;
    println!(
        "figure revocation.p50_ms {:.1} ms\nfigure revocation.max_ms {:.1} ms\nlimit revocation.max_ms 1000 ms",
        ms(&latencies[latencies.len() / 2]),
        ms(latencies.last().expect("latencies"))
    );
}

/// The bundle a fresh node is first served.
async fn first_bundle(cp: &ControlPlane, client: &reqwest::Client) -> Value {
    let r = client
        .get(format!("{}/v1/agent/bundle?since=0&wait=20", cp.url))
        .send()
        .await
        .expect("poll");
    assert_eq!(r.status(), 200);
    r.json::<Value>().await.expect("json")["bundle"].clone()
}

async fn ack(cp: &ControlPlane, client: &reqwest::Client, version: i64, hash: &str) -> u16 {
    client
        .post(format!("{}/v1/agent/ack", cp.url))
        .json(&json!({ "version": version, "content_hash": hash, "status": "installed" }))
        .send()
        .await
        .expect("ack")
        .status()
        .as_u16()
}

async fn concurrent_acks_are_decided_one_by_one_and_committed_together(backend: Backend) {
    // Arrange: 12 nodes with their first bundle; one of them is revoked.
    let cp = spawn_control_plane(backend, |_| {}).await;
    cp.create_service("web", json!({})).await;
    let (token, _) = cp.join_token("web", 12, 600).await;
    let mut nodes = Vec::new();
    for i in 0..12 {
        let key = p256();
        let enrolled = enroll(&cp, "web", &format!("n{i:02}"), &token, &key).await;
        let client = mtls_client(
            &cp,
            enrolled.body["certificate"].as_str().expect("cert"),
            &key,
        );
        let bundle = first_bundle(&cp, &client).await;
        nodes.push((
            client,
            bundle["version"].as_i64().expect("v"),
            bundle["content_hash"].as_str().expect("h").to_owned(),
        ));
    }
    assert_eq!(
        cp.admin().delete("/v1/services/web/nodes/n11").await.status,
        204
    );
    let wrong = format!("sha256:{}", "0".repeat(64));

    // Act: all at once: good acks, a duplicate, a wrong hash, a version from the
    // future, an older version, and the revoked node's.
    let c = |i: usize| &nodes[i].0;
    let v = |i: usize| nodes[i].1;
    let h = |i: usize| nodes[i].2.as_str();
    let answers = tokio::join!(
        ack(&cp, c(0), v(0), h(0)),
        ack(&cp, c(0), v(0), h(0)),
        ack(&cp, c(1), v(1), &wrong),
        ack(&cp, c(2), v(2) + 5, h(2)),
        ack(&cp, c(11), v(11), h(11)),
        ack(&cp, c(3), v(3), h(3)),
        ack(&cp, c(4), v(4), h(4)),
        ack(&cp, c(5), v(5), h(5)),
    );

    // Assert: each answered as if alone, and only the good ones recorded.
    assert_eq!(answers, (204, 204, 409, 409, 403, 204, 204, 204));
    let acked = |n: &str| {
        cp.db.scalar(&format!(
            "SELECT acked_version AS n FROM nodes WHERE node_id = '{n}'"
        ))
    };
    assert_eq!(
        (acked("n00"), acked("n03"), acked("n05")),
        (v(0), v(3), v(5))
    );
    assert_eq!(
        (acked("n01"), acked("n02")),
        (0, 0),
        "refused acks change nothing"
    );
    assert_eq!(
        ack(&cp, c(3), v(3), h(3)).await,
        204,
        "a repeat later is harmless"
    );
    assert_eq!(acked("n03"), v(3));
    let batches = cp.metric("ferry_ack_batches_total").await;
    let acks = cp.metric("ferry_acks_total").await;
    assert!(batches <= acks, "{batches} batches for {acks} acks");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_acks_are_decided_one_by_one_and_committed_together_postgres() {
    concurrent_acks_are_decided_one_by_one_and_committed_together(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_acks_are_decided_one_by_one_and_committed_together_sqlite() {
    concurrent_acks_are_decided_one_by_one_and_committed_together(Backend::Sqlite).await;
}
