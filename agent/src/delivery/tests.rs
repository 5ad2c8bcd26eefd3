//! The delivery loop against an in-test HTTPS control plane ([`cp`]): poll, verify,
//! install, hook, ack; restarts; refusals; node-key CSRs; re-enrollment epochs.

mod cp;

use super::*;
use crate::config::{CaPin, JoinTokenSource, Secret};
use crate::identity::CertInfo;
use crate::install::installed;
use crate::testkit::{Request, TestCa, TestServer};
use cp::{Cp, SPIFFE, finish_bundle};
use rcgen::KeyPair;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use time::Duration as TimeDuration;
use tokio::sync::oneshot;
struct Node {
    cfg: AgentConfig,
    _dir: tempfile::TempDir,
    install_dir: PathBuf,
}

async fn start(cp: &Arc<Cp>) -> (TestServer, Node) {
    let handler = cp.clone();
    let server = TestServer::spawn(&cp.ca, move |req: &Request| handler.handle(req)).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = AgentConfig::new(
        server.url.clone(),
        "web".parse().expect("valid"),
        "n-1".parse().expect("valid"),
        dir.path().join("state"),
    );
    cfg.join_token = Some(JoinTokenSource::Inline(Secret::new("token")));
    cfg.ca = Some(CaPin::Fingerprint(cp.ca.fingerprint()));
    cfg.retry = RetryPolicy {
        base: Duration::from_millis(20),
        cap: Duration::from_millis(300),
    };
    let install_dir = dir.path().join("install");
    cfg.install_dir = Some(install_dir.clone());
    cfg.poll_wait = Duration::ZERO;
    (
        server,
        Node {
            cfg,
            _dir: dir,
            install_dir,
        },
    )
}

/// A running agent; dropping the handle does not stop it, [`Running::stop`] does.
struct Running {
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), AgentError>>,
}

impl Running {
    fn spawn(cfg: &AgentConfig) -> Self {
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(crate::run(cfg.clone(), async move {
            let _ = stopped.await;
        }));
        Self { stop, task }
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        let res = tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("stops promptly");
        res.expect("no panic").expect("clean shutdown");
    }
}

async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    for _ in 0..300 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

fn installed_version(node: &Node) -> Option<i64> {
    installed(&node.install_dir).map(|(v, _)| v)
}

#[tokio::test]
async fn a_bundle_is_verified_installed_reloaded_and_acked_and_a_restart_fetches_nothing() {
    let cp = Cp::new();
    let (_server, mut node) = start(&cp).await;
    let log = node.install_dir.with_file_name("reloads.log");
    node.cfg.reload_command = Some(format!("echo \"$FERRY_VERSION\" >> {}", log.display()));
    let bundle = cp.central(1);
    cp.serve(bundle.clone());

    let agent = Running::spawn(&node.cfg);
    eventually("the ack", || !cp.accepted().is_empty()).await;

    let ack = cp.accepted().remove(0);
    assert_eq!((ack.version, ack.status), (1, AckStatus::Installed));
    assert_eq!(ack.content_hash, bundle.content_hash);
    assert_eq!(ack.hook_exit_code, Some(0));
    assert_eq!(
        ack.cert_not_after,
        CertInfo::from_pem(&bundle.certificate, "c")
            .ok()
            .map(|c| c.not_after)
    );
    assert!(ack.clock_skew_ms.is_some() && ack.agent_version.is_some());
    let (version, dir) = installed(&node.install_dir).expect("installed");
    assert_eq!((version, dir.file_name()), (1, Some("1".as_ref())));
    assert_eq!(
        std::fs::read_to_string(dir.join("key.pem")).ok(),
        bundle.private_key
    );
    assert_eq!(std::fs::read_to_string(&log).expect("hook ran"), "1\n");
    eventually("polls from the installed version", || {
        cp.polls_since(1) >= 2
    })
    .await;

    let status = crate::status(&node.cfg.state_dir).expect("status");
    assert_eq!(status.installed_version, Some(1));
    assert!(
        status.healthy && status.installed_seconds_left.is_some_and(|s| s > 3000),
        "{status:?}"
    );
    assert_eq!(status.last_ack.map(|a| a.version), Some(1));
    agent.stop().await;

    let before = cp.polls_since(1);
    let agent = Running::spawn(&node.cfg);
    eventually("polls after the restart", || {
        cp.polls_since(1) >= before + 2
    })
    .await;
    agent.stop().await;
    assert_eq!(
        cp.served.load(Ordering::SeqCst),
        1,
        "nothing downloaded again"
    );
    assert_eq!(cp.accepted().len(), 1, "nothing acked again");
    assert_eq!(
        std::fs::read_to_string(&log).expect("log"),
        "1\n",
        "no second reload"
    );
}

