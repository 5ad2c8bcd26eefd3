//! Verification of delivered bundles: hashes, metadata keys, keys, chains, expiry.

use super::*;
use crate::testkit::TestCa;
use rcgen::KeyPair;
use serde_json::json;
use time::Duration;
use time::macros::datetime;

const SPIFFE: &str = "spiffe://ferry.local/service/web/node/n-1";
const NOW: OffsetDateTime = datetime!(2026-03-01 12:00 UTC);

/// A central-mode bundle for a fresh key, its certificate signed by `signer`, trusting
/// `trust` (PEM), with a correct content hash.
fn central(signer: &TestCa, trust: &str, chain: &str, not_after: OffsetDateTime) -> Bundle {
    let key = KeyPair::generate().expect("key");
    let mut b = Bundle {
        version: 4,
        content_hash: String::new(),
        certificate: signer.leaf(&key, SPIFFE, NOW - Duration::minutes(5), not_after),
        chain: chain.to_owned(),
        private_key: Some(key.serialize_pem()),
        trust_bundle: trust.to_owned(),
        metadata: [
            ("env".to_owned(), json!("prod")),
            ("tags".to_owned(), json!(["a", "b"])),
        ]
        .into_iter()
        .collect(),
        not_after: Some(not_after),
        csr_required: false,
        csr_key_type: None,
        alert_before_seconds: None,
    };
    b.content_hash = hash_of(&b);
    b
}

fn rehash(mut b: Bundle) -> Bundle {
    b.content_hash = hash_of(&b);
    b
}

#[test]
fn a_bundle_signed_by_its_trust_bundle_becomes_its_files() {
    let ca = TestCa::new("ca");
    let b = central(&ca, &ca.cert_pem, "", NOW + Duration::hours(1));
    let v = verify(&b, &[], NOW).expect("valid");
    assert_eq!((v.version, v.node_key), (4, None));
    assert_eq!(v.cert_not_after, NOW + Duration::hours(1));
    assert_eq!(v.files.cert, b.certificate);
    assert_eq!(Some(v.files.key.expose()), b.private_key.as_deref());
    assert_eq!(v.files.metadata_json, r#"{"env":"prod","tags":["a","b"]}"#);
    assert_eq!(
        v.files.metadata,
        [
            ("env".to_owned(), b"prod".to_vec()),
            ("tags".to_owned(), br#"["a","b"]"#.to_vec())
        ]
    );
    let pem = v.files.bundle_pem();
    assert!(pem.expose().starts_with("-----BEGIN PRIVATE KEY-----"));
    assert!(pem.expose().ends_with(&b.certificate));
    assert!(
        !format!("{v:?}").contains("PRIVATE KEY"),
        "Debug never shows the key"
    );
}

#[test]
fn a_leaf_chains_through_an_intermediate_of_the_chain() {
    let root = TestCa::new("root");
    let mid = root.intermediate("intermediate");
    let b = central(
        &mid,
        &root.cert_pem,
        &mid.cert_pem,
        NOW + Duration::hours(1),
    );
    verify(&b, &[], NOW).expect("chains through the intermediate");

    let without_chain = rehash(Bundle {
        chain: String::new(),
        ..b
    });
    let err = verify(&without_chain, &[], NOW).expect_err("no path to the root");
    assert!(matches!(err, BundleError::Untrusted(_)), "{err}");
}

#[test]
fn refusals_name_what_is_wrong() {
    let ca = TestCa::new("ca");
    let other = TestCa::new("other");
    let good = central(&ca, &ca.cert_pem, "", NOW + Duration::hours(1));

    let tampered = Bundle {
        certificate: good.certificate.replace('A', "B"),
        ..good.clone()
    };
    let err = verify(&tampered, &[], NOW).expect_err("hash");
    assert!(matches!(err, BundleError::HashMismatch { .. }), "{err}");

    let foreign = central(&other, &ca.cert_pem, "", NOW + Duration::hours(1));
    let err = verify(&foreign, &[], NOW).expect_err("untrusted");
    assert!(
        err.to_string()
            .contains("does not chain to the trust bundle"),
        "{err}"
    );

    let swapped_key = rehash(Bundle {
        private_key: Some(KeyPair::generate().expect("key").serialize_pem()),
        ..good.clone()
    });
    assert!(matches!(
        verify(&swapped_key, &[], NOW),
        Err(BundleError::KeyMismatch)
    ));

    // Valid on the node's clock, expired on the server's: the server's clock wins.
    let err = verify(&good, &[], NOW + Duration::hours(2)).expect_err("expired");
    assert!(err.to_string().contains("expired"), "{err}");

    let not_pem = rehash(Bundle {
        certificate: "garbage".to_owned(),
        ..good
    });
    assert!(matches!(
        verify(&not_pem, &[], NOW),
        Err(BundleError::Certificate(_))
    ));
}

#[test]
fn node_key_bundles_use_the_key_kept_on_the_node() {
    let ca = TestCa::new("ca");
    let node_key = KeyPair::generate().expect("key");
    let other_key = Secret::new(KeyPair::generate().expect("key").serialize_pem());
    let b = rehash(Bundle {
        certificate: ca.leaf(&node_key, SPIFFE, NOW, NOW + Duration::hours(1)),
        private_key: None,
        ..central(&ca, &ca.cert_pem, "", NOW + Duration::hours(1))
    });
    let keys = [other_key.clone(), Secret::new(node_key.serialize_pem())];
    let v = verify(&b, &keys, NOW).expect("the second key matches");
    assert_eq!(v.node_key, Some(1));
    assert_eq!(v.files.key, keys[1]);
    let err = verify(&b, &[other_key], NOW).expect_err("no matching key");
    assert!(matches!(err, BundleError::NoMatchingKey), "{err}");
}

#[test]
fn metadata_keys_must_be_safe_file_names() {
    let long = "k".repeat(129);
    for bad in [
        "",
        "a/b",
        "..",
        "a..b",
        ".",
        "a\0b",
        "line\nbreak",
        long.as_str(),
    ] {
        assert!(check_metadata_key(bad).is_err(), "{bad:?} accepted");
    }
    for good in [
        "env",
        "tls.crt",
        ".hidden",
        "k".repeat(128).as_str(),
        "ünïcode",
    ] {
        assert_eq!(check_metadata_key(good), Ok(()), "{good:?} refused");
    }

    let ca = TestCa::new("ca");
    let mut b = central(&ca, &ca.cert_pem, "", NOW + Duration::hours(1));
    b.metadata.insert("../../etc/passwd".to_owned(), json!("x"));
    let err = verify(&rehash(b), &[], NOW).expect_err("refused before anything is written");
    assert!(
        err.to_string()
            .starts_with("metadata key \"../../etc/passwd\" is refused"),
        "{err}"
    );
}
