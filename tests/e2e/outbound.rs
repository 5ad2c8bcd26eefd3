//! Outbound requests a tenant can aim (sources, webhooks, inventories), each written as
//! the attack that worked and now fails: URLs at loopback, the metadata service,
//! unspecified, multicast, private and the control plane's own address refused with
//! 422 (or, when a name only resolves there at fetch time, a `source-failing` alert
//! with the policy's reason and no request sent); redirects unfollowed; metadata and
//! hop-by-hop headers refused; an endless chunked answer cut off at the cap; answers
//! and connection details never copied into errors; credentials in webhook URLs
//! refused. The harness allows loopback (test receivers live there); these tests turn
//! it off to prove the refusals, and on again to prove the operator's switch.

mod hostile;

use ferry_control_plane::config::Config;
use ferry_control_plane::outbound::Net;
use ferry_tests::{Backend, ControlPlane, eventually, spawn_control_plane};
use hostile::{MARKER, hostile};
use serde_json::{Value, json};
use std::time::Duration;

fn strict(cfg: &mut Config) {
    cfg.outbound.allow_loopback = false;
    quick(cfg);
}

fn quick(cfg: &mut Config) {
    cfg.jobs.sources.cooldown = Duration::from_secs(1);
    cfg.jobs.sources.timeout = Duration::from_secs(2);
    cfg.jobs.objects_tick = Duration::from_millis(200);
}

async fn put_source(cp: &ControlPlane, name: &str, url: &str) -> ferry_tests::control_plane::Resp {
    cp.admin()
        .put(
            &format!("/v1/services/web/sources/{name}"),
            json!({ "url": url, "interval_seconds": 1 }),
        )
        .await
}

async fn put_webhook(cp: &ControlPlane, url: &str) -> ferry_tests::control_plane::Resp {
    cp.admin()
        .put("/v1/services/web/webhook", json!({ "url": url }))
        .await
}

async fn put_inventory(cp: &ControlPlane, url: &str) -> ferry_tests::control_plane::Resp {
    cp.admin()
        .put(
            "/v1/services/web/inventory",
            json!({ "url": url, "interval_seconds": 1 }),
        )
        .await
}

/// The source's `last_error` once it has one.
async fn source_error(cp: &ControlPlane, name: &str) -> String {
    eventually(
        &format!("source {name} fails"),
        Duration::from_secs(20),
        || async {
            let v = cp
                .admin()
                .get(&format!("/v1/services/web/sources/{name}"))
                .await
                .body;
            v["status"]["last_error"].as_str().map(str::to_owned)
        },
    )
    .await
}

/// The inventory's `last_error` once it has one.
async fn inventory_error(cp: &ControlPlane, within: Duration) -> String {
    eventually("the inventory fails", within, || async {
        let v = cp.admin().get("/v1/services/web/inventory").await.body;
        v["source"]["last_error"].as_str().map(str::to_owned)
    })
    .await
}

fn refused(r: &ferry_tests::control_plane::Resp, what: &str) -> String {
    assert_eq!(
        r.assert_problem(422),
        "outbound-refused",
        "{what}: {}",
        r.body
    );
    let detail = r.body["detail"].as_str().expect("detail").to_owned();
    assert!(
        detail.contains("refused by the outbound policy"),
        "{what}: {detail}"
    );
    detail
}

