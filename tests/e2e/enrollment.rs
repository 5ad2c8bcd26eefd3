//! Enrollments are group-committed: many nodes enrolling at once with one join token
//! are written in batches, and the token's `max_uses` still holds exactly.

use ferry_tests::node::{enroll, p256};
use ferry_tests::{Backend, spawn_control_plane};
use serde_json::json;
use std::sync::Arc;

async fn a_burst_of_enrollments_uses_a_token_exactly_max_uses_times(backend: Backend) {
    // Arrange: a token good for 16 nodes, and 24 nodes that want to enroll with it.
    let cp = Arc::new(spawn_control_plane(backend, |_| {}).await);
    cp.create_service("web", json!({})).await;
    let (token, _) = cp.join_token("web", 16, 3600).await;

    // Act: all of them at once.
    let mut burst = tokio::task::JoinSet::new();
    for i in 0..24 {
        let (cp, token) = (cp.clone(), token.clone());
        burst.spawn(async move { enroll(&cp, "web", &format!("n{i:02}"), &token, &p256()).await });
    }
    let mut answers = Vec::new();
    while let Some(r) = burst.join_next().await {
        answers.push(r.expect("task"));
    }

    // Assert: 16 enrolled, the rest refused as a used-up token, and the database agrees.
    let ok = answers.iter().filter(|r| r.status == 200).count();
    let refused: Vec<_> = answers.iter().filter(|r| r.status != 200).collect();
    assert_eq!(ok, 16, "enrolled: {ok}");
    for r in &refused {
        assert_eq!(r.status, 403, "refused as used up: {:?}", r.body);
        assert_eq!(
            r.body["type"].as_str().map(|t| t.ends_with("forbidden")),
            Some(true)
        );
    }
    assert_eq!(cp.db.join_token_uses(), vec![16]);
    assert_eq!(cp.db.scalar("SELECT COUNT(*) AS n FROM nodes"), 16);
    assert_eq!(
        cp.db
            .scalar("SELECT CAST(node_count AS BIGINT) AS n FROM services WHERE name = 'web'"),
        16,
        "the service's node count, kept by its trigger"
    );
    assert_eq!(
        cp.db
            .scalar("SELECT COUNT(*) AS n FROM audit_log WHERE action = 'node.enroll'"),
        16,
        "one audit record per enrolled node"
    );
    let status = cp.admin().get("/v1/status").await.body;
    assert_eq!(status["services"][0]["nodes"], 16, "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_enrollments_uses_a_token_exactly_max_uses_times_postgres() {
    a_burst_of_enrollments_uses_a_token_exactly_max_uses_times(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_enrollments_uses_a_token_exactly_max_uses_times_sqlite() {
    a_burst_of_enrollments_uses_a_token_exactly_max_uses_times(Backend::Sqlite).await;
}
