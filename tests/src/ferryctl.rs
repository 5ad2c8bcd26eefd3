//! The real `ferryctl` binary run against a test control plane, with no setting leaking
//! in from the environment, keeping everything it printed so a test can check that a
//! secret never appeared in any output; plus readers of what a run printed.

use crate::control_plane::ControlPlane;
use serde_json::Value;
use std::path::Path;
use std::process::Output;
use std::sync::Mutex;

pub struct Ferryctl<'a> {
    cp: &'a ControlPlane,
    printed: Mutex<String>,
}

impl<'a> Ferryctl<'a> {
    pub fn new(cp: &'a ControlPlane) -> Self {
        Self {
            cp,
            printed: Mutex::default(),
        }
    }

    /// With the admin token.
    pub async fn run(&self, args: &[&str]) -> Output {
        self.run_as(&self.cp.cfg.admin_token_path(), args).await
    }

    /// With the token in `token_file`.
    pub async fn run_as(&self, token_file: &Path, args: &[&str]) -> Output {
        let mut cmd = tokio::process::Command::new(crate::bin_path("ferryctl"));
        cmd.args(["--server", &self.cp.url])
            .args(["--ca-fingerprint", &self.cp.ca_fingerprint])
            .arg("--token-file")
            .arg(token_file)
            .args(args);
        for var in [
            "FERRY_TOKEN",
            "FERRY_TOKEN_FILE",
            "FERRY_SERVER",
            "FERRY_CA_CERT",
        ] {
            cmd.env_remove(var);
        }
        let out = cmd.output().await.expect("ferryctl runs");
        let mut printed = self.printed.lock().expect("lock");
        printed.push_str(&String::from_utf8_lossy(&out.stdout));
        printed.push_str(&String::from_utf8_lossy(&out.stderr));
        out
    }

    /// With the admin token, `line` split at whitespace.
    pub async fn words(&self, line: &str) -> Output {
        self.run(&line.split_whitespace().collect::<Vec<_>>()).await
    }

    /// Everything every run printed, stdout and stderr.
    pub fn printed(&self) -> String {
        self.printed.lock().expect("lock").clone()
    }
}

/// The stdout of a successful run; panics with its stderr otherwise.
pub fn stdout(out: &Output) -> String {
    assert!(
        out.status.success(),
        "failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).expect("UTF-8 output")
}

/// The JSON a successful `--json` run printed.
pub fn json_of(out: &Output) -> Value {
    serde_json::from_str(&stdout(out)).expect("ferryctl --json prints JSON")
}

/// Exit `code` with exactly one `error:` line on stderr and nothing on stdout; returns
/// that line.
pub fn one_error_line(out: &Output, code: i32) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_owned();
    assert_eq!(out.status.code(), Some(code), "stderr: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("error: "), "{stderr}");
    assert!(out.stdout.is_empty(), "stdout on failure");
    stderr
}
