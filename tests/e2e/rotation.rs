//! Paced rotation: a service-wide re-issue never has more than `max_in_flight`
//! unacknowledged deliveries, and finishes across a control-plane restart. Fifty real
//! agents (the agent library in-process), each with its own directories.

use ferry_shared::api::Rotation;
use ferry_tests::agent::spawn_agent;
use ferry_tests::{Backend, eventually, spawn_control_plane};
use serde_json::json;
use std::time::Duration;

#[tokio::test]
async fn rotation_of_50_nodes_is_paced_and_survives_a_restart() {
    let mut cp = spawn_control_plane(Backend::Postgres, |_| {}).await;
    cp.create_service("fleet", json!({})).await;
    let (token, _) = cp.join_token("fleet", 50, 600).await;
    // Real agents; a slow reload hook keeps each delivery in flight for a moment.
    let mut agents = Vec::new();
    for i in 0..50 {
        let hook = format!("sleep 0.{}", 2 + i % 3);
        agents.push(
            spawn_agent(&cp, "fleet", &format!("n{i:02}"), &token, |cfg| {
                cfg.reload_command = Some(hook)
            })
            .await,
        );
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
    for mut a in agents {
        a.stop().await;
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
