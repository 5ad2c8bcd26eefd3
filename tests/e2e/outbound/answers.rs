//! What a tenant's answers can do: a redirect is not followed, an endless chunked
//! body is cut off at the cap, and nothing of an answer (body, status text) reaches
//! an error, a status, an alert or a log line.

use super::hostile::{MARKER, hostile};
use super::{inventory_error, put_inventory, put_source, quick, source_error};
use ferry_tests::logs::warnings_with;
use ferry_tests::{Backend, spawn_control_plane};
use serde_json::json;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// In a tenant's URL, it must never reach a log line.
const QUERY_SECRET: &str = "QUERY-SECRET-5521";

#[tokio::test]
async fn redirects_to_internal_credentials_are_not_followed_and_their_text_is_not_kept() {
    // Arrange: a source and an inventory whose answer is a 302 (with a body carrying
    // the marker) to the internal credentials.
    let cp = spawn_control_plane(Backend::Sqlite, quick).await;
    cp.create_service("web", json!({})).await;
    let h = hostile().await;
    let url = format!("{}/redirect?token={QUERY_SECRET}", h.base);
    assert_eq!(put_source(&cp, "hop", &url).await.status, 201);
    assert_eq!(put_inventory(&cp, &url).await.status, 200);

    // Act: the fetches run.
    let source = source_error(&cp, "hop").await;
    let inventory = inventory_error(&cp, Duration::from_secs(20)).await;

    // Assert: not followed; the errors are the status; the answer's text is nowhere.
    assert_eq!(source, "HTTP 302: redirects are not followed");
    assert_eq!(inventory, "HTTP 302: redirects are not followed");
    assert!(h.seen.hits("/redirect") >= 2);
    assert_eq!(h.seen.hits("/latest/creds"), 0, "the redirect was followed");
    for v in [
        cp.admin().get("/v1/services/web/sources/hop").await.body,
        cp.admin().get("/v1/services/web/inventory").await.body,
        cp.admin().get("/v1/alerts?service=web").await.body,
    ] {
        let text = v.to_string();
        assert!(!text.contains(MARKER), "the answer was copied: {text}");
        assert!(!text.contains("/latest/creds"), "the location: {text}");
    }
    let lines = warnings_with(&format!("127.0.0.1:{}", h.port));
    assert!(
        lines.iter().any(|l| l.contains("object sync failed")),
        "no WARN line for the failed inventory: {lines:?}"
    );
    for line in &lines {
        for leak in [MARKER, "/redirect", "/latest/creds", QUERY_SECRET] {
            assert!(!line.contains(leak), "{leak} logged: {line}");
        }
    }
    assert_eq!(warnings_with(MARKER), Vec::<String>::new());
}

#[tokio::test]
async fn endless_chunked_answers_are_cut_off_at_the_cap() {
    let cp = spawn_control_plane(Backend::Sqlite, |cfg| {
        quick(cfg);
        cfg.jobs.sources.timeout = Duration::from_secs(20);
    })
    .await;
    cp.create_service("web", json!({})).await;
    let h = hostile().await;
    let url = format!("{}/endless", h.base);

    // A source: the cap is 32 KiB; the fetch hangs up there, long before the timeout.
    assert_eq!(put_source(&cp, "big", &url).await.status, 201);
    let error = source_error(&cp, "big").await;
    assert_eq!(error, "the answer is larger than 32768 bytes");
    assert_eq!(
        cp.admin()
            .delete("/v1/services/web/sources/big")
            .await
            .status,
        204
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let fetches = h.seen.hits("/endless") as u64;
    let sent = h.seen.endless_bytes.load(Ordering::Relaxed);
    // Beyond the cap, only what the sockets' buffers took before the hang-up.
    assert!(
        sent < fetches * 8 * 1024 * 1024,
        "{sent} bytes were taken by {fetches} fetches before the cut-off"
    );

    // An inventory: the cap is 256 MiB, and the sender is stopped soon after it.
    let cap: u64 = 256 * 1024 * 1024;
    let before = h.seen.endless_bytes.load(Ordering::Relaxed);
    assert_eq!(put_inventory(&cp, &url).await.status, 200);
    let error = inventory_error(&cp, Duration::from_secs(120)).await;
    assert_eq!(error, format!("the object is larger than {cap} bytes"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let sent = h.seen.endless_bytes.load(Ordering::Relaxed) - before;
    assert!(
        sent < cap + 64 * 1024 * 1024,
        "{sent} bytes were taken before the cut-off"
    );
}

#[tokio::test]
async fn answers_never_reach_errors_statuses_or_logs() {
    let cp = spawn_control_plane(Backend::Sqlite, quick).await;
    cp.create_service("web", json!({})).await;
    let h = hostile().await;
    for (name, path) in [("json", "/leaky-json"), ("status", "/leaky-500")] {
        let url = format!("{}{path}", h.base);
        assert_eq!(put_source(&cp, name, &url).await.status, 201);
    }
    let inventory = format!("{}/leaky-inventory", h.base);
    assert_eq!(put_inventory(&cp, &inventory).await.status, 200);

    let not_json = source_error(&cp, "json").await;
    assert!(not_json.starts_with("the answer is not JSON"), "{not_json}");
    assert_eq!(source_error(&cp, "status").await, "HTTP 500");
    let inventory = inventory_error(&cp, Duration::from_secs(20)).await;
    assert_eq!(inventory, "inventory entry 2 is not a valid node id");

    for v in [
        cp.admin().get("/v1/services/web/sources").await.body,
        cp.admin().get("/v1/services/web/inventory").await.body,
        cp.admin().get("/v1/alerts?service=web").await.body,
    ] {
        let text = v.to_string();
        assert!(!text.contains(MARKER), "an answer was copied: {text}");
    }
    let lines = warnings_with(&format!("127.0.0.1:{}", h.port));
    assert!(!lines.is_empty(), "the failed inventory is logged");
    assert_eq!(warnings_with(MARKER), Vec::<String>::new());
}
