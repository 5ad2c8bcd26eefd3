//! Dynamic metadata sources against a customer API on loopback: a changed answer reaches
//! the agent within interval + 2 s, repeated failures raise an alert while the agent
//! keeps the last good value, ETag/304 and unchanged answers bump no version, header
//! secrets are never shown, node scope gives each node its own value, a value that would
//! overfill the bundle is a failure, and bad input is refused without changing anything.

mod customer_api;

use customer_api::{customer_api, set};
use ferry_tests::agent::{InProcessAgent, spawn_agent};
use ferry_tests::{Backend, ControlPlane, eventually, spawn_control_plane};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

fn fast(cfg: &mut ferry_control_plane::config::Config) {
    cfg.jobs.staleness_tick = Duration::from_millis(300);
    cfg.jobs.sources.cooldown = Duration::from_secs(2);
}

fn quick(cfg: &mut ferry_agent::AgentConfig) {
    cfg.poll_wait = Duration::from_secs(5);
}

async fn enrolled(cp: &ControlPlane, nodes: &[&str]) -> Vec<InProcessAgent> {
    let (token, _) = cp.join_token("web", nodes.len() as u32 + 1, 600).await;
    let mut agents = Vec::new();
    for n in nodes {
        let a = spawn_agent(cp, "web", n, &token, quick).await;
        eventually("installed", Duration::from_secs(30), || async {
            a.installed()
        })
        .await;
        agents.push(a);
    }
    agents
}

async fn has(agent: &InProcessAgent, key: &str, want: &Value, within: Duration) {
    eventually(&format!("{key} = {want}"), within, || async {
        agent
            .installed()
            .filter(|i| i.metadata.get(key) == Some(want))
    })
    .await;
}

async fn put_source(cp: &ControlPlane, name: &str, body: Value) -> Value {
    let r = cp
        .admin()
        .put(&format!("/v1/services/web/sources/{name}"), body)
        .await;
    assert!(
        matches!(r.status, 200 | 201),
        "PUT source {name}: {}",
        r.body
    );
    r.body
}

