//! Issuance in batches: due nodes are claimed in one statement and signed outside any
//! transaction, so two replicas renewing the same fleet issue each node exactly once.

use ferry_tests::node::{enroll, p256};
use ferry_tests::{Backend, eventually, spawn_control_plane};
use serde_json::json;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_renew_every_due_node_exactly_once() {
    // Arrange: 60 nodes with their first bundle, on two replicas of one database.
    let a = spawn_control_plane(Backend::Postgres, |_| {}).await;
    let b = a.replica().await;
    a.create_service("web", json!({ "cert_ttl_seconds": 3600 }))
        .await;
    let (token, _) = a.join_token("web", 60, 600).await;
    for i in 0..60 {
        let r = enroll(&a, "web", &format!("n{i:02}"), &token, &p256()).await;
        assert_eq!(r.status, 200, "{:?}", r.body);
    }
    let issued = |v: i64| format!("SELECT COUNT(*) AS n FROM nodes WHERE desired_version = {v}");
    eventually(
        "every first bundle issued",
        Duration::from_secs(30),
        || async { (a.db.scalar(&issued(1)) == 60).then_some(()) },
    )
    .await;

    // Act: every node comes due at once, with both replicas' schedulers running.
    a.db.execute("UPDATE nodes SET renew_at = 1");

    // Assert: each node got exactly one new version, with a bundle and a next renewal.
    eventually(
        "every due node renewed",
        Duration::from_secs(30),
        || async { (a.db.scalar(&issued(2)) == 60).then_some(()) },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await; // both schedulers had more passes
    assert_eq!(a.db.scalar(&issued(2)), 60, "a node was issued twice");
    assert_eq!(
        a.db.scalar("SELECT COUNT(*) AS n FROM bundles WHERE version = 2"),
        60
    );
    let later = ferry_control_plane::store::now_ms() + 600_000;
    assert_eq!(
        a.db.scalar(&format!(
            "SELECT COUNT(*) AS n FROM nodes WHERE renew_at > {later}"
        )),
        60,
        "the next renewal is scheduled, not left at the claim's lease"
    );
    drop(b);
}
