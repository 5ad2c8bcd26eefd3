//! The data commands of the real `ferryctl` binary: `metadata set|get|list|delete`
//! (service-wide and per node, and a bare word refused as JSON), `source` with its
//! headers read from a file and never printed, `node bundle` once an agent acked,
//! `inventory set|show|delete`, and `certificate import` refusing a mismatched key.

use ferry_tests::agent::spawn_agent;
use ferry_tests::ferryctl::{Ferryctl, json_of, one_error_line, stdout};
use ferry_tests::node::{enroll, p256};
use ferry_tests::{Backend, eventually, spawn_control_plane};
use rcgen::{CertificateParams, DnType, IsCa, Issuer, KeyPair};
use serde_json::{Value, json};
use std::path::Path;
use std::time::Duration;

#[tokio::test]
async fn ferryctl_cli_data_metadata_sources_bundle_and_inventory() {
    let cp = spawn_control_plane(Backend::Sqlite, |_| {}).await;
    let ctl = Ferryctl::new(&cp);
    stdout(&ctl.words("service create web").await);
    let (token, _) = cp.join_token("web", 1, 600).await;
    let _agent = spawn_agent(&cp, "web", "n1", &token, |cfg| {
        cfg.poll_wait = Duration::from_secs(2);
    })
    .await;
    eventually("n1 enrolls", Duration::from_secs(20), || async {
        ctl.words("node show web n1")
            .await
            .status
            .success()
            .then_some(())
    })
    .await;

    metadata_round_trip(&ctl).await;

    let bundle: Value = eventually("n1 acks its bundle", Duration::from_secs(30), || async {
        let v = json_of(&ctl.words("--json node bundle web n1").await);
        (v["in_sync"] == true && v["desired"]["metadata"]["env"] == "prod").then_some(v)
    })
    .await;
    assert_eq!(bundle["acked_hash"], bundle["desired"]["content_hash"]);
    let text = stdout(&ctl.words("node bundle web n1").await);
    assert!(text.contains("in sync:") && text.contains("yes"), "{text}");
    assert!(text.contains("env"), "{text}");

    let dir = tempfile::tempdir().expect("tempdir");
    sources(&ctl, dir.path()).await;
    inventory(&ctl).await;
}

async fn metadata_round_trip(ctl: &Ferryctl<'_>) {
    let set = json_of(
        &ctl.run(&["--json", "metadata", "set", "web", "env", "\"prod\""])
            .await,
    );
    assert_eq!(
        (&set["key"], &set["value"]),
        (&json!("env"), &json!("prod"))
    );
    assert!(set["expires_at"].is_null(), "{set}");
    let over = ["--json", "metadata", "set", "web", "env", "{\"tier\":2}"];
    let over = json_of(
        &ctl.run(&[&over[..], &["--node", "n1", "--ttl", "600"]].concat())
            .await,
    );
    assert_eq!(over["value"], json!({ "tier": 2 }));
    assert!(over["expires_at"].is_string(), "{over}");

    let got = json_of(&ctl.words("--json metadata get web env").await);
    assert_eq!(got["value"], "prod");
    let got = json_of(&ctl.words("--json metadata get web env --node n1").await);
    assert_eq!(got["value"]["tier"], 2);
    let listed = json_of(&ctl.words("--json metadata list web").await);
    assert_eq!(
        listed["items"].as_array().map(Vec::len),
        Some(1),
        "{listed}"
    );
    let table = stdout(&ctl.words("metadata list web --node n1").await);
    assert!(
        table.starts_with("KEY") && table.contains("{\"tier\":2}"),
        "{table}"
    );

    // A bare word is not JSON: one line, exit 2, nothing written.
    let refused = ctl.words("metadata set web tier prod").await;
    let line = one_error_line(&refused, 2);
    assert!(
        line.contains("not JSON") && line.contains("'\"prod\"'"),
        "{line}"
    );
    let missing = ctl.words("metadata get web tier").await;
    assert!(one_error_line(&missing, 1).contains("404"));

    let gone = stdout(&ctl.words("metadata delete web env --node n1").await);
    assert_eq!(gone, "deleted env of node n1 of service web\n");
    assert_eq!(
        ctl.words("metadata get web env --node n1")
            .await
            .status
            .code(),
        Some(1)
    );
    let listed = json_of(&ctl.words("--json metadata list web --node n1").await);
    assert_eq!(listed["items"], json!([]), "{listed}");
}

