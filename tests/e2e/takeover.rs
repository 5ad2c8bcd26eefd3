//! Issue 21, parts 1-3, each written as the attack that used to work: a tenant naming
//! its certificates after the control plane, an impostor with a certificate from the
//! node CA, enrolling under an existing node id to take its key, a held poll of a
//! superseded identity, and an old identity evicting the current one.

use ferry_tests::impostor::Impostor;
use ferry_tests::node::{enroll, mtls_client, p256, unseal_ca};
use ferry_tests::{Backend, ControlPlane, spawn_control_plane};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

#[tokio::test]
async fn a_tenant_cannot_name_its_certificates_after_the_control_plane_or_outside_its_service() {
    // Arrange: two tenants; beta's service is beta-api.
    let cp = spawn_control_plane(Backend::Sqlite, |_| {}).await;
    let (alpha, beta) = (cp.tenant("alpha").await, cp.tenant("beta").await);
    assert_eq!(
        beta.post("/v1/services", json!({ "name": "beta-api" }))
            .await
            .status,
        201
    );

    // Act + assert: every name that once made a server certificate for someone else.
    for template in [
        "localhost",
        "*",
        "127.0.0.1",
        "evil.example.com",
        "{node}.beta-api.{trust_domain}",
        "*.{service}.{trust_domain}",
    ] {
        let r = alpha
            .post(
                "/v1/services",
                json!({ "name": "alpha-web", "san_template": template }),
            )
            .await;
        assert_eq!(
            r.assert_problem(422),
            "name-not-allowed",
            "{template}: {}",
            r.body
        );
        assert_eq!(
            alpha.get("/v1/services/alpha-web").await.status,
            404,
            "{template}"
        );
    }

    // The default policy: names under the service's own namespace.
    let ok = alpha
        .post(
            "/v1/services",
            json!({ "name": "alpha-web", "san_template": "{node}.{service}.{trust_domain}" }),
        )
        .await;
    assert_eq!(ok.status, 201, "{}", ok.body);
    let r = alpha
        .patch(
            "/v1/services/alpha-web",
            json!({ "san_template": "localhost" }),
        )
        .await;
    assert_eq!(r.assert_problem(422), "name-not-allowed");
    assert_eq!(
        alpha.get("/v1/services/alpha-web").await.body["san_template"],
        "{node}.{service}.{trust_domain}",
        "a refused update changes nothing"
    );

    // Wider names are the deployment admin's to grant, never the control plane's own.
    let r = alpha
        .patch(
            "/v1/services/alpha-web",
            json!({ "dns_suffixes": ["alpha.example.com"] }),
        )
        .await;
    r.assert_problem(403);
    let r = cp
        .admin()
        .patch(
            "/v1/services/alpha-web",
            json!({ "dns_suffixes": ["localhost"] }),
        )
        .await;
    r.assert_problem(422);
    let r = cp
        .admin()
        .patch(
            "/v1/services/alpha-web",
            json!({ "dns_suffixes": ["alpha.example.com"] }),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = alpha
        .patch(
            "/v1/services/alpha-web",
            json!({ "san_template": "{node}.alpha.example.com" }),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["dns_suffixes"], json!(["alpha.example.com"]));
}

#[tokio::test]
async fn an_impostor_holding_a_node_ca_certificate_for_localhost_gets_no_token() {
    // Arrange: the strongest certificate a tenant could ever hold for the control
    // plane's name: one for localhost, signed by the CA that signs every workload.
    let cp = spawn_control_plane(Backend::Sqlite, |_| {}).await;
    cp.create_service("web", json!({})).await;
    let (token, fingerprint) = cp.join_token("web", 1, 600).await;
    assert_eq!(
        fingerprint, cp.ca_fingerprint,
        "tokens pin the control-plane CA"
    );
    let node_ca = unseal_ca(&cp);
    let (chain, key) = node_ca
        .issue_server_cert(
            &["localhost".to_owned()],
            time::OffsetDateTime::now_utc(),
            time::Duration::hours(1),
        )
        .expect("the node CA signs");
    // It answers the pin fetch with the real (public) control-plane CA.
    let impostor = Impostor::spawn(&chain, &key, &cp.ca_pem).await;

    // Act: an agent with a join token, and ferryctl with the admin token, pointed at it.
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = ferry_tests::agent::agent_config(&cp, "web", "n1", &token, dir.path());
    cfg.server = reqwest::Url::parse(&impostor.url).expect("url");
    let enrolled = ferry_agent::enroll(&cfg).await;
    let ctl = tokio::process::Command::new(ferry_tests::bin_path("ferryctl"))
        .args([
            "--server",
            &impostor.url,
            "--ca-fingerprint",
            &cp.ca_fingerprint,
        ])
        .arg("--token-file")
        .arg(cp.cfg.admin_token_path())
        .args(["service", "list"])
        .env_remove("FERRY_TOKEN")
        .env_remove("FERRY_CA_CERT")
        .output()
        .await
        .expect("ferryctl runs");

    // Assert: both reached it, pinned, and refused its certificate before any secret.
    let seen = impostor.seen();
    assert!(seen.contains("GET /v1/control-plane-ca"), "{seen}");
    assert!(enrolled.is_err(), "the agent enrolled through an impostor");
    assert!(!ctl.status.success(), "ferryctl trusted the impostor");
    let admin_token = std::fs::read_to_string(cp.cfg.admin_token_path()).expect("admin token");
    assert!(
        !seen.contains(&token),
        "the join token reached the impostor"
    );
    assert!(
        !seen.contains(admin_token.trim()),
        "the admin token reached the impostor"
    );
    assert!(
        !seen.contains("/v1/agent/enroll") && !seen.contains("/v1/services"),
        "{seen}"
    );

    // The same agent config enrolls against the real control plane.
    cfg.server = reqwest::Url::parse(&cp.url).expect("url");
    ferry_agent::enroll(&cfg)
        .await
        .expect("enrolls with the real control plane");
}

async fn poll(client: &reqwest::Client, cp: &ControlPlane, since: i64, wait: u64) -> (u16, Value) {
    let r = client
        .get(format!(
            "{}/v1/agent/bundle?since={since}&wait={wait}",
            cp.url
        ))
        .send()
        .await
        .expect("poll");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or_default())
}

