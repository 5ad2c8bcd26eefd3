//! Issue 21, names, limits and files: each test is an attack that worked before and is
//! refused now. A re-created service name inherits no history, and creating a name
//! tells a tenant nothing about other tenants; metadata adding up past what the agent
//! downloads is refused with 422, also when writers race; a trickled request body and an idle HTTP/2
//! connection are cut off; a logged-out dashboard cookie is refused by every replica;
//! `ferry.db` and the data directory are private under umask 022; an agent key made
//! readable by others is restricted at the next start.

use ferry_tests::agent::spawn_agent;
use ferry_tests::node;
use ferry_tests::{Backend, ControlPlane, bin_path, eventually, spawn_control_plane};
use serde_json::json;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn count(cp: &ControlPlane, table: &str, service: &str) -> i64 {
    cp.db.scalar(&format!(
        "SELECT COUNT(*) AS n FROM {table} WHERE service = '{service}'"
    ))
}

async fn recreated_name_inherits_no_history(backend: Backend) {
    let cp = spawn_control_plane(backend, |_| {}).await;
    let acme = cp.tenant("acme").await;
    let r = acme
        .post("/v1/services", json!({ "name": "acme-web" }))
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let token = acme
        .post("/v1/services/acme-web/join-tokens", json!({}))
        .await
        .body["token"]
        .as_str()
        .expect("join token")
        .to_owned();
    let enrolled = node::enroll(&cp, "acme-web", "n1", &token, &node::p256()).await;
    assert_eq!(enrolled.status, 200, "{}", enrolled.body);
    let refresh = acme
        .post("/v1/services/acme-web/nodes/n1/refresh", json!({}))
        .await;
    assert_eq!(refresh.status, 202, "{}", refresh.body);
    let delivery = refresh.body["delivery_id"].as_str().expect("id").to_owned();
    let put = acme
        .put(
            "/v1/services/acme-web/metadata/env",
            json!({ "value": "prod" }),
        )
        .await;
    assert_eq!(put.status, 200, "{}", put.body);
    // An alert with its webhook event still queued, as the detector writes them.
    let now = time::OffsetDateTime::now_utc().unix_timestamp() * 1000;
    cp.db.execute(&format!(
        "INSERT INTO alerts (id, service, node_id, reason, state, detail, fired_at) \
         VALUES ('old-alert', 'acme-web', 'n1', 'unseen', 'firing', 'old', {now})"
    ));
    cp.db.execute(&format!(
        "INSERT INTO alert_events (id, alert_id, service, payload, created_at, next_attempt_at) \
         VALUES ('old-event', 'old-alert', 'acme-web', '{{}}', {now}, {now})"
    ));

    assert_eq!(acme.delete("/v1/services/acme-web").await.status, 204);
    let again = acme
        .post("/v1/services", json!({ "name": "acme-web" }))
        .await;
    assert_eq!(again.status, 201, "{}", again.body);

    acme.get(&format!("/v1/deliveries/{delivery}"))
        .await
        .assert_problem(404);
    let alerts = acme.get("/v1/alerts?service=acme-web").await;
    assert_eq!(alerts.body["items"], json!([]), "{}", alerts.body);
    let listed = acme.get("/v1/services/acme-web/metadata").await;
    assert_eq!(listed.status, 200, "{}", listed.body);
    assert!(
        !listed.body.to_string().contains("prod"),
        "old metadata: {}",
        listed.body
    );
    for table in ["alerts", "alert_events", "deliveries", "nodes", "metadata"] {
        assert_eq!(
            count(&cp, table, "acme-web"),
            0,
            "{table} of the old service"
        );
    }
}

#[tokio::test]
async fn a_recreated_service_name_inherits_no_history_postgres() {
    recreated_name_inherits_no_history(Backend::Postgres).await;
}

#[tokio::test]
async fn a_recreated_service_name_inherits_no_history_sqlite() {
    recreated_name_inherits_no_history(Backend::Sqlite).await;
}

