//! The operator's path, with the real binaries: `ferryctl` creates a service and a join
//! token, `ferry-agent enroll` enrolls a node, and `openssl` checks the identity; the
//! `ferry-agent run` line that `join-token create` prints delivers a bundle as printed.

use ferry_tests::ferryctl::{Ferryctl, json_of};
use ferry_tests::{Backend, ControlPlane, bin_path, spawn_control_plane};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Output;
use x509_parser::prelude::{FromDer, GeneralName, ParsedExtension, X509Certificate};

/// `ferryctl` with the admin token.
async fn ferryctl(cp: &ControlPlane, args: &[&str]) -> Output {
    Ferryctl::new(cp).run(args).await
}

fn uri_sans(pem: &str) -> Vec<String> {
    use rustls_pki_types::pem::PemObject;
    let der =
        rustls_pki_types::CertificateDer::from_pem_slice(pem.as_bytes()).expect("certificate PEM");
    let (_, cert) = X509Certificate::from_der(&der).expect("parses");
    let mut out = Vec::new();
    for ext in cert.extensions() {
        if let ParsedExtension::SubjectAlternativeName(san) = ext.parsed_extension() {
            for n in &san.general_names {
                if let GeneralName::URI(u) = n {
                    out.push((*u).to_owned());
                }
            }
        }
    }
    out
}

fn key_der(state: &Path) -> Vec<u8> {
    use rustls_pki_types::pem::PemObject;
    let pem = std::fs::read_to_string(state.join("identity.key")).expect("identity.key");
    rustls_pki_types::PrivateKeyDer::from_pem_slice(pem.as_bytes())
        .expect("key PEM")
        .secret_der()
        .to_vec()
}

async fn ferryctl_and_agent_enroll_a_node(backend: Backend) {
    let cp = spawn_control_plane(backend, |_| {}).await;
    let created = json_of(
        &ferryctl(
            &cp,
            &["--json", "service", "create", "web", "--cert-ttl", "600"],
        )
        .await,
    );
    assert_eq!(created["name"], "web");
    let join = json_of(
        &ferryctl(
            &cp,
            &["--json", "join-token", "create", "web", "--max-uses", "1"],
        )
        .await,
    );
    let token = join["token"].as_str().expect("token");
    assert_eq!(join["ca_fingerprint"], cp.ca_fingerprint.as_str());

    let state = tempfile::tempdir().expect("tempdir");
    let enrolled = tokio::process::Command::new(bin_path("ferry-agent"))
        .args([
            "enroll",
            "--server",
            &cp.url,
            "--service",
            "web",
            "--node-id",
            "node-1",
            "--join-token",
            token,
        ])
        .args([
            "--ca-fingerprint",
            join["ca_fingerprint"].as_str().expect("fp"),
            "--state-dir",
        ])
        .arg(state.path())
        .env_remove("FERRY_JOIN_TOKEN")
        .output()
        .await
        .expect("agent runs");
    let logs = format!(
        "{}{}",
        String::from_utf8_lossy(&enrolled.stdout),
        String::from_utf8_lossy(&enrolled.stderr)
    );
    assert!(enrolled.status.success(), "enroll failed: {logs}");
    assert!(
        !logs.contains(token),
        "the join token reached the agent's output"
    );

    // The identity verifies against the node CA as a client certificate, names the
    // node... (ca.pem is the control-plane CA the agent trusts the server with.)
    let cert = std::fs::read_to_string(state.path().join("identity.pem")).expect("identity.pem");
    let node_ca = state.path().join("node-ca.pem");
    std::fs::write(&node_ca, &cp.trust_pem).expect("write node CA");
    let verify = std::process::Command::new("openssl")
        .args(["verify", "-purpose", "sslclient", "-CAfile"])
        .arg(&node_ca)
        .arg(state.path().join("identity.pem"))
        .output()
        .expect("openssl runs");
    assert!(
        verify.status.success(),
        "openssl verify: {}",
        String::from_utf8_lossy(&verify.stdout)
    );
    assert_eq!(
        std::fs::read_to_string(state.path().join("ca.pem")).expect("ca.pem"),
        cp.ca_pem
    );
    assert_eq!(
        uri_sans(&cert),
        vec!["spiffe://ferry.local/service/web/node/node-1".to_owned()]
    );

    // ...and its key stays on the node: owner-only, and nowhere in the database file.
    let mode = std::fs::metadata(state.path().join("identity.key"))
        .expect("key file")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    if let Some(db) = &cp.db.sqlite_path {
        let secret = key_der(state.path());
        for file in [db.clone(), db.with_extension("db-wal")] {
            let bytes = std::fs::read(&file).unwrap_or_default();
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret.as_slice()),
                "node key found in {}",
                file.display()
            );
        }
    }

    let nodes = json_of(&ferryctl(&cp, &["--json", "node", "list", "web"]).await);
    assert_eq!(nodes["items"][0]["node_id"], "node-1");
    let status = tokio::process::Command::new(bin_path("ferry-agent"))
        .args(["status", "--state-dir"])
        .arg(state.path())
        .output()
        .await
        .expect("status runs");
    // Enrolled is not running: no `ferry-agent run` holds the state dir yet.
    assert_eq!(status.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&status.stderr).trim(),
        "ferry-agent status: the agent is not running (no process holds agent.lock)"
    );
    assert!(
        String::from_utf8_lossy(&status.stdout)
            .contains("spiffe://ferry.local/service/web/node/node-1")
    );

    // An operator can mint a tenant token offline, straight into the database.
    assert_eq!(
        cp.admin()
            .post("/v1/tenants", serde_json::json!({ "name": "acme" }))
            .await
            .status,
        201
    );
    let mut offline = tokio::process::Command::new(bin_path("ferry-control-plane"));
    offline
        .args(["admin", "create-token", "--tenant", "acme", "--data-dir"])
        .arg(cp.data_dir.path());
    if let Some(url) = &cp.db.url {
        offline.args(["--database-url", url]);
    }
    let out = offline.output().await.expect("runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tenant_token = String::from_utf8(out.stdout)
        .expect("utf8")
        .trim()
        .to_owned();
    let acme = cp.api(Some(&tenant_token));
    assert_eq!(
        acme.post("/v1/services", serde_json::json!({ "name": "acme-web" }))
            .await
            .body["tenant"],
        "acme"
    );
    acme.get("/v1/services/web").await.assert_problem(404);
    let unknown = tokio::process::Command::new(bin_path("ferry-control-plane"))
        .args(["admin", "create-token", "--tenant", "nobody", "--data-dir"])
        .arg(cp.data_dir.path())
        .args(
            cp.db
                .url
                .iter()
                .flat_map(|u| ["--database-url", u.as_str()]),
        )
        .output()
        .await
        .expect("runs");
    assert_eq!(unknown.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("tenant nobody does not exist"));

    // Errors: one line, exit 1, and never the token.
    let missing = ferryctl(&cp, &["service", "show", "nope"]).await;
    assert_eq!(missing.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("404"), "{stderr}");
    let bad = tokio::process::Command::new(bin_path("ferryctl"))
        .args([
            "--server",
            &cp.url,
            "--token",
            "fya_wrong-secret",
            "--ca-fingerprint",
            &cp.ca_fingerprint,
            "service",
            "list",
        ])
        .output()
        .await
        .expect("runs");
    assert_eq!(bad.status.code(), Some(1));
    assert!(!String::from_utf8_lossy(&bad.stderr).contains("fya_wrong-secret"));
}

