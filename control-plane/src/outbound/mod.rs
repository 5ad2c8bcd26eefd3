//! Every outbound HTTP request a tenant can aim (dynamic metadata sources, webhooks,
//! `https://` inventories) goes through this module; nothing else in the control plane
//! builds a reqwest client for a tenant's URL.
//!
//! - `policy`: which addresses may be reached (the operator's `[outbound]` settings).
//! - `resolver`: the DNS resolver of every client here. It drops the addresses the
//!   policy refuses, so the connection goes to an address that was checked, on every
//!   connection (no DNS-rebinding window). IP-literal hosts skip resolvers; they are
//!   checked in [`OutboundClient::request`].
//! - `check`: the same verdict at create time, a 422 when it can be known then.
//! - `headers`: which request headers a tenant may set.
//! - `body`: size caps counted as the body streams.
//!
//! Clients never follow redirects and never use a proxy from the environment (a proxy
//! would resolve the name itself, past the policy). Errors say what was refused or
//! the HTTP status, never a connect-vs-timeout detail that maps internal ports, never
//! the URL's path or query and never the response body; [`origin`] is the only form
//! of a URL that may be logged.

mod body;
mod check;
pub mod headers;
pub mod policy;
mod resolver;

pub use body::read_capped;
pub use check::checked_destination;
pub use policy::{Net, OutboundSettings, Policy};

use reqwest::{Method, RequestBuilder, Response, Url};
use resolver::{PolicyResolver, RefusedAddr};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum OutboundError {
    #[error("url must be an http(s) URL with a host")]
    BadUrl,
    #[error("credentials in the url are refused")]
    Credentials,
    #[error("destination {0} is refused by the outbound policy")]
    Refused(IpAddr),
    #[error("request failed")]
    Failed,
    #[error("HTTP {0}")]
    Status(u16),
    #[error("HTTP {0}: redirects are not followed")]
    Redirect(u16),
    #[error("the answer is larger than {0} bytes")]
    TooLarge(u64),
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
}

/// The policy of this replica; cheap to clone.
#[derive(Clone)]
pub struct Outbound {
    policy: Arc<Policy>,
}

impl Outbound {
    pub fn new(policy: Policy) -> Self {
        Self {
            policy: Arc::new(policy),
        }
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// A client whose whole request (body included) ends after `timeout`.
    pub fn client(&self, timeout: Duration) -> Result<OutboundClient, OutboundError> {
        let build = |on_own_port: bool| {
            reqwest::Client::builder()
                .timeout(timeout)
                .connect_timeout(timeout.min(Duration::from_secs(5)))
                .redirect(reqwest::redirect::Policy::none())
                .no_proxy()
                .dns_resolver(PolicyResolver::new(self.policy.clone(), on_own_port))
                .user_agent(concat!("ferry-control-plane/", env!("CARGO_PKG_VERSION")))
                .build()
                .map_err(|e| OutboundError::Client(e.to_string()))
        };
        Ok(OutboundClient {
            policy: self.policy.clone(),
            any_port: build(false)?,
            own_port: build(true)?,
        })
    }
}

/// A client of [`Outbound`]: requests only through [`OutboundClient::request`].
#[derive(Clone)]
pub struct OutboundClient {
    policy: Arc<Policy>,
    /// For ports other than the listen port.
    any_port: reqwest::Client,
    /// For the listen port: its resolver also drops this control plane's own addresses.
    own_port: reqwest::Client,
}

impl OutboundClient {
    /// A request to `url` after the checks that need no DNS: http(s), a host, no
    /// credentials, an IP-literal host allowed by the policy.
    pub fn request(&self, method: Method, url: &str) -> Result<RequestBuilder, OutboundError> {
        let parsed = parse(url)?;
        let port = parsed
            .port_or_known_default()
            .ok_or(OutboundError::BadUrl)?;
        if let Some(ip) = literal_ip(&parsed)
            && !self.policy.allows_addr(SocketAddr::new(ip, port))
        {
            return Err(OutboundError::Refused(ip));
        }
        let client = if port == self.policy.own_port() {
            &self.own_port
        } else {
            &self.any_port
        };
        Ok(client.request(method, parsed))
    }

