//! The agent's HTTPS client: the only module that talks to the network.
//!
//! Trust is explicit: a [`Client`] trusts exactly the CA certificates it is built with
//! (never the system roots). The one unverified request is the control-plane CA fetch of
//! [`fetch_trust_bundle_pinned`], whose answer is accepted only if it contains the CA
//! whose SHA-256 the operator pinned, and only that CA is trusted afterwards.
//! A client's TLS identity is fixed, so a new [`Client`] is built after every renewal.
//! Error bodies are read as RFC 7807 problems and shown as `title (status): detail`.

use crate::config::Secret;
use crate::identity::{IdentityError, pem_certificates};
use ferry_shared::Problem;
use ferry_shared::api::{EnrollRequest, IdentityIssued, RenewRequest, WhoAmI, routes};
use ferry_shared::hash::ca_fingerprint;
use reqwest::{Certificate, Identity, Method, RequestBuilder, StatusCode, Url};
use rustls_pki_types::CertificateDer;
use serde::de::DeserializeOwned;
use std::time::Duration;
use time::OffsetDateTime;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// The control plane closes a keep-alive connection idle for 15 s; the agent drops its
/// own first, so a close lost in a partition never costs a failed request after it heals.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// Larger answers are refused: every agent response is a few KB.
const MAX_RESPONSE_BYTES: usize = 1024 * 1024;
// The control plane refuses metadata that would make a bundle larger than this allows.
const _: () = assert!(2 * ferry_shared::metadata::MAX_BUNDLE_METADATA_BYTES <= MAX_RESPONSE_BYTES);