#[tokio::test]
async fn creating_a_service_tells_a_tenant_nothing_about_other_tenants_names() {
    let cp = spawn_control_plane(Backend::Sqlite, |_| {}).await;
    let (alpha, beta) = (cp.tenant("alpha").await, cp.tenant("beta").await);
    assert_eq!(
        alpha
            .post("/v1/services", json!({ "name": "alpha-pay" }))
            .await
            .status,
        201
    );
    cp.create_service("payroll", json!({})).await;
    // The probe: beta tries names that exist elsewhere and names that exist nowhere;
    // every answer is the same rule-based refusal, decided before any lookup.
    let answers: Vec<_> =
        create_each(&beta, &["alpha-pay", "payroll", "free-name", "alpha-free"]).await;
    for (name, r) in &answers {
        assert_eq!(r.assert_problem(422), "name-outside-namespace", "{name}");
        assert_eq!(r.body["detail"], answers[0].1.body["detail"], "{name}");
    }
    assert_eq!(
        beta.post("/v1/services", json!({ "name": "beta-pay" }))
            .await
            .status,
        201,
        "beta's own namespace is free whatever alpha holds"
    );
    // Nobody, admins included, puts a service into another tenant's namespace.
    cp.admin()
        .post(
            "/v1/services",
            json!({ "name": "alpha-x", "tenant": "beta" }),
        )
        .await
        .assert_problem(422);
    // A new tenant cannot take over names already held: "alpha-pay" lies in "alpha-".
    cp.admin()
        .post("/v1/tenants", json!({ "name": "alpha-p" }))
        .await
        .assert_problem(409);
}

async fn create_each(
    api: &ferry_tests::control_plane::Api,
    names: &[&str],
) -> Vec<(String, ferry_tests::control_plane::Resp)> {
    let mut out = Vec::new();
    for name in names {
        out.push((
            name.to_string(),
            api.post("/v1/services", json!({ "name": name })).await,
        ));
    }
    out
}

#[tokio::test]
async fn metadata_that_adds_up_past_what_the_agent_downloads_is_refused() {
    let cp = spawn_control_plane(Backend::Sqlite, |_| {}).await;
    cp.create_service("web", json!({})).await;
    let (token, _) = cp.join_token("web", 1, 600).await;
    assert_eq!(
        node::enroll(&cp, "web", "n1", &token, &node::p256())
            .await
            .status,
        200
    );
    let admin = cp.admin();
    // 32 KiB of JSON each: the largest value one PUT accepts.
    let value = json!("v".repeat(32 * 1024 - 2));
    let mut accepted = 0;
    let refused = loop {
        assert!(accepted < 41, "41 keys of 32 KiB were all accepted");
        let r = admin
            .put(
                &format!("/v1/services/web/metadata/k{accepted}"),
                json!({ "value": value }),
            )
            .await;
        if r.status != 200 {
            break r;
        }
        accepted += 1;
    };
    assert_eq!(refused.assert_problem(422), "bundle-metadata-too-large");
    assert!(
        refused.body["detail"]
            .as_str()
            .is_some_and(|d| d.contains("524288")),
        "{}",
        refused.body
    );
    assert!((14..=16).contains(&accepted), "{accepted} accepted");
    // A node's own values count with the service's.
    admin
        .put(
            "/v1/services/web/nodes/n1/metadata/big",
            json!({ "value": value }),
        )
        .await
        .assert_problem(422);
    // Replacing a value is measured without the value it replaces.
    let replaced = admin
        .put("/v1/services/web/metadata/k0", json!({ "value": value }))
        .await;
    assert_eq!(replaced.status, 200, "{}", replaced.body);
    // What the node would download stays under the agent's 1 MiB.
    let bundle = admin.get("/v1/services/web/nodes/n1/bundle").await;
    assert_eq!(bundle.status, 200, "{}", bundle.body);
    assert!(bundle.body.to_string().len() < 1024 * 1024);
}