async fn sources(ctl: &Ferryctl<'_>, dir: &Path) {
    let secret = "Bearer sekrit-header-value-42";
    let file = dir.join("headers");
    std::fs::write(&file, format!("# creds\nAuthorization: {secret}\n")).expect("write");
    let path = file.to_str().expect("UTF-8 path");
    let set = [
        "source",
        "set",
        "web",
        "flags",
        "--url",
        "http://127.0.0.1:9/flags",
        "--interval",
        "60",
        "--key",
        "flags.json",
        "--header-file",
        path,
    ];
    let shown = json_of(&ctl.run(&[&["--json"][..], &set].concat()).await);
    assert_eq!(shown["header_names"], json!(["authorization"]), "{shown}");
    assert_eq!(
        (&shown["key"], &shown["scope"]),
        (&json!("flags.json"), &json!("service"))
    );
    let text = stdout(&ctl.run(&set).await);
    assert!(
        text.contains("authorization") && text.contains("flags.json"),
        "{text}"
    );
    let got = json_of(&ctl.words("--json source get web flags").await);
    assert_eq!(got["interval_seconds"], 60);
    let table = stdout(&ctl.words("source list web").await);
    assert!(
        table.lines().nth(1).is_some_and(|l| l.starts_with("flags")),
        "{table}"
    );
    let node_scope = ctl
        .run(&[&set[..6], &["--interval", "5", "--scope", "node"]].concat())
        .await;
    assert!(one_error_line(&node_scope, 1).contains("{node}"));
    stdout(&ctl.words("source delete web flags").await);
    let listed = json_of(&ctl.words("--json source list web").await);
    assert_eq!(listed["items"], json!([]), "{listed}");

    let bad = dir.join("bad-headers");
    std::fs::write(&bad, format!("{secret}\n")).expect("write");
    let refused = ctl
        .run(&[&set[..10], &["--header-file", bad.to_str().expect("UTF-8")]].concat())
        .await;
    assert!(one_error_line(&refused, 2).contains("line 1"));

    let printed = ctl.printed();
    assert!(
        printed.contains("authorization"),
        "the outputs were recorded"
    );
    assert!(!printed.contains("sekrit"), "a header value was printed");
}

async fn inventory(ctl: &Ferryctl<'_>) {
    // Never fetched successfully: only the settings are checked.
    let url = "https://inventory.invalid/nodes.json";
    let set = [
        "--json",
        "inventory",
        "set",
        "web",
        "--url",
        url,
        "--policy",
        "revoke",
    ];
    let set = json_of(
        &ctl.run(&[&set[..], &["--interval", "3600", "--grace", "120"]].concat())
            .await,
    );
    assert_eq!(
        (
            &set["url"],
            &set["policy"],
            &set["interval_seconds"],
            &set["grace_seconds"]
        ),
        (&json!(url), &json!("revoke"), &json!(3600), &json!(120)),
        "{set}"
    );
    let shown = json_of(&ctl.words("--json inventory show web").await);
    assert_eq!(shown["source"]["url"], url, "{shown}");
    assert_eq!(shown["source"]["policy"], "revoke");
    let text = stdout(&ctl.words("inventory show web").await);
    assert!(text.contains(url) && text.contains("1h"), "{text}");
    stdout(&ctl.words("inventory delete web").await);
    let gone = ctl.words("inventory show web").await;
    assert!(one_error_line(&gone, 1).contains("404"));
    assert_eq!(
        ctl.words("inventory set web --url https://x.example --policy drop")
            .await
            .status
            .code(),
        Some(2)
    );
}

