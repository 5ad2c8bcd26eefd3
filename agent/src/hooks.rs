//! The reload command, run with `sh -c` after each install so the node's services pick up
//! the new files.
//!
//! It runs in its own process group with stdin closed. Its stdout and stderr are
//! captured, the last [`OUTPUT_LIMIT`] bytes of them kept: the caller logs them and
//! sends them with the ack of a failed run. After the timeout the whole group is
//! killed, so a hung `systemctl reload` or its children cannot block the next delivery;
//! the group is killed too when the run is abandoned (the agent shutting down). It
//! learns what was installed from `FERRY_VERSION`, `FERRY_INSTALL_DIR` and
//! `FERRY_CERT_NOT_AFTER`; never from key material.

use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Command;

/// Bytes of the command's output (stdout and stderr, interleaved as they come) kept: the
/// last ones, where a failure usually explains itself.
pub const OUTPUT_LIMIT: usize = 4096;
/// How long output is still read after the command ended (a background child it
/// started may hold the pipes open for ever).
const OUTPUT_GRACE: Duration = Duration::from_millis(200);

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

/// How one run of the reload command went.
#[derive(Debug)]
pub struct HookRun {
    /// `Ok(0)` on success.
    pub result: Result<i32, HookError>,
    /// The tail of what it printed (lossy UTF-8, trimmed), with a note of what was cut.
    pub output: String,
}

/// The last [`OUTPUT_LIMIT`] bytes written to it, and how many came before them.
#[derive(Debug, Default)]
struct Tail {
    bytes: Vec<u8>,
    cut: usize,
}

impl Tail {
    fn push(&mut self, chunk: &[u8]) {
        self.bytes.extend_from_slice(chunk);
        if self.bytes.len() > OUTPUT_LIMIT {
            let extra = self.bytes.len() - OUTPUT_LIMIT;
            self.bytes.drain(..extra);
            self.cut += extra;
        }
    }

    fn text(&self) -> String {
        let text = String::from_utf8_lossy(&self.bytes);
        let text = text.trim();
        match self.cut {
            0 => text.to_owned(),
            n => format!("[{n} earlier bytes cut] {text}"),
        }
    }
}

async fn drain(mut from: impl AsyncRead + Unpin, into: Arc<Mutex<Tail>>) {
    let mut buf = [0u8; 1024];
    while let Ok(n) = from.read(&mut buf).await {
        if n == 0 {
            break;
        }
        into.lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(&buf[..n]);
    }
}

/// Kills the process group of a command that is still running when this is dropped: an
/// abandoned run (the agent shutting down) leaves nothing behind.
struct GroupGuard(Option<u32>);

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if let Some(pid) = self.0 {
            let _ = std::process::Command::new("kill")
                .args(["-s", "KILL", "--", &format!("-{pid}")])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// Runs `command` with `sh -c`, waits up to `timeout` and keeps the tail of its output.
pub async fn run_reload(command: &str, ctx: &HookContext<'_>, timeout: Duration) -> HookRun {
    let tail = Arc::new(Mutex::new(Tail::default()));
    let result = run_captured(command, ctx, timeout, &tail).await;
    let output = tail.lock().unwrap_or_else(|e| e.into_inner()).text();
    HookRun { result, output }
}

async fn run_captured(
    command: &str,
    ctx: &HookContext<'_>,
    timeout: Duration,
    tail: &Arc<Mutex<Tail>>,
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
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(HookError::Spawn)?;
    let mut guard = GroupGuard(child.id());
    let readers = [
        child
            .stdout
            .take()
            .map(|o| tokio::spawn(drain(o, tail.clone()))),
        child
            .stderr
            .take()
            .map(|e| tokio::spawn(drain(e, tail.clone()))),
    ];
    let waited = tokio::time::timeout(timeout, child.wait()).await;
    if waited.is_err() {
        if let Some(pid) = guard.0.take() {
            kill_group(pid).await;
        }
        // Reap the shell itself (the group kill usually got it already).
        let _ = child.kill().await;
    }
    guard.0 = None;
    for reader in readers.into_iter().flatten() {
        let abort = reader.abort_handle();
        if tokio::time::timeout(OUTPUT_GRACE, reader).await.is_err() {
            abort.abort();
        }
    }
    let status = match waited {
        Ok(waited) => waited.map_err(HookError::Wait)?,
        Err(_) => return Err(HookError::TimedOut(timeout)),
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
            .result
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
        let run = run_reload(
            "echo starting; echo 'nginx: [emerg] bad cert' >&2; exit 3",
            &ctx(dir.path()),
            Duration::from_secs(10),
        )
        .await;
        let err = run.result.expect_err("fails");
        assert_eq!(err.exit_code(), Some(3));
        assert_eq!(err.to_string(), "the reload command exited with status 3");
        assert_eq!(run.output, "starting\nnginx: [emerg] bad cert");
    }

    #[tokio::test]
    async fn only_the_tail_of_a_long_output_is_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        // 10,000 bytes of 'a', then the line that matters.
        let cmd = "head -c 10000 /dev/zero | tr '\\0' a; echo; echo the end";
        let run = run_reload(cmd, &ctx(dir.path()), Duration::from_secs(10)).await;
        assert_eq!(run.result.expect("succeeds"), 0);
        assert!(run.output.ends_with("the end"), "{}", run.output);
        assert!(
            run.output.starts_with("[5913 earlier bytes cut] aaa"),
            "{}",
            &run.output[..40]
        );
    }

    #[tokio::test]
    async fn a_background_child_holding_the_output_does_not_hold_the_run() {
        let dir = tempfile::tempdir().expect("tempdir");
        let started = Instant::now();
        let run = run_reload(
            "echo reloaded; sleep 30 &",
            &ctx(dir.path()),
            Duration::from_secs(10),
        )
        .await;
        assert_eq!(run.result.expect("succeeds"), 0);
        assert_eq!(run.output, "reloaded");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
    }

    #[tokio::test]
    async fn an_abandoned_run_takes_its_process_group_with_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let marker = dir.path().join("survived");
        let cmd = format!("(sleep 1; touch {}) & sleep 30", marker.display());
        let context = ctx(dir.path());
        let run = run_reload(&cmd, &context, Duration::from_secs(60));
        // The agent shuts down while the command runs: the future is dropped.
        assert!(
            tokio::time::timeout(Duration::from_millis(300), run)
                .await
                .is_err()
        );
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert!(
            !marker.exists(),
            "the group was killed when the run was dropped"
        );
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
            .result
            .expect_err("times out");
        assert!(matches!(err, HookError::TimedOut(_)), "{err}");
        assert_eq!(err.exit_code(), None);
        assert!(started.elapsed() < Duration::from_secs(5));
        tokio::time::sleep(Duration::from_millis(2500)).await;
        assert!(!marker.exists(), "the background child was killed too");
    }
}
