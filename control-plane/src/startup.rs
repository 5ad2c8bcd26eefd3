//! Startup glue: open and migrate the store, bootstrap the first start of a database
//! (default tenant, root CA, admin token), issue the server certificate, bind.
//!
//! "First start" is per database: replicas sharing one PostgreSQL reuse the CA and the
//! admin token of whichever replica started first. A master key that cannot open the
//! stored CA stops startup; a second CA is never generated over the first.

use crate::ca::Ca;
use crate::ca::sealing::MasterKey;
use crate::config::{Config, Secret};
use crate::delivery::{Presence, Waiters, acks::Acks, notify};
use crate::enrollment::Enrollments;
use crate::http::limits::{ConnLimiter, EnrollGuard};
use crate::http::tls::{self, ServerCertResolver};
use crate::http::{AppState, router::router};
use crate::http::{JobWakers, Stats};
use crate::jobs::{self, JobSettings};
use crate::store::{
    self, Store,
    ca::{CaRow, Purpose},
    tokens::ApiTokenRow,
};
use anyhow::{Context, bail};
use ferry_shared::hash::sha256_hex;
use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use time::OffsetDateTime;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// The outbound policy of this replica: the operator's settings and the address it
/// is bound to (with the server names that are addresses, which reach it when it
/// listens on every interface).
fn outbound_policy(cfg: &Config, bound: SocketAddr) -> crate::outbound::Outbound {
    let named: Vec<std::net::IpAddr> = cfg
        .server_names
        .iter()
        .filter_map(|n| n.parse().ok())
        .collect();
    crate::outbound::Outbound::new(crate::outbound::Policy::new(
        cfg.outbound.clone(),
        bound,
        &named,
    ))
}

/// Lifetime of the control plane's server certificate; re-issued at half-life.
const SERVER_CERT_TTL: time::Duration = time::Duration::days(7);

/// A bound, bootstrapped control plane, ready to [`App::serve`].
pub struct App {
    addr: SocketAddr,
    listener: TcpListener,
    state: AppState,
    resolver: Arc<ServerCertResolver>,
    server_names: Vec<String>,
    /// The admin token, when this start created it (first start of the database).
    pub new_admin_token: Option<String>,
    database_url: Option<Secret>,
    jobs: JobSettings,
    conn_limiter: Arc<ConnLimiter>,
    conn_timeouts: crate::http::timeouts::ConnTimeouts,
}

