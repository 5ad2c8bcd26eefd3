//! Bundle delivery: the long-poll loop that runs beside the identity loop, and what it does
//! with each answer: verify ([`crate::bundle`]), install ([`crate::install`]), write the
//! targets, run the reload hook ([`crate::hooks`]) and acknowledge.
//!
//! Invariants: within one identity epoch (one enrollment) a version is never installed
//! over a newer or equal one; every installed version is acknowledged, after a restart if
//! need be (the state is in `delivery-state.json`, see [`record`]); a refused bundle is
//! acknowledged as failed and not fetched again; while the control plane is away the
//! installed files stay and requests are paced by backoff with full jitter (capped at
//! 30 s and at the poll wait, and while the installed certificate is still valid never
//! longer than a quarter of its remaining life, but at least 1 s) or by the server's `ferry-retry-after-ms`. In node-key
//! mode the key is generated
//! here for a CSR and kept as `bundle-key.pending` until its certificate is installed.

use crate::AgentConfig;
use crate::backoff::Backoff;
use crate::bundle;
use crate::client::ClientError;
use crate::config::RetryPolicy;
use crate::identity::{IdentityError, NodeKey};
use crate::install::{InstallDir, InstallError, clean_target_temps};
use crate::state::{StateDir, StateError, write_atomic};
use crate::sync::retry::{Retry, decide_request, delivery_advice};
use crate::sync::{AgentError, Session, chain};
use ferry_shared::api::{AckStatus, Bundle};
use std::path::Path;
use std::time::Duration;
use time::OffsetDateTime;
use tokio::sync::watch;
use tracing::{debug, error, info, warn};

mod finish;
pub mod record;

pub use record::{
    AckRecord, DELIVERY_STATE_FILE, DeliveryState, Epoch, InstalledVersion, Outcome,
    PENDING_KEY_FILE,
};

/// Longest backoff between failed delivery requests.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Shortest pause between retries hurried by a certificate about to expire.
const NEAR_EXPIRY_GAP: Duration = Duration::from_secs(1);
/// Shortest pause between two polls, whatever the server says.
const MIN_POLL_GAP: Duration = Duration::from_millis(250);
/// A `ferry-retry-after-ms` longer than this is treated as this.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(600);
/// A poll that changes nothing else updates `delivery-state.json` at most this often...
const CONTACT_SAVE_INTERVAL: Duration = Duration::from_secs(60);
/// ...unless the measured clock skew moved by more than this.
const SKEW_WORTH_SAVING_MS: i64 = 1000;
/// How often at most the agent repeats "certificate expires soon" while unreachable.
const EXPIRY_WARNING_INTERVAL: Duration = Duration::from_secs(300);

/// What failed locally while delivering (the network side is [`ClientError`]).
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error(transparent)]
    Install(#[from] InstallError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Identity(#[from] IdentityError),
}

/// Polls, installs and acks until the run ends. Without an install dir the agent only
/// keeps its identity, and this never completes.
pub(crate) async fn delivery_loop(
    cfg: &AgentConfig,
    state: &StateDir,
    identity: &watch::Sender<Session>,
) -> Result<(), AgentError> {
    let Some(install_dir) = cfg.install_dir.as_deref() else {
        return std::future::pending().await;
    };
    let mut rx = identity.subscribe();
    let mut delivery = Delivery::new(cfg, state, install_dir);
    loop {
        let session = rx.borrow_and_update().clone();
        match delivery.open(&session) {
            Ok(()) => break,
            Err(err) => {
                let delay = delivery.backoff.slow_delay();
                error!(error = %chain(&err), install_dir = %install_dir.display(),
                    retry_in_ms = delay.as_millis(), "install dir unusable; bundles wait");
                tokio::time::sleep(delay).await;
            }
        }
    }
    delivery.run(&mut rx, identity).await
}

/// The delivery loop's state.
struct Delivery<'a> {
    cfg: &'a AgentConfig,
    state: &'a StateDir,
    dir: InstallDir,
    record: DeliveryState,
    backoff: Backoff,
    /// Versions of an epoch that are not fetched again: refused bundles, CSR requests
    /// already answered.
    skip: Option<(Epoch, i64)>,
    /// node-key mode: the key made for the CSR requested by version `.0`.
    pending: Option<(i64, NodeKey)>,
    operator_told: bool,
    /// When the last "certificate expires soon" ERROR was logged.
    expiry_warned_at: Option<std::time::Instant>,
    /// When `delivery-state.json` was last written.
    saved_at: Option<std::time::Instant>,
    /// The control plane refused this identity for good (node revoked or superseded),
    /// in the server's words: the loop ends.
    revoked: Option<String>,
    /// The installed version whose reload command failed, and when to run it again.
    hook_retry: Option<HookRetry>,
}