    /// Sends; a transport error becomes [`OutboundError::Refused`] when the policy
    /// refused every address, [`OutboundError::Failed`] otherwise.
    pub async fn send(&self, req: RequestBuilder) -> Result<Response, OutboundError> {
        req.send().await.map_err(describe)
    }
}

/// A parsed http(s) URL with a host and no credentials.
fn parse(url: &str) -> Result<Url, OutboundError> {
    let parsed = Url::parse(url).map_err(|_| OutboundError::BadUrl)?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host().is_none() {
        return Err(OutboundError::BadUrl);
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(OutboundError::Credentials);
    }
    Ok(parsed)
}

/// The host of `url` when it is an address (the parser has already normalised forms
/// such as `2130706433` or `0x7f.1` to dotted IPv4), as routed.
fn literal_ip(url: &Url) -> Option<IpAddr> {
    let host = url.host_str()?;
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    bare.parse().ok().map(policy::canonical)
}

/// A reqwest error as callers may show it: nothing about how the connection failed.
pub fn describe(e: reqwest::Error) -> OutboundError {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&e);
    while let Some(c) = cause {
        if let Some(RefusedAddr(ip)) = c.downcast_ref::<RefusedAddr>() {
            return OutboundError::Refused(*ip);
        }
        cause = c.source();
    }
    match e.status() {
        Some(s) => OutboundError::Status(s.as_u16()),
        None => OutboundError::Failed,
    }
}

/// `scheme://host:port` of `url`: the only form of a tenant's URL that is logged.
pub fn origin(url: &str) -> String {
    match Url::parse(url) {
        Ok(u) => {
            let host = u.host_str().unwrap_or("?");
            match u.port_or_known_default() {
                Some(port) => format!("{}://{host}:{port}", u.scheme()),
                None => format!("{}://{host}", u.scheme()),
            }
        }
        Err(_) => "(invalid url)".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_drop_credentials_paths_and_queries() {
        assert_eq!(
            origin("https://u:pw@hooks.example/a/b?token=s3cr3t#f"),
            "https://hooks.example:443"
        );
        assert_eq!(origin("http://[::1]:8080/x"), "http://[::1]:8080");
        assert_eq!(origin("not a url?token=x"), "(invalid url)");
    }

    #[test]
    fn literal_hosts_are_judged_before_any_connection() {
        let policy = Policy::new(
            OutboundSettings::default(),
            "127.0.0.1:8443".parse().expect("addr"),
            &[],
        );
        let client = Outbound::new(policy)
            .client(Duration::from_secs(1))
            .expect("client");
        for (url, ip) in [
            (
                "http://169.254.169.254/latest/meta-data/",
                "169.254.169.254",
            ),
            ("http://[fd00:ec2::254]/latest", "fd00:ec2::254"),
            ("http://[::ffff:127.0.0.1]:9/", "127.0.0.1"),
            ("http://0.0.0.0:9/", "0.0.0.0"),
            ("http://2130706433:9/", "127.0.0.1"),
        ] {
            match client.request(Method::GET, url) {
                Err(OutboundError::Refused(got)) => {
                    assert_eq!(got, ip.parse::<IpAddr>().expect("ip"), "{url}")
                }
                other => panic!("{url}: {:?}", other.map(|_| ())),
            }
        }
        assert!(matches!(
            client.request(Method::GET, "https://u:p@example.com/"),
            Err(OutboundError::Credentials)
        ));
        assert!(matches!(
            client.request(Method::GET, "file:///etc/passwd"),
            Err(OutboundError::BadUrl)
        ));
    }
}
