//! The policy's verdict at create time, so a URL that can only be refused is a 422 at
//! the API instead of a failure later: an IP-literal host is judged as it is; a name
//! is resolved once and refused when every address it has is refused. A name that does
//! not resolve now is accepted (it may before the first fetch); fetches judge again on
//! every connection whatever was decided here.

use super::{Outbound, OutboundError, literal_ip, parse, resolver};
use crate::http::ApiError;
use std::net::SocketAddr;
use std::time::Duration;

/// Longest wait for the create-time resolution.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(3);

/// Checks `url` against the policy as far as it can be known now.
pub async fn checked_destination(outbound: &Outbound, url: &str) -> Result<(), OutboundError> {
    let parsed = parse(url)?;
    let port = parsed
        .port_or_known_default()
        .ok_or(OutboundError::BadUrl)?;
    let policy = outbound.policy();
    if let Some(ip) = literal_ip(&parsed) {
        return match policy.allows_addr(SocketAddr::new(ip, port)) {
            true => Ok(()),
            false => Err(OutboundError::Refused(ip)),
        };
    }
    let host = parsed.host_str().ok_or(OutboundError::BadUrl)?.to_owned();
    let found = match tokio::time::timeout(
        RESOLVE_TIMEOUT,
        tokio::net::lookup_host((host.as_str(), port)),
    )
    .await
    {
        Ok(Ok(found)) => found.collect::<Vec<_>>(),
        _ => return Ok(()),
    };
    resolver::filter(policy, port == policy.own_port(), found)
        .map(|_| ())
        .map_err(|r| OutboundError::Refused(r.0))
}

impl From<OutboundError> for ApiError {
    fn from(e: OutboundError) -> Self {
        let slug = match e {
            OutboundError::Refused(_) => "outbound-refused",
            _ => "invalid-url",
        };
        ApiError::unprocessable(slug, e.to_string())
    }
}
