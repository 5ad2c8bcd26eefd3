//! The agent's delivery calls: the bundle long-poll, the ack, and (node-key mode) the
//! CSR. The node is always the one named by the verified client certificate.

use super::extract::{AgentIdentity, ApiJson, ApiQuery, check_serial, node_auth};
use super::openapi as doc;
use super::{ApiError, AppState};
use crate::delivery::acks::{Ack, AckError};
use crate::delivery::current::CurrentError;
use crate::delivery::{Changes, Serve};
use crate::store::{self, acks::AckRow};
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use ferry_shared::api::{
    AckRequest, AckStatus, BundleQuery, BundleResponse, CsrSubmission, MAX_POLL_WAIT_SECONDS,
    headers,
};
use ferry_shared::hash::parse_fingerprint;
use std::sync::atomic::Ordering;
use std::time::Duration;
use time::OffsetDateTime;

fn timing_headers(resp: &mut Response, retry_after_ms: u64) {
    let h = resp.headers_mut();
    let now = store::now_ms();
    h.insert(
        HeaderName::from_static(headers::SERVER_TIME_MS),
        HeaderValue::from(now),
    );
    h.insert(
        HeaderName::from_static(headers::RETRY_AFTER_MS),
        HeaderValue::from(retry_after_ms),
    );
}

/// A small random delay for the next poll, so agents released together spread out.
fn jitter_ms(max: u64) -> u64 {
    let mut b = [0u8; 8];
    let _ = aws_lc_rs::rand::fill(&mut b);
    u64::from_le_bytes(b) % max.max(1)
}

/// What serving needs from the state.
pub fn serve(state: &AppState) -> Serve<'_> {
    Serve {
        master: &state.master,
        trust_bundle: state.ca.bundle_pem(),
        waiters: Some(&state.waiters),
    }
}

/// `GET /v1/agent/bundle?since=V&wait=S`: the bundle at once when the desired version
/// is above `since`; otherwise held (without a database connection) until it changes
/// or `wait` elapses, then 304.
#[utoipa::path(
    get,
    path = "/v1/agent/bundle",
    tag = "agent",
    operation_id = "pollBundle",
    summary = "Long-poll for the caller's bundle newer than `since`.",
    params(doc::BundleParams),
    responses(
        (status = 200, description = "A newer bundle.", body = BundleResponse, headers(("ferry-server-time-ms" = u64, description = "The server's clock, unix milliseconds."), ("ferry-retry-after-ms" = u64, description = "How long to wait before the next poll, milliseconds."))),
        (status = 304, description = "Nothing newer within `wait`.", headers(("ferry-server-time-ms" = u64, description = "The server's clock, unix milliseconds."), ("ferry-retry-after-ms" = u64, description = "How long to wait before the next poll, milliseconds."))),
        (status = 401, response = doc::Unauthorized),
        (status = 403, response = doc::Forbidden),
        (status = 409, response = doc::Conflict),
    ),
    security(("mutual_tls" = [])),
)]
pub async fn bundle(
    State(state): State<AppState>,
    who: AgentIdentity,
    ApiQuery(q): ApiQuery<BundleQuery>,
) -> Result<Response, ApiError> {
    let wait = Duration::from_secs(q.wait.unwrap_or(0).min(MAX_POLL_WAIT_SECONDS))
        .min(state.max_poll_wait);
    let deadline = tokio::time::Instant::now() + wait;
    let (svc, node) = (who.id.service.to_string(), who.id.node.to_string());
    // Liveness: the node counts as connected while this poll is parked (written in
    // the next presence flush, not here).
    let _held = state.presence.hold(&svc, &node);
    let handle = state.waiters.register(&svc, &node);
    // At most two polls per identity here: a further one ends the oldest.
    let slot = state.waiters.polls.hold(&svc, &node);
    loop {
        // Register for wake-ups before reading, so a change committed in between wakes
        // us. The read is the node cache, which that change's wake also cleared: an
        // idle poll reads no database row.
        let notified = handle.notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let auth = node_auth(&state, &svc, &node, &who.serial).await?;
        // A node deleted or re-enrolled while its poll was held is refused, not served.
        let auth = check_serial(&who.id, auth, &who.serial)?;
        if auth.desired_version > q.since {
            let (s, n, st) = (svc.clone(), node.clone(), state.clone());
            let serial = who.serial.clone();
            let found = state
                .store
                .snapshot(move |c| {
                    serve(&st)
                        .current_and_cached(c, &s, &n, store::now_ms(), true, Some(&serial))
                        .map_err(|e| match e {
                            e @ CurrentError::Superseded => ApiError::superseded(e.to_string()),
                            e => ApiError::Internal(e.into()),
                        })
                })
                .await?;
            if let Some((bundle, cached)) = found {
                if !cached {
                    // Served after a metadata change: the ack compares with this hash.
                    state
                        .acks
                        .served(&svc, &node, bundle.version, &bundle.content_hash);
                }
                let body = BundleResponse {
                    bundle,
                    server_time: OffsetDateTime::now_utc(),
                };
                let mut resp = Json(body).into_response();
                timing_headers(&mut resp, 0);
                state.stats.bundles_served.fetch_add(1, Ordering::Relaxed);
                return Ok(resp);
            }
        }
        tokio::select! {
            _ = &mut notified => continue,
            _ = slot.evicted.notified() => {
                tracing::info!(spiffe_id = %who.id, "ended a held poll: newer polls of this node took its place");
                return Err(ApiError::conflict(
                    "newer polls of this node identity took this one's place (at most 2 are held per node)",
                ));
            }
            _ = tokio::time::sleep_until(deadline) => {
                let mut resp = StatusCode::NOT_MODIFIED.into_response();
                timing_headers(&mut resp, jitter_ms(1000));
                state.stats.polls_not_modified.fetch_add(1, Ordering::Relaxed);
                return Ok(resp);
            }
        }
    }
}