/// A failed reload command waiting for its next run.
struct HookRetry {
    /// The installed version's directory under `versions/`.
    dir: String,
    at: tokio::time::Instant,
    backoff: Backoff,
}

impl<'a> Delivery<'a> {
    fn new(cfg: &'a AgentConfig, state: &'a StateDir, install_dir: &Path) -> Self {
        Self {
            cfg,
            state,
            dir: InstallDir::new(install_dir),
            record: DeliveryState::default(),
            backoff: Backoff::new(retry_policy(cfg)),
            skip: None,
            pending: None,
            operator_told: false,
            expiry_warned_at: None,
            saved_at: None,
            revoked: None,
            hook_retry: None,
        }
    }

    /// Cleans up after an interrupted install and makes the record agree with `current`.
    fn open(&mut self, session: &Session) -> Result<(), DeliveryError> {
        self.dir.prepare()?;
        clean_target_temps(&self.cfg.targets)?;
        self.record = DeliveryState::load(self.state).unwrap_or_else(|err| {
            warn!(error = %chain(&err), "delivery state unreadable, rebuilding it from the install dir");
            DeliveryState::default()
        });
        self.record.install_dir = Some(self.dir.path().to_owned());
        self.record.poll_wait_seconds = Some(self.cfg.poll_wait.as_secs());
        let current = self.dir.current().map(|(v, name, _)| (v, name));
        let epoch = epoch_of(session);
        let dir = self.dir.clone();
        if self
            .record
            .reconcile(current, |v, name| finish::adopt(&dir, v, name, epoch))
        {
            info!("adopted the installed version found in the install dir");
        }
        if let Some(i) = &self.record.installed {
            info!(version = i.version, acked = i.acked, "installed bundle");
        }
        // A reload command that failed before a restart runs again soon.
        if let Some((dir, true)) = self.record.installed.as_ref().map(|i| {
            let failed = i.acked && i.outcome.as_ref().is_some_and(|o| o.hook_failed);
            (i.dir.clone(), failed)
        }) {
            self.note_hook(&dir, true);
        }
        self.record.save(self.state)?;
        Ok(())
    }

    async fn run(
        &mut self,
        rx: &mut watch::Receiver<Session>,
        identity: &watch::Sender<Session>,
    ) -> Result<(), AgentError> {
        loop {
            let mut session = rx.borrow_and_update().clone();
            if let Some(unacked) = self.record.installed.clone().filter(|i| !i.acked) {
                self.finish(unacked, rx).await;
                if let Some(reason) = self.revoked.take() {
                    return Err(AgentError::Revoked { reason });
                }
                continue;
            }
            let since = self.since(&epoch_of(&session));
            let hook_due = self.hook_retry.as_ref().map(|r| r.at);
            let polled = tokio::select! {
                polled = session.client.poll_bundle(since, self.cfg.poll_wait) => polled,
                () = identity_changed(rx, &session.cert_pem) => {
                    debug!("identity changed, polling again with the new one");
                    continue;
                }
                () = sleep_until(hook_due) => {
                    self.retry_hook(rx).await;
                    if let Some(reason) = self.revoked.take() {
                        return Err(AgentError::Revoked { reason });
                    }
                    continue;
                }
            };
            let polled = match polled {
                Ok(polled) => polled,
                Err(err) => {
                    if let Some(reason) = err.revocation() {
                        return Err(AgentError::Revoked { reason });
                    }
                    let delay = self.delay_after(&err, &session, "bundle poll failed");
                    self.warn_if_expiring(&session);
                    tokio::time::sleep(delay).await;
                    continue;
                }
            };
            self.backoff.reset();
            self.operator_told = false;
            let mut moved = false;
            if let Some(skew) = polled.clock_skew_ms {
                moved = (skew - self.record.clock_skew_ms).abs() > SKEW_WORTH_SAVING_MS;
                session.clock_skew_ms = skew;
                self.record.clock_skew_ms = skew;
                identity.send_modify(|s| s.clock_skew_ms = skew);
            }
            self.record.last_contact = Some(OffsetDateTime::now_utc());
            if moved
                || self
                    .saved_at
                    .is_none_or(|at| at.elapsed() > CONTACT_SAVE_INTERVAL.min(self.cfg.poll_wait))
            {
                self.save();
            }
            let gap = polled.retry_after.unwrap_or_default().min(MAX_RETRY_AFTER);
            match polled.bundle {
                None => {
                    debug!(since, "no newer bundle");
                    tokio::time::sleep(gap.max(MIN_POLL_GAP)).await;
                }
                Some(bundle) => {
                    self.handle(&session, bundle, rx).await;
                    // The floor bounds the rate even if a server kept answering 200.
                    tokio::time::sleep(gap.max(MIN_POLL_GAP)).await;
                }
            }
        }
    }

