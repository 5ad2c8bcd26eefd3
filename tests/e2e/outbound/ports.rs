//! A port scan through Ferry: a tenant aims sources, webhooks and inventories at
//! internal ports and reads the errors back to learn which are open. A closed port,
//! an open one that hangs up, one that speaks another protocol (a banner carrying the
//! marker) and one that never answers must read the same, refused at create where
//! the policy refuses the address and "request failed" where the operator allows it
//! (loopback here, standing in for an allowed private range).

use super::hostile::{MARKER, hostile};
use super::{
    closed_port, inventory_error_of, put_inventory_of, put_source_of, put_webhook_of, quick,
    refused, source_error_of, strict,
};
use ferry_tests::logs::warnings_with;
use ferry_tests::{Backend, eventually, spawn_control_plane};
use serde_json::json;
use std::collections::BTreeSet;
use std::time::Duration;

const REFUSED: &str = "destination 127.0.0.1 is refused by the outbound policy";

#[tokio::test]
async fn closed_and_open_internal_ports_are_refused_with_the_same_text() {
    let cp = spawn_control_plane(Backend::Sqlite, strict).await;
    cp.create_service("web", json!({})).await;
    let h = hostile().await;
    let before = cp.db.row_counts();
    let mut details = BTreeSet::new();
    for url in [
        format!("http://127.0.0.1:{}/x", closed_port()),
        format!("{}/latest/creds", h.base),
        format!("{}/banner", h.base),
        format!("{}/stall", h.base),
    ] {
        details.insert(refused(
            &put_source_of(&cp, "web", "probe", &url).await,
            &url,
        ));
        details.insert(refused(&put_webhook_of(&cp, "web", &url).await, &url));
        details.insert(refused(&put_inventory_of(&cp, "web", &url).await, &url));
    }
    assert_eq!(details, BTreeSet::from([REFUSED.to_owned()]));
    assert_eq!(cp.db.row_counts(), before, "nothing was written");
    assert_eq!(
        h.seen.hits.lock().expect("lock").len(),
        0,
        "nothing was asked"
    );
}

#[tokio::test]
async fn closed_and_open_allowed_ports_fail_with_the_same_text_everywhere() {
    // Arrange: one service per kind of port, each with a webhook, a source and an
    // inventory aimed there; every source failure fires an alert, so the webhook is
    // sent too.
    let cp = spawn_control_plane(Backend::Postgres, |cfg| {
        quick(cfg);
        cfg.jobs.sources.alert_after = 1;
    })
    .await;
    let h = hostile().await;
    let closed = closed_port();
    let probes = [
        ("pa", format!("http://127.0.0.1:{closed}/x")),
        ("pb", format!("{}/hangup", h.base)),
        ("pc", format!("{}/banner", h.base)),
    ];
    for (svc, url) in &probes {
        cp.create_service(svc, json!({})).await;
        assert_eq!(put_webhook_of(&cp, svc, url).await.status, 200, "{svc}");
        assert_eq!(put_source_of(&cp, svc, "probe", url).await.status, 201);
        assert_eq!(put_inventory_of(&cp, svc, url).await.status, 200);
    }
    // A port that never answers, for a source (its timeout is 2 s here).
    cp.create_service("pd", json!({})).await;
    let stall = format!("{}/stall", h.base);
    assert_eq!(put_source_of(&cp, "pd", "probe", &stall).await.status, 201);

    // Act + assert: every error reads the same.
    assert_eq!(source_error_of(&cp, "pd", "probe").await, "request failed");
    for (svc, _) in &probes {
        assert_eq!(
            source_error_of(&cp, svc, "probe").await,
            "request failed",
            "{svc}"
        );
        let inventory = inventory_error_of(&cp, svc, Duration::from_secs(20)).await;
        assert_eq!(inventory, "request failed", "{svc}");
        let failed = format!(
            "SELECT COUNT(*) AS n FROM alert_events WHERE service = '{svc}' AND last_error IS NOT NULL"
        );
        eventually(
            &format!("{svc}'s webhook fails"),
            Duration::from_secs(30),
            || async { (cp.db.scalar(&failed) > 0).then_some(()) },
        )
        .await;
        let other = format!(
            "SELECT COUNT(*) AS n FROM alert_events WHERE service = '{svc}' \
             AND last_error IS NOT NULL AND last_error <> 'request failed'"
        );
        assert_eq!(
            cp.db.scalar(&other),
            0,
            "{svc}: a webhook error tells the port apart"
        );
    }
    for v in [
        cp.admin().get("/v1/alerts").await.body,
        cp.admin().get("/v1/services/pc/inventory").await.body,
        cp.admin().get("/v1/services/pc/sources").await.body,
    ] {
        let text = v.to_string().to_lowercase();
        for leak in [
            "refused",
            "reset",
            "timed out",
            "connection closed",
            "incomplete",
            "ssh",
            &MARKER.to_lowercase(),
        ] {
            assert!(!text.contains(leak), "{leak}: {text}");
        }
    }
    assert_eq!(warnings_with(MARKER), Vec::<String>::new());
}
