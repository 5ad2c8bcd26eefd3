//! Running a fleet with the real `ferryctl` binary: `status` and `alert list` while one
//! of two enrolled agents fails its reload hook, `webhook set|clear` with the signing
//! secret in a file and in no output (checked by verifying a delivered alert's
//! signature with it), `health`, `metrics` and shell `completions`.

use ferry_tests::agent::spawn_agent;
use ferry_tests::ferryctl::{Ferryctl, json_of, one_error_line, stdout};
use ferry_tests::{Backend, bin_path, eventually, spawn_control_plane};
use serde_json::{Value, json};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The cells of the table row whose first cell is `first`.
fn row(table: &str, first: &str) -> Vec<String> {
    table
        .lines()
        .map(|l| l.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
        .find(|cells| cells.first().map(String::as_str) == Some(first))
        .unwrap_or_else(|| panic!("no row {first} in\n{table}"))
}

/// A loopback webhook receiver keeping each (signature, body).
async fn receiver() -> (String, Arc<Mutex<Vec<(String, String)>>>) {
    let got: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let sink = got.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: axum::http::HeaderMap, body: String| {
            let sink = sink.clone();
            async move {
                let sig = headers
                    .get("ferry-signature")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned();
                sink.lock().expect("lock").push((sig, body));
                axum::http::StatusCode::NO_CONTENT
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, got)
}

fn fast(cfg: &mut ferry_control_plane::config::Config) {
    cfg.presence_linger = Duration::from_secs(1);
    cfg.jobs.staleness_tick = Duration::from_millis(300);
}

#[tokio::test]
async fn ferryctl_completions_need_no_server_and_load_in_bash() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        // No server, CA or token: nothing is contacted.
        let out = tokio::process::Command::new(bin_path("ferryctl"))
            .args(["completions", shell])
            .env_remove("FERRY_TOKEN")
            .env_remove("FERRY_CA_CERT")
            .env_remove("FERRY_CA_FINGERPRINT")
            .output()
            .await
            .expect("ferryctl runs");
        let script = stdout(&out);
        for word in [
            "ferryctl",
            "status",
            "alert",
            "webhook",
            "completions",
            "rotate",
        ] {
            assert!(script.contains(word), "{shell}: no {word:?}");
        }
    }
    let loaded = tokio::process::Command::new("bash")
        .arg("-c")
        .arg(format!(
            "source <('{}' completions bash) && complete -p ferryctl",
            bin_path("ferryctl").display()
        ))
        .output()
        .await
        .expect("bash runs");
    assert!(
        stdout(&loaded).contains("ferryctl"),
        "bash did not register the completion"
    );

    let bad = tokio::process::Command::new(bin_path("ferryctl"))
        .args(["completions", "tcsh"])
        .output()
        .await
        .expect("ferryctl runs");
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("invalid value 'tcsh'"));
}

