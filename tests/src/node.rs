//! Hand-made node credentials for adversarial tests: keys and CSRs minted with rcgen,
//! certificates from foreign or expired CAs, and mTLS clients built from them. The
//! well-behaved path is exercised through the real agent instead.

use crate::control_plane::{ControlPlane, Resp};
use ferry_control_plane::ca::Ca;
use ferry_control_plane::ca::sealing::MasterKey;
use rcgen::{CertificateParams, KeyPair};
use serde_json::json;

pub fn p256() -> KeyPair {
    KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("P-256 key")
}

pub fn ed25519() -> KeyPair {
    KeyPair::generate_for(&rcgen::PKCS_ED25519).expect("Ed25519 key")
}

pub fn csr(key: &KeyPair, node: &str) -> String {
    CertificateParams::new(vec![node.to_owned()])
        .expect("params")
        .serialize_request(key)
        .expect("CSR")
        .pem()
        .expect("CSR PEM")
}

/// `POST /v1/agent/enroll` with a CSR for `key`.
pub async fn enroll(
    cp: &ControlPlane,
    service: &str,
    node: &str,
    token: &str,
    key: &KeyPair,
) -> Resp {
    cp.api(None)
        .post("/v1/agent/enroll", json!({ "service": service, "node_id": node, "join_token": token, "csr": csr(key, node) }))
        .await
}

/// A reqwest client presenting `cert_pem` + `key`, trusting the control plane's CA.
pub fn mtls_client(cp: &ControlPlane, cert_pem: &str, key: &KeyPair) -> reqwest::Client {
    let identity =
        reqwest::Identity::from_pem(format!("{cert_pem}{}", key.serialize_pem()).as_bytes())
            .expect("identity");
    let ca = reqwest::Certificate::from_pem(cp.ca_pem.as_bytes()).expect("CA PEM");
    reqwest::Client::builder()
        .tls_certs_only([ca])
        .identity(identity)
        .build()
        .expect("mTLS client")
}

/// The control plane's own CA, unsealed from its database row with the data dir's
/// master key: lets a test sign certificates the server would otherwise never issue
/// (an expired one, say).
pub fn unseal_ca(cp: &ControlPlane) -> Ca {
    let (cert_pem, sealed, key_id) = cp.db.raw_ca_row();
    let master = MasterKey::parse(
        &std::fs::read_to_string(&cp.cfg.master_key_file).expect("master key file"),
    )
    .expect("master key");
    let key_pem = master
        .open(&sealed, cp.cfg.trust_domain.as_str().as_bytes(), &key_id)
        .expect("unseal CA key");
    Ca::load(
        &cp.cfg.trust_domain,
        &cert_pem,
        &String::from_utf8(key_pem).expect("PEM"),
    )
    .expect("CA loads")
}
