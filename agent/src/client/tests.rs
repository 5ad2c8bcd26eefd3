use super::*;
use crate::testkit::{Response, TestCa, TestServer};
use time::macros::datetime;

#[test]
fn the_pinned_certificate_is_picked_out_of_the_bundle() {
    let (ca, other) = (TestCa::new("ca"), TestCa::new("other"));
    let bundle = format!("{}{}", other.cert_pem, ca.cert_pem);
    let picked = select_pinned(&bundle, &ca.fingerprint()).expect("pin matches");
    assert_eq!(picked, ca.der);
    assert_eq!(
        pem_encode(&picked).trim(),
        ca.cert_pem.trim(),
        "re-encoded PEM is standard"
    );
    let upper = format!("sha256:{}", ca.fingerprint()[7..].to_uppercase());
    assert!(
        select_pinned(&bundle, &upper).is_ok(),
        "pins compare case-insensitively"
    );
}

#[test]
fn a_bundle_without_the_pinned_certificate_is_refused() {
    let (ca, other) = (TestCa::new("ca"), TestCa::new("other"));
    let err = select_pinned(&other.cert_pem, &ca.fingerprint()).expect_err("no match");
    assert_eq!(
        err.to_string(),
        format!(
            "CA fingerprint mismatch: expected {}, server presented {}",
            ca.fingerprint(),
            other.fingerprint()
        )
    );
    assert!(matches!(
        select_pinned("not pem", &ca.fingerprint()),
        Err(ClientError::BadBundle(_))
    ));
}

#[test]
fn clock_skew_is_measured_against_the_middle_of_the_round_trip() {
    let sent = datetime!(2026-01-01 00:00:00 UTC);
    let received = datetime!(2026-01-01 00:00:02 UTC);
    assert_eq!(
        clock_skew_ms(datetime!(2026-01-01 00:00:01 UTC), sent, received),
        0
    );
    assert_eq!(
        clock_skew_ms(datetime!(2026-01-01 00:00:31 UTC), sent, received),
        30_000
    );
    assert_eq!(
        clock_skew_ms(datetime!(2025-12-31 23:59:59.5 UTC), sent, received),
        -1_500
    );
}

#[test]
fn error_bodies_become_problems() {
    let body = br#"{"type":"https://ferry.dev/problems/invalid-join-token","title":"Invalid join token","status":403,"detail":"expired"}"#;
    let p = problem_from(StatusCode::FORBIDDEN, body);
    assert_eq!(p.to_string(), "Invalid join token (403): expired");
    let p = problem_from(StatusCode::BAD_GATEWAY, b"<html>\n upstream\n down </html>");
    assert_eq!(
        p.to_string(),
        "Bad Gateway (502): <html> upstream down </html>"
    );
    let p = problem_from(StatusCode::SERVICE_UNAVAILABLE, b"");
    assert_eq!(p.to_string(), "Service Unavailable (503)");
    let p = problem_from(StatusCode::BAD_GATEWAY, "é".repeat(300).as_bytes());
    assert!(p.detail.expect("detail").ends_with("..."));
}

#[tokio::test]
async fn the_trust_bundle_is_fetched_unverified_and_accepted_only_with_the_pin() {
    let (ca, other) = (TestCa::new("ca"), TestCa::new("other"));
    let bundle = format!("{}{}", other.cert_pem, ca.cert_pem);
    let server = TestServer::spawn(&ca, move |_| Response::text(200, &bundle)).await;

    let pem = fetch_trust_bundle_pinned(&server.url, &ca.fingerprint())
        .await
        .expect("pinned");
    let certs = pem_certificates(&pem, "pinned").expect("pem");
    assert_eq!(certs, vec![ca.der.clone()], "only the pinned CA is kept");
    assert_eq!(server.paths(), [routes::CONTROL_PLANE_CA]);

    let third = TestCa::new("third");
    let err = fetch_trust_bundle_pinned(&server.url, &third.fingerprint())
        .await
        .expect_err("mismatch");
    assert!(
        err.to_string()
            .starts_with("CA fingerprint mismatch: expected sha256:"),
        "{err}"
    );
}

#[tokio::test]
async fn a_control_plane_without_its_own_ca_route_is_pinned_through_the_trust_bundle() {
    let ca = TestCa::new("ca");
    let pem = ca.cert_pem.clone();
    let server = TestServer::spawn(&ca, move |r| {
        if r.path == routes::CONTROL_PLANE_CA {
            Response::problem(404, "Not Found", "no such route")
        } else {
            Response::text(200, &pem)
        }
    })
    .await;

    let got = fetch_trust_bundle_pinned(&server.url, &ca.fingerprint())
        .await
        .expect("pinned through the older route");

    assert_eq!(
        pem_certificates(&got, "pinned").expect("pem"),
        vec![ca.der.clone()]
    );
    assert_eq!(
        server.paths(),
        [routes::CONTROL_PLANE_CA, routes::TRUST_BUNDLE]
    );
}

#[tokio::test]
async fn a_client_trusts_only_its_own_ca() {
    let (ca, other) = (TestCa::new("ca"), TestCa::new("other"));
    let server = TestServer::spawn(&ca, |_| Response::text(200, "{}")).await;
    let client = Client::anonymous(&server.url, &other.cert_pem).expect("client");
    let err = client
        .whoami()
        .await
        .expect_err("server cert is from another CA");
    assert!(matches!(err, ClientError::Transport { .. }), "{err}");
    assert!(server.paths().is_empty(), "no request got through");
}

#[tokio::test]
async fn refusals_carry_the_servers_problem() {
    let ca = TestCa::new("ca");
    let server = TestServer::spawn(&ca, |_| {
        Response::problem(
            403,
            "Invalid join token",
            "the token expired or was used up",
        )
    })
    .await;
    let client = Client::anonymous(&server.url, &ca.cert_pem).expect("client");
    let req = EnrollRequest {
        service: "web".parse().expect("valid"),
        node_id: "n-1".parse().expect("valid"),
        join_token: "tok".to_owned(),
        csr: "csr".to_owned(),
    };
    let err = client.enroll(&req).await.expect_err("refused");
    assert_eq!(err.status(), Some(403));
    assert_eq!(
        err.to_string(),
        "server refused enrollment: Invalid join token (403): the token expired or was used up"
    );
    let seen = server.requests.lock().expect("lock")[0].clone();
    assert_eq!(
        (seen.method.as_str(), seen.path.as_str()),
        ("POST", routes::AGENT_ENROLL)
    );
    assert!(
        seen.client_cert.is_none(),
        "enrollment sends no client certificate"
    );
}
