//! Delivered certificates: the per-node leaf of a service, for a key the control plane
//! generated (`central`) or a key the node holds (`node-key`, from its CSR).

use super::{Ca, CaError, IssuedCert};
use ferry_shared::{KeyType, SpiffeId};
use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, PublicKeyData, SanType,
};
use time::{Duration, OffsetDateTime};

/// A fresh key of the service's type (central mode).
pub fn generate_key(kt: KeyType) -> Result<KeyPair, CaError> {
    Ok(match kt {
        KeyType::EcdsaP256 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?,
        KeyType::Ed25519 => KeyPair::generate_for(&rcgen::PKCS_ED25519)?,
        KeyType::Rsa2048 => {
            KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048)?
        }
    })
}

/// Renders a SAN template for one node. Node ids may hold characters DNS names do not
/// (`_`, upper case): they are folded to lower case and `-`.
pub fn render_sans(template: &str, id: &SpiffeId) -> Vec<String> {
    let node = id.node.as_str().to_ascii_lowercase().replace('_', "-");
    template
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(|t| {
            t.replace("{node}", &node)
                .replace("{service}", id.service.as_str())
                .replace("{trust_domain}", id.trust_domain.as_str())
        })
        .collect()
}

/// Whether `template` renders to valid DNS names or IP addresses (checked when a service
/// is saved).
pub fn template_is_valid(template: &str) -> bool {
    let sample = SpiffeId {
        trust_domain: ferry_shared::TrustDomain::parse("example.org")
            .unwrap_or_else(|_| unreachable!("valid literal")),
        service: ferry_shared::ServiceName::parse("svc")
            .unwrap_or_else(|_| unreachable!("valid literal")),
        node: ferry_shared::NodeId::parse("node-1")
            .unwrap_or_else(|_| unreachable!("valid literal")),
    };
    template
        .split(',')
        .all(|t| !t.contains('{') || t.contains('}'))
        && render_sans(template, &sample).iter().all(|n| {
            n.parse::<std::net::IpAddr>().is_ok()
                || (n.len() <= 253
                    && !n.contains("{")
                    && n.split('.').all(|l| {
                        !l.is_empty()
                            && l.len() <= 63
                            && l.bytes()
                                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'*')
                    }))
        })
}

impl Ca {
    /// Signs a service leaf for `public_key`: the node's SPIFFE URI plus `dns_names`,
    /// usable as TLS server and client certificate.
    pub fn issue_leaf(
        &self,
        public_key: &impl PublicKeyData,
        id: &SpiffeId,
        dns_names: &[String],
        now: OffsetDateTime,
        ttl: Duration,
    ) -> Result<IssuedCert, CaError> {
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationalUnitName, id.service.as_str());
        dn.push(
            DnType::CommonName,
            dns_names
                .first()
                .map(String::as_str)
                .unwrap_or(id.node.as_str()),
        );
        params.distinguished_name = dn;
        let mut sans = vec![SanType::URI(id.to_string().try_into()?)];
        for name in dns_names {
            sans.push(match name.parse::<std::net::IpAddr>() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName(
                    name.clone()
                        .try_into()
                        .map_err(|_| CaError::BadServerName(name.clone()))?,
                ),
            });
        }
        params.subject_alt_names = sans;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        self.sign_leaf(params, public_key, now, ttl)
    }

    /// `node-key` mode: a leaf for the key in `csr_pem`, which must be of `required` type.
    pub fn issue_leaf_from_csr(
        &self,
        csr_pem: &str,
        required: KeyType,
        id: &SpiffeId,
        dns_names: &[String],
        now: OffsetDateTime,
        ttl: Duration,
    ) -> Result<IssuedCert, CaError> {
        let csr = super::issue::parse_csr(csr_pem, required)?;
        self.issue_leaf(&csr.public_key, id, dns_names, now, ttl)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_render_per_node_and_bad_ones_are_refused() {
        let id = SpiffeId::parse("spiffe://ferry.local/service/web/node/Node_7").expect("valid");
        assert_eq!(
            render_sans("{node}.{service}.{trust_domain}, web.internal", &id),
            vec![
                "node-7.web.ferry.local".to_owned(),
                "web.internal".to_owned()
            ]
        );
        assert!(render_sans("", &id).is_empty());
        assert!(template_is_valid("{node}.{service}.{trust_domain}"));
        assert!(!template_is_valid("{nod}.x"));
        assert!(!template_is_valid("a..b"));
        assert!(!template_is_valid("under_score.{service}"));
    }

    #[test]
    fn every_key_type_gets_a_leaf() {
        let now = OffsetDateTime::now_utc();
        let id = SpiffeId::parse("spiffe://ferry.local/service/web/node/n1").expect("valid");
        let (ca, _) = Ca::generate(&id.trust_domain, now).expect("ca");
        for kt in [KeyType::EcdsaP256, KeyType::Ed25519, KeyType::Rsa2048] {
            let key = generate_key(kt).expect("key");
            let leaf = ca.issue_leaf(
                &key,
                &id,
                &["n1.web.ferry.local".into()],
                now,
                Duration::hours(1),
            );
            assert!(
                leaf.expect("issued").pem.contains("BEGIN CERTIFICATE"),
                "{kt}"
            );
        }
    }
}
