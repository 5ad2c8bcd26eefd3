//! The node's identity: its private key (generated here with rcgen), the CSR that asks the
//! control plane to certify it, what the issued certificate says, and when to renew it.
//!
//! Everything here is pure: no files, no network, and time is always an argument, so the
//! renewal math is tested with explicit instants. The private key leaves this module only
//! as a [`Secret`] PEM headed for the state dir.

use crate::config::Secret;
use ferry_shared::{KeyType, NodeId, SpiffeId};
use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use time::{Duration, OffsetDateTime};

/// What went wrong with a key or certificate.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("could not generate a {key_type} key")]
    KeyGeneration {
        key_type: KeyType,
        #[source]
        source: rcgen::Error,
    },
    #[error("{key_type} key generation is not supported by this build (rcgen + aws-lc-rs)")]
    KeyTypeUnsupported { key_type: KeyType },
    #[error("the private key is not a PEM PKCS#8 key this agent can use")]
    BadKey(#[source] rcgen::Error),
    #[error("could not create the certificate signing request")]
    Csr(#[source] rcgen::Error),
    #[error("{what} holds no PEM certificate")]
    NoCertificate { what: String },
    #[error("{what} is not a valid X.509 certificate: {reason}")]
    BadCertificate { what: String, reason: String },
    #[error("the issued certificate is not for this node: {0}")]
    Unexpected(String),
}

/// A private key that exists only on this node. `Debug` never prints key material.
#[derive(Debug)]
pub struct NodeKey(KeyPair);

impl NodeKey {
    /// Generates a fresh key of `key_type`.
    pub fn generate(key_type: KeyType) -> Result<Self, IdentityError> {
        let alg = match key_type {
            KeyType::EcdsaP256 => &rcgen::PKCS_ECDSA_P256_SHA256,
            KeyType::Ed25519 => &rcgen::PKCS_ED25519,
            KeyType::Rsa2048 => &rcgen::PKCS_RSA_SHA256,
        };
        KeyPair::generate_for(alg)
            .map(Self)
            .map_err(|source| match source {
                rcgen::Error::KeyGenerationUnavailable => {
                    IdentityError::KeyTypeUnsupported { key_type }
                }
                source => IdentityError::KeyGeneration { key_type, source },
            })
    }

    /// Whether this key is of `key_type`.
    pub fn is(&self, key_type: KeyType) -> bool {
        let alg = match key_type {
            KeyType::EcdsaP256 => &rcgen::PKCS_ECDSA_P256_SHA256,
            KeyType::Ed25519 => &rcgen::PKCS_ED25519,
            KeyType::Rsa2048 => &rcgen::PKCS_RSA_SHA256,
        };
        self.0.algorithm() == alg
    }

    /// Parses a PEM private key (the algorithm is detected).
    pub fn from_pem(pem: &Secret) -> Result<Self, IdentityError> {
        KeyPair::from_pem(pem.expose())
            .map(Self)
            .map_err(IdentityError::BadKey)
    }

    /// PEM PKCS#8, for `identity.key` and the TLS client identity only.
    pub fn to_pem(&self) -> Secret {
        Secret::new(self.0.serialize_pem())
    }

    /// The PEM CSR for this key. Subject CN = node id; no SANs are requested because the
    /// control plane decides the identity from the join token or the mTLS peer.
    pub fn csr_pem(&self, node: &NodeId) -> Result<String, IdentityError> {
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, node.as_str());
        params.distinguished_name = dn;
        params
            .serialize_request(&self.0)
            .and_then(|csr| csr.pem())
            .map_err(IdentityError::Csr)
    }

    /// True when `cert` certifies this key.
    pub fn matches(&self, cert: &CertInfo) -> bool {
        self.0.public_key_raw() == cert.public_key.as_slice()
    }
}

/// What the agent needs to know about an identity certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
    /// The first `spiffe://` URI SAN, if any.
    pub spiffe_uri: Option<String>,
    /// The subject public key bits, to match the certificate against a key.
    pub public_key: Vec<u8>,
}

impl CertInfo {
    /// Parses the first certificate of a PEM text; `what` names it in errors.
    pub fn from_pem(pem: &str, what: &str) -> Result<Self, IdentityError> {
        let der = pem_certificates(pem, what)?
            .into_iter()
            .next()
            .ok_or_else(|| IdentityError::NoCertificate {
                what: what.to_owned(),
            })?;
        Self::from_der(&der, what)
    }

    pub fn from_der(der: &[u8], what: &str) -> Result<Self, IdentityError> {
        let bad = |reason: String| IdentityError::BadCertificate {
            what: what.to_owned(),
            reason,
        };
        let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| bad(e.to_string()))?;
        let validity = cert.validity();
        let san = cert
            .subject_alternative_name()
            .map_err(|e| bad(e.to_string()))?;
        let spiffe_uri = san
            .into_iter()
            .flat_map(|ext| ext.value.general_names.iter())
            .find_map(|name| match name {
                x509_parser::extensions::GeneralName::URI(uri) if uri.starts_with("spiffe://") => {
                    Some((*uri).to_owned())
                }
                _ => None,
            });
        Ok(Self {
            not_before: validity.not_before.to_datetime(),
            not_after: validity.not_after.to_datetime(),
            spiffe_uri,
            public_key: cert.public_key().subject_public_key.data.to_vec(),
        })
    }

    /// The certificate's SPIFFE identity, checked to be this node's.
    pub fn spiffe_id_for(&self, node: &NodeId) -> Result<SpiffeId, IdentityError> {
        let uri = self
            .spiffe_uri
            .as_deref()
            .ok_or_else(|| IdentityError::Unexpected("it has no spiffe:// URI SAN".to_owned()))?;
        let id = SpiffeId::parse(uri).map_err(|e| IdentityError::Unexpected(e.to_string()))?;
        if &id.node != node {
            return Err(IdentityError::Unexpected(format!(
                "{uri} names node {}",
                id.node
            )));
        }
        Ok(id)
    }

    /// Valid at `now` (a server-clock instant).
    pub fn is_valid_at(&self, now: OffsetDateTime) -> bool {
        self.not_before <= now && now < self.not_after
    }
}

