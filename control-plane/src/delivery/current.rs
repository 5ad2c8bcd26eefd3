//! A node's bundle as it is served: the certificate and key issued last (the `bundles`
//! row), the node's metadata merged live over the service's (kept in memory per
//! service, [`super::servicecache`]), at the node's desired version. The content
//! hash is computed here from exactly what is served, so a metadata change only has to
//! bump versions (one statement for a whole service) and never rewrites bundles.

use super::Waiters;
use super::servicecache::ServiceParts;
use crate::ca::sealing::{MasterKey, SealError};
use crate::store::{self, Conn};
use ferry_shared::KeyType;
use ferry_shared::api::Bundle;
use ferry_shared::hash::bundle_content_hash;
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum CurrentError {
    #[error(transparent)]
    Store(#[from] diesel::result::Error),
    #[error(transparent)]
    Seal(#[from] SealError),
    #[error("the sealed key of {0} is not UTF-8")]
    KeyNotUtf8(String),
    #[error("this identity certificate was superseded by a re-enrollment")]
    Superseded,
}

/// The chain and trust bundle a node gets: an imported chain ends with the customer's
/// self-signed root, which is served as a trust anchor next to Ferry's CA (so the agent
/// can verify the chain) rather than as part of the chain. Issuing and serving both
/// use this, so the content hash they compute agrees.
pub fn chain_and_trust(chain_pem: &str, ferry_trust: &str) -> (String, String) {
    const END: &str = "-----END CERTIFICATE-----";
    let Some(start) = chain_pem.rfind("-----BEGIN CERTIFICATE-----") else {
        return (chain_pem.to_owned(), ferry_trust.to_owned());
    };
    let last = &chain_pem[start..];
    let self_signed = x509_parser::pem::parse_x509_pem(last.as_bytes())
        .ok()
        .and_then(|(_, pem)| {
            use x509_parser::prelude::FromDer;
            let (_, cert) = x509_parser::prelude::X509Certificate::from_der(&pem.contents).ok()?;
            Some(cert.subject() == cert.issuer() && cert.verify_signature(None).is_ok())
        })
        .unwrap_or(false);
    if !self_signed {
        return (chain_pem.to_owned(), ferry_trust.to_owned());
    }
    let root = match last.find(END) {
        Some(i) => format!("{}\n", &last[..i + END.len()]),
        None => last.to_owned(),
    };
    (
        chain_pem[..start].to_owned(),
        format!("{ferry_trust}{root}"),
    )
}

/// What serving needs besides the database.
#[derive(Clone, Copy)]
pub struct Serve<'a> {
    pub master: &'a MasterKey,
    pub trust_bundle: &'a str,
    /// The replica's caches (None: read the service's rows every time).
    pub waiters: Option<&'a Waiters>,
}

impl Serve<'_> {
    /// The node's bundle at its desired version (None: no bundle issued yet, or the node
    /// is gone). `with_key: false` leaves the private key out of the answer (it is
    /// still opened and hashed), for showing the bundle to customers.
    pub fn current(
        &self,
        c: &mut Conn<'_>,
        service: &str,
        node_id: &str,
        now_ms: i64,
        with_key: bool,
    ) -> Result<Option<Bundle>, CurrentError> {
        Ok(self
            .current_and_cached(c, service, node_id, now_ms, with_key, None)?
            .map(|(bundle, _)| bundle))
    }

    /// [`Self::current`], and whether the node row already records the bundle's content
    /// hash (false after a metadata change, until someone caches it).
    pub fn current_and_cached(
        &self,
        c: &mut Conn<'_>,
        service: &str,
        node_id: &str,
        now_ms: i64,
        with_key: bool,
        presented_serial: Option<&str>,
    ) -> Result<Option<(Bundle, bool)>, CurrentError> {
        let Some(node) = store::nodes::get(c, service, node_id)? else {
            return Ok(None);
        };
        // Read in the same snapshot as the bundle: an identity superseded before this
        // bundle was written is never served it (its key included).
        if presented_serial.is_some_and(|s| !node.accepts_serial(s, now_ms)) {
            return Err(CurrentError::Superseded);
        }
        let Some(row) = store::bundles::get(c, service, node_id)? else {
            return Ok(None);
        };
        let parts = self.service_parts(c, service, now_ms)?;
        let mut metadata = parts
            .as_ref()
            .map(|p| p.metadata.clone())
            .unwrap_or_default();
        metadata.extend(store::metadata::node_only(c, service, node_id, now_ms)?);
        let private_key = match (&row.key_sealed, &row.key_id) {
            (Some(sealed), Some(key_id)) => {
                // Sealed under the version it was issued at, which a later metadata
                // bump does not change.
                let aad = format!("{}/{}/{}", row.service, row.node_id, row.version);
                let pem = self.master.open(sealed, aad.as_bytes(), key_id)?;
                Some(
                    String::from_utf8(pem)
                        .map_err(|_| CurrentError::KeyNotUtf8(format!("{service}/{node_id}")))?,
                )
            }
            _ => None,
        };
        let metadata_json = serde_json::to_string(&metadata).unwrap_or_else(|_| "{}".into());
        let (chain, trust_bundle) = chain_and_trust(&row.chain_pem, self.trust_bundle);
        let content_hash = bundle_content_hash(
            &row.cert_pem,
            &chain,
            private_key.as_deref(),
            &trust_bundle,
            &metadata_json,
        );
        let cached = node.desired_hash.is_some();
        Ok(Some((
            Bundle {
                version: node.desired_version.max(row.version),
                content_hash,
                certificate: row.cert_pem,
                chain,
                private_key: private_key.filter(|_| with_key),
                trust_bundle,
                metadata,
                not_after: row.not_after.map(store::from_ms),
                csr_required: row.csr_required,
                csr_key_type: parts
                    .as_ref()
                    .filter(|_| row.csr_required)
                    .and_then(|s| s.key_type.parse::<KeyType>().ok()),
                alert_before_seconds: parts.as_ref().map(|s| s.alert_before_seconds as u64),
            },
            cached,
        )))
    }

    /// The service-level part of the bundle: from the replica's cache, else read (the
    /// service row and its service-wide values) and kept. None: the service is gone.
    fn service_parts(
        &self,
        c: &mut Conn<'_>,
        service: &str,
        now_ms: i64,
    ) -> Result<Option<Arc<ServiceParts>>, CurrentError> {
        let caches = self.waiters.map(|w| (&w.services_cache, &w.cache));
        let epoch = match caches {
            Some((parts, nodes)) => match parts.get(nodes, service, now_ms) {
                Some(p) => return Ok(Some(p)),
                None => Some(parts.epoch()),
            },
            None => None,
        };
        let Some(svc) = store::services::get(c, service, None)? else {
            return Ok(None);
        };
        let (metadata, expires_ms) = store::metadata::service_wide(c, service, now_ms)?;
        let parts = ServiceParts {
            key_type: svc.key_type,
            alert_before_seconds: svc.alert_before_seconds,
            metadata,
            expires_ms,
        };
        if let (Some((cache, nodes)), Some(epoch)) = (caches, epoch) {
            cache.fill(nodes, epoch, service, parts.clone(), now_ms);
        }
        Ok(Some(Arc::new(parts)))
    }
}
