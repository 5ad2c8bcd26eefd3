//! What the fleet looks like: alerts (`GET /v1/alerts`) and the per-service summary
//! (`GET /v1/status`), scoped to the caller's tenant.

use super::extract::Caller;
use super::{ApiError, AppState};
use crate::store::{self, schema::deliveries, schema::nodes, schema::services};
use axum::Json;
use axum::extract::{Query, State};
use diesel::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertQuery {
    pub service: Option<String>,
    pub state: Option<String>,
    pub limit: Option<i64>,
}

#[derive(Debug, Serialize)]
pub struct Alert {
    pub id: String,
    pub service: String,
    /// Empty for a service-wide alert.
    pub node_id: String,
    pub reason: String,
    pub state: String,
    pub detail: String,
    #[serde(with = "time::serde::rfc3339")]
    pub fired_at: time::OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub resolved_at: Option<time::OffsetDateTime>,
}

/// Names of the services the caller may see (None: every service, for admins).
async fn scope(state: &AppState, caller: &Caller) -> Result<Option<Vec<String>>, ApiError> {
    let Some(tenant) = caller.tenant.clone() else {
        return Ok(None);
    };
    let names = state
        .store
        .read(move |c| {
            store::services::list(c, Some(&tenant), None, i64::MAX)
                .map(|v| v.into_iter().map(|s| s.name).collect())
        })
        .await?;
    Ok(Some(names))
}

/// `GET /v1/alerts?service=&state=firing|resolved&limit=`.
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<AlertQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    if let Some(s) = &q.state
        && s != "firing"
        && s != "resolved"
    {
        return Err(ApiError::bad_request(
            "invalid-state",
            "state must be firing or resolved",
        ));
    }
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::bad_request(
            "invalid-limit",
            "limit must be 1..=1000",
        ));
    }
    let mut services = scope(&state, &caller).await?;
    if let Some(svc) = &q.service {
        super::services::visible(&state, &caller, svc).await?;
        services = Some(vec![svc.clone()]);
    }
    let rows = state
        .store
        .read(move |c| store::alerts::list(c, services, q.state, limit))
        .await?;
    let items: Vec<Alert> = rows
        .into_iter()
        .map(|r| Alert {
            id: r.id,
            service: r.service,
            node_id: r.node_id,
            reason: r.reason,
            state: r.state,
            detail: r.detail,
            fired_at: store::from_ms(r.fired_at),
            resolved_at: r.resolved_at.map(store::from_ms),
        })
        .collect();
    Ok(Json(serde_json::json!({ "items": items })))
}

/// One service's line of the status summary.
#[derive(Debug, Default, Serialize, Clone)]
pub struct ServiceStatus {
    pub service: String,
    pub nodes: i64,
    /// Acknowledged the desired version and not stale.
    pub ok: i64,
    /// Behind the desired version, within the grace period.
    pub pending: i64,
    /// With at least one firing alert.
    pub stale: i64,
    pub expiring_24h: i64,
    pub deliveries_last_hour: i64,
    pub firing_alerts: i64,
    /// `cert_ttl - renew_before`: how long the control plane may be away before
    /// certificates start to expire.
    pub outage_budget_seconds: i64,
}

type Counts = Vec<(String, i64)>;

/// `GET /v1/status`: the fleet and each visible service.
pub async fn status(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<serde_json::Value>, ApiError> {
    let visible = scope(&state, &caller).await?;
    let (fleet, lines) = summary(&state, visible).await?;
    Ok(Json(
        serde_json::json!({ "fleet": fleet, "services": lines }),
    ))
}

/// The fleet total and one line per service in `visible` (None: every service).
pub async fn summary(
    state: &AppState,
    visible: Option<Vec<String>>,
) -> Result<(ServiceStatus, Vec<ServiceStatus>), ApiError> {
    let now = store::now_ms();
    let (svcs, totals, lagging, expiring, deliveries, stale_nodes, firing) = state
        .store
        .read(move |c| {
            let svcs: Vec<(String, i64, i64)> = store::on_backend!(c, c => services::table
                .select((services::name, services::cert_ttl_seconds, services::renew_before_seconds))
                .load(c))?;
            let count_by = |c: &mut store::Conn<'_>, which: u8| -> QueryResult<Counts> {
                use diesel::dsl::count_star;
                store::on_backend!(c, c => match which {
                    0 => nodes::table.group_by(nodes::service).select((nodes::service, count_star())).load(c),
                    1 => nodes::table
                        .filter(nodes::acked_version.lt(nodes::desired_version))
                        .group_by(nodes::service)
                        .select((nodes::service, count_star()))
                        .load(c),
                    2 => nodes::table
                        .filter(nodes::cert_not_after.lt(now + 86_400_000))
                        .group_by(nodes::service)
                        .select((nodes::service, count_star()))
                        .load(c),
                    _ => deliveries::table
                        .filter(deliveries::created_at.gt(now - 3_600_000))
                        .group_by(deliveries::service)
                        .select((deliveries::service, count_star()))
                        .load(c),
                })
            };
            let (t, l, e, d) = (count_by(c, 0)?, count_by(c, 1)?, count_by(c, 2)?, count_by(c, 3)?);
            let firing = store::alerts::firing(c)?;
            Ok((svcs, t, l, e, d, firing.iter().filter(|a| !a.node_id.is_empty()).map(|a| (a.service.clone(), a.node_id.clone())).collect::<std::collections::HashSet<_>>(), firing))
        })
        .await?;
    // Index every count by service once: per-service lookups stay O(1) at 10k services.
    use std::collections::HashMap;
    let by_service = |v: Counts| -> HashMap<String, i64> { v.into_iter().collect() };
    let (totals, lagging, expiring, deliveries) = (
        by_service(totals),
        by_service(lagging),
        by_service(expiring),
        by_service(deliveries),
    );
    let get = |m: &HashMap<String, i64>, s: &str| m.get(s).copied().unwrap_or(0);
    let mut stale_per_service: HashMap<&str, i64> = HashMap::new();
    for (svc, _) in &stale_nodes {
        *stale_per_service.entry(svc.as_str()).or_default() += 1;
    }
    let mut firing_per_service: HashMap<&str, i64> = HashMap::new();
    for a in &firing {
        *firing_per_service.entry(a.service.as_str()).or_default() += 1;
    }
    let mut lines = Vec::new();
    for (name, ttl, renew_before) in svcs {
        if visible.as_ref().is_some_and(|v| !v.contains(&name)) {
            continue;
        }
        let stale = stale_per_service.get(name.as_str()).copied().unwrap_or(0);
        let nodes = get(&totals, &name);
        let pending = (get(&lagging, &name) - stale).max(0);
        lines.push(ServiceStatus {
            nodes,
            ok: (nodes - pending - stale).max(0),
            pending,
            stale,
            expiring_24h: get(&expiring, &name),
            deliveries_last_hour: get(&deliveries, &name),
            firing_alerts: firing_per_service.get(name.as_str()).copied().unwrap_or(0),
            outage_budget_seconds: ttl - renew_before,
            service: name,
        });
    }
    let fleet = lines.iter().fold(
        ServiceStatus {
            service: "*".into(),
            ..Default::default()
        },
        |mut f, s| {
            f.nodes += s.nodes;
            f.ok += s.ok;
            f.pending += s.pending;
            f.stale += s.stale;
            f.expiring_24h += s.expiring_24h;
            f.deliveries_last_hour += s.deliveries_last_hour;
            f.firing_alerts += s.firing_alerts;
            f
        },
    );
    Ok((fleet, lines))
}
