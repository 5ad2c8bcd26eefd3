//! Identity certificates from node CSRs.
//!
//! The CSR proves possession of the node's key and nothing else: subject, SANs and
//! extensions are built here from the verified enrollment, never copied from the CSR.

use super::{Ca, CaError};
use ferry_shared::{KeyType, SpiffeId};
use rcgen::{
    CertificateParams, CertificateSigningRequestParams, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyUsagePurpose, SanType,
};
use rustls_pki_types::CertificateSigningRequestDer;
use rustls_pki_types::pem::PemObject;
use time::{Duration, OffsetDateTime};
use x509_parser::oid_registry::{
    OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_PKCS1_RSAENCRYPTION, OID_SIG_ED25519,
};
use x509_parser::prelude::{FromDer, X509CertificationRequest};
use x509_parser::public_key::PublicKey;

/// A signed certificate and what the store needs to know about it.
#[derive(Debug, Clone)]
pub struct IssuedCert {
    pub pem: String,
    /// Lowercase hex of the serial number, as x509-parser prints it without colons.
    pub serial: String,
    pub not_after: OffsetDateTime,
}

/// The key type of the public key inside a CSR, if it is one Ferry supports.
pub fn csr_key_type(csr_der: &[u8]) -> Result<KeyType, CaError> {
    let (_, req) = X509CertificationRequest::from_der(csr_der)
        .map_err(|_| CaError::CsrRejected("not a PKCS#10 certificate request".into()))?;
    let spki = &req.certification_request_info.subject_pki;
    let alg = &spki.algorithm.algorithm;
    let found = if *alg == OID_KEY_TYPE_EC_PUBLIC_KEY {
        let curve = spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.as_oid().ok());
        if curve.as_ref() == Some(&OID_EC_P256) {
            Some(KeyType::EcdsaP256)
        } else {
            None
        }
    } else if *alg == OID_SIG_ED25519 {
        Some(KeyType::Ed25519)
    } else if *alg == OID_PKCS1_RSAENCRYPTION {
        match spki.parsed() {
            Ok(PublicKey::RSA(k)) if k.key_size() == 2048 => Some(KeyType::Rsa2048),
            _ => None,
        }
    } else {
        None
    };
    found.ok_or_else(|| CaError::CsrRejected(format!("unsupported public key algorithm {alg}")))
}

/// What names a node's key across enrollments: the SHA-256 (hex) of the CSR's
/// SubjectPublicKeyInfo. A re-enrollment with the same key is the same node coming
/// back; a different key under an existing node id is a replacement.
pub fn csr_key_id(csr_pem: &str) -> Result<String, CaError> {
    let der = csr_der(csr_pem)?;
    let (_, req) = X509CertificationRequest::from_der(&der)
        .map_err(|_| CaError::CsrRejected("not a PKCS#10 certificate request".into()))?;
    Ok(ferry_shared::hash::sha256_hex(
        req.certification_request_info.subject_pki.raw,
    ))
}

pub(crate) fn parse_csr(
    csr_pem: &str,
    required: KeyType,
) -> Result<CertificateSigningRequestParams, CaError> {
    let der = csr_der(csr_pem)?;
    let found = csr_key_type(&der)?;
    if found != required {
        return Err(CaError::KeyTypeNotAllowed {
            found: found.to_string(),
            required,
        });
    }
    CertificateSigningRequestParams::from_der(&der)
        .map_err(|e| CaError::CsrRejected(format!("CSR does not verify: {e}")))
}

/// DER of a PEM `CERTIFICATE REQUEST`.
pub(crate) fn csr_der(pem: &str) -> Result<CertificateSigningRequestDer<'static>, CaError> {
    CertificateSigningRequestDer::from_pem_slice(pem.as_bytes())
        .map_err(|_| CaError::CsrRejected("CSR is not PEM (BEGIN CERTIFICATE REQUEST)".into()))
}

