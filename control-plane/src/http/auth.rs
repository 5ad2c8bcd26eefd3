//! The bearer-token [`Caller`] of every customer/admin route: authentication, the
//! per-address limit on failed tokens, and the role check, in that order and in this
//! one extractor, so no handler can forget any of them.
//!
//! 1. A request without `Authorization: Bearer <token>` is a 401 and counts for
//!    nothing: it tests no secret.
//! 2. An address that presented too many unknown or expired tokens in the window
//!    ([`FailureGuard`]) is answered 429 before the database is touched, whatever
//!    token it carries now; the first refusal of each window is audited
//!    (`auth.refused`).
//! 3. The token is looked up by its SHA-256 (the secret is never stored, compared or
//!    logged); unknown, revoked and expired tokens are a 401 and count one failure.
//! 4. The route's role ([`super::roles`]) is checked: a 403 when the token's role does
//!    not include it.

use super::limits::{ClientAddr, FailureGuard, Refusal};
use super::roles::{self, Needs};
use super::{ApiError, AppState};
use crate::store::{self, audit::NewAudit};
use axum::extract::{FromRequestParts, MatchedPath};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use ferry_shared::TokenRole;
use ferry_shared::hash::sha256_hex;
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::time::Instant;

/// Who called the customer/admin API: the deployment's admin token (no tenant) or a
/// tenant's token with its role.
#[derive(Debug, Clone)]
pub struct Caller {
    pub token_id: String,
    pub tenant: Option<String>,
    /// `admin` for the deployment's admin tokens.
    pub role: TokenRole,
}

impl Caller {
    pub fn is_admin(&self) -> bool {
        self.tenant.is_none()
    }

    pub fn require_admin(&self) -> Result<(), ApiError> {
        if self.is_admin() {
            Ok(())
        } else {
            Err(ApiError::forbidden("this call needs an admin token"))
        }
    }

    /// The tenant filter for reads: `None` for admins (they see everything).
    pub fn scope(&self) -> Option<&str> {
        self.tenant.as_deref()
    }

    pub fn actor(&self) -> String {
        match &self.tenant {
            None => format!("admin:{}", self.token_id),
            Some(t) => format!("tenant:{t}:{}", self.token_id),
        }
    }

    /// An audit row for a change this caller made.
    pub fn audit(
        &self,
        tenant: Option<&str>,
        action: &str,
        target: &str,
        detail: serde_json::Value,
    ) -> NewAudit {
        NewAudit {
            at: store::now_ms(),
            actor: self.actor(),
            tenant: tenant.map(str::to_owned),
            action: action.to_owned(),
            target: target.to_owned(),
            detail: detail.to_string(),
        }
    }
}

/// Why a request got no [`Caller`]: a problem+json error, or the address is limited.
#[derive(Debug)]
pub enum AuthError {
    Api(ApiError),
    Limited(Refusal),
}

impl From<ApiError> for AuthError {
    fn from(e: ApiError) -> Self {
        Self::Api(e)
    }
}

impl IntoResponse for AuthError {
    fn into_response(self) -> Response {
        match self {
            Self::Api(e) => e.into_response(),
            Self::Limited(r) => r.into_response(),
        }
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = AuthError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let token = bearer(parts)?;
        let ip = parts
            .extensions
            .get::<ClientAddr>()
            .map(|ClientAddr(a)| a.ip());
        if let Some(refusal) = limited(state, ip).await {
            return Err(AuthError::Limited(refusal));
        }
        let caller = match authenticate(state, &token).await? {
            Ok(caller) => caller,
            Err(refused) => {
                count_failure(state, ip);
                return Err(refused.into());
            }
        };
        let needs = parts
            .extensions
            .get::<MatchedPath>()
            .map_or(Needs::Deployment, |p| {
                roles::needs(&parts.method, p.as_str())
            });
        if !roles::allows(caller.tenant.as_deref(), caller.role, needs) {
            tracing::info!(token_id = %caller.token_id, needs = needs.scope(), "token refused: its role does not allow this route");
            return Err(ApiError::forbidden(match needs {
                Needs::Role(r) => format!(
                    "this route needs a token with role {r} or above; this token's role is {}",
                    caller.role
                ),
                Needs::Deployment => "this call needs an admin token".to_owned(),
            })
            .into());
        }
        Ok(caller)
    }
}

/// The token of `Authorization: Bearer <token>`.
fn bearer(parts: &Parts) -> Result<String, ApiError> {
    let header = parts
        .headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| ApiError::unauthorized("missing Authorization: Bearer <token>"))?;
    header
        .strip_prefix("Bearer ")
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .ok_or_else(|| ApiError::unauthorized("Authorization must be: Bearer <token>"))
}

/// `Ok(Err(401))` for a token that is unknown (or revoked) or expired: a failure the
/// guard counts. `Err` only when the store fails.
async fn authenticate(state: &AppState, token: &str) -> Result<Result<Caller, ApiError>, ApiError> {
    let hash = sha256_hex(token.as_bytes());
    let lookup = hash.clone();
    let row = state
        .store
        .read(move |c| store::tokens::find_by_hash(c, &lookup))
        .await?;
    // Found by its hash; the stored hash is compared again in constant time.
    let Some(row) = row.filter(|r| {
        aws_lc_rs::constant_time::verify_slices_are_equal(r.token_hash.as_bytes(), hash.as_bytes())
            .is_ok()
    }) else {
        return Ok(Err(ApiError::unauthorized("unknown or revoked token")));
    };
    if row.expired(store::now_ms()) {
        tracing::info!(token_id = %row.id, "expired token refused");
        return Ok(Err(ApiError::unauthorized("this token has expired")));
    }
    let role = row
        .role
        .parse::<TokenRole>()
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("stored token role: {e}")))?;
    Ok(Ok(Caller {
        token_id: row.id,
        tenant: row.tenant,
        role,
    }))
}

/// `Some` while `ip` is over its failed-token limit (also used by the dashboard's
/// sign-in form, which tests the same secrets).
pub async fn limited(state: &AppState, ip: Option<IpAddr>) -> Option<Refusal> {
    let ip = ip?;
    let refusal = state.auth_guard.check(ip, Instant::now()).err()?;
    Some(refuse(state, &state.auth_guard, ip, refusal).await)
}

/// Counts one failed token from `ip`.
pub fn count_failure(state: &AppState, ip: Option<IpAddr>) {
    if let Some(ip) = ip {
        state.auth_guard.record_failure(ip, Instant::now());
    }
}

/// Answers a limited address; the first refusal of its window is audited (once, so a
/// flood of refused requests cannot turn into a flood of writes).
async fn refuse(state: &AppState, guard: &FailureGuard, ip: IpAddr, refusal: Refusal) -> Refusal {
    state.stats.auth_refused.fetch_add(1, Ordering::Relaxed);
    if refusal.first {
        tracing::warn!(client = %ip, failures = refusal.failures, "API requests refused: too many failed bearer tokens");
        let entry = NewAudit {
            at: store::now_ms(),
            actor: format!("address:{ip}"),
            tenant: None,
            action: "auth.refused".into(),
            target: ip.to_string(),
            detail: serde_json::json!({
                "failures": refusal.failures,
                "window_seconds": guard.window().as_secs(),
                "retry_after_seconds": refusal.retry_after.as_secs(),
            })
            .to_string(),
        };
        let written = state
            .store
            .write(move |c| store::audit::record(c, &entry).map_err(ApiError::from))
            .await;
        if let Err(e) = written {
            tracing::warn!(error = ?e, "cannot audit a refused address");
        }
    }
    refusal
}
