//! The service-level part of a bundle (policy, service-wide metadata) is built once per
//! change of the service and kept in each replica's memory; a change on one replica
//! reaches the bundles served by another.

use ferry_tests::node::{enroll, mtls_client, p256};
use ferry_tests::{Backend, ControlPlane, eventually, spawn_control_plane};
use serde_json::{Value, json};
use std::time::Duration;

async fn bundle(cp: &ControlPlane, client: &reqwest::Client) -> Value {
    let r = client
        .get(format!("{}/v1/agent/bundle?since=0&wait=0", cp.url))
        .send()
        .await
        .expect("bundle poll");
    assert_eq!(r.status(), 200, "bundle served");
    let body: Value = r.json().await.expect("bundle JSON");
    body["bundle"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_parts_are_served_from_memory_and_dropped_by_changes_on_any_replica() {
    // Arrange: two replicas, a service-wide value, two nodes with their first bundle.
    let a = spawn_control_plane(Backend::Postgres, |_| {}).await;
    let b = a.replica().await;
    a.create_service("web", json!({ "alert_before_seconds": 600 }))
        .await;
    let put = |v: &'static str| {
        let a = &a;
        async move {
            let r = a
                .admin()
                .put("/v1/services/web/metadata/color", json!({ "value": v }))
                .await;
            assert!(r.status == 200 || r.status == 201, "{}", r.body);
        }
    };
    put("blue").await;
    let (token, _) = a.join_token("web", 2, 600).await;
    let mut clients = Vec::new();
    for n in ["n1", "n2"] {
        let key = p256();
        let e = enroll(&a, "web", n, &token, &key).await;
        assert_eq!(e.status, 200, "{}", e.body);
        clients.push(mtls_client(
            &a,
            e.body["certificate"].as_str().expect("cert"),
            &key,
        ));
    }
    eventually("first bundles issued", Duration::from_secs(30), || async {
        (a.db
            .scalar("SELECT COUNT(*) AS n FROM nodes WHERE desired_version >= 1")
            == 2)
            .then_some(())
    })
    .await;

    // Act + assert: the first bundle on B reads the service part, the next one not.
    let first = bundle(&b, &clients[0]).await;
    assert_eq!(first["metadata"]["color"], "blue", "{first}");
    let hits = b.metric("ferry_service_cache_hits_total").await;
    assert_eq!(bundle(&b, &clients[1]).await["metadata"]["color"], "blue");
    assert_eq!(
        b.metric("ferry_service_cache_hits_total").await,
        hits + 1.0,
        "the second node's bundle used the service part in memory"
    );

    // A service-wide change and a policy change on A reach what B serves.
    put("green").await;
    eventually("B serves the new value", Duration::from_secs(2), || async {
        (bundle(&b, &clients[0]).await["metadata"]["color"] == "green").then_some(())
    })
    .await;
    let r = a
        .admin()
        .patch("/v1/services/web", json!({ "alert_before_seconds": 900 }))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    eventually(
        "B serves the new policy",
        Duration::from_secs(2),
        || async { (bundle(&b, &clients[1]).await["alert_before_seconds"] == 900).then_some(()) },
    )
    .await;
}
