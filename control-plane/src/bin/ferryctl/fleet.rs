//! How the fleet looks to a human: the `/v1/status` summary and `/v1/alerts` items as
//! `ferryctl` reads them, and their tables. Pure functions; no I/O.
//!
//! These bodies are not in `ferry_shared::api` yet, so their shape is declared here,
//! reading only the fields shown. A field added by a newer server is ignored, and one a
//! server may not send yet is optional.

use crate::output::{NONE, Table, duration, opt_time, time, truncate};
use serde::Deserialize;
use time::OffsetDateTime;

/// `GET /v1/status`: the fleet total and one page of the visible services.
#[derive(Debug, Clone, Deserialize)]
pub struct StatusDoc {
    pub fleet: ServiceStatus,
    pub services: Vec<ServiceStatus>,
    /// The next page of services (servers that page them).
    #[serde(default)]
    pub next_cursor: Option<String>,
}

/// One line of the status summary (`service` is `*` for the fleet).
#[derive(Debug, Clone, Deserialize)]
pub struct ServiceStatus {
    pub service: String,
    pub nodes: u64,
    /// Acknowledged the desired version and not stale.
    pub ok: u64,
    /// Behind the desired version and not stale (yet).
    pub pending: u64,
    /// With at least one firing alert.
    pub stale: u64,
    pub expiring_24h: u64,
    /// Installed certificate inside the service's `alert_before` (newer servers).
    #[serde(default)]
    pub expiring_alert_before: Option<u64>,
    pub deliveries_last_hour: u64,
    pub firing_alerts: u64,
    /// How long the control plane may be away before certificates start to expire;
    /// not meaningful for the fleet line.
    pub outage_budget_seconds: u64,
}

/// One alert of `GET /v1/alerts`.
#[derive(Debug, Clone, Deserialize)]
pub struct Alert {
    pub id: String,
    pub service: String,
    /// Empty for a service-wide alert.
    pub node_id: String,
    pub reason: String,
    pub state: String,
    pub detail: String,
    #[serde(with = "time::serde::rfc3339")]
    pub fired_at: OffsetDateTime,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub resolved_at: Option<OffsetDateTime>,
}

/// Shown in the service column for the fleet total: not a valid service name, so it
/// cannot be mistaken for one.
pub const FLEET: &str = "(fleet)";

/// The status table: the fleet line (when given) first, then one line per service.
pub fn status(fleet: Option<&ServiceStatus>, services: &[ServiceStatus]) -> String {
    let mut t = Table::new(&[
        "service",
        "nodes",
        "ok",
        "pending",
        "stale",
        "expiring<24h",
        "expiring<alert",
        "alerts",
        "deliveries/1h",
        "outage budget",
    ]);
    if let Some(f) = fleet {
        t.row(status_row(FLEET, f, NONE.to_owned()));
    }
    for s in services {
        t.row(status_row(&s.service, s, duration(s.outage_budget_seconds)));
    }
    t.render()
}

fn status_row(name: &str, s: &ServiceStatus, budget: String) -> Vec<String> {
    vec![
        name.to_owned(),
        s.nodes.to_string(),
        s.ok.to_string(),
        s.pending.to_string(),
        s.stale.to_string(),
        s.expiring_24h.to_string(),
        s.expiring_alert_before
            .map(|n| n.to_string())
            .unwrap_or_default(),
        s.firing_alerts.to_string(),
        s.deliveries_last_hour.to_string(),
        budget,
    ]
}

pub fn alerts(items: &[Alert]) -> String {
    let mut t = Table::new(&[
        "id", "service", "node", "reason", "state", "fired", "resolved", "detail",
    ]);
    for a in items {
        t.row(vec![
            a.id.clone(),
            a.service.clone(),
            a.node_id.clone(),
            a.reason.clone(),
            a.state.clone(),
            time(a.fired_at),
            opt_time(a.resolved_at),
            truncate(&a.detail, 60),
        ]);
    }
    t.render()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn line(service: &str, nodes: u64) -> serde_json::Value {
        json!({
            "service": service, "nodes": nodes, "ok": 1, "pending": 0, "stale": 1,
            "expiring_24h": 2, "expiring_alert_before": 0, "deliveries_last_hour": 5,
            "firing_alerts": 2, "outage_budget_seconds": 400, "future_field": true
        })
    }

    #[test]
    fn status_shows_the_fleet_first_then_each_service() {
        let doc: StatusDoc = serde_json::from_value(json!({
            "fleet": line("*", 2), "services": [line("web", 2)]
        }))
        .expect("parses");
        let text = status(Some(&doc.fleet), &doc.services);
        let rows: Vec<Vec<&str>> = text
            .lines()
            .map(|l| l.split_whitespace().collect())
            .collect();
        assert_eq!(rows[0][..3], ["SERVICE", "NODES", "OK"]);
        assert_eq!(
            rows[1],
            ["(fleet)", "2", "1", "0", "1", "2", "0", "2", "5", "-"]
        );
        assert_eq!(
            rows[2],
            ["web", "2", "1", "0", "1", "2", "0", "2", "5", "6m40s"]
        );
        assert_eq!(rows.len(), 3);
        assert_eq!(status(None, &doc.services).lines().count(), 2);
    }

    #[test]
    fn older_servers_without_alert_before_counts_still_render() {
        let mut old = line("web", 1);
        old.as_object_mut()
            .expect("object")
            .remove("expiring_alert_before");
        let s: ServiceStatus = serde_json::from_value(old).expect("parses");
        let row = status(None, &[s]);
        let cells: Vec<&str> = row
            .lines()
            .nth(1)
            .expect("row")
            .split_whitespace()
            .collect();
        assert_eq!(cells[6], "-");
    }

    #[test]
    fn alert_rows_mark_service_wide_alerts_and_open_ones() {
        let items: Vec<Alert> = serde_json::from_value(json!([
            { "id": "a1", "service": "web", "node_id": "", "reason": "stale-share",
              "state": "firing", "detail": "1 of 2 nodes are stale",
              "fired_at": "2026-01-01T00:00:00Z", "resolved_at": null },
            { "id": "a2", "service": "web", "node_id": "n-1", "reason": "unseen",
              "state": "resolved", "detail": "last\nseen never",
              "fired_at": "2026-01-01T00:00:00Z", "resolved_at": "2026-01-01T00:05:00Z" }
        ]))
        .expect("parses");
        let text = alerts(&items);
        let mut lines = text.lines().skip(1);
        let first: Vec<&str> = lines.next().expect("row").split_whitespace().collect();
        assert_eq!(
            first[..7],
            [
                "a1",
                "web",
                "-",
                "stale-share",
                "firing",
                "2026-01-01T00:00:00Z",
                "-"
            ]
        );
        let second = lines.next().expect("row");
        assert!(second.contains("last\\nseen never"), "{second}");
        assert!(second.contains("2026-01-01T00:05:00Z"), "{second}");
        assert!(serde_json::from_value::<Vec<Alert>>(json!([{ "id": 1 }])).is_err());
    }
}
