//! Extractors: JSON bodies, path segments and query strings with problem+json
//! rejections, the mTLS node identity, and cursor pagination. The bearer-token
//! [`Caller`] lives in [`super::auth`].

use super::{ApiError, AppState};
use crate::delivery::NodeAuth;
use crate::store;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use base64::Engine;
use ferry_shared::SpiffeId;
use serde::de::DeserializeOwned;
use x509_parser::prelude::{FromDer, GeneralName, ParsedExtension, X509Certificate};

pub use super::auth::Caller;

/// `Json<T>` whose rejections (syntax, unknown fields, bad names, too large, wrong
/// content type, anything but a JSON object) are problem+json with the rejection's
/// status.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<JsonObject<T>>::from_request(req, state).await {
            Ok(axum::Json(JsonObject(v))) => Ok(Self(v)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

/// `T` read only from a JSON object. serde's derived structs also accept an array of
/// their fields in order (`[null, null]` would be a `CreateJoinTokenRequest` with
/// every field left out); every body of this API is an object, so nothing else is.
struct JsonObject<T>(T);

impl<'de, T: serde::Deserialize<'de>> serde::Deserialize<'de> for JsonObject<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit<T>(std::marker::PhantomData<T>);
        impl<'de, T: serde::Deserialize<'de>> serde::de::Visitor<'de> for Visit<T> {
            type Value = T;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
                T::deserialize(serde::de::value::MapAccessDeserializer::new(map))
            }
        }
        d.deserialize_map(Visit(std::marker::PhantomData)).map(Self)
    }
}

fn json_rejection(r: JsonRejection) -> ApiError {
    if let JsonRejection::BytesRejection(b) = &r
        && super::timeouts::BodyTimedOut::is_cause_of(b)
    {
        return ApiError::new(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            "body-timeout",
            b.body_text(),
        );
    }
    let slug = match &r {
        JsonRejection::JsonDataError(_) => "invalid-body",
        JsonRejection::JsonSyntaxError(_) => "malformed-json",
        JsonRejection::MissingJsonContentType(_) => "unsupported-media-type",
        _ if r.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE => "body-too-large",
        _ => "bad-body",
    };
    ApiError::new(r.status(), slug, r.body_text())
}

/// `Path<T>` whose rejections (a segment that is not UTF-8 once percent-decoded, or
/// does not parse as `T`) are a problem+json 400 instead of axum's plain text.
pub struct ApiPath<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(v)) => Ok(Self(v)),
            Err(r) => Err(path_rejection(r)),
        }
    }
}

fn path_rejection(r: PathRejection) -> ApiError {
    // A path that matched a route but cannot be extracted is the client's mistake; a
    // missing match would be ours (a handler on a route without those segments).
    match r {
        PathRejection::FailedToDeserializePathParams(e) => {
            ApiError::bad_request("invalid-path", e.body_text())
        }
        other => ApiError::Internal(anyhow::anyhow!("path extraction: {}", other.body_text())),
    }
}

/// `Query<T>` whose rejections (a query string that does not parse, an unknown or
/// mistyped parameter) are a problem+json 400 instead of axum's plain text.
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        if has_encoded_nul(parts.uri.query().unwrap_or_default()) {
            return Err(ApiError::bad_request(
                "invalid-query",
                "a query parameter contains NUL",
            ));
        }
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(Self(v)),
            Err(r) => Err(query_rejection(r)),
        }
    }
}

fn query_rejection(r: QueryRejection) -> ApiError {
    ApiError::bad_request("invalid-query", r.body_text())
}

/// NUL can only reach a query string as `%00`. No query parameter holds one, and
/// PostgreSQL text cannot: refused here instead of failing in the database.
fn has_encoded_nul(s: &str) -> bool {
    s.as_bytes()
        .windows(3)
        .any(|w| w[0] == b'%' && w[1] == b'0' && w[2] == b'0')
}

/// Text a request stores must not hold NUL (PostgreSQL text cannot, so it would be a
/// 500); a 422 naming `field` instead.
pub fn refuse_nul(slug: &'static str, field: &str, value: &str) -> Result<(), ApiError> {
    if value.contains('\0') {
        return Err(ApiError::unprocessable(
            slug,
            format!("{field} contains NUL"),
        ));
    }
    Ok(())
}

/// The verified client certificate of the connection, as the accept loop saw it.
#[derive(Debug, Clone)]
pub struct PeerCert {
    pub uri_sans: Vec<String>,
    /// Lowercase hex of the serial's DER bytes.
    pub serial: String,
}

impl PeerCert {
    pub fn from_der(der: &[u8]) -> Option<Self> {
        let (_, cert) = X509Certificate::from_der(der).ok()?;
        let mut uri_sans = Vec::new();
        for ext in cert.extensions() {
            if let ParsedExtension::SubjectAlternativeName(san) = ext.parsed_extension() {
                for name in &san.general_names {
                    if let GeneralName::URI(u) = name {
                        uri_sans.push((*u).to_owned());
                    }
                }
            }
        }
        Some(Self {
            uri_sans,
            serial: hex::encode(cert.raw_serial()),
        })
    }
}

