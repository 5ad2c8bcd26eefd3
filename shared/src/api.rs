//! Request and response bodies of the customer/admin API and the agent API.
//!
//! Times are RFC 3339 strings in UTC. Bodies the server reads refuse unknown fields,
//! so a typo in a client is an error rather than a silently ignored setting.

use crate::ids::{KeyMode, KeyType, NodeId, ServiceName, TenantName, TokenName, TokenRole};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// Route paths, shared so clients and the router cannot drift apart.
pub mod routes {
    pub const HEALTHZ: &str = "/healthz";
    pub const READYZ: &str = "/readyz";
    /// The trust anchors delivered to nodes: what verifies node certificates.
    pub const TRUST_BUNDLE: &str = "/v1/trust-bundle";
    /// The CA that signs the control plane's server certificate and nothing else: what
    /// agents and ferryctl pin (by fingerprint) to reach the control plane.
    pub const CONTROL_PLANE_CA: &str = "/v1/control-plane-ca";
    pub const TENANTS: &str = "/v1/tenants";
    pub const SERVICES: &str = "/v1/services";
    pub const AUDIT: &str = "/v1/audit";
    pub const AGENT_ENROLL: &str = "/v1/agent/enroll";
    pub const AGENT_RENEW: &str = "/v1/agent/renew";
    pub const AGENT_WHOAMI: &str = "/v1/agent/whoami";
    pub const AGENT_BUNDLE: &str = "/v1/agent/bundle";
    pub const AGENT_ACK: &str = "/v1/agent/ack";
    pub const AGENT_CSR: &str = "/v1/agent/csr";

    pub fn node_refresh(svc: &str, node: &str) -> String {
        format!("/v1/services/{svc}/nodes/{node}/refresh")
    }
    pub fn delivery(id: &str) -> String {
        format!("/v1/deliveries/{id}")
    }
    pub fn rotate(svc: &str) -> String {
        format!("/v1/services/{svc}/rotate")
    }
    pub fn rotation(svc: &str, id: &str) -> String {
        format!("/v1/services/{svc}/rotations/{id}")
    }

    pub fn tenant_tokens(tenant: &str) -> String {
        format!("/v1/tenants/{tenant}/tokens")
    }
    pub fn tenant_token(tenant: &str, name: &str) -> String {
        format!("/v1/tenants/{tenant}/tokens/{name}")
    }
    pub fn service(svc: &str) -> String {
        format!("/v1/services/{svc}")
    }
    pub fn join_tokens(svc: &str) -> String {
        format!("/v1/services/{svc}/join-tokens")
    }
    pub fn nodes(svc: &str) -> String {
        format!("/v1/services/{svc}/nodes")
    }
    pub fn node(svc: &str, node: &str) -> String {
        format!("/v1/services/{svc}/nodes/{node}")
    }
}

/// Largest request body any route accepts.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// One page of a list; pass `next_cursor` back as `?cursor=` for the next page.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateTenantRequest {
    pub name: TenantName,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Tenant {
    pub name: TenantName,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateApiTokenRequest {
    /// Free text shown in the audit log (who or what holds the token).
    #[serde(default)]
    pub description: Option<String>,
    /// Unique within the tenant; the token is listed and revoked by it. Default: the
    /// token's id.
    #[serde(default)]
    pub name: Option<TokenName>,
    /// Default `admin` (what every token could do before roles).
    #[serde(default)]
    pub role: Option<TokenRole>,
    /// Seconds until the token stops working (1..=315360000); absent: it never expires.
    #[serde(default)]
    pub expires_in_seconds: Option<u64>,
}

/// A new API token. The secret is shown once and stored only as a hash.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApiTokenCreated {
    pub id: String,
    pub tenant: Option<TenantName>,
    pub token: String,
    pub name: TokenName,
    pub role: TokenRole,
    #[serde(with = "time::serde::rfc3339::option")]
    pub expires_at: Option<OffsetDateTime>,
}

/// An API token as listed: never its secret (only its hash is stored).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApiToken {
    pub name: TokenName,
    pub tenant: Option<TenantName>,
    pub role: TokenRole,
    pub description: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub expires_at: Option<OffsetDateTime>,
    /// True once `expires_at` has passed: the token is refused (401) until revoked.
    pub expired: bool,
}

