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
use crate::store::{self, audit::NewAudit, nodes::NodeRow, services::ServiceRow};
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
        ca_certificates: state.ca.bundle_pem().to_owned(),
        not_after,
        server_time: OffsetDateTime::now_utc(),
    }
}

/// Signs an identity for `id` from `csr` under its service's key-type policy.
fn issue_identity(
    c: &mut store::Conn<'_>,
    state: &AppState,
    id: &SpiffeId,
    csr: &str,
    now: OffsetDateTime,
) -> Result<(ServiceRow, IssuedCert), ApiError> {
    let svc = store::services::get(c, id.service.as_str(), None)?
        .ok_or_else(|| ApiError::not_found(format!("service {}", id.service)))?;
    let key_type: KeyType = svc
        .key_type
        .parse()
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("{e}")))?;
    let ttl = time::Duration::try_from(state.identity_ttl).unwrap_or(time::Duration::hours(24));
    let cert = state.ca.issue_identity(csr, id, key_type, now, ttl)?;
    Ok((svc, cert))
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
    let st = state.clone();
    let spiffe = id.clone();
    let issued = state
        .store
        .write(move |c| {
            let now = OffsetDateTime::now_utc();
            let now_ms = store::ms(now);
            let token = store::join_tokens::find_by_hash(c, &token_hash)?
                .filter(|t| t.service == spiffe.service.as_str())
                .ok_or_else(|| {
                    ApiError::unauthorized("join token is not valid for this service")
                })?;
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
            let (svc, cert) = issue_identity(c, &st, &spiffe, &req.csr, now)?;
            let existing = store::nodes::get(c, spiffe.service.as_str(), spiffe.node.as_str())?;
            let not_after = store::ms(cert.not_after);
            let action = if existing.is_some() {
                store::nodes::reenroll(
                    c,
                    spiffe.service.as_str(),
                    spiffe.node.as_str(),
                    &cert.serial,
                    not_after,
                    now_ms,
                )?;
                // Every earlier identity stops working now: held polls and node caches
                // of every replica are told (at COMMIT).
                let mut changes = Changes::default();
                changes.node(spiffe.service.as_str(), spiffe.node.as_str());
                changes.notify_in_tx(c)?;
                "node.reenroll"
            } else {
                store::nodes::insert(
                    c,
                    &NodeRow {
                        service: spiffe.service.to_string(),
                        node_id: spiffe.node.to_string(),
                        state: "active".into(),
                        identity_serial: cert.serial.clone(),
                        prev_identity_serial: None,
                        identity_not_after: not_after,
                        enrolled_at: now_ms,
                        last_seen: Some(now_ms),
                        desired_version: 0,
                        acked_version: 0,
                        cert_not_after: None,
                        desired_hash: None,
                        acked_hash: None,
                        acked_at: None,
                        // Central mode: due at once, so the scheduler issues the
                        // first bundle within a tick.
                        renew_at: Some(now_ms),
                        clock_skew_ms: None,
                        last_error: None,
                        hook_exit_code: None,
                        agent_version: None,
                        desired_at: None,
                        unseen_at: Some(now_ms + svc.stale_after_seconds * 1000),
                        held_by: None,
                    },
                )?;
                "node.enroll"
            };
            store::audit::record(
                c,
                &NewAudit {
                    at: now_ms,
                    actor: format!("join-token:{}", token.id),
                    tenant: Some(svc.tenant),
                    action: action.into(),
                    target: format!("{}/{}", spiffe.service, spiffe.node),
                    detail: serde_json::json!({ "serial": cert.serial }).to_string(),
                },
            )?;
            // Last, so the token's row stays locked only until the commit: enrollments
            // with one token serialize on it (docs/benchmarks.md, enrollment storm).
            if !store::join_tokens::consume(c, &token.id, now_ms)? {
                return Err(ApiError::forbidden(
                    "join token has no uses left; create a new one",
                ));
            }
            Ok::<_, ApiError>(cert)
        })
        .await;
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
    let st = state.clone();
    let spiffe = who.id.clone();
    let issued = state
        .store
        .write(move |c| {
            let now = OffsetDateTime::now_utc();
            let (_, cert) = issue_identity(c, &st, &spiffe, &req.csr, now)?;
            store::nodes::renew_identity(
                c,
                spiffe.service.as_str(),
                spiffe.node.as_str(),
                &who.serial,
                &cert.serial,
                store::ms(cert.not_after),
            )?;
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
