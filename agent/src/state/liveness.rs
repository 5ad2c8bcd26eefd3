//! What the state dir says about the agent process itself, for `ferry-agent status`:
//!
//! - `agent.lock`: held (an exclusive `flock`) by the one `ferry-agent run` using this
//!   state dir, for as long as it runs; the kernel drops the lock when the process dies,
//!   however it dies. Its modification time is the heartbeat, touched every
//!   [`HEARTBEAT_EVERY`] by the running agent's runtime: a lock whose heartbeat is older
//!   than [`HEARTBEAT_STALE`] belongs to a wedged process.
//! - `revoked.json`: written when the control plane said this node was revoked or its
//!   identity superseded; the agent stops polling while it exists and `ferry-agent
//!   enroll` removes it.

use super::{FILE_MODE, StateDir, StateError, io_err, read_optional, remove_file, write_atomic};
use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions, TryLockError};
use std::os::unix::fs::OpenOptionsExt;
use std::time::{Duration, SystemTime};
use time::OffsetDateTime;

pub const LOCK_FILE: &str = "agent.lock";
pub const REVOKED_FILE: &str = "revoked.json";
/// How often a running agent touches `agent.lock`.
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(15);
/// A heartbeat older than this means the process holding the lock no longer runs its
/// loops.
pub const HEARTBEAT_STALE: Duration = Duration::from_secs(90);

/// The run lock, released when dropped (or when the process ends).
#[derive(Debug)]
pub struct RunLock {
    file: File,
}

impl RunLock {
    /// Touches the heartbeat.
    pub fn beat(&self) -> std::io::Result<()> {
        self.file.set_modified(SystemTime::now())
    }
}

/// Whether an agent runs on a state dir, as far as the lock file tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Running {
    /// Nobody holds the lock (or there is no lock file: no agent ever ran here).
    No,
    /// A process holds the lock; `heartbeat_age` since it last touched it.
    Yes { heartbeat_age: Duration },
}

/// The control plane's refusal that stopped the agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revoked {
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// The server's words (its problem detail).
    pub reason: String,
}

impl StateDir {
    /// Takes the run lock, waiting up to `wait` for a process that is just ending.
    pub async fn lock_run(&self, wait: Duration) -> Result<RunLock, StateError> {
        let path = self.file(LOCK_FILE);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(FILE_MODE)
            .open(&path)
            .map_err(|source| io_err("open", &path, source))?;
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match file.try_lock() {
                Ok(()) => {
                    let lock = RunLock { file };
                    lock.beat()
                        .map_err(|source| io_err("touch", &path, source))?;
                    return Ok(lock);
                }
                Err(TryLockError::WouldBlock) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(TryLockError::WouldBlock) => return Err(StateError::Locked { path }),
                Err(TryLockError::Error(source)) => return Err(io_err("lock", &path, source)),
            }
        }
    }

    /// Whether an agent holds the run lock now. Reading only: works for any user who
    /// may read the lock file.
    pub fn running(&self) -> Result<Running, StateError> {
        let path = self.file(LOCK_FILE);
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Running::No),
            Err(source) => return Err(io_err("open", &path, source)),
        };
        match file.try_lock_shared() {
            Ok(()) => Ok(Running::No),
            Err(TryLockError::WouldBlock) => {
                let modified = file
                    .metadata()
                    .and_then(|m| m.modified())
                    .map_err(|source| io_err("stat", &path, source))?;
                Ok(Running::Yes {
                    heartbeat_age: modified.elapsed().unwrap_or_default(),
                })
            }
            Err(TryLockError::Error(source)) => Err(io_err("lock", &path, source)),
        }
    }

    /// `revoked.json`, if present.
    pub fn load_revoked(&self) -> Result<Option<Revoked>, StateError> {
        let path = self.file(REVOKED_FILE);
        let Some(text) = read_optional(&path)? else {
            return Ok(None);
        };
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|source| StateError::BadState { path, source })
    }

    /// Records the revocation unless one is recorded already (the first one's time
    /// stays); the record in force.
    pub fn mark_revoked(&self, reason: &str) -> Result<Revoked, StateError> {
        if let Some(found) = self.load_revoked()? {
            return Ok(found);
        }
        let revoked = Revoked {
            at: OffsetDateTime::now_utc(),
            reason: reason.to_owned(),
        };
        // Invariant: a timestamp and a string always serialize.
        let json = serde_json::to_vec_pretty(&revoked).expect("Revoked serializes");
        write_atomic(self.path(), REVOKED_FILE, &json, FILE_MODE)?;
        Ok(revoked)
    }

    /// Removes the revocation record (a new enrollment succeeded).
    pub fn clear_revoked(&self) -> Result<(), StateError> {
        remove_file(&self.file(REVOKED_FILE))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_lock_shows_a_running_agent_and_goes_with_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = StateDir::new(dir.path());
        assert_eq!(state.running().expect("running"), Running::No);
        let lock = state.lock_run(Duration::ZERO).await.expect("lock");
        assert!(matches!(
            state.running().expect("running"),
            Running::Yes { heartbeat_age } if heartbeat_age < Duration::from_secs(5)
        ));
        let second = state.lock_run(Duration::from_millis(300)).await;
        assert!(
            matches!(second, Err(StateError::Locked { .. })),
            "{second:?}"
        );
        drop(lock);
        assert_eq!(state.running().expect("running"), Running::No);
        state.lock_run(Duration::ZERO).await.expect("lock again");
    }

    #[test]
    fn the_first_revocation_stays_until_cleared() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = StateDir::new(dir.path());
        assert_eq!(state.load_revoked().expect("load"), None);
        let first = state.mark_revoked("node is revoked").expect("mark");
        let again = state.mark_revoked("something else").expect("mark");
        assert_eq!(first, again);
        assert_eq!(state.load_revoked().expect("load"), Some(first));
        state.clear_revoked().expect("clear");
        assert_eq!(state.load_revoked().expect("load"), None);
    }
}
