//! The RFC 7807 problem body every API error carries.

use serde::{Deserialize, Serialize};

/// Media type of [`Problem`] responses.
pub const PROBLEM_CONTENT_TYPE: &str = "application/problem+json";

/// 403 slug: the node this identity names was deleted (revoked) or never existed. An
/// agent that gets it stops polling until an operator enrolls it again.
pub const NODE_REVOKED: &str = "node-revoked";
/// 403 slug: a newer enrollment replaced this identity certificate (takeover recovery, or
/// the retry window of a renewed identity has passed).
pub const IDENTITY_SUPERSEDED: &str = "identity-superseded";

/// An RFC 7807 problem document. `type` is a stable, machine-readable slug under
/// `https://ferry.dev/problems/`; `detail` is for humans.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl Problem {
    /// The slug at the end of `type` (`not-found`, `invalid-name`, ...).
    pub fn slug(&self) -> &str {
        self.kind.rsplit('/').next().unwrap_or(&self.kind)
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.detail {
            Some(d) => write!(f, "{} ({}): {}", self.title, self.status, d),
            None => write!(f, "{} ({})", self.title, self.status),
        }
    }
}
