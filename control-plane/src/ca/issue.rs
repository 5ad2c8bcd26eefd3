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
