//! Dashboard sessions: a stateless signed cookie, valid on every replica.
//!
//! The cookie is `<token_id>.<expiry_unix>.<hex HMAC-SHA256>`, keyed by a key derived
//! from the master key, so any replica can check it and nothing is stored. It never
//! carries the token itself, and the token must still exist (as an admin token) on
//! every request, so deleting the token ends its sessions. Logout ends the session on
//! every replica: the SHA-256 of its cookie is stored until the cookie would have
//! expired, and a stored one is refused. CSRF: the cookie is
//! `SameSite=Strict`, and every POST whose `Origin` names another host is refused.

use super::PageError;
use crate::ca::sealing::MasterKey;
use crate::http::AppState;
use crate::store;
use aws_lc_rs::hmac;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, header};

pub const COOKIE: &str = "ferry_session";
/// How long a sign-in lasts.
pub const LIFETIME_SECONDS: i64 = 8 * 3600;
const PURPOSE: &[u8] = b"ferry-dashboard-session-v1";

fn key(master: &MasterKey) -> hmac::Key {
    hmac::Key::new(hmac::HMAC_SHA256, &master.derive(PURPOSE))
}

/// The cookie value for `token_id`, valid until `expiry` (unix seconds).
pub fn sign(master: &MasterKey, token_id: &str, expiry: i64) -> String {
    let payload = format!("{token_id}.{expiry}");
    let tag = hmac::sign(&key(master), payload.as_bytes());
    format!("{payload}.{}", hex::encode(tag.as_ref()))
}

/// The token id of a well-signed, unexpired cookie value.
pub fn verify(master: &MasterKey, value: &str, now: i64) -> Option<String> {
    verify_with_expiry(master, value, now).map(|(id, _)| id)
}

/// The token id and expiry (unix seconds) of a well-signed, unexpired cookie value.
fn verify_with_expiry(master: &MasterKey, value: &str, now: i64) -> Option<(String, i64)> {
    let (payload, tag) = value.rsplit_once('.')?;
    let (token_id, expiry) = payload.split_once('.')?;
    let tag = hex::decode(tag).ok()?;
    hmac::verify(&key(master), payload.as_bytes(), &tag).ok()?;
    let expiry: i64 = expiry.parse().ok()?;
    (now < expiry && !token_id.is_empty()).then(|| (token_id.to_owned(), expiry))
}

/// `Set-Cookie` signing in `token_id` for [`LIFETIME_SECONDS`].
pub fn set_cookie(state: &AppState, token_id: &str, now: i64) -> HeaderValue {
    let value = sign(&state.master, token_id, now + LIFETIME_SECONDS);
    let cookie = format!(
        "{COOKIE}={value}; HttpOnly; Secure; SameSite=Strict; Path=/dashboard; Max-Age={LIFETIME_SECONDS}"
    );
    // Invariant: token ids, digits and hex are visible ASCII, valid in a header.
    HeaderValue::from_str(&cookie).expect("cookie is visible ASCII")
}

/// `Set-Cookie` removing the session.
pub fn clear_cookie() -> HeaderValue {
    HeaderValue::from_static(
        "ferry_session=; HttpOnly; Secure; SameSite=Strict; Path=/dashboard; Max-Age=0",
    )
}

fn cookie_value(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value)
}

/// Refuses a state-changing request sent from another origin: an `Origin` header, when
/// present, must name this host (browsers send it on every cross-origin POST).
pub fn check_origin(headers: &HeaderMap, authority: Option<&str>) -> Result<(), PageError> {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return Ok(());
    };
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or(authority);
    let origin_host = origin
        .to_str()
        .ok()
        .and_then(|o| o.strip_prefix("https://"));
    match (origin_host, host) {
        (Some(o), Some(h)) if o.eq_ignore_ascii_case(h) => Ok(()),
        _ => Err(PageError::Forbidden(
            "this form was sent from another site".into(),
        )),
    }
}

/// A signed-in admin. Without a valid session the request is redirected to sign in.
#[derive(Debug, Clone)]
pub struct Session {
    pub token_id: String,
    /// SHA-256 of the cookie value: what logout stores.
    pub session_hash: String,
    /// When the cookie expires (unix seconds).
    pub expires_at: i64,
}

impl Session {
    /// The session a request's cookie names, if it is well signed and unexpired (not
    /// yet checked against the store).
    pub fn from_cookie(state: &AppState, headers: &HeaderMap) -> Option<Self> {
        let value = cookie_value(headers)?;
        let (token_id, expires_at) =
            verify_with_expiry(&state.master, value, store::now_ms() / 1000)?;
        Some(Self {
            token_id,
            session_hash: ferry_shared::hash::sha256_hex(value.as_bytes()),
            expires_at,
        })
    }
}

impl FromRequestParts<AppState> for Session {
    type Rejection = PageError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let session = Self::from_cookie(state, &parts.headers).ok_or(PageError::SignIn)?;
        let (id, hash) = (session.token_id.clone(), session.session_hash.clone());
        let valid = state
            .store
            .read(move |c| {
                Ok::<_, diesel::result::Error>(
                    store::dashboard::admin_token_exists(c, &id)?
                        && !store::dashboard::session_revoked(c, &hash)?,
                )
            })
            .await?;
        if valid {
            Ok(session)
        } else {
            Err(PageError::SignIn)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cookie_value_is_read_among_others() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; ferry_session=x.2.ab; b=3"),
        );
        assert_eq!(cookie_value(&h), Some("x.2.ab"));
    }

    #[test]
    fn only_an_unexpired_cookie_signed_with_this_master_key_verifies() {
        let master = MasterKey::from_bytes(&[7; 32]).expect("32 bytes");
        let other = MasterKey::from_bytes(&[8; 32]).expect("32 bytes");
        let v = sign(&master, "tok", 1_000);
        assert_eq!(verify(&master, &v, 999).as_deref(), Some("tok"));
        assert_eq!(verify(&master, &v, 1_000), None, "expired");
        assert_eq!(verify(&other, &v, 999), None, "another master key");
        let forged = v.replacen("1000", "9000", 1);
        assert_eq!(verify(&master, &forged, 999), None, "expiry is signed");
        assert_eq!(verify(&master, "tok.1000.zz", 999), None);
    }

    #[test]
    fn a_cross_origin_post_is_refused() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("localhost:8443"));
        assert!(
            check_origin(&h, None).is_ok(),
            "no Origin: same-site form or a tool"
        );
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://localhost:8443"),
        );
        assert!(check_origin(&h, None).is_ok());
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://evil.example"),
        );
        assert!(check_origin(&h, None).is_err());
        h.insert(header::ORIGIN, HeaderValue::from_static("null"));
        assert!(check_origin(&h, None).is_err());
    }
}
