//! The customer/admin API: services, tenants, isolation, bad input, restarts.

use ferry_tests::{Backend, spawn_control_plane};
use serde_json::json;

async fn services_crud_with_pagination(backend: Backend) {
    let cp = spawn_control_plane(backend, |_| {}).await;
    for i in 0..5 {
        cp.create_service(&format!("svc-{i}"), json!({ "cert_ttl_seconds": 600 }))
            .await;
    }
    let api = cp.admin();

    let first = api.get("/v1/services?limit=2").await;
    assert_eq!(first.status, 200);
    let names: Vec<_> = first.body["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|s| s["name"].clone())
        .collect();
    assert_eq!(names, vec![json!("svc-0"), json!("svc-1")]);
    let cursor = first.body["next_cursor"].as_str().expect("more pages");
    let rest = api
        .get(&format!("/v1/services?limit=10&cursor={cursor}"))
        .await;
    assert_eq!(rest.body["items"].as_array().expect("items").len(), 3);
    assert!(rest.body["next_cursor"].is_null());

    let svc = api.get("/v1/services/svc-0").await;
    assert_eq!(
        svc.body["renew_before_seconds"], 200,
        "default renew_before is a third of the TTL"
    );
    let updated = api
        .patch("/v1/services/svc-0", json!({ "renew_before_seconds": 300 }))
        .await;
    assert_eq!(updated.status, 200, "{}", updated.body);
    assert_eq!(updated.body["renew_before_seconds"], 300);

    assert_eq!(api.delete("/v1/services/svc-0").await.status, 204);
    api.get("/v1/services/svc-0").await.assert_problem(404);
}

#[tokio::test]
async fn services_crud_with_pagination_sqlite() {
    services_crud_with_pagination(Backend::Sqlite).await;
}

#[tokio::test]
async fn services_crud_with_pagination_postgres() {
    services_crud_with_pagination(Backend::Postgres).await;
}

async fn tenants_never_see_each_other(backend: Backend) {
    let cp = spawn_control_plane(backend, |_| {}).await;
    let admin = cp.admin();
    for t in ["alpha", "beta"] {
        assert_eq!(
            admin.post("/v1/tenants", json!({ "name": t })).await.status,
            201
        );
    }
    let token = |t: &'static str| {
        let admin = cp.admin();
        async move {
            admin
                .post(&format!("/v1/tenants/{t}/tokens"), json!({}))
                .await
                .body["token"]
                .as_str()
                .expect("token")
                .to_owned()
        }
    };
    let (a, b) = (
        cp.api(Some(&token("alpha").await)),
        cp.api(Some(&token("beta").await)),
    );

    let created = a.post("/v1/services", json!({ "name": "alpha-pay" })).await;
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(created.body["tenant"], "alpha");
    let before = cp.db.row_counts();

    b.get("/v1/services/alpha-pay").await.assert_problem(404);
    b.patch("/v1/services/alpha-pay", json!({ "cert_ttl_seconds": 120 }))
        .await
        .assert_problem(404);
    b.delete("/v1/services/alpha-pay").await.assert_problem(404);
    b.post("/v1/services/alpha-pay/join-tokens", json!({}))
        .await
        .assert_problem(404);
    b.get("/v1/services/alpha-pay/nodes")
        .await
        .assert_problem(404);
    b.post("/v1/services", json!({ "name": "x", "tenant": "alpha" }))
        .await
        .assert_problem(403);
    b.post("/v1/tenants", json!({ "name": "gamma" }))
        .await
        .assert_problem(403);
    b.get("/v1/audit").await.assert_problem(403);
    assert_eq!(
        b.get("/v1/services").await.body["items"],
        json!([]),
        "beta lists nothing of alpha's"
    );
    assert_eq!(cp.db.row_counts(), before, "refused calls change nothing");

    assert_eq!(
        a.get("/v1/services/alpha-pay").await.body["cert_ttl_seconds"],
        3600,
        "alpha's service is untouched"
    );
    assert_eq!(
        admin.get("/v1/services/alpha-pay").await.status,
        200,
        "admins see every tenant"
    );
}

