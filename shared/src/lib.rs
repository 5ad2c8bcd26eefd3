//! Ferry's wire types and validated names, shared by the control plane, the agent and
//! `ferryctl`.
//!
//! What lives here: request/response bodies of both APIs ([`api`]), names that are
//! parsed once and trusted afterwards ([`ids`]), the RFC 7807 problem body ([`error`]),
//! hash/fingerprint helpers ([`hash`]), the metadata key rule and bodies ([`metadata`]),
//! the object-source bodies ([`objects`]) and the dynamic-source bodies ([`sources`]).
//! What must not: I/O, async runtimes, HTTP, TLS or database types. The agent links
//! this crate, so it stays small.
#![forbid(unsafe_code)]

pub mod api;
pub mod error;
pub mod hash;
pub mod ids;
pub mod metadata;
pub mod objects;
#[cfg(feature = "openapi")]
pub mod openapi;
pub mod sources;

pub use error::Problem;
pub use ids::{
    KeyMode, KeyType, NameError, NodeId, ServiceName, SpiffeId, TenantName, TokenName, TokenRole,
    TrustDomain,
};
