//! Custom metadata: the key rule both sides enforce (a key becomes a file name on the
//! node, so it must be one plain name) and the API bodies that set and show values.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// Longest key, in bytes.
pub const MAX_METADATA_KEY_BYTES: usize = 128;
/// Largest value, as serialized JSON.
pub const MAX_METADATA_VALUE_BYTES: usize = 32 * 1024;
/// Most metadata one bundle may carry: keys plus values as serialized JSON, service
/// values and a node's own counted together. Half the agent's limit on a whole answer
/// (1 MiB), leaving room for certificates, chain, key and trust bundle.
pub const MAX_BUNDLE_METADATA_BYTES: usize = 512 * 1024;

/// Why `key` cannot be a metadata key (and so a file name), if it cannot.
pub fn check_metadata_key(key: &str) -> Result<(), &'static str> {
    if key.is_empty() {
        return Err("it is empty");
    }
    if key.len() > MAX_METADATA_KEY_BYTES {
        return Err("it is longer than 128 bytes");
    }
    if key.contains('/') || key.contains('\\') {
        return Err("it contains '/' or '\\'");
    }
    if key.contains("..") || key == "." {
        return Err("it contains '..' or is '.'");
    }
    if key.contains('\0') {
        return Err("it contains NUL");
    }
    if key.chars().any(char::is_control) {
        return Err("it contains control characters");
    }
    Ok(())
}

/// `PUT .../metadata/{key}`: a JSON value, optionally expiring at a time or after a
/// number of seconds (not both).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PutMetadataRequest {
    pub value: serde_json::Value,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub expires_at: Option<OffsetDateTime>,
    #[serde(default)]
    pub ttl_seconds: Option<u64>,
}

/// One stored value, at the level it was set (service-wide or one node).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetadataEntry {
    pub key: String,
    pub value: serde_json::Value,
    #[serde(with = "time::serde::rfc3339::option")]
    pub expires_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    /// The dynamic source that wrote it; absent when set through the API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

/// `GET /v1/services/{svc}/nodes/{node}/bundle`: what the node should have next to
/// what it acknowledged. Never carries a private key.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeBundleView {
    pub service: String,
    pub node_id: String,
    pub desired: Option<DesiredBundle>,
    pub acked_version: i64,
    pub acked_hash: Option<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub acked_at: Option<OffsetDateTime>,
    /// Whether the acknowledged content is the desired one.
    pub in_sync: bool,
}

/// The desired side of [`NodeBundleView`].
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DesiredBundle {
    pub version: i64,
    pub content_hash: String,
    pub key_mode: String,
    pub certificate: Option<CertificateDetails>,
    pub metadata: std::collections::BTreeMap<String, serde_json::Value>,
    pub csr_required: bool,
}

/// What a customer wants to know about a delivered certificate.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CertificateDetails {
    pub serial: String,
    pub subject: String,
    pub sans: Vec<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub not_before: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub not_after: OffsetDateTime,
    pub pem: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_plain_file_names() {
        for bad in [
            "",
            ".",
            "..",
            "a/b",
            "../x",
            "a\\b",
            "a\0b",
            "a\nb",
            &"k".repeat(129),
        ] {
            assert!(check_metadata_key(bad).is_err(), "{bad:?} accepted");
        }
        for good in ["env", "tags.json", "a-b_c", "ünïcode", &"k".repeat(128)] {
            assert_eq!(check_metadata_key(good), Ok(()), "{good:?} refused");
        }
    }
}
