//! Issuing a node's next bundle: a new certificate (central: with a new key, sealed at
//! rest; node-key: from the node's CSR, or a request for one), the next version, the
//! content hash, and the time of the next renewal. Runs inside the caller's transaction.

use crate::ca::leaf::generate_key;
use crate::ca::names::{NameError, NamePolicy, render_checked};
use crate::ca::sealing::{MasterKey, SealError};
use crate::ca::{Ca, CaError};
use crate::store::bundles::BundleRow;
use crate::store::nodes::{Desired, NodeRow};
use crate::store::services::ServiceRow;
use crate::store::{self, Conn};
use ferry_shared::hash::bundle_content_hash;
use ferry_shared::{KeyMode, KeyType, NodeId, ServiceName, SpiffeId, TrustDomain};
use std::collections::BTreeMap;
use time::OffsetDateTime;

#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    #[error(transparent)]
    Store(#[from] diesel::result::Error),
    #[error(transparent)]
    Ca(#[from] CaError),
    #[error(transparent)]
    Seal(#[from] SealError),
    #[error("node {0} no longer exists")]
    NodeGone(String),
    #[error("stored service {0} is invalid: {1}")]
    BadService(String, String),
    #[error("certificates of service {0} are imported: import a new one to change them")]
    Imported(String),
    #[error("certificate name refused: {0}")]
    Name(#[from] NameError),
}

/// A central-mode certificate and key signed for a node, not yet stored.
pub struct Signed {
    pub cert_pem: String,
    pub key_pem: String,
    pub not_after: OffsetDateTime,
}

/// What issuing needs besides the database.
pub struct Issuer<'a> {
    pub ca: &'a Ca,
    pub master: &'a MasterKey,
    pub trust_domain: &'a TrustDomain,
    /// The control plane's server names: never in a delivered certificate.
    pub reserved_names: &'a [String],
}

/// The names `svc`'s certificates may carry.
pub fn name_policy(
    svc: &ServiceRow,
    trust_domain: &TrustDomain,
    reserved: &[String],
) -> NamePolicy {
    NamePolicy::new(
        &svc.name,
        trust_domain.as_str(),
        svc.dns_suffix_list().as_deref(),
        svc.wildcard_names,
        reserved,
    )
    .with_ip_ranges(svc.ip_range_list())
}

/// Deterministic jitter spreads renewals over part of the renew window, so nodes issued
/// together (a restart, a mass re-issue) do not all renew in the same second.
pub fn renew_at(
    issued_ms: i64,
    ttl_s: i64,
    renew_before_s: i64,
    service: &str,
    node: &str,
    version: i64,
) -> i64 {
    let spread_ms = (renew_before_s.min(ttl_s - renew_before_s).max(0) * 1000) / 2;
    let jitter = if spread_ms > 0 {
        let h = ferry_shared::hash::sha256_hex(format!("{service}/{node}/{version}").as_bytes());
        (u64::from_str_radix(&h[..12], 16).unwrap_or(0) % spread_ms as u64) as i64
    } else {
        0
    };
    issued_ms + (ttl_s - renew_before_s) * 1000 - jitter
}

fn spiffe(td: &TrustDomain, svc: &str, node: &str) -> Result<SpiffeId, IssueError> {
    let bad = |e: ferry_shared::NameError| IssueError::BadService(svc.to_owned(), e.to_string());
    Ok(SpiffeId {
        trust_domain: td.clone(),
        service: ServiceName::parse(svc).map_err(bad)?,
        node: NodeId::parse(node).map_err(bad)?,
    })
}

fn policy(svc: &ServiceRow) -> Result<(KeyType, KeyMode), IssueError> {
    let bad = |e: ferry_shared::NameError| IssueError::BadService(svc.name.clone(), e.to_string());
    Ok((
        svc.key_type.parse().map_err(bad)?,
        svc.key_mode.parse().map_err(bad)?,
    ))
}

impl Issuer<'_> {
    /// The next bundle for the node under its service's policy: central mode issues a
    /// new key and certificate; node-key mode asks the node for a CSR. Returns the
    /// new version.
    pub fn renew(
        &self,
        c: &mut Conn<'_>,
        svc: &ServiceRow,
        node_id: &str,
        now: OffsetDateTime,
    ) -> Result<i64, IssueError> {
        let (key_type, key_mode) = policy(svc)?;
        let id = spiffe(self.trust_domain, &svc.name, node_id)?;
        match key_mode {
            KeyMode::Central => {
                let signed = self.sign_central(svc, key_type, &id, now)?;
                self.store_signed(c, svc, node_id, signed, now)
            }
            KeyMode::NodeKey => {
                // Keep serving the current certificate while the node produces a CSR.
                let current = store::bundles::get(c, &svc.name, node_id)?;
                let (pem, not_after) = current
                    .map(|b| (b.cert_pem, b.not_after.map(store::from_ms)))
                    .unwrap_or_default();
                self.store(c, svc, node_id, pem, "", None, not_after, true, now)
            }
            KeyMode::Imported => Err(IssueError::Imported(svc.name.clone())),
        }
    }

    /// Central mode, the CPU half of a renewal: a new key and its certificate, with no
    /// database work, so a batch can be signed before its transaction begins.
    pub fn sign_next(
        &self,
        svc: &ServiceRow,
        node_id: &str,
        now: OffsetDateTime,
    ) -> Result<Signed, IssueError> {
        let (key_type, _) = policy(svc)?;
        let id = spiffe(self.trust_domain, &svc.name, node_id)?;
        self.sign_central(svc, key_type, &id, now)
    }

    /// The database half: `signed` becomes the node's next bundle (node row locked
    /// first). Returns the new version.
    fn store_signed(
        &self,
        c: &mut Conn<'_>,
        svc: &ServiceRow,
        node_id: &str,
        signed: Signed,
        now: OffsetDateTime,
    ) -> Result<i64, IssueError> {
        self.store(
            c,
            svc,
            node_id,
            signed.cert_pem,
            "",
            Some(signed.key_pem),
            Some(signed.not_after),
            false,
            now,
        )
    }

    fn sign_central(
        &self,
        svc: &ServiceRow,
        key_type: KeyType,
        id: &SpiffeId,
        now: OffsetDateTime,
    ) -> Result<Signed, IssueError> {
        let key = generate_key(key_type)?;
        let cert = self.sign(svc, id, &key, now)?;
        Ok(Signed {
            cert_pem: cert.pem,
            key_pem: key.serialize_pem(),
            not_after: cert.not_after,
        })
    }

    /// `imported` mode: a customer's certificate (leaf), its chain and key, already
    /// validated, become the node's next bundle. Returns the new version.
    #[allow(clippy::too_many_arguments)]
    pub fn import(
        &self,
        c: &mut Conn<'_>,
        svc: &ServiceRow,
        node_id: &str,
        leaf_pem: String,
        chain_pem: &str,
        key_pem: String,
        not_after: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Result<i64, IssueError> {
        self.store(
            c,
            svc,
            node_id,
            leaf_pem,
            chain_pem,
            Some(key_pem),
            Some(not_after),
            false,
            now,
        )
    }

    /// node-key mode: signs the node's CSR into its next bundle.
    pub fn from_csr(
        &self,
        c: &mut Conn<'_>,
        svc: &ServiceRow,
        node_id: &str,
        csr_pem: &str,
        now: OffsetDateTime,
    ) -> Result<i64, IssueError> {
        let (key_type, _) = policy(svc)?;
        let id = spiffe(self.trust_domain, &svc.name, node_id)?;
        let dns = self.names(svc, &id)?;
        let ttl = time::Duration::seconds(svc.cert_ttl_seconds);
        let cert = self
            .ca
            .issue_leaf_from_csr(csr_pem, key_type, &id, &dns, now, ttl)?;
        self.store(
            c,
            svc,
            node_id,
            cert.pem,
            "",
            None,
            Some(cert.not_after),
            false,
            now,
        )
    }

    /// The node's names from the service's template, each allowed by its policy (a
    /// node id can make a template render to a name the service may not use).
    fn names(&self, svc: &ServiceRow, id: &SpiffeId) -> Result<Vec<String>, IssueError> {
        let policy = name_policy(svc, self.trust_domain, self.reserved_names);
        Ok(render_checked(&svc.san_template, id, &policy)?)
    }

    fn sign(
        &self,
        svc: &ServiceRow,
        id: &SpiffeId,
        key: &rcgen::KeyPair,
        now: OffsetDateTime,
    ) -> Result<crate::ca::IssuedCert, IssueError> {
        let dns = self.names(svc, id)?;
        Ok(self.ca.issue_leaf(
            key,
            id,
            &dns,
            now,
            time::Duration::seconds(svc.cert_ttl_seconds),
        )?)
    }

    #[allow(clippy::too_many_arguments)]
    fn store(
        &self,
        c: &mut Conn<'_>,
        svc: &ServiceRow,
        node_id: &str,
        cert_pem: String,
        chain_pem: &str,
        key_pem: Option<String>,
        not_after: Option<OffsetDateTime>,
        csr_required: bool,
        now: OffsetDateTime,
    ) -> Result<i64, IssueError> {
        let node = store::nodes::get_for_update(c, &svc.name, node_id)?
            .ok_or_else(|| IssueError::NodeGone(node_id.to_owned()))?;
        // The metadata as of this version (serving merges it live, which matches until
        // a metadata change bumps the version again).
        let metadata = store::metadata::resolved(c, &svc.name, node_id, store::ms(now))?;
        let next = self.prepare(
            svc,
            &node,
            Material {
                cert_pem,
                chain_pem: chain_pem.to_owned(),
                key_pem,
                not_after,
                csr_required,
            },
            &metadata,
            now,
        )?;
        store::bundles::put(c, &next.bundle)?;
        let d = &next.desired;
        store::nodes::set_desired(c, &svc.name, node_id, d.version, &d.hash, d.renew_at, d.at)?;
        Ok(d.version)
    }

    /// A node's next bundle row and desired state from its locked row, the certificate
    /// material and the metadata as of now: version, content hash, sealed key, next
    /// renewal. No database work.
    pub(super) fn prepare(
        &self,
        svc: &ServiceRow,
        node: &NodeRow,
        m: Material,
        metadata: &BTreeMap<String, serde_json::Value>,
        now: OffsetDateTime,
    ) -> Result<Next, IssueError> {
        let version = node.desired_version + 1;
        let metadata = serde_json::to_string(metadata).unwrap_or_else(|_| "{}".to_owned());
        let trust = self.ca.bundle_pem();
        let (chain, trust) = super::current::chain_and_trust(&m.chain_pem, trust);
        let hash =
            bundle_content_hash(&m.cert_pem, &chain, m.key_pem.as_deref(), &trust, &metadata);
        let aad = format!("{}/{}/{}", svc.name, node.node_id, version);
        let key_sealed = m
            .key_pem
            .map(|k| self.master.seal(k.as_bytes(), aad.as_bytes()))
            .transpose()?;
        let now_ms = store::ms(now);
        let imported = svc.key_mode == KeyMode::Imported.to_string();
        let renew_at = (!m.csr_required && !imported).then(|| {
            renew_at(
                now_ms,
                svc.cert_ttl_seconds,
                svc.renew_before_seconds,
                &svc.name,
                &node.node_id,
                version,
            )
        });
        Ok(Next {
            bundle: BundleRow {
                service: svc.name.clone(),
                node_id: node.node_id.clone(),
                version,
                content_hash: hash.clone(),
                cert_pem: m.cert_pem,
                chain_pem: m.chain_pem,
                key_id: key_sealed.as_ref().map(|_| self.master.id().to_owned()),
                key_sealed,
                not_after: m.not_after.map(store::ms),
                csr_required: m.csr_required,
                metadata,
                created_at: now_ms,
            },
            desired: Desired {
                node_id: node.node_id.clone(),
                version,
                hash,
                renew_at,
                at: now_ms,
            },
        })
    }
}

/// What a bundle is made of before it has a version.
pub(super) struct Material {
    pub cert_pem: String,
    pub chain_pem: String,
    pub key_pem: Option<String>,
    pub not_after: Option<OffsetDateTime>,
    pub csr_required: bool,
}

/// A node's next bundle and the desired state that points at it.
pub(super) struct Next {
    pub bundle: BundleRow,
    pub desired: Desired,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewals_fall_inside_the_window_and_spread_out() {
        let (ttl, before) = (3600, 1200);
        let times: Vec<i64> = (0..200)
            .map(|i| renew_at(0, ttl, before, "web", &format!("n{i}"), 1))
            .collect();
        let latest = (ttl - before) * 1000;
        let earliest = latest - before.min(ttl - before) * 1000 / 2;
        assert!(
            times.iter().all(|t| (earliest..=latest).contains(t)),
            "outside window"
        );
        let distinct: std::collections::HashSet<_> = times.iter().map(|t| t / 10_000).collect();
        assert!(
            distinct.len() > 30,
            "renewals bunch up: {} distinct 10 s slots",
            distinct.len()
        );
        assert_eq!(
            renew_at(0, ttl, before, "web", "n1", 1),
            renew_at(0, ttl, before, "web", "n1", 1)
        );
    }
}
