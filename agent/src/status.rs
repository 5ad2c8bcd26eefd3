//! `ferry-agent status`: what the state dir says about this node's identity, installed
//! bundle and agent process, for people (`Display`) and scripts (`Serialize`, `--json`).
//!
//! Healthy (exit 0) only when nothing in [`Status::problems`] applies: the agent process
//! runs (it holds `agent.lock` and its heartbeat is fresh), the node was not revoked, the
//! identity is valid, the installed certificate is outside the service's `alert_before`
//! window, the last bundle did not fail (verification, install or reload hook), and the
//! control plane was reached within three poll waits plus 30 s. [`Status::live`] is the
//! first check alone, for liveness probes.
//!
//! Reads only `identity.pem`, `agent-state.json`, `delivery-state.json`, `revoked.json`,
//! `agent.lock` and the installed `cert.pem`, never a private key, and it never modifies
//! anything.

use crate::delivery::{AckRecord, DeliveryState};
use crate::identity::CertInfo;
use crate::state::liveness::HEARTBEAT_STALE;
use crate::state::{CERT_FILE, Revoked, Running, StateDir, StateError};
use serde::Serialize;
use std::fmt;
use std::path::{Path, PathBuf};
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};

/// The identity's state as of one instant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Status {
    pub state_dir: PathBuf,
    /// `identity.pem` exists.
    pub enrolled: bool,
    /// Enrolled and the certificate is valid now (on the server's clock).
    pub valid: bool,
    pub spiffe_id: Option<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub not_after: Option<OffsetDateTime>,
    /// Until `not_after`; negative once expired.
    pub seconds_left: Option<i64>,
    pub server: Option<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_contact: Option<OffsetDateTime>,
    /// Server clock minus local clock at the last contact.
    pub clock_skew_ms: Option<i64>,
    /// Where bundles are installed, once the delivery loop has run.
    pub install_dir: Option<PathBuf>,
    /// The version `current` points to.
    pub installed_version: Option<i64>,
    /// `not_after` of the installed certificate.
    #[serde(with = "time::serde::rfc3339::option")]
    pub installed_not_after: Option<OffsetDateTime>,
    /// Until `installed_not_after`; negative once expired.
    pub installed_seconds_left: Option<i64>,
    pub last_ack: Option<AckRecord>,
    /// The last install, hook or ack failure (cleared by a good install).
    pub last_error: Option<String>,
    /// A `ferry-agent run` holds the state dir's lock.
    pub running: bool,
    /// Since the running agent last touched its heartbeat.
    pub heartbeat_age_seconds: Option<u64>,
    /// Running with a fresh heartbeat: the liveness answer (`--live`).
    pub live: bool,
    /// The control plane revoked this node (or superseded its identity).
    pub revoked: Option<Revoked>,
    /// Why the node is not healthy, most serious first; empty when healthy.
    pub problems: Vec<String>,
    /// No problem: exit status 0.
    pub healthy: bool,
}

/// The status now.
pub fn status(state_dir: &Path) -> Result<Status, StateError> {
    let running = StateDir::new(state_dir).running()?;
    status_at(state_dir, OffsetDateTime::now_utc(), running)
}

/// Contact older than this many poll waits (plus [`CONTACT_SLACK_SECONDS`]) means the
/// agent is not reaching the control plane: a polling agent's poll returns within one
/// wait, it saves its last contact at least once per wait (at most a minute), and a brief
/// outage's backoff adds up to 30 s.
const CONTACT_POLLS: u64 = 3;
const CONTACT_SLACK_SECONDS: u64 = 30;

