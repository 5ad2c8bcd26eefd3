//! Knowing every node's state: stale nodes are found from acks and polls, alerted once
//! per (node, reason), resolved when they recover, and summarised per service.

use ferry_tests::agent::spawn_agent;
use ferry_tests::{Backend, ControlPlane, eventually, spawn_control_plane};
use serde_json::{Value, json};
use std::time::Duration;

fn fast(cfg: &mut ferry_control_plane::config::Config) {
    cfg.presence_linger = Duration::from_secs(1);
    cfg.max_poll_wait = Duration::from_secs(5);
    cfg.jobs.staleness_tick = Duration::from_millis(300);
}

async fn alerts(cp: &ControlPlane, query: &str) -> Vec<Value> {
    let r = cp.admin().get(&format!("/v1/alerts?{query}")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.body["items"].as_array().cloned().unwrap_or_default()
}

fn of<'a>(items: &'a [Value], node: &str, reason: &str) -> Vec<&'a Value> {
    items
        .iter()
        .filter(|a| a["node_id"] == node && a["reason"] == reason)
        .collect()
}

async fn a_silent_agent_goes_stale_alerts_once_and_resolves(backend: Backend) {
    let cp = spawn_control_plane(backend, fast).await;
    cp.create_service(
        "web",
        json!({ "cert_ttl_seconds": 600, "stale_after_seconds": 10 }),
    )
    .await;
    let (token, _) = cp.join_token("web", 2, 600).await;
    let quick = |cfg: &mut ferry_agent::AgentConfig| cfg.poll_wait = Duration::from_secs(2);
    let mut quiet = spawn_agent(&cp, "web", "quiet", &token, quick).await;
    let _chatty = spawn_agent(&cp, "web", "chatty", &token, quick).await;
    eventually("both installed", Duration::from_secs(30), || async {
        let s = cp.admin().get("/v1/status").await.body;
        (s["services"][0]["ok"] == 2).then_some(())
    })
    .await;
    assert!(
        alerts(&cp, "state=firing").await.is_empty(),
        "a healthy fleet has no alerts"
    );

    quiet.stop().await;
    let stopped = std::time::Instant::now();
    let fired = eventually(
        "the silent node is alerted",
        Duration::from_secs(25),
        || async {
            let a = alerts(&cp, "state=firing").await;
            (!of(&a, "quiet", "unseen").is_empty()).then_some(a)
        },
    )
    .await;
    // stale_after (10 s) + one poll (2 s) + seen granularity (1 s) + a detector tick.
    assert!(
        stopped.elapsed() < Duration::from_secs(14),
        "alerted after {:?}",
        stopped.elapsed()
    );
    assert!(
        of(&fired, "chatty", "unseen").is_empty(),
        "the polling node is not stale"
    );
    assert_eq!(
        of(&fired, "", "stale-share").len(),
        1,
        "1 of 2 nodes stale passes the 10% share"
    );
    tokio::time::sleep(Duration::from_secs(2)).await; // several more detector passes
    let later = alerts(&cp, "state=firing&service=web").await;
    assert_eq!(
        of(&later, "quiet", "unseen").len(),
        1,
        "deduplicated per (node, reason)"
    );
    let status = cp.admin().get("/v1/status").await.body;
    assert_eq!(
        (
            status["fleet"]["stale"].clone(),
            status["fleet"]["ok"].clone()
        ),
        (json!(1), json!(1)),
        "{status}"
    );
    assert_eq!(status["services"][0]["outage_budget_seconds"], 400);

    let _back = quiet.restart(&cp, "web", "quiet", &token);
    eventually(
        "the alert resolves when the node is back",
        Duration::from_secs(25),
        || async {
            let a = alerts(&cp, "service=web").await;
            let mine = of(&a, "quiet", "unseen");
            (mine.len() == 1
                && mine[0]["state"] == "resolved"
                && alerts(&cp, "state=firing").await.is_empty())
            .then_some(())
        },
    )
    .await;
}

#[tokio::test]
async fn a_silent_agent_goes_stale_alerts_once_and_resolves_sqlite() {
    a_silent_agent_goes_stale_alerts_once_and_resolves(Backend::Sqlite).await;
}

#[tokio::test]
async fn a_silent_agent_goes_stale_alerts_once_and_resolves_postgres() {
    a_silent_agent_goes_stale_alerts_once_and_resolves(Backend::Postgres).await;
}

#[tokio::test]
async fn a_failing_reload_hook_shows_in_node_status_and_is_alerted() {
    let cp = spawn_control_plane(Backend::Sqlite, fast).await;
    cp.create_service(
        "web",
        json!({ "cert_ttl_seconds": 600, "grace_seconds": 1 }),
    )
    .await;
    let (token, _) = cp.join_token("web", 1, 600).await;
    let _agent = spawn_agent(&cp, "web", "n1", &token, |cfg| {
        cfg.reload_command = Some("echo boom >&2; exit 3".into())
    })
    .await;
    let node = eventually(
        "the failed hook is acknowledged",
        Duration::from_secs(30),
        || async {
            let n = cp.admin().get("/v1/services/web/nodes/n1").await.body;
            n["last_error"].is_string().then_some(n)
        },
    )
    .await;
    assert_eq!(node["hook_exit_code"], 3, "{node}");
    assert_eq!(
        node["acked_version"], 0,
        "a failed install is not acknowledged as installed"
    );
    eventually(
        "the lagging node is alerted",
        Duration::from_secs(15),
        || async {
            let a = alerts(&cp, "state=firing").await;
            (!of(&a, "n1", "lagging").is_empty()).then_some(())
        },
    )
    .await;
}

#[tokio::test]
async fn another_replica_keeps_detecting_when_one_stops() {
    let mut a = spawn_control_plane(Backend::Postgres, fast).await;
    let b = a.replica().await;
    a.create_service(
        "web",
        json!({ "cert_ttl_seconds": 600, "stale_after_seconds": 10 }),
    )
    .await;
    let (token, _) = a.join_token("web", 1, 600).await;
    let mut agent = spawn_agent(&b, "web", "n1", &token, |cfg| {
        cfg.poll_wait = Duration::from_secs(2)
    })
    .await;
    eventually("installed", Duration::from_secs(30), || async {
        agent.installed()
    })
    .await;
    a.stop().await; // one replica gone; B must run the detector alone
    agent.stop().await;
    eventually(
        "B alerts the silent node",
        Duration::from_secs(25),
        || async {
            let a = alerts(&b, "state=firing").await;
            (of(&a, "n1", "unseen").len() == 1).then_some(())
        },
    )
    .await;
}