#[tokio::test]
async fn sources_webhooks_and_inventories_at_internal_addresses_are_refused_with_422() {
    // Arrange: an internal service on loopback with credentials to steal.
    let cp = spawn_control_plane(Backend::Postgres, strict).await;
    cp.create_service("web", json!({})).await;
    let inside = hostile().await;
    let port = inside.port;
    let before = cp.db.row_counts();

    // Act + assert: every class, through each kind of URL.
    for (url, class, shown) in [
        (
            format!("{}/latest/creds", inside.base),
            "loopback",
            "127.0.0.1".to_owned(),
        ),
        (
            format!("http://127.3.4.5:{port}/latest/creds"),
            "loopback /8",
            "127.3.4.5".into(),
        ),
        (
            format!("http://[::1]:{port}/latest/creds"),
            "IPv6 loopback",
            "::1".into(),
        ),
        (
            format!("http://[::ffff:127.0.0.1]:{port}/x"),
            "IPv4-mapped loopback",
            "127.0.0.1".into(),
        ),
        (
            format!("http://2130706433:{port}/x"),
            "decimal loopback",
            "127.0.0.1".into(),
        ),
        (
            "http://169.254.169.254/latest/meta-data/iam/".into(),
            "metadata",
            "169.254.169.254".into(),
        ),
        (
            "http://[fd00:ec2::254]/latest/meta-data/".into(),
            "IPv6 metadata",
            "fd00:ec2::254".into(),
        ),
        ("http://[fe80::1]/x".into(), "link-local", "fe80::1".into()),
        (
            format!("http://0.0.0.0:{port}/latest/creds"),
            "unspecified",
            "0.0.0.0".into(),
        ),
        ("http://[::]/x".into(), "IPv6 unspecified", "::".into()),
        ("http://224.0.0.1/x".into(), "multicast", "224.0.0.1".into()),
        (
            "http://255.255.255.255/x".into(),
            "broadcast",
            "255.255.255.255".into(),
        ),
        (
            "http://10.1.2.3/x".into(),
            "private, not allowed",
            "10.1.2.3".into(),
        ),
        (
            "http://100.64.0.1/x".into(),
            "carrier-grade NAT",
            "100.64.0.1".into(),
        ),
        (
            format!("http://localhost:{port}/latest/creds"),
            "a name resolving to loopback",
            "127.0.0.1".into(),
        ),
    ] {
        let detail = refused(&put_source(&cp, "creds", &url).await, class);
        assert!(detail.contains(&shown), "{class}: {detail}");
        refused(&put_webhook(&cp, &url).await, class);
        refused(&put_inventory(&cp, &url).await, class);
    }

    assert_eq!(cp.db.row_counts(), before, "nothing was written");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        inside.seen.hits("/latest/creds"),
        0,
        "no request reached it"
    );
}

#[tokio::test]
async fn the_control_planes_own_address_is_refused_even_with_loopback_allowed() {
    let cp = spawn_control_plane(Backend::Sqlite, quick).await;
    cp.create_service("web", json!({})).await;
    let port = cp.addr.port();
    for url in [
        format!("https://127.0.0.1:{port}/v1/trust-bundle"),
        format!("https://localhost:{port}/v1/services"),
        format!("https://[::1]:{port}/v1/services"),
    ] {
        refused(&put_source(&cp, "self", &url).await, &url);
        refused(&put_webhook(&cp, &url).await, &url);
    }
}

#[tokio::test]
async fn the_operator_switches_open_loopback_and_listed_private_ranges_only() {
    // Without the switches: refused.
    let strict_cp = spawn_control_plane(Backend::Sqlite, strict).await;
    strict_cp.create_service("web", json!({})).await;
    let inside = hostile().await;
    let url = format!("{}/latest/creds", inside.base);
    refused(&put_source(&strict_cp, "creds", &url).await, "loopback off");
    refused(
        &put_webhook(&strict_cp, "http://10.20.30.40:9/hook").await,
        "10/8 not listed",
    );

    // With them: accepted, and the loopback source is fetched.
    let open = spawn_control_plane(Backend::Sqlite, |cfg| {
        quick(cfg);
        cfg.outbound.allow = vec![Net::parse("10.0.0.0/8").expect("net")];
    })
    .await;
    open.create_service("web", json!({})).await;
    let r = put_source(&open, "creds", &url).await;
    assert_eq!(r.status, 201, "{}", r.body);
    eventually("fetched", Duration::from_secs(20), || async {
        (inside.seen.hits("/latest/creds") > 0).then_some(())
    })
    .await;
    // No alert event exists for this service, so nothing is sent to 10.20.30.40.
    let r = put_webhook(&open, "http://10.20.30.40:9/hook").await;
    assert_eq!(r.status, 200, "a listed range: {}", r.body);
    assert_eq!(
        open.admin().delete("/v1/services/web/webhook").await.status,
        204
    );
    refused(
        &put_webhook(&open, "http://192.168.1.1:9/hook").await,
        "192.168/16 not listed",
    );
    refused(
        &put_webhook(&open, "http://169.254.169.254/").await,
        "never, whatever is listed",
    );
}

