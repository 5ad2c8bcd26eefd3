//! The agent API: enrollment with a join token (the only agent call without a client
//! certificate), identity renewal over mTLS, and `whoami`.
//!
//! Enrollment is the one call an anonymous client can use to test secrets, so each
//! address gets a few unknown join tokens per window ([`EnrollGuard`]); after that it
//! is answered 429 without touching the database until the window ends, and the first
//! refusal of each window is audited (`enroll.refused`).

use super::extract::{AgentIdentity, ApiJson};
use super::limits::{ClientAddr, EnrollGuard, Refusal};
use super::openapi as doc;
use super::{ApiError, AppState};
use crate::ca::IssuedCert;
use crate::delivery::Changes;
use crate::enrollment::{self, Enrollment};
use crate::store::{self, audit::NewAudit, services::ServiceRow};
use axum::Json;
use axum::extract::{Extension, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use ferry_shared::api::{EnrollRequest, IdentityIssued, RenewRequest, WhoAmI};
use ferry_shared::hash::sha256_hex;
use ferry_shared::{KeyType, SpiffeId};
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::time::Instant;
use time::OffsetDateTime;

/// Errors of `enroll`: the usual API errors, or a refusal by the guessing guard.
#[derive(Debug)]
pub enum EnrollError {
    Api(ApiError),
    Refused(Refusal),
}

impl From<ApiError> for EnrollError {
    fn from(e: ApiError) -> Self {
        Self::Api(e)
    }
}

impl IntoResponse for EnrollError {
    fn into_response(self) -> Response {
        match self {
            Self::Api(e) => e.into_response(),
            Self::Refused(r) => r.into_response(),
        }
    }
}

/// Answers a refused address; the first refusal of its window is audited (once, so
/// a flood of refused requests cannot turn into a flood of writes).
async fn refuse(state: &AppState, ip: IpAddr, refusal: Refusal) -> EnrollError {
    state.stats.enroll_refused.fetch_add(1, Ordering::Relaxed);
    if refusal.first {
        tracing::warn!(client = %ip, failures = refusal.failures, "enrollments refused: too many unknown join tokens");
        let entry = NewAudit {
            at: store::now_ms(),
            actor: format!("address:{ip}"),
            tenant: None,
            action: "enroll.refused".into(),
            target: ip.to_string(),
            detail: serde_json::json!({
                "failures": refusal.failures,
                "window_seconds": state.enroll_guard.window().as_secs(),
                "retry_after_seconds": refusal.retry_after.as_secs(),
            })
            .to_string(),
        };
        let written = state
            .store
            .write(move |c| store::audit::record(c, &entry).map_err(ApiError::from))
            .await;
        if let Err(e) = written {
            tracing::warn!(error = ?e, "cannot audit a refused enrollment");
        }
    }
    EnrollError::Refused(refusal)
}

/// Counts a refused join token (unknown, or for another service) against `ip`.
fn count_failure(guard: &EnrollGuard, ip: Option<IpAddr>, result: &Result<IssuedCert, ApiError>) {
    if let (Some(ip), Err(ApiError::Client { status, .. })) = (ip, result)
        && *status == StatusCode::UNAUTHORIZED
    {
        guard.record_failure(ip, Instant::now());
    }
}

fn identity_response(
    state: &AppState,
    id: &SpiffeId,
    pem: String,
    not_after: OffsetDateTime,
) -> IdentityIssued {
    IdentityIssued {
        spiffe_id: id.to_string(),
        certificate: pem,
        // What the agent verifies the control plane with from now on.
        ca_certificates: state.control_plane_ca.bundle_pem().to_owned(),
        not_after,
        server_time: OffsetDateTime::now_utc(),
    }
}

/// Signs an identity for `id` from `csr` under its service's key-type policy (CPU
/// only: no database, so no lock is held while it runs).
fn issue_identity(
    state: &AppState,
    svc: &ServiceRow,
    id: &SpiffeId,
    csr: &str,
    now: OffsetDateTime,
) -> Result<IssuedCert, ApiError> {
    let key_type: KeyType = svc
        .key_type
        .parse()
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("{e}")))?;
    let ttl = time::Duration::try_from(state.identity_ttl).unwrap_or(time::Duration::hours(24));
    Ok(state.ca.issue_identity(csr, id, key_type, now, ttl)?)
}

