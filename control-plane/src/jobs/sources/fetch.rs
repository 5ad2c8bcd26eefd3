//! One HTTP fetch of a dynamic source: the stored headers (opened from their seal and
//! marked sensitive), `If-None-Match` with the last ETag, no redirects (the headers are
//! secrets and must not follow the request to another host), a per-request timeout,
//! and a JSON body of at most [`MAX_METADATA_VALUE_BYTES`]. Errors are phrased for the
//! API: they never carry a header value or the URL.

use ferry_shared::hash::sha256_hex;
use ferry_shared::metadata::MAX_METADATA_VALUE_BYTES;
use ferry_shared::sources::NODE_PLACEHOLDER;
use reqwest::header::{ACCEPT, ETAG, HeaderMap, HeaderName, HeaderValue, IF_NONE_MATCH};
use std::collections::BTreeMap;
use std::time::Duration;

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

/// The HTTP client every fetch of this replica shares (the workspace's reqwest, rustls).
pub fn client(timeout: Duration) -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(5)))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("ferry-control-plane/", env!("CARGO_PKG_VERSION")))
        .build()
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
    client: &reqwest::Client,
    url: &str,
    own_headers: &BTreeMap<String, String>,
    etag: Option<&str>,
    timeout: Duration,
) -> Result<Answer, String> {
    let mut resp = client
        .get(url)
        .headers(headers(own_headers, etag)?)
        .send()
        .await
        .map_err(|e| describe(e, timeout))?;
    let status = resp.status();
    if status == reqwest::StatusCode::NOT_MODIFIED {
        return Ok(Answer::NotModified);
    }
    if status.is_redirection() {
        return Err(format!(
            "answered {status}; redirects are not followed (the headers would go with them)"
        ));
    }
    if !status.is_success() {
        return Err(format!("answered {status}"));
    }
    let too_large = || format!("the answer is larger than {MAX_METADATA_VALUE_BYTES} bytes");
    if resp
        .content_length()
        .is_some_and(|n| n > MAX_METADATA_VALUE_BYTES as u64)
    {
        return Err(too_large());
    }
    let new_etag = resp
        .headers()
        .get(ETAG)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| describe(e, timeout))? {
        if body.len() + chunk.len() > MAX_METADATA_VALUE_BYTES {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    let value: serde_json::Value =
        serde_json::from_slice(&body).map_err(|e| format!("the answer is not JSON: {e}"))?;
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

/// A transport error as the API shows it: its causes, without the URL.
fn describe(e: reqwest::Error, timeout: Duration) -> String {
    if e.is_timeout() {
        return format!("timed out after {} s", timeout.as_secs_f64());
    }
    let e = e.without_url();
    let mut msg = e.to_string();
    let mut cause = std::error::Error::source(&e);
    while let Some(c) = cause {
        msg.push_str(": ");
        msg.push_str(&c.to_string());
        cause = c.source();
    }
    msg
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
