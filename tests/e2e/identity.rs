//! Enrollment and the mTLS identity: join-token limits, refused client certificates,
//! revocation, renewal.

use ferry_shared::{KeyType, NodeId, ServiceName, SpiffeId};
use ferry_tests::node::{self, enroll, mtls_client, p256};
use ferry_tests::{Backend, ControlPlane, spawn_control_plane};
use serde_json::json;

async fn whoami(
    cp: &ControlPlane,
    client: &reqwest::Client,
) -> Result<(u16, serde_json::Value), reqwest::Error> {
    let resp = client
        .get(format!("{}/v1/agent/whoami", cp.url))
        .send()
        .await?;
    let status = resp.status().as_u16();
    Ok((status, resp.json().await.unwrap_or_default()))
}

async fn join_token_uses_and_expiry_are_enforced(backend: Backend) {
    let cp = spawn_control_plane(backend, |_| {}).await;
    cp.create_service("web", json!({})).await;
    let (token, _) = cp.join_token("web", 2, 3600).await;

    assert_eq!(enroll(&cp, "web", "n1", &token, &p256()).await.status, 200);
    assert_eq!(enroll(&cp, "web", "n2", &token, &p256()).await.status, 200);
    let before = cp.db.row_counts();
    let slug = enroll(&cp, "web", "n3", &token, &p256())
        .await
        .assert_problem(403);
    assert_eq!(slug, "forbidden");
    assert_eq!(
        cp.db.row_counts(),
        before,
        "a used-up token changes nothing"
    );

    let (short, _) = cp.join_token("web", 5, 1).await;
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let before = (cp.db.row_counts(), cp.db.join_token_uses());
    enroll(&cp, "web", "n4", &short, &p256())
        .await
        .assert_problem(403);
    assert_eq!(
        (cp.db.row_counts(), cp.db.join_token_uses()),
        before,
        "an expired token changes nothing"
    );

    enroll(&cp, "web", "n5", "fyj_not-a-real-token", &p256())
        .await
        .assert_problem(401);
    let (other_svc_token, _) = {
        cp.create_service("api", json!({})).await;
        cp.join_token("api", 1, 3600).await
    };
    enroll(&cp, "web", "n6", &other_svc_token, &p256())
        .await
        .assert_problem(401);
}

#[tokio::test]
async fn join_token_uses_and_expiry_are_enforced_sqlite() {
    join_token_uses_and_expiry_are_enforced(Backend::Sqlite).await;
}

#[tokio::test]
async fn join_token_uses_and_expiry_are_enforced_postgres() {
    join_token_uses_and_expiry_are_enforced(Backend::Postgres).await;
}

