//! A throwaway CA (rcgen, ECDSA P-256, like Ferry's) with a server leaf for `localhost`
//! and `127.0.0.1` and a client leaf, written as PEM files into a directory the hold
//! server and clients (child processes) read; and the two rustls configurations: the
//! server requires a client certificate chaining to the CA (mutual TLS).

use anyhow::{Context, Result};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::Path;
use std::sync::Arc;
use time::{Duration, OffsetDateTime};

fn p256() -> Result<KeyPair> {
    Ok(KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?)
}

fn leaf(
    name: &str,
    sans: Vec<String>,
    eku: ExtendedKeyUsagePurpose,
    issuer: &Issuer<'_, KeyPair>,
) -> Result<(String, String)> {
    let now = OffsetDateTime::now_utc();
    let key = p256()?;
    let mut params = CertificateParams::new(sans)?;
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![eku];
    params.not_before = now - Duration::hours(1);
    params.not_after = now + Duration::days(2);
    let cert = params.signed_by(&key, issuer)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// Writes `ca.pem`, `server.pem`/`server.key` and `client.pem`/`client.key` into `dir`.
pub fn write(dir: &Path) -> Result<()> {
    let now = OffsetDateTime::now_utc();
    let ca_key = p256()?;
    let mut ca = CertificateParams::default();
    ca.distinguished_name
        .push(DnType::CommonName, "ferry-bench-floors throwaway CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca.not_before = now - Duration::hours(1);
    ca.not_after = now + Duration::days(2);
    let ca_pem = ca.self_signed(&ca_key)?.pem();
    let issuer = Issuer::new(ca, ca_key);
    let server = leaf(
        "localhost",
        vec!["localhost".into(), "127.0.0.1".into()],
        ExtendedKeyUsagePurpose::ServerAuth,
        &issuer,
    )?;
    let client = leaf(
        "bench-client",
        vec!["bench-client.floors.local".into()],
        ExtendedKeyUsagePurpose::ClientAuth,
        &issuer,
    )?;
    for (file, contents) in [
        ("ca.pem", &ca_pem),
        ("server.pem", &server.0),
        ("server.key", &server.1),
        ("client.pem", &client.0),
        ("client.key", &client.1),
    ] {
        std::fs::write(dir.join(file), contents)
            .with_context(|| format!("writing {}", dir.join(file).display()))?;
    }
    Ok(())
}

fn read_chain(dir: &Path, file: &str) -> Result<Vec<CertificateDer<'static>>> {
    CertificateDer::pem_file_iter(dir.join(file))
        .with_context(|| format!("reading {file}"))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("parsing {file}"))
}

fn read_key(dir: &Path, file: &str) -> Result<PrivateKeyDer<'static>> {
    PrivateKeyDer::from_pem_file(dir.join(file)).with_context(|| format!("reading {file}"))
}

fn roots(dir: &Path) -> Result<Arc<RootCertStore>> {
    let mut roots = RootCertStore::empty();
    for ca in read_chain(dir, "ca.pem")? {
        roots.add(ca)?;
    }
    Ok(Arc::new(roots))
}

/// The server side: TLS 1.2/1.3 with rustls's defaults, a client certificate required.
pub fn server_config(dir: &Path) -> Result<Arc<ServerConfig>> {
    let verifier = WebPkiClientVerifier::builder(roots(dir)?).build()?;
    let mut cfg = ServerConfig::builder()
        .with_client_cert_verifier(verifier)
        .with_single_cert(read_chain(dir, "server.pem")?, read_key(dir, "server.key")?)?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// The client side: trusts the throwaway CA, presents the client leaf.
pub fn client_config(dir: &Path) -> Result<Arc<ClientConfig>> {
    let mut cfg = ClientConfig::builder()
        .with_root_certificates(roots(dir)?)
        .with_client_auth_cert(read_chain(dir, "client.pem")?, read_key(dir, "client.key")?)?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}