/// `POST /v1/agent/enroll`. Checks, in order, the join token, the service and the CSR,
/// and only then spends one use of the token, all in one transaction: a refused
/// enrollment changes nothing.
#[utoipa::path(
    post,
    path = "/v1/agent/enroll",
    tag = "agent",
    operation_id = "enroll",
    summary = "Enroll a node with a join token (the one agent call without a client certificate).",
    request_body = EnrollRequest,
    responses(
        (status = 200, description = "The node's identity certificate.", body = IdentityIssued),
        (status = 400, response = doc::BadRequest),
        (status = 401, response = doc::Unauthorized),
        (status = 403, response = doc::Forbidden),
        (status = 404, response = doc::NotFound),
        (status = 422, response = doc::Unprocessable),
        (status = 429, response = doc::TooManyRequests),
    ),
)]
pub async fn enroll(
    State(state): State<AppState>,
    client: Option<Extension<ClientAddr>>,
    ApiJson(req): ApiJson<EnrollRequest>,
) -> Result<Json<IdentityIssued>, EnrollError> {
    let ip = client.map(|Extension(ClientAddr(addr))| addr.ip());
    if let Some(ip) = ip
        && let Err(refusal) = state.enroll_guard.check(ip, Instant::now())
    {
        return Err(refuse(&state, ip, refusal).await);
    }
    let id = SpiffeId {
        trust_domain: state.trust_domain.clone(),
        service: req.service.clone(),
        node: req.node_id.clone(),
    };
    let token_hash = sha256_hex(req.join_token.as_bytes());
    let issued = enroll_checked(&state, &id, token_hash, &req.csr).await;
    count_failure(&state.enroll_guard, ip, &issued);
    let issued = issued?;
    // After the commit: this replica's cache and held polls of the node (a re-enrollment).
    state
        .waiters
        .wake_nodes(id.service.as_str(), [id.node.as_str()]);
    tracing::info!(spiffe_id = %id, serial = %issued.serial, "node enrolled");
    Ok(Json(identity_response(
        &state,
        &id,
        issued.pem,
        issued.not_after,
    )))
}

/// The join token and the service are checked (unlocked reads) before anything is
/// signed, the identity is signed outside any transaction, and the enrollment writer
/// checks the token again under its lock while it records the node.
async fn enroll_checked(
    state: &AppState,
    id: &SpiffeId,
    token_hash: String,
    csr: &str,
) -> Result<IssuedCert, ApiError> {
    let svc_name = id.service.to_string();
    let (token, svc) = state
        .store
        .read(move |c| {
            Ok((
                store::join_tokens::find_by_hash(c, &token_hash)?,
                store::services::get(c, &svc_name, None)?,
            ))
        })
        .await?;
    let now = OffsetDateTime::now_utc();
    let now_ms = store::ms(now);
    let token = token
        .filter(|t| t.service == id.service.as_str())
        .ok_or_else(|| ApiError::unauthorized("join token is not valid for this service"))?;
    if token.expires_at <= now_ms {
        return Err(ApiError::forbidden(
            "join token has expired; create a new one",
        ));
    }
    if token.uses >= token.max_uses {
        return Err(ApiError::forbidden(
            "join token has no uses left; create a new one",
        ));
    }
    let svc = svc.ok_or_else(|| ApiError::not_found(format!("service {}", id.service)))?;
    let cert = issue_identity(state, &svc, id, csr, now)?;
    let identity_key = crate::ca::issue::csr_key_id(csr)?;
    state
        .enrollments
        .submit(Enrollment {
            token_id: token.id,
            service: svc.name,
            tenant: svc.tenant,
            node_id: id.node.to_string(),
            serial: cert.serial.clone(),
            not_after: store::ms(cert.not_after),
            stale_after_seconds: svc.stale_after_seconds,
            identity_key,
            keep_bundle: svc.key_mode != ferry_shared::KeyMode::Central.to_string(),
            now: now_ms,
        })
        .await
        .map_err(|e| match e {
            enrollment::EnrollError::TokenUnknown => ApiError::unauthorized(e.to_string()),
            e @ enrollment::EnrollError::NodeExists(_) => ApiError::conflict(e.to_string()),
            e @ (enrollment::EnrollError::TokenExpired | enrollment::EnrollError::TokenUsedUp) => {
                ApiError::forbidden(e.to_string())
            }
            enrollment::EnrollError::Store(e) => e.into(),
            e @ enrollment::EnrollError::Stopped => ApiError::Internal(e.into()),
        })?;
    Ok(cert)
}