#[tokio::test]
async fn agent_routes_refuse_foreign_missing_expired_and_revoked_certificates() {
    let cp = spawn_control_plane(Backend::Postgres, |_| {}).await;
    cp.create_service("web", json!({})).await;
    let (token, _) = cp.join_token("web", 5, 3600).await;
    let key = p256();
    let enrolled = enroll(&cp, "web", "n1", &token, &key).await;
    assert_eq!(enrolled.status, 200, "{}", enrolled.body);
    let cert = enrolled.body["certificate"].as_str().expect("certificate");

    // The valid identity works and is the one in the certificate, not in the request.
    let (status, me) = whoami(&cp, &mtls_client(&cp, cert, &key))
        .await
        .expect("valid cert accepted");
    assert_eq!(status, 200);
    assert_eq!(me["spiffe_id"], "spiffe://ferry.local/service/web/node/n1");

    // No client certificate: the handshake succeeds, the route says 401.
    let anonymous = cp.api(None).get("/v1/agent/whoami").await;
    anonymous.assert_problem(401);

    // A certificate from another CA naming the same identity: refused in the handshake.
    let (foreign_ca, _) = ferry_control_plane::ca::Ca::generate(
        &cp.cfg.trust_domain,
        time::OffsetDateTime::now_utc(),
    )
    .expect("foreign CA");
    let id = SpiffeId {
        trust_domain: cp.cfg.trust_domain.clone(),
        service: ServiceName::parse("web").expect("name"),
        node: NodeId::parse("n1").expect("id"),
    };
    let now = time::OffsetDateTime::now_utc();
    let forged = foreign_ca.issue_identity(
        &node::csr(&key, "n1"),
        &id,
        KeyType::EcdsaP256,
        now,
        time::Duration::hours(1),
    );
    let forged = forged.expect("foreign CA signs");
    assert!(
        whoami(&cp, &mtls_client(&cp, &forged.pem, &key))
            .await
            .is_err(),
        "foreign CA accepted"
    );

    // An expired certificate from the real CA: refused in the handshake.
    let real_ca = node::unseal_ca(&cp);
    let expired = real_ca
        .issue_identity(
            &node::csr(&key, "n1"),
            &id,
            KeyType::EcdsaP256,
            now - time::Duration::days(2),
            time::Duration::hours(1),
        )
        .expect("signs");
    assert!(
        whoami(&cp, &mtls_client(&cp, &expired.pem, &key))
            .await
            .is_err(),
        "expired certificate accepted"
    );

    // Revocation: the still-valid certificate of a deleted node is refused.
    assert_eq!(
        cp.admin().delete("/v1/services/web/nodes/n1").await.status,
        204
    );
    let (status, body) = whoami(&cp, &mtls_client(&cp, cert, &key))
        .await
        .expect("handshake still succeeds");
    assert_eq!(status, 403, "{body}");

    // Re-enrolling needs a join token, is audited, and supersedes the old certificate.
    let again = enroll(&cp, "web", "n1", &token, &key).await;
    assert_eq!(again.status, 200);
    let new_cert = again.body["certificate"].as_str().expect("certificate");
    assert_eq!(
        whoami(&cp, &mtls_client(&cp, new_cert, &key))
            .await
            .expect("new cert")
            .0,
        200
    );
    // The same key coming back (its certificate lost): a re-enrollment, and the
    // certificate it had before stops working.
    let back = enroll(&cp, "web", "n1", &token, &key).await;
    assert_eq!(back.status, 200, "{}", back.body);
    let back_cert = back.body["certificate"].as_str().expect("certificate");
    let (status, _) = whoami(&cp, &mtls_client(&cp, new_cert, &key))
        .await
        .expect("handshake");
    assert_eq!(
        status, 403,
        "a re-enrollment supersedes the earlier identity"
    );

    // Another key under the same node id needs a token that allows replacing nodes.
    let second_key = p256();
    let refused = enroll(&cp, "web", "n1", &token, &second_key).await;
    assert_eq!(refused.assert_problem(409), "conflict");
    let replacing = cp.replacing_join_token("web").await;
    let third = enroll(&cp, "web", "n1", &replacing, &second_key).await;
    assert_eq!(third.status, 200, "{}", third.body);
    let (status, _) = whoami(&cp, &mtls_client(&cp, back_cert, &key))
        .await
        .expect("handshake");
    assert_eq!(
        status, 403,
        "a replacement supersedes the replaced identity"
    );
    let audit = cp.admin().get("/v1/audit").await;
    let actions: Vec<&str> = audit.body["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|e| e["action"].as_str())
        .collect();
    assert!(actions.contains(&"node.reenroll"), "{actions:?}");
    assert!(actions.contains(&"node.replace"), "{actions:?}");
    assert!(actions.contains(&"node.revoke"), "{actions:?}");
}

#[tokio::test]
async fn renewal_over_mtls_keeps_the_presented_certificate_until_the_next_renewal() {
    let cp = spawn_control_plane(Backend::Sqlite, |_| {}).await;
    cp.create_service("web", json!({})).await;
    let (token, _) = cp.join_token("web", 1, 3600).await;
    let key = p256();
    let first = enroll(&cp, "web", "n1", &token, &key).await.body["certificate"]
        .as_str()
        .expect("cert")
        .to_owned();

    let renew = |cert: String| {
        let client = mtls_client(&cp, &cert, &key);
        let url = format!("{}/v1/agent/renew", cp.url);
        let body = json!({ "csr": node::csr(&key, "n1") });
        async move {
            client
                .post(url)
                .json(&body)
                .send()
                .await
                .expect("renew request")
        }
    };
    let r = renew(first.clone()).await;
    assert_eq!(r.status(), 200);
    let second: serde_json::Value = r.json().await.expect("json");
    let second = second["certificate"].as_str().expect("cert").to_owned();
    // The answer may have been lost: the first certificate can still renew once more.
    let retry = renew(first.clone()).await;
    assert_eq!(retry.status(), 200);
    let third: serde_json::Value = retry.json().await.expect("json");
    let third = third["certificate"].as_str().expect("cert").to_owned();
    // That renewal superseded `second`, whose serial is now neither current nor previous.
    assert_eq!(renew(second).await.status(), 403);
    // Once only: the old certificate cannot evict the current one again and again.
    assert_eq!(renew(first.clone()).await.status(), 403);
    let (status, _) = whoami(&cp, &mtls_client(&cp, &third, &key))
        .await
        .expect("handshake");
    assert_eq!(
        status, 200,
        "the retried renewal's certificate stays current"
    );
    // A renewal CSR of the wrong key type is refused and changes nothing.
    let before = cp.db.row_counts();
    let client = mtls_client(&cp, &third, &key);
    let r = client
        .post(format!("{}/v1/agent/renew", cp.url))
        .json(&json!({ "csr": node::csr(&node::ed25519(), "n1") }))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 422);
    assert_eq!(cp.db.row_counts(), before);
}
