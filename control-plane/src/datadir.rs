//! The data directory and the files the control plane keeps in it: the directory is
//! 0700 and `ferry.db` (with its `-wal` and `-shm`), `admin-token` and the master key
//! file are 0600, whatever the umask. SQLite gives the `-wal` and `-shm` files the
//! mode of the database file, so creating that 0600 before SQLite opens it covers all
//! three. A directory or file found more open than that is restricted, with a WARN
//! (and left, with an ERROR, when it belongs to someone else).

use crate::config::Config;
use anyhow::Context;
use std::fs::{DirBuilder, OpenOptions, Permissions};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

pub const DIR_MODE: u32 = 0o700;
pub const FILE_MODE: u32 = 0o600;

/// Sets `path` to `mode` if it exists with any bit beyond it.
pub fn tighten(path: &Path, mode: u32) -> anyhow::Result<()> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("cannot stat {}", path.display())),
    };
    let found = meta.permissions().mode() & 0o777;
    if found & !mode != 0 {
        let (found, want) = (format!("{found:o}"), format!("{mode:o}"));
        match std::fs::set_permissions(path, Permissions::from_mode(mode)) {
            Ok(()) => {
                tracing::warn!(path = %path.display(), found, set = want, "permissions were too open; restricted")
            }
            Err(e) => {
                tracing::error!(path = %path.display(), found, want, error = %e, "permissions are too open and cannot be restricted")
            }
        }
    }
    Ok(())
}

/// Creates the data directory 0700 (and the SQLite file 0600 when it is the store)
/// and restricts whatever of them already exists. Runs before the store opens.
pub fn prepare(cfg: &Config) -> anyhow::Result<()> {
    let dir = &cfg.data_dir;
    DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)
        .with_context(|| format!("cannot create data directory {}", dir.display()))?;
    tighten(dir, DIR_MODE)?;
    if cfg.database_url.is_none() {
        let db = cfg.sqlite_path();
        OpenOptions::new()
            .create(true)
            .append(true)
            .mode(FILE_MODE)
            .open(&db)
            .with_context(|| format!("cannot create {}", db.display()))?;
        for suffix in ["", "-wal", "-shm", "-journal"] {
            let mut name = db.clone().into_os_string();
            name.push(suffix);
            tighten(Path::new(&name), FILE_MODE)?;
        }
    }
    // The master key file is created 0600 (`write_private_file`); one the operator
    // provides, perhaps outside the data directory, is left as they made it.
    tighten(&cfg.admin_token_path(), FILE_MODE)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).expect("stat").permissions().mode() & 0o777
    }

    #[test]
    fn the_data_dir_and_database_are_private_and_open_ones_are_restricted() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let cfg = Config::new(tmp.path().join("data"));
        prepare(&cfg).expect("prepare");
        assert_eq!(mode(&cfg.data_dir), DIR_MODE);
        assert_eq!(mode(&cfg.sqlite_path()), FILE_MODE);

        std::fs::set_permissions(&cfg.data_dir, Permissions::from_mode(0o755)).expect("chmod");
        std::fs::set_permissions(cfg.sqlite_path(), Permissions::from_mode(0o644)).expect("chmod");
        let wal = cfg.data_dir.join("ferry.db-wal");
        std::fs::write(&wal, b"").expect("wal");
        std::fs::set_permissions(&wal, Permissions::from_mode(0o644)).expect("chmod");
        prepare(&cfg).expect("prepare again");
        assert_eq!(mode(&cfg.data_dir), DIR_MODE);
        assert_eq!(mode(&cfg.sqlite_path()), FILE_MODE);
        assert_eq!(mode(&wal), FILE_MODE);
    }
}
