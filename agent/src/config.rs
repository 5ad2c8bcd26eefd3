//! The agent's settings: the TOML file and the command-line flags, merged (flags win) and
//! parsed once into a validated [`AgentConfig`].
//!
//! This is the only module that reads the config file. The join token is held in a
//! [`Secret`], whose `Debug` prints `[redacted]`, so logging a config never leaks it.
//! Nothing here reads the process environment: clap maps `FERRY_JOIN_TOKEN` onto the flag,
//! and tests build configs directly.

use ferry_shared::hash::parse_fingerprint;
use ferry_shared::{KeyType, NodeId, ServiceName};
use reqwest::Url;
use serde::Deserialize;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

mod target;

pub use target::{Owner, RawTarget, Target, TargetFile};

/// Used by `ferry-agent run` when `--config` is not given and this file exists.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/ferry/agent.toml";
/// Where the identity lives when neither a flag nor the file says otherwise.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/ferry-agent";
/// How long the reload command may run before it is killed.
pub const DEFAULT_RELOAD_TIMEOUT: Duration = Duration::from_secs(30);

/// A string that must never be printed: `Debug` shows `[redacted]` and there is no
/// `Display`. Read it with [`Secret::expose`] only where it goes on the wire or to disk.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Where the join token comes from. A file is read each time the token is needed, so an
/// operator can drop a fresh token in place for a re-enrollment without a restart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JoinTokenSource {
    Inline(Secret),
    File(PathBuf),
}

impl JoinTokenSource {
    /// The token, surrounding whitespace trimmed.
    pub fn read(&self) -> Result<Secret, ConfigError> {
        let (value, origin) = match self {
            Self::Inline(s) => (s.expose().to_owned(), "join_token".to_owned()),
            Self::File(path) => {
                let value = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.clone(),
                    source,
                })?;
                (value, path.display().to_string())
            }
        };
        let trimmed = value.trim();
        if trimmed.is_empty() {
            return Err(ConfigError::Invalid {
                key: "join_token",
                reason: format!("{origin} is empty"),
            });
        }
        Ok(Secret::new(trimmed))
    }
}

/// How the agent decides to trust the control plane before it has a `ca.pem` of its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CaPin {
    /// `sha256:<hex>` of one CA certificate's DER, normalized to lowercase.
    Fingerprint(String),
    /// A PEM file of CA certificates.
    File(PathBuf),
}

/// Exponential backoff with full jitter on errors. Not a config-file setting: tests shorten it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Delay bound of the first retry.
    pub base: Duration,
    /// Largest delay; also the pace of "slow" retries when an operator must act.
    pub cap: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            base: Duration::from_secs(1),
            cap: Duration::from_secs(60),
        }
    }
}

/// The validated configuration of one agent.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// Base URL of the control plane; always `https`.
    pub server: Url,
    /// The service this node belongs to.
    pub service: ServiceName,
    /// This node's id within the service.
    pub node_id: NodeId,
    /// Needed to enroll (first start, or after the identity expired).
    pub join_token: Option<JoinTokenSource>,
    /// Trust for enrollment; `None` only when the state dir already holds `ca.pem`.
    pub ca: Option<CaPin>,
    /// Holds the identity key, certificate, CA bundle and `agent-state.json`.
    pub state_dir: PathBuf,
    /// Where delivered bundles are installed (`versions/<version>/` and the `current`
    /// symlink). `None`: the agent only keeps its identity and polls no bundles.
    pub install_dir: Option<PathBuf>,
    /// Run with `sh -c` after each install; a non-zero exit is acknowledged as failed.
    pub reload_command: Option<String>,
    /// The reload command is killed (with its process group) after this long.
    pub reload_timeout: Duration,
    /// Extra copies of installed files, written atomically after each install.
    pub targets: Vec<Target>,
    /// A path kept as a symlink to `<install_dir>/current/metadata`: one file per
    /// metadata key, switched atomically with every install.
    pub metadata_dir: Option<PathBuf>,
    /// How long the server may hold a bundle long-poll (1-55 s, default 55): shorter
    /// behind proxies that cut idle connections, or for a small `stale_after`.
    pub poll_wait: Duration,
    /// Algorithm of the identity key generated on this node.
    pub key_type: KeyType,
    pub retry: RetryPolicy,
}