async fn ferryctl_shows_status_alerts_and_keeps_webhook_secrets(backend: Backend) {
    let cp = spawn_control_plane(backend, fast).await;
    let ctl = Ferryctl::new(&cp);
    stdout(
        &ctl.words("service create web --cert-ttl 600 --grace 1")
            .await,
    );
    stdout(&ctl.words("service create idle").await);
    let empty = json_of(&ctl.words("--json status").await);
    assert_eq!(empty["fleet"]["nodes"], 0, "{empty}");
    assert_eq!(empty["services"].as_array().map(Vec::len), Some(2));

    let (url, got) = receiver().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let secrets = set_webhook(&ctl, &url, dir.path()).await;

    // Two nodes: one installs, one fails its reload hook and goes stale after `grace`.
    let (token, _) = cp.join_token("web", 2, 600).await;
    let _good = spawn_agent(&cp, "web", "n-good", &token, |_| {}).await;
    let _bad = spawn_agent(&cp, "web", "n-bad", &token, |cfg| {
        cfg.reload_command = Some("exit 3".into())
    })
    .await;
    let doc = eventually("1 ok and 1 stale node", Duration::from_secs(30), || async {
        let d = json_of(&ctl.words("--json status").await);
        (d["fleet"]["ok"] == 1 && d["fleet"]["stale"] == 1).then_some(d)
    })
    .await;
    assert_eq!(doc["fleet"]["nodes"], 2, "{doc}");
    status_views(&ctl).await;
    alert_views(&ctl).await;

    // The receiver got the firing alert signed with the secret from the file.
    eventually("the signed alert", Duration::from_secs(30), || async {
        let got = got.lock().expect("lock").clone();
        got.iter()
            .any(|(sig, body)| {
                let expected = ferry_control_plane::jobs::webhooks::signature(
                    secrets[1].as_bytes(),
                    body.as_bytes(),
                );
                *sig == expected && body.contains("n-bad") && body.contains("lagging")
            })
            .then_some(())
    })
    .await;
    let cleared = ctl.words("webhook clear web").await;
    assert_eq!(stdout(&cleared), "cleared the webhook of service web\n");
    let audit = json_of(&ctl.words("--json audit --all").await);
    let actions: Vec<&str> = audit["items"]
        .as_array()
        .map(|a| a.iter().filter_map(|e| e["action"].as_str()).collect())
        .unwrap_or_default();
    let count = |action: &str| actions.iter().filter(|a| **a == action).count();
    let counts = (
        count("service.webhook.set"),
        count("service.webhook.delete"),
    );
    assert_eq!(counts, (2, 1), "the refused set sent nothing: {actions:?}");

    // Probes need no token; metrics need the admin one; tenants see their own services.
    let health = ctl
        .run_as(&dir.path().join("no-token-here"), &["health"])
        .await;
    assert_eq!(stdout(&health), "ready\n");
    let metrics = stdout(&ctl.words("metrics").await);
    assert!(metrics.contains("# TYPE ferry_nodes"), "{metrics}");
    stdout(&ctl.words("tenant create acme").await);
    let created = json_of(&ctl.words("--json token create --tenant acme").await);
    let acme = dir.path().join("acme-token");
    std::fs::write(&acme, created["token"].as_str().expect("token")).expect("write");
    let denied = ctl.run_as(&acme, &["metrics"]).await;
    assert!(one_error_line(&denied, 1).contains("403"));
    let hidden = ctl.run_as(&acme, &["status", "--service", "web"]).await;
    assert!(one_error_line(&hidden, 1).contains("cannot see it"));
    let theirs = json_of(&ctl.run_as(&acme, &["--json", "status"]).await);
    assert_eq!(theirs["fleet"]["nodes"], 0, "{theirs}");

    let printed = ctl.printed();
    assert!(printed.contains("web.secret"), "the outputs were recorded");
    for s in &secrets {
        assert!(
            !printed.contains(s.as_str()),
            "a webhook secret was printed"
        );
    }
}

/// `webhook set` twice (text, then --json) and once with an unwritable file; returns
/// both secrets, read from the file.
async fn set_webhook(ctl: &Ferryctl<'_>, url: &str, dir: &Path) -> [String; 2] {
    let file = dir.join("web.secret");
    let path = file.to_str().expect("UTF-8 path");
    let set = ["webhook", "set", "web", "--url", url, "--secret-file", path];
    let text = stdout(&ctl.run(&set).await);
    assert!(text.contains(url) && text.contains(path), "{text}");
    let first = std::fs::read_to_string(&file).expect("secret file");
    assert!(first.starts_with("fyw_") && first.len() > 20, "{first:?}");
    let perms = std::fs::metadata(&file).expect("meta").permissions();
    assert_eq!(perms.mode() & 0o777, 0o600);

    let shown = json_of(&ctl.run(&[&["--json"][..], &set].concat()).await);
    assert_eq!(
        (shown["url"].as_str(), shown["secret_file"].as_str()),
        (Some(url), Some(path))
    );
    assert!(shown.get("secret").is_none(), "{shown}");
    let second = std::fs::read_to_string(&file).expect("secret file");
    assert_ne!(
        second, first,
        "setting the webhook again makes a new secret"
    );

    let missing = dir.join("no/such/dir/web.secret");
    let mut refused = set.to_vec();
    refused[6] = missing.to_str().expect("UTF-8 path");
    let refused = ctl.run(&refused).await;
    assert!(one_error_line(&refused, 2).contains("cannot write the secret file"));
    [first, second]
}