#[tokio::test]
async fn refused_bundles_are_acked_failed_and_versions_never_go_down() {
    let cp = Cp::new();
    let (_server, node) = start(&cp).await;
    cp.serve(cp.central(1));
    let agent = Running::spawn(&node.cfg);
    eventually("v1 acked", || cp.accepted().len() == 1).await;

    let mut tampered = cp.central(2);
    tampered
        .metadata
        .insert("v".to_owned(), serde_json::json!("changed"));
    cp.serve(tampered);
    eventually("v2 acked failed", || cp.accepted().len() == 2).await;
    let ack = cp.accepted().remove(1);
    assert_eq!((ack.version, ack.status), (2, AckStatus::Failed));
    assert!(
        ack.error
            .as_deref()
            .is_some_and(|e| e.contains("content hash mismatch")),
        "{ack:?}"
    );

    let other = TestCa::new("someone else");
    let mut foreign = cp.central(3);
    let key = KeyPair::generate().expect("key");
    let now = OffsetDateTime::now_utc();
    foreign.certificate = other.leaf(&key, SPIFFE, now, now + TimeDuration::hours(1));
    foreign.private_key = Some(key.serialize_pem());
    cp.serve(finish_bundle(foreign));
    eventually("v3 acked failed", || cp.accepted().len() == 3).await;
    let ack = cp.accepted().remove(2);
    assert!(
        ack.error
            .as_deref()
            .is_some_and(|e| e.contains("does not chain")),
        "{ack:?}"
    );
    eventually("polls past the refused version", || cp.polls_since(3) >= 2).await;
    assert_eq!(
        cp.served.load(Ordering::SeqCst),
        3,
        "a refused bundle is not fetched again"
    );
    assert_eq!(installed_version(&node), Some(1), "the good version stays");

    cp.serve(cp.central(5));
    eventually("v5 acked", || cp.accepted().len() == 4).await;
    // A server that ignores `since` and offers an older version: never installed.
    cp.ignore_since.store(true, Ordering::SeqCst);
    cp.serve(cp.central(4));
    eventually("the older bundle offered", || {
        cp.served.load(Ordering::SeqCst) >= 6
    })
    .await;
    agent.stop().await;
    assert_eq!(installed_version(&node), Some(5));
    assert!(
        cp.accepted().iter().all(|a| a.version != 4),
        "nothing to ack for it"
    );
    let status = crate::status(&node.cfg.state_dir).expect("status");
    assert_eq!(status.last_error, None, "cleared by the good install");
}

#[tokio::test]
async fn a_failing_reload_command_is_acked_failed_and_the_files_stay() {
    let cp = Cp::new();
    let (_server, mut node) = start(&cp).await;
    node.cfg.reload_command = Some("exit 3".to_owned());
    cp.serve(cp.central(1));
    let agent = Running::spawn(&node.cfg);
    eventually("the ack", || !cp.accepted().is_empty()).await;
    agent.stop().await;
    let ack = cp.accepted().remove(0);
    assert_eq!(
        (ack.status, ack.hook_exit_code),
        (AckStatus::Failed, Some(3))
    );
    assert!(
        ack.error.as_deref().is_some_and(|e| e.contains("status 3")),
        "{ack:?}"
    );
    assert_eq!(installed_version(&node), Some(1));
    let status = crate::status(&node.cfg.state_dir).expect("status");
    assert!(status.last_error.is_some_and(|e| e.contains("status 3")));
}

