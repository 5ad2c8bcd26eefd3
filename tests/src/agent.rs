//! Agents for the scenarios: in-process through the agent library (`spawn_agent`), or
//! as real `ferry-agent` processes (`agent_command`), plus a reader for what an agent
//! installed that recomputes the content hash from the files on disk.

use crate::control_plane::ControlPlane;
use ferry_agent::{AgentConfig, CaPin, JoinTokenSource, RetryPolicy, Secret};
use ferry_shared::hash::bundle_content_hash;
use ferry_shared::{NodeId, ServiceName};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// An agent running in this process, with its own state and install directories.
pub struct InProcessAgent {
    pub dir: tempfile::TempDir,
    pub state_dir: PathBuf,
    pub install_dir: PathBuf,
    /// What it was started with (tweaks included), for [`InProcessAgent::restart`].
    cfg: AgentConfig,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), ferry_agent::AgentError>>>,
}

/// The config an agent of `node` would get from an operator, pointing at `cp`.
pub fn agent_config(
    cp: &ControlPlane,
    service: &str,
    node: &str,
    token: &str,
    dir: &Path,
) -> AgentConfig {
    let mut cfg = AgentConfig::new(
        reqwest::Url::parse(&cp.url).expect("control plane URL"),
        ServiceName::parse(service).expect("service name"),
        NodeId::parse(node).expect("node id"),
        dir.join("state"),
    );
    cfg.join_token = Some(JoinTokenSource::Inline(Secret::new(token)));
    cfg.ca = Some(CaPin::Fingerprint(cp.ca_fingerprint.clone()));
    cfg.install_dir = Some(dir.join("install"));
    cfg.retry = RetryPolicy {
        base: Duration::from_millis(100),
        cap: Duration::from_secs(2),
    };
    cfg
}

pub async fn spawn_agent(
    cp: &ControlPlane,
    service: &str,
    node: &str,
    token: &str,
    tweak: impl FnOnce(&mut AgentConfig),
) -> InProcessAgent {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = agent_config(cp, service, node, token, dir.path());
    tweak(&mut cfg);
    InProcessAgent::start(dir, cfg)
}

impl InProcessAgent {
    fn start(dir: tempfile::TempDir, cfg: AgentConfig) -> Self {
        let (tx, rx) = oneshot::channel::<()>();
        let (state_dir, install_dir) = (
            cfg.state_dir.clone(),
            cfg.install_dir.clone().expect("install dir"),
        );
        let task = tokio::spawn(ferry_agent::run(cfg.clone(), async move {
            let _ = rx.await;
        }));
        Self {
            dir,
            state_dir,
            install_dir,
            cfg,
            stop: Some(tx),
            task: Some(task),
        }
    }

    /// Stops the agent and waits for it; panics if it ended with an error.
    pub async fn stop(&mut self) {
        if let (Some(tx), Some(task)) = (self.stop.take(), self.task.take()) {
            let _ = tx.send(());
            task.await
                .expect("agent task")
                .expect("agent stops cleanly");
        }
    }

    /// Starts again from the same directories and settings (what a restart of the
    /// service does), pointing at `cp`.
    pub fn restart(mut self, cp: &ControlPlane, service: &str, node: &str, token: &str) -> Self {
        assert!(self.task.is_none(), "stop the agent first");
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().expect("tempdir"));
        let fresh = agent_config(cp, service, node, token, dir.path());
        let cfg = AgentConfig {
            server: fresh.server,
            service: fresh.service,
            node_id: fresh.node_id,
            join_token: fresh.join_token,
            ..self.cfg.clone()
        };
        Self::start(dir, cfg)
    }

    pub fn installed(&self) -> Option<Installed> {
        read_installed(&self.install_dir, true)
    }
}

