//! What the fleet looks like: alerts (`GET /v1/alerts`) and the per-service summary
//! (`GET /v1/status`), scoped to the caller's tenant.

use super::extract::{ApiQuery, Caller, PageQuery, page};
use super::openapi as doc;
use super::{ApiError, AppState};
use crate::store;
use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AlertQuery {
    /// Only this service's alerts.
    pub service: Option<String>,
    /// `firing` or `resolved`.
    #[param(pattern = "^(firing|resolved)$")]
    pub state: Option<String>,
    /// At most this many, 1..=1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<i64>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
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
#[utoipa::path(
    get,
    path = "/v1/alerts",
    tag = "alerts",
    operation_id = "listAlerts",
    summary = "Alerts of the services the caller can see.",
    params(AlertQuery),
    responses(
        (status = 200, description = "Alerts, newest first.", body = doc::AlertList),
        (status = 400, response = doc::BadRequest),
        (status = 401, response = doc::Unauthorized),
        (status = 404, response = doc::NotFound),
    ),
    security(("bearer" = [])),
)]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<AlertQuery>,
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
#[derive(Debug, Default, Serialize, Clone, utoipa::ToSchema)]
pub struct ServiceStatus {
    pub service: String,
    pub nodes: i64,
    /// Acknowledged the desired version and not stale.
    pub ok: i64,
    /// Behind the desired version and not stale (yet).
    pub pending: i64,
    /// With at least one firing staleness alert.
    pub stale: i64,
    /// Listed in the service's inventory but never enrolled.
    pub never_enrolled: i64,
    /// Installed certificate expires within 24 hours (with hour-long certificates: all
    /// nodes that hold one).
    pub expiring_24h: i64,
    /// Installed certificate expires within the service's `alert_before`.
    pub expiring_alert_before: i64,
    pub deliveries_last_hour: i64,
    pub firing_alerts: i64,
    /// `cert_ttl - renew_before`: how long the control plane may be away before
    /// certificates start to expire.
    pub outage_budget_seconds: i64,
}

impl From<store::status::ServiceCounts> for ServiceStatus {
    fn from(c: store::status::ServiceCounts) -> Self {
        Self {
            service: c.service,
            nodes: c.nodes,
            ok: c.ok,
            pending: c.pending,
            stale: c.stale,
            never_enrolled: c.never_enrolled,
            expiring_24h: c.expiring_24h,
            expiring_alert_before: c.expiring_alert_before,
            deliveries_last_hour: c.deliveries_last_hour,
            firing_alerts: c.firing_alerts,
            outage_budget_seconds: c.outage_budget_seconds,
        }
    }
}

/// `GET /v1/status?limit=&cursor=&service=`.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct StatusQuery {
    /// Services per page, 1..=1000 (default 100), in name order.
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Only this service's line (404 when it does not exist or is not the caller's);
    /// not combined with `cursor`.
    pub service: Option<String>,
}

/// `GET /v1/status`: the fleet total and one page of the visible services.
#[utoipa::path(
    get,
    path = "/v1/status",
    tag = "alerts",
    operation_id = "getStatus",
    summary = "The fleet and a page of the visible services at a glance.",
    description = "`fleet` is exact over every service the caller sees, on every page; \
        `services` is one page in name order, continued with `next_cursor`.",
    params(StatusQuery),
    responses(
        (status = 200, description = "The status summary.", body = doc::StatusSummary),
        (status = 400, response = doc::BadRequest),
        (status = 401, response = doc::Unauthorized),
        (status = 404, response = doc::NotFound),
    ),
    security(("bearer" = [])),
)]
pub async fn status(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<StatusQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let page_query = PageQuery {
        limit: q.limit,
        cursor: q.cursor.clone(),
    };
    let (limit, after) = (page_query.limit()?, page_query.after()?);
    let only = match &q.service {
        Some(_) if q.cursor.is_some() => {
            return Err(ApiError::bad_request(
                "invalid-query",
                "service and cursor cannot be combined",
            ));
        }
        Some(svc) => Some(super::services::visible(&state, &caller, svc).await?.name),
        None => None,
    };
    let tenant = caller.tenant.clone();
    let now = store::now_ms();
    // One snapshot, so the fleet and the page agree with each other.
    let (fleet, rows) = state
        .store
        .snapshot(move |c| {
            let fleet = store::status::fleet(c, now, tenant.as_deref())?;
            let rows = match &only {
                Some(name) => store::status::named(c, now, name)?.into_iter().collect(),
                None => {
                    store::status::page(c, now, tenant.as_deref(), after.as_deref(), limit + 1)?
                }
            };
            Ok::<_, store::StoreError>((fleet, rows))
        })
        .await?;
    let p = page(rows, limit, |r| r.service.clone(), ServiceStatus::from);
    Ok(Json(serde_json::json!({
        "fleet": ServiceStatus::from(fleet),
        "services": p.items,
        "next_cursor": p.next_cursor,
    })))
}

/// The fleet total (summed from the lines) and one line per service, for the dashboard
/// and `/metrics`, which need every service.
pub async fn summary(state: &AppState) -> Result<(ServiceStatus, Vec<ServiceStatus>), ApiError> {
    let now = store::now_ms();
    let counts = state
        .store
        .read(move |c| store::status::counts(c, now))
        .await?;
    let lines: Vec<ServiceStatus> = counts.into_iter().map(ServiceStatus::from).collect();
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
            f.never_enrolled += s.never_enrolled;
            f.expiring_24h += s.expiring_24h;
            f.expiring_alert_before += s.expiring_alert_before;
            f.deliveries_last_hour += s.deliveries_last_hour;
            f.firing_alerts += s.firing_alerts;
            f
        },
    );
    Ok((fleet, lines))
}