#[tokio::test]
async fn an_install_whose_ack_was_lost_is_acked_after_a_restart() {
    let cp = Cp::new();
    let (_server, mut node) = start(&cp).await;
    let log = node.install_dir.with_file_name("reloads.log");
    node.cfg.reload_command = Some(format!("echo ran >> {}", log.display()));
    cp.ack_status.store(503, Ordering::SeqCst);
    cp.serve(cp.central(1));
    let agent = Running::spawn(&node.cfg);
    eventually("ack attempts", || cp.acks.lock().expect("lock").len() >= 2).await;
    agent.stop().await;
    assert_eq!(installed_version(&node), Some(1));
    let record = DeliveryState::load(&StateDir::new(&node.cfg.state_dir)).expect("record");
    assert!(
        record
            .installed
            .is_some_and(|i| !i.acked && i.outcome.is_some())
    );

    cp.ack_status.store(204, Ordering::SeqCst);
    let agent = Running::spawn(&node.cfg);
    eventually("the ack after the restart", || cp.accepted().len() == 1).await;
    eventually("polling again", || cp.polls_since(1) >= 1).await;
    agent.stop().await;
    assert_eq!(cp.accepted()[0].version, 1);
    assert_eq!(cp.served.load(Ordering::SeqCst), 1, "not downloaded again");
    assert_eq!(
        std::fs::read_to_string(&log).expect("log"),
        "ran\n",
        "hook not run twice"
    );
}

#[tokio::test]
async fn node_key_mode_sends_a_csr_and_installs_with_the_key_kept_here() {
    let cp = Cp::new();
    let (_server, node) = start(&cp).await;
    let ask = finish_bundle(Bundle {
        certificate: String::new(),
        private_key: None,
        csr_required: true,
        csr_key_type: Some(ferry_shared::KeyType::Ed25519),
        ..cp.central(1)
    });
    cp.serve(ask);
    let agent = Running::spawn(&node.cfg);
    eventually("the ack", || !cp.accepted().is_empty()).await;
    agent.stop().await;

    let acks = cp.accepted();
    assert_eq!(acks.len(), 1, "nothing acked for the CSR request: {acks:?}");
    assert_eq!(
        (acks[0].version, acks[0].status),
        (2, AckStatus::Installed),
        "{acks:?}"
    );
    let (_, dir) = installed(&node.install_dir).expect("installed");
    let key = crate::identity::NodeKey::from_pem(&Secret::new(
        std::fs::read_to_string(dir.join("key.pem")).expect("key"),
    ))
    .expect("a key made on the node");
    let cert = CertInfo::from_pem(
        &std::fs::read_to_string(dir.join("cert.pem")).expect("cert"),
        "c",
    )
    .expect("cert");
    assert!(key.matches(&cert), "the certificate is for the pending key");
    assert!(
        key.to_pem().expose().len() < 200,
        "an Ed25519 key, as the bundle asked"
    );
    assert!(
        !node.cfg.state_dir.join(PENDING_KEY_FILE).exists(),
        "pending key consumed"
    );
}

