//! The agent under adverse conditions: a control-plane outage, and minutes of short
//! certificates with node clocks ten minutes off.

use ferry_agent::RetryPolicy;
use ferry_tests::agent::{agent_command_skewed, read_installed, spawn_agent, validity};
use ferry_tests::{Backend, eventually, spawn_control_plane};
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[tokio::test]
async fn a_30_second_outage_keeps_the_files_bounds_retries_and_recovers() {
    let mut cp = spawn_control_plane(Backend::Sqlite, |_| {}).await;
    cp.create_service("web", json!({ "cert_ttl_seconds": 600 }))
        .await;
    let (token, _) = cp.join_token("web", 1, 600).await;
    // Production backoff, not the harness's fast one: that is what is being bounded.
    let agent = spawn_agent(&cp, "web", "n1", &token, |cfg| {
        cfg.retry = RetryPolicy::default()
    })
    .await;
    let before = eventually("installed and acked", Duration::from_secs(30), || async {
        let node = cp.admin().get("/v1/services/web/nodes/n1").await.body;
        (node["acked_version"] == 1)
            .then(|| agent.installed())
            .flatten()
    })
    .await;

    cp.stop().await;
    // Count the agent's connection attempts on the control plane's port while it is down.
    let listener = tokio::net::TcpListener::bind(cp.addr)
        .await
        .expect("the port is free during the outage");
    let attempts = Arc::new(AtomicU64::new(0));
    let counter = tokio::spawn({
        let attempts = attempts.clone();
        async move {
            while let Ok((sock, _)) = listener.accept().await {
                attempts.fetch_add(1, Ordering::Relaxed);
                drop(sock);
            }
        }
    });
    tokio::time::sleep(Duration::from_secs(30)).await;
    counter.abort();
    let _ = counter.await;
    let attempts = attempts.load(Ordering::Relaxed);
    assert!(
        (1..=20).contains(&attempts),
        "{attempts} connection attempts in a 30 s outage"
    );
    assert_eq!(
        agent.installed().expect("files kept").hash,
        before.hash,
        "the last good bundle stays installed"
    );

    cp.restart().await;
    assert_eq!(
        cp.admin()
            .post("/v1/services/web/nodes/n1/refresh", json!({}))
            .await
            .status,
        202
    );
    eventually(
        "the new version after the outage",
        Duration::from_secs(90),
        || async { agent.installed().filter(|i| i.version == 2) },
    )
    .await;
}

#[tokio::test]
async fn sixty_second_certificates_never_expire_over_three_minutes_even_with_clocks_ten_minutes_off()
 {
    let cp = spawn_control_plane(Backend::Postgres, |_| {}).await;
    cp.create_service(
        "web",
        json!({ "cert_ttl_seconds": 60, "renew_before_seconds": 20 }),
    )
    .await;
    let (token, _) = cp.join_token("web", 3, 600).await;
    let ca_file = cp.data_dir.path().join("test-ca.pem");
    std::fs::write(&ca_file, &cp.trust_pem).expect("write the node CA");

    let skews = [
        ("on-time", None),
        ("ahead", Some("+10m")),
        ("behind", Some("-10m")),
    ];
    let mut agents = Vec::new();
    for (node, skew) in skews {
        let dir = tempfile::tempdir().expect("tempdir");
        let child = agent_command_skewed(&cp, "web", node, &token, dir.path(), skew)
            .spawn()
            .expect("agent starts");
        agents.push((node, dir, child));
    }
    for (node, dir, _) in &agents {
        let install = dir.path().join("install");
        eventually(
            &format!("{node} installs its first bundle"),
            Duration::from_secs(30),
            || async { read_installed(&install, true) },
        )
        .await;
    }

    let started = Instant::now();
    let mut versions: Vec<std::collections::BTreeSet<i64>> = vec![Default::default(); agents.len()];
    let mut tick = 0;
    while started.elapsed() < Duration::from_secs(190) {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        for (i, (node, dir, _)) in agents.iter().enumerate() {
            let installed = read_installed(&dir.path().join("install"), true).expect("installed");
            let (not_before, not_after) = validity(&installed.cert_pem);
            assert!(
                not_after > now,
                "{node}: installed certificate expired {}s ago (version {})",
                now - not_after,
                installed.version
            );
            assert!(
                not_before <= now,
                "{node}: installed certificate not yet valid"
            );
            if tick % 10 == 0 {
                let cert = dir.path().join("install/current/cert.pem");
                let out = std::process::Command::new("openssl")
                    .args(["verify", "-CAfile"])
                    .arg(&ca_file)
                    .arg(&cert)
                    .output()
                    .expect("openssl");
                assert!(
                    out.status.success(),
                    "{node}: {}",
                    String::from_utf8_lossy(&out.stdout)
                );
            }
            versions[i].insert(installed.version);
        }
        tick += 1;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    for (i, (node, _, child)) in agents.iter_mut().enumerate() {
        let _ = child.start_kill();
        let _ = child.wait().await;
        assert!(
            versions[i].len() >= 4,
            "{node} renewed only {} times in 190 s: {:?}",
            versions[i].len(),
            versions[i]
        );
    }
    let nodes = cp.admin().get("/v1/services/web/nodes").await.body;
    for n in nodes["items"].as_array().expect("items") {
        let skew = n["clock_skew_ms"].as_i64().unwrap_or(0).abs();
        match n["node_id"].as_str() {
            Some("on-time") => assert!(skew < 5_000, "on-time agent measured {skew} ms"),
            _ => assert!(
                (590_000..610_000).contains(&skew),
                "{}: measured skew {skew} ms",
                n["node_id"]
            ),
        }
    }
}
