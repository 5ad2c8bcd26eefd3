//! The delivery protocol at the wire: first bundle after enrollment, long-poll wake-ups
//! (in-process and across replicas), idempotent forced refresh tracked to the ack, and a
//! refresh its node never acknowledges reported failed after the delivery timeout.

use ferry_shared::api::{BundleResponse, headers};
use ferry_tests::node::{enroll, mtls_client, p256};
use ferry_tests::{Backend, ControlPlane, spawn_control_plane};
use serde_json::json;
use std::time::{Duration, Instant};

struct Node {
    client: reqwest::Client,
}

impl Node {
    async fn enroll(cp: &ControlPlane, svc: &str, name: &str) -> Node {
        let (token, _) = cp.join_token(svc, 1, 600).await;
        let key = p256();
        let r = enroll(cp, svc, name, &token, &key).await;
        assert_eq!(r.status, 200, "{}", r.body);
        Node {
            client: mtls_client(cp, r.body["certificate"].as_str().expect("cert"), &key),
        }
    }

    /// Long-polls `cp`; `None` on 304.
    async fn poll(&self, cp: &ControlPlane, since: i64, wait: u64) -> Option<BundleResponse> {
        let r = self
            .client
            .get(format!(
                "{}/v1/agent/bundle?since={since}&wait={wait}",
                cp.url
            ))
            .send()
            .await
            .expect("poll");
        assert!(
            r.headers().contains_key(headers::SERVER_TIME_MS),
            "server time on every answer"
        );
        match r.status().as_u16() {
            200 => Some(r.json().await.expect("bundle JSON")),
            304 => None,
            s => panic!("poll answered {s}: {}", r.text().await.unwrap_or_default()),
        }
    }

    async fn ack(&self, cp: &ControlPlane, b: &BundleResponse) -> u16 {
        let body = json!({ "version": b.bundle.version, "content_hash": b.bundle.content_hash, "status": "installed",
                           "cert_not_after": b.bundle.not_after.map(|t| t.format(&time::format_description::well_known::Rfc3339).expect("fmt")),
                           "clock_skew_ms": 0, "agent_version": "test" });
        self.client
            .post(format!("{}/v1/agent/ack", cp.url))
            .json(&body)
            .send()
            .await
            .expect("ack")
            .status()
            .as_u16()
    }
}

