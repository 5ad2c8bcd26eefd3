//! The control plane's own TLS identity: a CA per trust domain that signs nothing but
//! the control plane's server certificate.
//!
//! Agents and ferryctl verify the control plane against this CA alone (its fingerprint
//! is the pin printed with every join token). The root that signs node identities and
//! delivered certificates is never trusted for the control plane, so a certificate a
//! tenant obtains, whatever names it carries, cannot pass for the control plane.

use super::{Ca, CaError, random_serial};
use ferry_shared::TrustDomain;
use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, SanType,
};
use std::net::IpAddr;
use time::{Duration, OffsetDateTime};

/// The server certificate is backdated further than leaves: an agent whose clock is
/// slow must still reach the control plane to learn the right time (it measures skew
/// from responses).
const SERVER_BACKDATE: Duration = Duration::hours(1);

/// The AAD its sealed key is bound to, distinct from the root's, so the two sealed
/// keys cannot be swapped in the database.
pub fn seal_context(trust_domain: &TrustDomain) -> String {
    format!("control-plane-ca:{trust_domain}")
}

impl Ca {
    /// A new control-plane CA; returns it with its private key as PKCS#8 PEM.
    pub fn generate_control_plane(
        trust_domain: &TrustDomain,
        now: OffsetDateTime,
    ) -> Result<(Self, String), CaError> {
        Self::self_signed(
            trust_domain,
            format!("Ferry control-plane CA for {trust_domain}"),
            Vec::new(),
            now,
        )
    }

    /// The control plane's TLS server certificate for `names` (DNS names or IPs),
    /// signed by this (control-plane) CA. Returns (certificate chain PEM, key PEM).
    pub fn issue_server_cert(
        &self,
        names: &[String],
        now: OffsetDateTime,
        ttl: Duration,
    ) -> Result<(String, String), CaError> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(
            DnType::CommonName,
            names
                .first()
                .map(String::as_str)
                .unwrap_or("ferry-control-plane"),
        );
        params.distinguished_name = dn;
        params.subject_alt_names = names
            .iter()
            .map(|n| match n.parse::<IpAddr>() {
                Ok(ip) => Ok(SanType::IpAddress(ip)),
                Err(_) => n
                    .clone()
                    .try_into()
                    .map(SanType::DnsName)
                    .map_err(|_| CaError::BadServerName(n.clone())),
            })
            .collect::<Result<_, _>>()?;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.not_before = now - SERVER_BACKDATE;
        params.not_after = now + ttl;
        params.serial_number = Some(random_serial()?);
        params.use_authority_key_identifier_extension = true;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok((
            format!("{}{}", cert.pem(), self.cert_pem),
            key.serialize_pem(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::RootCertStore;
    use rustls::client::WebPkiServerVerifier;
    use rustls::client::danger::ServerCertVerifier;
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
    use std::sync::Arc;

    fn verifier(anchor: &Ca) -> Arc<WebPkiServerVerifier> {
        let mut roots = RootCertStore::empty();
        roots.add(anchor.cert_der().clone()).expect("anchor");
        WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            Arc::new(rustls::crypto::aws_lc_rs::default_provider()),
        )
        .build()
        .expect("verifier")
    }

    fn verify(anchor: &Ca, chain_pem: &str, name: &str) -> Result<(), rustls::Error> {
        let chain: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(chain_pem.as_bytes())
                .collect::<Result<_, _>>()
                .expect("chain");
        let name = ServerName::try_from(name.to_owned()).expect("name");
        verifier(anchor)
            .verify_server_cert(&chain[0], &chain[1..], &name, &[], UnixTime::now())
            .map(drop)
    }

    #[test]
    fn only_the_control_plane_ca_vouches_for_the_control_plane() {
        // Arrange: a trust domain's root (node certificates) and control-plane CA.
        let now = OffsetDateTime::now_utc();
        let td = TrustDomain::parse("ferry.local").expect("td");
        let (root, _) = Ca::generate(&td, now).expect("root");
        let (cp_ca, _) = Ca::generate_control_plane(&td, now).expect("cp ca");
        assert_ne!(root.fingerprint(), cp_ca.fingerprint());
        let (server_chain, _) = cp_ca
            .issue_server_cert(&["localhost".into()], now, Duration::days(7))
            .expect("server cert");
        // A tenant's delivered certificate for the control plane's own name, as the
        // root would sign it if a tenant could ask for any name.
        let tenant_key = KeyPair::generate().expect("key");
        let id =
            ferry_shared::SpiffeId::parse("spiffe://ferry.local/service/evil/node/n1").expect("id");
        let tenant = root
            .issue_leaf(
                &tenant_key,
                &id,
                &["localhost".into()],
                now,
                Duration::hours(1),
            )
            .expect("leaf");
        let tenant_chain = format!("{}{}", tenant.pem, root.bundle_pem());

        // Act + assert: the real server verifies, the tenant's certificate does not.
        verify(&cp_ca, &server_chain, "localhost").expect("the real control plane");
        let refused = verify(&cp_ca, &tenant_chain, "localhost");
        assert!(
            refused.is_err(),
            "a tenant leaf passed for the control plane"
        );
    }
}
