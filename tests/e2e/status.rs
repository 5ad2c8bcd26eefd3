//! The status summary reads counters and small indexes instead of scanning the fleet;
//! these stories check that what it reads stays true: the per-service node counter
//! follows enrollment, revocation and service deletion on both backends, and the expiry
//! figures follow the installed certificates.

use ferry_tests::agent::spawn_agent;
use ferry_tests::node::{enroll, p256};
use ferry_tests::{Backend, ControlPlane, eventually, spawn_control_plane};
use serde_json::{Value, json};
use std::time::Duration;

async fn status(cp: &ControlPlane) -> Value {
    let r = cp.admin().get("/v1/status").await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.body
}

fn line<'a>(status: &'a Value, service: &str) -> &'a Value {
    status["services"]
        .as_array()
        .and_then(|l| l.iter().find(|s| s["service"] == service))
        .unwrap_or_else(|| panic!("{service} in {status}"))
}

/// The counter the triggers keep equals a real count of the rows, for every service.
fn assert_counters_match(cp: &ControlPlane) {
    let off = cp.db.scalar(
        "SELECT CAST(COUNT(*) AS BIGINT) AS n FROM services s \
         WHERE s.node_count <> (SELECT COUNT(*) FROM nodes n WHERE n.service = s.name)",
    );
    assert_eq!(off, 0, "services whose node_count differs from their rows");
}

async fn node_counts_follow_enrollment_revocation_and_deletion(backend: Backend) {
    let cp = spawn_control_plane(backend, |_| {}).await;
    cp.create_service("web", json!({})).await;
    cp.create_service("api", json!({})).await;
    let (web, _) = cp.join_token("web", 3, 600).await;
    let (api, _) = cp.join_token("api", 1, 600).await;
    for node in ["w1", "w2", "w3"] {
        let r = enroll(&cp, "web", node, &web, &p256()).await;
        assert_eq!(r.status, 200, "{}", r.body);
    }
    let r = enroll(&cp, "api", "a1", &api, &p256()).await;
    assert_eq!(r.status, 200, "{}", r.body);

    let s = status(&cp).await;
    assert_eq!(line(&s, "web")["nodes"], 3);
    assert_eq!(line(&s, "api")["nodes"], 1);
    assert_eq!(s["fleet"]["nodes"], 4);
    // Enrolled, never acknowledged: every node is pending, none holds a certificate.
    assert_eq!(line(&s, "web")["pending"], 3);
    assert_eq!(line(&s, "web")["ok"], 0);
    assert_eq!(line(&s, "web")["expiring_24h"], 0);
    assert_counters_match(&cp);

    let r = cp.admin().delete("/v1/services/web/nodes/w2").await;
    assert_eq!(r.status, 204, "{}", r.body);
    let s = status(&cp).await;
    assert_eq!(line(&s, "web")["nodes"], 2, "a revoked node is not counted");
    assert_eq!(line(&s, "web")["pending"], 2);
    assert_counters_match(&cp);

    let r = cp.admin().delete("/v1/services/web").await;
    assert!(r.status == 204 || r.status == 200, "{}", r.body);
    let s = status(&cp).await;
    assert_eq!(
        s["fleet"]["nodes"], 1,
        "the deleted service's nodes are gone"
    );
    assert_eq!(s["services"].as_array().map(Vec::len), Some(1));
    assert_counters_match(&cp);
}

#[tokio::test]
async fn node_counts_follow_enrollment_revocation_and_deletion_pg() {
    node_counts_follow_enrollment_revocation_and_deletion(Backend::Postgres).await;
}

#[tokio::test]
async fn node_counts_follow_enrollment_revocation_and_deletion_sqlite() {
    node_counts_follow_enrollment_revocation_and_deletion(Backend::Sqlite).await;
}

/// Two agents acknowledge hour-long certificates; then one's installed certificate is
/// moved inside `alert_before` and the other's beyond 24 h (straight in the database,
/// as if they had acked such certificates).
#[tokio::test]
async fn expiry_figures_follow_the_installed_certificates() {
    let cp = spawn_control_plane(Backend::Postgres, |cfg| {
        cfg.jobs.staleness_tick = Duration::from_millis(300);
    })
    .await;
    cp.create_service("web", json!({ "cert_ttl_seconds": 3600 }))
        .await;
    let (token, _) = cp.join_token("web", 2, 600).await;
    let _a = spawn_agent(&cp, "web", "soon", &token, |_| {}).await;
    let _b = spawn_agent(&cp, "web", "later", &token, |_| {}).await;
    eventually("both acknowledged", Duration::from_secs(30), || async {
        let s = status(&cp).await;
        (line(&s, "web")["ok"] == 2).then_some(())
    })
    .await;
    let s = status(&cp).await;
    assert_eq!(line(&s, "web")["expiring_24h"], 2, "hour-long certificates");
    assert_eq!(line(&s, "web")["expiring_alert_before"], 0);

    let now_ms = time::OffsetDateTime::now_utc().unix_timestamp() * 1000;
    cp.db.execute(&format!(
        "UPDATE nodes SET cert_not_after = {} WHERE node_id = 'soon'",
        now_ms + 60_000
    ));
    cp.db.execute(&format!(
        "UPDATE nodes SET cert_not_after = {} WHERE node_id = 'later'",
        now_ms + 2 * 86_400_000
    ));

    let s = eventually(
        "the detector flags the expiring node",
        Duration::from_secs(15),
        || async {
            let s = status(&cp).await;
            (line(&s, "web")["expiring_alert_before"] == 1).then_some(s)
        },
    )
    .await;
    let web = line(&s, "web");
    assert_eq!(
        web["expiring_24h"], 1,
        "the certificate valid for two days is not"
    );
    assert_eq!(web["stale"], 1, "inside alert_before is stale");
    assert_eq!(web["ok"], 1);
    assert_eq!(web["pending"], 0);
    assert_eq!(s["fleet"]["expiring_alert_before"], 1);
}