/// `status` as a table, narrowed to one service, and for a service it does not know.
async fn status_views(ctl: &Ferryctl<'_>) {
    let table = stdout(&ctl.words("status").await);
    // SERVICE NODES OK PENDING STALE ...; the budget is cert_ttl - renew_before (200 s).
    assert_eq!(
        row(&table, "(fleet)")[1..5],
        ["2", "1", "0", "1"],
        "{table}"
    );
    assert_eq!(row(&table, "web")[1..5], ["2", "1", "0", "1"], "{table}");
    assert_eq!(row(&table, "idle")[1..5], ["0", "0", "0", "0"], "{table}");
    assert_eq!(row(&table, "web")[9], "6m40s", "{table}");
    let only = json_of(&ctl.words("--json status --service web").await);
    assert_eq!(only["services"].as_array().map(Vec::len), Some(1), "{only}");
    assert_eq!(only["services"][0]["service"], "web");
    let only = stdout(&ctl.words("status --service idle").await);
    assert_eq!(only.lines().count(), 2, "header and idle only:\n{only}");
    let nope = ctl.words("status --service nope").await;
    assert!(one_error_line(&nope, 1).contains("nope"));

    // One service a page: the fleet line still covers both, and stderr says how to go on.
    let first = ctl.words("status --limit 1").await;
    let table = stdout(&first);
    assert_eq!(row(&table, "(fleet)")[1], "2", "{table}");
    assert_eq!(table.lines().count(), 3, "header, fleet and idle:\n{table}");
    let note = String::from_utf8_lossy(&first.stderr);
    assert!(note.contains("more services: pass --cursor"), "{note}");
    let all = json_of(&ctl.words("--json status --limit 1 --all").await);
    let names: Vec<&str> = all["services"]
        .as_array()
        .map(|l| l.iter().filter_map(|s| s["service"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(names, ["idle", "web"], "{all}");
    assert_eq!(
        (&all["fleet"]["nodes"], &all["next_cursor"]),
        (&json!(2), &Value::Null)
    );
}

/// `alert list` as JSON and as a table, filtered by service, state and limit.
async fn alert_views(ctl: &Ferryctl<'_>) {
    let firing = json_of(
        &ctl.words("--json alert list --service web --state firing")
            .await,
    );
    let items = firing["items"].as_array().cloned().unwrap_or_default();
    let of = |node: &'static str| items.iter().filter(move |a| a["node_id"] == node);
    let lagging: Vec<&Value> = of("n-bad").filter(|a| a["reason"] == "lagging").collect();
    assert_eq!(lagging.len(), 1, "{firing}");
    assert_eq!(of("n-good").count(), 0, "{firing}");
    let id = lagging[0]["id"].as_str().expect("alert id");
    let table = stdout(&ctl.words("alert list --state firing").await);
    assert_eq!(
        row(&table, id)[1..5],
        ["web", "n-bad", "lagging", "firing"],
        "{table}"
    );
    let resolved = json_of(&ctl.words("--json alert list --state resolved").await);
    assert_eq!(resolved["items"], Value::Array(vec![]), "{resolved}");
    let one = ctl.words("alert list --limit 1").await;
    assert_eq!(stdout(&one).lines().count(), 2);
    assert!(String::from_utf8_lossy(&one.stderr).contains("showing the newest 1 alerts"));
    let idle = stdout(&ctl.words("alert list --service idle").await);
    assert_eq!(idle.lines().count(), 1, "only the header:\n{idle}");
    assert_eq!(
        ctl.words("alert list --state open").await.status.code(),
        Some(2)
    );
}

#[tokio::test]
async fn ferryctl_shows_status_alerts_and_keeps_webhook_secrets_sqlite() {
    ferryctl_shows_status_alerts_and_keeps_webhook_secrets(Backend::Sqlite).await;
}

#[tokio::test]
async fn ferryctl_shows_status_alerts_and_keeps_webhook_secrets_postgres() {
    ferryctl_shows_status_alerts_and_keeps_webhook_secrets(Backend::Postgres).await;
}
