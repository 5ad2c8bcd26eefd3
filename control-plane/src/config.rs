//! Control-plane configuration: the only module that reads the environment or files.
//!
//! Precedence: command-line flags, then `FERRY_*` environment variables, then the TOML
//! file, then defaults. Parsed once into validated types; unknown TOML keys are errors.
//! Tests build [`Config`] directly with [`Config::new`].

use ferry_shared::TrustDomain;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A secret string whose `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid {key}: {message}")]
    Invalid { key: &'static str, message: String },
}

/// Validated settings of `ferry-control-plane serve`.
#[derive(Debug, Clone)]
pub struct Config {
    /// Directory for the SQLite file, the master key file and `admin-token`.
    pub data_dir: PathBuf,
    /// Address of the one HTTPS listener (customers, admins and agents).
    pub listen: SocketAddr,
    /// PostgreSQL URL; `None` selects the embedded SQLite file `<data_dir>/ferry.db`.
    pub database_url: Option<Secret>,
    /// Trust domain of node identities (`spiffe://<trust_domain>/...`).
    pub trust_domain: TrustDomain,
    /// DNS names and IP addresses in the control plane's server certificate.
    pub server_names: Vec<String>,
    /// Lifetime of agents' identity certificates.
    pub identity_ttl: Duration,
    /// The longest a long-poll is held (agents asking longer are answered sooner);
    /// services' `stale_after_seconds` must be at least twice it.
    pub max_poll_wait: Duration,
    /// Master key text (hex or base64 of 32 bytes); `None` uses `master_key_file`.
    pub master_key: Option<Secret>,
    /// Key file used (and created 0600 on first start) when no master key is given.
    pub master_key_file: PathBuf,
    /// Database connections per replica.
    pub db_pool_size: u32,
    /// Log as JSON lines instead of text.
    pub log_json: bool,
    /// Background job pacing (renewal tick, rotation tick, delivery timeout).
    pub jobs: crate::jobs::JobSettings,
    /// How long a node that stopped holding a poll still counts as connected before
    /// its release is written (covers the gap between one poll's answer and the next).
    pub presence_linger: Duration,
    /// How often presence is flushed with the replica's heartbeat (and dead replicas
    /// swept). Tests that count statements quiet it as they quiet the jobs.
    pub presence_flush: Duration,
    /// Where `s3://` URLs (inventories, imported certificates) are read from.
    pub s3: S3Settings,
    /// Per-address limits: join-token guessing and concurrent connections.
    pub limits: crate::http::limits::LimitSettings,
    /// Where tenants' URLs (sources, webhooks, inventories) may lead (`[outbound]`).
    pub outbound: crate::outbound::OutboundSettings,
}

/// S3 access: AWS's standard variables (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
/// `AWS_REGION`) and `FERRY_S3_ENDPOINT` for S3-compatible stores (MinIO, Ceph, ...).
#[derive(Debug, Clone, Default)]
pub struct S3Settings {
    /// `None`: AWS itself.
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub access_key_id: Option<Secret>,
    pub secret_access_key: Option<Secret>,
}

