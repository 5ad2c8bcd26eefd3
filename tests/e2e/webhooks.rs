//! Alert webhooks: signed, retried, in order, once per event, across a replica stopping.

use ferry_tests::agent::spawn_agent;
use ferry_tests::{Backend, ControlPlane, eventually, spawn_control_plane};
use serde_json::{Value, json};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A webhook receiver on loopback that refuses its first `fail_first` requests.
struct Receiver {
    url: String,
    got: Arc<Mutex<Vec<(String, String, String)>>>, // (event id, signature, body)
    attempts: Arc<AtomicUsize>,
}

async fn receiver(fail_first: usize) -> Receiver {
    let got: Arc<Mutex<Vec<(String, String, String)>>> = Arc::default();
    let attempts = Arc::new(AtomicUsize::new(0));
    let (g, a) = (got.clone(), attempts.clone());
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: axum::http::HeaderMap, body: String| {
            let (g, a) = (g.clone(), a.clone());
            async move {
                if a.fetch_add(1, Ordering::SeqCst) < fail_first {
                    return axum::http::StatusCode::INTERNAL_SERVER_ERROR;
                }
                let h = |k: &str| {
                    headers
                        .get(k)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_owned()
                };
                g.lock()
                    .expect("lock")
                    .push((h("ferry-event-id"), h("ferry-signature"), body));
                axum::http::StatusCode::NO_CONTENT
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    Receiver { url, got, attempts }
}

impl Receiver {
    fn events(&self, secret: &str) -> Vec<Value> {
        let got = self.got.lock().expect("lock").clone();
        let ids: std::collections::HashSet<_> = got.iter().map(|e| e.0.clone()).collect();
        assert_eq!(ids.len(), got.len(), "an event id arrived twice");
        got.iter()
            .map(|(id, sig, body)| {
                let expected = ferry_control_plane::jobs::webhooks::signature(
                    secret.as_bytes(),
                    body.as_bytes(),
                );
                assert_eq!(sig, &expected, "signature of event {id}");
                serde_json::from_str(body).expect("JSON body")
            })
            .collect()
    }
}

fn count(events: &[Value], node: &str, reason: &str, event: &str) -> usize {
    events
        .iter()
        .filter(|e| {
            e["alert"]["node_id"] == node && e["alert"]["reason"] == reason && e["event"] == event
        })
        .count()
}

fn fast(cfg: &mut ferry_control_plane::config::Config) {
    cfg.presence_linger = Duration::from_secs(1);
    cfg.max_poll_wait = Duration::from_secs(5);
    cfg.jobs.staleness_tick = Duration::from_millis(300);
}

async fn hook(cp: &ControlPlane, url: &str) -> String {
    let r = cp
        .admin()
        .client
        .put(format!("{}/v1/services/web/webhook", cp.url))
        .bearer_auth(&cp.admin_token)
        .json(&json!({ "url": url }))
        .send()
        .await
        .expect("put");
    assert_eq!(r.status(), 200);
    r.json::<Value>().await.expect("json")["secret"]
        .as_str()
        .expect("secret")
        .to_owned()
}

#[tokio::test]
async fn alerts_reach_the_webhook_signed_once_each_despite_failures() {
    let cp = spawn_control_plane(Backend::Sqlite, fast).await;
    cp.create_service(
        "web",
        json!({ "cert_ttl_seconds": 600, "stale_after_seconds": 10 }),
    )
    .await;
    let rx = receiver(2).await;
    let secret = hook(&cp, &rx.url).await;
    let (token, _) = cp.join_token("web", 1, 600).await;
    let mut agent = spawn_agent(&cp, "web", "n1", &token, |cfg| {
        cfg.poll_wait = Duration::from_secs(2)
    })
    .await;
    eventually("installed", Duration::from_secs(30), || async {
        agent.installed()
    })
    .await;

    agent.stop().await;
    eventually(
        "the firing alert arrives after two refused attempts",
        Duration::from_secs(30),
        || async { (count(&rx.events(&secret), "n1", "unseen", "firing") == 1).then_some(()) },
    )
    .await;
    assert!(
        rx.attempts.load(Ordering::SeqCst) >= 3,
        "the receiver's failures were retried"
    );

    let _back = agent.restart(&cp, "web", "n1", &token);
    eventually("the resolve arrives", Duration::from_secs(30), || async {
        (count(&rx.events(&secret), "n1", "unseen", "resolved") == 1).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let events = rx.events(&secret);
    assert_eq!(count(&events, "n1", "unseen", "firing"), 1, "{events:?}");
    assert_eq!(count(&events, "n1", "unseen", "resolved"), 1, "{events:?}");
    let order: Vec<_> = events
        .iter()
        .filter(|e| e["alert"]["node_id"] == "n1")
        .map(|e| e["event"].clone())
        .collect();
    assert_eq!(
        order,
        vec![json!("firing"), json!("resolved")],
        "a resolve never overtakes its firing"
    );
}

#[tokio::test]
async fn a_replica_stopping_loses_and_duplicates_no_alert() {
    let mut a = spawn_control_plane(Backend::Postgres, fast).await;
    let b = a.replica().await;
    a.create_service(
        "web",
        json!({ "cert_ttl_seconds": 600, "stale_after_seconds": 10 }),
    )
    .await;
    let rx = receiver(0).await;
    let secret = hook(&a, &rx.url).await;
    let (token, _) = a.join_token("web", 1, 600).await;
    let mut agent = spawn_agent(&b, "web", "n1", &token, |cfg| {
        cfg.poll_wait = Duration::from_secs(2)
    })
    .await;
    eventually("installed", Duration::from_secs(30), || async {
        agent.installed()
    })
    .await;
    agent.stop().await;
    eventually("firing", Duration::from_secs(30), || async {
        (count(&rx.events(&secret), "n1", "unseen", "firing") == 1).then_some(())
    })
    .await;
    a.stop().await; // the other replica carries on alone
    let _back = agent.restart(&b, "web", "n1", &token);
    eventually(
        "resolved by the remaining replica",
        Duration::from_secs(30),
        || async { (count(&rx.events(&secret), "n1", "unseen", "resolved") == 1).then_some(()) },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let events = rx.events(&secret);
    assert_eq!(
        (
            count(&events, "n1", "unseen", "firing"),
            count(&events, "n1", "unseen", "resolved")
        ),
        (1, 1)
    );
}