#[tokio::test]
async fn ferryctl_and_agent_enroll_a_node_sqlite() {
    ferryctl_and_agent_enroll_a_node(Backend::Sqlite).await;
}

#[tokio::test]
async fn ferryctl_and_agent_enroll_a_node_postgres() {
    ferryctl_and_agent_enroll_a_node(Backend::Postgres).await;
}

/// What `join-token create` prints is what a newcomer pastes on the node: run as printed
/// (with this test's node id and directories), it enrolls, installs and acknowledges,
/// and its log, written to a file, carries no terminal colour codes.
#[tokio::test]
async fn the_run_line_join_token_create_prints_delivers_a_bundle() {
    let cp = spawn_control_plane(Backend::Postgres, |_| {}).await;
    cp.create_service("web", serde_json::json!({})).await;
    let printed = ferryctl(&cp, &["join-token", "create", "web", "--max-uses", "1"]).await;
    assert!(printed.status.success(), "{printed:?}");
    let text = String::from_utf8_lossy(&printed.stdout).into_owned();
    let line = text
        .lines()
        .find(|l| l.contains("ferry-agent run"))
        .unwrap_or_else(|| panic!("a ferry-agent run line in {text}"))
        .trim()
        .to_owned();

    // The node's own parts: its id, and directories this test may write.
    let dir = tempfile::tempdir().expect("tempdir");
    let install = dir.path().join("certs");
    let command = format!(
        // `env` so that `exec` (killing sh kills the agent) takes the VAR=value prefix.
        "exec env {} --state-dir {}",
        line.replace("<NODE_ID>", "node-7")
            .replace("/var/lib/ferry-agent/certs", &install.display().to_string())
            .replace(
                " ferry-agent ",
                &format!(" {} ", bin_path("ferry-agent").display())
            ),
        dir.path().join("state").display()
    );
    let log = std::fs::File::create(dir.path().join("agent.log")).expect("log");
    let mut agent = tokio::process::Command::new("sh")
        .args(["-c", &command])
        .env_remove("FERRY_JOIN_TOKEN")
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .expect("sh runs");

    let acked = ferry_tests::eventually(
        "node-7 acked",
        std::time::Duration::from_secs(30),
        || async {
            let n = cp.admin().get("/v1/services/web/nodes/node-7").await.body;
            (n["acked_version"].as_i64() >= Some(1)).then_some(n)
        },
    )
    .await;
    assert_eq!(acked["acked_hash"], acked["desired_hash"]);
    assert!(install.join("current/cert.pem").exists());
    agent.start_kill().expect("kill");
    let _ = agent.wait().await;
    let logged = std::fs::read_to_string(dir.path().join("agent.log")).expect("log");
    assert!(logged.contains("identity ready"), "{logged}");
    assert!(
        !logged.contains('\u{1b}'),
        "colour codes in a log file: {logged}"
    );
}
