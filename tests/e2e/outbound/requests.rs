//! What a tenant may put into a request: headers that steer a metadata service, a
//! proxy or the connection refused with 422 (credential headers pass), and webhook
//! URLs carrying credentials refused and never stored or audited.

use super::{put_webhook, quick};
use ferry_tests::{Backend, spawn_control_plane};
use serde_json::{Value, json};

#[tokio::test]
async fn metadata_proxy_and_hop_by_hop_headers_are_refused_with_422() {
    let cp = spawn_control_plane(Backend::Sqlite, quick).await;
    cp.create_service("web", json!({})).await;
    let before = cp.db.row_counts();
    for name in [
        "Metadata-Flavor",
        "Metadata",
        "X-aws-ec2-metadata-token",
        "X-Google-Metadata-Request",
        "Host",
        "X-Forwarded-For",
        "X-Forwarded-Host",
        "Forwarded",
        "Connection",
        "Transfer-Encoding",
        "Proxy-Authorization",
        "X-HTTP-Method-Override",
    ] {
        let r = cp
            .admin()
            .put(
                "/v1/services/web/sources/meta",
                json!({ "url": "http://127.0.0.1:9/x", "interval_seconds": 60,
                        "headers": { name: "Google" } }),
            )
            .await;
        assert_eq!(
            r.assert_problem(422),
            "invalid-header",
            "{name}: {}",
            r.body
        );
        let detail = r.body["detail"].as_str().expect("detail");
        assert!(
            !detail.contains("Google"),
            "{name}: the value is echoed: {detail}"
        );
    }
    assert_eq!(cp.db.row_counts(), before, "nothing was written");
    let ok = cp
        .admin()
        .put(
            "/v1/services/web/sources/meta",
            json!({ "url": "http://127.0.0.1:9/x", "interval_seconds": 60,
                    "headers": { "Authorization": "Bearer t", "X-Api-Key": "k" } }),
        )
        .await;
    assert_eq!(ok.status, 201, "credentials headers pass: {}", ok.body);
}

#[tokio::test]
async fn webhook_urls_with_credentials_are_refused_and_never_stored() {
    let cp = spawn_control_plane(Backend::Sqlite, quick).await;
    cp.create_service("web", json!({})).await;
    let before = cp.db.row_counts();
    for url in [
        "https://user:hunter2@hooks.example.com/alerts",
        "https://hunter2@hooks.example.com/alerts",
        "http://user:hunter2@127.0.0.1:9/hook",
    ] {
        let r = put_webhook(&cp, url).await;
        assert_eq!(r.assert_problem(422), "invalid-url", "{url}: {}", r.body);
        assert!(!r.body.to_string().contains("hunter2"), "{}", r.body);
    }
    assert_eq!(cp.db.row_counts(), before, "nothing stored or audited");
    let audit: Value = cp.admin().get("/v1/audit").await.body;
    assert!(!audit.to_string().contains("hunter2"), "{audit}");
}