impl App {
    pub async fn build(cfg: Config) -> anyhow::Result<Self> {
        let store = open_store(&cfg)?;
        let master = Arc::new(load_master_key(&cfg)?);
        let ca = Arc::new(bootstrap_ca(&store, &cfg, &master, Purpose::Root).await?);
        let control_plane_ca =
            Arc::new(bootstrap_ca(&store, &cfg, &master, Purpose::ControlPlane).await?);
        let new_admin_token = bootstrap_admin(&store, &cfg).await?;
        for (service, v) in
            crate::service_rules::report(&store, cfg.max_poll_wait.as_secs() as i64).await?
        {
            tracing::warn!(service = %service, rule = v.rule, "service settings contradict each other: {}; fix with `ferryctl service update {service}`", v.detail);
        }
        let (chain, key) = control_plane_ca.issue_server_cert(
            &cfg.server_names,
            OffsetDateTime::now_utc(),
            SERVER_CERT_TTL,
        )?;
        let resolver = Arc::new(ServerCertResolver::new(&chain, &key)?);
        let listener = TcpListener::bind(cfg.listen)
            .await
            .with_context(|| format!("cannot listen on {}", cfg.listen))?;
        let addr = listener.local_addr()?;
        let acks = Acks::start(store.clone(), master.clone(), ca.clone());
        let waiters = Arc::new(Waiters::new(cfg.database_url.is_some()));
        let enrollments = Enrollments::start(store.clone(), waiters.clone());
        let outbound = outbound_policy(&cfg, addr);
        let state = AppState {
            store,
            ca,
            control_plane_ca,
            server_names: Arc::new(cfg.server_names.clone()),
            trust_domain: cfg.trust_domain.clone(),
            identity_ttl: cfg.identity_ttl,
            max_poll_wait: cfg.max_poll_wait,
            master,
            waiters,
            enrollments,
            jobs: Arc::new(JobWakers::default()),
            stats: Arc::new(Stats::default()),
            presence: Arc::new(Presence::new(
                replica_id()?,
                cfg.presence_linger,
                cfg.presence_flush,
            )),
            acks,
            objects: crate::objects::Objects::new(cfg.s3.clone(), &outbound)?,
            outbound,
            enroll_guard: Arc::new(EnrollGuard::new(&cfg.limits)),
            auth_guard: Arc::new(EnrollGuard::bearer(&cfg.limits)),
        };
        Ok(Self {
            addr,
            listener,
            state,
            resolver,
            server_names: cfg.server_names,
            new_admin_token,
            database_url: cfg.database_url,
            jobs: cfg.jobs,
            conn_limiter: ConnLimiter::new(&cfg.limits),
            conn_timeouts: crate::http::timeouts::ConnTimeouts {
                body: cfg.limits.body_read_timeout,
                idle: cfg.limits.idle_connection_timeout,
            },
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The pin agents and ferryctl verify the control plane with: the fingerprint of
    /// the control-plane CA (which signs nothing a tenant can obtain).
    pub fn ca_fingerprint(&self) -> String {
        self.state.control_plane_ca.fingerprint()
    }

    /// PEM of the control-plane CA, what clients trust to reach this server.
    pub fn control_plane_ca_pem(&self) -> String {
        self.state.control_plane_ca.bundle_pem().to_owned()
    }

    /// This replica's counters (shared with the running server).
    pub fn stats(&self) -> Arc<Stats> {
        self.state.stats.clone()
    }

    /// The store handle (its statement counter is what tests read).
    pub fn store(&self) -> crate::store::Store {
        self.state.store.clone()
    }

    /// PEM of the trust bundle delivered to nodes (what verifies node certificates).
    pub fn trust_bundle_pem(&self) -> String {
        self.state.ca.bundle_pem().to_owned()
    }

    /// The router this app serves, for in-process requests in unit tests (no TLS, so
    /// no client certificate: agent routes answer 401).
    #[cfg(test)]
    pub(crate) fn router(&self) -> axum::Router {
        router(self.state.clone())
    }

    /// Serves until `shutdown` turns true.
    pub async fn serve(self, shutdown: watch::Receiver<bool>) -> anyhow::Result<()> {
        let tls_config = tls::server_config(&self.state.ca, self.resolver.clone())?;
        let ca = self.state.control_plane_ca.clone();
        let (resolver, names) = (self.resolver.clone(), self.server_names.clone());
        let mut renew_shutdown = shutdown.clone();
        tokio::spawn(async move {
            let half_life = std::time::Duration::try_from(SERVER_CERT_TTL / 2)
                .unwrap_or(std::time::Duration::from_secs(3600));
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(half_life) => {}
                    _ = renew_shutdown.wait_for(|s| *s) => return,
                }
                match ca.issue_server_cert(&names, OffsetDateTime::now_utc(), SERVER_CERT_TTL) {
                    Ok((chain, key)) => match resolver.replace(&chain, &key) {
                        Ok(()) => tracing::info!("server certificate re-issued"),
                        Err(e) => {
                            tracing::error!(error = %e, "cannot load re-issued server certificate")
                        }
                    },
                    Err(e) => tracing::error!(error = %e, "cannot re-issue server certificate"),
                }
            }
        });
        // Cross-replica wake-ups (PostgreSQL only; SQLite is one replica by design). The
        // guard stops the LISTEN thread however this future ends, even when dropped.
        let listen_stop = Arc::new(AtomicBool::new(false));
        let _stop_listener = StopOnDrop(listen_stop.clone());
        let listener_thread = self.database_url.as_ref().map(|url| {
            notify::spawn_listener(
                url.expose().to_owned(),
                self.state.waiters.clone(),
                listen_stop.clone(),
            )
        });
        let presence = tokio::spawn(
            self.state
                .presence
                .clone()
                .run(self.state.store.clone(), shutdown.clone()),
        );
        jobs::spawn(self.state.clone(), self.jobs.clone(), shutdown.clone());
        tracing::info!(addr = %self.addr, backend = self.state.store.backend_name(), "control plane listening");
        let edge = tls::Edge {
            conns: self.conn_limiter,
            timeouts: self.conn_timeouts,
            stats: self.state.stats.clone(),
        };
        tls::serve(
            self.listener,
            tls_config,
            router(self.state),
            edge,
            shutdown,
        )
        .await;
        // The last flush releases every node this replica held and removes its row.
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), presence).await;
        listen_stop.store(true, Ordering::Relaxed);
        if let Some(t) = listener_thread {
            let _ = tokio::task::spawn_blocking(move || t.join()).await;
        }
        Ok(())
    }
}

