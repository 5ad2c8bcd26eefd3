//! Checks a customer's certificate before it is imported (`imported` key mode): the
//! PEM chain parses, leaf first; the leaf is valid now; each certificate is signed by
//! the next one; and the private key belongs to the leaf. Pure: takes `now`.

use rcgen::{KeyPair, PublicKeyData};
use time::OffsetDateTime;
use x509_parser::prelude::{FromDer, X509Certificate};

/// Longest chain accepted, leaf included.
const MAX_CHAIN: usize = 8;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ImportError {
    #[error("the certificate field holds no PEM certificate")]
    NoCertificate,
    #[error("certificate {0} of the chain does not parse")]
    BadCertificate(usize),
    #[error("the chain has more than {MAX_CHAIN} certificates")]
    ChainTooLong,
    #[error("the private key does not parse as PEM (PKCS#8, SEC1 or PKCS#1)")]
    BadKey,
    #[error("the private key does not belong to the certificate")]
    KeyMismatch,
    #[error("the certificate expired at {0}")]
    Expired(OffsetDateTime),
    #[error("the certificate is not valid before {0}")]
    NotYetValid(OffsetDateTime),
    #[error("certificate {0} of the chain is not signed by certificate {1}")]
    ChainBroken(usize, usize),
    #[error("the chain must end with its self-signed root CA (nodes get it as their trust anchor)")]
    NoRoot,
}

/// A checked import: the leaf, the rest of the chain and the key, as PEM. `Debug`
/// never shows the key.
pub struct Checked {
    pub leaf_pem: String,
    pub chain_pem: String,
    pub key_pem: String,
    pub not_after: OffsetDateTime,
}

impl std::fmt::Debug for Checked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checked")
            .field("not_after", &self.not_after)
            .field("key_pem", &"[redacted]")
            .finish_non_exhaustive()
    }
}

/// Validates `certificate` (PEM, leaf first, then intermediates) and `key`.
pub fn check(certificate: &str, key: &str, now: OffsetDateTime) -> Result<Checked, ImportError> {
    let pems: Vec<x509_parser::pem::Pem> =
        x509_parser::pem::Pem::iter_from_buffer(certificate.as_bytes())
            .take(MAX_CHAIN + 1)
            .enumerate()
            .map(|(i, p)| p.map_err(|_| ImportError::BadCertificate(i)))
            .collect::<Result<_, _>>()?;
    if pems.is_empty() {
        return Err(ImportError::NoCertificate);
    }
    if pems.len() > MAX_CHAIN {
        return Err(ImportError::ChainTooLong);
    }
    let certs: Vec<X509Certificate<'_>> = pems
        .iter()
        .enumerate()
        .map(|(i, p)| {
            X509Certificate::from_der(&p.contents)
                .map(|(_, c)| c)
                .map_err(|_| ImportError::BadCertificate(i))
        })
        .collect::<Result<_, _>>()?;
    let leaf = &certs[0];
    let not_after = leaf.validity().not_after.to_datetime();
    let not_before = leaf.validity().not_before.to_datetime();
    if not_after <= now {
        return Err(ImportError::Expired(not_after));
    }
    if not_before > now + time::Duration::minutes(5) {
        return Err(ImportError::NotYetValid(not_before));
    }
    for (i, pair) in certs.windows(2).enumerate() {
        let (child, parent) = (&pair[0], &pair[1]);
        if child.issuer() != parent.subject()
            || child.verify_signature(Some(parent.public_key())).is_err()
        {
            return Err(ImportError::ChainBroken(i, i + 1));
        }
    }
    let root = &certs[certs.len() - 1];
    if certs.len() < 2 || root.subject() != root.issuer() || root.verify_signature(None).is_err() {
        return Err(ImportError::NoRoot);
    }
    let key_pair = KeyPair::from_pem(key).map_err(|_| ImportError::BadKey)?;
    if key_pair.subject_public_key_info() != leaf.public_key().raw {
        return Err(ImportError::KeyMismatch);
    }
    let pem = |p: &x509_parser::pem::Pem| {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD.encode(&p.contents);
        let lines: Vec<&str> = b64
            .as_bytes()
            .chunks(64)
            .map(|c| std::str::from_utf8(c).unwrap_or_default())
            .collect();
        format!(
            "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
            lines.join("\n")
        )
    };
    Ok(Checked {
        leaf_pem: pem(&pems[0]),
        chain_pem: pems[1..].iter().map(pem).collect(),
        key_pem: key_pair.serialize_pem(),
        not_after,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, DnType, IsCa, Issuer};

    fn ca(name: &str) -> (rcgen::Certificate, KeyPair) {
        let key = KeyPair::generate().expect("key");
        let mut p = CertificateParams::new(Vec::<String>::new()).expect("params");
        p.is_ca = IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        p.distinguished_name.push(DnType::CommonName, name);
        (p.self_signed(&key).expect("ca"), key)
    }

    fn leaf(issuer: &Issuer<'_, KeyPair>, days: i64) -> (String, KeyPair) {
        let key = KeyPair::generate().expect("key");
        let mut p = CertificateParams::new(vec!["n1.example".to_owned()]).expect("params");
        p.not_before = OffsetDateTime::now_utc() - time::Duration::days(1);
        p.not_after = OffsetDateTime::now_utc() + time::Duration::days(days);
        (p.signed_by(&key, issuer).expect("leaf").pem(), key)
    }

    /// The refusal, or a panic naming the accepted import.
    fn err(r: Result<Checked, ImportError>) -> ImportError {
        match r {
            Ok(c) => panic!("accepted: {c:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn a_consistent_chain_with_its_key_is_accepted_and_anything_else_refused() {
        let (int_cert, int_key) = ca("intermediate");
        let issuer = Issuer::from_ca_cert_pem(&int_cert.pem(), int_key).expect("issuer");
        let (leaf_pem, leaf_key) = leaf(&issuer, 30);
        let chain = format!("{leaf_pem}{}", int_cert.pem());
        let now = OffsetDateTime::now_utc();

        let ok = check(&chain, &leaf_key.serialize_pem(), now).expect("valid import");
        assert_eq!(ok.chain_pem, int_cert.pem().replace("\r\n", "\n"));
        assert!(ok.not_after > now);

        let other = KeyPair::generate().expect("key");
        assert_eq!(
            err(check(&chain, &other.serialize_pem(), now)),
            ImportError::KeyMismatch
        );
        assert_eq!(err(check("", "", now)), ImportError::NoCertificate);
        assert_eq!(err(check(&chain, "not a key", now)), ImportError::BadKey);
        let (stranger, _) = ca("stranger");
        let broken = format!("{leaf_pem}{}", stranger.pem());
        assert_eq!(
            err(check(&broken, &leaf_key.serialize_pem(), now)),
            ImportError::ChainBroken(0, 1)
        );
        assert_eq!(
            err(check(&leaf_pem, &leaf_key.serialize_pem(), now)),
            ImportError::NoRoot,
            "a leaf alone cannot be verified on the node"
        );
        let later = now + time::Duration::days(31);
        assert!(matches!(
            check(&chain, &leaf_key.serialize_pem(), later),
            Err(ImportError::Expired(_))
        ));
    }
}