impl Ca {
    /// Signs a node identity certificate for `id` from `csr_pem`, whose key must be of
    /// `required` type. Valid from `now - BACKDATE` to `now + ttl`.
    pub fn issue_identity(
        &self,
        csr_pem: &str,
        id: &SpiffeId,
        required: KeyType,
        now: OffsetDateTime,
        ttl: Duration,
    ) -> Result<IssuedCert, CaError> {
        let csr = parse_csr(csr_pem, required)?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationalUnitName, id.service.as_str());
        dn.push(DnType::CommonName, id.node.as_str());
        params.distinguished_name = dn;
        params.subject_alt_names = vec![SanType::URI(id.to_string().try_into()?)];
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.sign_leaf(params, &csr.public_key, now, ttl)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ca::BACKDATE;
    use ferry_shared::{NodeId, ServiceName, TrustDomain};
    use rcgen::KeyPair;
    use x509_parser::prelude::{GeneralName, ParsedExtension, X509Certificate};

    fn spiffe() -> SpiffeId {
        SpiffeId {
            trust_domain: TrustDomain::parse("ferry.local").expect("valid"),
            service: ServiceName::parse("web").expect("valid"),
            node: NodeId::parse("n1").expect("valid"),
        }
    }

    fn csr_for(key: &KeyPair, asked_san: &str) -> String {
        let params = CertificateParams::new(vec![asked_san.to_owned()]).expect("params");
        params
            .serialize_request(key)
            .expect("csr")
            .pem()
            .expect("pem")
    }

    #[test]
    fn identity_carries_only_the_spiffe_uri_whatever_the_csr_asks() {
        let now = OffsetDateTime::now_utc();
        let (ca, _) = Ca::generate(&spiffe().trust_domain, now).expect("ca");
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
        let issued = ca
            .issue_identity(
                &csr_for(&key, "evil.example.com"),
                &spiffe(),
                KeyType::EcdsaP256,
                now,
                Duration::hours(24),
            )
            .expect("issued");
        let der = rustls_pki_types::CertificateDer::from_pem_slice(issued.pem.as_bytes())
            .expect("certificate PEM");
        let (_, cert) = X509Certificate::from_der(&der).expect("parses");
        let sans: Vec<String> = cert
            .extensions()
            .iter()
            .filter_map(|e| match e.parsed_extension() {
                ParsedExtension::SubjectAlternativeName(san) => {
                    Some(san.general_names.iter().map(|g| match g {
                        GeneralName::URI(u) => format!("uri:{u}"),
                        other => format!("{other:?}"),
                    }))
                }
                _ => None,
            })
            .flatten()
            .collect();
        assert_eq!(
            sans,
            vec!["uri:spiffe://ferry.local/service/web/node/n1".to_owned()]
        );
        assert_eq!(
            cert.tbs_certificate.raw_serial_as_string().replace(':', ""),
            issued.serial
        );
        assert!(cert.validity().not_before.timestamp() <= (now - BACKDATE).unix_timestamp());
    }

    #[test]
    fn csr_of_the_wrong_key_type_or_signature_is_refused() {
        let now = OffsetDateTime::now_utc();
        let (ca, _) = Ca::generate(&spiffe().trust_domain, now).expect("ca");
        let ed = KeyPair::generate_for(&rcgen::PKCS_ED25519).expect("key");
        let err = ca.issue_identity(
            &csr_for(&ed, "n1"),
            &spiffe(),
            KeyType::EcdsaP256,
            now,
            Duration::hours(1),
        );
        assert!(
            matches!(err, Err(CaError::KeyTypeNotAllowed { .. })),
            "{err:?}"
        );

        let p256 = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
        let pem = csr_for(&p256, "n1");
        let mut der = csr_der(&pem).expect("pem").to_vec();
        let last = der.len() - 1;
        der[last] ^= 0x01; // corrupt the signature
        let tampered = pem::encode_csr(&der);
        let err = ca.issue_identity(
            &tampered,
            &spiffe(),
            KeyType::EcdsaP256,
            now,
            Duration::hours(1),
        );
        assert!(matches!(err, Err(CaError::CsrRejected(_))), "{err:?}");
        assert!(matches!(
            ca.issue_identity(
                "garbage",
                &spiffe(),
                KeyType::EcdsaP256,
                now,
                Duration::hours(1)
            ),
            Err(CaError::CsrRejected(_))
        ));
    }