/// Every CERTIFICATE block of a PEM text, as DER; `what` names the text in errors.
pub fn pem_certificates(
    pem: &str,
    what: &str,
) -> Result<Vec<CertificateDer<'static>>, IdentityError> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| IdentityError::BadCertificate {
            what: what.to_owned(),
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(IdentityError::NoCertificate {
            what: what.to_owned(),
        });
    }
    Ok(certs)
}

/// When to renew: two thirds into the certificate's lifetime, so a failed renewal leaves
/// a third of the lifetime (20 minutes of a 1-hour certificate) for retries.
pub fn renew_at(not_before: OffsetDateTime, not_after: OffsetDateTime) -> OffsetDateTime {
    let lifetime = (not_after - not_before).max(Duration::ZERO);
    not_before + lifetime * 2 / 3
}

/// True once `now` (the server's clock, as estimated from the measured skew) has reached
/// [`renew_at`].
pub fn should_renew(
    now: OffsetDateTime,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
) -> bool {
    now >= renew_at(not_before, not_after)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::PublicKeyData;
    use time::macros::datetime;

    #[test]
    fn renewal_is_due_two_thirds_into_the_lifetime() {
        let nb = datetime!(2026-01-01 00:00 UTC);
        let na = datetime!(2026-01-01 01:00 UTC);
        assert_eq!(renew_at(nb, na), datetime!(2026-01-01 00:40 UTC));
        assert!(!should_renew(datetime!(2026-01-01 00:39:59 UTC), nb, na));
        assert!(should_renew(datetime!(2026-01-01 00:40 UTC), nb, na));
        assert!(should_renew(datetime!(2026-01-01 02:00 UTC), nb, na));
    }

    #[test]
    fn renewal_of_an_inverted_validity_is_due_at_once() {
        let nb = datetime!(2026-01-01 01:00 UTC);
        let na = datetime!(2026-01-01 00:00 UTC);
        assert_eq!(renew_at(nb, na), nb);
        assert!(should_renew(nb, nb, na));
    }

    #[test]
    fn every_key_type_generates_a_reloadable_key_and_a_csr() {
        let node = NodeId::parse("n-1").expect("valid node id");
        for &key_type in KeyType::ALL {
            let key = NodeKey::generate(key_type).expect("key generation");
            let pem = key.to_pem();
            assert!(
                pem.expose().starts_with("-----BEGIN PRIVATE KEY-----"),
                "{key_type}"
            );
            let reloaded = NodeKey::from_pem(&pem).expect("reload");
            assert_eq!(reloaded.to_pem(), pem);
            let csr = key.csr_pem(&node).expect("csr");
            let parsed = rcgen::CertificateSigningRequestParams::from_pem(&csr).expect("valid CSR");
            assert_eq!(
                parsed.public_key.der_bytes(),
                key.0.public_key_raw(),
                "{key_type}"
            );
            assert!(!format!("{key:?}").contains(pem.expose()));
        }
    }

    #[test]
    fn cert_info_reads_validity_and_spiffe_uri_and_matches_its_key() {
        let key = NodeKey::generate(KeyType::EcdsaP256).expect("key");
        let other = NodeKey::generate(KeyType::EcdsaP256).expect("key");
        let mut params = CertificateParams::default();
        let uri = "spiffe://ferry.local/service/web/node/n-1";
        params.subject_alt_names = vec![rcgen::SanType::URI(
            rcgen::string::Ia5String::try_from(uri).expect("ia5"),
        )];
        params.not_before = datetime!(2026-01-01 00:00 UTC);
        params.not_after = datetime!(2026-01-01 01:00 UTC);
        let cert = params.self_signed(&key.0).expect("self-signed");
        let info = CertInfo::from_pem(&cert.pem(), "test cert").expect("parses");
        assert_eq!(info.not_before, params.not_before);
        assert_eq!(info.not_after, params.not_after);
        assert_eq!(info.spiffe_uri.as_deref(), Some(uri));
        assert!(key.matches(&info));
        assert!(!other.matches(&info));
        assert!(key.0.subject_public_key_info().ends_with(&info.public_key));

        let node = NodeId::parse("n-1").expect("valid");
        assert_eq!(info.spiffe_id_for(&node).expect("ours").to_string(), uri);
        assert!(
            info.spiffe_id_for(&NodeId::parse("n-2").expect("valid"))
                .is_err()
        );
        assert!(info.is_valid_at(datetime!(2026-01-01 00:30 UTC)));
        assert!(!info.is_valid_at(datetime!(2026-01-01 01:00 UTC)));
        assert!(CertInfo::from_pem("no pem here", "junk").is_err());
    }
}