#[tokio::test]
async fn concurrent_metadata_writes_cannot_together_overfill_a_bundle() {
    let cp = spawn_control_plane(Backend::Postgres, |_| {}).await;
    cp.create_service("web", json!({})).await;
    let (token, _) = cp.join_token("web", 1, 600).await;
    node::enroll(&cp, "web", "n1", &token, &node::p256()).await;
    let admin = cp.admin();
    let value = json!("v".repeat(32 * 1024 - 2));
    // 14 values: room for exactly one more of the same size.
    for k in 0..14 {
        let r = admin
            .put(
                &format!("/v1/services/web/metadata/k{k}"),
                json!({ "value": value }),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
    }
    // Eight writers race for that room, at the service and at the node level.
    let racers = (0..8).map(|i| {
        let (admin, value) = (cp.admin(), value.clone());
        let path = if i % 2 == 0 {
            format!("/v1/services/web/metadata/race{i}")
        } else {
            format!("/v1/services/web/nodes/n1/metadata/race{i}")
        };
        tokio::spawn(async move { admin.put(&path, json!({ "value": value })).await.status })
    });
    let mut statuses = Vec::new();
    for racer in racers.collect::<Vec<_>>() {
        statuses.push(racer.await.expect("racer"));
    }
    let won = statuses.iter().filter(|s| **s == 200).count();
    assert_eq!(won, 1, "statuses {statuses:?}");
    assert!(
        statuses.iter().all(|s| matches!(s, 200 | 422)),
        "{statuses:?}"
    );
    // What n1's bundle would carry: the service's values and its own.
    let bytes = cp.db.scalar(
        "SELECT CAST(SUM(LENGTH(key) + LENGTH(value)) AS BIGINT) AS n FROM metadata \
         WHERE service = 'web' AND node_id IN ('', 'n1')",
    );
    assert!(bytes <= 512 * 1024, "{bytes} bytes in n1's bundle");
}

fn tls_connector(cp: &ControlPlane, alpn: &[u8]) -> tokio_rustls::TlsConnector {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pki_types::CertificateDer::pem_slice_iter(cp.ca_pem.as_bytes()) {
        roots.add(c.expect("CA PEM")).expect("CA");
    }
    let mut cfg = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![alpn.to_vec()];
    tokio_rustls::TlsConnector::from(Arc::new(cfg))
}

async fn connect(cp: &ControlPlane, alpn: &[u8]) -> tokio_rustls::client::TlsStream<TcpStream> {
    let tcp = TcpStream::connect(cp.addr).await.expect("connect");
    let name = rustls_pki_types::ServerName::try_from("localhost").expect("name");
    tls_connector(cp, alpn)
        .connect(name, tcp)
        .await
        .expect("TLS handshake")
}

#[tokio::test]
async fn a_trickled_enroll_body_is_cut_off_at_the_body_deadline() {
    let limit = Duration::from_secs(2);
    let cp = spawn_control_plane(Backend::Sqlite, |cfg| {
        cfg.limits.body_read_timeout = limit;
    })
    .await;
    let stream = connect(&cp, b"http/1.1").await;
    let (mut rd, mut wr) = tokio::io::split(stream);
    let started = Instant::now();
    wr.write_all(
        b"POST /v1/agent/enroll HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\n\
          content-length: 100000\r\n\r\n{",
    )
    .await
    .expect("headers");
    // One byte every 200 ms: never idle long enough for a per-read timeout.
    let trickle = tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if wr.write_all(b" ").await.is_err() {
                return;
            }
        }
    });
    let mut answer = Vec::new();
    let read = tokio::time::timeout(limit * 5, rd.read_to_end(&mut answer)).await;
    trickle.abort();
    let took = started.elapsed();
    let text = String::from_utf8_lossy(&answer);
    assert!(
        read.is_ok(),
        "still held after {took:?}; answer so far: {text}"
    );
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("body-timeout"), "{text}");
    assert!(
        took + Duration::from_millis(300) >= limit,
        "cut after {took:?}"
    );
}

#[tokio::test]
async fn an_idle_http2_connection_is_closed() {
    let idle = Duration::from_secs(2);
    let cp = spawn_control_plane(Backend::Sqlite, |cfg| {
        cfg.limits.idle_connection_timeout = idle;
    })
    .await;
    let mut stream = connect(&cp, b"h2").await;
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let started = Instant::now();
    // The client preface and an empty SETTINGS frame, then nothing.
    stream
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .await
        .expect("preface");
    let mut sink = Vec::new();
    let read = tokio::time::timeout(idle * 5, stream.read_to_end(&mut sink)).await;
    let took = started.elapsed();
    assert!(read.is_ok(), "still open after {took:?}");
    assert!(
        took + Duration::from_millis(300) >= idle,
        "closed after {took:?}"
    );
}

