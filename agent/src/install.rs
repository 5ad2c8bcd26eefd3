//! The install dir on disk, switched atomically from one complete version to the next.
//!
//! ```text
//! <install-dir>/current -> versions/<version>      (relative symlink)
//! <install-dir>/versions/<version>/{cert,key,chain,ca,bundle}.pem, metadata.json, metadata/<key>
//! ```
//!
//! A version is written under `versions/<version>.tmp-<pid>/`, every file fsynced, the
//! directory renamed into place and `versions/` fsynced; then a symlink
//! `current.tmp-<pid>` is renamed over `current` and the install dir fsynced. `rename(2)`
//! is atomic, so a crash at any instant leaves `current` on the old complete version or the
//! new one, never on a partial one; leftovers (`*.tmp-*`) are removed at startup. Targets
//! (extra copies of single files) use the same pattern in their own directory (SPIRE's
//! `diskutil`). Only the newest three versions are kept.

use crate::bundle::BundleFiles;
use crate::config::{Target, TargetFile};
use std::fs::{self, File, OpenOptions, Permissions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

pub const CURRENT: &str = "current";
pub const VERSIONS: &str = "versions";
/// The metadata directory of a version: one file per key.
pub const METADATA_DIR: &str = "metadata";
/// Versions kept on disk, the current one included (the others are for rollback).
pub const KEEP_VERSIONS: usize = 3;
const TMP_MARK: &str = ".tmp-";
const TARGET_TMP_MARK: &str = ".ferry-tmp-";

/// What failed on disk.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error("could not {op} {path}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0:?} is not a version directory name")]
    BadName(String),
}

/// The installed version and its directory: what `current` points to, if it points to a
/// version directory that exists.
pub fn installed(install_dir: &Path) -> Option<(i64, PathBuf)> {
    InstallDir::new(install_dir)
        .current()
        .map(|(version, _, dir)| (version, dir))
}

/// The version of a `versions/` entry: `<version>` or `<version>-<n>` (a second
/// directory of the same version number, after a re-enrollment restarted the numbering).
pub fn parse_version_dir(name: &str) -> Option<i64> {
    let (version, suffix) = name.split_once('-').unwrap_or((name, "0"));
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(version) || !digits(suffix) {
        return None;
    }
    version.parse().ok().filter(|v| *v > 0)
}

/// Handle on an install dir. Creating the handle does no I/O.
#[derive(Debug, Clone)]
pub struct InstallDir {
    dir: PathBuf,
}

impl InstallDir {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Creates the directories and removes what an interrupted install left behind.
    pub fn prepare(&self) -> Result<(), InstallError> {
        let versions = self.dir.join(VERSIONS);
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(&versions)
            .map_err(|e| io_err("create", &versions, e))?;
        for dir in [&self.dir, &versions] {
            for entry in fs::read_dir(dir).map_err(|e| io_err("list", dir, e))? {
                let entry = entry.map_err(|e| io_err("list", dir, e))?;
                if entry.file_name().to_string_lossy().contains(TMP_MARK) {
                    remove_any(&entry.path())?;
                }
            }
        }
        Ok(())
    }

    /// `(version, directory name, directory)` of what `current` points to.
    pub fn current(&self) -> Option<(i64, String, PathBuf)> {
        let link = fs::read_link(self.dir.join(CURRENT)).ok()?;
        let name = link.file_name()?.to_str()?.to_owned();
        let version = parse_version_dir(&name)?;
        let dir = self.dir.join(link);
        dir.is_dir().then_some((version, name, dir))
    }

    /// The directory name for `version`: `<version>`, or `<version>-1` when `current`
    /// already uses that name (the same number delivered again after a re-enrollment).
    pub fn next_dir_name(&self, version: i64) -> String {
        let plain = version.to_string();
        match self.current() {
            Some((_, name, _)) if name == plain => format!("{version}-1"),
            _ => plain,
        }
    }