/// The status at `local_now` (the local clock; the measured skew is applied here), with
/// the agent process as `running` found it.
pub fn status_at(
    state_dir: &Path,
    local_now: OffsetDateTime,
    running: Running,
) -> Result<Status, StateError> {
    let dir = StateDir::new(state_dir);
    let saved = dir.load_state()?;
    let revoked = dir.load_revoked()?;
    let delivery = DeliveryState::load(&dir)?;
    // The skew measured last, by the identity loop or the bundle poll.
    let skew = match (&saved, delivery.last_contact) {
        (Some(s), Some(d)) if s.last_contact.is_none_or(|at| d > at) => {
            Some(delivery.clock_skew_ms)
        }
        (None, Some(_)) => Some(delivery.clock_skew_ms),
        (s, _) => s.as_ref().map(|s| s.clock_skew_ms),
    };
    let server_now = local_now + Duration::milliseconds(skew.unwrap_or(0));

    let cert_path = dir.file(CERT_FILE);
    let cert =
        match std::fs::read_to_string(&cert_path) {
            Ok(pem) => Some(CertInfo::from_pem(&pem, CERT_FILE).map_err(|source| {
                StateError::Unusable {
                    path: cert_path,
                    source,
                }
            })?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(source) => {
                return Err(StateError::Io {
                    op: "read",
                    path: cert_path,
                    source,
                });
            }
        };

    let (installed_version, installed_not_after) = installed_cert(&delivery);
    let installed_seconds_left = installed_not_after.map(|at| (at - server_now).whole_seconds());
    let valid = cert.as_ref().is_some_and(|c| c.is_valid_at(server_now));
    let last_contact = saved
        .as_ref()
        .and_then(|s| s.last_contact)
        .max(delivery.last_contact);
    let heartbeat_age = match running {
        Running::Yes { heartbeat_age } => Some(heartbeat_age),
        Running::No => None,
    };
    let live = heartbeat_age.is_some_and(|age| age <= HEARTBEAT_STALE);

    let mut problems = Vec::new();
    match heartbeat_age {
        None => problems.push("the agent is not running (no process holds agent.lock)".to_owned()),
        Some(age) if age > HEARTBEAT_STALE => problems.push(format!(
            "the agent process is wedged: its heartbeat is {} old",
            human(age.as_secs() as i64)
        )),
        Some(_) => {}
    }
    if let Some(r) = &revoked {
        problems.push(format!(
            "the control plane revoked this node at {}: {}",
            rfc3339(r.at),
            r.reason
        ));
    }
    match &cert {
        None => problems.push("not enrolled".to_owned()),
        Some(_) if !valid => problems.push("the identity certificate is not valid now".to_owned()),
        Some(_) => {}
    }
    let window = delivery.alert_before_seconds.map_or(0, |w| w as i64);
    match (installed_version, installed_seconds_left) {
        (Some(v), Some(left)) if left <= 0 => problems.push(format!(
            "the installed certificate (version {v}) has expired"
        )),
        (Some(v), Some(left)) if left <= window => problems.push(format!(
            "the installed certificate (version {v}) expires in {}, inside the service's \
             alert window: delivery is failing",
            human(left)
        )),
        (Some(v), None) => problems.push(format!(
            "the installed certificate (version {v}) is unreadable"
        )),
        (None, _) if delivery.install_dir.is_some() => {
            problems.push("no bundle installed yet".to_owned())
        }
        _ => {}
    }
    if let Some(a) = delivery
        .last_ack
        .as_ref()
        .filter(|a| a.status == ferry_shared::api::AckStatus::Failed)
    {
        let error = delivery
            .last_error
            .as_deref()
            .unwrap_or("see the agent's log");
        let reload_failed = delivery
            .installed
            .as_ref()
            .filter(|i| i.version == a.version)
            .and_then(|i| i.outcome.as_ref())
            .is_some_and(|o| o.hook_failed);
        problems.push(if reload_failed {
            format!(
                "version {} is installed but its reload command failed (it is retried): {error}",
                a.version
            )
        } else {
            format!("the last bundle (version {}) failed: {error}", a.version)
        });
    }
    if let Some(wait) = delivery.poll_wait_seconds.filter(|_| revoked.is_none()) {
        let bound = CONTACT_POLLS * wait + CONTACT_SLACK_SECONDS;
        match last_contact {
            None => problems.push("the control plane has never been reached".to_owned()),
            Some(at) if (local_now - at).whole_seconds() > bound as i64 => problems.push(format!(
                "the control plane was last reached at {} ({} ago, more than {})",
                rfc3339(at),
                human((local_now - at).whole_seconds()),
                human(bound as i64)
            )),
            Some(_) => {}
        }
    }

    Ok(Status {
        state_dir: state_dir.to_owned(),
        enrolled: cert.is_some(),
        valid,
        spiffe_id: cert
            .as_ref()
            .and_then(|c| c.spiffe_uri.clone())
            .or_else(|| saved.as_ref().map(|s| s.spiffe_id.clone())),
        not_after: cert.as_ref().map(|c| c.not_after),
        seconds_left: cert
            .as_ref()
            .map(|c| (c.not_after - server_now).whole_seconds()),
        server: saved.as_ref().map(|s| s.server.clone()),
        last_contact,
        clock_skew_ms: skew,
        install_dir: delivery.install_dir,
        installed_version,
        installed_not_after,
        installed_seconds_left,
        last_ack: delivery.last_ack,
        last_error: delivery.last_error,
        running: heartbeat_age.is_some(),
        heartbeat_age_seconds: heartbeat_age.map(|a| a.as_secs()),
        live,
        revoked,
        healthy: problems.is_empty(),
        problems,
    })
}

/// The installed version and its certificate's `not_after`: from `current` when the
/// install dir is known and readable, else from the record.
fn installed_cert(delivery: &DeliveryState) -> (Option<i64>, Option<OffsetDateTime>) {
    let from_disk = delivery.install_dir.as_deref().and_then(|dir| {
        let (version, path) = crate::install::installed(dir)?;
        let pem = std::fs::read_to_string(path.join("cert.pem")).ok()?;
        let not_after = CertInfo::from_pem(&pem, "cert.pem").ok()?.not_after;
        Some((Some(version), Some(not_after)))
    });
    from_disk.unwrap_or_else(|| {
        let i = delivery.installed.as_ref();
        (i.map(|i| i.version), i.and_then(|i| i.cert_not_after))
    })
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let none = "-";
        writeln!(f, "state dir:     {}", self.state_dir.display())?;
        writeln!(
            f,
            "spiffe id:     {}",
            self.spiffe_id.as_deref().unwrap_or(none)
        )?;
        match (self.not_after, self.seconds_left) {
            (Some(at), Some(left)) if left > 0 && self.valid => writeln!(
                f,
                "identity:      valid until {} ({} left)",
                rfc3339(at),
                human(left)
            )?,
            (Some(at), Some(left)) if left > 0 => {
                writeln!(f, "identity:      NOT YET VALID, expires {}", rfc3339(at))?
            }
            (Some(at), Some(left)) => writeln!(
                f,
                "identity:      EXPIRED at {} ({} ago)",
                rfc3339(at),
                human(-left)
            )?,
            _ => writeln!(f, "identity:      not enrolled")?,
        }
        writeln!(
            f,
            "server:        {}",
            self.server.as_deref().unwrap_or(none)
        )?;
        match self.last_contact {
            Some(at) => writeln!(f, "last contact:  {}", rfc3339(at))?,
            None => writeln!(f, "last contact:  never")?,
        }
        match self.clock_skew_ms {
            Some(ms) => writeln!(f, "clock skew:    {ms:+} ms (server minus local)")?,
            None => writeln!(f, "clock skew:    unknown")?,
        }
        match (
            self.installed_version,
            self.installed_not_after,
            self.installed_seconds_left,
        ) {
            (Some(v), Some(at), Some(left)) if left > 0 => writeln!(
                f,
                "bundle:        version {v}, certificate valid until {} ({} left)",
                rfc3339(at),
                human(left)
            )?,
            (Some(v), Some(at), Some(left)) => writeln!(
                f,
                "bundle:        version {v}, certificate EXPIRED at {} ({} ago)",
                rfc3339(at),
                human(-left)
            )?,
            (Some(v), _, _) => writeln!(f, "bundle:        version {v}, certificate unreadable")?,
            _ if self.install_dir.is_some() => writeln!(f, "bundle:        none installed yet")?,
            _ => writeln!(f, "bundle:        delivery not configured")?,
        }
        match &self.last_ack {
            Some(a) => writeln!(
                f,
                "last ack:      version {} {} at {}",
                a.version,
                match a.status {
                    ferry_shared::api::AckStatus::Installed => "installed",
                    ferry_shared::api::AckStatus::Failed => "failed",
                },
                rfc3339(a.at)
            )?,
            None => writeln!(f, "last ack:      never")?,
        }
        writeln!(
            f,
            "last error:    {}",
            self.last_error.as_deref().unwrap_or("none")
        )?;
        match self.heartbeat_age_seconds {
            Some(age) => writeln!(f, "agent:         running (heartbeat {}s ago)", age)?,
            None => writeln!(f, "agent:         NOT RUNNING")?,
        }
        if let Some(r) = &self.revoked {
            writeln!(f, "revoked:       at {}: {}", rfc3339(r.at), r.reason)?;
        }
        match self.problems.as_slice() {
            [] => write!(f, "health:        ok"),
            problems => write!(f, "health:        UNHEALTHY: {}", problems.join("; ")),
        }
    }
}

fn rfc3339(at: OffsetDateTime) -> String {
    at.format(&Rfc3339).unwrap_or_else(|_| at.to_string())
}

/// `1h 2m 3s`, `4m 5s`, `6s`.
fn human(seconds: i64) -> String {
    let (h, m, s) = (seconds / 3600, seconds % 3600 / 60, seconds % 60);
    match (h, m) {
        (0, 0) => format!("{s}s"),
        (0, _) => format!("{m}m {s}s"),
        _ => format!("{h}h {m}m {s}s"),
    }
}

#[cfg(test)]
mod tests;
