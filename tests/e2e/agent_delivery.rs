//! Delivery with the real agent: across replicas, through SIGKILLs during installs, and
//! across an agent restart with nothing new.

use ferry_tests::agent::{agent_command, read_installed, spawn_agent};
use ferry_tests::{Backend, eventually, spawn_control_plane};
use serde_json::json;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[tokio::test]
async fn a_refresh_sent_to_replica_a_is_installed_by_an_agent_polling_replica_b() {
    let a = spawn_control_plane(Backend::Postgres, |_| {}).await;
    let b = a.replica().await;
    a.create_service("web", json!({ "cert_ttl_seconds": 600 }))
        .await;
    let (token, _) = a.join_token("web", 1, 600).await;
    let agent = spawn_agent(&b, "web", "n1", &token, |_| {}).await;
    eventually(
        "the first bundle is installed",
        Duration::from_secs(30),
        || async { agent.installed() },
    )
    .await;

    let r = a
        .admin()
        .post("/v1/services/web/nodes/n1/refresh", json!({}))
        .await;
    assert_eq!(r.status, 202, "{}", r.body);
    let id = r.body["delivery_id"].as_str().expect("id").to_owned();
    let delivery = eventually("the delivery is acked", Duration::from_secs(30), || async {
        let d = a.admin().get(&format!("/v1/deliveries/{id}")).await.body;
        (d["state"] == "delivered").then_some(d)
    })
    .await;
    let installed = agent.installed().expect("installed");
    assert!(installed.version >= delivery["version"].as_i64().expect("version"));
    let node = a.admin().get("/v1/services/web/nodes/n1").await.body;
    assert_eq!(
        node["acked_hash"],
        installed.hash.as_str(),
        "the ack names the hash of the files on disk"
    );
}

