//! `delivery-state.json`: what the agent remembers about deliveries between restarts.
//!
//! The installed version itself is what `current` points to; this file adds what the
//! directory cannot say: the content hash, the identity epoch it was installed under,
//! whether the reload hook ran and the ack went through, and what `ferry-agent status`
//! shows (last ack, last error, last contact, clock skew). It is replaced atomically.
//! `installing` is written before `current` switches (an intent record): at startup it
//! is promoted when `current` names its directory, else discarded.

use crate::state::{StateDir, StateError, write_atomic};
use ferry_shared::api::AckStatus;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use time::OffsetDateTime;

pub const DELIVERY_STATE_FILE: &str = "delivery-state.json";
/// node-key mode: the key generated for a CSR, until its certificate is installed.
pub use crate::state::PENDING_KEY_FILE;

/// The identity a version was installed under. A new enrollment is a new epoch, in which
/// the control plane may number versions from 1 again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Epoch {
    pub spiffe_id: String,
    #[serde(with = "time::serde::rfc3339")]
    pub enrolled_at: OffsetDateTime,
}

/// How the install of a version ended: what its ack says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    pub status: AckStatus,
    pub error: Option<String>,
    pub hook_exit_code: Option<i32>,
    /// The files are installed but the reload command failed: it is run again with
    /// backoff until it succeeds or another version arrives.
    #[serde(default)]
    pub hook_failed: bool,
}

/// One installed version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstalledVersion {
    pub version: i64,
    /// Its directory under `versions/`.
    pub dir: String,
    pub content_hash: String,
    #[serde(with = "time::serde::rfc3339::option")]
    pub cert_not_after: Option<OffsetDateTime>,
    pub epoch: Epoch,
    /// `None` until the targets were written and the reload hook ran.
    pub outcome: Option<Outcome>,
    pub acked: bool,
}

/// The last ack the control plane accepted (or answered for good).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AckRecord {
    pub version: i64,
    pub status: AckStatus,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

/// The whole file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryState {
    /// Where versions are installed (so `status` can find `current`).
    pub install_dir: Option<PathBuf>,
    pub installed: Option<InstalledVersion>,
    pub installing: Option<InstalledVersion>,
    pub last_ack: Option<AckRecord>,
    /// The last verification, install, hook or ack failure; cleared by a good install.
    pub last_error: Option<String>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub last_contact: Option<OffsetDateTime>,
    /// Server clock minus local clock, from the last poll answer.
    #[serde(default)]
    pub clock_skew_ms: i64,
    /// The service's `alert_before`, from the last bundle: an installed certificate this
    /// close to expiry means delivery is failing.
    #[serde(default)]
    pub alert_before_seconds: Option<u64>,
    /// The agent's `poll_wait`: a running agent that reaches the control plane saves
    /// `last_contact` at least every two polls plus a minute, so `status` derives from it
    /// how old a contact may be.
    #[serde(default)]
    pub poll_wait_seconds: Option<u64>,
}

impl DeliveryState {
    /// The file in `state`, or the default when there is none yet.
    pub fn load(state: &StateDir) -> Result<Self, StateError> {
        let path = state.file(DELIVERY_STATE_FILE);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|source| StateError::BadState { path, source }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(source) => Err(StateError::Io {
                op: "read",
                path,
                source,
            }),
        }
    }

    pub fn save(&self, state: &StateDir) -> Result<(), StateError> {
        // Invariant: plain strings, integers and timestamps always serialize.
        let json = serde_json::to_vec_pretty(self).expect("DeliveryState serializes");
        write_atomic(
            state.path(),
            DELIVERY_STATE_FILE,
            &json,
            crate::state::FILE_MODE,
        )
    }

    /// Makes the record agree with `current` (`(version, dir name)`), after a crash or
    /// when the file was lost. Returns true when an unknown `current` was adopted as it is.
    pub fn reconcile(
        &mut self,
        current: Option<(i64, String)>,
        adopt: impl FnOnce(i64, String) -> InstalledVersion,
    ) -> bool {
        let installing = self.installing.take();
        let Some((version, dir)) = current else {
            self.installed = None;
            return false;
        };
        if let Some(intent) = installing.filter(|i| i.dir == dir) {
            self.installed = Some(intent);
            return false;
        }
        if self.installed.as_ref().is_some_and(|i| i.dir == dir) {
            return false;
        }
        self.installed = Some(adopt(version, dir));
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn version(v: i64, dir: &str) -> InstalledVersion {
        InstalledVersion {
            version: v,
            dir: dir.to_owned(),
            content_hash: format!("sha256:{v}"),
            cert_not_after: Some(datetime!(2030-01-01 00:00 UTC)),
            epoch: Epoch {
                spiffe_id: "spiffe://ferry.local/service/web/node/n-1".to_owned(),
                enrolled_at: datetime!(2026-01-01 00:00 UTC),
            },
            outcome: None,
            acked: false,
        }
    }

    #[test]
    fn the_record_round_trips_through_the_state_dir() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = StateDir::new(dir.path());
        assert_eq!(
            DeliveryState::load(&state).expect("absent"),
            DeliveryState::default()
        );
        let record = DeliveryState {
            install_dir: Some("/etc/ssl/ferry".into()),
            installed: Some(version(3, "3")),
            last_ack: Some(AckRecord {
                version: 3,
                status: AckStatus::Installed,
                at: datetime!(2026-01-01 00:01 UTC),
            }),
            clock_skew_ms: -40,
            ..DeliveryState::default()
        };
        record.save(&state).expect("save");
        assert_eq!(DeliveryState::load(&state).expect("load"), record);
    }

    #[test]
    fn reconcile_promotes_a_switched_intent_and_drops_an_unswitched_one() {
        let adopt = |v: i64, d: String| InstalledVersion {
            acked: true,
            ..version(v, &d)
        };
        let mut switched = DeliveryState {
            installed: Some(version(3, "3")),
            installing: Some(version(4, "4")),
            ..DeliveryState::default()
        };
        assert!(!switched.reconcile(Some((4, "4".into())), adopt));
        assert_eq!(switched.installed, Some(version(4, "4")));
        assert_eq!(switched.installing, None);

        let mut crashed_before = DeliveryState {
            installed: Some(version(3, "3")),
            installing: Some(version(4, "4")),
            ..DeliveryState::default()
        };
        assert!(!crashed_before.reconcile(Some((3, "3".into())), adopt));
        assert_eq!(crashed_before.installed, Some(version(3, "3")));
        assert_eq!(crashed_before.installing, None);

        let mut lost = DeliveryState::default();
        assert!(lost.reconcile(Some((9, "9".into())), adopt));
        assert!(
            lost.installed
                .as_ref()
                .is_some_and(|i| i.version == 9 && i.acked)
        );
        assert!(!lost.reconcile(None, adopt) && lost.installed.is_none());
    }
}
