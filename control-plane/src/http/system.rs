//! Unauthenticated probes and the public trust bundle; the admin audit log.

use super::extract::{ApiQuery, Caller, PageQuery, page};
use super::openapi as doc;
use super::{ApiError, AppState};
use crate::store;
use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use ferry_shared::api::{AuditEntry, Page};

#[utoipa::path(
    get,
    path = "/healthz",
    tag = "system",
    operation_id = "healthz",
    summary = "Liveness: the process answers.",
    responses(
        (status = 200, description = "Alive.", body = String, content_type = "text/plain"),
    ),
)]
pub async fn healthz() -> &'static str {
    "ok\n"
}

/// Ready when the database answers and its schema is current.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "system",
    operation_id = "readyz",
    summary = "Readiness: the database answers and its schema is current.",
    responses(
        (status = 200, description = "Ready.", body = String, content_type = "text/plain"),
        (status = 503, response = doc::NotReady),
    ),
)]
pub async fn readyz(State(state): State<AppState>) -> Result<&'static str, ApiError> {
    if state.store.ready().await {
        Ok("ready\n")
    } else {
        Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not-ready",
            "database unreachable or migrations pending",
        ))
    }
}

/// The trust anchors delivered to nodes, PEM. Public: what verifies node certificates
/// (never the control plane: see [`control_plane_ca`]).
#[utoipa::path(
    get,
    path = "/v1/trust-bundle",
    tag = "system",
    operation_id = "getTrustBundle",
    summary = "The trust anchors of node certificates (PEM).",
    responses(
        (status = 200, description = "PEM of the CA certificates that verify node certificates (the `ca.pem` nodes get).", body = String, content_type = "application/x-pem-file"),
    ),
)]
pub async fn trust_bundle(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/x-pem-file")],
        state.ca.bundle_pem().to_owned(),
    )
}

/// The control-plane CA, PEM. Public: agents and ferryctl fetch it once, unverified,
/// and keep it only if it hashes to the fingerprint they were given.
#[utoipa::path(
    get,
    path = "/v1/control-plane-ca",
    tag = "system",
    operation_id = "getControlPlaneCa",
    summary = "The CA that signs the control plane's server certificate and nothing else (PEM).",
    responses(
        (status = 200, description = "PEM of the control-plane CA: its SHA-256 is the `ca_fingerprint` printed with join tokens.", body = String, content_type = "application/x-pem-file"),
    ),
)]
pub async fn control_plane_ca(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/x-pem-file")],
        state.control_plane_ca.bundle_pem().to_owned(),
    )
}

#[utoipa::path(
    get,
    path = "/v1/audit",
    tag = "system",
    operation_id = "listAudit",
    summary = "The audit log, newest first (admin).",
    params(PageQuery),
    responses(
        (status = 200, description = "One page of audit entries.", body = Page<AuditEntry>),
        (status = 400, response = doc::BadRequest),
        (status = 401, response = doc::Unauthorized),
        (status = 403, response = doc::Forbidden),
    ),
    security(("bearer" = [])),
)]
pub async fn audit(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> Result<Json<Page<AuditEntry>>, ApiError> {
    caller.require_admin()?;
    let limit = q.limit()?;
    let before = q
        .after()?
        .map(|s| {
            s.parse::<i64>().map_err(|_| {
                ApiError::bad_request("invalid-cursor", "cursor is not one this server issued")
            })
        })
        .transpose()?;
    let rows = state
        .store
        .read(move |c| store::audit::list(c, before, limit + 1))
        .await?;
    Ok(Json(page(
        rows,
        limit,
        |r| r.id.to_string(),
        |r| AuditEntry {
            id: r.id,
            at: store::from_ms(r.at),
            actor: r.actor,
            tenant: r.tenant,
            action: r.action,
            target: r.target,
            detail: serde_json::from_str(&r.detail).unwrap_or(serde_json::Value::Null),
        },
    )))
}
