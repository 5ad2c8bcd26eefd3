//! Where a tenant's URL may lead: every internal class refused with 422 through each
//! kind of URL, the control plane's own address refused even where loopback is
//! allowed, the operator's switches opening only what they name, and a destination
//! that becomes internal after create refused at fetch time with the policy's reason.

use super::hostile::hostile;
use super::{put_inventory, put_source, put_webhook, quick, refused, source_error, strict};
use ferry_control_plane::outbound::Net;
use ferry_tests::{Backend, eventually, spawn_control_plane};
use serde_json::json;
use std::time::Duration;

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