#[tokio::test]
async fn tenants_never_see_each_other_sqlite() {
    tenants_never_see_each_other(Backend::Sqlite).await;
}

#[tokio::test]
async fn tenants_never_see_each_other_postgres() {
    tenants_never_see_each_other(Backend::Postgres).await;
}

async fn bad_input_is_a_problem_and_changes_nothing(backend: Backend) {
    use ferry_tests::node::{csr, ed25519, enroll, p256};
    let cp = spawn_control_plane(backend, |_| {}).await;
    cp.create_service("web", json!({})).await;
    let (token, _) = cp.join_token("web", 3, 3600).await;
    let admin = cp.admin();
    let before = (cp.db.row_counts(), cp.db.join_token_uses());

    let cases: Vec<(&str, ferry_tests::control_plane::Resp, u16)> = vec![
        ("invalid service name", admin.post("/v1/services", json!({ "name": "Not_A_Label" })).await, 422),
        ("unknown field", admin.post("/v1/services", json!({ "name": "ok", "tll": 5 })).await, 422),
        ("ttl out of range", admin.post("/v1/services", json!({ "name": "ok", "cert_ttl_seconds": 1 })).await, 422),
        ("renew_before above ttl", admin.patch("/v1/services/web", json!({ "renew_before_seconds": 99999 })).await, 422),
        ("malformed JSON", admin.post_raw("/v1/services", b"{\"name\":".to_vec()).await, 400),
        ("oversized body", admin.post_raw("/v1/services", vec![b' '; 70 * 1024]).await, 413),
        ("invalid name in path", admin.get("/v1/services/..%2Fetc").await, 400),
        ("bad cursor", admin.get("/v1/services?cursor=%%%").await, 400),
        ("limit too large", admin.get("/v1/services?limit=100000").await, 400),
        ("join token max_uses 0", admin.post("/v1/services/web/join-tokens", json!({ "max_uses": 0 })).await, 422),
        ("unknown tenant token", admin.post("/v1/tenants/nobody/tokens", json!({})).await, 404),
        ("no token", cp.api(None).get("/v1/services").await, 401),
        ("wrong token", cp.api(Some("fya_guess")).get("/v1/services").await, 401),
        ("malformed CSR", cp.api(None).post("/v1/agent/enroll", json!({ "service": "web", "node_id": "n1", "join_token": token, "csr": "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n" })).await, 400),
        ("CSR of a disallowed key type", enroll(&cp, "web", "n1", &token, &ed25519()).await, 422),
        ("invalid node id", cp.api(None).post("/v1/agent/enroll", json!({ "service": "web", "node_id": "../n1", "join_token": token, "csr": csr(&p256(), "n1") })).await, 422),
        ("enroll into an unknown service", enroll(&cp, "nope", "n1", &token, &p256()).await, 401),
    ];
    for (what, resp, status) in &cases {
        assert_eq!(resp.status, *status, "{what}: {}", resp.body);
        resp.assert_problem(*status);
    }

    // A CSR whose signature does not verify.
    let mut tampered = csr(&p256(), "n1").into_bytes();
    let pos = tampered.len() - 40;
    tampered[pos] = if tampered[pos] == b'A' { b'B' } else { b'A' };
    let r = cp
        .api(None)
        .post("/v1/agent/enroll", json!({ "service": "web", "node_id": "n1", "join_token": token, "csr": String::from_utf8(tampered).expect("ascii") }))
        .await;
    r.assert_problem(400);

    assert_eq!(
        (cp.db.row_counts(), cp.db.join_token_uses()),
        before,
        "no refused request changed the database"
    );
}

#[tokio::test]
async fn bad_input_is_a_problem_and_changes_nothing_sqlite() {
    bad_input_is_a_problem_and_changes_nothing(Backend::Sqlite).await;
}

