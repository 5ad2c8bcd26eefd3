//! Hostile clients at the edge: join-token guessing is refused per address and audited,
//! one address cannot hold more than its share of connections, and a client that
//! connects and says nothing is disconnected. (Oversized bodies: `api.rs`.)

use ferry_control_plane::http::tls::HANDSHAKE_TIMEOUT;
use ferry_tests::node::{csr, p256};
use ferry_tests::{Backend, ControlPlane, spawn_control_plane};
use serde_json::{Value, json};
use std::net::IpAddr;
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// Another loopback address, so a test can be "someone else" on the same machine.
const OTHER_ADDRESS: [u8; 4] = [127, 0, 0, 2];

/// A client trusting the control plane's CA, connecting from `local` if given.
fn client(cp: &ControlPlane, local: Option<IpAddr>) -> reqwest::Client {
    let ca = reqwest::Certificate::from_pem(cp.ca_pem.as_bytes()).expect("CA PEM");
    reqwest::Client::builder()
        .tls_certs_only([ca])
        .local_address(local)
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

struct Answer {
    status: u16,
    content_type: String,
    retry_after: Option<u64>,
    body: Value,
}

async fn enroll(client: &reqwest::Client, cp: &ControlPlane, node: &str, token: &str) -> Answer {
    let body = json!({ "service": "web", "node_id": node, "join_token": token, "csr": csr(&p256(), node) });
    let resp = client
        .post(format!("{}/v1/agent/enroll", cp.url))
        .json(&body)
        .send()
        .await
        .expect("enroll reaches the control plane");
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let (content_type, retry_after) = (
        header("content-type").unwrap_or_default(),
        header("retry-after").and_then(|v| v.parse().ok()),
    );
    let status = resp.status().as_u16();
    let body = resp.json().await.unwrap_or(Value::Null);
    Answer {
        status,
        content_type,
        retry_after,
        body,
    }
}

#[tokio::test]
async fn join_token_guessing_is_refused_per_address_until_the_window_ends_and_audited() {
    let window = Duration::from_secs(5);
    let cp = spawn_control_plane(Backend::Postgres, |cfg| {
        cfg.limits.enroll_max_failures = 3;
        cfg.limits.enroll_failure_window = window;
        // Quiet jobs: the statement counter then sees the requests alone.
        let hour = Duration::from_secs(3600);
        cfg.jobs.renewal_tick = hour;
        cfg.jobs.rotation_tick = hour;
        cfg.jobs.staleness_tick = hour;
        cfg.jobs.expiry_tick = hour;
        cfg.presence_flush = hour;
        cfg.jobs.objects_tick = hour;
    })
    .await;
    cp.create_service("web", json!({})).await;
    let (token, _) = cp.join_token("web", 5, 3600).await;
    let guesser = client(&cp, None);
    let guesses: Vec<String> = (0..4).map(|i| format!("fyj_guess-number-{i}")).collect();

    // Three wrong guesses are ordinary 401s.
    for (i, guess) in guesses.iter().take(3).enumerate() {
        let a = enroll(&guesser, &cp, &format!("g{i}"), guess).await;
        assert_eq!(a.status, 401, "guess {i}: {}", a.body);
    }
    // The fourth is refused before the token is even looked up.
    let refused = enroll(&guesser, &cp, "g3", &guesses[3]).await;
    assert_eq!(refused.status, 429, "{}", refused.body);
    assert_eq!(refused.content_type, "application/problem+json");
    assert_eq!(refused.body["status"], 429);
    let retry_after = refused.retry_after.expect("retry-after header");
    assert!(
        (1..=window.as_secs()).contains(&retry_after),
        "retry-after {retry_after}"
    );

    // While refused, even a valid token is turned away, and without database work.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = cp.store.statements();
    for i in 0..20 {
        let a = enroll(&guesser, &cp, &format!("v{i}"), &token).await;
        assert_eq!(a.status, 429, "attempt {i} while refused: {}", a.body);
    }
    let statements = cp.store.statements() - before;
    assert!(
        statements < 5,
        "{statements} statements for 20 refused enrollments"
    );

    // Another address is not affected.
    let neighbour = client(&cp, Some(IpAddr::from(OTHER_ADDRESS)));
    let ok = enroll(&neighbour, &cp, "neighbour", &token).await;
    assert_eq!(ok.status, 200, "another address enrolls: {}", ok.body);

    // One audit entry for the refused address, however many refusals; no token in it.
    let audit = cp.admin().get("/v1/audit?limit=100").await;
    assert_eq!(audit.status, 200, "{}", audit.body);
    let refusals: Vec<&Value> = audit.body["items"]
        .as_array()
        .expect("audit items")
        .iter()
        .filter(|e| e["action"] == "enroll.refused")
        .collect();
    assert_eq!(refusals.len(), 1, "audited once per window: {refusals:?}");
    assert_eq!(refusals[0]["actor"], "address:127.0.0.1");
    assert_eq!(refusals[0]["detail"]["failures"], 3);
    let text = audit.body.to_string();
    assert!(
        !guesses.iter().any(|g| text.contains(g.as_str())) && !text.contains(&token),
        "join tokens never reach the audit log"
    );

    // When the window has passed, the valid token works again from the same address.
    tokio::time::sleep(Duration::from_secs(retry_after) + Duration::from_millis(300)).await;
    let again = enroll(&guesser, &cp, "after-window", &token).await;
    assert_eq!(again.status, 200, "after the window: {}", again.body);
}

/// True when the server closed `stream` (EOF or reset) within `within`.
async fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 64];
    match tokio::time::timeout(within, stream.read(&mut buf)).await {
        Ok(Ok(0)) | Ok(Err(_)) => true,
        Ok(Ok(n)) => panic!("the server sent {n} bytes unprompted"),
        Err(_) => false,
    }
}

