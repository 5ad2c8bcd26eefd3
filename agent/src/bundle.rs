//! Checking a delivered bundle before anything of it touches the disk, and turning it into
//! the exact bytes of the files to install.
//!
//! A bundle is installed only when: its content hash is the hash of what it carries; every
//! metadata key is safe as a file name; the certificate parses, certifies the private key,
//! chains (through `chain`) to a CA of the bundle's trust bundle, and has not expired on
//! the server's clock. Nothing here does I/O, and time is an argument. Private keys are
//! held in [`Secret`]s and never appear in errors.

use crate::config::Secret;
use crate::identity::{CertInfo, IdentityError, NodeKey, pem_certificates};
use ferry_shared::api::Bundle;
use ferry_shared::hash::hash_of;
use std::collections::BTreeMap;
use time::OffsetDateTime;
use x509_parser::certificate::X509Certificate;

/// The metadata key rule (a key becomes a file name), shared with the control plane.
pub use ferry_shared::metadata::{MAX_METADATA_KEY_BYTES, check_metadata_key};
/// Longest chain of intermediates followed before giving up.
const MAX_CHAIN_DEPTH: usize = 8;

/// Why a bundle was refused. The message goes into the failed ack.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("content hash mismatch: bundle says {expected}, its content hashes to {computed}")]
    HashMismatch { expected: String, computed: String },
    #[error("metadata key {key:?} is refused: {reason}")]
    MetadataKey { key: String, reason: &'static str },
    #[error("the delivered certificate is unusable")]
    Certificate(#[source] IdentityError),
    #[error(
        "the bundle carries no private key and no key kept on this node matches its certificate"
    )]
    NoMatchingKey,
    #[error("the private key does not match the certificate")]
    KeyMismatch,
    #[error("the private key is unusable")]
    Key(#[source] IdentityError),
    #[error("the certificate does not chain to the trust bundle: {0}")]
    Untrusted(String),
    #[error("the certificate expired at {not_after} (server time is {server_now})")]
    Expired {
        not_after: OffsetDateTime,
        server_now: OffsetDateTime,
    },
}

/// The files of one version, byte for byte.
#[derive(Debug, Clone)]
pub struct BundleFiles {
    /// `cert.pem`.
    pub cert: String,
    /// `key.pem` (from the bundle in central mode, kept on the node in node-key mode).
    pub key: Secret,
    /// `chain.pem`.
    pub chain: String,
    /// `ca.pem`.
    pub ca: String,
    /// `metadata.json`: the compact JSON of the sorted map, as hashed.
    pub metadata_json: String,
    /// `metadata/<key>`: strings as their text, other values as compact JSON.
    pub metadata: Vec<(String, Vec<u8>)>,
}

impl BundleFiles {
    /// `bundle.pem`: key, certificate and chain, each ending with a newline.
    pub fn bundle_pem(&self) -> Secret {
        let mut out = String::new();
        for part in [self.key.expose(), &self.cert, &self.chain] {
            if part.is_empty() {
                continue;
            }
            out.push_str(part);
            if !part.ends_with('\n') {
                out.push('\n');
            }
        }
        Secret::new(out)
    }
}

/// A bundle that passed every check.
#[derive(Debug, Clone)]
pub struct Verified {
    pub version: i64,
    pub content_hash: String,
    pub cert_not_after: OffsetDateTime,
    /// In node-key mode, the index in `node_keys` of the key the certificate certifies.
    pub node_key: Option<usize>,
    pub files: BundleFiles,
}

