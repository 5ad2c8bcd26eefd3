//! `ApiError`: the one error type at the HTTP edge, rendered as RFC 7807 problem+json.
//! 4xx carry their reason; 5xx are opaque to the client and logged once with the chain.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use ferry_shared::Problem;
use ferry_shared::error::PROBLEM_CONTENT_TYPE;

#[derive(Debug)]
pub enum ApiError {
    /// A client error with a stable slug and a human detail.
    Client {
        status: StatusCode,
        slug: &'static str,
        detail: String,
    },
    /// Anything the client cannot fix; logged, never described to the client.
    Internal(anyhow::Error),
}

impl ApiError {
    pub fn new(status: StatusCode, slug: &'static str, detail: impl Into<String>) -> Self {
        Self::Client {
            status,
            slug,
            detail: detail.into(),
        }
    }
    pub fn not_found(what: impl std::fmt::Display) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not-found",
            format!("{what} not found"),
        )
    }
    pub fn bad_request(slug: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, slug, detail)
    }
    pub fn unprocessable(slug: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, slug, detail)
    }
    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", detail)
    }
    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", detail)
    }
    /// 403 `node-revoked`: the identity names a node that is gone.
    pub fn node_revoked(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            ferry_shared::error::NODE_REVOKED,
            detail,
        )
    }
    /// 403 `identity-superseded`: a newer enrollment replaced this certificate.
    pub fn superseded(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            ferry_shared::error::IDENTITY_SUPERSEDED,
            detail,
        )
    }
    pub fn conflict(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", detail)
    }
}

/// A unique-constraint violation becomes a 409 with `detail`; any other error is internal.
pub fn conflict_if_taken(e: diesel::result::Error, detail: impl FnOnce() -> String) -> ApiError {
    if crate::store::is_unique_violation(&e) {
        ApiError::conflict(detail())
    } else {
        e.into()
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        Self::Internal(e.into())
    }
}

impl From<diesel::result::Error> for ApiError {
    fn from(e: diesel::result::Error) -> Self {
        Self::Internal(e.into())
    }
}

impl From<crate::ca::CaError> for ApiError {
    fn from(e: crate::ca::CaError) -> Self {
        use crate::ca::CaError;
        match e {
            CaError::CsrRejected(d) => Self::bad_request("csr-rejected", d),
            e @ CaError::KeyTypeNotAllowed { .. } => {
                Self::unprocessable("key-type-not-allowed", e.to_string())
            }
            other => Self::Internal(other.into()),
        }
    }
}

impl From<ferry_shared::NameError> for ApiError {
    fn from(e: ferry_shared::NameError) -> Self {
        Self::bad_request("invalid-name", e.to_string())
    }
}

/// A problem+json response for `status` (also used for rejections outside handlers).
pub fn problem_response(status: StatusCode, slug: &str, detail: Option<String>) -> Response {
    let body = Problem {
        kind: format!("https://ferry.dev/problems/{slug}"),
        title: status.canonical_reason().unwrap_or("Error").to_owned(),
        status: status.as_u16(),
        detail,
    };
    let mut resp = (status, axum::Json(body)).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(PROBLEM_CONTENT_TYPE),
    );
    resp
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            Self::Client {
                status,
                slug,
                detail,
            } => {
                let mut resp = problem_response(status, slug, Some(detail));
                if status == StatusCode::UNAUTHORIZED {
                    resp.headers_mut()
                        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
                }
                resp
            }
            Self::Internal(err) => {
                tracing::error!(error = format!("{err:#}"), "request failed");
                problem_response(StatusCode::INTERNAL_SERVER_ERROR, "internal", None)
            }
        }
    }
}
