//! Bodies of the dynamic-source API (`/v1/services/{svc}/sources/{name}`): a customer
//! URL the control plane fetches periodically, whose JSON answer is delivered as one
//! metadata value, service-wide or per node (`{node}` in the URL).
//!
//! Request headers are secrets (API keys, bearer tokens): they are accepted here, sealed
//! at rest, and only their names are ever shown again.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use time::OffsetDateTime;

/// Shortest `interval_seconds`.
pub const MIN_SOURCE_INTERVAL_SECONDS: u64 = 1;
/// Longest `interval_seconds`: one day.
pub const MAX_SOURCE_INTERVAL_SECONDS: u64 = 86_400;
/// Most headers a source may send.
pub const MAX_SOURCE_HEADERS: usize = 32;
/// Longest URL (template), in bytes.
pub const MAX_SOURCE_URL_BYTES: usize = 2000;
/// The placeholder a node-scope URL carries; replaced by the node id.
pub const NODE_PLACEHOLDER: &str = "{node}";

/// Whose value a source fetches: one for the service, or one per node.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceScope {
    /// One URL; the value is service-wide.
    #[default]
    Service,
    /// A URL per node (the template's `{node}` replaced); each node gets its own value.
    Node,
}

impl SourceScope {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Service => "service",
            Self::Node => "node",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "service" => Some(Self::Service),
            "node" => Some(Self::Node),
            _ => None,
        }
    }
}

/// `PUT /v1/services/{svc}/sources/{name}`: creates or replaces the source (headers
/// included: a PUT without `headers` leaves the source without any). `Debug` hides
/// header values.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PutSourceRequest {
    /// `http(s)://...`; with `scope: node`, a template containing `{node}`.
    pub url: String,
    pub interval_seconds: u64,
    /// Sent with every fetch (e.g. `authorization`); sealed at rest, never shown again.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub scope: SourceScope,
    /// The metadata key the value is delivered as (default: the source's name).
    #[serde(default)]
    pub key: Option<String>,
}

impl std::fmt::Debug for PutSourceRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PutSourceRequest")
            .field("interval_seconds", &self.interval_seconds)
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .field("scope", &self.scope)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

/// A source as the API shows it: its settings (header names only) and fetch status.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Source {
    pub name: String,
    pub url: String,
    pub interval_seconds: u64,
    pub scope: SourceScope,
    pub key: String,
    pub header_names: Vec<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    pub status: SourceStatus,
}

/// How fetching goes. A node-scope source fetches one URL per node (`targets`); its
/// figures are the worst (failures, circuit) or latest (times, error) over them.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SourceStatus {
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_success_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_attempt_at: Option<OffsetDateTime>,
    pub last_error: Option<String>,
    pub consecutive_failures: u32,
    /// `closed` (fetching normally), `open` (paused after repeated failures) or
    /// `half-open` (one trial fetch after the cool-down).
    pub circuit: String,
    #[serde(with = "time::serde::rfc3339::option")]
    pub next_fetch_at: Option<OffsetDateTime>,
    pub targets: u64,
    pub failing_targets: u64,
    /// Node scope, `GET` of one source: the failing nodes (at most 100).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failing_nodes: Vec<FailingNode>,
}

/// One node whose fetch is failing.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FailingNode {
    pub node_id: String,
    pub consecutive_failures: u32,
    pub circuit: String,
    pub last_error: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_header_values() {
        let req: PutSourceRequest = serde_json::from_value(serde_json::json!({
            "url": "https://api.example/x",
            "interval_seconds": 60,
            "headers": { "authorization": "Bearer s3cr3t" },
        }))
        .expect("valid body");
        assert_eq!(req.scope, SourceScope::Service);
        let shown = format!("{req:?}");
        assert!(shown.contains("authorization") && !shown.contains("s3cr3t"));
    }
}
