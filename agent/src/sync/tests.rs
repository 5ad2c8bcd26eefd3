use super::*;
use crate::config::{JoinTokenSource, RetryPolicy, Secret};
use crate::state::{CA_FILE, KEY_FILE, STATE_FILE};
use crate::testkit::{Request, Response, TestCa, TestServer};
use ferry_shared::KeyType;
use ferry_shared::api::{RenewRequest, WhoAmI, routes};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration as StdDuration;
use tokio::sync::oneshot;

const TOKEN: &str = "good-token";

/// A control plane that enrolls with [`TOKEN`], renews (unless `revoked`), answers whoami,
/// and issues certificates living `lifetime`.
fn control_plane(
    ca: Arc<TestCa>,
    lifetime: Duration,
    revoked: Arc<AtomicBool>,
) -> impl Fn(&Request) -> Response {
    move |req: &Request| {
        let issue = |csr: &str, spiffe: String| {
            let certificate = ca.sign_csr(csr, &spiffe, lifetime);
            let not_after = CertInfo::from_pem(&certificate, "issued")
                .expect("parses")
                .not_after;
            let ca_certificates = ca.cert_pem.clone();
            let server_time = OffsetDateTime::now_utc();
            Response::json(
                200,
                &IdentityIssued {
                    spiffe_id: spiffe,
                    certificate,
                    ca_certificates,
                    not_after,
                    server_time,
                },
            )
        };
        let peer = || {
            let der = req.client_cert.as_ref()?;
            CertInfo::from_der(der, "peer").ok()?.spiffe_uri
        };
        match (req.method.as_str(), req.path.as_str()) {
            ("GET", routes::CONTROL_PLANE_CA) => Response::text(200, &ca.cert_pem),
            ("POST", routes::AGENT_ENROLL) => {
                let body: EnrollRequest = serde_json::from_slice(&req.body).expect("enroll body");
                if body.join_token != TOKEN {
                    return Response::problem(
                        403,
                        "Invalid join token",
                        "unknown, expired or used up",
                    );
                }
                issue(
                    &body.csr,
                    format!(
                        "spiffe://ferry.local/service/{}/node/{}",
                        body.service, body.node_id
                    ),
                )
            }
            ("POST", routes::AGENT_RENEW) => match peer() {
                Some(_) if revoked.load(Ordering::SeqCst) => {
                    Response::problem(403, "Node revoked", "deleted")
                }
                Some(spiffe) => {
                    let body: RenewRequest = serde_json::from_slice(&req.body).expect("renew body");
                    issue(&body.csr, spiffe)
                }
                None => Response::problem(401, "Client certificate required", "mTLS"),
            },
            ("GET", routes::AGENT_WHOAMI) => match peer() {
                Some(spiffe) => {
                    let id = SpiffeId::parse(&spiffe).expect("spiffe");
                    let server_time = OffsetDateTime::now_utc();
                    Response::json(
                        200,
                        &WhoAmI {
                            spiffe_id: spiffe,
                            service: id.service,
                            node_id: id.node,
                            server_time,
                        },
                    )
                }
                None => Response::problem(401, "Client certificate required", "mTLS"),
            },
            _ => Response::problem(404, "Not found", &req.path),
        }
    }
}

async fn spawn(lifetime: Duration) -> (Arc<TestCa>, TestServer, Arc<AtomicBool>) {
    let ca = Arc::new(TestCa::new("ferry test ca"));
    let revoked = Arc::new(AtomicBool::new(false));
    let server = TestServer::spawn(&ca, control_plane(ca.clone(), lifetime, revoked.clone())).await;
    (ca, server, revoked)
}

fn config(server: &TestServer, ca: &TestCa, state_dir: &Path) -> AgentConfig {
    let mut cfg = AgentConfig::new(
        server.url.clone(),
        "web".parse().expect("valid"),
        "n-1".parse().expect("valid"),
        state_dir.to_owned(),
    );
    cfg.join_token = Some(JoinTokenSource::Inline(Secret::new(TOKEN)));
    cfg.ca = Some(CaPin::Fingerprint(ca.fingerprint()));
    cfg.retry = RetryPolicy {
        base: StdDuration::from_millis(20),
        cap: StdDuration::from_millis(300),
    };
    cfg
}

fn count(server: &TestServer, path: &str) -> usize {
    server.paths().iter().filter(|p| *p == path).count()
}