impl Config {
    /// Defaults for a data directory: embedded SQLite, 127.0.0.1:8443, `ferry.local`.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        let data_dir = data_dir.into();
        Self {
            master_key_file: data_dir.join("master.key"),
            data_dir,
            listen: SocketAddr::from(([127, 0, 0, 1], 8443)),
            database_url: None,
            trust_domain: TrustDomain::parse("ferry.local")
                .unwrap_or_else(|_| unreachable!("valid literal")),
            server_names: vec!["localhost".into(), "127.0.0.1".into()],
            identity_ttl: Duration::from_secs(24 * 3600),
            max_poll_wait: Duration::from_secs(ferry_shared::api::MAX_POLL_WAIT_SECONDS),
            master_key: None,
            db_pool_size: 16,
            log_json: false,
            jobs: crate::jobs::JobSettings::default(),
            presence_linger: Duration::from_secs(3),
            presence_flush: crate::delivery::presence::FLUSH_EVERY,
            s3: S3Settings::default(),
            limits: Default::default(),
            outbound: Default::default(),
        }
    }

    pub fn sqlite_path(&self) -> PathBuf {
        self.data_dir.join("ferry.db")
    }

    pub fn admin_token_path(&self) -> PathBuf {
        self.data_dir.join("admin-token")
    }

    /// Builds the config from flags, environment and an optional file.
    pub fn load(
        flags: &Overrides,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let file = match &flags.config {
            Some(path) => FileConfig::read(path)?,
            None => FileConfig::default(),
        };
        let pick = |flag: &Option<String>, var: &str, file: &Option<String>| {
            flag.clone().or_else(|| env(var)).or_else(|| file.clone())
        };
        let data_dir = pick(&flags.data_dir, "FERRY_DATA_DIR", &file.data_dir)
            .unwrap_or_else(|| "ferry-data".into());
        let mut cfg = Self::new(data_dir);
        if let Some(listen) = pick(&flags.listen, "FERRY_LISTEN", &file.listen) {
            cfg.listen = listen.parse().map_err(|e| ConfigError::Invalid {
                key: "listen",
                message: format!("{listen:?}: {e}"),
            })?;
        }
        if let Some(url) = pick(
            &flags.database_url,
            "FERRY_DATABASE_URL",
            &file.database_url,
        ) {
            if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
                return Err(ConfigError::Invalid {
                    key: "database_url",
                    message: "must start with postgres:// (omit it for the embedded SQLite store)"
                        .into(),
                });
            }
            cfg.database_url = Some(Secret(url));
        }
        if let Some(td) = env("FERRY_TRUST_DOMAIN").or(file.trust_domain) {
            cfg.trust_domain = TrustDomain::parse(&td).map_err(|e| ConfigError::Invalid {
                key: "trust_domain",
                message: e.to_string(),
            })?;
        }
        if let Some(names) = file.server_names {
            if names.is_empty() {
                return Err(ConfigError::Invalid {
                    key: "server_names",
                    message: "must not be empty".into(),
                });
            }
            cfg.server_names = names;
        }
        if let Some(secs) = file.identity_ttl_seconds {
            if !(300..=30 * 86400).contains(&secs) {
                return Err(ConfigError::Invalid {
                    key: "identity_ttl_seconds",
                    message: "must be 300..=2592000".into(),
                });
            }
            cfg.identity_ttl = Duration::from_secs(secs);
        }
        if let Some(secs) = file.max_poll_wait_seconds {
            let max = ferry_shared::api::MAX_POLL_WAIT_SECONDS;
            if !(1..=max).contains(&secs) {
                return Err(ConfigError::Invalid {
                    key: "max_poll_wait_seconds",
                    message: format!("must be 1..={max}"),
                });
            }
            cfg.max_poll_wait = Duration::from_secs(secs);
        }
        cfg.master_key = env("FERRY_MASTER_KEY").map(Secret);
        cfg.s3 = S3Settings {
            endpoint: env("FERRY_S3_ENDPOINT"),
            region: env("AWS_REGION").or_else(|| env("AWS_DEFAULT_REGION")),
            access_key_id: env("AWS_ACCESS_KEY_ID").map(Secret),
            secret_access_key: env("AWS_SECRET_ACCESS_KEY").map(Secret),
        };
        if let Some(e) = &cfg.s3.endpoint
            && !(e.starts_with("http://") || e.starts_with("https://"))
        {
            return Err(ConfigError::Invalid {
                key: "FERRY_S3_ENDPOINT",
                message: "must be an http:// or https:// URL".into(),
            });
        }
        if let Some(path) = file.master_key_file {
            cfg.master_key_file = path;
        }
        if let Some(n) = file.db_pool_size {
            if n == 0 {
                return Err(ConfigError::Invalid {
                    key: "db_pool_size",
                    message: "must be at least 1".into(),
                });
            }
            cfg.db_pool_size = n;
        }
        cfg.log_json = flags.log_json || file.log_json.unwrap_or(false);
        if let Some(days) = file.retention_days {
            if !(1..=3650).contains(&days) {
                return Err(ConfigError::Invalid {
                    key: "retention_days",
                    message: "must be 1..=3650".into(),
                });
            }
            cfg.jobs.retention = Duration::from_secs(days * 86_400);
        }
        if let Some(secs) = file.delivery_timeout_seconds {
            if secs < 10 {
                return Err(ConfigError::Invalid {
                    key: "delivery_timeout_seconds",
                    message: "must be at least 10".into(),
                });
            }
            cfg.jobs.delivery_timeout = Duration::from_secs(secs);
        }
        if let Some(n) = file.enroll_max_failures {
            cfg.limits.enroll_max_failures = n;
        }
        if let Some(secs) = file.enroll_failure_window_seconds {
            if !(1..=86_400).contains(&secs) {
                return Err(ConfigError::Invalid {
                    key: "enroll_failure_window_seconds",
                    message: "must be 1..=86400".into(),
                });
            }
            cfg.limits.enroll_failure_window = Duration::from_secs(secs);
        }
        if let Some(n) = file.max_connections_per_address {
            cfg.limits.max_connections_per_address = n;
        }
        if let Some(b) = file.limit_loopback_connections {
            cfg.limits.limit_loopback_connections = b;
        }
        for (key, value, field) in [
            (
                "body_read_timeout_seconds",
                file.body_read_timeout_seconds,
                &mut cfg.limits.body_read_timeout,
            ),
            (
                "idle_connection_timeout_seconds",
                file.idle_connection_timeout_seconds,
                &mut cfg.limits.idle_connection_timeout,
            ),
        ] {
            if let Some(secs) = value {
                if !(1..=3600).contains(&secs) {
                    return Err(ConfigError::Invalid {
                        key,
                        message: "must be 1..=3600".into(),
                    });
                }
                *field = Duration::from_secs(secs);
            }
        }
        if let Some(n) = file.auth_max_failures {
            cfg.limits.auth_max_failures = n;
        }
        if let Some(secs) = file.auth_failure_window_seconds {
            if !(1..=86_400).contains(&secs) {
                return Err(ConfigError::Invalid {
                    key: "auth_failure_window_seconds",
                    message: "must be 1..=86400".into(),
                });
            }
            cfg.limits.auth_failure_window = Duration::from_secs(secs);
        }
        if let Some(b) = file.exempt_loopback_auth {
            cfg.limits.exempt_loopback_auth = b;
        }
        if let Some(o) = file.outbound {
            cfg.outbound = o.checked()?;
        }
        Ok(cfg)
    }
}

