//! Which request headers a tenant may set on its outbound requests: an allowlist.
//! Credentials and content negotiation (`authorization`, `accept`, `x-api-key`, ...) and
//! custom `x-` headers pass; everything that steers a proxy, a metadata service or the
//! connection itself is refused (`host`, hop-by-hop headers, `forwarded`,
//! `x-forwarded-*`, `metadata`/`metadata-flavor`, `x-aws-ec2-metadata-token`,
//! `x-google-metadata-request`, `x-identity-header`, method overrides).

/// Named headers a tenant may set besides custom `x-` ones.
const ALLOWED: &[&str] = &[
    "accept",
    "accept-language",
    "api-key",
    "apikey",
    "authorization",
    "cache-control",
    "cookie",
    "private-token",
    "user-agent",
];

/// Prefixes of `x-` headers that are refused: proxies, clouds' metadata services and
/// identity endpoints, method and URL overrides.
const REFUSED_X_PREFIXES: &[&str] = &[
    "x-forwarded-",
    "x-real-ip",
    "x-client-ip",
    "x-original-",
    "x-rewrite-",
    "x-host",
    "x-http-method",
    "x-method-override",
    "x-aws-",
    "x-amz-",
    "x-google-",
    "x-goog-",
    "x-identity-header",
    "x-ms-",
    "x-metadata",
    "x-envoy-",
    "x-proxy",
];

/// `Ok` when a tenant may set the header `name` (lower-case); `Err` says why not.
pub fn check_name(name: &str) -> Result<(), &'static str> {
    if ALLOWED.contains(&name) {
        return Ok(());
    }
    if let Some(rest) = name.strip_prefix("x-")
        && !rest.is_empty()
    {
        if REFUSED_X_PREFIXES.iter().any(|p| name.starts_with(p)) {
            return Err("it steers a proxy or a metadata service");
        }
        return Ok(());
    }
    Err("only credentials, accept headers and custom x- headers may be set")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_pass_and_steering_headers_are_refused() {
        for ok in [
            "authorization",
            "x-api-key",
            "accept",
            "x-vault-token",
            "cookie",
        ] {
            assert!(check_name(ok).is_ok(), "{ok} refused");
        }
        for refused in [
            "host",
            "metadata",
            "metadata-flavor",
            "x-aws-ec2-metadata-token",
            "x-google-metadata-request",
            "x-forwarded-for",
            "x-forwarded-host",
            "forwarded",
            "connection",
            "transfer-encoding",
            "te",
            "upgrade",
            "proxy-authorization",
            "content-length",
            "if-none-match",
            "x-http-method-override",
            "x-identity-header",
            "x-",
        ] {
            assert!(check_name(refused).is_err(), "{refused} allowed");
        }
    }
}
