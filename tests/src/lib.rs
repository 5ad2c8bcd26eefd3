//! Ferry's end-to-end harness: a real database per test (a fresh PostgreSQL database
//! from `FERRY_TEST_DATABASE_URL`, or an SQLite file in a tempdir), control planes
//! spawned in-process on port 0, agents run as real processes or through the agent
//! library, and real TLS everywhere. Scenarios live in `e2e/`.
#![forbid(unsafe_code)]

pub mod agent;
pub mod bench;
pub mod control_plane;
pub mod db;
pub mod ferryctl;
pub mod impostor;
pub mod logs;
pub mod netns;
pub mod node;
pub mod pg_cluster;

pub use control_plane::{ControlPlane, spawn_control_plane, spawn_control_plane_on};
pub use db::{Backend, TestDb};

/// Installs the process-wide crypto provider and a test log subscriber (once): the
/// test writer, filtered by `RUST_LOG`, and [`logs`]' buffer of the control plane's
/// warnings, whatever `RUST_LOG` says.
pub fn init() {
    use tracing_subscriber::filter::{EnvFilter, LevelFilter, Targets};
    use tracing_subscriber::{Layer, fmt, layer::SubscriberExt, util::SubscriberInitExt};
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let shown = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| "warn,ferry_control_plane=info".into());
    let kept = Targets::new().with_target("ferry_control_plane", LevelFilter::WARN);
    let _ = tracing_subscriber::registry()
        .with(fmt::layer().with_test_writer().with_filter(shown))
        .with(
            fmt::layer()
                .with_ansi(false)
                .with_writer(logs::Capture::default)
                .with_filter(kept),
        )
        .try_init();
}

/// Path of a binary built by this workspace (`ferryctl`, `ferry-agent`, ...).
pub fn bin_path(name: &str) -> std::path::PathBuf {
    // Test executables live in target/<profile>/deps; binaries one level up.
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe
        .parent()
        .and_then(|d| d.parent())
        .expect("target/<profile> directory");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is not built; run the tests with `cargo nextest run --workspace`",
        path.display()
    );
    path
}

/// Polls `check` until it returns `Some`, or panics after `timeout` naming `what`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: std::time::Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
