//! The internal certificate authority: pure issuance, no database and no HTTP.
//!
//! Every function takes `now` as an argument so validity periods are testable. The
//! root CA is generated once per trust domain (persisted, sealed, by `startup`);
//! identity certificates are signed from CSRs whose key never leaves the node
//! ([`issue`]). The control plane's own server certificate comes from a CA of its own
//! that signs nothing else ([`server`]), so no certificate a tenant can obtain is
//! trusted by agents and ferryctl for the control plane.

pub mod import;
pub mod issue;
pub mod leaf;
pub mod names;
pub mod sealing;
pub mod server;

use ferry_shared::TrustDomain;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType, SerialNumber,
};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use time::{Duration, OffsetDateTime};

pub use issue::IssuedCert;

/// How far `not_before` is backdated, so nodes with a slow clock accept new certificates.
pub const BACKDATE: Duration = Duration::minutes(5);
const ROOT_LIFETIME: Duration = Duration::days(3650);

#[derive(Debug, thiserror::Error)]
pub enum CaError {
    #[error("certificate generation failed: {0}")]
    Rcgen(#[from] rcgen::Error),
    #[error("stored CA certificate is unreadable: {0}")]
    BadStoredCert(String),
    #[error("CSR rejected: {0}")]
    CsrRejected(String),
    #[error("CSR key type {found} is not allowed by the service (it requires {required})")]
    KeyTypeNotAllowed {
        found: String,
        required: ferry_shared::KeyType,
    },
    #[error("invalid server name {0:?}")]
    BadServerName(String),
}

/// The root CA of one trust domain, ready to sign.
pub struct Ca {
    trust_domain: TrustDomain,
    cert_pem: String,
    cert_der: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca")
            .field("trust_domain", &self.trust_domain)
            .finish_non_exhaustive()
    }
}

/// 128 random bits with the top bit clear (a positive DER integer).
pub(crate) fn random_serial() -> Result<SerialNumber, CaError> {
    let mut bytes = [0u8; 16];
    aws_lc_rs::rand::fill(&mut bytes)
        .map_err(|_| CaError::CsrRejected("random number generator failed".into()))?;
    bytes[0] &= 0x7f;
    bytes[0] |= 0x01; // never a leading zero byte, so the hex form is stable
    Ok(SerialNumber::from_slice(&bytes))
}

impl Ca {
    /// Signs `params` for `public_key`, valid from `now - BACKDATE` for `ttl`, with a
    /// random serial and the authority key identifier. Every leaf goes through here.
    pub(crate) fn sign_leaf(
        &self,
        mut params: CertificateParams,
        public_key: &impl rcgen::PublicKeyData,
        now: OffsetDateTime,
        ttl: Duration,
    ) -> Result<IssuedCert, CaError> {
        params.not_before = now - BACKDATE;
        params.not_after = now + ttl;
        let serial = random_serial()?;
        let serial_hex = hex::encode(serial.to_bytes());
        params.serial_number = Some(serial);
        params.use_authority_key_identifier_extension = true;
        let cert = params.signed_by(public_key, &self.issuer)?;
        Ok(IssuedCert {
            pem: cert.pem(),
            serial: serial_hex,
            not_after: params.not_after,
        })
    }

    /// A new root CA; returns it with its private key as PKCS#8 PEM (to be sealed).
    pub fn generate(
        trust_domain: &TrustDomain,
        now: OffsetDateTime,
    ) -> Result<(Self, String), CaError> {
        let uri = SanType::URI(format!("spiffe://{trust_domain}").try_into()?);
        Self::self_signed(
            trust_domain,
            format!("Ferry root CA for {trust_domain}"),
            vec![uri],
            now,
        )
    }

    /// A self-signed CA that signs no intermediate (path length 0).
    pub(crate) fn self_signed(
        trust_domain: &TrustDomain,
        common_name: String,
        sans: Vec<SanType>,
        now: OffsetDateTime,
    ) -> Result<(Self, String), CaError> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "Ferry");
        dn.push(DnType::CommonName, common_name);
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.not_before = now - Duration::hours(1);
        params.not_after = now + ROOT_LIFETIME;
        params.serial_number = Some(random_serial()?);
        params.subject_alt_names = sans;
        let cert = params.self_signed(&key)?;
        let key_pem = key.serialize_pem();
        let ca = Self {
            trust_domain: trust_domain.clone(),
            cert_pem: cert.pem(),
            cert_der: cert.der().clone(),
            issuer: Issuer::new(params, key),
        };
        Ok((ca, key_pem))
    }

    /// The CA as stored: certificate PEM and (unsealed) key PEM.
    pub fn load(
        trust_domain: &TrustDomain,
        cert_pem: &str,
        key_pem: &str,
    ) -> Result<Self, CaError> {
        let key = KeyPair::from_pem(key_pem)?;
        let cert_der = CertificateDer::from_pem_slice(cert_pem.as_bytes())
            .map_err(|e| CaError::BadStoredCert(e.to_string()))?;
        let issuer = Issuer::from_ca_cert_pem(cert_pem, key)?;
        Ok(Self {
            trust_domain: trust_domain.clone(),
            cert_pem: cert_pem.to_owned(),
            cert_der,
            issuer,
        })
    }

    pub fn trust_domain(&self) -> &TrustDomain {
        &self.trust_domain
    }

    /// PEM of the CA certificate (for the root: the trust bundle delivered to nodes).
    pub fn bundle_pem(&self) -> &str {
        &self.cert_pem
    }

    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.cert_der
    }

    /// `sha256:<hex>` of the certificate's DER (for the control-plane CA: the pin
    /// agents and ferryctl verify the control plane with).
    pub fn fingerprint(&self) -> String {
        ferry_shared::hash::ca_fingerprint(&self.cert_der)
    }
}