/// `POST /v1/agent/ack`: persisted before the answer; duplicates and acks of older
/// versions are harmless.
#[utoipa::path(
    post,
    path = "/v1/agent/ack",
    tag = "agent",
    operation_id = "ack",
    summary = "Acknowledge an install (persisted before the answer; duplicates are harmless).",
    request_body = AckRequest,
    responses(
        (status = 204, description = "Recorded."),
        (status = 401, response = doc::Unauthorized),
        (status = 403, response = doc::Forbidden),
        (status = 409, response = doc::Conflict),
        (status = 422, response = doc::Unprocessable),
    ),
    security(("mutual_tls" = [])),
)]
pub async fn ack(
    State(state): State<AppState>,
    who: AgentIdentity,
    ApiJson(req): ApiJson<AckRequest>,
) -> Result<StatusCode, ApiError> {
    let hash_ok = req
        .content_hash
        .strip_prefix("sha256:")
        .is_some_and(|h| parse_fingerprint(&format!("sha256:{h}")).is_some());
    if req.version < 1 || !hash_ok {
        return Err(ApiError::unprocessable(
            "invalid-ack",
            "version must be >= 1 and content_hash sha256:<64 hex>",
        ));
    }
    // Informational text, clipped; a NUL (PostgreSQL text cannot hold one) is replaced
    // rather than refused, so an odd hook message never blocks an ack.
    let clip = |s: Option<String>, n: usize| {
        s.map(|s| {
            s.chars()
                .take(n)
                .map(|c| {
                    if c == '\0' {
                        char::REPLACEMENT_CHARACTER
                    } else {
                        c
                    }
                })
                .collect::<String>()
        })
    };
    let installed = req.status == AckStatus::Installed;
    let row = AckRow {
        service: who.id.service.to_string(),
        node_id: who.id.node.to_string(),
        version: req.version,
        hash: req.content_hash.clone(),
        installed,
        error: clip(req.error, 2000)
            .or_else(|| (!installed).then(|| "install failed (no detail)".to_owned())),
        cert_not_after: req.cert_not_after.map(store::ms),
        hook_exit_code: req.hook_exit_code,
        clock_skew_ms: req.clock_skew_ms,
        agent_version: clip(req.agent_version, 64),
        now: store::now_ms(),
    };
    // Written with the other acks of the moment; answered after that commit.
    state
        .acks
        .submit(Ack {
            serial: who.serial.clone(),
            row,
        })
        .await
        .map_err(ack_error)?;
    state.stats.acks.fetch_add(1, Ordering::Relaxed);
    state.jobs.rotation.notify_one();
    Ok(StatusCode::NO_CONTENT)
}

fn ack_error(e: AckError) -> ApiError {
    match e {
        AckError::Revoked => ApiError::node_revoked("node is revoked"),
        e @ AckError::Superseded => ApiError::superseded(e.to_string()),
        e @ (AckError::AheadOfDesired { .. } | AckError::HashMismatch(_)) => {
            ApiError::conflict(e.to_string())
        }
        AckError::Store(e) => e.into(),
        e => ApiError::Internal(e.into()),
    }
}

/// `POST /v1/agent/csr` (node-key mode): signs the node's new key into its next bundle.
#[utoipa::path(
    post,
    path = "/v1/agent/csr",
    tag = "agent",
    operation_id = "submitCsr",
    summary = "Submit a CSR for the key the node just generated (node-key mode).",
    request_body = CsrSubmission,
    responses(
        (status = 200, description = "Signed into the next bundle version.", body = doc::CsrAccepted),
        (status = 400, response = doc::BadRequest),
        (status = 401, response = doc::Unauthorized),
        (status = 403, response = doc::Forbidden),
        (status = 404, response = doc::NotFound),
        (status = 409, response = doc::Conflict),
        (status = 422, response = doc::Unprocessable),
    ),
    security(("mutual_tls" = [])),
)]
pub async fn csr(
    State(state): State<AppState>,
    who: AgentIdentity,
    ApiJson(req): ApiJson<CsrSubmission>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let (svc, node) = (who.id.service.to_string(), who.id.node.to_string());
    let st = state.clone();
    let changes = state
        .store
        .write(move |c| {
            let service = store::services::get(c, &svc, None)?
                .ok_or_else(|| ApiError::not_found(format!("service {svc}")))?;
            let requested = store::bundles::get(c, &svc, &node)?.is_some_and(|b| b.csr_required);
            if !requested {
                return Err(ApiError::conflict(
                    "no CSR is requested for this node right now",
                ));
            }
            let version =
                st.issuer()
                    .from_csr(c, &service, &node, &req.csr, OffsetDateTime::now_utc())?;
            let mut changes = Changes::default();
            changes.node(&svc, &node);
            changes.notify_in_tx(c)?;
            Ok::<_, ApiError>((changes, version))
        })
        .await?;
    changes.0.wake_local(&state.waiters);
    Ok(Json(serde_json::json!({ "version": changes.1 })))
}
