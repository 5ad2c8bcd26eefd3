//! Writes the fuzz fixtures (`fixtures/`) and the seed corpora (`corpus/<target>/`) with
//! the production code: Ferry's CA issues the certificates, the agent's `NodeKey` makes
//! the node key and the CSRs, and bundles are assembled and hashed as the control plane
//! serves them. Run it again only to change the seeds (keys and serials are random):
//! `cargo run --manifest-path tests/fuzz/Cargo.toml --example seeds`.
//!
//! Raw-mode seeds start with a newline (an even mode byte), so they stay readable text.

use ferry_agent::Secret;
use ferry_agent::identity::NodeKey;
use ferry_control_plane::ca::{Ca, leaf};
use ferry_fuzz::{DEFAULT_SAN_TEMPLATE, FIXTURE_TIME, NODE, SERVICE, TRUST_DOMAIN};
use ferry_shared::api::{Bundle, BundleResponse, EnrollRequest};
use ferry_shared::hash::hash_of;
use ferry_shared::{KeyType, NodeId, ServiceName, SpiffeId, TrustDomain};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, KeyPair, KeyUsagePurpose,
    SanType,
};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use time::Duration;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

const LEAF_TTL: Duration = Duration::days(90);

fn main() -> Result<()> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let fixtures = root.join("fixtures");
    let id = SpiffeId {
        trust_domain: TrustDomain::parse(TRUST_DOMAIN)?,
        service: ServiceName::parse(SERVICE)?,
        node: NodeId::parse(NODE)?,
    };
    let dns = leaf::render_sans(DEFAULT_SAN_TEMPLATE, &id);
    let (ca, ca_key) = Ca::generate(&id.trust_domain, FIXTURE_TIME)?;
    write(&fixtures, "ca.pem", ca.bundle_pem())?;
    write(&fixtures, "ca.key.pem", &ca_key)?;

    // Central mode: the control plane generates the key and signs its leaf.
    let mut central = Vec::new();
    for (name, kt) in [("p256", KeyType::EcdsaP256), ("rsa", KeyType::Rsa2048)] {
        let key = leaf::generate_key(kt)?;
        let cert = ca.issue_leaf(&key, &id, &dns, FIXTURE_TIME, LEAF_TTL)?;
        write(&fixtures, &format!("leaf-{name}.pem"), &cert.pem)?;
        write(
            &fixtures,
            &format!("leaf-{name}.key.pem"),
            &key.serialize_pem(),
        )?;
        central.push((name, cert.pem, key.serialize_pem()));
    }

    // Node-key mode: the agent's key and CSR, signed by `issue_leaf_from_csr`.
    let node_key = NodeKey::generate(KeyType::Ed25519)?;
    write(&fixtures, "node.key.pem", node_key.to_pem().expose())?;
    let node_csr = node_key.csr_pem(&id.node)?;
    let node_leaf = ca.issue_leaf_from_csr(
        &node_csr,
        KeyType::Ed25519,
        &id,
        &dns,
        FIXTURE_TIME,
        LEAF_TTL,
    )?;
    write(&fixtures, "leaf-node.pem", &node_leaf.pem)?;

    // An imported chain: another root, an intermediate, a leaf for the node.
    let imported = imported_chain(&id, &fixtures)?;

    // CSRs as the agent makes them, and one asking for what the CA must not grant, each
    // with a key kept in the fixtures (the fuzzer signs edited CSRs with it).
    let mut csrs = Vec::new();
    let node_pem = node_key.to_pem();
    for (name, key) in [
        ("p256", central[0].2.as_str()),
        ("ed25519", node_pem.expose()),
        ("rsa", central[1].2.as_str()),
    ] {
        let csr = NodeKey::from_pem(&Secret::new(key))?.csr_pem(&id.node)?;
        write(&fixtures, &format!("csr-{name}.pem"), &csr)?;
        csrs.push((name.to_owned(), csr));
    }
    let greedy = greedy_csr(&imported.key)?;
    write(&fixtures, "csr-asks-too-much.pem", &greedy)?;
    csrs.push(("asks-too-much".to_owned(), greedy));

    let corpus = root.join("corpus");
    let mut bodies = Vec::new();
    for (name, cert, key) in central {
        bodies.push((
            format!("central-{name}"),
            bundle(
                1,
                cert,
                String::new(),
                Some(key),
                ca.bundle_pem().to_owned(),
            ),
        ));
    }
    bodies.push((
        "node-key".to_owned(),
        bundle(
            2,
            node_leaf.pem,
            String::new(),
            None,
            ca.bundle_pem().to_owned(),
        ),
    ));
    bodies.push((
        "imported-chain".to_owned(),
        bundle(
            4,
            imported.leaf,
            imported.intermediate,
            Some(imported.key),
            format!("{}{}", ca.bundle_pem(), imported.root),
        ),
    ));
    let mut owed = bundle(3, String::new(), String::new(), None, String::new());
    owed.csr_required = true;
    owed.csr_key_type = Some(KeyType::Ed25519);
    owed.metadata.clear();
    owed.content_hash = hash_of(&owed);
    bodies.push(("csr-required".to_owned(), owed));
    for (name, bundle) in bodies {
        let body = serde_json::to_string(&BundleResponse {
            bundle,
            server_time: FIXTURE_TIME + Duration::hours(1),
        })?;
        write(&corpus.join("agent_bundle"), &name, &format!("\n{body}"))?;
    }

    for (name, csr) in csrs {
        let body = serde_json::to_string(&EnrollRequest {
            service: id.service.clone(),
            node_id: id.node.clone(),
            join_token: "fuzz-join-token".to_owned(),
            csr,
        })?;
        write(
            &corpus.join("ca_csr"),
            &format!("enroll-{name}"),
            &format!("\n{body}"),
        )?;
    }

    let names: &[(&str, &[&str])] = &[
        ("identity", &[TRUST_DOMAIN, SERVICE, NODE]),
        (
            "aws-node",
            &[
                "prod.example.org",
                "payments-api",
                "ip-10-0-0-1.eu-west-1.compute.internal",
            ],
        ),
        (
            "spiffe-uri",
            &["spiffe://ferry.local/service/web/node/Node_7"],
        ),
        (
            "metadata-keys",
            &["env", "tags.json", "ünïcode", "../etc", "a\u{7}b"],
        ),
        (
            "templates",
            &[
                "{node}.{service}.{trust_domain}, web.internal",
                "*.{service}.svc",
            ],
        ),
        (
            "pins-and-enums",
            &[
                "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789ABCDEF",
                "ecdsa-p256",
                "node-key",
            ],
        ),
    ];
    for (name, parts) in names {
        let joined: Vec<u8> = parts
            .iter()
            .map(|p| p.as_bytes())
            .collect::<Vec<_>>()
            .join(&0xff);
        write_bytes(&corpus.join("names"), name, &joined)?;
    }
    Ok(())
}

