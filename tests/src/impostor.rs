//! An impostor control plane for attack tests: a TLS server on loopback holding a
//! certificate of the test's choosing (say, one a tenant could get for `localhost`),
//! which answers every request with 200 and a fixed body and keeps the raw text of
//! every request it read, so a test can show what a client handed it.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

pub struct Impostor {
    pub url: String,
    seen: Arc<Mutex<String>>,
    task: JoinHandle<()>,
}

impl Drop for Impostor {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Impostor {
    /// Listens on 127.0.0.1:0 with `chain_pem` + `key_pem`, answering `body`.
    pub async fn spawn(chain_pem: &str, key_pem: &str, body: &str) -> Self {
        crate::init();
        let certs: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(chain_pem.as_bytes())
                .collect::<Result<_, _>>()
                .expect("impostor chain");
        let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).expect("impostor key");
        let config = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .expect("impostor TLS config");
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!(
            "https://localhost:{}",
            listener.local_addr().expect("addr").port()
        );
        let seen = Arc::new(Mutex::new(String::new()));
        let answer = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        let task = tokio::spawn({
            let seen = seen.clone();
            async move {
                while let Ok((tcp, _)) = listener.accept().await {
                    let (acceptor, seen, answer) = (acceptor.clone(), seen.clone(), answer.clone());
                    tokio::spawn(async move {
                        let Ok(mut tls) = acceptor.accept(tcp).await else {
                            return;
                        };
                        let mut buf = vec![0u8; 64 * 1024];
                        if let Ok(Ok(n)) =
                            tokio::time::timeout(Duration::from_secs(2), tls.read(&mut buf)).await
                        {
                            seen.lock()
                                .expect("lock")
                                .push_str(&String::from_utf8_lossy(&buf[..n]));
                        }
                        let _ = tls.write_all(answer.as_bytes()).await;
                        let _ = tls.shutdown().await;
                    });
                }
            }
        });
        Self { url, seen, task }
    }

    /// The raw text of every request read so far.
    pub fn seen(&self) -> String {
        self.seen.lock().expect("lock").clone()
    }
}
