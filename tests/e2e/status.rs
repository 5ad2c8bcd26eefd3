//! The status summary reads counters and small indexes instead of scanning the fleet;
//! these stories check that what it reads stays true: the per-service node counter
//! follows enrollment, revocation and service deletion on both backends, the expiry
//! figures follow the installed certificates, and the services come a page at a time
//! under one fleet line that stays exact over all of them (and only the caller's).

use ferry_tests::agent::spawn_agent;
use ferry_tests::control_plane::Api;
use ferry_tests::node::{enroll, p256};
use ferry_tests::{Backend, ControlPlane, eventually, spawn_control_plane};
use serde_json::{Value, json};
use std::time::Duration;

async fn status(cp: &ControlPlane) -> Value {
    status_at(&cp.admin(), "/v1/status").await
}

async fn status_at(api: &Api, path: &str) -> Value {
    let r = api.get(path).await;
    assert_eq!(r.status, 200, "{path}: {}", r.body);
    r.body
}

/// Every page of the summary, `limit` services at a time, from the first.
async fn pages(api: &Api, limit: u32) -> Vec<Value> {
    let mut pages = Vec::new();
    let mut path = format!("/v1/status?limit={limit}");
    loop {
        let page = status_at(api, &path).await;
        let next = page["next_cursor"].as_str().map(str::to_owned);
        pages.push(page);
        match next {
            Some(c) => path = format!("/v1/status?limit={limit}&cursor={c}"),
            None => return pages,
        }
    }
}

fn names(page: &Value) -> Vec<String> {
    page["services"]
        .as_array()
        .map(|l| {
            l.iter()
                .filter_map(|s| s["service"].as_str())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
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

/// Five admin services and one of tenant acme; nodes enrolled in two of them, none
/// acknowledged yet (so each is pending).
async fn services_pages_and_the_fleet_line(backend: Backend) {
    // Arrange
    let cp = spawn_control_plane(backend, |_| {}).await;
    for name in ["api", "db", "mail", "web", "zeta"] {
        cp.create_service(name, json!({})).await;
    }
    let admin = cp.admin();
    assert_eq!(
        admin
            .post("/v1/tenants", json!({ "name": "acme" }))
            .await
            .status,
        201
    );
    let token = admin.post("/v1/tenants/acme/tokens", json!({})).await.body["token"]
        .as_str()
        .expect("tenant token")
        .to_owned();
    let acme = cp.api(Some(&token));
    let r = acme
        .post("/v1/services", json!({ "name": "acme-shop" }))
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let (db, _) = cp.join_token("db", 2, 600).await;
    let (shop, _) = cp.join_token("acme-shop", 1, 600).await;
    for (svc, node, token) in [
        ("db", "d1", &db),
        ("db", "d2", &db),
        ("acme-shop", "s1", &shop),
    ] {
        let r = enroll(&cp, svc, node, token, &p256()).await;
        assert_eq!(r.status, 200, "{}", r.body);
    }

    // Act: the admin walks the summary two services at a time; acme reads its own.
    let walked = pages(&admin, 2).await;
    let theirs = pages(&acme, 2).await;
    let one = status_at(&admin, "/v1/status?service=db").await;

    // Assert: every service exactly once, in name order, at most two to a page.
    let seen: Vec<String> = walked.iter().flat_map(names).collect();
    assert_eq!(seen, ["acme-shop", "api", "db", "mail", "web", "zeta"]);
    assert_eq!(walked.len(), 3, "six services, two a page");
    // The fleet line is the whole fleet on every page, not the page.
    for page in &walked {
        assert_eq!(page["fleet"], walked[0]["fleet"], "{page}");
    }
    let fleet = &walked[0]["fleet"];
    assert_eq!(
        (fleet["nodes"].as_i64(), fleet["pending"].as_i64()),
        (Some(3), Some(3)),
        "{fleet}"
    );
    assert_eq!(fleet["ok"], 0);
    // A tenant's pages and fleet line hold only its services.
    assert_eq!(
        theirs.iter().flat_map(names).collect::<Vec<_>>(),
        ["acme-shop"]
    );
    assert_eq!(theirs[0]["fleet"]["nodes"], 1, "{}", theirs[0]);
    assert_eq!(theirs[0]["next_cursor"], Value::Null);
    // One service's line, under the same fleet line.
    assert_eq!(names(&one), ["db"]);
    assert_eq!(one["services"][0]["nodes"], 2);
    assert_eq!((&one["fleet"], &one["next_cursor"]), (fleet, &Value::Null));
}

#[tokio::test]
async fn services_pages_and_the_fleet_line_pg() {
    services_pages_and_the_fleet_line(Backend::Postgres).await;
}

#[tokio::test]
async fn services_pages_and_the_fleet_line_sqlite() {
    services_pages_and_the_fleet_line(Backend::Sqlite).await;
}

/// What the summary refuses: a page size out of range, a cursor it did not issue, a
/// service that does not exist or belongs to another tenant, and a service with a
/// cursor.
#[tokio::test]
async fn status_refuses_bad_pages_and_hides_other_tenants_services() {
    // Arrange
    let cp = spawn_control_plane(Backend::Sqlite, |_| {}).await;
    cp.create_service("web", json!({})).await;
    let admin = cp.admin();
    assert_eq!(
        admin
            .post("/v1/tenants", json!({ "name": "acme" }))
            .await
            .status,
        201
    );
    let token = admin.post("/v1/tenants/acme/tokens", json!({})).await.body["token"]
        .as_str()
        .expect("tenant token")
        .to_owned();
    let acme = cp.api(Some(&token));
    let only = status_at(&admin, "/v1/status?limit=1").await;
    assert_eq!(only["next_cursor"], Value::Null, "one service, one page");

    // Act
    let refusals = [
        (
            "/v1/status?limit=0",
            admin.get("/v1/status?limit=0").await.status,
        ),
        (
            "/v1/status?limit=1001",
            admin.get("/v1/status?limit=1001").await.status,
        ),
        (
            "/v1/status?cursor=%21%21",
            admin.get("/v1/status?cursor=%21%21").await.status,
        ),
        (
            "/v1/status?service=nope",
            admin.get("/v1/status?service=nope").await.status,
        ),
        (
            "acme: /v1/status?service=web",
            acme.get("/v1/status?service=web").await.status,
        ),
        (
            "/v1/status?service=web&cursor=d2Vi",
            admin.get("/v1/status?service=web&cursor=d2Vi").await.status,
        ),
    ];

    // Assert
    assert_eq!(
        refusals,
        [
            ("/v1/status?limit=0", 400),
            ("/v1/status?limit=1001", 400),
            ("/v1/status?cursor=%21%21", 400),
            ("/v1/status?service=nope", 404),
            ("acme: /v1/status?service=web", 404),
            ("/v1/status?service=web&cursor=d2Vi", 400),
        ]
    );
}