/// `POST /v1/agent/renew`: a new identity certificate for the caller's own identity.
#[utoipa::path(
    post,
    path = "/v1/agent/renew",
    tag = "agent",
    operation_id = "renewIdentity",
    summary = "Renew the caller's identity certificate from a fresh CSR.",
    request_body = RenewRequest,
    responses(
        (status = 200, description = "The new identity certificate.", body = IdentityIssued),
        (status = 400, response = doc::BadRequest),
        (status = 401, response = doc::Unauthorized),
        (status = 403, response = doc::Forbidden),
        (status = 404, response = doc::NotFound),
        (status = 422, response = doc::Unprocessable),
    ),
    security(("mutual_tls" = [])),
)]
pub async fn renew(
    State(state): State<AppState>,
    who: AgentIdentity,
    ApiJson(req): ApiJson<RenewRequest>,
) -> Result<Json<IdentityIssued>, ApiError> {
    let spiffe = who.id.clone();
    let svc_name = spiffe.service.to_string();
    let svc = state
        .store
        .read(move |c| store::services::get(c, &svc_name, None))
        .await?
        .ok_or_else(|| ApiError::not_found(format!("service {}", spiffe.service)))?;
    // Signed before the transaction: no row is locked while the CPU works.
    let cert = issue_identity(&state, &svc, &spiffe, &req.csr, OffsetDateTime::now_utc())?;
    let identity_key = crate::ca::issue::csr_key_id(&req.csr)?;
    let issued = state
        .store
        .write(move |c| {
            let renewed = store::nodes::renew_identity(
                c,
                spiffe.service.as_str(),
                spiffe.node.as_str(),
                &store::nodes::Renewal {
                    presented_serial: &who.serial,
                    new_serial: &cert.serial,
                    identity_key: &identity_key,
                    not_after: store::ms(cert.not_after),
                    now: store::now_ms(),
                },
            )?;
            if !renewed {
                // Superseded meanwhile, or an old identity whose one retry is spent.
                return Err(ApiError::superseded(
                    "this identity certificate was superseded; it cannot renew",
                ));
            }
            // The serial before the presented one stops working: every replica's node
            // cache must forget the node.
            let mut changes = Changes::default();
            changes.node(spiffe.service.as_str(), spiffe.node.as_str());
            changes.notify_in_tx(c)?;
            Ok::<_, ApiError>((cert, changes))
        })
        .await?;
    let (issued, changes) = issued;
    changes.wake_local(&state.waiters);
    tracing::debug!(spiffe_id = %who.id, serial = %issued.serial, "identity renewed");
    Ok(Json(identity_response(
        &state,
        &who.id,
        issued.pem,
        issued.not_after,
    )))
}

/// `GET /v1/agent/whoami`.
#[utoipa::path(
    get,
    path = "/v1/agent/whoami",
    tag = "agent",
    operation_id = "whoami",
    summary = "Who the server thinks the client certificate belongs to.",
    responses(
        (status = 200, description = "The caller's identity.", body = WhoAmI),
        (status = 401, response = doc::Unauthorized),
        (status = 403, response = doc::Forbidden),
    ),
    security(("mutual_tls" = [])),
)]
pub async fn whoami(who: AgentIdentity) -> Json<WhoAmI> {
    Json(WhoAmI {
        spiffe_id: who.id.to_string(),
        service: who.id.service.clone(),
        node_id: who.id.node.clone(),
        server_time: OffsetDateTime::now_utc(),
    })
}