/// Service settings a customer chooses; every field but `name` has a default.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceSettings {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_ttl_seconds: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renew_before_seconds: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_type: Option<KeyType>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_mode: Option<KeyMode>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stale_after_seconds: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grace_seconds: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alert_before_seconds: Option<u64>,
    /// Names of delivered certificates, comma-separated, with `{node}`, `{service}` and
    /// `{trust_domain}` (default `{node}.{service}.{trust_domain}`; empty: none). An
    /// entry that is an IP address becomes an IP SAN (it must be in `ip_ranges`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub san_template: Option<String>,
    /// Deployment admin only: the DNS suffixes this service's certificates may name
    /// (default: only names under `<service>.<trust_domain>`). The control plane's own
    /// names and `localhost` are refused whatever the list says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns_suffixes: Option<Vec<String>>,
    /// Deployment admin only: whether a name may start with a `*` label (default false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wildcard_names: Option<bool>,
    /// Deployment admin only: the IP networks (CIDR, e.g. `10.20.0.0/16`) whose
    /// addresses `san_template` may name, as IP SANs (default: none). Loopback,
    /// unspecified, link-local and multicast addresses are refused whatever it says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_ranges: Option<Vec<String>>,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateServiceRequest {
    pub name: ServiceName,
    /// Only for admin tokens: the tenant that owns the service (default `default`).
    /// A tenant token always creates in its own tenant.
    #[serde(default)]
    pub tenant: Option<TenantName>,
    #[serde(flatten)]
    pub settings: ServiceSettings,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Service {
    pub name: ServiceName,
    pub tenant: TenantName,
    pub cert_ttl_seconds: u64,
    pub renew_before_seconds: u64,
    pub key_type: KeyType,
    pub key_mode: KeyMode,
    pub stale_after_seconds: u64,
    pub grace_seconds: u64,
    pub alert_before_seconds: u64,
    pub san_template: String,
    /// The DNS suffixes an admin allowed (empty: only `<service>.<trust_domain>`).
    #[serde(default)]
    pub dns_suffixes: Vec<String>,
    #[serde(default)]
    pub wildcard_names: bool,
    /// The IP networks an admin allowed as IP SANs (empty: no IP address).
    #[serde(default)]
    pub ip_ranges: Vec<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateJoinTokenRequest {
    /// Lifetime of the token (default 3600, at most 30 days).
    #[serde(default)]
    pub ttl_seconds: Option<u64>,
    /// How many enrollments it allows (default 1, at most 1,000,000).
    #[serde(default)]
    pub max_uses: Option<u32>,
    /// Whether it may enroll over a node that already exists, replacing that node's
    /// identity (default false: enrolling an existing node id is refused with 409).
    #[serde(default)]
    pub replaces_nodes: bool,
}

/// A new join token. The secret is shown once; `ca_fingerprint` pins the CA for
/// `ferry-agent enroll --ca-fingerprint`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JoinTokenCreated {
    pub token: String,
    pub ca_fingerprint: String,
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
    pub max_uses: u32,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Node {
    pub service: ServiceName,
    pub node_id: NodeId,
    pub spiffe_id: String,
    /// `active` once enrolled.
    pub state: String,
    pub desired_version: i64,
    pub acked_version: i64,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_seen: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub cert_not_after: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339")]
    pub identity_not_after: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub enrolled_at: OffsetDateTime,
    /// Content hash of the desired bundle (`None` before the first one is issued).
    pub desired_hash: Option<String>,
    /// Content hash the node last acknowledged.
    pub acked_hash: Option<String>,
    /// When the control plane will next re-issue this node's certificate.
    #[serde(with = "time::serde::rfc3339::option")]
    pub renew_at: Option<OffsetDateTime>,
    /// Node clock minus server clock, as the agent measured it, in milliseconds.
    pub clock_skew_ms: Option<i64>,
    /// The error of the last failed install or reload hook, cleared by a good ack.
    pub last_error: Option<String>,
    pub hook_exit_code: Option<i32>,
    pub agent_version: Option<String>,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AuditEntry {
    pub id: i64,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// `admin:<token id>`, `tenant:<tenant>:<token id>`, `node:<spiffe id>` or `system`.
    pub actor: String,
    pub tenant: Option<String>,
    pub action: String,
    pub target: String,
    pub detail: serde_json::Value,
}

/// `POST /v1/agent/enroll`: the one agent call made without a client certificate.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrollRequest {
    pub service: ServiceName,
    pub node_id: NodeId,
    pub join_token: String,
    /// PEM PKCS#10 request signed by the node's own key.
    pub csr: String,
}

/// `POST /v1/agent/renew` over mTLS: a fresh CSR for the caller's own identity.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RenewRequest {
    pub csr: String,
}

/// An identity certificate issued by enroll or renew.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IdentityIssued {
    pub spiffe_id: String,
    /// PEM of the node's identity certificate.
    pub certificate: String,
    /// PEM of the CA certificates (the trust bundle).
    pub ca_certificates: String,
    #[serde(with = "time::serde::rfc3339")]
    pub not_after: OffsetDateTime,
    /// The control plane's clock when it answered, so agents can measure skew.
    #[serde(with = "time::serde::rfc3339")]
    pub server_time: OffsetDateTime,
}

/// `GET /v1/agent/whoami`: who the server thinks the client certificate belongs to.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WhoAmI {
    pub spiffe_id: String,
    pub service: ServiceName,
    pub node_id: NodeId,
    #[serde(with = "time::serde::rfc3339")]
    pub server_time: OffsetDateTime,
}

/// Response headers of the long-poll, also present on 304 (which has no body).
pub mod headers {
    /// The server's clock, unix milliseconds.
    pub const SERVER_TIME_MS: &str = "ferry-server-time-ms";
    /// How long the agent should wait before its next poll, milliseconds (jittered).
    pub const RETRY_AFTER_MS: &str = "ferry-retry-after-ms";
}

/// Longest `wait` the long-poll honours, seconds.
pub const MAX_POLL_WAIT_SECONDS: u64 = 55;

