//! `[[target]]` tables: extra copies of one installed file at a path another program
//! expects (`/etc/nginx/tls/key.pem`), with its own mode and owner.
//!
//! Owners are numeric `uid:gid` only: resolving names would mean reading
//! `/etc/passwd` (or NSS) at every install, and a name that stops resolving must not
//! change where a private key lands. Secret files (`key`, `bundle`) may not be given a
//! world-accessible mode.

use super::ConfigError;
use serde::Deserialize;
use std::collections::BTreeSet;
use std::path::PathBuf;

/// One of the files of an installed version directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TargetFile {
    /// `cert.pem`: the node certificate.
    Cert,
    /// `key.pem`: its private key.
    Key,
    /// `chain.pem`: intermediates (may be empty).
    Chain,
    /// `ca.pem`: the trust bundle.
    Ca,
    /// `bundle.pem`: key, certificate and chain concatenated.
    Bundle,
    /// `metadata.json`: the custom metadata.
    Metadata,
}

impl TargetFile {
    /// The file's name inside a version directory.
    pub fn file_name(self) -> &'static str {
        match self {
            Self::Cert => "cert.pem",
            Self::Key => "key.pem",
            Self::Chain => "chain.pem",
            Self::Ca => "ca.pem",
            Self::Bundle => "bundle.pem",
            Self::Metadata => "metadata.json",
        }
    }

    /// Holds private key material.
    pub fn is_secret(self) -> bool {
        matches!(self, Self::Key | Self::Bundle)
    }

    /// Mode used when a target does not set one, and inside version directories.
    pub fn default_mode(self) -> u32 {
        if self.is_secret() { 0o600 } else { 0o644 }
    }
}

/// Numeric owner of a target file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner {
    pub uid: u32,
    pub gid: u32,
}

/// A validated `[[target]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub file: TargetFile,
    /// Absolute path of the copy.
    pub path: PathBuf,
    /// Permission bits (at most 0o777), applied regardless of the umask.
    pub mode: u32,
    /// `None`: the agent's own user and group.
    pub owner: Option<Owner>,
}

/// A `[[target]]` table as written in the config file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTarget {
    /// Which installed file: cert, key, chain, ca, bundle or metadata.
    pub file: TargetFile,
    /// Absolute path to write it to (its directory must exist).
    pub path: PathBuf,
    /// Octal permission bits, e.g. "0640" (default 0600 for key and bundle, else 0644).
    #[serde(default)]
    pub mode: Option<String>,
    /// Numeric "uid:gid" (names are not resolved); default: the agent's own.
    #[serde(default)]
    pub owner: Option<String>,
}

/// Validates every target; paths must be distinct.
pub fn validate_targets(raw: Vec<RawTarget>) -> Result<Vec<Target>, ConfigError> {
    let mut seen = BTreeSet::new();
    let mut targets = Vec::with_capacity(raw.len());
    for t in raw {
        let target = validate_target(t)?;
        if !seen.insert(target.path.clone()) {
            return Err(invalid(format!(
                "{} is the path of two targets",
                target.path.display()
            )));
        }
        targets.push(target);
    }
    Ok(targets)
}

fn validate_target(raw: RawTarget) -> Result<Target, ConfigError> {
    let shown = raw.path.display().to_string();
    if !raw.path.is_absolute() || raw.path.file_name().is_none() {
        return Err(invalid(format!(
            "path {shown:?} must be an absolute file path"
        )));
    }
    let mode = match raw.mode.as_deref() {
        None => raw.file.default_mode(),
        Some(text) => u32::from_str_radix(text, 8)
            .ok()
            .filter(|m| *m <= 0o777 && !text.is_empty())
            .ok_or_else(|| {
                invalid(format!(
                    "mode {text:?} of {shown} is not octal like \"0640\""
                ))
            })?,
    };
    if raw.file.is_secret() && mode & 0o007 != 0 {
        return Err(invalid(format!(
            "mode {mode:04o} of {shown} lets every user read or write a private key"
        )));
    }
    let owner = raw
        .owner
        .as_deref()
        .map(|text| {
            parse_owner(text).ok_or_else(|| {
                invalid(format!(
                    "owner {text:?} of {shown} is not numeric \"uid:gid\" (names are not resolved)"
                ))
            })
        })
        .transpose()?;
    Ok(Target {
        file: raw.file,
        path: raw.path,
        mode,
        owner,
    })
}

fn parse_owner(text: &str) -> Option<Owner> {
    let (uid, gid) = text.split_once(':')?;
    let num = |s: &str| {
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    Some(Owner {
        uid: num(uid)?,
        gid: num(gid)?,
    })
}

fn invalid(reason: String) -> ConfigError {
    ConfigError::Invalid {
        key: "target",
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(file: TargetFile, path: &str, mode: Option<&str>, owner: Option<&str>) -> RawTarget {
        RawTarget {
            file,
            path: path.into(),
            mode: mode.map(str::to_owned),
            owner: owner.map(str::to_owned),
        }
    }

    #[test]
    fn targets_get_default_modes_and_numeric_owners() {
        let targets = validate_targets(vec![
            raw(TargetFile::Key, "/etc/app/key.pem", None, Some("0:33")),
            raw(TargetFile::Cert, "/etc/app/cert.pem", Some("0640"), None),
        ])
        .expect("valid");
        assert_eq!(targets[0].mode, 0o600);
        assert_eq!(targets[0].owner, Some(Owner { uid: 0, gid: 33 }));
        assert_eq!(targets[1].mode, 0o640);
        assert_eq!(targets[1].owner, None);
    }

    #[test]
    fn bad_targets_are_refused_with_the_reason() {
        let cases = [
            (
                raw(TargetFile::Cert, "rel/cert.pem", None, None),
                "absolute",
            ),
            (
                raw(TargetFile::Cert, "/a/c.pem", Some("0999"), None),
                "octal",
            ),
            (
                raw(TargetFile::Cert, "/a/c.pem", Some("1777"), None),
                "octal",
            ),
            (
                raw(TargetFile::Key, "/a/k.pem", Some("0644"), None),
                "every user",
            ),
            (
                raw(
                    TargetFile::Cert,
                    "/a/c.pem",
                    None,
                    Some("www-data:www-data"),
                ),
                "numeric",
            ),
            (
                raw(TargetFile::Cert, "/a/c.pem", None, Some("33")),
                "numeric",
            ),
        ];
        for (target, want) in cases {
            let err = validate_targets(vec![target.clone()]).expect_err("refused");
            assert!(err.to_string().contains(want), "{target:?}: {err}");
        }
        let dup = validate_targets(vec![
            raw(TargetFile::Cert, "/a/c.pem", None, None),
            raw(TargetFile::Chain, "/a/c.pem", None, None),
        ]);
        assert!(dup.is_err_and(|e| e.to_string().contains("two targets")));
    }
}
