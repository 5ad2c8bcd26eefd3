//! A service's alert webhook: `webhook set` and `webhook clear`.
//!
//! The server makes the signing secret and shows it once. It goes to `--secret-file`
//! only, never to stdout, stderr or the `--json` document. The file is staged before
//! the request (a temporary file, mode 0600, beside it), so a place that cannot be
//! written fails before the server replaces the old secret; once the answer is in, the
//! secret is written, synced and renamed over the file.

use crate::args::WebhookCmd;
use crate::client::Api;
use crate::commands::{Output, bad_body, done, pretty};
use crate::error::CliError;
use crate::output::fields;
use serde::Deserialize;
use serde_json::json;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// `PUT` sets the webhook and answers with a new secret; `DELETE` removes it. Not in
/// `ferry_shared::api::routes` yet.
fn route(service: &str) -> String {
    format!("/v1/services/{service}/webhook")
}

/// The answer to `PUT`. No `Debug`: the secret must not be printable by accident.
#[derive(Deserialize)]
struct WebhookCreated {
    url: String,
    secret: String,
}

pub async fn run(api: &Api, cmd: &WebhookCmd, json: bool) -> Result<Output, CliError> {
    match cmd {
        WebhookCmd::Set {
            service,
            url,
            secret_file,
        } => {
            let staged = Staged::beside(secret_file)?;
            let body = api
                .put(&route(service.as_str()), json!({ "url": url }))
                .await?;
            let created: WebhookCreated = serde_json::from_value(body).map_err(bad_body)?;
            staged.commit(&created.secret).map_err(|e| {
                CliError::Unsuccessful(format!(
                    "the webhook of service {service} is set, but its signing secret could \
                     not be saved to {}: {e}; run `ferryctl webhook set` again for a new one",
                    secret_file.display()
                ))
            })?;
            let path = secret_file.display().to_string();
            Ok(Output::text(if json {
                pretty(&json!({ "service": service, "url": created.url, "secret_file": path }))
            } else {
                let mut out = fields(&[
                    ("service", service.to_string()),
                    ("url", created.url),
                    ("secret file", path),
                ]);
                out.push_str(
                    "\nThe signing secret is shown only once, in the secret file (mode 0600).\n",
                );
                out
            }))
        }
        WebhookCmd::Clear { service } => {
            api.delete(&route(service.as_str())).await?;
            Ok(done(
                json,
                format!("cleared the webhook of service {service}\n"),
            ))
        }
    }
}

/// A temporary file beside the secret file, removed again unless committed.
struct Staged {
    file: File,
    tmp: PathBuf,
    target: PathBuf,
    dir: PathBuf,
    committed: bool,
}

impl Staged {
    /// Creates the temporary file (mode 0600) next to `target`; refusals are usage
    /// errors, since nothing was sent yet.
    fn beside(target: &Path) -> Result<Self, CliError> {
        let refuse = |why: String| {
            CliError::Usage(format!(
                "cannot write the secret file {}: {why}",
                target.display()
            ))
        };
        let name = target
            .file_name()
            .ok_or_else(|| refuse("the path names no file".to_owned()))?;
        if target.is_dir() {
            return Err(refuse("it is a directory".to_owned()));
        }
        let dir = match target.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or_default();
        let tmp = dir.join(format!(
            ".{}.{}-{nanos}.tmp",
            name.to_string_lossy(),
            std::process::id()
        ));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| refuse(e.to_string()))?;
        Ok(Self {
            file,
            tmp,
            target: target.to_owned(),
            dir,
            committed: false,
        })
    }

    /// Writes exactly `secret` (no newline: it is an HMAC key), syncs it, and renames
    /// it over the target.
    fn commit(mut self, secret: &str) -> std::io::Result<()> {
        self.file.write_all(secret.as_bytes())?;
        self.file.sync_all()?;
        std::fs::rename(&self.tmp, &self.target)?;
        self.committed = true;
        // The rename survives a crash once the directory is synced; the file is in
        // place either way, so a failure here is not worth reporting.
        if let Ok(dir) = File::open(&self.dir) {
            let _ = dir.sync_all();
        }
        Ok(())
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn entries(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .expect("read dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_committed_secret_replaces_the_file_owner_only_and_exact() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("web.secret");
        std::fs::write(&path, "old").expect("write");
        let staged = Staged::beside(&path).expect("stages");
        assert_eq!(std::fs::read_to_string(&path).expect("read"), "old");
        staged.commit("fyw_new").expect("commits");
        assert_eq!(std::fs::read_to_string(&path).expect("read"), "fyw_new");
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(entries(dir.path()), ["web.secret"]);
    }

    #[test]
    fn an_abandoned_stage_leaves_the_old_file_and_no_temporary() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("web.secret");
        std::fs::write(&path, "old").expect("write");
        drop(Staged::beside(&path).expect("stages"));
        assert_eq!(std::fs::read_to_string(&path).expect("read"), "old");
        assert_eq!(entries(dir.path()), ["web.secret"]);
    }

    #[test]
    fn unwritable_places_are_usage_errors_before_any_request() {
        let dir = tempfile::tempdir().expect("tempdir");
        for bad in [
            dir.path().to_path_buf(),
            dir.path().join("missing/web.secret"),
            PathBuf::from("/"),
        ] {
            let err = Staged::beside(&bad).err().expect("refused");
            assert_eq!(err.exit_code(), 2, "{}", bad.display());
            assert!(
                err.line()
                    .starts_with("error: cannot write the secret file")
            );
        }
    }
}