async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    for _ in 0..300 {
        if check() {
            return;
        }
        tokio::time::sleep(StdDuration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test]
async fn enroll_pins_the_ca_and_stores_a_private_identity() {
    let (ca, server, _) = spawn(Duration::hours(1)).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(&server, &ca, dir.path());

    let enrolled = enroll(&cfg).await.expect("enrolled");

    assert_eq!(
        enrolled.spiffe_id.to_string(),
        "spiffe://ferry.local/service/web/node/n-1"
    );
    assert_eq!(
        server.paths(),
        [routes::CONTROL_PLANE_CA, routes::AGENT_ENROLL]
    );
    let sent = server.requests.lock().expect("lock")[1].clone();
    let body: EnrollRequest = serde_json::from_slice(&sent.body).expect("json");
    assert_eq!(body.join_token, TOKEN);
    let csr = rcgen::CertificateSigningRequestParams::from_pem(&body.csr).expect("csr");
    let cn = csr
        .params
        .distinguished_name
        .get(&rcgen::DnType::CommonName);
    assert!(
        matches!(cn, Some(rcgen::DnValue::Utf8String(s)) if s == "n-1"),
        "{cn:?}"
    );

    let mode = std::fs::metadata(dir.path().join(KEY_FILE))
        .expect("key")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    assert_eq!(
        std::fs::read_to_string(dir.path().join(CA_FILE)).expect("ca"),
        ca.cert_pem
    );
    let saved: AgentState =
        serde_json::from_slice(&std::fs::read(dir.path().join(STATE_FILE)).expect("state"))
            .expect("json");
    assert_eq!(saved.spiffe_id, enrolled.spiffe_id.to_string());
    assert_eq!(saved.server, server.url.as_str().trim_end_matches('/'));
    assert!(saved.last_contact.is_some());
    let status = crate::status(dir.path()).expect("status");
    assert!(
        status.valid && status.seconds_left.is_some_and(|s| s > 3000),
        "{status:?}"
    );
}

#[tokio::test]
async fn a_refused_join_token_ends_the_run_with_the_servers_reason() {
    let (ca, server, _) = spawn(Duration::hours(1)).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(&server, &ca, dir.path());
    cfg.join_token = Some(JoinTokenSource::Inline(Secret::new("stale-token")));

    let run = tokio::time::timeout(StdDuration::from_secs(20), run(cfg, std::future::pending()));
    let err = run
        .await
        .expect("fatal errors end the run")
        .expect_err("refused");
    assert_eq!(
        err.to_string(),
        "server refused enrollment: Invalid join token (403): unknown, expired or used up"
    );
    assert_eq!(count(&server, routes::AGENT_ENROLL), 1, "not retried");
    assert!(!dir.path().join(KEY_FILE).exists());
}

#[tokio::test]
async fn run_without_identity_or_join_token_says_what_to_do() {
    let (ca, server, _) = spawn(Duration::hours(1)).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let ca_file = dir.path().join("bootstrap-ca.pem");
    std::fs::write(&ca_file, &ca.cert_pem).expect("write");
    let mut cfg = config(&server, &ca, &dir.path().join("state"));
    cfg.join_token = None;
    cfg.ca = Some(CaPin::File(ca_file));
    let err = run(cfg, std::future::pending())
        .await
        .expect_err("cannot enroll");
    assert!(matches!(err, AgentError::NoJoinToken { .. }));
    assert!(
        err.to_string()
            .contains("--join-token, FERRY_JOIN_TOKEN or join_token_file"),
        "{err}"
    );
    assert!(server.paths().is_empty());
}

#[tokio::test]
async fn run_renews_with_a_fresh_key_before_expiry_and_stops_on_shutdown() {
    let (ca, server, _) = spawn(Duration::seconds(3)).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(&server, &ca, dir.path());
    cfg.key_type = KeyType::Ed25519;
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(run(cfg, async move {
        let _ = stopped.await;
    }));

    let key_file = dir.path().join(KEY_FILE);
    eventually("enrollment", || key_file.exists()).await;
    let first_key = std::fs::read_to_string(&key_file).expect("key");
    eventually("two renewals", || count(&server, routes::AGENT_RENEW) >= 2).await;

    let renewals: Vec<Request> = server
        .requests
        .lock()
        .expect("lock")
        .iter()
        .filter(|r| r.path == routes::AGENT_RENEW)
        .cloned()
        .collect();
    for r in &renewals {
        let der = r.client_cert.as_ref().expect("renewal uses mTLS");
        let peer = CertInfo::from_der(der, "peer").expect("cert");
        assert_eq!(
            peer.spiffe_uri.as_deref(),
            Some("spiffe://ferry.local/service/web/node/n-1")
        );
    }
    assert_ne!(
        renewals[0].client_cert, renewals[1].client_cert,
        "client rebuilt with the renewed cert"
    );
    assert_ne!(
        std::fs::read_to_string(&key_file).expect("key"),
        first_key,
        "key rotated"
    );
    assert_eq!(
        std::fs::metadata(&key_file)
            .expect("key")
            .permissions()
            .mode()
            & 0o777,
        0o600
    );

    stop.send(()).expect("agent still running");
    let res = tokio::time::timeout(StdDuration::from_secs(5), task)
        .await
        .expect("stops promptly");
    res.expect("no panic").expect("clean shutdown");
}

#[tokio::test]
async fn a_revoked_node_keeps_running_and_retrying() {
    let (ca, server, revoked) = spawn(Duration::seconds(3)).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(&server, &ca, dir.path());
    enroll(&cfg).await.expect("enrolled");
    revoked.store(true, Ordering::SeqCst);
    cfg.join_token = None;
    let task = tokio::spawn(run(cfg, std::future::pending()));

    eventually("renewal retries", || {
        count(&server, routes::AGENT_RENEW) >= 2
    })
    .await;
    assert_eq!(
        count(&server, routes::AGENT_WHOAMI),
        1,
        "first contact measured the skew"
    );
    // Past expiry, with no join token: still running, waiting for an operator.
    tokio::time::sleep(StdDuration::from_secs(3)).await;
    assert!(!task.is_finished(), "the agent must not exit");
    assert_eq!(
        count(&server, routes::AGENT_ENROLL),
        1,
        "no token, no re-enrollment"
    );
    task.abort();
}

#[tokio::test]
async fn an_identity_enrolled_by_an_operator_is_adopted_without_restart() {
    let (ca, server, revoked) = spawn(Duration::seconds(3)).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let operator = config(&server, &ca, dir.path());
    enroll(&operator).await.expect("enrolled");
    revoked.store(true, Ordering::SeqCst);
    let mut cfg = operator.clone();
    cfg.join_token = None;
    let task = tokio::spawn(run(cfg, std::future::pending()));
    eventually("a refused renewal", || {
        count(&server, routes::AGENT_RENEW) >= 1
    })
    .await;

    // The operator re-enrolls the node with a new token while the agent keeps running.
    revoked.store(false, Ordering::SeqCst);
    enroll(&operator).await.expect("re-enrolled");
    let fresh = std::fs::read_to_string(dir.path().join(crate::state::CERT_FILE)).expect("cert");
    let fresh_der = crate::identity::pem_certificates(&fresh, "fresh")
        .expect("pem")
        .remove(0);
    eventually("a renewal with the adopted identity", || {
        let requests = server.requests.lock().expect("lock");
        requests
            .iter()
            .any(|r| r.path == routes::AGENT_RENEW && r.client_cert.as_ref() == Some(&fresh_der))
    })
    .await;
    assert!(!task.is_finished());
    task.abort();
}

#[tokio::test]
async fn a_state_dir_of_another_node_is_refused() {
    let (ca, server, _) = spawn(Duration::hours(1)).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(&server, &ca, dir.path());
    enroll(&cfg).await.expect("enrolled");
    let mut other = cfg.clone();
    other.node_id = "n-2".parse().expect("valid");
    let err = load_session(&other, &StateDir::new(dir.path())).expect_err("other node");
    assert!(matches!(err, AgentError::OtherNode { .. }), "{err}");
    assert!(
        load_session(&cfg, &StateDir::new(dir.path()))
            .expect("own")
            .is_some()
    );
}

#[test]
fn retry_decisions() {
    let refused = |status: u16| {
        AgentError::Client(ClientError::Refused {
            action: "x",
            status,
            problem: ferry_shared::Problem {
                kind: "t".into(),
                title: "t".into(),
                status,
                detail: None,
            },
        })
    };
    let no_token = || AgentError::NoJoinToken {
        service: "web".into(),
    };
    let mismatch = || {
        AgentError::Client(ClientError::CaMismatch {
            expected: "a".into(),
            presented: "b".into(),
        })
    };
    let cases = [
        (refused(403), Phase::Enroll, Retry::Fatal),
        (refused(400), Phase::Enroll, Retry::Fatal),
        (refused(408), Phase::Enroll, Retry::Soon),
        (refused(429), Phase::Enroll, Retry::Soon),
        (refused(503), Phase::Enroll, Retry::Soon),
        (refused(403), Phase::Renew, Retry::Slowly),
        (refused(401), Phase::Renew, Retry::Slowly),
        (refused(500), Phase::Renew, Retry::Soon),
        (refused(403), Phase::Reenroll, Retry::Slowly),
        (no_token(), Phase::Enroll, Retry::Fatal),
        (no_token(), Phase::Reenroll, Retry::Slowly),
        (mismatch(), Phase::Enroll, Retry::Fatal),
    ];
    for (err, phase, want) in cases {
        assert_eq!(decide(&err, phase), want, "{err} during {phase:?}");
    }
    assert!(
        operator_advice(&refused(403), Phase::Renew).is_some_and(|a| a.contains("new join token"))
    );
    assert!(
        operator_advice(&no_token(), Phase::Reenroll)
            .is_some_and(|a| a.contains("join_token_file"))
    );
    assert_eq!(operator_advice(&refused(503), Phase::Renew), None);
}

#[test]
fn delivery_request_retry_decisions() {
    use super::retry::{decide_request, delivery_advice};
    let refused = |status: u16| ClientError::Refused {
        action: "x",
        status,
        problem: ferry_shared::Problem {
            kind: "t".into(),
            title: "t".into(),
            status,
            detail: None,
        },
    };
    for (status, want) in [
        (503, Retry::Soon),
        (429, Retry::Soon),
        (401, Retry::Slowly),
        (403, Retry::Slowly),
        (409, Retry::Fatal),
        (422, Retry::Fatal),
    ] {
        assert_eq!(decide_request(&refused(status)), want, "{status}");
    }
    assert!(delivery_advice(&refused(403)).is_some_and(|a| a.contains("re-enroll")));
    assert_eq!(delivery_advice(&refused(503)), None);
}