    /// Writes `files` as the version directory `name` (from [`Self::next_dir_name`]) and
    /// switches `current` to it; then prunes old versions. Returns the new directory.
    pub fn install(&self, name: &str, files: &BundleFiles) -> Result<PathBuf, InstallError> {
        let version =
            parse_version_dir(name).ok_or_else(|| InstallError::BadName(name.to_owned()))?;
        self.prepare()?;
        let versions = self.dir.join(VERSIONS);
        let pid = std::process::id();
        let tmp = versions.join(format!("{name}{TMP_MARK}{pid}"));
        write_version_dir(&tmp, files)?;
        let final_dir = versions.join(name);
        // A directory of this name that `current` does not use is from an older numbering.
        if final_dir.exists() {
            remove_any(&final_dir)?;
        }
        rename(&tmp, &final_dir)?;
        sync_dir(&versions)?;

        let tmp_link = self.dir.join(format!("{CURRENT}{TMP_MARK}{pid}"));
        remove_any(&tmp_link)?;
        let target = Path::new(VERSIONS).join(name);
        std::os::unix::fs::symlink(&target, &tmp_link)
            .map_err(|e| io_err("create symlink", &tmp_link, e))?;
        rename(&tmp_link, &self.dir.join(CURRENT))?;
        sync_dir(&self.dir)?;
        self.prune(version, name)?;
        Ok(final_dir)
    }

    /// The private key of the installed version, if any (node-key mode reuses it when a
    /// bundle re-delivers the same certificate).
    pub fn current_key(&self) -> Option<crate::config::Secret> {
        let (_, _, dir) = self.current()?;
        let pem = fs::read_to_string(dir.join(TargetFile::Key.file_name())).ok()?;
        Some(crate::config::Secret::new(pem))
    }

