//! `GET /metrics`: Prometheus text exposition, admin bearer token required (service
//! names are tenant data). Per-service aggregates only, never a series per node. The
//! names exported are listed in docs/metrics.md, and a test checks the two agree.

use super::extract::Caller;
use super::openapi as doc;
use super::{ApiError, AppState};
use crate::store;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use std::fmt::Write;
use std::sync::atomic::Ordering;

/// Upper bounds (seconds) of the refresh-to-ack histogram buckets.
const LATENCY_BUCKETS: &[f64] = &[
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// Prometheus label values escape backslash, quote and newline.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

struct Out(String);

impl Out {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }
    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        let labels: Vec<String> = labels
            .iter()
            .map(|(k, v)| format!("{k}=\"{}\"", label(v)))
            .collect();
        if labels.is_empty() {
            let _ = writeln!(self.0, "{name} {value}");
        } else {
            let _ = writeln!(self.0, "{name}{{{}}} {value}", labels.join(","));
        }
    }
}

#[utoipa::path(
    get,
    path = "/metrics",
    tag = "system",
    operation_id = "getMetrics",
    summary = "Prometheus metrics (admin): per-service aggregates, never per node.",
    responses(
        (status = 200, description = "Prometheus text exposition.", body = String, content_type = "text/plain; version=0.0.4"),
        (status = 401, response = doc::Unauthorized),
        (status = 403, response = doc::Forbidden),
    ),
    security(("bearer" = [])),
)]
pub async fn metrics(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<impl IntoResponse, ApiError> {
    caller.require_admin()?;
    let (_, services) = super::alerts::summary(&state).await?;
    let now = store::now_ms();
    let (deliveries, alerts, expiry, latencies) = state
        .store
        .read(move |c| {
            Ok((
                store::metrics::deliveries_by_state(c)?,
                store::metrics::alerts_by_state(c)?,
                store::metrics::soonest_expiry(c)?,
                store::metrics::recent_latencies_ms(c, now - 3_600_000, 100_000)?,
            ))
        })
        .await?;
    let mut o = Out(String::with_capacity(4096));

    o.family(
        "ferry_nodes",
        "gauge",
        "Nodes per service by state (ok, pending, stale).",
    );
    for s in &services {
        for (st, v) in [("ok", s.ok), ("pending", s.pending), ("stale", s.stale)] {
            o.sample(
                "ferry_nodes",
                &[("service", &s.service), ("state", st)],
                v as f64,
            );
        }
    }
    o.family(
        "ferry_nodes_expiring_24h",
        "gauge",
        "Nodes whose installed certificate expires within 24 hours.",
    );
    for s in &services {
        o.sample(
            "ferry_nodes_expiring_24h",
            &[("service", &s.service)],
            s.expiring_24h as f64,
        );
    }
    o.family(
        "ferry_cert_expiry_seconds",
        "gauge",
        "Seconds until the soonest installed certificate of the service expires.",
    );
    for (svc, soonest) in &expiry {
        if let Some(t) = soonest {
            o.sample(
                "ferry_cert_expiry_seconds",
                &[("service", svc)],
                (t - now) as f64 / 1000.0,
            );
        }
    }
    o.family(
        "ferry_deliveries",
        "gauge",
        "Deliveries (forced refreshes and rotation entries) by state.",
    );
    for (st, n) in &deliveries {
        o.sample("ferry_deliveries", &[("state", st)], *n as f64);
    }
    o.family(
        "ferry_refresh_to_ack_seconds",
        "histogram",
        "Refresh call to ack persisted, deliveries finished in the last hour.",
    );
    for le in LATENCY_BUCKETS {
        let n = latencies
            .iter()
            .filter(|ms| (**ms as f64) / 1000.0 <= *le)
            .count();
        o.sample(
            "ferry_refresh_to_ack_seconds_bucket",
            &[("le", &le.to_string())],
            n as f64,
        );
    }
    o.sample(
        "ferry_refresh_to_ack_seconds_bucket",
        &[("le", "+Inf")],
        latencies.len() as f64,
    );
    o.sample(
        "ferry_refresh_to_ack_seconds_sum",
        &[],
        latencies.iter().sum::<i64>() as f64 / 1000.0,
    );
    o.sample(
        "ferry_refresh_to_ack_seconds_count",
        &[],
        latencies.len() as f64,
    );
    o.family(
        "ferry_alerts",
        "gauge",
        "Alerts by state (firing, resolved).",
    );
    for (st, n) in &alerts {
        o.sample("ferry_alerts", &[("state", st)], *n as f64);
    }
    o.family(
        "ferry_long_polls_held",
        "gauge",
        "Agent long-polls held by this replica right now.",
    );
    o.sample("ferry_long_polls_held", &[], state.waiters.held() as f64);
    let stats = &state.stats;
    o.family(
        "ferry_bundles_served_total",
        "counter",
        "Long-polls answered with a bundle by this replica.",
    );
    o.sample(
        "ferry_bundles_served_total",
        &[],
        stats.bundles_served.load(Ordering::Relaxed) as f64,
    );
    o.family(
        "ferry_polls_not_modified_total",
        "counter",
        "Long-polls answered 304 by this replica.",
    );
    o.sample(
        "ferry_polls_not_modified_total",
        &[],
        stats.polls_not_modified.load(Ordering::Relaxed) as f64,
    );
    o.family(
        "ferry_acks_total",
        "counter",
        "Acks persisted by this replica.",
    );
    o.sample(
        "ferry_acks_total",
        &[],
        stats.acks.load(Ordering::Relaxed) as f64,
    );
    let (hits, misses) = state.waiters.cache.counts();
    let (service_hits, service_misses) = state.waiters.services_cache.counts();
    for (name, help, v) in [
        (
            "ferry_ack_batches_total",
            "Transactions that committed acks (group commit: many acks each).",
            state.acks.batches() as f64,
        ),
        (
            "ferry_node_cache_hits_total",
            "Agent requests whose node check was answered from memory.",
            hits as f64,
        ),
        (
            "ferry_node_cache_misses_total",
            "Agent requests whose node check read the database.",
            misses as f64,
        ),
        (
            "ferry_service_cache_hits_total",
            "Bundles served with their service's part from memory.",
            service_hits as f64,
        ),
        (
            "ferry_service_cache_misses_total",
            "Bundles served after reading their service's part from the database.",
            service_misses as f64,
        ),
    ] {
        o.family(name, "counter", help);
        o.sample(name, &[], v);
    }
    for (name, help, v) in [
        (
            "ferry_enroll_refused_total",
            "Enrollments refused with 429 by this replica (too many unknown join tokens from one address).",
            &stats.enroll_refused,
        ),
        (
            "ferry_auth_refused_total",
            "API requests refused with 429 by this replica (too many failed bearer tokens from one address).",
            &stats.auth_refused,
        ),
        (
            "ferry_connections_refused_total",
            "Connections closed at accept by this replica (too many open from one address).",
            &stats.connections_refused,
        ),
    ] {
        o.family(name, "counter", help);
        o.sample(name, &[], v.load(Ordering::Relaxed) as f64);
    }
    o.family(
        "ferry_job_last_pass_seconds",
        "gauge",
        "Duration of the last pass of each background job on this replica.",
    );
    for (job, v) in [
        ("renewal", &stats.renewal_pass_ms),
        ("rotation", &stats.rotation_pass_ms),
        ("staleness", &stats.staleness_pass_ms),
    ] {
        o.sample(
            "ferry_job_last_pass_seconds",
            &[("job", job)],
            v.load(Ordering::Relaxed) as f64 / 1000.0,
        );
    }
    let (open, idle) = state.store.pool_state();
    o.family(
        "ferry_db_pool_connections",
        "gauge",
        "Database connections of this replica's pool (in_use, idle).",
    );
    o.sample(
        "ferry_db_pool_connections",
        &[("state", "in_use")],
        open.saturating_sub(idle) as f64,
    );
    o.sample(
        "ferry_db_pool_connections",
        &[("state", "idle")],
        idle as f64,
    );
    o.family(
        "ferry_db_statements_total",
        "counter",
        "SQL statements this replica ran through its pool.",
    );
    o.sample(
        "ferry_db_statements_total",
        &[],
        state.store.statements() as f64,
    );
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], o.0))
}
