//! `ferry-agent status`: what the state dir says about this node's identity and installed
//! bundle, for people (`Display`) and scripts (`Serialize`, `--json`).
//!
//! Reads only `identity.pem`, `agent-state.json`, `delivery-state.json` and the installed
//! `cert.pem`, never a private key, so it works for a user who may not read
//! `identity.key`, and it never modifies anything.

use crate::delivery::{AckRecord, DeliveryState};
use crate::identity::CertInfo;
use crate::state::{CERT_FILE, StateDir, StateError};
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
    /// The identity is valid and so is the installed certificate, if any: exit status 0.
    pub healthy: bool,
}

/// The status now.
pub fn status(state_dir: &Path) -> Result<Status, StateError> {
    status_at(state_dir, OffsetDateTime::now_utc())
}

/// The status at `local_now` (the local clock; the measured skew is applied here).
pub fn status_at(state_dir: &Path, local_now: OffsetDateTime) -> Result<Status, StateError> {
    let dir = StateDir::new(state_dir);
    let saved = dir.load_state()?;
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
        last_contact: saved
            .as_ref()
            .and_then(|s| s.last_contact)
            .max(delivery.last_contact),
        clock_skew_ms: skew,
        install_dir: delivery.install_dir,
        installed_version,
        installed_not_after,
        installed_seconds_left,
        last_ack: delivery.last_ack,
        last_error: delivery.last_error,
        // Inside the service's alert_before window the certificate should long have been
        // renewed: delivery is failing, so node-level monitoring must hear about it.
        healthy: valid
            && (installed_version.is_none()
                || installed_seconds_left
                    .is_some_and(|s| s > delivery.alert_before_seconds.map_or(0, |w| w as i64))),
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
        write!(
            f,
            "last error:    {}",
            self.last_error.as_deref().unwrap_or("none")
        )
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
mod tests {
    use super::*;
    use crate::state::{AgentState, StateDir};
    use time::macros::datetime;

    #[test]
    fn missing_state_dir_is_not_enrolled_and_not_valid() {
        let dir = tempfile::tempdir().expect("tempdir");
        let st =
            status_at(&dir.path().join("absent"), datetime!(2026-01-01 00:00 UTC)).expect("status");
        assert!(!st.enrolled && !st.valid);
        assert!(st.to_string().contains("not enrolled"), "{st}");
        let json = serde_json::to_value(&st).expect("serializes");
        assert_eq!(json["valid"], false);
    }

    #[test]
    fn status_applies_the_measured_skew_and_reports_time_left() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = StateDir::new(dir.path());
        let (cert_pem, _key) = crate::testkit::self_signed_identity(
            "spiffe://ferry.local/service/web/node/n-1",
            datetime!(2026-01-01 00:00 UTC),
            datetime!(2026-01-01 01:00 UTC),
        );
        std::fs::write(state.file(CERT_FILE), cert_pem).expect("write cert");
        let saved = AgentState {
            server: "https://cp.example:8443".to_owned(),
            service: "web".parse().expect("valid"),
            node_id: "n-1".parse().expect("valid"),
            spiffe_id: "spiffe://ferry.local/service/web/node/n-1".to_owned(),
            last_contact: Some(datetime!(2026-01-01 00:10 UTC)),
            clock_skew_ms: 120_000,
            enrolled_at: None,
        };
        state.save_state(&saved).expect("save");

        // Local 00:59 is server 01:01: already expired on the clock that matters.
        let st = status_at(dir.path(), datetime!(2026-01-01 00:59 UTC)).expect("status");
        assert!(st.enrolled && !st.valid);
        assert_eq!(st.seconds_left, Some(-60));
        assert!(st.to_string().contains("EXPIRED"), "{st}");

        let st = status_at(dir.path(), datetime!(2026-01-01 00:18 UTC)).expect("status");
        assert!(st.valid);
        assert_eq!(st.seconds_left, Some(40 * 60));
        assert_eq!(st.server.as_deref(), Some("https://cp.example:8443"));
        let text = st.to_string();
        assert!(
            text.contains("40m 0s left") && text.contains("+120000 ms"),
            "{text}"
        );
        let json = serde_json::to_value(&st).expect("serializes");
        assert_eq!(
            json["spiffe_id"],
            "spiffe://ferry.local/service/web/node/n-1"
        );
        assert_eq!(json["not_after"], "2026-01-01T01:00:00Z");
    }

    #[test]
    fn an_expired_installed_certificate_makes_the_node_unhealthy() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = StateDir::new(dir.path().join("state"));
        state.create().expect("mkdir");
        let spiffe = "spiffe://ferry.local/service/web/node/n-1";
        let (identity, _) = crate::testkit::self_signed_identity(
            spiffe,
            datetime!(2026-01-01 00:00 UTC),
            datetime!(2026-01-02 00:00 UTC),
        );
        std::fs::write(state.file(CERT_FILE), identity).expect("write identity");
        let (delivered, key) = crate::testkit::self_signed_identity(
            spiffe,
            datetime!(2026-01-01 00:00 UTC),
            datetime!(2026-01-01 01:00 UTC),
        );
        let install = crate::install::InstallDir::new(dir.path().join("install"));
        let files = crate::bundle::BundleFiles {
            cert: delivered,
            key: crate::config::Secret::new(key),
            chain: String::new(),
            ca: String::new(),
            metadata_json: "{}".to_owned(),
            metadata: Vec::new(),
        };
        install.install("2", &files).expect("install");
        let record = DeliveryState {
            install_dir: Some(install.path().to_owned()),
            last_ack: Some(AckRecord {
                version: 2,
                status: ferry_shared::api::AckStatus::Installed,
                at: datetime!(2026-01-01 00:01 UTC),
            }),
            ..DeliveryState::default()
        };
        record.save(&state).expect("save");

        let st = status_at(state.path(), datetime!(2026-01-01 00:30 UTC)).expect("status");
        assert!(st.valid && st.healthy, "{st:?}");
        assert_eq!(st.installed_version, Some(2));
        assert_eq!(st.installed_seconds_left, Some(30 * 60));
        let text = st.to_string();
        assert!(
            text.contains("version 2, certificate valid until"),
            "{text}"
        );
        assert!(
            text.contains("last ack:      version 2 installed"),
            "{text}"
        );

        // Inside the service's alert_before window (10 minutes): unhealthy already.
        let mut windowed = DeliveryState::load(&state).expect("load");
        windowed.alert_before_seconds = Some(600);
        windowed.save(&state).expect("save");
        let st = status_at(state.path(), datetime!(2026-01-01 00:49 UTC)).expect("status");
        assert!(st.healthy, "11 minutes left, outside the window: {st:?}");
        let st = status_at(state.path(), datetime!(2026-01-01 00:51 UTC)).expect("status");
        assert!(
            !st.healthy,
            "9 minutes left, inside the alert_before window: exit 1"
        );

        let st = status_at(state.path(), datetime!(2026-01-01 02:00 UTC)).expect("status");
        assert!(st.valid, "the identity is still valid");
        assert!(!st.healthy, "but the installed certificate expired: exit 1");
        assert!(st.to_string().contains("certificate EXPIRED"), "{st}");
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(human(5), "5s");
        assert_eq!(human(65), "1m 5s");
        assert_eq!(human(3725), "1h 2m 5s");
    }
}