/// What went wrong talking to the control plane.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("could not set up the HTTPS client")]
    Build(#[source] reqwest::Error),
    #[error("{what} is not usable for TLS")]
    Tls {
        what: &'static str,
        #[source]
        source: reqwest::Error,
    },
    #[error("could not reach the control plane for {action}")]
    Transport {
        action: &'static str,
        #[source]
        source: reqwest::Error,
    },
    #[error("answer to {action} is larger than {MAX_RESPONSE_BYTES} bytes")]
    TooLarge { action: &'static str },
    #[error("server refused {action}: {problem}")]
    Refused {
        action: &'static str,
        status: u16,
        problem: Problem,
    },
    #[error("unexpected answer to {action}")]
    Decode {
        action: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("CA fingerprint mismatch: expected {expected}, server presented {presented}")]
    CaMismatch { expected: String, presented: String },
    #[error("the trust bundle served by the control plane is unusable")]
    BadBundle(#[source] IdentityError),
}

impl ClientError {
    /// The HTTP status the server answered with, if it answered with an error.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Refused { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The server's words when it refused this node's identity for good: the node was
    /// revoked (deleted) or a newer enrollment superseded this certificate.
    pub fn revocation(&self) -> Option<String> {
        use ferry_shared::error::{IDENTITY_SUPERSEDED, NODE_REVOKED};
        match self {
            Self::Refused {
                status: 403,
                problem,
                ..
            } if [NODE_REVOKED, IDENTITY_SUPERSEDED].contains(&problem.slug()) => Some(
                problem
                    .detail
                    .clone()
                    .unwrap_or_else(|| problem.title.clone()),
            ),
            _ => None,
        }
    }
}

/// A response body and the clock skew measured while fetching it.
#[derive(Debug, Clone)]
pub struct Timed<T> {
    pub body: T,
    /// Server clock minus local clock, in milliseconds.
    pub clock_skew_ms: i64,
}

/// HTTPS client for one server, one set of trusted CAs and at most one client identity.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
}

impl Client {
    /// Without a client certificate: for enrollment. `ca_pem` holds the only trusted CAs.
    pub fn anonymous(server: &Url, ca_pem: &str) -> Result<Self, ClientError> {
        Self::build(server, ca_pem, None)
    }

    /// mTLS as the node whose certificate and key are given.
    pub fn with_identity(
        server: &Url,
        ca_pem: &str,
        cert_pem: &str,
        key_pem: &Secret,
    ) -> Result<Self, ClientError> {
        let pem = format!("{}\n{}", cert_pem.trim_end(), key_pem.expose());
        let identity = Identity::from_pem(pem.as_bytes()).map_err(|source| ClientError::Tls {
            what: "the identity certificate and key",
            source,
        })?;
        Self::build(server, ca_pem, Some(identity))
    }

    fn build(server: &Url, ca_pem: &str, identity: Option<Identity>) -> Result<Self, ClientError> {
        let roots =
            Certificate::from_pem_bundle(ca_pem.as_bytes()).map_err(|source| ClientError::Tls {
                what: "the CA bundle",
                source,
            })?;
        let mut builder = base_builder().tls_certs_only(roots);
        if let Some(identity) = identity {
            builder = builder.identity(identity);
        }
        Ok(Self {
            http: builder.build().map_err(ClientError::Build)?,
            base: base_url(server),
        })
    }

    /// `POST /v1/agent/enroll`.
    pub async fn enroll(&self, req: &EnrollRequest) -> Result<Timed<IdentityIssued>, ClientError> {
        let rb = self.request(Method::POST, routes::AGENT_ENROLL).json(req);
        timed("enrollment", rb, |b: &IdentityIssued| b.server_time).await
    }

    /// `POST /v1/agent/renew` over mTLS, with a CSR for a fresh key.
    pub async fn renew(&self, csr: String) -> Result<Timed<IdentityIssued>, ClientError> {
        let rb = self
            .request(Method::POST, routes::AGENT_RENEW)
            .json(&RenewRequest { csr });
        timed("renewal", rb, |b: &IdentityIssued| b.server_time).await
    }

    /// `GET /v1/agent/whoami` over mTLS.
    pub async fn whoami(&self) -> Result<Timed<WhoAmI>, ClientError> {
        let rb = self.request(Method::GET, routes::AGENT_WHOAMI);
        timed("whoami", rb, |b: &WhoAmI| b.server_time).await
    }

    /// The server's base URL, without a trailing `/`.
    pub fn server(&self) -> &str {
        &self.base
    }

    fn request(&self, method: Method, route: &str) -> RequestBuilder {
        self.http
            .request(method, format!("{}{route}", self.base))
            .timeout(REQUEST_TIMEOUT)
    }
}

/// Fetches the control-plane CA (`GET /v1/control-plane-ca`; a control plane from
/// before it existed answers 404, and then `GET /v1/trust-bundle`) without verifying the
/// server (there is nothing to verify it with yet) and returns the PEM of the one CA
/// certificate whose DER hashes to `fingerprint` (`sha256:<hex>`). Other certificates
/// are dropped: an attacker in the middle could add its own CA to the answer, but
/// cannot forge the pin.
pub async fn fetch_trust_bundle_pinned(
    server: &Url,
    fingerprint: &str,
) -> Result<String, ClientError> {
    const ACTION: &str = "the control-plane CA request";
    let http = base_builder()
        .tls_danger_accept_invalid_certs(true)
        .build()
        .map_err(ClientError::Build)?;
    let get = |route: &str| {
        http.get(format!("{}{route}", base_url(server)))
            .timeout(REQUEST_TIMEOUT)
    };
    let body = match send(ACTION, get(routes::CONTROL_PLANE_CA)).await {
        Err(e) if e.status() == Some(404) => send(ACTION, get(routes::TRUST_BUNDLE)).await?,
        other => other?,
    };
    let bundle = String::from_utf8_lossy(&body);
    let pinned = select_pinned(&bundle, fingerprint)?;
    Ok(pem_encode(&pinned))
}

/// The certificate of `bundle_pem` whose DER SHA-256 is `fingerprint`.
pub fn select_pinned(
    bundle_pem: &str,
    fingerprint: &str,
) -> Result<CertificateDer<'static>, ClientError> {
    let expected = fingerprint.to_ascii_lowercase();
    let certs = pem_certificates(bundle_pem, "the trust bundle").map_err(ClientError::BadBundle)?;
    let presented: Vec<String> = certs.iter().map(|c| ca_fingerprint(c)).collect();
    match presented.iter().position(|fp| *fp == expected) {
        Some(i) => Ok(certs[i].clone()),
        None => Err(ClientError::CaMismatch {
            expected,
            presented: presented.join(", "),
        }),
    }
}

