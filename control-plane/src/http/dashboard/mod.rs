//! The admin dashboard (`/dashboard`): server-rendered HTML for admins, readable at a
//! glance and refreshed every 10 s by the browser.
//!
//! `session` signs admins in (a stateless signed cookie, CSRF-safe), `page` renders the
//! HTML by hand (every value escaped; inline CSS only, nothing loaded from elsewhere).
//! Errors here are HTML pages, not problem+json. A token is never logged.

pub mod page;
pub mod session;

use super::limits::ClientAddr;
use super::{ApiError, AppState};
use crate::store::{self, StoreError};
use axum::Form;
use axum::extract::rejection::FormRejection;
use axum::extract::{Extension, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use ferry_shared::hash::sha256_hex;
use session::Session;

/// How many deliveries the page lists.
const RECENT_DELIVERIES: i64 = 20;
/// How many firing alerts the page lists.
const FIRING_ALERTS: i64 = 200;

/// An HTML response with headers that keep the page from being framed, cached, or
/// loading anything from elsewhere.
pub fn html(status: StatusCode, body: String) -> Response {
    let mut resp = (status, body).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    resp
}

fn see_other(to: &'static str) -> Response {
    let mut resp = StatusCode::SEE_OTHER.into_response();
    resp.headers_mut()
        .insert(header::LOCATION, HeaderValue::from_static(to));
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// What can go wrong on a dashboard route, rendered as an HTML page.
#[derive(Debug)]
pub enum PageError {
    /// No valid session: 303 to the sign-in form.
    SignIn,
    BadRequest(String),
    Forbidden(String),
    NotFound,
    /// Logged once; the page says only that something failed.
    Internal(anyhow::Error),
}

impl From<StoreError> for PageError {
    fn from(e: StoreError) -> Self {
        Self::Internal(e.into())
    }
}

impl From<ApiError> for PageError {
    fn from(e: ApiError) -> Self {
        match e {
            ApiError::Client { status, detail, .. } if status == StatusCode::NOT_FOUND => {
                tracing::debug!(detail, "dashboard: not found");
                Self::NotFound
            }
            ApiError::Client { detail, .. } => Self::BadRequest(detail),
            ApiError::Internal(e) => Self::Internal(e),
        }
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let (status, detail) = match self {
            Self::SignIn => return see_other("/dashboard/login"),
            Self::BadRequest(d) => (StatusCode::BAD_REQUEST, d),
            Self::Forbidden(d) => (StatusCode::FORBIDDEN, d),
            Self::NotFound => (StatusCode::NOT_FOUND, "There is no such page.".into()),
            Self::Internal(err) => {
                tracing::error!(error = format!("{err:#}"), "dashboard request failed");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "The control plane could not answer; see its log.".into(),
                )
            }
        };
        html(status, page::error(status, &detail))
    }
}

/// `GET /dashboard`: the fleet at a glance (redirects to sign-in without a session).
pub async fn dashboard(
    State(state): State<AppState>,
    _session: Session,
) -> Result<Response, PageError> {
    let (fleet, services) = super::alerts::summary(&state).await?;
    let (alerts, deliveries, rotations) = state
        .store
        .read(|c| {
            let alerts = store::alerts::list(c, None, Some("firing".into()), FIRING_ALERTS)?;
            let deliveries = store::dashboard::recent_deliveries(c, RECENT_DELIVERIES)?;
            let rotations = store::dashboard::running_rotations(c)?;
            Ok((alerts, deliveries, rotations))
        })
        .await?;
    let view = page::View {
        now_ms: store::now_ms(),
        fleet,
        services,
        alerts,
        deliveries,
        rotations,
    };
    Ok(html(StatusCode::OK, page::dashboard(&view)))
}

/// `GET /dashboard/login`: the sign-in form.
pub async fn login_form() -> Response {
    html(StatusCode::OK, page::login(None))
}

/// The sign-in form's body. No `Debug`: it holds a secret.
#[derive(serde::Deserialize)]
pub struct LoginForm {
    token: String,
}

/// `POST /dashboard/login`: admin tokens only; sets the session cookie.
pub async fn login(
    State(state): State<AppState>,
    client: Option<Extension<ClientAddr>>,
    headers: HeaderMap,
    uri: Uri,
    form: Result<Form<LoginForm>, FormRejection>,
) -> Result<Response, PageError> {
    session::check_origin(&headers, uri.authority().map(|a| a.as_str()))?;
    // The form tests the same secrets as bearer tokens, so it shares their limit.
    let ip = client.map(|Extension(ClientAddr(a))| a.ip());
    if let Some(refusal) = super::auth::limited(&state, ip).await {
        let mut resp = html(
            StatusCode::TOO_MANY_REQUESTS,
            page::login(Some(
                "Too many unknown tokens from this address; try again later.",
            )),
        );
        if let Some(v) = refusal.into_response().headers().get(header::RETRY_AFTER) {
            resp.headers_mut().insert(header::RETRY_AFTER, v.clone());
        }
        return Ok(resp);
    }
    let Form(form) = form.map_err(|r| PageError::BadRequest(r.body_text()))?;
    let token = form.token.trim().to_owned();
    let refused = || {
        tracing::info!("dashboard sign-in refused");
        html(
            StatusCode::UNAUTHORIZED,
            page::login(Some("Unknown token, or not an admin token.")),
        )
    };
    if token.is_empty() {
        return Ok(refused());
    }
    // Looked up by SHA-256 like the API's bearer tokens; the stored hash is compared in
    // constant time and the token itself goes nowhere else.
    let hash = sha256_hex(token.as_bytes());
    let lookup = hash.clone();
    let row = state
        .store
        .read(move |c| store::tokens::find_by_hash(c, &lookup))
        .await?;
    let unknown = row.is_none();
    let admin = row.filter(|r| {
        r.tenant.is_none()
            && aws_lc_rs::constant_time::verify_slices_are_equal(
                r.token_hash.as_bytes(),
                hash.as_bytes(),
            )
            .is_ok()
    });
    let Some(admin) = admin else {
        if unknown {
            super::auth::count_failure(&state, ip);
        }
        return Ok(refused());
    };
    tracing::info!(token_id = %admin.id, "dashboard sign-in");
    let mut resp = see_other("/dashboard");
    resp.headers_mut().insert(
        header::SET_COOKIE,
        session::set_cookie(&state, &admin.id, store::now_ms() / 1000),
    );
    Ok(resp)
}

/// `POST /dashboard/logout`: ends the session on every replica (its cookie is stored
/// as revoked until it would expire) and clears the cookie.
pub async fn logout(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Response, PageError> {
    session::check_origin(&headers, uri.authority().map(|a| a.as_str()))?;
    if let Some(s) = Session::from_cookie(&state, &headers) {
        let now = store::now_ms();
        state
            .store
            .write(move |c| {
                store::dashboard::revoke_session(c, &s.session_hash, s.expires_at * 1000, now)
                    .map_err(ApiError::from)
            })
            .await?;
        tracing::info!(token_id = %s.token_id, "dashboard sign-out");
    }
    let mut resp = see_other("/dashboard/login");
    resp.headers_mut()
        .insert(header::SET_COOKIE, session::clear_cookie());
    Ok(resp)
}

/// Any other path under `/dashboard/`.
pub async fn not_found() -> PageError {
    PageError::NotFound
}