impl AgentConfig {
    /// A config with every optional setting at its default.
    pub fn new(server: Url, service: ServiceName, node_id: NodeId, state_dir: PathBuf) -> Self {
        Self {
            server,
            service,
            node_id,
            join_token: None,
            ca: None,
            state_dir,
            install_dir: None,
            reload_command: None,
            reload_timeout: DEFAULT_RELOAD_TIMEOUT,
            targets: Vec::new(),
            metadata_dir: None,
            poll_wait: Duration::from_secs(ferry_shared::api::MAX_POLL_WAIT_SECONDS),
            key_type: KeyType::EcdsaP256,
            retry: RetryPolicy::default(),
        }
    }
}

/// Why a configuration was refused. Each message is one line for the operator.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("could not read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid config file {path}: line {line}: {message}")]
    Toml {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("missing setting `{key}` (--{flag} or `{key}` in the config file)")]
    Missing {
        key: &'static str,
        flag: &'static str,
    },
    #[error("invalid {key}: {reason}")]
    Invalid { key: &'static str, reason: String },
    #[error("`{0}` and `{1}` are both set; give only one")]
    Conflict(&'static str, &'static str),
    #[error(
        "no CA to trust: give --ca-fingerprint (printed with the join token) or --ca-file, \
         or enroll once so that {0}/ca.pem exists"
    )]
    NoCa(PathBuf),
}

/// Settings as written in the file or on the command line, before validation.
/// Field names are the TOML keys; unknown keys are refused.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub server: Option<String>,
    pub service: Option<String>,
    pub node_id: Option<String>,
    pub join_token: Option<Secret>,
    pub join_token_file: Option<PathBuf>,
    pub ca_fingerprint: Option<String>,
    pub ca_file: Option<PathBuf>,
    pub state_dir: Option<PathBuf>,
    pub install_dir: Option<PathBuf>,
    pub reload_command: Option<String>,
    /// Seconds before the reload command is killed (default 30).
    pub reload_timeout_seconds: Option<u64>,
    /// Seconds the server may hold a long-poll (1-55, default 55).
    pub poll_wait_seconds: Option<u64>,
    pub key_type: Option<String>,
    /// Kept as a symlink to the installed version's per-key metadata files.
    pub metadata_dir: Option<PathBuf>,
    /// `[[target]]` tables (file only; no flag sets them).
    #[serde(default)]
    pub target: Vec<RawTarget>,
}