/// PEM text of one DER certificate.
pub fn pem_encode(der: &CertificateDer<'_>) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der.as_ref());
    let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        pem.push_str(&String::from_utf8_lossy(line));
        pem.push('\n');
    }
    pem.push_str("-----END CERTIFICATE-----\n");
    pem
}

/// Server clock minus local clock. `sent` and `received` bracket the request; the server
/// stamped its time somewhere in between, so compare with the midpoint.
pub fn clock_skew_ms(
    server_time: OffsetDateTime,
    sent: OffsetDateTime,
    received: OffsetDateTime,
) -> i64 {
    let half_round_trip: time::Duration = (received - sent) / 2;
    let skew: time::Duration = server_time - (sent + half_round_trip);
    i64::try_from(skew.whole_milliseconds()).unwrap_or(i64::MAX)
}

fn base_builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .https_only(true)
        .connect_timeout(CONNECT_TIMEOUT)
        .pool_idle_timeout(POOL_IDLE_TIMEOUT)
        .user_agent(concat!("ferry-agent/", env!("CARGO_PKG_VERSION")))
}

fn base_url(server: &Url) -> String {
    server.as_str().trim_end_matches('/').to_owned()
}

async fn timed<T: DeserializeOwned>(
    action: &'static str,
    rb: RequestBuilder,
    server_time: impl Fn(&T) -> OffsetDateTime,
) -> Result<Timed<T>, ClientError> {
    let sent = OffsetDateTime::now_utc();
    let body = send(action, rb).await?;
    let received = OffsetDateTime::now_utc();
    let body: T =
        serde_json::from_slice(&body).map_err(|source| ClientError::Decode { action, source })?;
    let clock_skew_ms = clock_skew_ms(server_time(&body), sent, received);
    Ok(Timed {
        body,
        clock_skew_ms,
    })
}

/// Sends the request and returns the body of a 2xx answer; any other status becomes
/// [`ClientError::Refused`] with the server's problem document.
async fn send(action: &'static str, rb: RequestBuilder) -> Result<Vec<u8>, ClientError> {
    let resp = rb
        .send()
        .await
        .map_err(|source| ClientError::Transport { action, source })?;
    let status = resp.status();
    let body = read_body(action, resp).await?;
    if status.is_success() {
        return Ok(body);
    }
    Err(ClientError::Refused {
        action,
        status: status.as_u16(),
        problem: problem_from(status, &body),
    })
}

/// The whole body, refusing answers over [`MAX_RESPONSE_BYTES`].
async fn read_body(
    action: &'static str,
    mut resp: reqwest::Response,
) -> Result<Vec<u8>, ClientError> {
    let transport = |source| ClientError::Transport { action, source };
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(transport)? {
        if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
            return Err(ClientError::TooLarge { action });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The problem document of an error answer, or one made up from the status and body when
/// the server (or a proxy in front of it) did not send one.
fn problem_from(status: StatusCode, body: &[u8]) -> Problem {
    if let Ok(problem) = serde_json::from_slice::<Problem>(body) {
        return problem;
    }
    let text = String::from_utf8_lossy(body);
    let mut detail = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if detail.len() > 200 {
        let cut = (0..=200)
            .rev()
            .find(|&i| detail.is_char_boundary(i))
            .unwrap_or(0);
        detail.truncate(cut);
        detail.push_str("...");
    }
    Problem {
        kind: "about:blank".to_owned(),
        title: status.canonical_reason().unwrap_or("HTTP error").to_owned(),
        status: status.as_u16(),
        detail: (!detail.is_empty()).then_some(detail),
    }
}

mod delivery;
#[cfg(test)]
mod tests;

pub use delivery::Polled;