    /// Found by fuzzing (tests/fuzz, `ca_csr`): a CSR whose key algorithm is tagged
    /// OCTET STRING instead of OBJECT IDENTIFIER, signed by its key, is read leniently.
    /// That is harmless only because the CA never copies the CSR's encoding: the
    /// certificate holds the same key, encoded afresh.
    #[test]
    fn a_leniently_encoded_csr_key_is_certified_in_canonical_form() {
        let now = OffsetDateTime::now_utc();
        let (ca, _) = Ca::generate(&spiffe().trust_domain, now).expect("ca");
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
        let der = csr_der(&csr_for(&key, "n1")).expect("pem").to_vec();
        let (info, alg) = der::split_signed(&der);
        let mut info = info.to_vec();
        let ec_public_key = [0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
        let at = info
            .windows(ec_public_key.len())
            .position(|w| w == ec_public_key)
            .expect("the key's algorithm");
        info[at] = 0x04; // OCTET STRING
        let signature = rcgen::SigningKey::sign(&key, &info).expect("signs");
        let lenient = pem::encode_csr(&der::join_signed(&info, alg, &signature));
        let issued = ca.issue_identity(
            &lenient,
            &spiffe(),
            KeyType::EcdsaP256,
            now,
            Duration::hours(1),
        );
        match issued {
            Ok(issued) => {
                let der = rustls_pki_types::CertificateDer::from_pem_slice(issued.pem.as_bytes())
                    .expect("certificate PEM");
                let (_, cert) = X509Certificate::from_der(&der).expect("parses");
                assert_eq!(
                    cert.public_key().raw,
                    rcgen::PublicKeyData::subject_public_key_info(&key).as_slice()
                );
            }
            // A stricter parser refusing it is as good.
            Err(CaError::CsrRejected(_)) => {}
            Err(other) => panic!("{other:?}"),
        }
    }

    /// Just enough DER to re-sign an edited CSR: `SEQUENCE { info, alg, BIT STRING }`.
    mod der {
        fn tlv(der: &[u8]) -> (usize, usize) {
            let (header, len) = match der[1] {
                n if n < 0x80 => (2, usize::from(n)),
                0x81 => (3, usize::from(der[2])),
                _ => (4, usize::from(der[2]) << 8 | usize::from(der[3])),
            };
            (header, header + len)
        }
        fn length(n: usize) -> Vec<u8> {
            match n {
                0..0x80 => vec![n as u8],
                0x80..0x100 => vec![0x81, n as u8],
                _ => vec![0x82, (n >> 8) as u8, n as u8],
            }
        }
        pub fn split_signed(der: &[u8]) -> (&[u8], &[u8]) {
            let (header, total) = tlv(der);
            let body = &der[header..total];
            let (_, info) = tlv(body);
            let (_, alg) = tlv(&body[info..]);
            (&body[..info], &body[info..info + alg])
        }
        pub fn join_signed(info: &[u8], alg: &[u8], signature: &[u8]) -> Vec<u8> {
            let mut bits = vec![0x03];
            bits.extend(length(signature.len() + 1));
            bits.push(0);
            bits.extend_from_slice(signature);
            let mut out = vec![0x30];
            out.extend(length(info.len() + alg.len() + bits.len()));
            out.extend([info, alg, &bits].concat());
            out
        }
    }

    mod pem {
        use base64::Engine;
        pub fn encode_csr(der: &[u8]) -> String {
            let b64 = base64::engine::general_purpose::STANDARD.encode(der);
            let lines: Vec<&str> = b64
                .as_bytes()
                .chunks(64)
                .map(|c| std::str::from_utf8(c).expect("ascii"))
                .collect();
            format!(
                "-----BEGIN CERTIFICATE REQUEST-----\n{}\n-----END CERTIFICATE REQUEST-----\n",
                lines.join("\n")
            )
        }
    }
}