impl Drop for InProcessAgent {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// What `current` points to, read back from disk.
#[derive(Debug, Clone)]
pub struct Installed {
    pub version: i64,
    pub cert_pem: String,
    /// The content hash recomputed from the installed files.
    pub hash: String,
    /// `metadata.json`, parsed.
    pub metadata: serde_json::Map<String, serde_json::Value>,
    /// The per-key files of `metadata/`: name -> contents.
    pub metadata_files: std::collections::BTreeMap<String, String>,
}

/// Reads `<install_dir>/current`. `with_key`: the bundle's key is part of the hash
/// (central mode). Panics on a torn install: a `current` whose files are incomplete.
pub fn read_installed(install_dir: &Path, with_key: bool) -> Option<Installed> {
    let current = install_dir.join("current");
    let target = std::fs::read_link(&current).ok()?;
    let version: i64 = target
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| {
            panic!(
                "current points to {}, not a version directory",
                target.display()
            )
        });
    let read = |f: &str| {
        std::fs::read_to_string(current.join(f))
            .unwrap_or_else(|e| panic!("torn install: {f} of version {version}: {e}"))
    };
    let (cert, chain, key, ca, metadata) = (
        read("cert.pem"),
        read("chain.pem"),
        read("key.pem"),
        read("ca.pem"),
        read("metadata.json"),
    );
    let bundle_pem = read("bundle.pem");
    assert_eq!(
        bundle_pem,
        format!("{key}{cert}{chain}"),
        "bundle.pem is key + cert + chain of the same version"
    );
    let hash = bundle_content_hash(
        &cert,
        &chain,
        with_key.then_some(key.as_str()),
        &ca,
        &metadata,
    );
    let metadata_files = std::fs::read_dir(current.join("metadata"))
        .map(|dir| {
            dir.filter_map(Result::ok)
                .map(|e| {
                    let name = e.file_name().to_string_lossy().into_owned();
                    (name.clone(), read(&format!("metadata/{name}")))
                })
                .collect()
        })
        .unwrap_or_default();
    Some(Installed {
        version,
        cert_pem: cert,
        hash,
        metadata: serde_json::from_str(&metadata)
            .unwrap_or_else(|e| panic!("metadata.json of version {version}: {e}")),
        metadata_files,
    })
}

/// A `ferry-agent run` command for `node`, with its directories under `dir`.
pub fn agent_command(
    cp: &ControlPlane,
    service: &str,
    node: &str,
    token: &str,
    dir: &Path,
) -> tokio::process::Command {
    agent_command_skewed(cp, service, node, token, dir, None)
}

/// Like [`agent_command`], with the agent's clock shifted by libfaketime (`"+10m"`).
pub fn agent_command_skewed(
    cp: &ControlPlane,
    service: &str,
    node: &str,
    token: &str,
    dir: &Path,
    skew: Option<&str>,
) -> tokio::process::Command {
    let mut cmd = match skew {
        Some(offset) => {
            // Preload libfaketime directly (the `faketime` wrapper forks, so killing it
            // would leave the agent running).
            let mut c = tokio::process::Command::new(crate::bin_path("ferry-agent"));
            c.env("LD_PRELOAD", libfaketime())
                .env("FAKETIME", offset)
                .env("DONT_FAKE_MONOTONIC", "1");
            c
        }
        None => tokio::process::Command::new(crate::bin_path("ferry-agent")),
    };
    cmd.args([
        "run",
        "--server",
        &cp.url,
        "--service",
        service,
        "--node-id",
        node,
        "--ca-fingerprint",
        &cp.ca_fingerprint,
    ])
    .arg("--state-dir")
    .arg(dir.join("state"))
    .arg("--install-dir")
    .arg(dir.join("install"))
    .env("FERRY_JOIN_TOKEN", token)
    .env("RUST_LOG", "info")
    .kill_on_drop(true);
    cmd
}

/// Path of libfaketime (Debian's `faketime` package, installed by scripts/test.sh).
fn libfaketime() -> PathBuf {
    let found = std::fs::read_dir("/usr/lib")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("faketime/libfaketime.so.1"))
        .find(|p| p.exists());
    found.unwrap_or_else(|| {
        panic!(
            "libfaketime.so.1 not found: install Debian's faketime package (scripts/test.sh does)"
        )
    })
}

/// Parses a PEM certificate's validity as unix seconds (not_before, not_after).
pub fn validity(cert_pem: &str) -> (i64, i64) {
    use rustls_pki_types::pem::PemObject;
    use x509_parser::prelude::FromDer;
    let der = rustls_pki_types::CertificateDer::from_pem_slice(cert_pem.as_bytes())
        .expect("certificate PEM");
    let (_, cert) =
        x509_parser::certificate::X509Certificate::from_der(&der).expect("certificate parses");
    (
        cert.validity().not_before.timestamp(),
        cert.validity().not_after.timestamp(),
    )
}