/// Checks `bundle` at `server_now`. `node_keys` are the keys kept on this node (pending,
/// then installed) for a bundle without `private_key`.
pub fn verify(
    bundle: &Bundle,
    node_keys: &[Secret],
    server_now: OffsetDateTime,
) -> Result<Verified, BundleError> {
    let computed = hash_of(bundle);
    if computed != bundle.content_hash {
        return Err(BundleError::HashMismatch {
            expected: bundle.content_hash.clone(),
            computed,
        });
    }
    let metadata = metadata_files(&bundle.metadata)?;
    let cert = CertInfo::from_pem(&bundle.certificate, "the certificate")
        .map_err(BundleError::Certificate)?;
    let (key, node_key) = match &bundle.private_key {
        Some(pem) => {
            let pem = Secret::new(pem.clone());
            let key = NodeKey::from_pem(&pem).map_err(BundleError::Key)?;
            if !key.matches(&cert) {
                return Err(BundleError::KeyMismatch);
            }
            (pem, None)
        }
        None => {
            let found = node_keys
                .iter()
                .position(|pem| NodeKey::from_pem(pem).is_ok_and(|key| key.matches(&cert)));
            let i = found.ok_or(BundleError::NoMatchingKey)?;
            (node_keys[i].clone(), Some(i))
        }
    };
    verify_chain(bundle, server_now)?;
    if cert.not_after <= server_now {
        return Err(BundleError::Expired {
            not_after: cert.not_after,
            server_now,
        });
    }
    Ok(Verified {
        version: bundle.version,
        content_hash: bundle.content_hash.clone(),
        cert_not_after: cert.not_after,
        node_key,
        files: BundleFiles {
            cert: bundle.certificate.clone(),
            key,
            chain: bundle.chain.clone(),
            ca: bundle.trust_bundle.clone(),
            // Invariant: a map of strings to JSON values always serializes.
            metadata_json: serde_json::to_string(&bundle.metadata).expect("metadata serializes"),
            metadata,
        },
    })
}

fn metadata_files(
    metadata: &BTreeMap<String, serde_json::Value>,
) -> Result<Vec<(String, Vec<u8>)>, BundleError> {
    metadata
        .iter()
        .map(|(key, value)| {
            check_metadata_key(key).map_err(|reason| BundleError::MetadataKey {
                key: key.chars().take(MAX_METADATA_KEY_BYTES).collect(),
                reason,
            })?;
            let bytes = match value {
                serde_json::Value::String(s) => s.clone().into_bytes(),
                other => other.to_string().into_bytes(),
            };
            Ok((key.clone(), bytes))
        })
        .collect()
}

/// Follows issuers from the leaf, through the certificates of `chain` (and any extra
/// certificates after the leaf), to one of `trust_bundle`, checking each signature.
fn verify_chain(bundle: &Bundle, server_now: OffsetDateTime) -> Result<(), BundleError> {
    let untrusted = |msg: String| BundleError::Untrusted(msg);
    let leaf_and_extra = pem_certificates(&bundle.certificate, "the certificate")
        .map_err(BundleError::Certificate)?;
    let chain = if bundle.chain.trim().is_empty() {
        Vec::new()
    } else {
        pem_certificates(&bundle.chain, "the chain").map_err(BundleError::Certificate)?
    };
    let anchors = pem_certificates(&bundle.trust_bundle, "the trust bundle")
        .map_err(|e| untrusted(e.to_string()))?;
    let anchors = anchors
        .iter()
        .map(|d| parse(d))
        .collect::<Result<Vec<_>, _>>()?;
    let intermediates = leaf_and_extra[1..]
        .iter()
        .chain(&chain)
        .map(|d| parse(d))
        .collect::<Result<Vec<_>, _>>()?;
    let mut current = parse(&leaf_and_extra[0])?;
    for _ in 0..MAX_CHAIN_DEPTH {
        let signs = |ca: &X509Certificate<'_>| {
            ca.subject() == current.issuer()
                && current.verify_signature(Some(ca.public_key())).is_ok()
        };
        if anchors.iter().any(signs) {
            return Ok(());
        }
        let next = intermediates.iter().find(|ca| {
            signs(ca) && ca.is_ca() && ca.validity().not_after.to_datetime() > server_now
        });
        match next {
            Some(ca) => current = ca.clone(),
            None => {
                return Err(untrusted(format!(
                    "no CA of the trust bundle or chain signed {}",
                    current.subject()
                )));
            }
        }
    }
    Err(untrusted(format!(
        "more than {MAX_CHAIN_DEPTH} intermediates"
    )))
}

fn parse(der: &[u8]) -> Result<X509Certificate<'_>, BundleError> {
    x509_parser::parse_x509_certificate(der)
        .map(|(_, c)| c)
        .map_err(|e| BundleError::Untrusted(format!("unparsable certificate: {e}")))
}

#[cfg(test)]
mod tests;