#[tokio::test]
async fn bad_input_is_a_problem_and_changes_nothing_postgres() {
    bad_input_is_a_problem_and_changes_nothing(Backend::Postgres).await;
}

async fn restart_keeps_ca_services_tokens_and_nodes(backend: Backend) {
    use ferry_tests::node::{enroll, p256};
    let mut cp = spawn_control_plane(backend, |_| {}).await;
    cp.create_service("web", json!({ "cert_ttl_seconds": 900 }))
        .await;
    let (token, fingerprint) = cp.join_token("web", 2, 3600).await;
    assert_eq!(enroll(&cp, "web", "n1", &token, &p256()).await.status, 200);

    // The CA key is sealed: the raw row holds no PEM and does not parse as a key.
    let (_, sealed, key_id) = cp.db.raw_ca_row();
    assert!(
        !sealed.windows(5).any(|w| w == b"BEGIN"),
        "CA key stored in clear"
    );
    assert!(
        rcgen::KeyPair::try_from(sealed.as_slice()).is_err(),
        "CA key stored as plain DER"
    );
    assert_eq!(key_id.len(), 16);

    cp.restart().await;
    let bundle = cp.api(None).get("/v1/trust-bundle").await;
    assert_eq!(bundle.status, 200);
    let trust = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(cp.ca_pem.as_bytes()).expect("pem")])
        .build()
        .expect("client");
    let pem = trust
        .get(format!("{}/v1/trust-bundle", cp.url))
        .send()
        .await
        .expect("bundle")
        .text()
        .await
        .expect("text");
    assert_eq!(pem, cp.trust_pem, "same root after restart");
    let cp_ca = trust
        .get(format!("{}/v1/control-plane-ca", cp.url))
        .send()
        .await
        .expect("control-plane CA")
        .text()
        .await
        .expect("text");
    assert_eq!(cp_ca, cp.ca_pem, "same control-plane CA after restart");
    assert_ne!(
        cp.ca_pem, cp.trust_pem,
        "the control plane has a CA of its own"
    );
    assert_eq!(
        cp.admin().get("/v1/services/web").await.body["cert_ttl_seconds"],
        900
    );
    assert_eq!(
        cp.admin().get("/v1/services/web/nodes/n1").await.status,
        200
    );
    assert_eq!(
        enroll(&cp, "web", "n2", &token, &p256()).await.status,
        200,
        "the join token survives, with one use left"
    );
    enroll(&cp, "web", "n3", &token, &p256())
        .await
        .assert_problem(403);
    let fresh = cp
        .admin()
        .post("/v1/services/web/join-tokens", json!({}))
        .await;
    assert_eq!(fresh.body["ca_fingerprint"], fingerprint.as_str());

    // A different master key cannot open the CA: startup fails with one clear line and
    // the stored CA stays the only one.
    cp.stop().await;
    let mut wrong = cp.cfg.clone();
    wrong.master_key = Some(ferry_control_plane::config::Secret::new("11".repeat(32)));
    let err = ferry_control_plane::startup::App::build(wrong)
        .await
        .err()
        .expect("refuses to start");
    let line = format!("{err:#}");
    assert!(line.contains("cannot open the stored root CA"), "{line}");
    assert!(!line.contains('\n'), "one line: {line}");
    let (cert_after, sealed_after, _) = cp.db.raw_ca_row();
    assert_eq!((cert_after, sealed_after), (cp.trust_pem.clone(), sealed));
}

#[tokio::test]
async fn restart_keeps_ca_services_tokens_and_nodes_sqlite() {
    restart_keeps_ca_services_tokens_and_nodes(Backend::Sqlite).await;
}

#[tokio::test]
async fn restart_keeps_ca_services_tokens_and_nodes_postgres() {
    restart_keeps_ca_services_tokens_and_nodes(Backend::Postgres).await;
}
