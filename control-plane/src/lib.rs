//! Ferry's control plane: the REST API for customers and admins, the agent API over
//! mutual TLS, the internal CA and the datastore.
//!
//! `config` is the only module reading the environment or files; `startup` turns a
//! config into a bound [`startup::App`] (tests bind port 0); `http` is the edge; `ca`
//! is pure issuance; `store` is every query. Nothing here depends on the agent crate.
#![forbid(unsafe_code)]

pub mod ca;
pub mod config;
pub mod datadir;
pub mod delivery;
pub mod enrollment;
pub mod http;
pub mod jobs;
pub mod objects;
pub mod outbound;
pub mod service_rules;
pub mod startup;
pub mod store;
