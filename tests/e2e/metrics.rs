//! `/metrics`: every metric docs/metrics.md names is exported, and nothing undocumented.

use ferry_tests::agent::spawn_agent;
use ferry_tests::{Backend, eventually, spawn_control_plane};
use serde_json::json;
use std::collections::BTreeSet;
use std::time::Duration;

fn documented() -> BTreeSet<String> {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/metrics.md"))
        .expect("docs/metrics.md");
    doc.lines()
        .filter(|l| l.starts_with("| `ferry_"))
        .filter_map(|l| l.split('`').nth(1).map(str::to_owned))
        .collect()
}

#[tokio::test]
async fn every_documented_metric_is_exported_and_aggregated_per_service() {
    let cp = spawn_control_plane(Backend::Postgres, |_| {}).await;
    cp.create_service("web", json!({ "cert_ttl_seconds": 600 }))
        .await;
    let (token, _) = cp.join_token("web", 1, 600).await;
    let agent = spawn_agent(&cp, "web", "n1", &token, |_| {}).await;
    eventually("installed", Duration::from_secs(30), || async {
        agent.installed()
    })
    .await;
    let r = cp
        .admin()
        .post("/v1/services/web/nodes/n1/refresh", json!({}))
        .await;
    let id = r.body["delivery_id"].as_str().expect("id").to_owned();
    eventually("delivered", Duration::from_secs(30), || async {
        (cp.admin().get(&format!("/v1/deliveries/{id}")).await.body["state"] == "delivered")
            .then_some(())
    })
    .await;

    let client = cp.admin().client;
    let scrape = |token: String| {
        let (client, url) = (client.clone(), format!("{}/metrics", cp.url));
        async move {
            client
                .get(url)
                .bearer_auth(token)
                .send()
                .await
                .expect("scrape")
        }
    };
    let resp = scrape(cp.admin_token.clone()).await;
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.expect("text");
    let exported: BTreeSet<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next().map(str::to_owned))
        .collect();
    assert_eq!(
        exported,
        documented(),
        "docs/metrics.md and /metrics disagree"
    );

    assert!(
        text.contains("ferry_nodes{service=\"web\",state=\"ok\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("ferry_deliveries{state=\"delivered\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("ferry_refresh_to_ack_seconds_count 1"),
        "{text}"
    );
    eventually(
        "the agent's next poll is held",
        Duration::from_secs(10),
        || {
            let scrape = scrape(cp.admin_token.clone());
            async move {
                let text = scrape.await.text().await.ok()?;
                text.lines()
                    .any(|l| l.starts_with("ferry_long_polls_held ") && !l.ends_with(" 0"))
                    .then_some(())
            }
        },
    )
    .await;
    assert!(!text.contains("n1"), "no series names a node");

    assert_eq!(
        cp.admin()
            .post("/v1/tenants", json!({ "name": "acme" }))
            .await
            .status,
        201
    );
    let tenant = cp
        .admin()
        .post("/v1/tenants/acme/tokens", json!({}))
        .await
        .body["token"]
        .as_str()
        .expect("t")
        .to_owned();
    assert_eq!(
        scrape(tenant).await.status(),
        403,
        "tenants cannot scrape fleet-wide metrics"
    );
}
