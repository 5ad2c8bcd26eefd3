//! `ferry-agent`: the small program on every node of a Ferry fleet.
//!
//! It enrolls with a join token, pinning the control plane's CA, keeps its mTLS identity
//! certificate renewed and, beside that, long-polls for its bundle, installs it atomically,
//! runs the reload hook and acknowledges. Invariants: identity keys (and node-key mode
//! bundle keys) are generated here and never leave the node; only CSRs go on the wire; key
//! material is never logged. The agent never links axum or diesel (`cargo tree -p
//! ferry-agent` shows it).
//!
//! Codemap: [`config`] (settings, the only module reading the config file), [`cli`] (flags),
//! [`state`] (the state dir on disk), [`identity`] (keys, CSRs, certificates, renewal math),
//! [`client`] (the only module doing HTTP), [`sync`] (the run loop and the retry decision),
//! [`delivery`] (the bundle poll loop and acks), [`bundle`] (verification before install),
//! [`install`] (version directories, `current`, targets), [`hooks`] (the reload command),
//! [`backoff`] (retry pacing), [`status`] (`ferry-agent status`).
#![forbid(unsafe_code)]

pub mod backoff;
pub mod bundle;
pub mod cli;
pub mod client;
pub mod config;
pub mod delivery;
pub mod hooks;
pub mod identity;
pub mod install;
pub mod state;
pub mod status;
pub mod sync;

#[cfg(test)]
mod testkit;

pub use config::{
    AgentConfig, CaPin, ConfigError, JoinTokenSource, Owner, RawConfig, RetryPolicy, Secret,
    Target, TargetFile,
};
pub use install::installed;
pub use status::{Status, status};
pub use sync::{AgentError, Enrolled, enroll, run};
