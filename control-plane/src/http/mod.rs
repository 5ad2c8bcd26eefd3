//! The HTTP edge: one HTTPS listener serving the customer/admin API (bearer tokens)
//! and the agent API (mutual TLS) from the same router.
//!
//! `router` lists every route; handlers live in one file per resource; `extract`
//! holds the authentication extractors (a node's identity comes only from its verified
//! client certificate, never from the request); `tls` is the accept loop; `openapi`
//! the document of both APIs, generated from the handlers' `#[utoipa::path]`.

pub mod agent;
pub mod alerts;
pub mod auth;
pub mod bundle_view;
pub mod dashboard;
pub mod deliveries;
pub mod delivery;
pub mod error;
pub mod extract;
pub mod imports;
pub mod limits;
pub mod metadata;
pub mod metrics;
pub mod namespace;
pub mod nodes;
pub mod openapi;
pub mod roles;
pub mod router;
pub mod services;
pub mod sources;
pub mod system;
pub mod tenants;
pub mod timeouts;
pub mod tls;
pub mod tokens;
pub mod webhook;

use crate::ca::Ca;
use crate::ca::sealing::MasterKey;
use crate::delivery::{Issuer, Waiters};
use crate::store::Store;
use ferry_shared::TrustDomain;
use std::sync::Arc;
use std::time::Duration;

pub use error::ApiError;

/// What every handler may use. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    /// The root: signs node identities and delivered certificates.
    pub ca: Arc<Ca>,
    /// Signs the control plane's server certificate and nothing else.
    pub control_plane_ca: Arc<Ca>,
    /// The control plane's own names, which no delivered certificate may carry.
    pub server_names: Arc<Vec<String>>,
    pub trust_domain: TrustDomain,
    pub identity_ttl: Duration,
    /// The longest a long-poll is held here.
    pub max_poll_wait: Duration,
    pub master: Arc<MasterKey>,
    pub waiters: Arc<Waiters>,
    pub jobs: Arc<JobWakers>,
    pub stats: Arc<Stats>,
    /// Nodes connected to this replica, flushed to the database in batches.
    pub presence: Arc<crate::delivery::Presence>,
    /// Group commit of acks.
    pub acks: Arc<crate::delivery::acks::Acks>,
    /// Group commit of enrollments.
    pub enrollments: Arc<crate::enrollment::Enrollments>,
    /// Reads customer objects (inventories, imported certificates).
    pub objects: crate::objects::Objects,
    /// The outbound policy every tenant-aimed request goes through.
    pub outbound: crate::outbound::Outbound,
    /// Refuses enrollments from addresses that keep guessing join tokens.
    pub enroll_guard: Arc<limits::EnrollGuard>,
    /// Refuses API requests from addresses that keep presenting bad bearer tokens.
    pub auth_guard: Arc<limits::FailureGuard>,
}

/// Counters of this replica since it started (exported by `/metrics`).
#[derive(Default, Debug)]
pub struct Stats {
    /// Long-polls answered with a bundle.
    pub bundles_served: std::sync::atomic::AtomicU64,
    /// Long-polls answered 304.
    pub polls_not_modified: std::sync::atomic::AtomicU64,
    /// Acks persisted.
    pub acks: std::sync::atomic::AtomicU64,
    /// Enrollments refused with 429 (too many unknown join tokens from one address).
    pub enroll_refused: std::sync::atomic::AtomicU64,
    /// API requests refused with 429 (too many failed bearer tokens from one address).
    pub auth_refused: std::sync::atomic::AtomicU64,
    /// Connections closed at accept (too many open from one address).
    pub connections_refused: std::sync::atomic::AtomicU64,
    /// Duration of the last pass of each job, milliseconds.
    pub renewal_pass_ms: std::sync::atomic::AtomicU64,
    pub rotation_pass_ms: std::sync::atomic::AtomicU64,
    pub staleness_pass_ms: std::sync::atomic::AtomicU64,
}

/// Nudges for the background jobs, so work created by a request starts at once
/// instead of at the next tick.
#[derive(Default)]
pub struct JobWakers {
    pub renewal: tokio::sync::Notify,
    pub rotation: tokio::sync::Notify,
    pub staleness: tokio::sync::Notify,
    pub webhooks: tokio::sync::Notify,
    /// A dynamic source was created or changed: fetch it now.
    pub sources: tokio::sync::Notify,
}

impl AppState {
    pub fn issuer(&self) -> Issuer<'_> {
        Issuer {
            ca: &self.ca,
            master: &self.master,
            trust_domain: &self.trust_domain,
            reserved_names: &self.server_names,
        }
    }
}

impl From<crate::delivery::IssueError> for ApiError {
    fn from(e: crate::delivery::IssueError) -> Self {
        use crate::delivery::IssueError;
        match e {
            IssueError::Ca(ca) => ca.into(),
            IssueError::NodeGone(n) => ApiError::not_found(format!("node {n}")),
            IssueError::Imported(_) => ApiError::conflict(e.to_string()),
            IssueError::Name(_) => ApiError::unprocessable("name-not-allowed", e.to_string()),
            other => ApiError::Internal(other.into()),
        }
    }
}

/// A random secret with a recognisable prefix (so secret scanners can find leaks).
pub fn new_secret(prefix: &str) -> Result<String, ApiError> {
    use base64::Engine;
    let mut bytes = [0u8; 32];
    aws_lc_rs::rand::fill(&mut bytes)
        .map_err(|_| ApiError::Internal(anyhow::anyhow!("random number generator failed")))?;
    Ok(format!(
        "{prefix}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    ))
}

/// A short random id for rows (not secret).
pub fn new_id() -> Result<String, ApiError> {
    let mut bytes = [0u8; 12];
    aws_lc_rs::rand::fill(&mut bytes)
        .map_err(|_| ApiError::Internal(anyhow::anyhow!("random number generator failed")))?;
    Ok(hex::encode(bytes))
}