/// A name for this process in `replicas`: host, pid and a random suffix, so a restarted
/// replica is a new one and the old one's nodes are swept from its last heartbeat.
fn replica_id() -> anyhow::Result<String> {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "host".into());
    let suffix =
        crate::http::new_id().map_err(|_| anyhow::anyhow!("random number generator failed"))?;
    Ok(format!("{host}/{}/{}", std::process::id(), &suffix[..8]))
}

/// Sets its flag when dropped.
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Opens the configured store and applies pending migrations.
pub fn open_store(cfg: &Config) -> anyhow::Result<Store> {
    crate::datadir::prepare(cfg)?;
    let url = cfg.database_url.as_ref().map(|s| s.expose());
    let store = Store::open(url, &cfg.sqlite_path(), cfg.db_pool_size)
        .context("cannot open the database")?;
    let applied = store.migrate().context("cannot migrate the database")?;
    if applied > 0 {
        tracing::info!(
            applied,
            backend = store.backend_name(),
            "migrations applied"
        );
    }
    Ok(store)
}

fn load_master_key(cfg: &Config) -> anyhow::Result<MasterKey> {
    if let Some(text) = &cfg.master_key {
        return MasterKey::parse(text.expose()).context("FERRY_MASTER_KEY is invalid");
    }
    let path = &cfg.master_key_file;
    if !path.exists() {
        write_private_file(path, &MasterKey::generate_text()?)?;
        tracing::info!(path = %path.display(), "created master key file");
    }
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read master key file {}", path.display()))?;
    MasterKey::parse(&text)
        .with_context(|| format!("master key file {} is invalid", path.display()))
}

/// Writes `contents` to a file readable by its owner only (also when it existed).
pub fn write_private_file(path: &Path, contents: &str) -> anyhow::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(crate::datadir::FILE_MODE)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    f.set_permissions(std::fs::Permissions::from_mode(crate::datadir::FILE_MODE))?;
    f.write_all(contents.as_bytes())?;
    f.sync_all()?;
    Ok(())
}

/// The trust domain's CA of `purpose`: generated, sealed and stored on the first start
/// (the first replica to insert wins a race), else opened from the store.
async fn bootstrap_ca(
    store: &Store,
    cfg: &Config,
    master: &MasterKey,
    purpose: Purpose,
) -> anyhow::Result<Ca> {
    let td = cfg.trust_domain.clone();
    let (aad, what) = match purpose {
        Purpose::Root => (td.to_string(), "root CA"),
        Purpose::ControlPlane => (crate::ca::server::seal_context(&td), "control-plane CA"),
    };
    let key = td.to_string();
    let existing = store
        .read(move |c| store::ca::get_for(c, purpose, &key))
        .await?;
    let row = match existing {
        Some(row) => row,
        None => {
            let now = OffsetDateTime::now_utc();
            let (ca, key_pem) = match purpose {
                Purpose::Root => Ca::generate(&td, now)?,
                Purpose::ControlPlane => Ca::generate_control_plane(&td, now)?,
            };
            let row = CaRow {
                trust_domain: td.to_string(),
                cert_pem: ca.bundle_pem().to_owned(),
                key_ciphertext: master.seal(key_pem.as_bytes(), aad.as_bytes())?,
                key_id: master.id().to_owned(),
                created_at: store::now_ms(),
            };
            let inserted = row.clone();
            let won = store
                .write(
                    move |c| match store::ca::insert_for(c, purpose, &inserted) {
                        Ok(()) => Ok(true),
                        Err(e) if store::is_unique_violation(&e) => Ok(false),
                        Err(e) => Err(store::StoreError::from(e)),
                    },
                )
                .await?;
            if won {
                tracing::info!(trust_domain = %td, fingerprint = %ca.fingerprint(), "generated {what}");
                return Ok(ca);
            }
            let key = td.to_string();
            store
                .read(move |c| store::ca::get_for(c, purpose, &key))
                .await?
                .with_context(|| format!("{what} row vanished after a first-start race"))?
        }
    };
    let key_pem = master.open(&row.key_ciphertext, aad.as_bytes(), &row.key_id).with_context(|| {
        format!("cannot open the stored {what} of trust domain {td}; start with the master key used at first start")
    })?;
    let key_pem =
        String::from_utf8(key_pem).with_context(|| format!("stored {what} key is not PEM"))?;
    let ca = Ca::load(&td, &row.cert_pem, &key_pem)?;
    if ca.trust_domain() != &td {
        bail!("stored {what} belongs to another trust domain");
    }
    Ok(ca)
}