async fn healthz(client: &reqwest::Client, cp: &ControlPlane) -> Result<u16, reqwest::Error> {
    let resp = client.get(format!("{}/healthz", cp.url)).send().await?;
    Ok(resp.status().as_u16())
}

#[tokio::test]
async fn one_address_cannot_hold_more_than_its_connection_limit() {
    let cp = spawn_control_plane(Backend::Sqlite, |cfg| {
        cfg.limits.max_connections_per_address = 3;
        cfg.limits.limit_loopback_connections = true;
    })
    .await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(TcpStream::connect(cp.addr).await.expect("connect"));
    }

    let mut extra = TcpStream::connect(cp.addr).await.expect("connect");
    let https = healthz(&client(&cp, None), &cp).await;

    assert!(
        closed_within(&mut extra, Duration::from_secs(3)).await,
        "a fourth connection is closed at once"
    );
    assert!(
        https.is_err(),
        "no request gets through over the limit: {https:?}"
    );
    for (i, s) in held.iter_mut().enumerate() {
        assert!(
            !closed_within(s, Duration::from_millis(200)).await,
            "held connection {i} stays open"
        );
    }
    let refused = cp
        .stats
        .connections_refused
        .load(std::sync::atomic::Ordering::Relaxed);
    assert!(refused >= 2, "{refused} refused connections counted");
    let neighbour = healthz(&client(&cp, Some(IpAddr::from(OTHER_ADDRESS))), &cp).await;
    assert_eq!(neighbour.expect("another address connects"), 200);

    // Closing one connection frees its slot.
    held.pop();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match healthz(&client(&cp, None), &cp).await {
            Ok(status) => {
                assert_eq!(status, 200);
                break;
            }
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("the freed slot is never reusable: {e}"),
        }
    }
}

#[tokio::test]
async fn a_client_that_connects_and_stays_silent_is_disconnected_by_the_handshake_timeout() {
    let cp = spawn_control_plane(Backend::Sqlite, |_| {}).await;
    let started = Instant::now();
    let mut silent = TcpStream::connect(cp.addr).await.expect("connect");

    let closed = closed_within(&mut silent, HANDSHAKE_TIMEOUT + Duration::from_secs(3)).await;

    let took = started.elapsed();
    assert!(closed, "still connected after {took:?}");
    assert!(
        took + Duration::from_secs(1) >= HANDSHAKE_TIMEOUT,
        "closed after {took:?}: by the timeout, not at once"
    );
    assert_eq!(
        healthz(&client(&cp, None), &cp)
            .await
            .expect("server still serves"),
        200
    );
}