#[tokio::test]
async fn sigkill_during_installs_never_leaves_a_torn_bundle() {
    let cp = spawn_control_plane(Backend::Sqlite, |_| {}).await;
    cp.create_service("web", json!({ "cert_ttl_seconds": 600 }))
        .await;
    let (token, _) = cp.join_token("web", 1, 600).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let install = dir.path().join("install");

    // Every version the control plane serves, by number: sampled from node status while
    // a background task forces a new version every 150 ms.
    let served: Arc<Mutex<HashMap<i64, String>>> = Arc::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut first = agent_command(&cp, "web", "n1", &token, dir.path())
        .spawn()
        .expect("agent starts");
    eventually("first install", Duration::from_secs(30), || async {
        read_installed(&install, true)
    })
    .await;
    first.start_kill().expect("kill");
    let _ = first.wait().await;
    let churn = tokio::spawn({
        let (api, served, stop) = (cp.admin(), served.clone(), stop.clone());
        async move {
            let mut last_refresh = tokio::time::Instant::now();
            while !stop.load(Ordering::Relaxed) {
                let node = api.get("/v1/services/web/nodes/n1").await.body;
                if let (Some(v), Some(h)) = (
                    node["desired_version"].as_i64(),
                    node["desired_hash"].as_str(),
                ) {
                    served.lock().expect("lock").insert(v, h.to_owned());
                }
                if last_refresh.elapsed() > Duration::from_millis(150) {
                    api.post("/v1/services/web/nodes/n1/refresh", json!({}))
                        .await;
                    last_refresh = tokio::time::Instant::now();
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    });

    let mut versions_seen = std::collections::BTreeSet::new();
    for i in 0..25u64 {
        let mut agent = agent_command(&cp, "web", "n1", &token, dir.path())
            .spawn()
            .expect("agent starts");
        // Pseudo-random kill points between 50 and 750 ms after start.
        tokio::time::sleep(Duration::from_millis(50 + (i * 7919) % 700)).await;
        agent.start_kill().expect("SIGKILL");
        let _ = agent.wait().await;
        let installed = read_installed(&install, true).expect("current survives every kill");
        // The sampler may lag the newest version by one tick.
        let known = eventually(
            "the served version is known",
            Duration::from_secs(2),
            || async {
                served
                    .lock()
                    .expect("lock")
                    .get(&installed.version)
                    .cloned()
            },
        )
        .await;
        assert_eq!(
            installed.hash, known,
            "kill {i}: installed version {} is not what was served",
            installed.version
        );
        versions_seen.insert(installed.version);
    }
    stop.store(true, Ordering::Relaxed);
    churn.await.expect("churn task");
    assert!(
        versions_seen.len() >= 5,
        "the agent kept installing between kills: {versions_seen:?}"
    );

    // Afterwards the agent catches up and acks the newest version.
    let mut agent = agent_command(&cp, "web", "n1", &token, dir.path())
        .spawn()
        .expect("agent starts");
    let desired = cp.admin().get("/v1/services/web/nodes/n1").await.body["desired_version"]
        .as_i64()
        .expect("v");
    eventually(
        "caught up after the kills",
        Duration::from_secs(30),
        || async {
            let node = cp.admin().get("/v1/services/web/nodes/n1").await.body;
            (node["acked_version"].as_i64() == Some(desired)).then_some(())
        },
    )
    .await;
    agent.start_kill().expect("kill");
    let _ = agent.wait().await;
}

#[tokio::test]
async fn an_agent_restart_with_nothing_new_downloads_nothing() {
    let cp = spawn_control_plane(Backend::Sqlite, |_| {}).await;
    cp.create_service("web", json!({ "cert_ttl_seconds": 600 }))
        .await;
    let (token, _) = cp.join_token("web", 1, 600).await;
    let mut agent = spawn_agent(&cp, "web", "n1", &token, |_| {}).await;
    let first = eventually("installed and acked", Duration::from_secs(30), || async {
        let node = cp.admin().get("/v1/services/web/nodes/n1").await.body;
        (node["acked_version"] == 1)
            .then(|| agent.installed())
            .flatten()
    })
    .await;
    agent.stop().await;
    let (served, acks) = (
        cp.stats.bundles_served.load(Ordering::Relaxed),
        cp.stats.acks.load(Ordering::Relaxed),
    );
    let versions = std::fs::read_dir(agent.install_dir.join("versions"))
        .expect("versions")
        .count();

    let agent = agent.restart(&cp, "web", "n1", &token);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        cp.stats.bundles_served.load(Ordering::Relaxed),
        served,
        "the restart downloaded a bundle"
    );
    assert_eq!(
        cp.stats.acks.load(Ordering::Relaxed),
        acks,
        "the restart acked again"
    );
    assert_eq!(
        std::fs::read_dir(agent.install_dir.join("versions"))
            .expect("versions")
            .count(),
        versions
    );
    assert_eq!(agent.installed().expect("still installed").hash, first.hash);

    // And it is alive: a refresh still lands.
    assert_eq!(
        cp.admin()
            .post("/v1/services/web/nodes/n1/refresh", json!({}))
            .await
            .status,
        202
    );
    eventually("version 2 installed", Duration::from_secs(30), || async {
        agent.installed().filter(|i| i.version == 2)
    })
    .await;
}

/// The public key inside a PEM certificate, and the public key of a PEM private key.
fn public_keys(install: &std::path::Path) -> (Vec<u8>, Vec<u8>) {
    use rustls_pki_types::pem::PemObject;
    use x509_parser::prelude::FromDer;
    let cert = std::fs::read_to_string(install.join("current/cert.pem")).expect("cert");
    let der = rustls_pki_types::CertificateDer::from_pem_slice(cert.as_bytes()).expect("pem");
    let (_, x509) = x509_parser::certificate::X509Certificate::from_der(&der).expect("parses");
    let key = rcgen::KeyPair::from_pem(
        &std::fs::read_to_string(install.join("current/key.pem")).expect("key"),
    )
    .expect("key");
    (
        x509.public_key().subject_public_key.data.to_vec(),
        key.public_key_raw().to_vec(),
    )
}

#[tokio::test]
async fn node_key_mode_delivers_certificates_for_keys_that_never_leave_the_node() {
    let cp = spawn_control_plane(Backend::Sqlite, |_| {}).await;
    cp.create_service(
        "vault",
        json!({ "key_mode": "node-key", "cert_ttl_seconds": 600 }),
    )
    .await;
    let (token, _) = cp.join_token("vault", 1, 600).await;
    let agent = spawn_agent(&cp, "vault", "n1", &token, |_| {}).await;
    let first = eventually(
        "a certificate for the node's own key",
        Duration::from_secs(30),
        || async { read_installed(&agent.install_dir, false) },
    )
    .await;
    let (cert_key, local_key) = public_keys(&agent.install_dir);
    assert_eq!(
        cert_key, local_key,
        "the certificate certifies the key generated on the node"
    );
    assert!(
        cp.db.raw_bundle_key("vault", "n1").is_none(),
        "the control plane stores no node-key-mode key"
    );
    // The agent acks after it installs, so the ack may trail the files.
    eventually(
        "the ack names the hash of the installed files",
        Duration::from_secs(30),
        || async {
            let node = cp.admin().get("/v1/services/vault/nodes/n1").await.body;
            (node["acked_hash"] == first.hash.as_str()).then_some(())
        },
    )
    .await;

    // A refresh makes the node generate a fresh key and send a new CSR.
    assert_eq!(
        cp.admin()
            .post("/v1/services/vault/nodes/n1/refresh", json!({}))
            .await
            .status,
        202
    );
    let second = eventually(
        "the refreshed certificate",
        Duration::from_secs(30),
        || async {
            read_installed(&agent.install_dir, false)
                .filter(|i| i.version > first.version && i.cert_pem != first.cert_pem)
        },
    )
    .await;
    let (cert_key2, local_key2) = public_keys(&agent.install_dir);
    assert_eq!(cert_key2, local_key2);
    assert_ne!(local_key2, local_key, "each renewal uses a new key");
    assert!(second.version > first.version);
}
