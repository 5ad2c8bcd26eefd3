//! TLS termination and the accept loop.
//!
//! One listener serves customers (no client certificate, bearer token) and agents
//! (client certificate chaining to the Ferry CA, verified by rustls during the
//! handshake; expired or foreign certificates never reach a handler). The verified
//! leaf is parsed once per connection into a [`PeerCert`] request extension, which
//! `AgentIdentity` then checks against the store. The client's address goes along as a
//! [`ClientAddr`] extension.
//!
//! Slow or hostile clients: a connection over the per-address limit is closed right
//! after accept (before any TLS work); a handshake must finish within
//! [`HANDSHAKE_TIMEOUT`] and HTTP/1.1 request headers arrive within
//! [`HEADER_READ_TIMEOUT`]; a request body must arrive within the body deadline and a
//! connection with no request in flight is closed after the idle timeout
//! (`timeouts.rs`).

use super::Stats;
use super::extract::PeerCert;
use super::limits::{ClientAddr, ConnLimiter};
use super::timeouts::{Activity, ConnTimeouts, DeadlineBody};
use crate::ca::Ca;
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use rustls::RootCertStore;
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

/// A client that has not finished the TLS handshake by then is disconnected.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// An HTTP/1.1 client that has not sent a request's headers by then is disconnected.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(15);

/// How long an idle connection told to close may take to do so before it is dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("server certificate or key PEM is unreadable: {0}")]
    Pem(String),
    #[error("rustls: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("client certificate verifier: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
}

/// The server certificate in use, swappable while the listener runs (re-issued by the
/// CA before it expires).
#[derive(Debug)]
pub struct ServerCertResolver {
    current: RwLock<Arc<CertifiedKey>>,
}

fn certified_key(chain_pem: &str, key_pem: &str) -> Result<Arc<CertifiedKey>, TlsError> {
    let chain = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem(e.to_string()))?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|e| TlsError::Pem(e.to_string()))?;
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    Ok(Arc::new(CertifiedKey::from_der(chain, key, &provider)?))
}

impl ServerCertResolver {
    pub fn new(chain_pem: &str, key_pem: &str) -> Result<Self, TlsError> {
        Ok(Self {
            current: RwLock::new(certified_key(chain_pem, key_pem)?),
        })
    }

    pub fn replace(&self, chain_pem: &str, key_pem: &str) -> Result<(), TlsError> {
        let new = certified_key(chain_pem, key_pem)?;
        *self
            .current
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = new;
        Ok(())
    }
}

impl ResolvesServerCert for ServerCertResolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .clone(),
        )
    }
}

/// rustls server config: optional client certificates chaining to `ca`, ALPN h2 + 1.1.
pub fn server_config(
    ca: &Ca,
    resolver: Arc<ServerCertResolver>,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let mut roots = RootCertStore::empty();
    roots.add(ca.cert_der().clone())?;
    let verifier = WebPkiClientVerifier::builder(Arc::new(roots))
        .allow_unauthenticated()
        .build()?;
    let mut cfg = rustls::ServerConfig::builder()
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(resolver);
    // HTTP/1.1 first (rustls picks in the server's order): a held agent long-poll costs
    // about half the memory over HTTP/1.1 (h2 keeps a 16 KiB write buffer, a read
    // buffer and HPACK tables per connection; docs/benchmarks.md). Clients that offer
    // only h2 still get it.
    cfg.alpn_protocols = vec![b"http/1.1".to_vec(), b"h2".to_vec()];
    Ok(Arc::new(cfg))
}

/// What the accept loop shares with the rest of the replica.
pub struct Edge {
    pub conns: Arc<ConnLimiter>,
    pub stats: Arc<Stats>,
    pub timeouts: ConnTimeouts,
}

/// Accepts connections until `shutdown` turns true; then stops accepting and drops
/// open connections.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    router: Router,
    edge: Edge,
    mut shutdown: watch::Receiver<bool>,
) {
    let acceptor = TlsAcceptor::from(tls);
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.wait_for(|stop| *stop) => return,
        };
        let (tcp, peer_addr) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // EMFILE/ENFILE and friends: back off instead of spinning on accept.
                tracing::warn!(error = %e, "accept failed; backing off");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Some(slot) = edge.conns.try_acquire(peer_addr.ip()) else {
            edge.stats
                .connections_refused
                .fetch_add(1, Ordering::Relaxed);
            tracing::debug!(peer = %peer_addr, "too many connections from this address; closed");
            drop(tcp);
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let (acceptor, router, mut shutdown) = (acceptor.clone(), router.clone(), shutdown.clone());
        let timeouts = edge.timeouts;
        tokio::spawn(async move {
            let _slot = slot; // held for the connection's lifetime
            let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::info!(peer = %peer_addr, error = %e, "TLS handshake refused");
                    return;
                }
                Err(_) => {
                    tracing::info!(peer = %peer_addr, "TLS handshake timed out");
                    return;
                }
            };
            let peer: Option<PeerCert> = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|chain| chain.first())
                .and_then(|c| PeerCert::from_der(c));
            let activity = Activity::new();
            let svc = tower::service_fn({
                let activity = activity.clone();
                move |req: axum::extract::Request<hyper::body::Incoming>| {
                    let in_flight = activity.enter();
                    let mut req =
                        req.map(|b| axum::body::Body::new(DeadlineBody::new(b, timeouts.body)));
                    req.extensions_mut().insert(peer.clone());
                    req.extensions_mut().insert(ClientAddr(peer_addr));
                    let router = router.clone();
                    async move {
                        let res = router.oneshot(req).await;
                        drop(in_flight);
                        res
                    }
                }
            });
            let mut builder = Builder::new(TokioExecutor::new());
            builder
                .http1()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT);
            builder
                .http2()
                .timer(TokioTimer::new())
                .keep_alive_interval(Some(Duration::from_secs(30)));
            let conn = builder.serve_connection_with_upgrades(
                TokioIo::new(stream),
                TowerToHyperService::new(svc),
            );
            let mut conn = std::pin::pin!(conn);
            tokio::select! {
                res = conn.as_mut() => {
                    if let Err(e) = res {
                        tracing::debug!(peer = %peer_addr, error = %e, "connection ended with an error");
                    }
                    return;
                }
                _ = activity.idle_for(timeouts.idle) => {}
                _ = shutdown.wait_for(|stop| *stop) => return,
            }
            // GOAWAY on HTTP/2 (whose graceful close waits for the peer to answer a
            // ping, which an idle hostile peer never does), close on HTTP/1.1; a peer
            // that neither closes nor sends requests is dropped after CLOSE_GRACE.
            tracing::debug!(peer = %peer_addr, "idle connection closed");
            conn.as_mut().graceful_shutdown();
            activity.restart_idle();
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = activity.idle_for(CLOSE_GRACE) => {}
                _ = shutdown.wait_for(|stop| *stop) => {}
            }
        });
    }
}
