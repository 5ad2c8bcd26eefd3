//! Fuzz target: the validators of every name that crosses a boundary: service, tenant
//! and node names, trust domains, SPIFFE ids (`ferry_shared::ids`), metadata keys
//! (`ferry_shared::metadata`, enforced by the API and again by the agent), CA pins,
//! key types and modes, source scopes, and SAN templates (`ca::leaf`). The input is
//! split on 0xFF bytes (never in UTF-8) into strings; each is run through every
//! validator and every three in a row are assembled into a SPIFFE URI. What a validator
//! accepts must be what the code behind it relies on: one plain file name, one DNS
//! label, a URI that reads back the same.
#![no_main]

use ferry_control_plane::ca::leaf::{render_sans, template_is_valid};
use ferry_fuzz::{NODE, SERVICE, TRUST_DOMAIN};
use ferry_shared::hash::parse_fingerprint;
use ferry_shared::metadata::{MAX_METADATA_KEY_BYTES, check_metadata_key};
use ferry_shared::sources::SourceScope;
use ferry_shared::{KeyMode, KeyType, NodeId, ServiceName, SpiffeId, TenantName, TrustDomain};
use libfuzzer_sys::fuzz_target;
use std::path::{Component, Path};

fuzz_target!(|data: &[u8]| {
    let parts: Vec<String> = data
        .split(|&b| b == 0xff)
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .collect();
    for s in &parts {
        single(s);
    }
    for w in parts.windows(3) {
        identity(&w[0], &w[1], &w[2]);
    }
});

fn single(s: &str) {
    let json = serde_json::Value::String(s.to_owned());
    for (ok, de) in [
        (
            ServiceName::parse(s).map(|n| n.to_string()),
            serde_json::from_value::<ServiceName>(json.clone()).is_ok(),
        ),
        (
            TenantName::parse(s).map(|n| n.to_string()),
            serde_json::from_value::<TenantName>(json.clone()).is_ok(),
        ),
    ] {
        assert_eq!(ok.is_ok(), de, "parse and deserialize agree on {s:?}");
        if let Ok(shown) = ok {
            assert_eq!(shown, s);
            assert!(is_dns_label(s), "{s:?} accepted as a DNS label");
        }
    }
    let node = NodeId::parse(s);
    assert_eq!(node.is_ok(), serde_json::from_value::<NodeId>(json).is_ok());
    if node.is_ok() {
        assert!(s.len() <= 128 && is_one_file_name(s), "node id {s:?}");
        assert!(
            s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')),
            "node id {s:?} needs no escaping in a URI path"
        );
    }
    if TrustDomain::parse(s).is_ok() {
        assert!(s.len() <= 253 && s.split('.').all(is_dns_label), "{s:?}");
    }
    if let Ok(id) = SpiffeId::parse(s) {
        assert_eq!(id.to_string(), s, "a SPIFFE id reads back the same");
    }
    if check_metadata_key(s).is_ok() {
        assert!(
            s.len() <= MAX_METADATA_KEY_BYTES && is_one_file_name(s),
            "key {s:?}"
        );
        assert!(!s.chars().any(char::is_control), "key {s:?}");
    }
    if let Ok(kt) = s.parse::<KeyType>() {
        assert_eq!(kt.as_str(), s);
    }
    if let Ok(km) = s.parse::<KeyMode>() {
        assert_eq!(km.as_str(), s);
    }
    if let Some(scope) = SourceScope::parse(s) {
        assert_eq!(scope.as_str(), s);
    }
    if let Some(hex) = parse_fingerprint(s) {
        assert!(hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')));
        assert!(s.eq_ignore_ascii_case(&format!("sha256:{hex}")) && s.starts_with("sha256:"));
    }
    let sample = SpiffeId::parse(&format!(
        "spiffe://{TRUST_DOMAIN}/service/{SERVICE}/node/{NODE}"
    ))
    .expect("valid");
    let rendered = render_sans(s, &sample);
    if template_is_valid(s) {
        for name in rendered {
            assert!(rcgen::string::Ia5String::try_from(name).is_ok());
        }
    }
}

/// `spiffe://a/service/b/node/c` parses exactly when each part is valid and none holds
/// a '/' (which would move the parts).
fn identity(a: &str, b: &str, c: &str) {
    let uri = format!("spiffe://{a}/service/{b}/node/{c}");
    let parsed = SpiffeId::parse(&uri);
    let (td, svc, node) = (
        TrustDomain::parse(a),
        ServiceName::parse(b),
        NodeId::parse(c),
    );
    if ![a, b, c].iter().any(|p| p.contains('/')) {
        assert_eq!(
            parsed.is_ok(),
            td.is_ok() && svc.is_ok() && node.is_ok(),
            "{uri:?}"
        );
    }
    let (Ok(trust_domain), Ok(service), Ok(node)) = (td, svc, node) else {
        return;
    };
    let id = SpiffeId {
        trust_domain,
        service,
        node,
    };
    assert_eq!(parsed.as_ref().ok(), Some(&id));
    assert_eq!(id.to_string(), uri);
    for template in [a, b, c, ferry_fuzz::DEFAULT_SAN_TEMPLATE] {
        if template_is_valid(template) {
            for name in render_sans(template, &id) {
                assert!(
                    rcgen::string::Ia5String::try_from(name.clone()).is_ok(),
                    "{template:?} renders {name:?} for {id}, which cannot be issued"
                );
            }
        }
    }
}

/// One DNS label as Ferry's names use it: 1-63 of `a-z0-9-`, not starting or ending
/// with '-'.
fn is_dns_label(s: &str) -> bool {
    (1..=63).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// `s` names one entry of a directory: one normal path component, itself.
fn is_one_file_name(s: &str) -> bool {
    let mut parts = Path::new(s).components();
    matches!(parts.next(), Some(Component::Normal(p)) if p == s) && parts.next().is_none()
}
