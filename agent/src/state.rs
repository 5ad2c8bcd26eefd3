//! The state dir: everything the agent remembers between restarts.
//!
//! - `identity.key`: the node's private key, PEM PKCS#8, mode 0600. It is created here and
//!   never copied anywhere else.
//! - `identity.pem`: the identity certificate issued for that key.
//! - `ca.pem`: the CA bundle that the control plane's server certificate must chain to.
//! - `agent-state.json`: server URL, service, node id, SPIFFE id, last contact, clock skew,
//!   enrollment time.
//! - `delivery-state.json` and `bundle-key.pending`: see [`crate::delivery`].
//! - `agent.lock` and `revoked.json`: whether an agent runs here and whether the control
//!   plane revoked this node, see [`liveness`].
//!
//! The directory is 0700 and every file in it 0600, whatever the umask. A directory or
//! file found more open (a copied state dir, a hand-made key) is restricted at start
//! with a WARN: the key may have been read, so the WARN says to re-enroll.
//!
//! Every file is replaced atomically (temp file in the same dir, fsync, rename, fsync the
//! dir). A new key is first written as `identity.key.next` and renamed over `identity.key`
//! only after its certificate is in place, so a crash at any instant leaves a key and a
//! certificate that belong together; [`StateDir::load_identity`] finishes or discards an
//! interrupted switch.

use crate::config::Secret;
use crate::identity::{CertInfo, IdentityError, NodeKey};
use ferry_shared::{NodeId, ServiceName};
use serde::{Deserialize, Serialize};
use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use time::OffsetDateTime;

pub const KEY_FILE: &str = "identity.key";
pub const NEXT_KEY_FILE: &str = "identity.key.next";
pub const CERT_FILE: &str = "identity.pem";
pub const CA_FILE: &str = "ca.pem";
pub const STATE_FILE: &str = "agent-state.json";
/// The state directory's mode.
pub const DIR_MODE: u32 = 0o700;
/// Every state file's mode.
pub const FILE_MODE: u32 = 0o600;
/// Files holding private keys: restricted (with a WARN) when found readable by others.
const KEY_FILES: [&str; 3] = [KEY_FILE, NEXT_KEY_FILE, PENDING_KEY_FILE];
/// node-key mode: the key generated for a CSR, until its certificate is installed
/// (written by `delivery`).
pub const PENDING_KEY_FILE: &str = "bundle-key.pending";

pub mod liveness;
pub use liveness::{Revoked, RunLock, Running};

/// What failed while reading or writing the state dir.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("could not {op} {path}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is unusable")]
    Unusable {
        path: PathBuf,
        #[source]
        source: IdentityError,
    },
    #[error("{path} is not valid agent state")]
    BadState {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("{key} does not match {cert}; remove both and enroll again with a join token")]
    KeyMismatch { key: PathBuf, cert: PathBuf },
    #[error("another ferry-agent runs on this state dir (it holds {path})")]
    Locked { path: PathBuf },
}

/// The non-secret facts `ferry-agent status` shows, saved after every contact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentState {
    pub server: String,
    pub service: ServiceName,
    pub node_id: NodeId,
    pub spiffe_id: String,
    /// Last successful exchange with the control plane.
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_contact: Option<OffsetDateTime>,
    /// Server clock minus local clock, measured at the last contact.
    pub clock_skew_ms: i64,
    /// When the current identity was enrolled (server clock). A renewal keeps it; a new
    /// enrollment starts a new delivery epoch, in which bundle versions may start over.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub enrolled_at: Option<OffsetDateTime>,
}

/// A key and the certificate issued for it, as found in the state dir.
#[derive(Debug)]
pub struct StoredIdentity {
    pub key: NodeKey,
    pub key_pem: Secret,
    pub cert_pem: String,
    pub cert: CertInfo,
}

/// Handle on a state directory. Creating the handle does no I/O.
#[derive(Debug, Clone)]
pub struct StateDir {
    dir: PathBuf,
}

