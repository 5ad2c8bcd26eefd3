//! The only module that speaks HTTP to the control plane: builds the verified client,
//! adds the bearer token, follows pages, and turns every answer into JSON or a
//! [`CliError`].

use crate::args::{GlobalOpts, PageArgs};
use crate::error::{CliError, causes, refusal};
use crate::trust;
use reqwest::header::{ACCEPT, AUTHORIZATION, HeaderName, HeaderValue};
use reqwest::{Method, Url};
use serde_json::Value;
use std::time::Duration;

/// Header that makes a POST safe to repeat: the server answers a key it has seen with
/// the result of the first request.
const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");

pub struct Api {
    http: reqwest::Client,
    base: Url,
    token: Option<HeaderValue>,
}

/// The items of one or more pages, and the cursor to continue from (none after `--all`).
pub struct Listing {
    pub items: Vec<Value>,
    pub next_cursor: Option<String>,
    /// What `--json` prints: the server's page as it came, or all pages merged.
    pub raw: Value,
}

impl Api {
    /// Settles trust (which may mean fetching the pinned CA) and builds the client.
    pub async fn connect(opts: &GlobalOpts, token: Option<&str>) -> Result<Self, CliError> {
        let base = server_url(&opts.server)?;
        let token = token.map(bearer).transpose()?;
        let roots = trust::roots(opts, &base).await?;
        let roots = roots
            .iter()
            .map(|der| reqwest::Certificate::from_der(der))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| CliError::Usage(format!("unusable CA certificate: {}", causes(&e))))?;
        let http = reqwest::Client::builder()
            .tls_certs_only(roots)
            // A redirect could carry the token to another host; the API never redirects.
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(60))
            .user_agent(concat!("ferryctl/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| CliError::Usage(format!("cannot set up TLS: {}", causes(&e))))?;
        Ok(Self { http, base, token })
    }

    fn url(&self, path: &str) -> Url {
        let mut url = self.base.clone();
        url.set_path(&format!("{}{path}", self.base.path().trim_end_matches('/')));
        url
    }

    pub async fn get(&self, path: &str, query: &[(&str, String)]) -> Result<Value, CliError> {
        self.json(Method::GET, path, query, None, &[]).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Result<Value, CliError> {
        self.json(Method::POST, path, &[], Some(body), &[]).await
    }

    /// POST with an `Idempotency-Key`, so the caller may repeat it after a lost answer.
    pub async fn post_idempotent(
        &self,
        path: &str,
        body: Value,
        key: &str,
    ) -> Result<Value, CliError> {
        let value = HeaderValue::from_str(key).map_err(|_| {
            CliError::Usage(format!(
                "idempotency key {key:?} is not a valid header value"
            ))
        })?;
        self.json(
            Method::POST,
            path,
            &[],
            Some(body),
            &[(IDEMPOTENCY_KEY, value)],
        )
        .await
    }

    pub async fn patch(&self, path: &str, body: Value) -> Result<Value, CliError> {
        self.json(Method::PATCH, path, &[], Some(body), &[]).await
    }

    pub async fn put(&self, path: &str, body: Value) -> Result<Value, CliError> {
        self.json(Method::PUT, path, &[], Some(body), &[]).await
    }

    /// DELETE, expecting an empty 2xx.
    pub async fn delete(&self, path: &str) -> Result<(), CliError> {
        self.send(Method::DELETE, path, &[], None, &[], true)
            .await
            .map(drop)
    }

    /// GET without the token, for public text such as the trust bundle.
    pub async fn get_public_text(&self, path: &str) -> Result<String, CliError> {
        self.text(path, false).await
    }

    /// GET with the token, for text that is not JSON (Prometheus metrics).
    pub async fn get_text(&self, path: &str) -> Result<String, CliError> {
        self.text(path, true).await
    }

    async fn text(&self, path: &str, auth: bool) -> Result<String, CliError> {
        let (url, body) = self.send(Method::GET, path, &[], None, &[], auth).await?;
        String::from_utf8(body).map_err(|_| CliError::BadResponse {
            url: url.to_string(),
            detail: "body is not UTF-8 text".to_owned(),
        })
    }

    /// One page, or every page from the start when `--all` is given.
    pub async fn list(&self, path: &str, page: &PageArgs) -> Result<Listing, CliError> {
        let mut items = Vec::new();
        let mut cursor = page.cursor.clone();
        let mut seen = Vec::new();
        loop {
            let mut query = Vec::new();
            if let Some(limit) = page.limit {
                query.push(("limit", limit.to_string()));
            }
            if let Some(c) = &cursor {
                query.push(("cursor", c.clone()));
            }
            let body = self.get(path, &query).await?;
            let bad = |detail: &str| CliError::BadResponse {
                url: self.url(path).to_string(),
                detail: detail.to_owned(),
            };
            let next = match body.get("next_cursor") {
                None | Some(Value::Null) => None,
                Some(Value::String(s)) => Some(s.clone()),
                Some(_) => return Err(bad("next_cursor is not a string")),
            };
            let Some(Value::Array(page_items)) = body.get("items") else {
                return Err(bad("the page has no items array"));
            };
            if !page.all {
                return Ok(Listing {
                    items: page_items.clone(),
                    next_cursor: next,
                    raw: body,
                });
            }
            items.extend(page_items.iter().cloned());
            match next {
                Some(c) if seen.contains(&c) => {
                    return Err(bad(&format!("cursor {c:?} came back twice; stopping")));
                }
                Some(c) => {
                    seen.push(c.clone());
                    cursor = Some(c);
                }
                None => {
                    let raw = serde_json::json!({ "items": items, "next_cursor": null });
                    return Ok(Listing {
                        items,
                        next_cursor: None,
                        raw,
                    });
                }
            }
        }
    }

    async fn json(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<Value>,
        headers: &[(HeaderName, HeaderValue)],
    ) -> Result<Value, CliError> {
        let (url, bytes) = self.send(method, path, query, body, headers, true).await?;
        serde_json::from_slice(&bytes).map_err(|e| CliError::BadResponse {
            url: url.to_string(),
            detail: format!("body is not the expected JSON: {e}"),
        })
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<Value>,
        headers: &[(HeaderName, HeaderValue)],
        auth: bool,
    ) -> Result<(Url, Vec<u8>), CliError> {
        let url = self.url(path);
        let mut req = self
            .http
            .request(method, url.clone())
            .header(ACCEPT, "application/json");
        if auth {
            let token = self.token.clone().ok_or_else(|| {
                CliError::Usage(
                    "no API token: pass --token-file FILE, --token TOKEN or set FERRY_TOKEN"
                        .to_owned(),
                )
            })?;
            req = req.header(AUTHORIZATION, token);
        }
        for (name, value) in headers {
            req = req.header(name.clone(), value.clone());
        }
        if !query.is_empty() {
            req = req.query(query);
        }
        if let Some(body) = body {
            req = req.json(&without_nulls(body));
        }
        let unreachable = |e: reqwest::Error| CliError::Unreachable {
            url: url.to_string(),
            cause: causes(&e),
        };
        let resp = req.send().await.map_err(unreachable)?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(unreachable)?;
        if !status.is_success() {
            return Err(refusal(status.as_u16(), &bytes));
        }
        Ok((url, bytes.to_vec()))
    }
}

/// The `--server` value as an https URL without credentials, query or fragment.
pub fn server_url(raw: &str) -> Result<Url, CliError> {
    let url = Url::parse(raw)
        .map_err(|e| CliError::Usage(format!("--server {raw:?} is not a URL: {e}")))?;
    if url.scheme() != "https" {
        return Err(CliError::Usage(format!(
            "--server {raw:?} must be an https:// URL: ferryctl sends its token only over TLS"
        )));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(CliError::Usage(
            "--server must not contain credentials; use --token-file".to_owned(),
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(CliError::Usage(format!(
            "--server {raw:?} must not have a query or fragment"
        )));
    }
    Ok(url)
}

/// Drops top-level `null` fields: an absent setting means "server default" or "keep",
/// and saying nothing is the clearest way to ask for that.
fn without_nulls(body: Value) -> Value {
    match body {
        Value::Object(map) => {
            Value::Object(map.into_iter().filter(|(_, v)| !v.is_null()).collect())
        }
        other => other,
    }
}

/// The `Authorization` value, marked sensitive so it is never printed by the HTTP stack.
fn bearer(token: &str) -> Result<HeaderValue, CliError> {
    let mut value = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
        // The value itself is deliberately not part of the message.
        CliError::Usage("the API token contains characters not allowed in an HTTP header".into())
    })?;
    value.set_sensitive(true);
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_urls_must_be_https_without_credentials() {
        assert!(server_url("https://127.0.0.1:8443").is_ok());
        assert!(server_url("https://cp.example/ferry/").is_ok());
        for bad in [
            "http://127.0.0.1:8443",
            "127.0.0.1:8443",
            "https://u:p@cp.example",
            "https://cp/?a=b",
        ] {
            let err = server_url(bad).expect_err(bad);
            assert_eq!(err.exit_code(), 2, "{bad}");
        }
    }

    #[test]
    fn request_bodies_leave_unset_settings_out() {
        let body = serde_json::json!({ "name": "web", "tenant": null, "grace_seconds": 5 });
        assert_eq!(
            without_nulls(body),
            serde_json::json!({ "name": "web", "grace_seconds": 5 })
        );
    }

    #[test]
    fn bad_tokens_are_refused_without_echoing_them() {
        let err = bearer("abc\ndef").expect_err("newline accepted");
        assert!(!err.line().contains("abc"), "{}", err.line());
        assert!(bearer("fy_ok").expect("valid").is_sensitive());
    }
}
