//! Paced rotation: a service-wide re-issue never has more than `max_in_flight`
//! unacknowledged deliveries, and finishes across a control-plane restart.

use ferry_shared::api::{BundleResponse, Rotation};
use ferry_tests::node::{enroll, mtls_client, p256};
use ferry_tests::{Backend, eventually, spawn_control_plane};
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// A minimal protocol client: polls, waits a little (so deliveries stay in flight), acks.
async fn poll_and_ack(client: reqwest::Client, url: String, stop: Arc<AtomicBool>, delay_ms: u64) {
    let mut since = 0;
    while !stop.load(Ordering::Relaxed) {
        let resp = match client
            .get(format!("{url}/v1/agent/bundle?since={since}&wait=5"))
            .send()
            .await
        {
            Ok(r) => r,
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(200)).await; // control plane restarting
                continue;
            }
        };
        if resp.status().as_u16() != 200 {
            continue;
        }
        let Ok(b) = resp.json::<BundleResponse>().await else {
            continue;
        };
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        let ack = json!({ "version": b.bundle.version, "content_hash": b.bundle.content_hash, "status": "installed" });
        if client
            .post(format!("{url}/v1/agent/ack"))
            .json(&ack)
            .send()
            .await
            .is_ok_and(|r| r.status().as_u16() == 204)
        {
            since = b.bundle.version;
        }
    }
}

#[tokio::test]
async fn rotation_of_50_nodes_is_paced_and_survives_a_restart() {
    let mut cp = spawn_control_plane(Backend::Postgres, |_| {}).await;
    cp.create_service("fleet", json!({})).await;
    let (token, _) = cp.join_token("fleet", 50, 600).await;
    let stop = Arc::new(AtomicBool::new(false));
    let mut agents = Vec::new();
    for i in 0..50 {
        let key = p256();
        let r = enroll(&cp, "fleet", &format!("n{i:02}"), &token, &key).await;
        assert_eq!(r.status, 200);
        let client = mtls_client(&cp, r.body["certificate"].as_str().expect("cert"), &key);
        agents.push(tokio::spawn(poll_and_ack(
            client,
            cp.url.clone(),
            stop.clone(),
            100 + (i % 5) * 40,
        )));
    }
    // Everyone holds version 1 before the rotation starts.
    eventually(
        "all 50 nodes acked their first bundle",
        Duration::from_secs(30),
        || async {
            let page = cp
                .admin()
                .get("/v1/services/fleet/nodes?limit=100")
                .await
                .body;
            let items = page["items"].as_array().cloned().unwrap_or_default();
            (items.len() == 50 && items.iter().all(|n| n["acked_version"] == 1)).then_some(())
        },
    )
    .await;

    let started = cp
        .admin()
        .post("/v1/services/fleet/rotate", json!({ "max_in_flight": 10 }))
        .await;
    assert_eq!(started.status, 202, "{}", started.body);
    let id = started.body["rotation_id"].as_str().expect("id").to_owned();
    let path = format!("/v1/services/fleet/rotations/{id}");
    let mut max_in_flight = 0;
    let mut restarted = false;
    let done: Rotation = loop {
        let r = cp.admin().get(&path).await;
        let rot: Rotation = serde_json::from_value(r.body).expect("rotation");
        max_in_flight = max_in_flight.max(rot.in_flight);
        if rot.state == "done" {
            break rot;
        }
        if !restarted && rot.delivered >= 15 {
            cp.restart().await; // mid-way: the driver must resume from the database
            restarted = true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    stop.store(true, Ordering::Relaxed);
    for a in agents {
        a.abort();
    }
    assert!(restarted, "the restart happened mid-way");
    assert!(max_in_flight <= 10, "in flight peaked at {max_in_flight}");
    assert!(
        max_in_flight >= 5,
        "the waves were actually parallel (peak {max_in_flight})"
    );
    assert_eq!(
        (done.total, done.delivered, done.failed),
        (50, 50, 0),
        "{done:?}"
    );
    let nodes = cp
        .admin()
        .get("/v1/services/fleet/nodes?limit=100")
        .await
        .body;
    assert!(
        nodes["items"]
            .as_array()
            .expect("items")
            .iter()
            .all(|n| n["acked_version"] == 2),
        "every node acked the rotation"
    );
}