impl RawConfig {
    /// Reads and parses a TOML config file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_toml(&text, path)
    }

    /// Parses TOML text; `origin` names the file in errors.
    pub fn from_toml(text: &str, origin: &Path) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|e| {
            let line = e
                .span()
                .map_or(1, |span| text[..span.start].matches('\n').count() + 1);
            let message = e.message().split_whitespace().collect::<Vec<_>>().join(" ");
            ConfigError::Toml {
                path: origin.to_owned(),
                line,
                message,
            }
        })
    }

    /// `over` wins wherever it sets something. The two ways of giving the join token (and
    /// the CA) are one setting: a token flag replaces a token file from the config file.
    pub fn overlay(mut self, over: RawConfig) -> RawConfig {
        if over.join_token.is_some() || over.join_token_file.is_some() {
            self.join_token = over.join_token;
            self.join_token_file = over.join_token_file;
        }
        if over.ca_fingerprint.is_some() || over.ca_file.is_some() {
            self.ca_fingerprint = over.ca_fingerprint;
            self.ca_file = over.ca_file;
        }
        RawConfig {
            server: over.server.or(self.server),
            service: over.service.or(self.service),
            node_id: over.node_id.or(self.node_id),
            join_token: self.join_token,
            join_token_file: self.join_token_file,
            ca_fingerprint: self.ca_fingerprint,
            ca_file: self.ca_file,
            state_dir: over.state_dir.or(self.state_dir),
            install_dir: over.install_dir.or(self.install_dir),
            reload_command: over.reload_command.or(self.reload_command),
            reload_timeout_seconds: over.reload_timeout_seconds.or(self.reload_timeout_seconds),
            poll_wait_seconds: over.poll_wait_seconds.or(self.poll_wait_seconds),
            key_type: over.key_type.or(self.key_type),
            metadata_dir: over.metadata_dir.or(self.metadata_dir),
            target: if over.target.is_empty() {
                self.target
            } else {
                over.target
            },
        }
    }

    /// Parses every setting into its validated type.
    pub fn validate(self) -> Result<AgentConfig, ConfigError> {
        let server = parse_server(&required(self.server, "server", "server")?)?;
        let service =
            ServiceName::parse(&required(self.service, "service", "service")?).map_err(|e| {
                ConfigError::Invalid {
                    key: "service",
                    reason: e.to_string(),
                }
            })?;
        let node_id =
            NodeId::parse(&required(self.node_id, "node_id", "node-id")?).map_err(|e| {
                ConfigError::Invalid {
                    key: "node_id",
                    reason: e.to_string(),
                }
            })?;
        let state_dir = self
            .state_dir
            .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR));

        let join_token = match (self.join_token, self.join_token_file) {
            (Some(_), Some(_)) => {
                return Err(ConfigError::Conflict("join_token", "join_token_file"));
            }
            (Some(token), None) => Some(JoinTokenSource::Inline(token)),
            (None, Some(path)) => Some(JoinTokenSource::File(path)),
            (None, None) => None,
        };
        let ca = match (self.ca_fingerprint, self.ca_file) {
            (Some(_), Some(_)) => return Err(ConfigError::Conflict("ca_fingerprint", "ca_file")),
            (Some(pin), None) => Some(CaPin::Fingerprint(parse_pin(&pin)?)),
            (None, Some(path)) => Some(CaPin::File(path)),
            (None, None) if crate::state::StateDir::new(&state_dir).has_ca() => None,
            (None, None) => return Err(ConfigError::NoCa(state_dir)),
        };
        let key_type = match self.key_type {
            None => KeyType::EcdsaP256,
            Some(s) => s
                .parse()
                .map_err(|e: ferry_shared::NameError| ConfigError::Invalid {
                    key: "key_type",
                    reason: e.to_string(),
                })?,
        };
        let reload_command = self.reload_command.filter(|c| !c.trim().is_empty());
        let reload_timeout = match self.reload_timeout_seconds {
            None => DEFAULT_RELOAD_TIMEOUT,
            Some(s @ 1..=3600) => Duration::from_secs(s),
            Some(s) => {
                return Err(ConfigError::Invalid {
                    key: "reload_timeout_seconds",
                    reason: format!("{s} is not between 1 and 3600"),
                });
            }
        };
        let max_wait = ferry_shared::api::MAX_POLL_WAIT_SECONDS;
        let poll_wait = match self.poll_wait_seconds {
            None => Duration::from_secs(max_wait),
            Some(s) if (1..=max_wait).contains(&s) => Duration::from_secs(s),
            Some(s) => {
                return Err(ConfigError::Invalid {
                    key: "poll_wait_seconds",
                    reason: format!("{s} is not between 1 and {max_wait}"),
                });
            }
        };
        let targets = target::validate_targets(self.target)?;
        if !targets.is_empty() && self.install_dir.is_none() {
            return Err(ConfigError::Invalid {
                key: "target",
                reason: "targets are copies of installed files: set install_dir too".to_owned(),
            });
        }

        if self.metadata_dir.is_some() && self.install_dir.is_none() {
            return Err(ConfigError::Invalid {
                key: "metadata_dir",
                reason: "it links to installed metadata: set install_dir too".to_owned(),
            });
        }

        Ok(AgentConfig {
            server,
            service,
            node_id,
            join_token,
            ca,
            state_dir,
            install_dir: self.install_dir,
            reload_command,
            reload_timeout,
            targets,
            metadata_dir: self.metadata_dir,
            poll_wait,
            key_type,
            retry: RetryPolicy::default(),
        })
    }
}

fn required(
    value: Option<String>,
    key: &'static str,
    flag: &'static str,
) -> Result<String, ConfigError> {
    value
        .filter(|v| !v.is_empty())
        .ok_or(ConfigError::Missing { key, flag })
}

fn parse_server(s: &str) -> Result<Url, ConfigError> {
    let invalid = |reason: String| ConfigError::Invalid {
        key: "server",
        reason,
    };
    let url = Url::parse(s).map_err(|e| invalid(format!("{s:?} is not a URL: {e}")))?;
    if url.scheme() != "https" {
        return Err(invalid(format!("{s:?} must be an https:// URL")));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(invalid(format!("{s:?} has no host")));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(invalid(format!("{s:?} must not have a query or fragment")));
    }
    Ok(url)
}

fn parse_pin(pin: &str) -> Result<String, ConfigError> {
    parse_fingerprint(pin)
        .map(|hex| format!("sha256:{hex}"))
        .ok_or_else(|| ConfigError::Invalid {
            key: "ca_fingerprint",
            reason: format!("{pin:?} is not sha256:<64 hex digits>"),
        })
}

#[cfg(test)]
mod tests;
