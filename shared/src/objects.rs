//! Bodies of the object-source API: a service's inventory (`/v1/services/{svc}/inventory`),
//! its imported-certificate bucket (`/v1/services/{svc}/certificate-source`) and a
//! certificate imported by hand (`/v1/services/{svc}/nodes/{node}/certificate`).

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// `PUT /v1/services/{svc}/inventory`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PutInventoryRequest {
    /// `s3://bucket/key` or `https://...`: a JSON array of node ids, or one per line.
    pub url: String,
    /// What happens to enrolled nodes the inventory does not list: `flag` (an alert,
    /// the default) or `revoke`.
    #[serde(default)]
    pub policy: Option<String>,
    /// How often the inventory is read (default 300).
    #[serde(default)]
    pub interval_seconds: Option<u64>,
    /// Listed nodes that have not enrolled after this long are alerted (default 600).
    #[serde(default)]
    pub grace_seconds: Option<u64>,
}

/// `PUT /v1/services/{svc}/certificate-source` (services in `imported` key mode).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PutCertificateSourceRequest {
    /// `s3://bucket/prefix/` holding `{node}.pem` (certificate, then its chain) and
    /// `{node}.key`.
    pub url: String,
    /// How often the prefix is listed (default 60).
    #[serde(default)]
    pub interval_seconds: Option<u64>,
}

/// A source as the API shows it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ObjectSource {
    pub url: String,
    pub policy: String,
    pub interval_seconds: u64,
    pub grace_seconds: u64,
    #[serde(with = "time::serde::rfc3339::option")]
    pub synced_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339")]
    pub next_sync_at: OffsetDateTime,
    pub last_error: Option<String>,
}

/// `GET /v1/services/{svc}/inventory`: the source and what its last sync found.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InventoryStatus {
    pub source: ObjectSource,
    pub listed: u64,
    /// Listed, not enrolled (at most 1,000 shown; `never_enrolled_count` is exact).
    pub never_enrolled: Vec<String>,
    pub never_enrolled_count: u64,
    /// Enrolled, not listed (at most 1,000 shown).
    pub not_in_inventory: Vec<String>,
    pub not_in_inventory_count: u64,
}

/// `PUT /v1/services/{svc}/nodes/{node}/certificate`. `Debug` hides the key.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImportCertificateRequest {
    /// PEM: the node's certificate first, then its intermediates.
    pub certificate: String,
    /// PEM private key of the certificate.
    pub private_key: String,
}

impl std::fmt::Debug for ImportCertificateRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImportCertificateRequest")
            .field("private_key", &"[redacted]")
            .finish_non_exhaustive()
    }
}

/// Answer of an import.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Imported {
    pub version: i64,
    #[serde(with = "time::serde::rfc3339")]
    pub not_after: OffsetDateTime,
}
