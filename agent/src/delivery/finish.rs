//! The second half of a delivery: switch to the verified version, write the targets, run
//! the reload hook, and acknowledge until the control plane has the answer.
//!
//! Each step is recorded in `delivery-state.json` before the next starts, so a restart
//! resumes where a crash stopped: a switched but unacknowledged version gets its targets,
//! hook and ack; a hook result that was never acknowledged is acknowledged.

use super::{Delivery, Epoch, InstalledVersion, Outcome, failed, retry_policy};
use crate::backoff::Backoff;
use crate::bundle::Verified;
use crate::config::TargetFile;
use crate::hooks::{HookContext, run_reload};
use crate::identity::CertInfo;
use crate::install::{InstallDir, VERSIONS, link_metadata_dir, write_targets};
use crate::sync::retry::{Retry, decide_request};
use crate::sync::{Session, chain};
use ferry_shared::api::{AckRequest, AckStatus};
use ferry_shared::hash::bundle_content_hash;
use time::OffsetDateTime;
use tokio::sync::watch;
use tracing::{error, info, warn};

use super::record::{AckRecord, PENDING_KEY_FILE};

impl Delivery<'_> {
    /// Switches `current` to the verified version, then finishes it.
    pub(super) async fn install(
        &mut self,
        session: &Session,
        verified: Verified,
        used_pending_key: bool,
        rx: &watch::Receiver<Session>,
    ) {
        let name = self.dir.next_dir_name(verified.version);
        let installing = InstalledVersion {
            version: verified.version,
            dir: name.clone(),
            content_hash: verified.content_hash.clone(),
            cert_not_after: Some(verified.cert_not_after),
            epoch: super::epoch_of(session),
            outcome: None,
            acked: false,
        };
        self.record.installing = Some(installing.clone());
        let result = match self.record.save(self.state) {
            Ok(()) => self
                .dir
                .install(&name, &verified.files)
                .map_err(|e| chain(&e)),
            Err(err) => Err(chain(&err)),
        };
        self.record.installing = None;
        if let Err(msg) = result {
            let delay = self.backoff.slow_delay();
            error!(version = verified.version, error = %msg, retry_in_ms = delay.as_millis(),
                "could not install the bundle; keeping the installed one");
            self.record.last_error = Some(msg.clone());
            self.save();
            let ack = self.ack_request(
                verified.version,
                &verified.content_hash,
                failed(format!("install failed: {msg}")),
                Some(verified.cert_not_after),
                rx,
            );
            self.ack_until_done(rx, &ack).await;
            return tokio::time::sleep(delay).await;
        }
        info!(version = verified.version, dir = %name, not_after = %verified.cert_not_after,
            "bundle installed");
        self.record.installed = Some(installing.clone());
        self.record.last_error = None;
        self.save();
        if used_pending_key {
            // The key now lives in the version directory (fsynced before the switch).
            let _ = std::fs::remove_file(self.state.file(PENDING_KEY_FILE));
            self.pending = None;
        }
        self.finish(installing, rx).await;
    }

    /// Targets, reload hook (unless they already ran) and the ack of an installed version.
    pub(super) async fn finish(
        &mut self,
        installed: InstalledVersion,
        rx: &watch::Receiver<Session>,
    ) {
        let outcome = match installed.outcome.clone() {
            Some(outcome) => outcome,
            None => self.apply_and_record(&installed).await,
        };
        self.acknowledge(&installed, outcome, rx).await;
    }

    /// Applies `installed` (targets, reload command) and records the outcome.
    async fn apply_and_record(&mut self, installed: &InstalledVersion) -> Outcome {
        let outcome = self.apply(installed).await;
        if let Some(i) = self
            .record
            .installed
            .as_mut()
            .filter(|i| i.dir == installed.dir)
        {
            i.outcome = Some(outcome.clone());
        }
        self.record.last_error = outcome.error.clone();
        self.save();
        outcome
    }

    /// Acknowledges `outcome` of `installed` until the control plane has it, marks it
    /// acknowledged and schedules (or forgets) a retry of its reload command.
    async fn acknowledge(
        &mut self,
        installed: &InstalledVersion,
        outcome: Outcome,
        rx: &watch::Receiver<Session>,
    ) {
        let hook_failed = outcome.hook_failed;
        let ack = self.ack_request(
            installed.version,
            &installed.content_hash,
            outcome,
            installed.cert_not_after,
            rx,
        );
        self.ack_until_done(rx, &ack).await;
        if let Some(i) = self
            .record
            .installed
            .as_mut()
            .filter(|i| i.dir == installed.dir)
        {
            i.acked = true;
        }
        self.save();
        self.note_hook(&installed.dir, hook_failed);
    }

    /// Schedules the next run of a failed reload command (backing off while it keeps
    /// failing), or forgets the schedule once it succeeded.
    pub(super) fn note_hook(&mut self, dir: &str, failed: bool) {
        if !failed {
            self.hook_retry = None;
            return;
        }
        let mut backoff = match self.hook_retry.take() {
            Some(r) if r.dir == dir => r.backoff,
            _ => Backoff::new(retry_policy(self.cfg)),
        };
        let delay = backoff.next_delay();
        self.hook_retry = Some(super::HookRetry {
            dir: dir.to_owned(),
            at: tokio::time::Instant::now() + delay,
            backoff,
        });
    }

    /// Runs the targets and the reload command of the installed version again, records
    /// and acknowledges how it went (an ack `installed` once it succeeds).
    pub(super) async fn retry_hook(&mut self, rx: &watch::Receiver<Session>) {
        let Some(dir) = self.hook_retry.as_ref().map(|r| r.dir.clone()) else {
            return;
        };
        let Some(installed) = self.record.installed.clone().filter(|i| i.dir == dir) else {
            self.hook_retry = None;
            return;
        };
        info!(
            version = installed.version,
            "running the failed reload command again"
        );
        let outcome = self.apply_and_record(&installed).await;
        self.acknowledge(&installed, outcome, rx).await;
    }

    async fn apply(&self, installed: &InstalledVersion) -> Outcome {
        let version_dir = self.dir.path().join(VERSIONS).join(&installed.dir);
        if let Some(link) = &self.cfg.metadata_dir
            && let Err(err) = link_metadata_dir(self.dir.path(), link)
        {
            let msg = format!("could not link the metadata directory: {}", chain(&err));
            error!(version = installed.version, error = %msg, "metadata_dir not linked");
            return failed(msg);
        }
        if let Err(err) = write_targets(&version_dir, &self.cfg.targets) {
            let msg = format!("could not write the targets: {}", chain(&err));
            error!(version = installed.version, error = %msg, "targets not updated");
            return failed(msg);
        }
        let Some(command) = &self.cfg.reload_command else {
            return Outcome {
                status: AckStatus::Installed,
                error: None,
                hook_exit_code: None,
                hook_failed: false,
            };
        };
        let ctx = HookContext {
            version: installed.version,
            install_dir: self.dir.path(),
            cert_not_after: installed.cert_not_after,
        };
        let run = run_reload(command, &ctx, self.cfg.reload_timeout).await;
        match run.result {
            Ok(code) => {
                info!(version = installed.version, output = %run.output, "reload command succeeded");
                Outcome {
                    status: AckStatus::Installed,
                    error: None,
                    hook_exit_code: Some(code),
                    hook_failed: false,
                }
            }
            Err(err) => {
                let msg = match run.output.as_str() {
                    "" => chain(&err),
                    output => format!("{}; output: {}", chain(&err), last_chars(output, 1500)),
                };
                warn!(version = installed.version, error = %msg, "reload command failed; the files stay installed, it is retried");
                Outcome {
                    hook_exit_code: err.exit_code(),
                    hook_failed: true,
                    ..failed(msg)
                }
            }
        }
    }

    pub(super) fn ack_request(
        &self,
        version: i64,
        content_hash: &str,
        outcome: Outcome,
        cert_not_after: Option<OffsetDateTime>,
        rx: &watch::Receiver<Session>,
    ) -> AckRequest {
        // The wire field is node clock minus server clock; the agent keeps the opposite.
        let skew = rx.borrow().clock_skew_ms;
        AckRequest {
            version,
            content_hash: content_hash.to_owned(),
            status: outcome.status,
            error: outcome.error,
            cert_not_after,
            hook_exit_code: outcome.hook_exit_code,
            clock_skew_ms: Some(-skew),
            agent_version: Some(env!("CARGO_PKG_VERSION").to_owned()),
        }
    }

    /// Sends `ack` until the control plane answers it for good: 2xx, or a refusal that a
    /// retry cannot change (409: the version is no longer current).
    pub(super) async fn ack_until_done(&mut self, rx: &watch::Receiver<Session>, ack: &AckRequest) {
        let mut backoff = Backoff::new(retry_policy(self.cfg));
        loop {
            let client = rx.borrow().client.clone();
            let err = match client.ack(ack).await {
                Ok(()) => {
                    info!(version = ack.version, status = ?ack.status, "acknowledged");
                    let now = OffsetDateTime::now_utc();
                    self.record.last_ack = Some(AckRecord {
                        version: ack.version,
                        status: ack.status,
                        at: now,
                    });
                    self.record.last_contact = Some(now);
                    return self.save();
                }
                Err(err) => err,
            };
            if let Some(reason) = err.revocation() {
                self.revoked = Some(reason);
                return;
            }
            let delay = match decide_request(&err) {
                Retry::Soon => backoff.next_delay(),
                Retry::Slowly => backoff.slow_delay(),
                Retry::Fatal if err.status() == Some(409) => {
                    return warn!(version = ack.version, error = %chain(&err),
                        "the control plane no longer expects this ack; moving on");
                }
                Retry::Fatal => {
                    error!(version = ack.version, error = %chain(&err), "ack refused; not retrying");
                    self.record.last_error = Some(chain(&err));
                    return self.save();
                }
            };
            warn!(version = ack.version, error = %chain(&err), retry_in_ms = delay.as_millis(),
                "ack failed");
            tokio::time::sleep(delay).await;
        }
    }
}

