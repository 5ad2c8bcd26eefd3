//! `ferry-agent status` against real agent processes: it exits 0 only while the node is
//! really fine, and otherwise exits 1 with one line saying why: the agent is not
//! running, the control plane has not been reached within the bound its poll wait
//! gives, the node was revoked (the agent then stops polling and says so once at
//! ERROR, until `ferry-agent enroll` brings it back), or the last reload hook failed
//! (reported with its output, and retried until it succeeds).
//! `status --live` answers only whether the process runs.

use ferry_tests::agent::{agent_command, read_installed};
use ferry_tests::{Backend, ControlPlane, bin_path, eventually, spawn_control_plane};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::process::Child;

/// What one `ferry-agent status` run said.
struct Said {
    code: i32,
    stdout: String,
    stderr: String,
}

async fn status(dir: &Path, extra: &[&str]) -> Said {
    let out = tokio::process::Command::new(bin_path("ferry-agent"))
        .arg("status")
        .arg("--state-dir")
        .arg(dir.join("state"))
        .args(extra)
        .output()
        .await
        .expect("ferry-agent status runs");
    Said {
        code: out.status.code().expect("exit code"),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A real `ferry-agent run` for `node` polling every 2 s, its log in `dir/agent.log`.
fn agent(cp: &ControlPlane, node: &str, token: &str, dir: &Path, extra: &[&str]) -> Child {
    let log = std::fs::File::create(dir.join("agent.log")).expect("log file");
    agent_command(cp, "web", node, token, dir)
        .args(["--poll-wait-seconds", "2"])
        .args(extra)
        .stdout(Stdio::from(log.try_clone().expect("log")))
        .stderr(Stdio::from(log))
        .spawn()
        .expect("agent starts")
}

fn log_lines(dir: &Path, needle: &str) -> Vec<String> {
    std::fs::read_to_string(dir.join("agent.log"))
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(needle))
        .map(str::to_owned)
        .collect()
}

async fn healthy(dir: &Path) -> Said {
    eventually("status exits 0", Duration::from_secs(30), || async {
        let said = status(dir, &[]).await;
        (said.code == 0).then_some(said)
    })
    .await
}

async fn unhealthy_because(dir: &Path, why: &str, within: Duration) -> Said {
    eventually(&format!("status exits 1: {why}"), within, || async {
        let said = status(dir, &[]).await;
        (said.code == 1 && said.stderr.contains(why)).then_some(said)
    })
    .await
}

async fn setup() -> (ControlPlane, String, tempfile::TempDir) {
    let cp = spawn_control_plane(Backend::Postgres, |cfg| {
        cfg.max_poll_wait = Duration::from_secs(5);
    })
    .await;
    cp.create_service("web", json!({})).await;
    let (token, _) = cp.join_token("web", 5, 600).await;
    (cp, token, tempfile::tempdir().expect("tempdir"))
}

#[tokio::test]
async fn status_fails_when_the_agent_stops_and_when_the_control_plane_is_gone() {
    let (mut cp, token, dir) = setup().await;
    let mut run = agent(&cp, "n1", &token, dir.path(), &[]);
    let said = healthy(dir.path()).await;
    assert!(said.stdout.contains("health:        ok"), "{}", said.stdout);
    assert!(read_installed(&dir.path().join("install"), true).is_some());
    assert_eq!(status(dir.path(), &["--live"]).await.code, 0);

    // The control plane goes away: 3 x 2 s + 30 s later the node says so, and it is
    // still live (restarting the agent would not help).
    cp.stop().await;
    let said = unhealthy_because(
        dir.path(),
        "the control plane was last reached at",
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(said.stderr.lines().count(), 1, "one line: {}", said.stderr);
    assert_eq!(status(dir.path(), &["--live"]).await.code, 0);

    // The agent process dies: not running, and not live either.
    run.start_kill().expect("SIGKILL");
    let _ = run.wait().await;
    let said = status(dir.path(), &[]).await;
    assert_eq!(said.code, 1);
    assert!(
        said.stderr
            .starts_with("ferry-agent status: the agent is not running"),
        "{}",
        said.stderr
    );
    let live = status(dir.path(), &["--live"]).await;
    assert_eq!((live.code, live.stdout.trim()), (1, "agent not running"));
    let json = status(dir.path(), &["--json"]).await;
    let v: serde_json::Value = serde_json::from_str(&json.stdout).expect("json");
    assert_eq!(
        (v["healthy"].clone(), v["running"].clone()),
        (json!(false), json!(false))
    );
}

#[tokio::test]
async fn a_revoked_node_stops_polling_says_so_once_and_comes_back_when_enrolled_again() {
    let (cp, token, dir) = setup().await;
    let mut run = agent(&cp, "n1", &token, dir.path(), &[]);
    healthy(dir.path()).await;

    // Act: the operator revokes the node.
    let r = cp.admin().delete("/v1/services/web/nodes/n1").await;
    assert_eq!(r.status, 204, "{}", r.body);

    // Assert: status says revoked; the agent logged it once at ERROR and polls no more.
    let said = unhealthy_because(
        dir.path(),
        "the control plane revoked this node",
        Duration::from_secs(20),
    )
    .await;
    assert!(said.stdout.contains("revoked:"), "{}", said.stdout);
    let polls_then = cp.metric("ferry_polls_not_modified_total").await;
    tokio::time::sleep(Duration::from_secs(6)).await;
    let revoked = log_lines(dir.path(), "revoked this node");
    assert_eq!(revoked.len(), 1, "{revoked:?}");
    assert!(revoked[0].contains("ERROR"), "{revoked:?}");
    assert!(
        log_lines(dir.path(), "bundle poll failed").is_empty(),
        "no poll after the revocation"
    );
    // A polling agent would have finished three 2 s polls by now.
    let polls_now = cp.metric("ferry_polls_not_modified_total").await;
    assert_eq!(polls_now, polls_then, "idle polls after the revocation");
    assert_eq!(cp.metric("ferry_long_polls_held").await, 0.0);
    assert!(
        run.try_wait().expect("wait").is_none(),
        "the agent keeps running"
    );

    // `ferry-agent enroll` with a join token brings it back without a restart.
    let enrolled = agent_enroll(&cp, "n1", &token, dir.path()).await;
    assert!(
        enrolled.status.success(),
        "{}",
        String::from_utf8_lossy(&enrolled.stderr)
    );
    let said = healthy(dir.path()).await;
    assert!(!said.stdout.contains("revoked:"), "{}", said.stdout);
    run.start_kill().expect("kill");
    let _ = run.wait().await;
}

#[tokio::test]
async fn a_failed_reload_hook_is_reported_with_its_output_and_retried_until_it_works() {
    let (cp, token, dir) = setup().await;
    let fixed = dir.path().join("fixed");
    let hook = format!(
        "echo checking config; test -e {} || {{ echo 'nginx: [emerg] cannot load certificate' >&2; exit 3; }}",
        fixed.display()
    );
    let mut run = agent(&cp, "n1", &token, dir.path(), &["--reload-command", &hook]);

    // The files are installed, the hook fails: the node says so, with the hook's words.
    let said = unhealthy_because(
        dir.path(),
        "version 1 is installed but its reload command failed",
        Duration::from_secs(30),
    )
    .await;
    assert!(
        said.stderr.contains("status 3") && said.stderr.contains("[emerg] cannot load certificate"),
        "{}",
        said.stderr
    );
    assert!(read_installed(&dir.path().join("install"), true).is_some());
    let node = cp.admin().get("/v1/services/web/nodes/n1").await.body;
    assert_eq!(node["hook_exit_code"], 3, "{node}");
    assert!(
        node["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("checking config") && e.contains("[emerg]")),
        "the control plane has the output too: {node}"
    );

    // The operator fixes the cause: the next retry succeeds and is acknowledged.
    std::fs::write(&fixed, "").expect("fix");
    healthy(dir.path()).await;
    let node = eventually("acked after the retry", Duration::from_secs(20), || async {
        let n = cp.admin().get("/v1/services/web/nodes/n1").await.body;
        (n["acked_version"] == n["desired_version"] && n["last_error"].is_null()).then_some(n)
    })
    .await;
    assert_eq!(node["hook_exit_code"], 0, "{node}");
    assert!(!log_lines(dir.path(), "running the failed reload command again").is_empty());
    run.start_kill().expect("kill");
    let _ = run.wait().await;
}

/// `ferry-agent enroll` for `node` into the state dir of `dir`.
async fn agent_enroll(
    cp: &ControlPlane,
    node: &str,
    token: &str,
    dir: &Path,
) -> std::process::Output {
    let state: PathBuf = dir.join("state");
    tokio::process::Command::new(bin_path("ferry-agent"))
        .args([
            "enroll",
            "--server",
            &cp.url,
            "--service",
            "web",
            "--node-id",
            node,
        ])
        .args(["--ca-fingerprint", &cp.ca_fingerprint])
        .arg("--state-dir")
        .arg(state)
        .env("FERRY_JOIN_TOKEN", token)
        .output()
        .await
        .expect("ferry-agent enroll runs")
}
