//! Test support: a CA minted at test time with rcgen (no checked-in certificates that
//! expire) and a tiny HTTPS/1.1 server on port 0 that answers with a test's handler.
//! The server accepts an optional client certificate, like the control plane's listener.

use ferry_shared::hash::ca_fingerprint;
use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use reqwest::Url;
use rustls::RootCertStore;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::sync::{Arc, Mutex};
use time::{Duration, OffsetDateTime};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// A self-signed certificate (with `uri` as URI SAN) and its key's PEM.
pub fn self_signed_identity(
    uri: &str,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
) -> (String, String) {
    let key = KeyPair::generate().expect("key");
    let mut params = CertificateParams::default();
    params.subject_alt_names = vec![SanType::URI(uri.try_into().expect("ia5 uri"))];
    params.not_before = not_before;
    params.not_after = not_after;
    (
        params.self_signed(&key).expect("sign").pem(),
        key.serialize_pem(),
    )
}

pub struct TestCa {
    pub cert_pem: String,
    pub der: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
}

impl TestCa {
    pub fn new(name: &str) -> Self {
        let key = KeyPair::generate().expect("key");
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = params.self_signed(&key).expect("self-signed CA");
        Self {
            cert_pem: cert.pem(),
            der: cert.der().clone(),
            issuer: Issuer::new(params, key),
        }
    }

    /// An intermediate CA signed by this one.
    pub fn intermediate(&self, name: &str) -> Self {
        let key = KeyPair::generate().expect("key");
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = params.signed_by(&key, &self.issuer).expect("signed CA");
        Self {
            cert_pem: cert.pem(),
            der: cert.der().clone(),
            issuer: Issuer::new(params, key),
        }
    }

    pub fn fingerprint(&self) -> String {
        ca_fingerprint(&self.der)
    }

    /// A server certificate for `localhost` and 127.0.0.1.
    pub fn server_cert(&self) -> (CertificateDer<'static>, PrivateKeyDer<'static>) {
        let key = KeyPair::generate().expect("key");
        let mut params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
                .expect("params");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let cert = params.signed_by(&key, &self.issuer).expect("sign");
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        (cert.der().clone(), key)
    }

    /// A delivered (leaf) certificate for `key`, signed by this CA.
    pub fn leaf(
        &self,
        key: &KeyPair,
        spiffe: &str,
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
    ) -> String {
        let mut params = CertificateParams::default();
        params.subject_alt_names = vec![SanType::URI(spiffe.try_into().expect("ia5"))];
        params.not_before = not_before;
        params.not_after = not_after;
        params.signed_by(key, &self.issuer).expect("sign").pem()
    }

    /// Signs a CSR the way the control plane does: its own params, the CSR's key only.
    pub fn sign_csr(&self, csr_pem: &str, spiffe: &str, lifetime: Duration) -> String {
        let csr = CertificateSigningRequestParams::from_pem(csr_pem).expect("valid CSR");
        let now = OffsetDateTime::now_utc();
        let mut params = CertificateParams::default();
        params.subject_alt_names = vec![SanType::URI(spiffe.try_into().expect("ia5"))];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.not_before = now - Duration::seconds(1);
        params.not_after = now + lifetime;
        params
            .signed_by(&csr.public_key, &self.issuer)
            .expect("sign")
            .pem()
    }
}

/// One request as the test server saw it.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub body: Vec<u8>,
    pub client_cert: Option<CertificateDer<'static>>,
}

pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
    pub headers: Vec<(&'static str, String)>,
}

impl Response {
    pub fn json(status: u16, value: &impl serde::Serialize) -> Self {
        let body = serde_json::to_vec(value).expect("serializes");
        Self {
            status,
            content_type: "application/json",
            body,
            headers: Vec::new(),
        }
    }
    pub fn problem(status: u16, title: &str, detail: &str) -> Self {
        let problem = ferry_shared::Problem {
            kind: "https://ferry.dev/problems/test".to_owned(),
            title: title.to_owned(),
            status,
            detail: Some(detail.to_owned()),
        };
        Self {
            content_type: ferry_shared::error::PROBLEM_CONTENT_TYPE,
            ..Self::json(status, &problem)
        }
    }
    pub fn text(status: u16, body: &str) -> Self {
        Self {
            status,
            content_type: "text/plain",
            body: body.as_bytes().to_vec(),
            headers: Vec::new(),
        }
    }
    pub fn header(mut self, name: &'static str, value: impl ToString) -> Self {
        self.headers.push((name, value.to_string()));
        self
    }
}

type Handler = dyn Fn(&Request) -> Response + Send + Sync;

pub struct TestServer {
    pub url: Url,
    pub requests: Arc<Mutex<Vec<Request>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TestServer {
    /// Serves with a certificate from `ca`; client certificates from `ca` are accepted.
    pub async fn spawn(
        ca: &TestCa,
        handler: impl Fn(&Request) -> Response + Send + Sync + 'static,
    ) -> Self {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let mut roots = RootCertStore::empty();
        roots.add(ca.der.clone()).expect("root");
        let verifier = WebPkiClientVerifier::builder(Arc::new(roots))
            .allow_unauthenticated()
            .build()
            .expect("verifier");
        let (cert, key) = ca.server_cert();
        let config = rustls::ServerConfig::builder()
            .with_client_cert_verifier(verifier)
            .with_single_cert(vec![cert], key)
            .expect("server config");
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = Url::parse(&format!(
            "https://127.0.0.1:{}",
            listener.local_addr().expect("addr").port()
        ))
        .expect("url");
        let requests = Arc::new(Mutex::new(Vec::new()));
        let handler: Arc<Handler> = Arc::new(handler);
        let seen = requests.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let (acceptor, handler, seen) = (acceptor.clone(), handler.clone(), seen.clone());
                tokio::spawn(async move {
                    // Handshake failures (e.g. a client that distrusts us) just end the connection.
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let client_cert = tls
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|c| c.first())
                        .map(|c| c.clone().into_owned());
                    let Some(mut req) = read_request(&mut tls).await else {
                        return;
                    };
                    req.client_cert = client_cert;
                    let resp = handler(&req);
                    seen.lock().expect("lock").push(req);
                    let extra: String = resp
                        .headers
                        .iter()
                        .map(|(k, v)| format!("{k}: {v}\r\n"))
                        .collect();
                    let head = format!(
                        "HTTP/1.1 {} X\r\ncontent-type: {}\r\ncontent-length: {}\r\n{extra}connection: close\r\n\r\n",
                        resp.status,
                        resp.content_type,
                        resp.body.len()
                    );
                    let _ = tls.write_all(head.as_bytes()).await;
                    let _ = tls.write_all(&resp.body).await;
                    let _ = tls.shutdown().await;
                });
            }
        });
        Self {
            url,
            requests,
            task,
        }
    }

    pub fn paths(&self) -> Vec<String> {
        self.requests
            .lock()
            .expect("lock")
            .iter()
            .map(|r| r.path.clone())
            .collect()
    }
}

async fn read_request(stream: &mut (impl AsyncReadExt + Unpin)) -> Option<Request> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let mut lines = head.lines();
    let mut request_line = lines.next()?.split(' ');
    let (method, path) = (
        request_line.next()?.to_owned(),
        request_line.next()?.to_owned(),
    );
    let length = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    let mut body = buf[head_end..].to_vec();
    while body.len() < length {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Some(Request {
        method,
        path,
        body,
        client_cert: None,
    })
}