/// A record for a version found in `current` without one (the state file was lost):
/// taken as installed and acknowledged, with the hash of its files (key included, as in
/// central mode) and the current identity's epoch.
pub(super) fn adopt(
    dir: &InstallDir,
    version: i64,
    name: String,
    epoch: Epoch,
) -> InstalledVersion {
    let path = dir.path().join(VERSIONS).join(&name);
    let read =
        |f: TargetFile| std::fs::read_to_string(path.join(f.file_name())).unwrap_or_default();
    let cert = read(TargetFile::Cert);
    let key = read(TargetFile::Key);
    let content_hash = bundle_content_hash(
        &cert,
        &read(TargetFile::Chain),
        Some(&key),
        &read(TargetFile::Ca),
        &read(TargetFile::Metadata),
    );
    InstalledVersion {
        version,
        dir: name,
        content_hash,
        cert_not_after: CertInfo::from_pem(&cert, "cert.pem")
            .ok()
            .map(|c| c.not_after),
        epoch,
        outcome: Some(Outcome {
            status: AckStatus::Installed,
            error: None,
            hook_exit_code: None,
            hook_failed: false,
        }),
        acked: true,
    }
}

/// The last `n` characters of `text` (the ack's error field is bounded).
fn last_chars(text: &str, n: usize) -> &str {
    let skip = text.chars().count().saturating_sub(n);
    text.char_indices()
        .nth(skip)
        .map_or("", |(i, _)| &text[i..])
}
