//! Validation of a source before anything is written: names by the metadata-key rule,
//! the interval bounds, the URL (http(s), a host, no credentials, `{node}` exactly
//! where the scope needs it) and the headers (the outbound allowlist). A refusal is a
//! 422 whose detail names what is wrong, never a header value. Where the URL leads is
//! the outbound policy's question (`outbound::checked_destination`).

use super::super::ApiError;
use ferry_shared::metadata::check_metadata_key;
use ferry_shared::sources::{
    MAX_SOURCE_HEADERS, MAX_SOURCE_INTERVAL_SECONDS, MAX_SOURCE_URL_BYTES,
    MIN_SOURCE_INTERVAL_SECONDS, NODE_PLACEHOLDER, SourceScope,
};
use reqwest::header::{HeaderName, HeaderValue};
use std::collections::BTreeMap;

/// Largest total size of a source's headers (names and values), in bytes.
const MAX_HEADER_BYTES: usize = 8 * 1024;
fn bad(slug: &'static str, detail: impl Into<String>) -> ApiError {
    ApiError::unprocessable(slug, detail)
}

pub fn checked_name(what: &str, slug: &'static str, name: &str) -> Result<(), ApiError> {
    check_metadata_key(name).map_err(|why| {
        bad(
            slug,
            format!(
                "{what} {:?} is refused: {why}",
                name.escape_debug().to_string()
            ),
        )
    })
}

pub fn checked_interval(seconds: u64) -> Result<(), ApiError> {
    if (MIN_SOURCE_INTERVAL_SECONDS..=MAX_SOURCE_INTERVAL_SECONDS).contains(&seconds) {
        return Ok(());
    }
    Err(bad(
        "invalid-interval",
        format!(
            "interval_seconds must be {MIN_SOURCE_INTERVAL_SECONDS}..={MAX_SOURCE_INTERVAL_SECONDS}"
        ),
    ))
}

/// The URL (template) checked: http(s), a host, no credentials, `{node}` exactly where
/// the scope needs it.
pub fn checked_url(url: &str, scope: SourceScope) -> Result<(), ApiError> {
    let invalid = |d: &str| bad("invalid-url", d.to_owned());
    if url.len() > MAX_SOURCE_URL_BYTES {
        return Err(invalid("url is longer than 2000 bytes"));
    }
    if url.chars().any(char::is_control) {
        return Err(invalid("url contains control characters"));
    }
    match (scope, url.contains(NODE_PLACEHOLDER)) {
        (SourceScope::Node, false) => {
            return Err(invalid("a node-scope url must contain {node}"));
        }
        (SourceScope::Service, true) => {
            return Err(invalid(
                "{node} is only replaced in node-scope sources (scope: node)",
            ));
        }
        _ => {}
    }
    let parsed = reqwest::Url::parse(&url.replace(NODE_PLACEHOLDER, "node"))
        .map_err(|_| invalid("url is not a valid URL"))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host().is_none() {
        return Err(invalid("url must be an http(s) URL with a host"));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(invalid(
            "credentials in the url are refused: send them in headers, which are sealed at rest",
        ));
    }
    Ok(())
}

/// The headers checked, with canonical (lower-case) names. Details name the header,
/// never its value.
pub fn checked_headers(
    headers: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>, ApiError> {
    let invalid = |d: String| bad("invalid-header", d);
    if headers.len() > MAX_SOURCE_HEADERS {
        return Err(invalid(format!(
            "at most {MAX_SOURCE_HEADERS} headers are accepted"
        )));
    }
    let total: usize = headers.iter().map(|(k, v)| k.len() + v.len()).sum();
    if total > MAX_HEADER_BYTES {
        return Err(invalid(format!(
            "headers are larger than {MAX_HEADER_BYTES} bytes"
        )));
    }
    let mut out = BTreeMap::new();
    for (name, value) in headers {
        let shown = name.escape_debug().to_string();
        let canonical = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| invalid(format!("{shown:?} is not a valid header name")))?;
        if let Err(why) = crate::outbound::headers::check_name(canonical.as_str()) {
            return Err(invalid(format!("header {canonical} may not be set: {why}")));
        }
        HeaderValue::from_str(value).map_err(|_| {
            invalid(format!(
                "the value of header {canonical} is not a valid header value"
            ))
        })?;
        if out
            .insert(canonical.as_str().to_owned(), value.clone())
            .is_some()
        {
            return Err(invalid(format!("header {canonical} is given twice")));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_intervals_and_headers_are_checked() {
        assert!(checked_interval(1).is_ok() && checked_interval(86_400).is_ok());
        assert!(checked_interval(0).is_err() && checked_interval(86_401).is_err());
        use SourceScope::{Node, Service};
        assert!(checked_url("https://api.example/v1/x?a=b", Service).is_ok());
        assert!(checked_url("http://127.0.0.1:8080/n/{node}", Node).is_ok());
        for (url, scope) in [
            ("ftp://api.example/x", Service),
            ("https://user:pw@api.example/x", Service),
            ("https://api.example/{node}", Service),
            ("https://api.example/x", Node),
            ("not a url", Service),
            ("file:///etc/passwd", Service),
        ] {
            assert!(checked_url(url, scope).is_err(), "{url} accepted");
        }
        let h = |k: &str, v: &str| BTreeMap::from([(k.to_owned(), v.to_owned())]);
        assert_eq!(
            checked_headers(&h("X-Api-Key", "s3cr3t")).expect("valid"),
            h("x-api-key", "s3cr3t")
        );
        for bad in [
            h("bad name", "v"),
            h("host", "x"),
            h("Metadata-Flavor", "Google"),
            h("x-k", "line\nbreak"),
        ] {
            let err = checked_headers(&bad).expect_err("refused");
            assert!(!format!("{err:?}").contains("break"), "a value is echoed");
        }
        let twice = BTreeMap::from([
            ("X-K".to_owned(), "a".to_owned()),
            ("x-k".to_owned(), "b".to_owned()),
        ]);
        assert!(checked_headers(&twice).is_err());
    }
}
