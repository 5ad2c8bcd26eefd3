//! Fuzz target: what the agent does with the body of a bundle poll before installing
//! anything. Decode it as `Client::poll_bundle` does (`BundleResponse` JSON), then, unless
//! the bundle only asks for a CSR, `bundle::verify` it at the server's time with the key
//! kept on the node, as `delivery` does. Raw mode: the body bytes, checked as sent and
//! again with the content hash made right. Structured mode: a bundle assembled from the
//! fixtures with edited DER, metadata and clock, so the checks behind the hash (metadata
//! keys, certificate, key match, chain, expiry) see near-valid input. A bundle that
//! passes must keep what `verify` promises to the installer.
#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use ferry_agent::Secret;
use ferry_agent::bundle::verify;
use ferry_agent::identity::{CertInfo, NodeKey};
use ferry_fuzz::fixtures::{self, NODE_KEY};
use ferry_fuzz::material::Material;
use ferry_fuzz::{fixture_time_plus, split_mode};
use ferry_shared::api::{Bundle, BundleResponse};
use ferry_shared::hash::hash_of;
use libfuzzer_sys::fuzz_target;
use std::collections::BTreeMap;
use std::path::{Component, Path};
use time::OffsetDateTime;

fuzz_target!(init: self_check(), |data: &[u8]| match split_mode(data) {
    None => {}
    Some(Ok(body)) => raw(body),
    Some(Err(rest)) => {
        if let Ok(case) = Case::arbitrary_take_rest(Unstructured::new(rest)) {
            structured(case);
        }
    }
});

/// A bundle built from the fixtures.
#[derive(Arbitrary, Debug)]
struct Case {
    certificate: Material,
    chain: Material,
    trust_bundle: Material,
    /// Central mode carries the key; node-key mode does not.
    private_key: Option<Material>,
    /// The keys kept on the node (pending, then installed).
    node_keys: Vec<Material>,
    metadata: Vec<(String, Meta)>,
    /// Keep the hash of an empty bundle instead of computing the right one.
    stale_hash: bool,
    /// Server time, in seconds from the fixtures' issue time.
    server_time: i32,
}

/// A metadata value.
#[derive(Arbitrary, Debug)]
enum Meta {
    Text(String),
    Integer(i64),
    Float(f64),
    Flag(bool),
    Null,
    List(Vec<String>),
}

impl Meta {
    fn json(&self) -> serde_json::Value {
        match self {
            Meta::Text(s) => s.as_str().into(),
            Meta::Integer(n) => (*n).into(),
            Meta::Float(f) => (*f).into(),
            Meta::Flag(b) => (*b).into(),
            Meta::Null => serde_json::Value::Null,
            Meta::List(items) => items.clone().into(),
        }
    }
}

/// The harness still reaches a verified bundle: a fixture leaf with its key under
/// Ferry's CA passes, as it does signed again without edits (else the fixtures rotted).
fn self_check() {
    let leaf = fixtures::CERTS[1];
    for certificate in [
        Material::Fixture(fixtures::index_of(leaf)),
        Material::Resigned(fixtures::signed_index_of(leaf), Vec::new()),
    ] {
        let case = Case {
            certificate,
            chain: Material::Empty,
            trust_bundle: Material::Fixture(fixtures::index_of(fixtures::CA_CERT)),
            private_key: Some(Material::Fixture(fixtures::index_of(fixtures::KEYS[1]))),
            node_keys: Vec::new(),
            metadata: vec![("env".to_owned(), Meta::Text("prod".to_owned()))],
            stale_hash: false,
            server_time: 3600,
        };
        let bundle = bundle_of(&case);
        if let Err(err) = verify(&bundle, &[], fixture_time_plus(3600)) {
            panic!("fuzz harness self-check: {case:?} is refused: {err}");
        }
    }
}

fn raw(body: &[u8]) {
    let Ok(answer) = serde_json::from_slice::<BundleResponse>(body) else {
        return;
    };
    let mut bundle = answer.bundle;
    if bundle.csr_required {
        // The agent makes a key and sends a CSR; nothing of this bundle is installed.
        return;
    }
    let keys = [Secret::new(NODE_KEY)];
    check(&bundle, &keys, answer.server_time);
    bundle.content_hash = hash_of(&bundle);
    check(&bundle, &keys, answer.server_time);
}

fn structured(case: Case) {
    let keys: Vec<Secret> = case
        .node_keys
        .iter()
        .map(|m| Secret::new(m.render()))
        .collect();
    check(
        &bundle_of(&case),
        &keys,
        fixture_time_plus(case.server_time),
    );
}

fn bundle_of(case: &Case) -> Bundle {
    let metadata: BTreeMap<String, serde_json::Value> = case
        .metadata
        .iter()
        .map(|(k, v)| (k.clone(), v.json()))
        .collect();
    let mut bundle = Bundle {
        version: 1,
        content_hash: String::new(),
        certificate: case.certificate.render(),
        chain: case.chain.render(),
        private_key: case.private_key.as_ref().map(Material::render),
        trust_bundle: case.trust_bundle.render(),
        metadata,
        not_after: None,
        csr_required: false,
        csr_key_type: None,
        alert_before_seconds: None,
    };
    bundle.content_hash = if case.stale_hash {
        ferry_shared::hash::bundle_content_hash("", "", None, "", "{}")
    } else {
        hash_of(&bundle)
    };
    bundle
}

/// Verifies `bundle`; when it passes, checks what the installer relies on.
fn check(bundle: &Bundle, node_keys: &[Secret], server_now: OffsetDateTime) {
    let Ok(verified) = verify(bundle, node_keys, server_now) else {
        return;
    };
    assert_eq!(verified.content_hash, hash_of(bundle), "hash checked");
    assert!(verified.cert_not_after > server_now, "not expired");
    let files = &verified.files;
    assert_eq!(files.cert, bundle.certificate);
    assert_eq!(
        files.metadata_json,
        serde_json::to_string(&bundle.metadata).expect("serializes"),
        "metadata.json is what was hashed"
    );
    for (key, _) in &files.metadata {
        let mut parts = Path::new(key).components();
        assert!(
            matches!(parts.next(), Some(Component::Normal(p)) if p == key.as_str())
                && parts.next().is_none(),
            "metadata key {key:?} is not one plain file name"
        );
    }
    match (&bundle.private_key, verified.node_key) {
        (Some(pem), None) => assert_eq!(files.key.expose(), pem),
        (None, Some(i)) => assert_eq!(files.key.expose(), node_keys[i].expose()),
        other => panic!("key source mixed up: {other:?}"),
    }
    let cert = CertInfo::from_pem(&files.cert, "cert").expect("verified certificate parses");
    let key = NodeKey::from_pem(&files.key).expect("verified key parses");
    assert!(key.matches(&cert), "key certifies the certificate");
    assert!(!files.bundle_pem().expose().is_empty());
}
