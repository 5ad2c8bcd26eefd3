//! Outbound requests a tenant can aim (sources, webhooks, inventories), each written as
//! the attack that worked and now fails: URLs at loopback, the metadata service,
//! unspecified, multicast, private and the control plane's own address refused with
//! 422 (or, when a name only resolves there at fetch time, a `source-failing` alert
//! with the policy's reason and no request sent); redirects unfollowed; metadata and
//! hop-by-hop headers refused; an endless chunked answer cut off at the cap; answers
//! and connection details never copied into errors or logs (a closed port and an open
//! one read the same); credentials in webhook URLs refused; log lines naming a URL
//! by its origin only. The harness allows loopback (test receivers live there); these
//! tests turn it off to prove the refusals, and keep it on as the stand-in for a
//! private range the operator allows.

mod answers;
mod destinations;
mod hostile;
mod log_lines;
mod ports;
mod requests;

use ferry_control_plane::config::Config;
use ferry_tests::control_plane::Resp;
use ferry_tests::{ControlPlane, eventually};
use serde_json::json;
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

async fn put_source(cp: &ControlPlane, name: &str, url: &str) -> Resp {
    put_source_of(cp, "web", name, url).await
}

async fn put_source_of(cp: &ControlPlane, svc: &str, name: &str, url: &str) -> Resp {
    cp.admin()
        .put(
            &format!("/v1/services/{svc}/sources/{name}"),
            json!({ "url": url, "interval_seconds": 1 }),
        )
        .await
}

async fn put_webhook(cp: &ControlPlane, url: &str) -> Resp {
    put_webhook_of(cp, "web", url).await
}

async fn put_webhook_of(cp: &ControlPlane, svc: &str, url: &str) -> Resp {
    cp.admin()
        .put(
            &format!("/v1/services/{svc}/webhook"),
            json!({ "url": url }),
        )
        .await
}

async fn put_inventory(cp: &ControlPlane, url: &str) -> Resp {
    put_inventory_of(cp, "web", url).await
}

async fn put_inventory_of(cp: &ControlPlane, svc: &str, url: &str) -> Resp {
    cp.admin()
        .put(
            &format!("/v1/services/{svc}/inventory"),
            json!({ "url": url, "interval_seconds": 1 }),
        )
        .await
}

/// The source's `last_error` once it has one.
async fn source_error(cp: &ControlPlane, name: &str) -> String {
    source_error_of(cp, "web", name).await
}

async fn source_error_of(cp: &ControlPlane, svc: &str, name: &str) -> String {
    let path = format!("/v1/services/{svc}/sources/{name}");
    eventually(
        &format!("source {svc}/{name} fails"),
        Duration::from_secs(20),
        || async {
            let v = cp.admin().get(&path).await.body;
            v["status"]["last_error"].as_str().map(str::to_owned)
        },
    )
    .await
}

/// The inventory's `last_error` once it has one.
async fn inventory_error(cp: &ControlPlane, within: Duration) -> String {
    inventory_error_of(cp, "web", within).await
}

async fn inventory_error_of(cp: &ControlPlane, svc: &str, within: Duration) -> String {
    let path = format!("/v1/services/{svc}/inventory");
    eventually(&format!("the inventory of {svc} fails"), within, || async {
        let v = cp.admin().get(&path).await.body;
        v["source"]["last_error"].as_str().map(str::to_owned)
    })
    .await
}

/// A loopback port nothing listens on (bound, then released).
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

fn refused(r: &Resp, what: &str) -> String {
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