    /// The `since` of the next poll: the installed version when it was installed under
    /// this identity, else 0 (a new epoch), and never below a skipped version.
    fn since(&self, epoch: &Epoch) -> i64 {
        let installed = match &self.record.installed {
            Some(i) if i.epoch == *epoch => i.version,
            _ => 0,
        };
        let skipped = match &self.skip {
            Some((e, v)) if e == epoch => *v,
            _ => 0,
        };
        installed.max(skipped)
    }

    fn skip_through(&mut self, epoch: Epoch, version: i64) {
        let floor = match &self.skip {
            Some((e, v)) if *e == epoch => (*v).max(version),
            _ => version,
        };
        self.skip = Some((epoch, floor));
    }

    async fn handle(&mut self, session: &Session, bundle: Bundle, rx: &watch::Receiver<Session>) {
        if bundle.alert_before_seconds.is_some() {
            self.record.alert_before_seconds = bundle.alert_before_seconds;
        }
        let epoch = epoch_of(session);
        let version = bundle.version;
        info!(
            version,
            csr_required = bundle.csr_required,
            "bundle received"
        );
        if let Some(i) = self.record.installed.as_mut() {
            if i.epoch == epoch && version <= i.version {
                warn!(
                    version,
                    installed = i.version,
                    "refusing a bundle not newer than the installed one"
                );
                self.skip_through(epoch, version);
                return;
            }
            if i.epoch != epoch
                && version == i.version
                && bundle.content_hash == i.content_hash
                && !bundle.csr_required
            {
                info!(
                    version,
                    "same bundle under the new identity, acknowledging it again"
                );
                i.epoch = epoch;
                i.acked = false;
                self.save();
                return;
            }
        }
        if bundle.csr_required {
            return self.request_certificate(session, &bundle).await;
        }
        let pending = read_pending_key(self.state);
        let has_pending = pending.is_some();
        let keys: Vec<_> = pending.into_iter().chain(self.dir.current_key()).collect();
        let verified = match bundle::verify(&bundle, &keys, session.server_now()) {
            Ok(verified) => verified,
            Err(err) => {
                let msg = chain(&err);
                warn!(version, error = %msg, "bundle refused");
                self.skip_through(epoch, version);
                self.record.last_error = Some(msg.clone());
                self.save();
                let ack = self.ack_request(version, &bundle.content_hash, failed(msg), None, rx);
                return self.ack_until_done(rx, &ack).await;
            }
        };
        let used_pending = has_pending && verified.node_key == Some(0);
        self.install(session, verified, used_pending, rx).await;
    }

    /// node-key mode: makes a new key, keeps it as the pending key and sends its CSR. The
    /// bundle itself is not installed nor acknowledged: the next one carries the
    /// certificate.
    async fn request_certificate(&mut self, session: &Session, bundle: &Bundle) {
        let key_type = bundle.csr_key_type.unwrap_or(self.cfg.key_type);
        let key = match self.pending.take() {
            Some((v, key)) if v == bundle.version => Ok(key),
            _ => NodeKey::generate(key_type)
                .map_err(DeliveryError::from)
                .and_then(|key| {
                    let pem = key.to_pem();
                    write_atomic(
                        self.state.path(),
                        PENDING_KEY_FILE,
                        pem.expose().as_bytes(),
                        0o600,
                    )?;
                    Ok(key)
                }),
        };
        let csr = key.and_then(|key| {
            let csr = key.csr_pem(&self.cfg.node_id)?;
            self.pending = Some((bundle.version, key));
            Ok(csr)
        });
        let csr = match csr {
            Ok(csr) => csr,
            Err(err) => {
                let delay = self.backoff.slow_delay();
                error!(error = %chain(&err), retry_in_ms = delay.as_millis(), "could not make a key for the requested CSR");
                return tokio::time::sleep(delay).await;
            }
        };
        match session.client.submit_csr(csr).await {
            Ok(next) => {
                info!(version = bundle.version, next, %key_type, "CSR accepted, waiting for its certificate");
                self.skip_through(epoch_of(session), bundle.version);
            }
            Err(err) if err.status() == Some(409) => {
                info!(version = bundle.version, error = %chain(&err), "no CSR is requested any more");
                self.skip_through(epoch_of(session), bundle.version);
            }
            Err(err) => {
                let delay = self.delay_after(&err, session, "CSR submission failed");
                tokio::time::sleep(delay).await;
            }
        }
    }

