//! One HTTP fetch of a dynamic source through the outbound policy's client: the stored
//! headers (opened from their seal, marked sensitive, and again checked against the
//! allowlist, for sources stored before it), `If-None-Match` with the last ETag, no
//! redirects (the headers are secrets and must not follow the request to another
//! host), a per-request timeout, and a JSON body of at most
//! [`MAX_METADATA_VALUE_BYTES`], counted as it streams. Errors are phrased for the
//! API: they never carry a header value, the URL, the body or how a connection failed.

use crate::outbound::{OutboundClient, OutboundError, headers::check_name, read_capped};
use ferry_shared::hash::sha256_hex;
use ferry_shared::metadata::MAX_METADATA_VALUE_BYTES;
use ferry_shared::sources::NODE_PLACEHOLDER;
use reqwest::header::{ACCEPT, ETAG, HeaderMap, HeaderName, HeaderValue, IF_NONE_MATCH};
use std::collections::BTreeMap;

/// What a successful fetch brought.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// 304: the value is the one delivered last time.
    NotModified,
    /// A JSON value: its canonical text, the SHA-256 of that text, the response's ETag.
    Value {
        json: String,
        hash: String,
        etag: Option<String>,
    },
}

/// The URL of one fetch: a node-scope template with `{node}` replaced. Node ids are
/// letters, digits, `.`, `_` and `-`, all safe in any part of a URL.
pub fn target_url(template: &str, node_id: &str) -> String {
    if node_id.is_empty() {
        template.to_owned()
    } else {
        template.replace(NODE_PLACEHOLDER, node_id)
    }
}

/// The request headers: the source's own (already validated when stored) and, unless
/// it set them, `accept: application/json`; `If-None-Match` when an ETag is known.
fn headers(own: &BTreeMap<String, String>, etag: Option<&str>) -> Result<HeaderMap, String> {
    let mut map = HeaderMap::new();
    map.insert(ACCEPT, HeaderValue::from_static("application/json"));
    for (name, value) in own {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("header {name:?} is not a valid header name"))?;
        check_name(name.as_str()).map_err(|why| format!("header {name} may not be set: {why}"))?;
        let mut value = HeaderValue::from_str(value)
            .map_err(|_| format!("the value of header {name} is not valid"))?;
        value.set_sensitive(true);
        map.insert(name, value);
    }
    if let Some(etag) = etag.and_then(|e| HeaderValue::from_str(e).ok()) {
        map.insert(IF_NONE_MATCH, etag);
    }
    Ok(map)
}

/// Fetches `url` once.
pub async fn fetch(
    client: &OutboundClient,
    url: &str,
    own_headers: &BTreeMap<String, String>,
    etag: Option<&str>,
) -> Result<Answer, String> {
    let req = client
        .request(reqwest::Method::GET, url)
        .map_err(|e| e.to_string())?
        .headers(headers(own_headers, etag)?);
    let resp = client.send(req).await.map_err(|e| e.to_string())?;
    let status = resp.status();
    if status == reqwest::StatusCode::NOT_MODIFIED {
        return Ok(Answer::NotModified);
    }
    if status.is_redirection() {
        return Err(OutboundError::Redirect(status.as_u16()).to_string());
    }
    if !status.is_success() {
        return Err(OutboundError::Status(status.as_u16()).to_string());
    }
    let too_large = || OutboundError::TooLarge(MAX_METADATA_VALUE_BYTES as u64).to_string();
    let new_etag = resp
        .headers()
        .get(ETAG)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = read_capped(resp, MAX_METADATA_VALUE_BYTES as u64)
        .await
        .map_err(|e| e.to_string())?;
    let value: serde_json::Value = serde_json::from_slice(&body).map_err(|e| {
        format!(
            "the answer is not JSON (line {}, column {})",
            e.line(),
            e.column()
        )
    })?;
    let json = serde_json::to_string(&value).map_err(|e| e.to_string())?;
    if json.len() > MAX_METADATA_VALUE_BYTES {
        return Err(too_large());
    }
    Ok(Answer::Value {
        hash: sha256_hex(json.as_bytes()),
        json,
        etag: new_etag,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_urls_and_headers() {
        assert_eq!(
            target_url("https://api/x/{node}?n={node}", "n-1.a_b"),
            "https://api/x/n-1.a_b?n=n-1.a_b"
        );
        assert_eq!(target_url("https://api/x", ""), "https://api/x");
        let refused = BTreeMap::from([("metadata-flavor".to_owned(), "Google".to_owned())]);
        let err = headers(&refused, None).expect_err("stored before the allowlist");
        assert!(
            err.contains("metadata-flavor") && !err.contains("Google"),
            "{err}"
        );
        let own = BTreeMap::from([("x-api-key".to_owned(), "s3cr3t".to_owned())]);
        let map = headers(&own, Some("\"v1\"")).expect("valid");
        assert!(map["x-api-key"].is_sensitive());
        assert_eq!(map[IF_NONE_MATCH], "\"v1\"");
        assert!(
            !format!("{map:?}").contains("s3cr3t"),
            "sensitive values are hidden"
        );
    }
}