/// Values given on the command line (each optional).
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub config: Option<PathBuf>,
    pub data_dir: Option<String>,
    pub listen: Option<String>,
    pub database_url: Option<String>,
    pub log_json: bool,
}

/// The TOML file, every key optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    data_dir: Option<String>,
    listen: Option<String>,
    database_url: Option<String>,
    trust_domain: Option<String>,
    server_names: Option<Vec<String>>,
    identity_ttl_seconds: Option<u64>,
    max_poll_wait_seconds: Option<u64>,
    master_key_file: Option<PathBuf>,
    db_pool_size: Option<u32>,
    log_json: Option<bool>,
    delivery_timeout_seconds: Option<u64>,
    retention_days: Option<u64>,
    enroll_max_failures: Option<u32>,
    enroll_failure_window_seconds: Option<u64>,
    max_connections_per_address: Option<u32>,
    limit_loopback_connections: Option<bool>,
    body_read_timeout_seconds: Option<u64>,
    idle_connection_timeout_seconds: Option<u64>,
    auth_max_failures: Option<u32>,
    auth_failure_window_seconds: Option<u64>,
    exempt_loopback_auth: Option<bool>,
    outbound: Option<FileOutbound>,
}

/// `[outbound]`: where tenants' URLs may lead.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileOutbound {
    allow: Option<Vec<String>>,
    allow_loopback: Option<bool>,
}

impl FileOutbound {
    fn checked(self) -> Result<crate::outbound::OutboundSettings, ConfigError> {
        let allow = self
            .allow
            .unwrap_or_default()
            .iter()
            .map(|a| crate::outbound::OutboundSettings::checked_allow(a))
            .collect::<Result<_, _>>()
            .map_err(|message| ConfigError::Invalid {
                key: "outbound.allow",
                message,
            })?;
        Ok(crate::outbound::OutboundSettings {
            allow,
            allow_loopback: self.allow_loopback.unwrap_or(false),
        })
    }
}