impl StateDir {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Creates the directory (and parents) if missing, and restricts the directory and
    /// its files to their owner if they are not (a key readable by group or others
    /// is made 0600 with a WARN; it may have been read).
    pub fn create(&self) -> Result<(), StateError> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(DIR_MODE)
            .create(&self.dir)
            .map_err(|source| io_err("create", &self.dir, source))?;
        restrict(&self.dir, DIR_MODE)?;
        let entries =
            fs::read_dir(&self.dir).map_err(|source| io_err("list", &self.dir, source))?;
        for entry in entries {
            let entry = entry.map_err(|source| io_err("list", &self.dir, source))?;
            let path = entry.path();
            if !entry.file_type().is_ok_and(|t| t.is_file()) {
                continue;
            }
            if let Some(found) = restrict(&path, FILE_MODE)? {
                let name = entry.file_name();
                if KEY_FILES.iter().any(|k| name == *k) {
                    tracing::warn!(path = %path.display(), found = format!("{found:o}"), "private key file was readable by group or others; restricted to 0600 (it may have been read: re-enroll to replace the key)");
                } else {
                    tracing::warn!(path = %path.display(), found = format!("{found:o}"), "state file was readable by group or others; restricted to 0600");
                }
            }
        }
        Ok(())
    }

    pub fn has_ca(&self) -> bool {
        self.file(CA_FILE).is_file()
    }

    /// `ca.pem`, if present.
    pub fn load_ca(&self) -> Result<Option<String>, StateError> {
        read_optional(&self.file(CA_FILE))
    }

    /// `agent-state.json`, if present.
    pub fn load_state(&self) -> Result<Option<AgentState>, StateError> {
        let path = self.file(STATE_FILE);
        let Some(text) = read_optional(&path)? else {
            return Ok(None);
        };
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|source| StateError::BadState { path, source })
    }

    pub fn save_state(&self, state: &AgentState) -> Result<(), StateError> {
        // Invariant: AgentState holds only strings and integers, which always serialize.
        let json = serde_json::to_vec_pretty(state).expect("AgentState serializes");
        write_atomic(&self.dir, STATE_FILE, &json, FILE_MODE)
    }

    /// The key and certificate, or `None` when the node has not enrolled. Finishes (or
    /// discards) a key switch that a crash interrupted.
    pub fn load_identity(&self) -> Result<Option<StoredIdentity>, StateError> {
        let cert_path = self.file(CERT_FILE);
        let Some(cert_pem) = read_optional(&cert_path)? else {
            return Ok(None);
        };
        let cert =
            CertInfo::from_pem(&cert_pem, CERT_FILE).map_err(|source| StateError::Unusable {
                path: cert_path.clone(),
                source,
            })?;

        let next_path = self.file(NEXT_KEY_FILE);
        if let Some(next_pem) = read_optional(&next_path)? {
            let next_pem = Secret::new(next_pem);
            match NodeKey::from_pem(&next_pem) {
                Ok(next) if next.matches(&cert) => {
                    let key_path = self.file(KEY_FILE);
                    fs::rename(&next_path, &key_path)
                        .map_err(|source| io_err("rename", &next_path, source))?;
                    sync_dir(&self.dir)?;
                }
                _ => remove_file(&next_path)?,
            }
        }

        let key_path = self.file(KEY_FILE);
        let Some(key_pem) = read_optional(&key_path)? else {
            return Ok(None);
        };
        let key_pem = Secret::new(key_pem);
        let key = NodeKey::from_pem(&key_pem).map_err(|source| StateError::Unusable {
            path: key_path.clone(),
            source,
        })?;
        if !key.matches(&cert) {
            return Err(StateError::KeyMismatch {
                key: key_path,
                cert: cert_path,
            });
        }
        Ok(Some(StoredIdentity {
            key,
            key_pem,
            cert_pem,
            cert,
        }))
    }

    /// Stores a new identity. Order matters for crash safety (see the module doc): the new
    /// key is staged, then the CA bundle and certificate are replaced, then the key.
    pub fn save_identity(
        &self,
        key_pem: &Secret,
        cert_pem: &str,
        ca_pem: &str,
    ) -> Result<(), StateError> {
        self.create()?;
        write_atomic(
            &self.dir,
            NEXT_KEY_FILE,
            key_pem.expose().as_bytes(),
            FILE_MODE,
        )?;
        write_atomic(&self.dir, CA_FILE, ca_pem.as_bytes(), FILE_MODE)?;
        write_atomic(&self.dir, CERT_FILE, cert_pem.as_bytes(), FILE_MODE)?;
        let next = self.file(NEXT_KEY_FILE);
        fs::rename(&next, self.file(KEY_FILE)).map_err(|source| io_err("rename", &next, source))?;
        sync_dir(&self.dir)
    }
}

/// Replaces `dir/name` with `bytes` so that readers see the old or the new content, never
/// a mix, even across a crash. The temp file is created with `mode` from the start, so a
/// key is never readable by others, not even for an instant.
pub(crate) fn write_atomic(
    dir: &Path,
    name: &str,
    bytes: &[u8],
    mode: u32,
) -> Result<(), StateError> {
    let tmp = dir.join(format!(".{name}.tmp"));
    remove_file(&tmp)?;
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(|source| io_err("create", &tmp, source))?;
    file.write_all(bytes)
        .map_err(|source| io_err("write", &tmp, source))?;
    file.sync_all()
        .map_err(|source| io_err("fsync", &tmp, source))?;
    drop(file);
    let target = dir.join(name);
    fs::rename(&tmp, &target).map_err(|source| io_err("rename", &tmp, source))?;
    sync_dir(dir)
}

/// Sets `path` to `mode` if it has any bit beyond it; the mode found, if it did.
fn restrict(path: &Path, mode: u32) -> Result<Option<u32>, StateError> {
    let found = fs::metadata(path)
        .map_err(|source| io_err("stat", path, source))?
        .permissions()
        .mode()
        & 0o777;
    if found & !mode == 0 {
        return Ok(None);
    }
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .map_err(|source| io_err("restrict the mode of", path, source))?;
    Ok(Some(found))
}

fn sync_dir(dir: &Path) -> Result<(), StateError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|source| io_err("fsync", dir, source))
}

fn remove_file(path: &Path) -> Result<(), StateError> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != ErrorKind::NotFound => Err(io_err("remove", path, e)),
        _ => Ok(()),
    }
}

fn read_optional(path: &Path) -> Result<Option<String>, StateError> {
    match fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err("read", path, e)),
    }
}

fn io_err(op: &'static str, path: &Path, source: std::io::Error) -> StateError {
    StateError::Io {
        op,
        path: path.to_owned(),
        source,
    }
}

#[cfg(test)]
mod tests;
