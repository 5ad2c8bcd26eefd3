//! The reload command, run with `sh -c` after each install so the node's services pick up
//! the new files.
//!
//! It runs in its own process group with stdin closed and its output passed through to
//! the agent's (so it lands in the same journal); after the timeout the whole group is
//! killed, so a hung `systemctl reload` or its children cannot block the next delivery.
//! It learns what was installed from `FERRY_VERSION`, `FERRY_INSTALL_DIR` and
//! `FERRY_CERT_NOT_AFTER`; never from key material.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::process::Command;

/// How a reload command ended, when it did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum HookError {
    #[error("could not start the reload command")]
    Spawn(#[source] std::io::Error),
    #[error("could not wait for the reload command")]
    Wait(#[source] std::io::Error),
    #[error("the reload command exited with status {0}")]
    Failed(i32),
    #[error("the reload command was killed by signal {0}")]
    Signaled(i32),
    #[error("the reload command did not finish within {}s and was killed", .0.as_secs_f32())]
    TimedOut(Duration),
}

impl HookError {
    /// The exit code to acknowledge: the command's own, or `None` when it has none.
    pub fn exit_code(&self) -> Option<i32> {
        match self {
            Self::Failed(code) => Some(*code),
            _ => None,
        }
    }
}

/// What the reload command is told about the install.
#[derive(Debug, Clone)]
pub struct HookContext<'a> {
    pub version: i64,
    pub install_dir: &'a Path,
    pub cert_not_after: Option<OffsetDateTime>,
}

/// Runs `command` with `sh -c` and waits up to `timeout`. `Ok(0)` on success.
pub async fn run_reload(
    command: &str,
    ctx: &HookContext<'_>,
    timeout: Duration,
) -> Result<i32, HookError> {
    let not_after = ctx
        .cert_not_after
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default();
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(command)
        .env("FERRY_VERSION", ctx.version.to_string())
        .env("FERRY_INSTALL_DIR", ctx.install_dir)
        .env("FERRY_CERT_NOT_AFTER", not_after)
        .stdin(Stdio::null())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(HookError::Spawn)?;
    let status = match tokio::time::timeout(timeout, child.wait()).await {
        Ok(waited) => waited.map_err(HookError::Wait)?,
        Err(_) => {
            if let Some(pid) = child.id() {
                kill_group(pid).await;
            }
            // Reap the shell itself (the group kill usually got it already).
            let _ = child.kill().await;
            return Err(HookError::TimedOut(timeout));
        }
    };
    match (
        status.code(),
        std::os::unix::process::ExitStatusExt::signal(&status),
    ) {
        (Some(0), _) => Ok(0),
        (Some(code), _) => Err(HookError::Failed(code)),
        (None, Some(signal)) => Err(HookError::Signaled(signal)),
        (None, None) => Err(HookError::Failed(-1)),
    }
}

/// SIGKILL to the process group led by `pid` (the shell, started with its own group), so
/// children the command started die with it. Uses kill(1): the crate forbids `unsafe`.
async fn kill_group(pid: u32) {
    let result = Command::new("kill")
        .args(["-s", "KILL", "--", &format!("-{pid}")])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await;
    if let Err(err) = result {
        tracing::warn!(error = %err, pid, "could not kill the reload command's process group");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    fn ctx(dir: &Path) -> HookContext<'_> {
        HookContext {
            version: 7,
            install_dir: dir,
            cert_not_after: Some(time::macros::datetime!(2030-01-02 03:04:05 UTC)),
        }
    }

    #[tokio::test]
    async fn the_command_sees_the_install_in_its_environment() {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("env");
        let cmd = format!(
            "echo \"$FERRY_VERSION $FERRY_INSTALL_DIR $FERRY_CERT_NOT_AFTER\" > {}",
            out.display()
        );
        let code = run_reload(&cmd, &ctx(dir.path()), Duration::from_secs(10))
            .await
            .expect("succeeds");
        assert_eq!(code, 0);
        let seen = std::fs::read_to_string(&out).expect("written");
        assert_eq!(
            seen.trim(),
            format!("7 {} 2030-01-02T03:04:05Z", dir.path().display())
        );
    }

    #[tokio::test]
    async fn a_non_zero_exit_is_an_error_with_its_code() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = run_reload("exit 3", &ctx(dir.path()), Duration::from_secs(10))
            .await
            .expect_err("fails");
        assert_eq!(err.exit_code(), Some(3));
        assert_eq!(err.to_string(), "the reload command exited with status 3");
    }

    #[tokio::test]
    async fn a_hung_command_and_its_children_are_killed_at_the_timeout() {
        let dir = tempfile::tempdir().expect("tempdir");
        let marker = dir.path().join("survived");
        // The child outlives the shell unless the whole group is killed.
        let cmd = format!("(sleep 2; touch {}) & sleep 30", marker.display());
        let started = Instant::now();
        let err = run_reload(&cmd, &ctx(dir.path()), Duration::from_millis(300))
            .await
            .expect_err("times out");
        assert!(matches!(err, HookError::TimedOut(_)), "{err}");
        assert_eq!(err.exit_code(), None);
        assert!(started.elapsed() < Duration::from_secs(5));
        tokio::time::sleep(Duration::from_millis(2500)).await;
        assert!(!marker.exists(), "the background child was killed too");
    }
}