/// `GET /v1/agent/bundle?since=V&wait=S`.
#[cfg_attr(
    feature = "openapi",
    derive(utoipa::IntoParams),
    into_params(parameter_in = Query)
)]
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundleQuery {
    /// The version the agent has installed (0: none).
    #[serde(default)]
    pub since: i64,
    /// Seconds to hold the request when nothing is newer (capped at 55; 0 answers at once).
    #[serde(default)]
    pub wait: Option<u64>,
}

/// Everything a node installs, at one version. `content_hash` covers every field the
/// node writes to disk (see [`crate::hash::bundle_content_hash`]). `Debug` never shows
/// the private key.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct Bundle {
    pub version: i64,
    pub content_hash: String,
    /// PEM of the node's certificate (empty while a `node-key` node owes its first CSR).
    pub certificate: String,
    /// PEM of intermediates between the certificate and the trust bundle (may be empty).
    pub chain: String,
    /// PEM private key, only in `central` key mode; `None` in `node-key` mode.
    pub private_key: Option<String>,
    /// PEM of the CA certificates to trust.
    pub trust_bundle: String,
    /// Custom metadata (key -> JSON value); keys are validated names.
    pub metadata: std::collections::BTreeMap<String, serde_json::Value>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub not_after: Option<OffsetDateTime>,
    /// `node-key` mode: the node must generate a new key and POST a CSR to
    /// `/v1/agent/csr`; the certificate for it arrives in a later version.
    pub csr_required: bool,
    /// With `csr_required`: the key type the service requires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub csr_key_type: Option<KeyType>,
    /// The service's `alert_before`: inside this window before its certificate expires
    /// a node is in trouble (it should have been renewed long before), and the agent
    /// says so locally when it cannot reach the control plane. Not part of the hash.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alert_before_seconds: Option<u64>,
}

impl std::fmt::Debug for Bundle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bundle")
            .field("version", &self.version)
            .field("content_hash", &self.content_hash)
            .field(
                "private_key",
                &self.private_key.as_ref().map(|_| "[redacted]"),
            )
            .field("not_after", &self.not_after)
            .field("csr_required", &self.csr_required)
            .field("metadata_keys", &self.metadata.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// 200 answer of the long-poll.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BundleResponse {
    pub bundle: Bundle,
    #[serde(with = "time::serde::rfc3339")]
    pub server_time: OffsetDateTime,
}

/// Outcome of an install, as acknowledged.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AckStatus {
    /// Installed and the reload hook (if any) succeeded.
    Installed,
    /// Verification, install or the reload hook failed; `error` says why.
    Failed,
}

/// `POST /v1/agent/ack`. Persisted before the 2xx; duplicates are harmless.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AckRequest {
    pub version: i64,
    pub content_hash: String,
    pub status: AckStatus,
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub cert_not_after: Option<OffsetDateTime>,
    #[serde(default)]
    pub hook_exit_code: Option<i32>,
    /// Node clock minus server clock, milliseconds (positive: the node is ahead).
    #[serde(default)]
    pub clock_skew_ms: Option<i64>,
    #[serde(default)]
    pub agent_version: Option<String>,
}

/// `POST /v1/agent/csr` (node-key mode): a CSR for the key the node just generated.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CsrSubmission {
    pub csr: String,
}

/// `POST /v1/services/{svc}/nodes/{node}/refresh` -> 202.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RefreshAccepted {
    pub delivery_id: String,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryState {
    Pending,
    Delivered,
    Failed,
    Superseded,
}

/// `GET /v1/deliveries/{id}`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Delivery {
    pub delivery_id: String,
    pub service: ServiceName,
    pub node_id: NodeId,
    pub state: DeliveryState,
    /// The bundle version that carries it (set once issued).
    pub version: Option<i64>,
    pub rotation_id: Option<String>,
    pub error: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub issued_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub finished_at: Option<OffsetDateTime>,
}

/// `POST /v1/services/{svc}/rotate`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RotateRequest {
    /// Deliveries in flight at once (default 100).
    #[serde(default)]
    pub max_in_flight: Option<u32>,
}

/// A service-wide rotation and its progress.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Rotation {
    pub rotation_id: String,
    pub service: ServiceName,
    /// `running` or `done`.
    pub state: String,
    pub max_in_flight: u32,
    pub total: u64,
    pub delivered: u64,
    pub failed: u64,
    /// Issued and not yet acknowledged.
    pub in_flight: u64,
    /// Not yet issued.
    pub queued: u64,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub finished_at: Option<OffsetDateTime>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_service_refuses_unknown_fields_and_bad_names() {
        let ok: CreateServiceRequest =
            serde_json::from_str(r#"{"name":"web","cert_ttl_seconds":60}"#).expect("valid body");
        assert_eq!(ok.settings.cert_ttl_seconds, Some(60));
        assert!(
            serde_json::from_str::<CreateServiceRequest>(r#"{"name":"web","ttl":60}"#).is_err()
        );
        assert!(serde_json::from_str::<CreateServiceRequest>(r#"{"name":"Web!"}"#).is_err());
    }
}