/// Creates the admin token on the database's first start, writes it 0600 to
/// `<data-dir>/admin-token`, and returns it (so `main` can show it once).
async fn bootstrap_admin(store: &Store, cfg: &Config) -> anyhow::Result<Option<String>> {
    let now = store::now_ms();
    store
        .write(move |c| store::tenants::ensure_default(c, now).map_err(store::StoreError::from))
        .await?;
    if store
        .read(|c| store::tokens::exists(c, store::tokens::BOOTSTRAP_ADMIN_ID))
        .await?
    {
        return Ok(None);
    }
    let token = crate::http::new_secret("fya_")
        .map_err(|_| anyhow::anyhow!("random number generator failed"))?;
    let row = ApiTokenRow {
        id: store::tokens::BOOTSTRAP_ADMIN_ID.into(),
        tenant: None,
        token_hash: sha256_hex(token.as_bytes()),
        description: "created on first start".into(),
        created_at: now,
        name: store::tokens::BOOTSTRAP_ADMIN_ID.into(),
        role: store::tokens::ADMIN_ROLE.into(),
        expires_at: None,
    };
    let won = store
        .write(move |c| match store::tokens::insert(c, &row) {
            Ok(()) => Ok(true),
            Err(e) if store::is_unique_violation(&e) => Ok(false),
            Err(e) => Err(store::StoreError::from(e)),
        })
        .await?;
    if !won {
        return Ok(None);
    }
    write_private_file(&cfg.admin_token_path(), &format!("{token}\n"))?;
    Ok(Some(token))
}

/// `ferry-control-plane admin create-token`: a token for `tenant` (or an admin token),
/// written straight to the database without a running server.
pub async fn create_token_offline(
    cfg: &Config,
    tenant: Option<&str>,
    description: &str,
) -> anyhow::Result<String> {
    let store = open_store(cfg)?;
    let token = crate::http::new_secret(if tenant.is_some() { "fyt_" } else { "fya_" })
        .map_err(|_| anyhow::anyhow!("random number generator failed"))?;
    let id =
        crate::http::new_id().map_err(|_| anyhow::anyhow!("random number generator failed"))?;
    let row = ApiTokenRow {
        name: id.clone(),
        id,
        tenant: tenant.map(str::to_owned),
        token_hash: sha256_hex(token.as_bytes()),
        description: description.to_owned(),
        created_at: store::now_ms(),
        role: store::tokens::ADMIN_ROLE.into(),
        expires_at: None,
    };
    let audit = store::audit::NewAudit {
        at: row.created_at,
        actor: "cli:admin create-token".into(),
        tenant: row.tenant.clone(),
        action: "token.create".into(),
        target: format!("token:{}", row.id),
        detail: serde_json::json!({ "description": description }).to_string(),
    };
    let t = tenant.map(str::to_owned);
    store
        .write(move |c| {
            if let Some(t) = &t
                && store::tenants::get(c, t)?.is_none()
            {
                return Err(anyhow::anyhow!("tenant {t} does not exist"));
            }
            store::tokens::insert(c, &row)?;
            store::audit::record(c, &audit)?;
            Ok(())
        })
        .await?;
    Ok(token)
}
