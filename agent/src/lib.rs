//! `ferry-agent`: the small program on every node of a Ferry fleet.
//!
//! It enrolls with a join token, pinning the control plane's CA, and then keeps its mTLS
//! identity certificate renewed (bundle delivery will join the same run loop). Invariant:
//! the private key is generated here and never leaves the state dir; only CSRs go on the
//! wire. The agent never links axum or diesel (`cargo tree -p ferry-agent` shows it).
//!
//! Codemap: [`config`] (settings, the only module reading the config file), [`cli`] (flags),
//! [`state`] (the state dir on disk), [`identity`] (keys, CSRs, certificates, renewal math),
//! [`client`] (the only module doing HTTP), [`sync`] (the run loop and the retry decision),
//! [`backoff`] (retry pacing), [`status`] (`ferry-agent status`).
#![forbid(unsafe_code)]

pub mod backoff;
pub mod cli;
pub mod client;
pub mod config;
pub mod identity;
pub mod state;
pub mod status;
pub mod sync;

#[cfg(test)]
mod testkit;

pub use config::{
    AgentConfig, CaPin, ConfigError, JoinTokenSource, RawConfig, RetryPolicy, Secret,
};
pub use status::{Status, status};
pub use sync::{AgentError, Enrolled, enroll, run};