async fn first_bundle(client: &reqwest::Client, cp: &ControlPlane) -> Value {
    let (status, body) = poll(client, cp, 0, 20).await;
    assert_eq!(status, 200, "{body}");
    body["bundle"].clone()
}

#[tokio::test]
async fn enrolling_under_an_existing_node_id_never_hands_out_its_key() {
    // Arrange: n1 enrolled and holding its first bundle (central mode: key included).
    let cp = spawn_control_plane(Backend::Postgres, |_| {}).await;
    cp.create_service("web", json!({})).await;
    let (token, _) = cp.join_token("web", 5, 600).await;
    let node_key = p256();
    let enrolled = enroll(&cp, "web", "n1", &token, &node_key).await;
    let node = mtls_client(
        &cp,
        enrolled.body["certificate"].as_str().expect("cert"),
        &node_key,
    );
    let original = first_bundle(&node, &cp).await;
    assert!(
        original["private_key"]
            .as_str()
            .is_some_and(|k| k.contains("PRIVATE KEY"))
    );

    // Act 1: an attacker with an ordinary join token enrolls under n1.
    let attacker_key = p256();
    let before = (cp.db.row_counts(), cp.db.join_token_uses());
    let refused = enroll(&cp, "web", "n1", &token, &attacker_key).await;

    // Assert 1: refused, nothing spent, and the real node is not locked out.
    assert_eq!(refused.assert_problem(409), "conflict");
    assert!(
        refused.body["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("--replace-nodes")
    );
    assert_eq!((cp.db.row_counts(), cp.db.join_token_uses()), before);
    assert_eq!(
        poll(&node, &cp, 0, 0).await.0,
        200,
        "the real node still polls"
    );

    // Act 2: an operator replaces the node with a token that allows it.
    let replacing = cp.replacing_join_token("web").await;
    let replaced = enroll(&cp, "web", "n1", &replacing, &attacker_key).await;
    assert_eq!(replaced.status, 200, "{}", replaced.body);
    let newcomer = mtls_client(
        &cp,
        replaced.body["certificate"].as_str().expect("cert"),
        &attacker_key,
    );

    // Assert 2: the newcomer gets a new key and certificate, the old identity is refused.
    let fresh = first_bundle(&newcomer, &cp).await;
    assert_ne!(
        fresh["private_key"], original["private_key"],
        "the replaced node's key was handed out"
    );
    assert_ne!(fresh["certificate"], original["certificate"]);
    assert_eq!(
        poll(&node, &cp, 0, 0).await.0,
        403,
        "the replaced identity still polls"
    );
    let audit = cp.admin().get("/v1/audit").await;
    assert!(
        audit.body["items"]
            .as_array()
            .expect("items")
            .iter()
            .any(|e| e["action"] == "node.replace" && e["target"] == "web/n1"),
        "{}",
        audit.body
    );
}

#[tokio::test]
async fn a_held_poll_of_a_superseded_identity_is_closed_and_never_served() {
    // Arrange: n1 holds a poll for anything newer than its first bundle.
    let cp = spawn_control_plane(Backend::Postgres, |_| {}).await;
    cp.create_service("web", json!({})).await;
    let (token, _) = cp.join_token("web", 1, 600).await;
    let stolen_key = p256();
    let enrolled = enroll(&cp, "web", "n1", &token, &stolen_key).await;
    let stolen = mtls_client(
        &cp,
        enrolled.body["certificate"].as_str().expect("cert"),
        &stolen_key,
    );
    let v1 = first_bundle(&stolen, &cp).await["version"]
        .as_i64()
        .expect("version");
    let held = tokio::spawn({
        let (client, cp_url) = (stolen.clone(), cp.url.clone());
        async move {
            let r = client
                .get(format!("{cp_url}/v1/agent/bundle?since={v1}&wait=30"))
                .send()
                .await
                .expect("held poll");
            let status = r.status().as_u16();
            (status, r.text().await.unwrap_or_default())
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Act: the operator revokes the stolen identity by replacing the node; the
    // replacement's new bundle (and key) follow at once.
    let started = Instant::now();
    let replacing = cp.replacing_join_token("web").await;
    let new_key = p256();
    let replaced = enroll(&cp, "web", "n1", &replacing, &new_key).await;
    assert_eq!(replaced.status, 200, "{}", replaced.body);
    let (status, body) = held.await.expect("poll task");

    // Assert: the held poll ends at once with a refusal and no bundle in it.
    assert_eq!(status, 403, "{body}");
    assert!(!body.contains("PRIVATE KEY"), "{body}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let newcomer = mtls_client(
        &cp,
        replaced.body["certificate"].as_str().expect("cert"),
        &new_key,
    );
    assert!(
        first_bundle(&newcomer, &cp).await["private_key"]
            .as_str()
            .is_some()
    );
}

#[tokio::test]
async fn one_identity_holds_at_most_two_polls_and_the_newest_win() {
    // Arrange: n1 up to date, so every poll of it is held.
    let cp = spawn_control_plane(Backend::Sqlite, |_| {}).await;
    cp.create_service("web", json!({})).await;
    let (token, _) = cp.join_token("web", 1, 600).await;
    let key = p256();
    let enrolled = enroll(&cp, "web", "n1", &token, &key).await;
    let client = mtls_client(
        &cp,
        enrolled.body["certificate"].as_str().expect("cert"),
        &key,
    );
    let v1 = first_bundle(&client, &cp).await["version"]
        .as_i64()
        .expect("version");

    // Act: the same identity opens 20 held polls, one after another.
    let mut polls = Vec::new();
    for _ in 0..20 {
        let (client, url) = (client.clone(), cp.url.clone());
        polls.push(tokio::spawn(async move {
            let r = client
                .get(format!("{url}/v1/agent/bundle?since={v1}&wait=30"))
                .send()
                .await
                .expect("poll");
            (Instant::now(), r.status().as_u16())
        }));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Assert: the 18 oldest were ended with 409 at once; the newest 2 are still held.
    let started = Instant::now();
    let (ended, held) = polls.split_at(18);
    for p in ended {
        assert!(p.is_finished(), "an older poll is still held");
    }
    for p in held {
        assert!(!p.is_finished(), "one of the two newest polls was ended");
    }
    for p in polls.into_iter().take(18) {
        assert_eq!(p.await.expect("poll task").1, 409);
    }
    assert!(started.elapsed() < Duration::from_secs(1));
}