    /// How long the installed certificate stays valid, at server time (zero once expired).
    fn installed_life_left(&self, session: &Session) -> Option<Duration> {
        let not_after = self.record.installed.as_ref()?.cert_not_after?;
        let left = not_after - session.server_now();
        Some(Duration::try_from(left).unwrap_or(Duration::ZERO))
    }

    /// While the control plane is unreachable: an ERROR (at most every
    /// [`EXPIRY_WARNING_INTERVAL`]) when the installed certificate is inside the service's
    /// `alert_before` window, at server time. Node-level monitoring can catch this even
    /// when the control plane cannot see the node.
    fn warn_if_expiring(&mut self, session: &Session) {
        let (Some(installed), Some(window)) = (
            self.record.installed.as_ref(),
            self.record.alert_before_seconds,
        ) else {
            return;
        };
        let Some(not_after) = installed.cert_not_after else {
            return;
        };
        let left = (not_after - session.server_now()).whole_seconds();
        if left > window as i64
            || self
                .expiry_warned_at
                .is_some_and(|at| at.elapsed() < EXPIRY_WARNING_INTERVAL)
        {
            return;
        }
        self.expiry_warned_at = Some(std::time::Instant::now());
        error!(
            version = installed.version,
            seconds_left = left,
            alert_before_seconds = window,
            "the installed certificate expires soon and the control plane cannot be reached"
        );
    }

    /// The delay before the next try after `err`, logged (with the operator's part, once).
    /// A transient failure is retried within a quarter of the installed certificate's
    /// remaining life (at server time), so an agent near expiry keeps trying often
    /// enough to renew as soon as a replica answers.
    fn delay_after(
        &mut self,
        err: &ClientError,
        session: &Session,
        what: &'static str,
    ) -> Duration {
        let delay = match decide_request(err) {
            Retry::Soon => {
                let delay = self.backoff.next_delay();
                match self.installed_life_left(session) {
                    // At least 1 s apart, and not once it has expired: the nodes of a
                    // fleet in their last seconds are few; all of them after a long
                    // outage are not.
                    Some(left) if !left.is_zero() => delay.min((left / 4).max(NEAR_EXPIRY_GAP)),
                    _ => delay,
                }
            }
            Retry::Slowly | Retry::Fatal => self.backoff.slow_delay(),
        };
        match delivery_advice(err).filter(|_| !self.operator_told) {
            Some(advice) => {
                error!(error = %chain(err), "{advice}");
                self.operator_told = true;
            }
            None => warn!(error = %chain(err), retry_in_ms = delay.as_millis(), "{what}"),
        }
        delay
    }

    /// Saves `delivery-state.json`; a failure is logged, because the intent record and
    /// `current` let the next start recover anyway.
    fn save(&mut self) {
        match self.record.save(self.state) {
            Ok(()) => self.saved_at = Some(std::time::Instant::now()),
            Err(err) => warn!(error = %chain(&err), "could not save the delivery state"),
        }
    }
}

/// Completes at `at`, or never.
async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Completes when the published identity's certificate differs from `cert_pem`.
async fn identity_changed(rx: &mut watch::Receiver<Session>, cert_pem: &str) {
    loop {
        if rx.changed().await.is_err() {
            // The identity loop is gone, so the run is ending: nothing will change.
            return std::future::pending().await;
        }
        if rx.borrow_and_update().cert_pem != cert_pem {
            return;
        }
    }
}

fn epoch_of(session: &Session) -> Epoch {
    Epoch {
        spiffe_id: session.spiffe_id.to_string(),
        enrolled_at: session.enrolled_at,
    }
}

fn read_pending_key(state: &StateDir) -> Option<crate::config::Secret> {
    let pem = std::fs::read_to_string(state.file(PENDING_KEY_FILE)).ok()?;
    Some(crate::config::Secret::new(pem))
}

fn failed(error: String) -> Outcome {
    Outcome {
        status: AckStatus::Failed,
        error: Some(error),
        hook_exit_code: None,
        hook_failed: false,
    }
}

/// The configured retry pace, capped at [`MAX_BACKOFF`] and at the poll wait: an agent
/// retrying at most once per poll wait asks no more of the control plane than a healthy
/// one does (one poll per wait), so a fleet coming back after an outage is no storm, and
/// a node is never silent for much longer than its poll wait plus the outage.
fn retry_policy(cfg: &AgentConfig) -> RetryPolicy {
    let cap = cfg
        .retry
        .cap
        .min(MAX_BACKOFF)
        .min(cfg.poll_wait.max(Duration::from_secs(1)));
    RetryPolicy {
        base: cfg.retry.base.min(cap),
        cap,
    }
}

#[cfg(test)]
mod tests;