/// A client that trusts the control plane's CA and does not follow redirects.
fn no_redirects(cp: &ControlPlane) -> reqwest::Client {
    let ca = reqwest::Certificate::from_pem(cp.ca_pem.as_bytes()).expect("CA PEM");
    reqwest::Client::builder()
        .tls_certs_only([ca])
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

async fn dashboard_status(client: &reqwest::Client, cp: &ControlPlane, cookie: &str) -> u16 {
    client
        .get(format!("{}/dashboard", cp.url))
        .header("cookie", cookie)
        .send()
        .await
        .expect("GET /dashboard")
        .status()
        .as_u16()
}

#[tokio::test]
async fn a_logged_out_session_cookie_is_refused_by_every_replica() {
    let cp = spawn_control_plane(Backend::Postgres, |_| {}).await;
    let other = cp.replica().await;
    let client = no_redirects(&cp);
    let login = client
        .post(format!("{}/dashboard/login", cp.url))
        .header("origin", &cp.url)
        .form(&[("token", cp.admin_token.as_str())])
        .send()
        .await
        .expect("sign in");
    assert_eq!(login.status(), 303);
    let cookie = login.headers()["set-cookie"]
        .to_str()
        .expect("ASCII")
        .split(';')
        .next()
        .expect("name=value")
        .to_owned();
    assert_eq!(dashboard_status(&client, &cp, &cookie).await, 200);
    assert_eq!(dashboard_status(&client, &other, &cookie).await, 200);

    let out = client
        .post(format!("{}/dashboard/logout", cp.url))
        .header("origin", &cp.url)
        .header("cookie", &cookie)
        .send()
        .await
        .expect("sign out");
    assert_eq!(out.status(), 303);

    // The attacker kept a copy of the cookie: it signed in 8 hours' worth before.
    assert_eq!(dashboard_status(&client, &cp, &cookie).await, 303);
    assert_eq!(dashboard_status(&client, &other, &cookie).await, 303);
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

#[tokio::test]
async fn the_data_dir_and_ferry_db_are_private_under_umask_022() {
    ferry_tests::init();
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    let mut child = tokio::process::Command::new("sh")
        .arg("-c")
        .arg("umask 022 && exec \"$0\" serve --data-dir \"$1\" --listen 127.0.0.1:0")
        .arg(bin_path("ferry-control-plane"))
        .arg(&data)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("control plane runs");
    let db = data.join("ferry.db");
    eventually("first start finished", Duration::from_secs(60), || async {
        (data.join("admin-token").exists() && db.with_extension("db-wal").exists()).then_some(())
    })
    .await;
    assert_eq!(mode(&data), 0o700, "data dir");
    for file in [
        "ferry.db",
        "ferry.db-wal",
        "ferry.db-shm",
        "admin-token",
        "master.key",
    ] {
        let path = data.join(file);
        if path.exists() {
            assert_eq!(mode(&path), 0o600, "{file}");
        } else {
            assert!(file.ends_with("-shm"), "{file} missing");
        }
    }
    child.kill().await.expect("stop");
}

#[tokio::test]
async fn an_agent_key_made_readable_by_others_is_restricted_at_the_next_start() {
    let cp = spawn_control_plane(Backend::Sqlite, |_| {}).await;
    cp.create_service("web", json!({})).await;
    let (token, _) = cp.join_token("web", 1, 600).await;
    let mut agent = spawn_agent(&cp, "web", "n1", &token, |_| {}).await;
    eventually("installed", Duration::from_secs(20), || async {
        agent.installed().map(|_| ())
    })
    .await;
    agent.stop().await;
    let key = agent.state_dir.join("identity.key");
    assert_eq!(mode(&key), 0o600);
    assert_eq!(mode(&agent.state_dir), 0o700);
    // The attack: a copy or a chmod leaves the key readable by every local user.
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    std::fs::set_permissions(&agent.state_dir, std::fs::Permissions::from_mode(0o755))
        .expect("chmod");

    let state_dir = agent.state_dir.clone();
    let mut agent = agent.restart(&cp, "web", "n1", &token);
    eventually("key restricted", Duration::from_secs(10), || async {
        (mode(&state_dir.join("identity.key")) == 0o600).then_some(())
    })
    .await;
    assert_eq!(mode(&state_dir), 0o700);
    for file in ["identity.pem", "ca.pem", "agent-state.json"] {
        assert_eq!(mode(&state_dir.join(file)), 0o600, "{file}");
    }
    agent.stop().await;
}