/// A central-mode-like bundle at `version`, with metadata, hashed as served.
fn bundle(
    version: i64,
    certificate: String,
    chain: String,
    private_key: Option<String>,
    trust_bundle: String,
) -> Bundle {
    let metadata = BTreeMap::from([
        ("env".to_owned(), serde_json::json!("prod")),
        ("tags.json".to_owned(), serde_json::json!(["a", "b"])),
        ("port".to_owned(), serde_json::json!(8443)),
    ]);
    let mut bundle = Bundle {
        version,
        content_hash: String::new(),
        certificate,
        chain,
        private_key,
        trust_bundle,
        metadata,
        not_after: Some(FIXTURE_TIME + LEAF_TTL),
        csr_required: false,
        csr_key_type: None,
        alert_before_seconds: Some(86_400),
    };
    bundle.content_hash = hash_of(&bundle);
    bundle
}

/// The PEMs of an imported chain (the root is served next to Ferry's CA).
struct Imported {
    root: String,
    intermediate: String,
    leaf: String,
    key: String,
}

/// Makes and writes an imported chain: another root, an intermediate, a leaf for `id`.
fn imported_chain(id: &SpiffeId, fixtures: &Path) -> Result<Imported> {
    let ca_params = |cn: &str| {
        let mut p = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, cn);
        p.distinguished_name = dn;
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        p.not_before = FIXTURE_TIME - Duration::days(1);
        p.not_after = FIXTURE_TIME + Duration::days(3650);
        p
    };
    let root_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let root_params = ca_params("Imported root");
    let root = root_params.self_signed(&root_key)?;
    let root_issuer = rcgen::Issuer::new(root_params, root_key);
    let int_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384)?;
    let int_params = ca_params("Imported intermediate");
    let int = int_params.signed_by(&int_key, &root_issuer)?;
    write(
        fixtures,
        "imported-intermediate.key.pem",
        &int_key.serialize_pem(),
    )?;
    let int_issuer = rcgen::Issuer::new(int_params, int_key);
    let leaf_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut leaf_params = CertificateParams::new(vec!["web.example.org".to_owned()])?;
    leaf_params
        .subject_alt_names
        .push(SanType::URI(id.to_string().try_into()?));
    leaf_params.not_before = FIXTURE_TIME - Duration::minutes(5);
    leaf_params.not_after = FIXTURE_TIME + LEAF_TTL;
    let leaf = leaf_params.signed_by(&leaf_key, &int_issuer)?;
    let imported = Imported {
        root: root.pem(),
        intermediate: int.pem(),
        leaf: leaf.pem(),
        key: leaf_key.serialize_pem(),
    };
    write(fixtures, "imported-root.pem", &imported.root)?;
    write(
        fixtures,
        "imported-intermediate.pem",
        &imported.intermediate,
    )?;
    write(fixtures, "imported-leaf.pem", &imported.leaf)?;
    write(fixtures, "imported-leaf.key.pem", &imported.key)?;
    Ok(imported)
}

/// A CSR for `key_pem` asking for DNS SANs, a CA bit, key usages and another node's
/// identity as its subject: none of it may be granted.
fn greedy_csr(key_pem: &str) -> Result<String> {
    let key = KeyPair::from_pem(key_pem)?;
    let mut params = CertificateParams::new(vec!["evil.example.com".to_owned()])?;
    params.distinguished_name.push(
        DnType::CommonName,
        "spiffe://ferry.local/service/admin/node/x",
    );
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign];
    Ok(params.serialize_request(&key)?.pem()?)
}

fn write(dir: &Path, name: &str, text: &str) -> Result<()> {
    write_bytes(dir, name, text.as_bytes())
}

fn write_bytes(dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join(name), bytes)?;
    Ok(())
}
