//! Fuzz target: the CA's handling of a node's CSR, the way the control plane runs it.
//! `Ca::issue_identity` under the service's key type is what enroll and renew do with
//! `EnrollRequest.csr` / `RenewRequest.csr`; `Ca::issue_leaf_from_csr` with the
//! service's SAN template is what a node-key CSR (`POST /v1/agent/csr`) gets. Raw mode:
//! an enroll body (JSON, names validated by its types), tried under every key type.
//! Structured mode: a CSR built from the fixtures with edited DER, with any valid names,
//! key type, saved template, clock and TTL. A certificate that is issued must hold the
//! CSR's key, name exactly the enrolled identity (and the template's DNS names), not be
//! a CA, and verify under the CA: the agent must accept it as its identity.
#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use ferry_agent::identity::CertInfo;
use ferry_control_plane::ca::leaf::{render_sans, template_is_valid};
use ferry_control_plane::ca::{Ca, CaError, IssuedCert};
use ferry_fuzz::fixtures::{self, CA_CERT, CA_KEY};
use ferry_fuzz::material::Material;
use ferry_fuzz::{
    DEFAULT_SAN_TEMPLATE, FIXTURE_TIME, NODE, SERVICE, TRUST_DOMAIN, fixture_time_plus, split_mode,
};
use ferry_shared::api::EnrollRequest;
use ferry_shared::{KeyType, NodeId, ServiceName, SpiffeId, TrustDomain};
use libfuzzer_sys::fuzz_target;
use rustls_pki_types::CertificateSigningRequestDer;
use rustls_pki_types::pem::PemObject;
use std::sync::OnceLock;
use time::{Duration, OffsetDateTime};
use x509_parser::prelude::{AlgorithmIdentifier, FromDer, GeneralName, X509CertificationRequest};

fuzz_target!(init: self_check(), |data: &[u8]| match split_mode(data) {
    None => {}
    Some(Ok(body)) => raw(body),
    Some(Err(rest)) => {
        if let Ok(case) = Case::arbitrary_take_rest(Unstructured::new(rest)) {
            structured(case);
        }
    }
});

/// A CSR and the service it is enrolled into.
#[derive(Arbitrary, Debug)]
struct Case {
    csr: Material,
    key_type: u8,
    service: String,
    node: String,
    san_template: String,
    ttl_seconds: u32,
    /// The CA's clock, in seconds from the fixtures' issue time.
    now: i32,
}

/// The fixtures' CA, loaded as `startup` loads the stored one.
fn ca() -> &'static Ca {
    static CA: OnceLock<Ca> = OnceLock::new();
    CA.get_or_init(|| {
        let td = TrustDomain::parse(TRUST_DOMAIN).expect("valid trust domain");
        Ca::load(&td, CA_CERT, CA_KEY).expect("fixture CA loads")
    })
}

/// The harness still reaches issuance: the agent's CSRs, as made and signed again
/// without edits, are issued under their key type (else the fixtures rotted).
fn self_check() {
    let id = SpiffeId::parse("spiffe://ferry.local/service/web/node/node-1").expect("valid");
    let agent_csrs = [KeyType::EcdsaP256, KeyType::Ed25519, KeyType::Rsa2048];
    for (fixture, key_type) in fixtures::CSRS.iter().zip(agent_csrs) {
        for csr in [
            Material::Fixture(fixtures::index_of(fixture)),
            Material::Resigned(fixtures::signed_index_of(fixture), Vec::new()),
        ] {
            let pem = csr.render();
            if let Err(err) =
                ca().issue_identity(&pem, &id, key_type, FIXTURE_TIME, Duration::hours(1))
            {
                panic!("fuzz harness self-check: {csr:?} is refused: {err}");
            }
        }
    }
}

fn raw(body: &[u8]) {
    let Ok(req) = serde_json::from_slice::<EnrollRequest>(body) else {
        return;
    };
    let id = SpiffeId {
        trust_domain: ca().trust_domain().clone(),
        service: req.service,
        node: req.node_id,
    };
    for &key_type in KeyType::ALL {
        issue(
            &req.csr,
            &id,
            key_type,
            DEFAULT_SAN_TEMPLATE,
            FIXTURE_TIME,
            Duration::hours(24),
        );
    }
}

