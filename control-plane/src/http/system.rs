//! Unauthenticated probes and the public trust bundle; the admin audit log.

use super::extract::{Caller, PageQuery, page};
use super::{ApiError, AppState};
use crate::store;
use axum::Json;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use ferry_shared::api::{AuditEntry, Page};

pub async fn healthz() -> &'static str {
    "ok\n"
}

/// Ready when the database answers and its schema is current.
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

/// The CA certificates, PEM. Public: agents fetch it to check their pinned fingerprint.
pub async fn trust_bundle(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/x-pem-file")],
        state.ca.bundle_pem().to_owned(),
    )
}

pub async fn audit(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<PageQuery>,
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
