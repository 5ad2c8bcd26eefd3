//! `ferry-bench swarm`: one child process of simulated agents. Each agent speaks the real
//! protocol through the agent library's client: its own node key and CSR, enrollment with
//! the join token on its own TLS connection, then its own mTLS connection holding the
//! bundle long-poll, verifying every bundle (`ferry_agent::bundle::verify`) and acking
//! it. Nothing is written to disk, so the figures measure the control plane, not fsync.
//!
//! Reports on stdout, one line each: `enrolled ok=N failed=F ms=T` once every agent of
//! the swarm has enrolled (failed counts attempts that had to be retried), then
//! `stats acks=A errors=E` every second. The swarm stops when stdin closes (the
//! orchestrator died or is done) or after `--max-seconds`.

use ferry_agent::bundle;
use ferry_agent::client::Client;
use ferry_agent::identity::NodeKey;
use ferry_shared::api::{AckRequest, AckStatus};
use ferry_shared::{KeyType, NodeId};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

pub struct SwarmArgs {
    pub server: reqwest::Url,
    pub ca_pem: String,
    pub join_token: String,
    pub service: ferry_shared::ServiceName,
    pub prefix: String,
    pub from: usize,
    pub count: usize,
    /// Enrollments in flight at once.
    pub concurrency: usize,
    pub max_seconds: u64,
}

#[derive(Default)]
struct Counters {
    enrolled: AtomicU64,
    enroll_retries: AtomicU64,
    acks: AtomicU64,
    errors: AtomicU64,
}

pub async fn run(args: SwarmArgs) -> anyhow::Result<()> {
    let args = Arc::new(args);
    let counters = Arc::new(Counters::default());
    let gate = Arc::new(Semaphore::new(args.concurrency.max(1)));
    let started = Instant::now();
    let (enrolled_tx, mut enrolled_rx) = tokio::sync::mpsc::channel::<()>(args.count.max(1));
    for i in args.from..args.from + args.count {
        let node = NodeId::parse(&format!("{}{i:06}", args.prefix))?;
        let (args, counters, gate, done) = (
            args.clone(),
            counters.clone(),
            gate.clone(),
            enrolled_tx.clone(),
        );
        tokio::spawn(async move {
            let client = {
                let _permit = gate.acquire().await;
                enroll_until_done(&args, &node, &counters).await
            };
            let _ = done.send(()).await;
            hold_and_ack(&client, &counters).await;
        });
    }
    drop(enrolled_tx);
    for _ in 0..args.count {
        enrolled_rx.recv().await;
    }
    println!(
        "enrolled ok={} failed={} ms={}",
        counters.enrolled.load(Ordering::Relaxed),
        counters.enroll_retries.load(Ordering::Relaxed),
        started.elapsed().as_millis()
    );

    // stdin is read on a plain thread: it ends when the orchestrator closes the pipe.
    let (closed_tx, mut closed) = tokio::sync::oneshot::channel::<()>();
    std::thread::spawn(move || {
        let mut sink = Vec::new();
        let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut sink);
        let _ = closed_tx.send(());
    });
    let deadline = tokio::time::sleep(Duration::from_secs(args.max_seconds));
    tokio::pin!(deadline);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = &mut closed => break,
            _ = &mut deadline => break,
            _ = tick.tick() => println!(
                "stats acks={} errors={}",
                counters.acks.load(Ordering::Relaxed),
                counters.errors.load(Ordering::Relaxed)
            ),
        }
    }
    Ok(())
}

/// Enrolls `node`, retrying (and counting) failed attempts; returns its mTLS client.
async fn enroll_until_done(args: &SwarmArgs, node: &NodeId, counters: &Counters) -> Client {
    loop {
        match enroll(args, node).await {
            Ok(client) => {
                counters.enrolled.fetch_add(1, Ordering::Relaxed);
                return client;
            }
            Err(e) => {
                counters.enroll_retries.fetch_add(1, Ordering::Relaxed);
                eprintln!("swarm: enrollment of {node} failed, retrying: {e:#}");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

async fn enroll(args: &SwarmArgs, node: &NodeId) -> anyhow::Result<Client> {
    let key = NodeKey::generate(KeyType::EcdsaP256)?;
    let req = ferry_shared::api::EnrollRequest {
        service: args.service.clone(),
        node_id: node.clone(),
        join_token: args.join_token.clone(),
        csr: key.csr_pem(node)?,
    };
    let issued = Client::anonymous(&args.server, &args.ca_pem)?
        .enroll(&req)
        .await?
        .body;
    Ok(Client::with_identity(
        &args.server,
        &args.ca_pem,
        &issued.certificate,
        &key.to_pem(),
    )?)
}

/// The agent's delivery loop without the disk: poll, verify, ack, forever.
async fn hold_and_ack(client: &Client, counters: &Counters) {
    let mut since = 0;
    loop {
        let polled = match client.poll_bundle(since, Duration::from_secs(55)).await {
            Ok(p) => p,
            Err(e) => {
                counters.errors.fetch_add(1, Ordering::Relaxed);
                eprintln!("swarm: poll failed: {e:#}");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let Some(b) = polled.bundle else {
            if let Some(wait) = polled.retry_after {
                tokio::time::sleep(wait).await;
            }
            continue;
        };
        let now = time::OffsetDateTime::now_utc();
        let ack = match bundle::verify(&b, &[], now) {
            Ok(v) => AckRequest {
                version: v.version,
                content_hash: v.content_hash,
                status: AckStatus::Installed,
                error: None,
                cert_not_after: Some(v.cert_not_after),
                hook_exit_code: None,
                clock_skew_ms: polled.clock_skew_ms.map(|s| -s),
                agent_version: Some("ferry-bench".into()),
            },
            Err(e) => AckRequest {
                version: b.version,
                content_hash: b.content_hash.clone(),
                status: AckStatus::Failed,
                error: Some(e.to_string()),
                cert_not_after: None,
                hook_exit_code: None,
                clock_skew_ms: None,
                agent_version: Some("ferry-bench".into()),
            },
        };
        match client.ack(&ack).await {
            Ok(()) => {
                counters.acks.fetch_add(1, Ordering::Relaxed);
                since = b.version;
            }
            Err(e) => {
                counters.errors.fetch_add(1, Ordering::Relaxed);
                eprintln!("swarm: ack failed: {e:#}");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}