fn structured(case: Case) {
    let id = SpiffeId {
        trust_domain: ca().trust_domain().clone(),
        service: ServiceName::parse(&case.service)
            .unwrap_or_else(|_| ServiceName::parse(SERVICE).expect("valid")),
        node: NodeId::parse(&case.node).unwrap_or_else(|_| NodeId::parse(NODE).expect("valid")),
    };
    // A service is saved only with a valid template.
    let template = if template_is_valid(&case.san_template) {
        case.san_template.as_str()
    } else {
        DEFAULT_SAN_TEMPLATE
    };
    let key_type = KeyType::ALL[usize::from(case.key_type) % KeyType::ALL.len()];
    issue(
        &case.csr.render(),
        &id,
        key_type,
        template,
        fixture_time_plus(case.now),
        Duration::seconds(i64::from(case.ttl_seconds)),
    );
}

/// Runs both CSR paths and checks whatever they issue.
fn issue(
    csr: &str,
    id: &SpiffeId,
    key_type: KeyType,
    template: &str,
    now: OffsetDateTime,
    ttl: Duration,
) {
    if let Ok(cert) = ca().issue_identity(csr, id, key_type, now, ttl) {
        check_issued(&cert, csr, id, &[], now + ttl);
    }
    let dns = render_sans(template, id);
    match ca().issue_leaf_from_csr(csr, key_type, id, &dns, now, ttl) {
        Ok(cert) => check_issued(&cert, csr, id, &dns, now + ttl),
        Err(CaError::BadServerName(name)) => {
            panic!("saved template {template:?} rendered {name:?}, which cannot be issued")
        }
        Err(_) => {}
    }
}

/// What an issued certificate must be, whatever the CSR asked for.
fn check_issued(
    issued: &IssuedCert,
    csr: &str,
    id: &SpiffeId,
    dns: &[String],
    not_after: OffsetDateTime,
) {
    let (_, pem) = x509_parser::pem::parse_x509_pem(issued.pem.as_bytes()).expect("issued PEM");
    let cert = pem.parse_x509().expect("issued certificate parses");
    let csr_der = CertificateSigningRequestDer::from_pem_slice(csr.as_bytes()).expect("CSR PEM");
    let (_, req) = X509CertificationRequest::from_der(&csr_der).expect("CSR parses");
    // The same key: algorithm, its parameters (the curve) and the key bits. Not the same
    // bytes: the CA encodes the key afresh, whatever encoding the CSR used.
    let (issued_key, asked_key) = (
        cert.public_key(),
        &req.certification_request_info.subject_pki,
    );
    assert_eq!(
        issued_key.algorithm.algorithm,
        asked_key.algorithm.algorithm
    );
    assert_eq!(
        curve(&issued_key.algorithm),
        curve(&asked_key.algorithm),
        "the same curve"
    );
    assert_eq!(
        issued_key.subject_public_key.data, asked_key.subject_public_key.data,
        "the certificate holds the CSR's key"
    );
    let (_, ca_pem) = x509_parser::pem::parse_x509_pem(CA_CERT.as_bytes()).expect("CA PEM");
    let ca_cert = ca_pem.parse_x509().expect("CA parses");
    cert.verify_signature(Some(ca_cert.public_key()))
        .expect("signed by the CA");
    assert_eq!(cert.issuer(), ca_cert.subject());
    assert!(!cert.is_ca(), "a node certificate is never a CA");
    let mut expected = vec![format!("uri:{id}")];
    expected.extend(dns.iter().map(|d| format!("dns:{d}")));
    let sans: Vec<String> = cert
        .subject_alternative_name()
        .expect("one SAN extension")
        .map(|san| {
            san.value
                .general_names
                .iter()
                .map(|name| match name {
                    GeneralName::URI(u) => format!("uri:{u}"),
                    GeneralName::DNSName(d) => format!("dns:{d}"),
                    other => format!("{other:?}"),
                })
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(sans, expected, "SANs come from the enrollment only");
    assert_eq!(
        cert.raw_serial_as_string().replace(':', ""),
        issued.serial,
        "the stored serial is the certificate's"
    );
    assert_eq!(cert.validity().not_after.to_datetime(), not_after);
    assert_eq!(issued.not_after, not_after);
    let info = CertInfo::from_pem(&issued.pem, "issued").expect("the agent parses it");
    assert_eq!(
        info.spiffe_id_for(&id.node).expect("the agent accepts it"),
        *id
    );
}

/// The parameters of a key algorithm as an OID (an EC key's curve), if they are one.
fn curve(alg: &AlgorithmIdentifier<'_>) -> Option<String> {
    let params = alg.parameters.as_ref()?;
    params.as_oid().ok().map(|oid| oid.to_id_string())
}