#[tokio::test]
async fn a_destination_that_turns_internal_after_create_fails_at_fetch_with_the_reason_and_alert() {
    // Arrange: sources created while loopback was allowed (a name and a literal), then
    // the operator turns it off: a stand-in for a name that re-resolves inside.
    let mut cp = spawn_control_plane(Backend::Postgres, quick).await;
    cp.create_service("web", json!({})).await;
    let inside = hostile().await;
    let by_name = format!("http://localhost:{}/latest/creds", inside.port);
    assert_eq!(put_source(&cp, "named", &by_name).await.status, 201);
    cp.cfg.outbound.allow_loopback = false;
    cp.restart().await;
    tokio::time::sleep(Duration::from_millis(300)).await; // a fetch of the old instance
    let hits_before = inside.seen.hits("/latest/creds");

    // Act: the fetches run against the stricter policy.
    let error = source_error(&cp, "named").await;

    // Assert: the reason is the policy's, the alert fires, nothing more was asked.
    assert_eq!(
        error,
        "destination 127.0.0.1 is refused by the outbound policy"
    );
    eventually("source-failing fires", Duration::from_secs(30), || async {
        let r = cp.admin().get("/v1/alerts?service=web&state=firing").await;
        r.body["items"]
            .as_array()?
            .iter()
            .any(|a| a["reason"] == "source-failing")
            .then_some(())
    })
    .await;
    assert_eq!(
        inside.seen.hits("/latest/creds"),
        hits_before,
        "no request after the switch"
    );
}

#[tokio::test]
async fn redirects_to_internal_credentials_are_not_followed() {
    let cp = spawn_control_plane(Backend::Sqlite, quick).await;
    cp.create_service("web", json!({})).await;
    let h = hostile().await;
    let url = format!("{}/redirect", h.base);

    assert_eq!(put_source(&cp, "hop", &url).await.status, 201);
    assert_eq!(put_inventory(&cp, &url).await.status, 200);

    assert_eq!(
        source_error(&cp, "hop").await,
        "HTTP 302: redirects are not followed"
    );
    assert_eq!(
        inventory_error(&cp, Duration::from_secs(20)).await,
        "HTTP 302: redirects are not followed"
    );
    assert!(h.seen.hits("/redirect") >= 2);
    assert_eq!(h.seen.hits("/latest/creds"), 0, "the redirect was followed");
}

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
async fn endless_chunked_answers_are_cut_off_at_the_cap() {
    let cp = spawn_control_plane(Backend::Sqlite, |cfg| {
        quick(cfg);
        cfg.jobs.sources.timeout = Duration::from_secs(20);
    })
    .await;
    cp.create_service("web", json!({})).await;
    let h = hostile().await;
    let url = format!("{}/endless", h.base);

    // A source: the cap is 32 KiB.
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

    // An inventory: the cap is 256 MiB, and the sender is stopped soon after it.
    let cap: u64 = 256 * 1024 * 1024;
    assert_eq!(put_inventory(&cp, &url).await.status, 200);
    let error = inventory_error(&cp, Duration::from_secs(120)).await;
    assert_eq!(error, format!("the object is larger than {cap} bytes"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let sent = h
        .seen
        .endless_bytes
        .load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        sent < cap + 64 * 1024 * 1024,
        "{sent} bytes were taken before the cut-off"
    );
}

#[tokio::test]
async fn answers_and_connection_details_never_reach_errors() {
    let cp = spawn_control_plane(Backend::Sqlite, quick).await;
    cp.create_service("web", json!({})).await;
    let h = hostile().await;
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port() // closed once dropped
    };

    for (name, path) in [("json", "/leaky-json"), ("status", "/leaky-500")] {
        assert_eq!(
            put_source(&cp, name, &format!("{}{path}", h.base))
                .await
                .status,
            201
        );
    }
    let cases = [
        ("closed", format!("http://127.0.0.1:{closed}/x")),
        ("stalled", format!("{}/stall", h.base)),
    ];
    for (name, url) in &cases {
        assert_eq!(put_source(&cp, name, url).await.status, 201);
    }
    assert_eq!(
        put_inventory(&cp, &format!("{}/leaky-inventory", h.base))
            .await
            .status,
        200
    );

    let not_json = source_error(&cp, "json").await;
    assert!(not_json.starts_with("the answer is not JSON"), "{not_json}");
    assert_eq!(source_error(&cp, "status").await, "HTTP 500");
    // A closed port and a port that never answers read the same: no port map.
    assert_eq!(source_error(&cp, "closed").await, "request failed");
    assert_eq!(source_error(&cp, "stalled").await, "request failed");
    let inventory = inventory_error(&cp, Duration::from_secs(20)).await;
    assert_eq!(inventory, "inventory entry 2 is not a valid node id");

    let everything = [
        cp.admin().get("/v1/services/web/sources").await.body,
        cp.admin().get("/v1/services/web/inventory").await.body,
        cp.admin().get("/v1/alerts?service=web").await.body,
    ];
    for v in everything {
        let text = v.to_string();
        assert!(!text.contains(MARKER), "an answer was copied: {text}");
        assert!(
            !text.to_lowercase().contains("connection refused"),
            "{text}"
        );
    }
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