    /// Keeps `current` and the newest older versions, [`KEEP_VERSIONS`] in all. Versions
    /// numbered above the current one are from before a re-enrollment and are removed.
    fn prune(&self, version: i64, current: &str) -> Result<(), InstallError> {
        let versions = self.dir.join(VERSIONS);
        let mut older = Vec::new();
        for entry in fs::read_dir(&versions).map_err(|e| io_err("list", &versions, e))? {
            let entry = entry.map_err(|e| io_err("list", &versions, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            match parse_version_dir(&name) {
                Some(_) if name == current => {}
                Some(v) if v > version => remove_any(&entry.path())?,
                Some(v) => older.push((v, name)),
                None => {}
            }
        }
        older.sort_unstable_by(|a, b| b.cmp(a));
        for (_, name) in older.into_iter().skip(KEEP_VERSIONS - 1) {
            remove_any(&versions.join(name))?;
        }
        Ok(())
    }
}

fn write_version_dir(dir: &Path, files: &BundleFiles) -> Result<(), InstallError> {
    remove_any(dir)?;
    fs::DirBuilder::new()
        .mode(0o755)
        .create(dir)
        .map_err(|e| io_err("create", dir, e))?;
    let bundle_pem = files.bundle_pem();
    let parts: [(TargetFile, &[u8]); 6] = [
        (TargetFile::Cert, files.cert.as_bytes()),
        (TargetFile::Key, files.key.expose().as_bytes()),
        (TargetFile::Chain, files.chain.as_bytes()),
        (TargetFile::Ca, files.ca.as_bytes()),
        (TargetFile::Bundle, bundle_pem.expose().as_bytes()),
        (TargetFile::Metadata, files.metadata_json.as_bytes()),
    ];
    for (file, bytes) in parts {
        write_new(
            &dir.join(file.file_name()),
            bytes,
            file.default_mode(),
            None,
        )?;
    }
    let meta = dir.join(METADATA_DIR);
    fs::DirBuilder::new()
        .mode(0o755)
        .create(&meta)
        .map_err(|e| io_err("create", &meta, e))?;
    for (key, bytes) in &files.metadata {
        // Keys were checked by `bundle::check_metadata_key`: a plain file name.
        write_new(&meta.join(key), bytes, 0o644, None)?;
    }
    sync_dir(&meta)?;
    sync_dir(dir)
}

/// Keeps `link` a symlink to `<install_dir>/current/metadata`, so the per-key files
/// seen through it switch atomically with `current`. Replaces a symlink pointing
/// elsewhere (temp link + rename); refuses to replace anything that is not a symlink.
pub fn link_metadata_dir(install_dir: &Path, link: &Path) -> Result<(), InstallError> {
    let target = install_dir.join(CURRENT).join(METADATA_DIR);
    match fs::symlink_metadata(link) {
        Ok(m) if m.file_type().is_symlink() => {
            if fs::read_link(link).is_ok_and(|t| t == target) {
                return Ok(());
            }
        }
        Ok(_) => {
            return Err(io_err(
                "replace (it is not a symlink)",
                link,
                std::io::Error::from(std::io::ErrorKind::AlreadyExists),
            ));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err("inspect", link, e)),
    }
    let (parent, tmp) = target_tmp(link);
    let _ = fs::remove_file(&tmp);
    std::os::unix::fs::symlink(&target, &tmp).map_err(|e| io_err("symlink", &tmp, e))?;
    rename(&tmp, link)?;
    sync_dir(&parent)
}

/// Writes every target from the version directory `from`: each through a temp file in
/// the target's own directory, renamed over the target.
pub fn write_targets(from: &Path, targets: &[Target]) -> Result<(), InstallError> {
    for target in targets {
        let source = from.join(target.file.file_name());
        let bytes = fs::read(&source).map_err(|e| io_err("read", &source, e))?;
        write_target(target, &bytes)?;
    }
    Ok(())
}

fn write_target(target: &Target, bytes: &[u8]) -> Result<(), InstallError> {
    let (parent, tmp) = target_tmp(&target.path);
    write_new(&tmp, bytes, target.mode, target.owner)?;
    rename(&tmp, &target.path)?;
    sync_dir(&parent)
}

/// Removes temp files an interrupted target write left next to each target.
pub fn clean_target_temps(targets: &[Target]) -> Result<(), InstallError> {
    for target in targets {
        let (parent, tmp) = target_tmp(&target.path);
        let Some(prefix) = tmp.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let Some(prefix) = prefix.rsplit_once(TARGET_TMP_MARK).map(|(p, _)| p) else {
            continue;
        };
        let Ok(entries) = fs::read_dir(&parent) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(&format!("{prefix}{TARGET_TMP_MARK}")) {
                remove_any(&entry.path())?;
            }
        }
    }
    Ok(())
}

/// `(parent, parent/.<name>.ferry-tmp-<pid>)` of a target path.
fn target_tmp(path: &Path) -> (PathBuf, PathBuf) {
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_owned();
    let name = path
        .file_name()
        .map_or_else(|| "target".into(), |n| n.to_string_lossy());
    let tmp = parent.join(format!(".{name}{TARGET_TMP_MARK}{}", std::process::id()));
    (parent, tmp)
}

/// Creates `path` (replacing a leftover) with exactly `mode`, whatever the umask, owned by
/// `owner`, and fsyncs it. The mode is set before any byte is written.
fn write_new(
    path: &Path,
    bytes: &[u8],
    mode: u32,
    owner: Option<crate::config::Owner>,
) -> Result<(), InstallError> {
    remove_any(path)?;
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode & 0o700)
        .open(path)
        .map_err(|e| io_err("create", path, e))?;
    if let Some(o) = owner {
        std::os::unix::fs::fchown(&file, Some(o.uid), Some(o.gid))
            .map_err(|e| io_err("chown", path, e))?;
    }
    file.set_permissions(Permissions::from_mode(mode))
        .map_err(|e| io_err("chmod", path, e))?;
    file.write_all(bytes)
        .map_err(|e| io_err("write", path, e))?;
    file.sync_all().map_err(|e| io_err("fsync", path, e))
}

fn rename(from: &Path, to: &Path) -> Result<(), InstallError> {
    fs::rename(from, to).map_err(|e| io_err("rename", from, e))
}

fn sync_dir(dir: &Path) -> Result<(), InstallError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_err("fsync", dir, e))
}

/// Removes a file, symlink or directory tree; absent is fine.
fn remove_any(path: &Path) -> Result<(), InstallError> {
    let result = match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) => Err(e),
    };
    match result {
        Err(e) if e.kind() != ErrorKind::NotFound => Err(io_err("remove", path, e)),
        _ => Ok(()),
    }
}

fn io_err(op: &'static str, path: &Path, source: std::io::Error) -> InstallError {
    InstallError::Io {
        op,
        path: path.to_owned(),
        source,
    }
}

#[cfg(test)]
mod tests;
