//! `PUT /v1/services/{svc}/webhook {url}`: sets the service's alert webhook and returns
//! a new signing secret, shown once and stored sealed; `DELETE` removes it. The URL
//! carries no credentials (it is stored and audited in clear) and must lead where the
//! outbound policy allows.

use super::extract::{ApiJson, ApiPath, Caller};
use super::openapi as doc;
use super::services::visible;
use super::{ApiError, AppState, new_secret};
use crate::store::{self, audit};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookRequest {
    /// `http(s)://` URL the alert events are POSTed to.
    pub url: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct WebhookCreated {
    pub url: String,
    /// HMAC-SHA256 key of the `Ferry-Signature` header; shown once.
    pub secret: String,
}

#[utoipa::path(
    put,
    path = "/v1/services/{svc}/webhook",
    tag = "services",
    operation_id = "putWebhook",
    summary = "Set the service's alert webhook; returns a new signing secret, shown once.",
    params(doc::SvcPath),
    request_body = WebhookRequest,
    responses(
        (status = 200, description = "Set; `secret` is shown only now.", body = WebhookCreated),
        (status = 400, response = doc::BadRequest),
        (status = 401, response = doc::Unauthorized),
        (status = 404, response = doc::NotFound),
        (status = 422, response = doc::Unprocessable),
    ),
    security(("bearer" = [])),
)]
pub async fn put(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(svc): ApiPath<String>,
    ApiJson(req): ApiJson<WebhookRequest>,
) -> Result<Json<WebhookCreated>, ApiError> {
    let mut row = visible(&state, &caller, &svc).await?;
    if req.url.len() > 2000 || req.url.chars().any(char::is_control) {
        return Err(ApiError::unprocessable(
            "invalid-url",
            "url must be an http(s) URL with a host, at most 2000 bytes",
        ));
    }
    crate::outbound::checked_destination(&state.outbound, &req.url).await?;
    let url = reqwest::Url::parse(&req.url).map_err(|_| {
        ApiError::unprocessable("invalid-url", "url must be an http(s) URL with a host")
    })?;
    let secret = new_secret("fyw_")?;
    let aad = format!("webhook/{}", row.name);
    row.webhook_secret_sealed = Some(
        state
            .master
            .seal(secret.as_bytes(), aad.as_bytes())
            .map_err(|e| ApiError::Internal(e.into()))?,
    );
    row.webhook_key_id = Some(state.master.id().to_owned());
    row.webhook_url = Some(url.to_string());
    row.updated_at = store::now_ms();
    let entry = caller.audit(
        Some(&row.tenant),
        "service.webhook.set",
        &row.name,
        serde_json::json!({ "url": url.as_str() }),
    );
    state
        .store
        .write(move |c| {
            store::services::update(c, &row)?;
            audit::record(c, &entry).map_err(ApiError::from)
        })
        .await?;
    Ok(Json(WebhookCreated {
        url: url.to_string(),
        secret,
    }))
}

#[utoipa::path(
    delete,
    path = "/v1/services/{svc}/webhook",
    tag = "services",
    operation_id = "deleteWebhook",
    summary = "Remove the service's alert webhook.",
    params(doc::SvcPath),
    responses(
        (status = 204, description = "Removed."),
        (status = 400, response = doc::BadRequest),
        (status = 401, response = doc::Unauthorized),
        (status = 404, response = doc::NotFound),
    ),
    security(("bearer" = [])),
)]
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(svc): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    let mut row = visible(&state, &caller, &svc).await?;
    row.webhook_url = None;
    row.webhook_secret_sealed = None;
    row.webhook_key_id = None;
    row.updated_at = store::now_ms();
    let entry = caller.audit(
        Some(&row.tenant),
        "service.webhook.delete",
        &row.name,
        serde_json::json!({}),
    );
    state
        .store
        .write(move |c| {
            store::services::update(c, &row)?;
            audit::record(c, &entry).map_err(ApiError::from)
        })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