async fn source_alerts(cp: &ControlPlane, state: &str) -> Vec<Value> {
    let r = cp
        .admin()
        .get(&format!("/v1/alerts?service=web&state={state}"))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.body["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter(|a| a["reason"] == "source-failing")
        .cloned()
        .collect()
}

#[tokio::test]
async fn a_changed_value_arrives_within_interval_plus_two_seconds_and_failures_alert_keeping_it() {
    let cp = spawn_control_plane(Backend::Postgres, fast).await;
    cp.create_service("web", json!({})).await;
    let agents = enrolled(&cp, &["n1"]).await;
    let (base, api) = customer_api().await;
    set(&api, |a| a.value = json!("blue"));
    put_source(
        &cp,
        "color",
        json!({ "url": format!("{base}/value"), "interval_seconds": 1,
                "headers": { "Authorization": "Bearer t0k3n-secret" } }),
    )
    .await;
    has(&agents[0], "color", &json!("blue"), Duration::from_secs(20)).await;
    let auth = api.lock().expect("lock").seen[0].1["authorization"].clone();
    assert_eq!(auth, "Bearer t0k3n-secret", "the sealed header is sent");

    let changed = Instant::now();
    set(&api, |a| a.value = json!("green"));
    has(
        &agents[0],
        "color",
        &json!("green"),
        Duration::from_secs(10),
    )
    .await;
    let took = changed.elapsed();
    assert!(took <= Duration::from_secs(3), "new value after {took:?}");

    // The API fails: after 5 consecutive failures an alert fires, the agent keeps green.
    let before = api.lock().expect("lock").seen.len();
    set(&api, |a| a.failing = true);
    let alert = eventually("source-failing alert", Duration::from_secs(30), || async {
        source_alerts(&cp, "firing").await.pop()
    })
    .await;
    let failed = api.lock().expect("lock").seen.len() - before;
    assert!(failed >= 5, "alert after {failed} failed fetches");
    assert_eq!(
        alert["node_id"], "",
        "a service-scope source alerts service-wide"
    );
    assert!(alert["detail"].as_str().expect("detail").contains("color"));
    let status = cp.admin().get("/v1/services/web/sources/color").await.body["status"].clone();
    assert!(
        status["consecutive_failures"].as_u64() >= Some(5),
        "{status}"
    );
    assert_eq!(status["circuit"], "open", "{status}");
    assert!(
        status["last_error"]
            .as_str()
            .expect("error")
            .contains("500")
    );
    // The staleness detector (300 ms tick) leaves this alert alone.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(source_alerts(&cp, "firing").await.len(), 1);
    let installed = agents[0].installed().expect("installed");
    assert_eq!(
        installed.metadata["color"], "green",
        "the last good value stays"
    );
    let stored = cp.admin().get("/v1/services/web/metadata/color").await;
    assert_eq!(
        (stored.body["value"].clone(), stored.body["source"].clone()),
        (json!("green"), json!("color"))
    );

    // The circuit lets one trial through after the cool-down; it succeeds and resolves.
    set(&api, |a| {
        a.failing = false;
        a.value = json!("red");
    });
    has(&agents[0], "color", &json!("red"), Duration::from_secs(15)).await;
    eventually("alert resolved", Duration::from_secs(15), || async {
        source_alerts(&cp, "firing").await.is_empty().then_some(())
    })
    .await;
    let status = cp.admin().get("/v1/services/web/sources/color").await.body["status"].clone();
    assert_eq!(
        (
            status["circuit"].clone(),
            status["consecutive_failures"].clone()
        ),
        (json!("closed"), json!(0))
    );
}

async fn desired_version(cp: &ControlPlane, node: &str) -> i64 {
    let r = cp
        .admin()
        .get(&format!("/v1/services/web/nodes/{node}"))
        .await;
    r.body["desired_version"].as_i64().expect("desired_version")
}

#[tokio::test]
async fn etag_304_and_unchanged_answers_bump_no_version() {
    let cp = spawn_control_plane(Backend::Postgres, fast).await;
    cp.create_service("web", json!({})).await;
    let agents = enrolled(&cp, &["n1"]).await;
    let (base, api) = customer_api().await;
    set(&api, |a| {
        a.value = json!({ "limits": [1, 2] });
        a.etags = true;
    });
    put_source(
        &cp,
        "limits",
        json!({ "url": format!("{base}/value"), "interval_seconds": 1 }),
    )
    .await;
    has(
        &agents[0],
        "limits",
        &json!({ "limits": [1, 2] }),
        Duration::from_secs(20),
    )
    .await;
    let version = desired_version(&cp, "n1").await;

    eventually("three 304s", Duration::from_secs(15), || async {
        (api.lock().expect("lock").not_modified >= 3).then_some(())
    })
    .await;
    let seen = api.lock().expect("lock").seen.clone();
    assert!(
        seen.last()
            .expect("requests")
            .1
            .contains_key("if-none-match"),
        "the stored ETag is sent"
    );
    assert_eq!(
        desired_version(&cp, "n1").await,
        version,
        "a 304 bumped the version"
    );

    // Without ETags the same answer comes back as 200: the hash says unchanged.
    let n = api.lock().expect("lock").seen.len();
    set(&api, |a| a.etags = false);
    eventually("three 200s", Duration::from_secs(15), || async {
        (api.lock().expect("lock").seen.len() >= n + 3).then_some(())
    })
    .await;
    assert_eq!(
        desired_version(&cp, "n1").await,
        version,
        "an unchanged value bumped the version"
    );

    // A real change bumps it exactly once more.
    set(&api, |a| a.value = json!({ "limits": [3] }));
    has(
        &agents[0],
        "limits",
        &json!({ "limits": [3] }),
        Duration::from_secs(10),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(desired_version(&cp, "n1").await, version + 1);
    let status = cp.admin().get("/v1/services/web/sources/limits").await.body["status"].clone();
    assert_eq!(
        (status["circuit"].clone(), status["targets"].clone()),
        (json!("closed"), json!(1))
    );
    assert!(
        status["last_success_at"].is_string() && status["last_error"].is_null(),
        "{status}"
    );
}

#[tokio::test]
async fn header_secrets_never_appear_in_responses_or_in_clear_at_rest() {
    let cp = spawn_control_plane(Backend::Postgres, |_| {}).await;
    cp.create_service("web", json!({})).await;
    let (base, api) = customer_api().await;
    set(&api, |a| a.value = json!(1));
    const SECRET: &str = "sk_live_very-secret-value";
    let put = put_source(
        &cp,
        "tier",
        json!({ "url": format!("{base}/value"), "interval_seconds": 60,
                "headers": { "X-Api-Key": SECRET, "Accept": "application/json" } }),
    )
    .await;
    let one = cp.admin().get("/v1/services/web/sources/tier").await;
    let list = cp.admin().get("/v1/services/web/sources").await;
    let audit = cp.admin().get("/v1/audit").await;
    assert_eq!(one.status, 200);
    assert_eq!(one.body["header_names"], json!(["accept", "x-api-key"]));
    assert_eq!(list.body["items"][0]["name"], "tier");
    for body in [&put, &one.body, &list.body, &audit.body] {
        assert!(!body.to_string().contains(SECRET), "secret shown in {body}");
    }
    assert!(
        audit.body.to_string().contains("source.put"),
        "the change is audited"
    );
    eventually(
        "fetched with the header",
        Duration::from_secs(10),
        || async {
            let seen = api.lock().expect("lock").seen.clone();
            seen.first()
                .map(|(_, h)| assert_eq!(h["x-api-key"], SECRET))
        },
    )
    .await;
    let in_clear = cp.db.scalar(&format!(
        "SELECT COUNT(*) AS n FROM sources WHERE position(convert_to('{SECRET}', 'UTF8') in headers_sealed) > 0 \
         OR url LIKE '%{SECRET}%' OR header_names LIKE '%{SECRET}%'"
    ));
    assert_eq!(in_clear, 0, "the header value is stored in clear");
}

#[tokio::test]
async fn node_scope_gives_each_node_its_own_value_and_delete_takes_them_away_postgres() {
    node_scope(Backend::Postgres).await;
}

#[tokio::test]
async fn node_scope_gives_each_node_its_own_value_and_delete_takes_them_away_sqlite() {
    node_scope(Backend::Sqlite).await;
}

async fn node_scope(backend: Backend) {
    let cp = spawn_control_plane(backend, |_| {}).await;
    cp.create_service("web", json!({})).await;
    let mut agents = enrolled(&cp, &["n1", "n2"]).await;
    let (base, _api) = customer_api().await;
    put_source(
        &cp,
        "placement",
        json!({ "url": format!("{base}/nodes/{{node}}"), "interval_seconds": 1,
                "scope": "node", "key": "rack" }),
    )
    .await;
    for (agent, node) in agents.iter().zip(["n1", "n2"]) {
        let want = json!({ "rack": format!("rack-of-{node}") });
        has(agent, "rack", &want, Duration::from_secs(20)).await;
    }
    // A node enrolling later is fetched for too.
    agents.extend(enrolled(&cp, &["n3"]).await);
    has(
        &agents[2],
        "rack",
        &json!({ "rack": "rack-of-n3" }),
        Duration::from_secs(20),
    )
    .await;
    let view = cp
        .admin()
        .get("/v1/services/web/sources/placement")
        .await
        .body;
    assert_eq!(
        (view["scope"].clone(), view["status"]["targets"].clone()),
        (json!("node"), json!(3))
    );

    let r = cp
        .admin()
        .delete("/v1/services/web/sources/placement")
        .await;
    assert_eq!(r.status, 204, "{}", r.body);
    for agent in &agents {
        eventually("rack removed", Duration::from_secs(20), || async {
            agent
                .installed()
                .filter(|i| !i.metadata.contains_key("rack"))
        })
        .await;
    }
    cp.admin()
        .get("/v1/services/web/sources/placement")
        .await
        .assert_problem(404);
    assert_eq!(cp.db.scalar("SELECT COUNT(*) AS n FROM source_fetches"), 0);
    assert_eq!(cp.db.scalar("SELECT COUNT(*) AS n FROM metadata"), 0);
}

#[tokio::test]
async fn a_source_value_that_would_overfill_the_bundle_is_a_failure_and_never_reaches_the_node() {
    let cp = spawn_control_plane(Backend::Postgres, fast).await;
    cp.create_service("web", json!({})).await;
    let agents = enrolled(&cp, &["n1"]).await;
    // 15 values of 32 KiB through the API: about 480 KiB of the 512 KiB a bundle holds.
    let filler = json!("f".repeat(32 * 1024 - 2));
    for k in 0..15 {
        let r = cp
            .admin()
            .put(
                &format!("/v1/services/web/metadata/fill{k}"),
                json!({ "value": filler }),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
    }
    let (base, api) = customer_api().await;
    set(&api, |a| a.value = json!("s".repeat(32 * 1024 - 2)));

    // The source answers a value that fits its own cap but not the bundle.
    put_source(
        &cp,
        "huge",
        json!({ "url": format!("{base}/value"), "interval_seconds": 1 }),
    )
    .await;
    let status = eventually(
        "the fetch is a failure",
        Duration::from_secs(20),
        || async {
            let s = cp.admin().get("/v1/services/web/sources/huge").await.body["status"].clone();
            (s["consecutive_failures"].as_u64() >= Some(1)).then_some(s)
        },
    )
    .await;
    let error = status["last_error"].as_str().expect("last_error");
    assert!(error.contains("524288"), "{error}");
    cp.admin()
        .get("/v1/services/web/metadata/huge")
        .await
        .assert_problem(404);
    // Repeated, it alerts like any failing source; the node keeps a bundle it accepts.
    eventually("source-failing alert", Duration::from_secs(30), || async {
        source_alerts(&cp, "firing").await.pop()
    })
    .await;
    let installed = agents[0].installed().expect("installed");
    assert!(!installed.metadata.contains_key("huge"));
    assert_eq!(installed.metadata["fill0"], filler);

    // Room made through the API: the next fetch delivers and resolves the alert.
    for k in 0..3 {
        let r = cp
            .admin()
            .delete(&format!("/v1/services/web/metadata/fill{k}"))
            .await;
        assert!(matches!(r.status, 200 | 204), "{}", r.body);
    }
    let big = json!("s".repeat(32 * 1024 - 2));
    has(&agents[0], "huge", &big, Duration::from_secs(30)).await;
    eventually("alert resolved", Duration::from_secs(30), || async {
        source_alerts(&cp, "firing").await.is_empty().then_some(())
    })
    .await;
}

#[tokio::test]
async fn bad_input_is_refused_with_422_and_changes_nothing() {
    let cp = spawn_control_plane(Backend::Postgres, |_| {}).await;
    cp.create_service("web", json!({})).await;
    put_source(
        &cp,
        "taken",
        json!({ "url": "http://127.0.0.1:9/x", "interval_seconds": 60, "key": "env" }),
    )
    .await;
    let counts = || {
        let mut c = cp.db.row_counts();
        for t in ["sources", "source_fetches", "metadata"] {
            c.push((
                t.to_owned(),
                cp.db.scalar(&format!("SELECT COUNT(*) AS n FROM {t}")),
            ));
        }
        c
    };
    let before = counts();
    let ok = json!({ "url": "https://api.example/v", "interval_seconds": 60 });
    let with = |k: &str, v: Value| {
        let mut b = ok.clone();
        b[k] = v;
        b
    };
    let long = "k".repeat(129);
    let cases: Vec<(&str, Value, &str)> = vec![
        (long.as_str(), ok.clone(), "invalid-source-name"),
        ("s", with("key", json!("a/b")), "invalid-metadata-key"),
        (
            "s",
            with("url", json!("ftp://api.example/v")),
            "invalid-url",
        ),
        (
            "s",
            with("url", json!("https://u:p@api.example/v")),
            "invalid-url",
        ),
        (
            "s",
            with("url", json!("https://api.example/{node}")),
            "invalid-url",
        ),
        ("s", with("scope", json!("node")), "invalid-url"),
        ("s", with("interval_seconds", json!(0)), "invalid-interval"),
        (
            "s",
            with("interval_seconds", json!(86_401)),
            "invalid-interval",
        ),
        (
            "s",
            with("headers", json!({ "bad name": "v" })),
            "invalid-header",
        ),
        (
            "s",
            with("headers", json!({ "x-k": "a\nb" })),
            "invalid-header",
        ),
        (
            "s",
            with("headers", json!({ "Host": "evil" })),
            "invalid-header",
        ),
        ("s", with("scope", json!("cluster")), "invalid-body"),
        ("s", with("surprise", json!(true)), "invalid-body"),
    ];
    for (name, body, slug) in cases {
        let r = cp
            .admin()
            .put(&format!("/v1/services/web/sources/{name}"), body.clone())
            .await;
        assert_eq!(r.assert_problem(422), slug, "{name} {body}: {}", r.body);
        assert!(
            !r.body.to_string().contains("a\\nb"),
            "a header value is echoed"
        );
    }
    // Another source's key is a conflict, the unknown service a 404.
    let r = cp
        .admin()
        .put("/v1/services/web/sources/other", with("key", json!("env")))
        .await;
    r.assert_problem(409);
    cp.admin()
        .put("/v1/services/nope/sources/s", ok.clone())
        .await
        .assert_problem(404);
    cp.admin()
        .delete("/v1/services/web/sources/missing")
        .await
        .assert_problem(404);
    assert_eq!(counts(), before, "a refused request changed something");
}
