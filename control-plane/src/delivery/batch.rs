//! Issuance in batches: the certificates of many nodes are signed on every core before
//! any transaction begins (key generation and signatures are CPU, not database work),
//! so the transaction that stores them holds its row locks only for the writes, and
//! writes a whole batch with a fixed number of statements.

use super::issue::{IssueError, Issuer, Material, Signed};
use crate::store::nodes::NodeRow;
use crate::store::services::ServiceRow;
use crate::store::{self, Conn};
use std::collections::{BTreeMap, HashMap};
use std::time::Instant;
use time::OffsetDateTime;

/// Signs the next central-mode certificate of each (service, node) in `work`, spread
/// over the machine's cores; the answers are in `work`'s order. Work not started by
/// `deadline` is left unsigned (None), so a batch of slow keys (RSA) cannot outlast
/// the claim that protects it: the caller hands those back.
pub fn sign_all(
    issuer: &Issuer<'_>,
    work: &[(ServiceRow, String)],
    now: OffsetDateTime,
    deadline: Instant,
) -> Vec<Option<Result<Signed, IssueError>>> {
    let sign = |(svc, node): &(ServiceRow, String)| {
        (Instant::now() < deadline).then(|| issuer.sign_next(svc, node, now))
    };
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    if work.len() <= 1 || cores == 1 {
        return work.iter().map(sign).collect();
    }
    let per_thread = work.len().div_ceil(cores).max(1);
    std::thread::scope(|scope| {
        let handles: Vec<_> = work
            .chunks(per_thread)
            .map(|chunk| scope.spawn(move || chunk.iter().map(sign).collect::<Vec<_>>()))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| match h.join() {
                Ok(signed) => signed,
                Err(panic) => std::panic::resume_unwind(panic),
            })
            .collect()
    })
}

impl Issuer<'_> {
    /// Stores signed certificates as the next bundles of nodes of one service, in the
    /// caller's transaction, with a fixed number of statements whatever the batch
    /// size: the node rows locked in node-id order, the metadata read, the bundles
    /// upserted and the desired versions set, each in one statement. Answers each node
    /// with its new version, or `NodeGone` for a node deleted meanwhile.
    pub fn store_signed_all(
        &self,
        c: &mut Conn<'_>,
        svc: &ServiceRow,
        signed: Vec<(String, Signed)>,
        now: OffsetDateTime,
    ) -> diesel::QueryResult<Vec<(String, Result<i64, IssueError>)>> {
        let ids: Vec<String> = signed.iter().map(|(n, _)| n.clone()).collect();
        let rows: HashMap<String, NodeRow> = store::nodes::lock_many(c, &svc.name, &ids)?
            .into_iter()
            .map(|r| (r.node_id.clone(), r))
            .collect();
        let metadata = store::metadata::resolved_many(c, &svc.name, &ids, store::ms(now))?;
        let (mut bundles, mut desired, mut out) = (Vec::new(), Vec::new(), Vec::new());
        for (node_id, s) in signed {
            let Some(row) = rows.get(&node_id) else {
                out.push((node_id.clone(), Err(IssueError::NodeGone(node_id))));
                continue;
            };
            let material = Material {
                cert_pem: s.cert_pem,
                chain_pem: String::new(),
                key_pem: Some(s.key_pem),
                not_after: Some(s.not_after),
                csr_required: false,
            };
            let empty = BTreeMap::new();
            let meta = metadata.get(&node_id).unwrap_or(&empty);
            match self.prepare(svc, row, material, meta, now) {
                Ok(next) => {
                    out.push((node_id, Ok(next.desired.version)));
                    bundles.push(next.bundle);
                    desired.push(next.desired);
                }
                Err(e) => out.push((node_id, Err(e))),
            }
        }
        store::bundles::put_many(c, &bundles)?;
        store::nodes::set_desired_many(c, &svc.name, &desired)?;
        Ok(out)
    }
}
