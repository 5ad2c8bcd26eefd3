//! Log lines name a tenant's URL by its origin only: a webhook or inventory URL's
//! path and query often carry a token (`/hooks/T0/B1/secret`, `?sig=`), and the log
//! is read by more people than the tenant.

use super::hostile::{MARKER, hostile};
use super::{closed_port, put_inventory, put_source, put_webhook, quick};
use ferry_tests::logs::warnings_with;
use ferry_tests::{Backend, eventually, spawn_control_plane};
use serde_json::json;
use std::time::Duration;

#[tokio::test]
async fn warn_lines_carry_the_url_without_path_or_query() {
    // Arrange: a webhook and an inventory whose paths and queries are secrets, both
    // answered with a 500 (carrying the marker); a failing source fires an alert so
    // the webhook is sent.
    let cp = spawn_control_plane(Backend::Postgres, |cfg| {
        quick(cfg);
        cfg.jobs.sources.alert_after = 1;
    })
    .await;
    cp.create_service("web", json!({})).await;
    let h = hostile().await;
    let hook = format!(
        "{}/leaky-500/T0/B1/hook-path-secret?token=hook-query-secret",
        h.base
    );
    let inventory = format!("{}/leaky-500/inv-path-secret?sig=inv-query-secret", h.base);
    assert_eq!(put_webhook(&cp, &hook).await.status, 200);
    assert_eq!(put_inventory(&cp, &inventory).await.status, 200);
    let down = format!("http://127.0.0.1:{}/x", closed_port());
    assert_eq!(put_source(&cp, "down", &down).await.status, 201);

    // Act: both fail and are logged.
    let origin = h.base.clone();
    let webhook_line = eventually(
        "a WARN line for the webhook",
        Duration::from_secs(30),
        || async {
            warnings_with("webhook delivery failed")
                .into_iter()
                .find(|l| l.contains(&origin))
        },
    )
    .await;
    let inventory_line = eventually(
        "a WARN line for the inventory",
        Duration::from_secs(30),
        || async {
            warnings_with("object sync failed")
                .into_iter()
                .find(|l| l.contains(&origin))
        },
    )
    .await;

    // Assert: the origin and the status, nothing of the path, the query or the answer.
    assert!(webhook_line.contains("WARN"), "{webhook_line}");
    assert!(
        webhook_line.contains(&format!("receiver={origin}")),
        "{webhook_line}"
    );
    assert!(webhook_line.contains("error=HTTP 500"), "{webhook_line}");
    assert!(
        inventory_line.contains(&format!("origin={origin}")),
        "{inventory_line}"
    );
    assert!(
        inventory_line.contains("error=HTTP 500"),
        "{inventory_line}"
    );
    let every = warnings_with(&format!("127.0.0.1:{}", h.port));
    for line in &every {
        for leak in ["/leaky-500", "secret", "token=", "sig=", MARKER] {
            assert!(!line.contains(leak), "{leak} logged: {line}");
        }
    }
    for leak in ["path-secret", "query-secret", MARKER] {
        assert_eq!(warnings_with(leak), Vec::<String>::new(), "{leak}");
    }
}