async fn first_bundle_then_refresh_tracked_to_the_ack(backend: Backend) {
    let cp = spawn_control_plane(backend, |_| {}).await;
    cp.create_service("web", json!({ "cert_ttl_seconds": 600 }))
        .await;
    let node = Node::enroll(&cp, "web", "n1").await;

    // The scheduler issues the first bundle right after enrollment.
    let first = node.poll(&cp, 0, 10).await.expect("first bundle");
    assert_eq!(first.bundle.version, 1);
    assert!(
        first
            .bundle
            .private_key
            .as_deref()
            .is_some_and(|k| k.contains("PRIVATE KEY")),
        "central mode sends a key"
    );
    assert_eq!(
        ferry_shared::hash::hash_of(&first.bundle),
        first.bundle.content_hash
    );
    // The node's key is sealed at rest: neither its PEM armour nor its body is in the row.
    let sealed = cp
        .db
        .raw_bundle_key("web", "n1")
        .expect("central mode stores the key");
    let key_pem = first.bundle.private_key.as_deref().expect("key");
    let key_body = key_pem.lines().nth(1).expect("a base64 line");
    assert!(
        !String::from_utf8_lossy(&sealed).contains("PRIVATE KEY"),
        "node key stored in clear"
    );
    assert!(
        !String::from_utf8_lossy(&sealed).contains(key_body),
        "node key stored in clear"
    );
    assert_eq!(node.ack(&cp, &first).await, 204);
    let status = cp.admin().get("/v1/services/web/nodes/n1").await.body;
    assert_eq!(
        (
            status["acked_version"].clone(),
            status["acked_hash"].clone()
        ),
        (json!(1), json!(first.bundle.content_hash))
    );

    // Nothing new: a short poll is a 304.
    assert!(node.poll(&cp, 1, 1).await.is_none());

    // A held poll is woken by a forced refresh; retries of the key make one delivery.
    let held = tokio::spawn({
        let (client, url) = (node.client.clone(), cp.url.clone());
        async move {
            let started = Instant::now();
            let r = client
                .get(format!("{url}/v1/agent/bundle?since=1&wait=30"))
                .send()
                .await
                .expect("poll");
            (
                r.status().as_u16(),
                r.json::<BundleResponse>().await.ok(),
                started.elapsed(),
            )
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut ids = Vec::new();
    for _ in 0..5 {
        let r = cp
            .admin()
            .client
            .post(format!("{}/v1/services/web/nodes/n1/refresh", cp.url))
            .bearer_auth(&cp.admin_token)
            .header("Idempotency-Key", "rotate-n1-once")
            .json(&json!({}))
            .send()
            .await
            .expect("refresh");
        assert_eq!(r.status().as_u16(), 202);
        ids.push(r.json::<serde_json::Value>().await.expect("json")["delivery_id"].clone());
    }
    assert!(
        ids.windows(2).all(|w| w[0] == w[1]),
        "one delivery per idempotency key: {ids:?}"
    );
    let (status, bundle, waited) = held.await.expect("poll task");
    assert_eq!(status, 200);
    assert!(
        waited < Duration::from_secs(5),
        "the refresh woke the held poll ({waited:?})"
    );
    let bundle = bundle.expect("bundle");
    assert_eq!(bundle.bundle.version, 2, "five retries issued one version");

    let id = ids[0].as_str().expect("id");
    assert_eq!(
        cp.admin().get(&format!("/v1/deliveries/{id}")).await.body["state"],
        "pending"
    );
    assert_eq!(node.ack(&cp, &bundle).await, 204);
    assert_eq!(
        node.ack(&cp, &bundle).await,
        204,
        "duplicate acks are harmless"
    );
    let d = cp.admin().get(&format!("/v1/deliveries/{id}")).await.body;
    assert_eq!(d["state"], "delivered", "{d}");
    assert!(d["finished_at"].is_string());

    // An ack for a version never issued is refused.
    let bogus =
        json!({ "version": 99, "content_hash": bundle.bundle.content_hash, "status": "installed" });
    let r = node
        .client
        .post(format!("{}/v1/agent/ack", cp.url))
        .json(&bogus)
        .send()
        .await
        .expect("ack");
    assert_eq!(r.status().as_u16(), 409);
}

#[tokio::test]
async fn first_bundle_then_refresh_tracked_to_the_ack_sqlite() {
    first_bundle_then_refresh_tracked_to_the_ack(Backend::Sqlite).await;
}

#[tokio::test]
async fn first_bundle_then_refresh_tracked_to_the_ack_postgres() {
    first_bundle_then_refresh_tracked_to_the_ack(Backend::Postgres).await;
}

#[tokio::test]
async fn a_refresh_on_one_replica_wakes_a_poll_held_by_another() {
    let a = spawn_control_plane(Backend::Postgres, |_| {}).await;
    let b = a.replica().await;
    a.create_service("web", json!({})).await;
    let node = Node::enroll(&a, "web", "n1").await;
    let first = node
        .poll(&b, 0, 10)
        .await
        .expect("first bundle via replica B");
    assert_eq!(node.ack(&b, &first).await, 204);

    let held = tokio::spawn({
        let (client, url) = (node.client.clone(), b.url.clone());
        async move {
            let started = Instant::now();
            let r = client
                .get(format!("{url}/v1/agent/bundle?since=1&wait=30"))
                .send()
                .await
                .expect("poll");
            (r.status().as_u16(), started.elapsed())
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = a
        .admin()
        .post("/v1/services/web/nodes/n1/refresh", json!({}))
        .await;
    assert_eq!(r.status, 202);
    let (status, waited) = held.await.expect("task");
    assert_eq!(status, 200);
    assert!(
        waited < Duration::from_secs(3),
        "NOTIFY reached replica B ({waited:?})"
    );
}

#[tokio::test]
async fn a_refresh_the_node_never_acknowledges_is_reported_failed_after_the_timeout() {
    let cp = spawn_control_plane(Backend::Postgres, |cfg| {
        cfg.jobs.delivery_timeout = Duration::from_secs(2);
        cfg.jobs.rotation_tick = Duration::from_millis(200);
    })
    .await;
    cp.create_service("web", json!({ "cert_ttl_seconds": 600 }))
        .await;
    let node = Node::enroll(&cp, "web", "n1").await;
    let first = node.poll(&cp, 0, 10).await.expect("first bundle");
    assert_eq!(node.ack(&cp, &first).await, 204);

    // The node goes quiet; the refresh waits for an ack that does not come.
    let r = cp
        .admin()
        .post("/v1/services/web/nodes/n1/refresh", json!({}))
        .await;
    assert_eq!(r.status, 202, "{}", r.body);
    let id = r.body["delivery_id"].as_str().expect("id").to_owned();
    let pending = cp.admin().get(&format!("/v1/deliveries/{id}")).await.body;
    assert_eq!(pending["state"], "pending", "{pending}");

    let failed = ferry_tests::eventually(
        "the refresh is reported failed",
        Duration::from_secs(20),
        || async {
            let d = cp.admin().get(&format!("/v1/deliveries/{id}")).await.body;
            (d["state"] == "failed").then_some(d)
        },
    )
    .await;
    assert!(
        failed["error"]
            .as_str()
            .is_some_and(|e| e.contains("not acknowledged within 2 s")),
        "{failed}"
    );

    // The node comes back later: it still gets the bundle and its ack is recorded, but
    // the verdict on that refresh stands.
    let late = node.poll(&cp, 1, 5).await.expect("the refreshed bundle");
    assert_eq!(node.ack(&cp, &late).await, 204);
    let status = cp.admin().get("/v1/services/web/nodes/n1").await.body;
    assert_eq!(status["acked_version"], late.bundle.version, "{status}");
    let after = cp.admin().get(&format!("/v1/deliveries/{id}")).await.body;
    assert_eq!(after["state"], "failed", "{after}");
}