/// A node authenticated by mutual TLS, checked on every request against its row (from
/// the replica's node cache, which every change of the node invalidates, or from the
/// store): a deleted node, or a certificate superseded by re-enrollment, is refused
/// even while the certificate itself is still valid.
#[derive(Debug, Clone)]
pub struct AgentIdentity {
    pub id: SpiffeId,
    pub serial: String,
    pub node: NodeAuth,
}

/// The node's [`NodeAuth`]: from the cache when the cached row accepts `serial` (a
/// serial it does not accept may be a renewal newer than the entry, so that reads the
/// database), else from the database, which fills the cache.
pub async fn node_auth(
    state: &AppState,
    service: &str,
    node: &str,
    serial: &str,
) -> Result<Option<NodeAuth>, ApiError> {
    let cache = &state.waiters.cache;
    if let Some(a) = cache
        .get(service, node, store::now_ms())
        .filter(|a| a.accepts_serial(serial, store::now_ms()))
    {
        return Ok(Some(a));
    }
    let epoch = cache.epoch();
    let (s, n) = (service.to_owned(), node.to_owned());
    let row = state
        .store
        .read(move |c| store::nodes::auth(c, &s, &n))
        .await?;
    if let Some(a) = &row {
        cache.fill(epoch, service, node, a.clone(), store::now_ms());
    }
    Ok(row)
}

/// The refusal for a node that is gone or does not accept the certificate's serial.
pub fn check_serial(
    id: &SpiffeId,
    auth: Option<NodeAuth>,
    serial: &str,
) -> Result<NodeAuth, ApiError> {
    match auth {
        Some(node) if node.accepts_serial(serial, store::now_ms()) => Ok(node),
        Some(_) => {
            tracing::info!(spiffe_id = %id, "refused superseded identity certificate");
            Err(ApiError::superseded(
                "this identity certificate was superseded by a re-enrollment",
            ))
        }
        None => {
            tracing::info!(spiffe_id = %id, "refused certificate of an unknown or revoked node");
            Err(ApiError::node_revoked(
                "node is revoked or unknown; enroll again with a join token",
            ))
        }
    }
}

impl FromRequestParts<AppState> for AgentIdentity {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let peer = parts
            .extensions
            .get::<Option<PeerCert>>()
            .cloned()
            .flatten()
            .ok_or_else(|| {
                ApiError::unauthorized(
                    "this route needs a client certificate issued by the Ferry CA",
                )
            })?;
        let [uri] = peer.uri_sans.as_slice() else {
            return Err(ApiError::forbidden(
                "client certificate must carry exactly one SPIFFE URI",
            ));
        };
        let id = SpiffeId::parse(uri).map_err(|e| ApiError::forbidden(e.to_string()))?;
        if id.trust_domain != state.trust_domain {
            return Err(ApiError::forbidden(format!(
                "trust domain {} is not served here",
                id.trust_domain
            )));
        }
        let (svc, node) = (id.service.as_str(), id.node.as_str());
        let auth = node_auth(state, svc, node, &peer.serial).await?;
        let node = check_serial(&id, auth, &peer.serial)?;
        state.presence.touch(svc, id.node.as_str());
        Ok(Self {
            id,
            serial: peer.serial,
            node,
        })
    }
}

/// `?limit=&cursor=` of list routes.
#[derive(Debug, Default, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct PageQuery {
    /// Page size, 1..=1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

impl PageQuery {
    pub const MAX: i64 = 1000;

    pub fn limit(&self) -> Result<i64, ApiError> {
        match self.limit {
            None => Ok(100),
            Some(n) if (1..=Self::MAX).contains(&n) => Ok(n),
            Some(n) => Err(ApiError::bad_request(
                "invalid-limit",
                format!("limit {n} is outside 1..={}", Self::MAX),
            )),
        }
    }

    /// The decoded cursor (the last key of the previous page).
    pub fn after(&self) -> Result<Option<String>, ApiError> {
        self.cursor
            .as_deref()
            .map(|c| {
                base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(c)
                    .ok()
                    .and_then(|b| String::from_utf8(b).ok())
                    .filter(|key| !key.contains('\0'))
                    .ok_or_else(|| {
                        ApiError::bad_request(
                            "invalid-cursor",
                            "cursor is not one this server issued",
                        )
                    })
            })
            .transpose()
    }
}

/// Builds a page from `limit + 1` fetched rows: the extra row only says "there is more".
pub fn page<R, T>(
    mut rows: Vec<R>,
    limit: i64,
    key: impl Fn(&R) -> String,
    convert: impl Fn(R) -> T,
) -> ferry_shared::api::Page<T> {
    let more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let next_cursor = if more {
        rows.last()
            .map(|r| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(key(r)))
    } else {
        None
    };
    ferry_shared::api::Page {
        items: rows.into_iter().map(convert).collect(),
        next_cursor,
    }
}
