//! Issue 17 part 3: service settings that contradict each other are refused with the
//! rule they break and the valid bound, change nothing, and rows stored before a rule
//! existed are reported.

use ferry_control_plane::service_rules;
use ferry_tests::{Backend, spawn_control_plane};
use serde_json::json;

#[tokio::test]
async fn contradicting_settings_are_refused_with_the_rule_and_the_valid_bound() {
    let cp = spawn_control_plane(Backend::Sqlite, |_| {}).await;
    let admin = cp.admin();
    let refused = |body: serde_json::Value, rule: &'static str, bound: &'static str| {
        let admin = cp.admin();
        async move {
            let r = admin.post("/v1/services", body).await;
            assert_eq!(r.assert_problem(422), "invalid-settings", "{}", r.body);
            let detail = r.body["detail"].as_str().unwrap_or_default().to_owned();
            assert!(detail.contains(rule) && detail.contains(bound), "{detail}");
        }
    };

    // Act + assert: each contradiction, on create.
    refused(
        json!({ "name": "web", "cert_ttl_seconds": 600, "renew_before_seconds": 600 }),
        "renew-before-below-ttl",
        "at most 599",
    )
    .await;
    refused(
        json!({ "name": "web", "renew_before_seconds": 600, "alert_before_seconds": 900 }),
        "alert-before-within-renew-before",
        "0..=renew_before_seconds (600)",
    )
    .await;
    // Polls are held up to 55 s here: a node is stale only after two missed answers.
    refused(
        json!({ "name": "web", "stale_after_seconds": 60 }),
        "stale-after-above-poll-wait",
        "smallest valid value is 110",
    )
    .await;
    assert_eq!(
        admin.get("/v1/services/web").await.status,
        404,
        "nothing was created"
    );

    // The bound itself is valid; an update that breaks a rule changes nothing.
    let ok = admin
        .post(
            "/v1/services",
            json!({ "name": "web", "stale_after_seconds": 110 }),
        )
        .await;
    assert_eq!(ok.status, 201, "{}", ok.body);
    let before = admin.get("/v1/services/web").await.body;
    let r = admin
        .patch("/v1/services/web", json!({ "cert_ttl_seconds": 600 }))
        .await;
    assert_eq!(r.assert_problem(422), "invalid-settings");
    assert!(
        r.body["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("renew_before_seconds (1200)"),
        "{}",
        r.body
    );
    assert_eq!(admin.get("/v1/services/web").await.body, before);
}

#[tokio::test]
async fn a_stored_service_that_breaks_a_rule_is_reported() {
    // Arrange: one good service, one whose row was saved before the rule existed.
    let cp = spawn_control_plane(Backend::Postgres, |_| {}).await;
    cp.create_service("good", json!({})).await;
    cp.create_service("old", json!({})).await;
    cp.db
        .execute("UPDATE services SET stale_after_seconds = 20 WHERE name = 'old'");

    // Act: what startup runs.
    let found = service_rules::report(&cp.store, 55).await.expect("report");

    // Assert: only the bad row, with its rule.
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].0, "old");
    assert_eq!(found[0].1.rule, "stale-after-above-poll-wait");
    // And under short polls the same row is fine.
    assert!(
        service_rules::report(&cp.store, 10)
            .await
            .expect("report")
            .is_empty()
    );
}