/// A customer CA's leaf for `node`: (chain PEM, key PEM).
fn customer_cert(root: &(rcgen::Certificate, KeyPair), node: &str) -> (String, String) {
    let issuer = Issuer::from_ca_cert_pem(&root.0.pem(), &root.1).expect("root issuer");
    let key = KeyPair::generate().expect("key");
    let mut p = CertificateParams::new(vec![format!("{node}.customer.example")]).expect("params");
    p.distinguished_name.push(DnType::CommonName, node);
    p.not_before = time::OffsetDateTime::now_utc() - time::Duration::hours(1);
    p.not_after = time::OffsetDateTime::now_utc() + time::Duration::days(30);
    let leaf = p.signed_by(&key, &issuer).expect("leaf");
    (
        format!("{}{}", leaf.pem(), root.0.pem()),
        key.serialize_pem(),
    )
}

#[tokio::test]
async fn ferryctl_cli_data_certificate_import_refuses_a_mismatched_key() {
    let cp = spawn_control_plane(Backend::Sqlite, |_| {}).await;
    let ctl = &Ferryctl::new(&cp);
    stdout(&ctl.words("service create imp --key-mode imported").await);
    let (token, _) = cp.join_token("imp", 1, 600).await;
    assert_eq!(enroll(&cp, "imp", "n1", &token, &p256()).await.status, 200);

    let root_key = KeyPair::generate().expect("key");
    let mut p = CertificateParams::new(Vec::<String>::new()).expect("params");
    p.is_ca = IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    p.distinguished_name
        .push(DnType::CommonName, "Customer Root");
    let root = (p.self_signed(&root_key).expect("root"), root_key);
    let (chain, key) = customer_cert(&root, "n1");
    let (_, other_key) = customer_cert(&root, "n1");
    let dir = tempfile::tempdir().expect("tempdir");
    let file = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).expect("write");
        path.to_str().expect("UTF-8 path").to_owned()
    };
    let (cert_file, key_file, other_file) = (
        file("n1.pem", &chain),
        file("n1.key", &key),
        file("other.key", &other_key),
    );
    let import = |k: &str| {
        let args = [
            "certificate",
            "import",
            "imp",
            "n1",
            "--cert-file",
            &cert_file,
            "--key-file",
            k,
        ]
        .map(str::to_owned);
        async move {
            ctl.run(&args.iter().map(String::as_str).collect::<Vec<_>>())
                .await
        }
    };
    let refused = import(&other_file).await;
    let line = one_error_line(&refused, 1);
    assert!(
        line.contains("422") && line.contains("does not belong"),
        "{line}"
    );
    let unreadable = import(&format!("{other_file}.missing")).await;
    assert!(one_error_line(&unreadable, 2).contains("cannot read key file"));

    let ok = stdout(&import(&key_file).await);
    assert!(
        ok.starts_with("imported a certificate for node n1 of service imp"),
        "{ok}"
    );
    let bundle = json_of(&ctl.words("--json node bundle imp n1").await);
    assert_eq!(bundle["desired"]["key_mode"], "imported", "{bundle}");
    assert_eq!(bundle["in_sync"], false);
    let printed = ctl.printed();
    assert!(!printed.contains("PRIVATE KEY"), "a key was printed");

    let src = "s3://imp-certs/nodes/";
    let set = json_of(
        &ctl.words(&format!("--json certificate-source set imp --url {src}"))
            .await,
    );
    assert_eq!(
        (&set["url"], &set["policy"]),
        (&json!(src), &json!("import"))
    );
    let text = stdout(&ctl.words("certificate-source show imp").await);
    assert!(text.contains(src), "{text}");
    stdout(&ctl.words("certificate-source delete imp").await);
    assert_eq!(
        ctl.words("certificate-source show imp").await.status.code(),
        Some(1)
    );
}
