//! Custom metadata from the API to the node: service-wide values with per-node
//! overrides, expiry that removes a key from installed bundles on time, a service-wide
//! change that costs a bounded number of statements however many nodes it reaches, and
//! keys that would escape the metadata directory refused.

use ferry_tests::agent::{InProcessAgent, spawn_agent};
use ferry_tests::{Backend, ControlPlane, eventually, spawn_control_plane};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

fn quick(cfg: &mut ferry_agent::AgentConfig) {
    cfg.poll_wait = Duration::from_secs(5);
}

/// The metadata `agent` has installed, once `pred` holds for it.
async fn installed_where(
    agent: &InProcessAgent,
    what: &str,
    pred: impl Fn(&serde_json::Map<String, Value>) -> bool,
) -> ferry_tests::agent::Installed {
    eventually(what, Duration::from_secs(20), || async {
        agent.installed().filter(|i| pred(&i.metadata))
    })
    .await
}

async fn put(cp: &ControlPlane, path: &str, body: Value) -> Value {
    let r = cp.admin().put(path, body).await;
    assert_eq!(r.status, 200, "PUT {path}: {}", r.body);
    r.body
}

#[tokio::test]
async fn service_values_reach_every_node_and_a_node_value_overrides() {
    let cp = spawn_control_plane(Backend::Postgres, |_| {}).await;
    cp.create_service("web", json!({})).await;
    let (token, _) = cp.join_token("web", 2, 600).await;
    // The canary also keeps a fixed path linked to its per-key metadata files.
    let links = tempfile::tempdir().expect("tempdir");
    let meta_link = links.path().join("web-meta");
    let link = meta_link.clone();
    let canary = spawn_agent(&cp, "web", "canary", &token, move |cfg| {
        quick(cfg);
        cfg.metadata_dir = Some(link);
    })
    .await;
    let plain = spawn_agent(&cp, "web", "plain", &token, quick).await;
    installed_where(&canary, "canary installed", |_| true).await;
    installed_where(&plain, "plain installed", |_| true).await;

    put(
        &cp,
        "/v1/services/web/metadata/env",
        json!({ "value": "prod" }),
    )
    .await;
    put(
        &cp,
        "/v1/services/web/metadata/limits",
        json!({ "value": { "rps": 100, "tags": ["a", "b"] } }),
    )
    .await;
    put(
        &cp,
        "/v1/services/web/nodes/canary/metadata/env",
        json!({ "value": "canary" }),
    )
    .await;

    let c = installed_where(&canary, "canary has its override", |m| {
        m.get("env") == Some(&json!("canary")) && m.contains_key("limits")
    })
    .await;
    let p = installed_where(&plain, "plain has the service value", |m| {
        m.get("env") == Some(&json!("prod")) && m.contains_key("limits")
    })
    .await;
    assert_eq!(
        p.metadata["limits"],
        json!({ "rps": 100, "tags": ["a", "b"] })
    );
    // One file per key next to metadata.json, installed in the same version directory.
    assert_eq!(
        c.metadata_files.get("env").map(String::as_str),
        Some("canary")
    );
    assert_eq!(
        serde_json::from_str::<Value>(&p.metadata_files["limits"]).expect("limits file"),
        json!({ "rps": 100, "tags": ["a", "b"] })
    );

    // The customer's view of the node: what it should have, and that it has it.
    let view = eventually("canary acked", Duration::from_secs(20), || async {
        let v = cp.admin().get("/v1/services/web/nodes/canary/bundle").await;
        assert_eq!(v.status, 200, "{}", v.body);
        (v.body["in_sync"] == true).then_some(v.body)
    })
    .await;
    assert_eq!(view["desired"]["metadata"]["env"], "canary");
    assert_eq!(view["desired"]["content_hash"], json!(c.hash));
    assert!(view["desired"]["certificate"]["not_after"].is_string());
    assert!(
        !view.to_string().contains("PRIVATE KEY"),
        "the bundle view never shows a private key"
    );

    let read_link = |key: &str| std::fs::read_to_string(meta_link.join(key)).ok();
    assert_eq!(
        read_link("env").as_deref(),
        Some("canary"),
        "metadata_dir shows the installed files"
    );

    // Deleting the override falls back to the service value.
    let r = cp
        .admin()
        .delete("/v1/services/web/nodes/canary/metadata/env")
        .await;
    assert_eq!(r.status, 204, "{}", r.body);
    installed_where(&canary, "canary falls back to prod", |m| {
        m.get("env") == Some(&json!("prod"))
    })
    .await;
    assert_eq!(read_link("env").as_deref(), Some("prod"));
    let listed = cp.admin().get("/v1/services/web/metadata").await.body;
    let keys: Vec<&str> = listed["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|i| i["key"].as_str())
        .collect();
    assert_eq!(keys, ["env", "limits"]);
}

#[tokio::test]
async fn a_value_with_a_ttl_leaves_the_installed_bundle_within_two_seconds_of_expiry() {
    let cp = spawn_control_plane(Backend::Postgres, |_| {}).await;
    cp.create_service("web", json!({})).await;
    let (token, _) = cp.join_token("web", 1, 600).await;
    let agent = spawn_agent(&cp, "web", "n1", &token, quick).await;
    installed_where(&agent, "installed", |_| true).await;

    let body = put(
        &cp,
        "/v1/services/web/metadata/session",
        json!({ "value": "short-lived", "ttl_seconds": 5 }),
    )
    .await;
    let expires_at = time::OffsetDateTime::parse(
        body["expires_at"].as_str().expect("expires_at"),
        &time::format_description::well_known::Rfc3339,
    )
    .expect("RFC 3339");
    installed_where(&agent, "the value arrives", |m| m.contains_key("session")).await;

    let installed = eventually("the value is gone", Duration::from_secs(15), || async {
        agent
            .installed()
            .filter(|i| !i.metadata.contains_key("session"))
    })
    .await;
    let late = time::OffsetDateTime::now_utc() - expires_at;
    assert!(
        late <= time::Duration::seconds(2),
        "removed {late} after expiry"
    );
    assert!(!installed.metadata_files.contains_key("session"));
    let r = cp.admin().get("/v1/services/web/metadata/session").await;
    assert_eq!(r.status, 404, "an expired value is not served: {}", r.body);
}

#[tokio::test]
async fn the_bundle_served_after_a_change_records_its_hash_so_the_ack_needs_no_second_assembly() {
    // Arrange: a node with its first bundle installed.
    let cp = spawn_control_plane(Backend::Postgres, |_| {}).await;
    cp.create_service("web", json!({})).await;
    let (token, _) = cp.join_token("web", 1, 600).await;
    let agent = spawn_agent(&cp, "web", "n1", &token, quick).await;
    installed_where(&agent, "installed", |_| true).await;

    // Act: a service-wide change bumps the version without computing any node's hash.
    put(
        &cp,
        "/v1/services/web/metadata/tier",
        json!({ "value": "gold" }),
    )
    .await;
    let installed = installed_where(&agent, "the change arrives", |m| m.contains_key("tier")).await;

    // Assert: serving it recorded the hash of what was served, which is what the agent
    // installed and acknowledged.
    let node = eventually("the ack", Duration::from_secs(20), || async {
        let n = cp.admin().get("/v1/services/web/nodes/n1").await.body;
        (n["acked_version"] == installed.version).then_some(n)
    })
    .await;
    assert_eq!(node["desired_version"], installed.version, "{node}");
    assert_eq!(node["desired_hash"], installed.hash.as_str(), "{node}");
    assert_eq!(node["acked_hash"], installed.hash.as_str(), "{node}");
    let mut agent = agent;
    agent.stop().await;
}

#[tokio::test]
async fn a_service_change_reaching_10000_nodes_is_a_bounded_number_of_statements() {
    let cp = spawn_control_plane(Backend::Postgres, |cfg| {
        // Quiet jobs: the statement counter then sees the request alone.
        let hour = Duration::from_secs(3600);
        cfg.jobs.renewal_tick = hour;
        cfg.jobs.rotation_tick = hour;
        cfg.jobs.staleness_tick = hour;
        cfg.jobs.expiry_tick = hour;
        cfg.jobs.objects_tick = hour;
        cfg.jobs.webhook_tick = hour;
        cfg.jobs.sources.tick = hour;
        cfg.presence_flush = hour;
    })
    .await;
    cp.create_service("fleet", json!({})).await;
    // 10,000 enrolled nodes at version 1, written straight into the database.
    cp.db.execute(
        "INSERT INTO nodes (service, node_id, state, identity_serial, identity_not_after, \
         enrolled_at, desired_version, acked_version) \
         SELECT 'fleet', 'n' || g, 'active', md5(g::text), 0, 0, 1, 1 \
         FROM generate_series(1, 10000) g",
    );
    tokio::time::sleep(Duration::from_millis(500)).await; // let startup work settle
    let before = cp.store.statements();
    let started = Instant::now();
    put(
        &cp,
        "/v1/services/fleet/metadata/region",
        json!({ "value": "eu-1" }),
    )
    .await;
    let took = started.elapsed();
    let statements = cp.store.statements() - before;
    println!("service-wide change to 10,000 nodes: {statements} statements, {took:?}");
    assert!(
        (1..=15).contains(&statements),
        "{statements} statements for one change (expected a bounded handful)"
    );
    let bumped = cp.db.scalar(
        "SELECT CAST(COUNT(*) AS BIGINT) AS n FROM nodes WHERE service = 'fleet' AND desired_version = 2",
    );
    assert_eq!(bumped, 10_000, "every node's version moved exactly once");
    let other = cp.db.scalar(
        "SELECT CAST(COUNT(*) AS BIGINT) AS n FROM nodes WHERE service = 'fleet' AND desired_version <> 2",
    );
    assert_eq!(other, 0);
}

#[tokio::test]
async fn keys_that_could_escape_the_metadata_directory_are_refused() {
    let cp = spawn_control_plane(Backend::Sqlite, |_| {}).await;
    cp.create_service("web", json!({})).await;
    let before = cp.db.row_counts();
    // Percent-encoded so the client sends each as one path segment (a bare `..` would
    // be resolved by the URL parser before it is sent).
    for key in [
        "a..b",
        "..%2Fetc",
        "a%2Fb",
        "a%00b",
        "a%5Cb",
        "a%0Ab",
        &"k".repeat(129),
    ] {
        let r = cp
            .admin()
            .put(
                &format!("/v1/services/web/metadata/{key}"),
                json!({ "value": 1 }),
            )
            .await;
        assert_eq!(r.status, 422, "{key}: {}", r.body);
        let r = cp
            .admin()
            .put(
                &format!("/v1/services/web/nodes/n1/metadata/{key}"),
                json!({ "value": 1 }),
            )
            .await;
        assert_eq!(
            r.status, 404,
            "{key} of a node that does not exist: {}",
            r.body
        );
    }
    let r = cp
        .admin()
        .put("/v1/services/web/metadata/a%2Fb", json!({ "value": 1 }))
        .await;
    assert_eq!(r.status, 422, "{}", r.body);
    assert_eq!(
        r.body["type"],
        "https://ferry.dev/problems/invalid-metadata-key"
    );
    let r = cp
        .admin()
        .put(
            "/v1/services/web/metadata/big",
            json!({ "value": "x".repeat(40_000) }),
        )
        .await;
    assert_eq!(r.status, 422, "{}", r.body);
    let r = cp
        .admin()
        .put(
            "/v1/services/web/metadata/both",
            json!({ "value": 1, "ttl_seconds": 5, "expires_at": "2030-01-01T00:00:00Z" }),
        )
        .await;
    assert_eq!(r.status, 422, "{}", r.body);
    assert_eq!(
        cp.db.row_counts(),
        before,
        "refused requests change nothing"
    );
}