impl FileConfig {
    fn read(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.into(),
            source,
        })?;
        toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.into(),
            message: e.message().to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn flags_beat_env_beat_file_and_unknown_keys_fail() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("cp.toml");
        std::fs::write(
            &file,
            "listen = \"127.0.0.1:9000\"\ndata_dir = \"/from/file\"\n",
        )
        .expect("write");
        let flags = Overrides {
            config: Some(file.clone()),
            data_dir: Some("/from/flag".into()),
            ..Default::default()
        };
        let env = |k: &str| (k == "FERRY_LISTEN").then(|| "127.0.0.1:9100".to_owned());
        let cfg = Config::load(&flags, &env).expect("valid");
        assert_eq!(cfg.data_dir, PathBuf::from("/from/flag"));
        assert_eq!(cfg.listen.port(), 9100);

        std::fs::write(&file, "listn = \"127.0.0.1:9000\"\n").expect("write");
        let err = Config::load(&flags, &no_env).expect_err("unknown key");
        assert!(err.to_string().contains("listn"), "{err}");
    }

    #[test]
    fn database_url_must_be_postgres_and_is_redacted() {
        let flags = Overrides {
            database_url: Some("mysql://x".into()),
            ..Default::default()
        };
        assert!(Config::load(&flags, &no_env).is_err());
        let flags = Overrides {
            database_url: Some("postgres://u:hunter2@h/db".into()),
            ..Default::default()
        };
        let cfg = Config::load(&flags, &no_env).expect("valid");
        assert!(!format!("{cfg:?}").contains("hunter2"));
    }

    #[test]
    fn retention_and_s3_settings_are_checked_and_secrets_redacted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("cp.toml");
        let flags = Overrides {
            config: Some(file.clone()),
            ..Default::default()
        };
        std::fs::write(&file, "retention_days = 0\n").expect("write");
        let err = Config::load(&flags, &no_env).expect_err("zero days");
        assert!(err.to_string().contains("retention_days"), "{err}");
        std::fs::write(&file, "retention_days = 7\n").expect("write");
        let env = |k: &str| match k {
            "FERRY_S3_ENDPOINT" => Some("http://127.0.0.1:9000".to_owned()),
            "AWS_SECRET_ACCESS_KEY" => Some("s3cr3t-value".to_owned()),
            _ => None,
        };
        let cfg = Config::load(&flags, &env).expect("valid");
        assert_eq!(cfg.jobs.retention, Duration::from_secs(7 * 86_400));
        assert!(!format!("{cfg:?}").contains("s3cr3t-value"));
        let bad = |k: &str| (k == "FERRY_S3_ENDPOINT").then(|| "s3.example.com".to_owned());
        assert!(
            Config::load(&flags, &bad).is_err(),
            "an endpoint without a scheme"
        );
    }

    #[test]
    fn per_address_limits_default_generously_and_read_from_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("cp.toml");
        let flags = Overrides {
            config: Some(file.clone()),
            ..Default::default()
        };
        let defaults = Config::new("d").limits;
        assert_eq!(defaults.enroll_max_failures, 10);
        assert!(
            !defaults.limit_loopback_connections,
            "benchmarks connect from loopback"
        );
        std::fs::write(
            &file,
            "enroll_max_failures = 3\nenroll_failure_window_seconds = 30\n\
             max_connections_per_address = 64\nlimit_loopback_connections = true\n",
        )
        .expect("write");

        let limits = Config::load(&flags, &no_env).expect("valid").limits;

        assert_eq!(limits.enroll_max_failures, 3);
        assert_eq!(limits.enroll_failure_window, Duration::from_secs(30));
        assert_eq!(limits.max_connections_per_address, 64);
        assert!(limits.limit_loopback_connections);
        std::fs::write(&file, "enroll_failure_window_seconds = 0\n").expect("write");
        let err = Config::load(&flags, &no_env).expect_err("zero window");
        assert!(
            err.to_string().contains("enroll_failure_window_seconds"),
            "{err}"
        );
    }

    #[test]
    fn the_bearer_failure_limit_counts_loopback_unless_the_file_exempts_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("cp.toml");
        let flags = Overrides {
            config: Some(file.clone()),
            ..Default::default()
        };
        let defaults = Config::new("d").limits;
        assert_eq!(defaults.auth_max_failures, 20);
        assert_eq!(defaults.auth_failure_window, Duration::from_secs(60));
        assert!(
            !defaults.exempt_loopback_auth,
            "loopback is limited by default"
        );
        std::fs::write(
            &file,
            "auth_max_failures = 5\nauth_failure_window_seconds = 120\nexempt_loopback_auth = true\n",
        )
        .expect("write");

        let limits = Config::load(&flags, &no_env).expect("valid").limits;

        assert_eq!(limits.auth_max_failures, 5);
        assert_eq!(limits.auth_failure_window, Duration::from_secs(120));
        assert!(limits.exempt_loopback_auth);
        std::fs::write(&file, "auth_failure_window_seconds = 0\n").expect("write");
        let err = Config::load(&flags, &no_env).expect_err("zero window");
        assert!(
            err.to_string().contains("auth_failure_window_seconds"),
            "{err}"
        );
    }

    #[test]
    fn outbound_allows_private_ranges_and_loopback_only_when_listed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("cp.toml");
        let flags = Overrides {
            config: Some(file.clone()),
            ..Default::default()
        };
        let defaults = Config::new("d").outbound;
        assert!(defaults.allow.is_empty() && !defaults.allow_loopback);
        std::fs::write(
            &file,
            "[outbound]\nallow = [\"10.0.0.0/8\", \"fd12::/16\"]\nallow_loopback = true\n",
        )
        .expect("write");
        let o = Config::load(&flags, &no_env).expect("valid").outbound;
        assert_eq!(o.allow.len(), 2);
        assert!(o.allow_loopback);
        std::fs::write(&file, "outbound.allow = [\"169.254.169.254/32\"]\n").expect("write");
        let err = Config::load(&flags, &no_env).expect_err("metadata address");
        assert!(err.to_string().contains("outbound.allow"), "{err}");
        std::fs::write(&file, "[outbound]\nallow_lopback = true\n").expect("write");
        assert!(Config::load(&flags, &no_env).is_err(), "unknown key");
    }
}
