//! The DNS resolver of every outbound client: the system resolver, then the policy.
//! Refused addresses are dropped before hyper sees them, so a connection only ever
//! goes to an address that was checked, and each new connection resolves (and checks)
//! again: a name that changes its answer between a check and a connection gains
//! nothing.

use super::policy::{Policy, canonical};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

/// Every address a name resolved to was refused (the first one is named).
#[derive(Debug)]
pub struct RefusedAddr(pub IpAddr);

impl std::fmt::Display for RefusedAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "destination {} is refused by the outbound policy",
            self.0
        )
    }
}

impl std::error::Error for RefusedAddr {}

/// The name did not resolve (said without the resolver's detail).
#[derive(Debug)]
struct Unresolved;

impl std::fmt::Display for Unresolved {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the name did not resolve")
    }
}

impl std::error::Error for Unresolved {}

pub struct PolicyResolver {
    policy: Arc<Policy>,
    /// The client is used for the listen port: the replica's own addresses are refused.
    on_own_port: bool,
}

impl PolicyResolver {
    pub fn new(policy: Arc<Policy>, on_own_port: bool) -> Self {
        Self {
            policy,
            on_own_port,
        }
    }
}

/// The addresses the policy allows, or the first refused one when none is.
pub fn filter(
    policy: &Policy,
    on_own_port: bool,
    found: impl IntoIterator<Item = SocketAddr>,
) -> Result<Vec<SocketAddr>, RefusedAddr> {
    let mut refused = None;
    let mut allowed = Vec::new();
    for addr in found {
        let ip = addr.ip();
        let ok = if on_own_port {
            policy.allows_on_own_port(ip)
        } else {
            policy.allows(ip)
        };
        if ok {
            allowed.push(addr);
        } else {
            refused.get_or_insert(canonical(ip));
        }
    }
    match (allowed.is_empty(), refused) {
        (true, Some(ip)) => Err(RefusedAddr(ip)),
        _ => Ok(allowed),
    }
}

impl Resolve for PolicyResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let (policy, on_own_port) = (self.policy.clone(), self.on_own_port);
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await
                .map_err(|_| Box::new(Unresolved) as Box<dyn std::error::Error + Send + Sync>)?
                .collect();
            let allowed = filter(&policy, on_own_port, found)?;
            if allowed.is_empty() {
                return Err(Box::new(Unresolved) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(allowed.into_iter()) as Addrs)
        })
    }
}