#[tokio::test]
async fn a_new_enrollment_starts_a_new_epoch_where_versions_start_over() {
    let cp = Cp::new();
    let (_server, node) = start(&cp).await;
    cp.serve(cp.central(5));
    let agent = Running::spawn(&node.cfg);
    eventually("v5 acked", || cp.accepted().len() == 1).await;
    agent.stop().await;

    // The node was deleted and enrolled again: the server numbers its bundles from 1.
    tokio::time::sleep(Duration::from_millis(5)).await;
    crate::enroll(&node.cfg).await.expect("re-enrolled");
    cp.serve(cp.central(1));
    let from_zero = cp.polls_since(0);
    let agent = Running::spawn(&node.cfg);
    eventually("v1 acked", || cp.accepted().len() == 2).await;
    agent.stop().await;
    assert!(cp.polls_since(0) > from_zero, "the new epoch polls from 0");
    assert_eq!(installed_version(&node), Some(1));
    let versions = std::fs::read_dir(node.install_dir.join("versions"))
        .expect("list")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect::<Vec<_>>();
    assert_eq!(versions, ["1"], "the old epoch's versions are gone");
}

#[tokio::test]
async fn an_outage_is_paced_by_backoff_and_retry_after_is_honoured() {
    let cp = Cp::new();
    let (_server, mut node) = start(&cp).await;
    node.cfg.retry = RetryPolicy {
        base: Duration::from_millis(100),
        cap: Duration::from_secs(1),
    };
    cp.serve(cp.central(1));
    let agent = Running::spawn(&node.cfg);
    eventually("v1 acked", || cp.accepted().len() == 1).await;

    cp.poll_status.store(503, Ordering::SeqCst);
    let before = cp.polls.lock().expect("lock").len();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let during = cp.polls.lock().expect("lock").len() - before;
    // Unpaced, a loopback poll loop would make hundreds of requests in 3 s.
    assert!(
        (2..=20).contains(&during),
        "{during} polls during the outage"
    );
    assert_eq!(installed_version(&node), Some(1), "the files stay");

    cp.poll_status.store(0, Ordering::SeqCst);
    cp.retry_after_ms.store(700, Ordering::SeqCst);
    cp.serve(cp.central(2));
    eventually("v2 acked after the outage", || cp.accepted().len() == 2).await;
    let before = cp.polls.lock().expect("lock").len();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let paced = cp.polls.lock().expect("lock").len() - before;
    agent.stop().await;
    assert!(paced <= 4, "{paced} polls in 2 s with a 700 ms retry-after");
}

#[tokio::test]
async fn near_expiry_an_outage_is_retried_within_a_quarter_of_the_life_left() {
    let cp = Cp::new();
    let (_server, mut node) = start(&cp).await;
    // Left alone, these would wait 0-20 s, then 0-30 s, between tries: three polls in
    // 3.5 s would happen about once in a hundred runs.
    node.cfg.retry = RetryPolicy {
        base: Duration::from_secs(20),
        cap: Duration::from_secs(30),
    };
    node.cfg.poll_wait = Duration::from_secs(30);
    // Still valid when the window ends, even on a slow machine: at most 1.5 s apart.
    cp.serve(cp.central_for(1, TimeDuration::seconds(6)));
    let agent = Running::spawn(&node.cfg);
    eventually("v1 acked", || cp.accepted().len() == 1).await;

    cp.poll_status.store(503, Ordering::SeqCst);
    let before = cp.polls.lock().expect("lock").len();
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let during = cp.polls.lock().expect("lock").len() - before;
    agent.stop().await;
    assert!(
        during >= 3,
        "{during} polls in 3.5 s with a certificate expiring within 6 s"
    );
}

#[test]
fn the_retry_cap_never_exceeds_the_poll_wait() {
    let mut cfg = AgentConfig::new(
        "https://cp.example".parse().expect("url"),
        "web".parse().expect("valid"),
        "n-1".parse().expect("valid"),
        PathBuf::from("/tmp/unused"),
    );
    let cap_with = |cfg: &mut AgentConfig, wait: u64| {
        cfg.poll_wait = Duration::from_secs(wait);
        retry_policy(cfg).cap
    };
    assert_eq!(cap_with(&mut cfg, 5), Duration::from_secs(5));
    assert_eq!(cap_with(&mut cfg, 55), MAX_BACKOFF);
    assert_eq!(
        cap_with(&mut cfg, 0),
        Duration::from_secs(1),
        "a floor of 1 s"
    );
}
