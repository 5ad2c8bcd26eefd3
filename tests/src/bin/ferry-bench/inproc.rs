//! `ferry-bench refresh-latency`: N agents (the real agent library, real mTLS, each with its own
//! state and install directories) hold long-polls on one control plane over PostgreSQL;
//! R forced refreshes are sent to random nodes at a fixed rate; the latency of each is
//! the control plane's own record, from the refresh call to the ack persisted
//! (`deliveries.finished_at - created_at`). Loopback only, bounded in count and time.

use ferry_tests::agent::spawn_agent;
use ferry_tests::{Backend, eventually, spawn_control_plane};
use serde_json::json;
use std::time::{Duration, Instant};

use crate::arg;

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// Runs the in-process refresh-latency benchmark (issue 4's figures).
pub async fn run() {
    let agents = arg("--agents", 1000) as usize;
    let refreshes = arg("--refreshes", 500) as usize;
    let rate = arg("--rate", 50);
    println!("refresh-latency: {agents} agents, {refreshes} refreshes at {rate}/s, PostgreSQL");

    let cp = spawn_control_plane(Backend::Postgres, |cfg| cfg.db_pool_size = 32).await;
    cp.create_service("bench", json!({ "cert_ttl_seconds": 3600 }))
        .await;
    let (token, _) = cp.join_token("bench", agents as u32, 3600).await;
    let started = Instant::now();
    let mut fleet = Vec::with_capacity(agents);
    for i in 0..agents {
        fleet.push(spawn_agent(&cp, "bench", &format!("n{i:05}"), &token, |_| {}).await);
    }
    let api = cp.admin();
    eventually(
        "every agent enrolled, installed and acked",
        Duration::from_secs(600),
        || async {
            let mut acked = 0;
            let mut cursor = String::new();
            loop {
                let page = api
                    .get(&format!("/v1/services/bench/nodes?limit=1000{cursor}"))
                    .await
                    .body;
                let items = page["items"].as_array().cloned().unwrap_or_default();
                acked += items
                    .iter()
                    .filter(|n| n["acked_version"].as_i64() >= Some(1))
                    .count();
                match page["next_cursor"].as_str() {
                    Some(c) => cursor = format!("&cursor={c}"),
                    None => break,
                }
            }
            (acked == agents).then_some(())
        },
    )
    .await;
    println!(
        "fleet up: {agents} agents enrolled and acked in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let mut ids = Vec::with_capacity(refreshes);
    let interval = Duration::from_micros(1_000_000 / rate.max(1));
    let mut next = tokio::time::Instant::now();
    for i in 0..refreshes {
        let node = (i * 7919) % agents;
        let r = api
            .post(
                &format!("/v1/services/bench/nodes/n{node:05}/refresh"),
                json!({}),
            )
            .await;
        assert_eq!(r.status, 202, "{}", r.body);
        ids.push(r.body["delivery_id"].as_str().expect("id").to_owned());
        next += interval;
        tokio::time::sleep_until(next).await;
    }
    let mut latencies_ms = Vec::with_capacity(ids.len());
    for id in &ids {
        let d = eventually("delivery acked", Duration::from_secs(120), || async {
            let d = api.get(&format!("/v1/deliveries/{id}")).await.body;
            (d["state"] != "pending").then_some(d)
        })
        .await;
        assert_eq!(d["state"], "delivered", "{d}");
        let t = |k: &str| {
            time::OffsetDateTime::parse(
                d[k].as_str().expect("time"),
                &time::format_description::well_known::Rfc3339,
            )
            .expect("rfc3339")
        };
        latencies_ms.push((t("finished_at") - t("created_at")).as_seconds_f64() * 1000.0);
    }
    latencies_ms.sort_by(f64::total_cmp);
    println!(
        "refresh -> ack persisted over {} deliveries: p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        latencies_ms.len(),
        percentile(&latencies_ms, 0.50),
        percentile(&latencies_ms, 0.90),
        percentile(&latencies_ms, 0.99),
        percentile(&latencies_ms, 1.0),
    );
    for mut a in fleet {
        a.stop().await;
    }
    let mut cp = cp;
    cp.stop().await;
}
