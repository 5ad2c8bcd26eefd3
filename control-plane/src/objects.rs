//! Reading customer objects: `s3://bucket/key` through the `object_store` crate (S3 API,
//! signed requests, custom endpoints for S3-compatible stores) and `https://` through
//! the outbound policy's client (no redirects, destinations checked on every
//! connection). Used by the inventory sync and the imported-certificate source; sizes
//! are capped as the bytes arrive, so a wrong URL cannot fill the control plane's
//! memory. The S3 endpoint is the operator's (`FERRY_S3_ENDPOINT`), not a tenant's, so
//! it is not subject to the outbound policy; a tenant picks only bucket and key.
//! Errors never carry an object store's answer or a URL's path.

use crate::config::S3Settings;
use crate::outbound::{Outbound, OutboundClient, OutboundError};
use futures::{StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};
use std::time::Duration;

/// Largest object read (an inventory of 10M ids is about 200 MB; beyond that, shard it).
pub const MAX_OBJECT_BYTES: u64 = 256 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ObjectError {
    #[error("{0:?} is not an s3://bucket/key or https:// URL")]
    BadUrl(String),
    #[error("{}", store_reason(.0))]
    Store(#[from] object_store::Error),
    #[error(transparent)]
    Http(#[from] OutboundError),
    #[error("the object is larger than {MAX_OBJECT_BYTES} bytes")]
    TooLarge,
}

/// An object store error without its text (which can quote the store's answer).
fn store_reason(e: &object_store::Error) -> &'static str {
    match e {
        object_store::Error::NotFound { .. } => "object store: not found",
        object_store::Error::PermissionDenied { .. }
        | object_store::Error::Unauthenticated { .. } => "object store: access denied",
        _ => "object store: request failed",
    }
}

/// A parsed object location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ObjectUrl {
    S3 { bucket: String, key: String },
    Https(String),
}

impl ObjectUrl {
    pub fn parse(url: &str) -> Result<Self, ObjectError> {
        let bad = || ObjectError::BadUrl(url.to_owned());
        if let Some(rest) = url.strip_prefix("s3://") {
            let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
            let valid_bucket = (3..=63).contains(&bucket.len())
                && bucket.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.'
                });
            if !valid_bucket || key.contains("..") || key.contains("//") {
                return Err(bad());
            }
            return Ok(Self::S3 {
                bucket: bucket.to_owned(),
                key: key.to_owned(),
            });
        }
        let parsed = reqwest::Url::parse(url).map_err(|_| bad())?;
        if parsed.scheme() != "https" && parsed.scheme() != "http" || parsed.host().is_none() {
            return Err(bad());
        }
        Ok(Self::Https(url.to_owned()))
    }
}

/// One listed object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// Key relative to the listed prefix.
    pub name: String,
    pub etag: String,
}

/// Reads objects; cheap to clone.
#[derive(Clone)]
pub struct Objects {
    s3: S3Settings,
    http: OutboundClient,
}

impl Objects {
    pub fn new(s3: S3Settings, outbound: &Outbound) -> Result<Self, OutboundError> {
        let http = outbound.client(Duration::from_secs(30))?;
        Ok(Self { s3, http })
    }

    fn bucket(&self, bucket: &str) -> Result<AmazonS3, ObjectError> {
        let mut b = AmazonS3Builder::new()
            .with_bucket_name(bucket)
            .with_region(self.s3.region.as_deref().unwrap_or("us-east-1"));
        if let Some(endpoint) = &self.s3.endpoint {
            b = b
                .with_endpoint(endpoint)
                .with_allow_http(endpoint.starts_with("http://"));
        }
        if let (Some(id), Some(secret)) = (&self.s3.access_key_id, &self.s3.secret_access_key) {
            b = b
                .with_access_key_id(id.expose())
                .with_secret_access_key(secret.expose());
        }
        Ok(b.build()?)
    }

    /// The whole object at `url`.
    pub async fn get(&self, url: &ObjectUrl) -> Result<Vec<u8>, ObjectError> {
        match url {
            ObjectUrl::S3 { bucket, key } => {
                let store = self.bucket(bucket)?;
                let got = store.get(&ObjectPath::from(key.as_str())).await?;
                if got.meta.size > MAX_OBJECT_BYTES {
                    return Err(ObjectError::TooLarge);
                }
                let mut stream = got.into_stream();
                let mut body = Vec::new();
                while let Some(chunk) = stream.next().await {
                    let chunk = chunk?;
                    if (body.len() + chunk.len()) as u64 > MAX_OBJECT_BYTES {
                        return Err(ObjectError::TooLarge);
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(body)
            }
            ObjectUrl::Https(u) => {
                let req = self.http.request(reqwest::Method::GET, u)?;
                let resp = self.http.send(req).await?;
                let status = resp.status();
                if status.is_redirection() {
                    return Err(OutboundError::Redirect(status.as_u16()).into());
                }
                if !status.is_success() {
                    return Err(OutboundError::Status(status.as_u16()).into());
                }
                match crate::outbound::read_capped(resp, MAX_OBJECT_BYTES).await {
                    Err(OutboundError::TooLarge(_)) => Err(ObjectError::TooLarge),
                    other => Ok(other?),
                }
            }
        }
    }

    /// Objects directly under `prefix` of `bucket`, with their ETags.
    pub async fn list(&self, bucket: &str, prefix: &str) -> Result<Vec<Listed>, ObjectError> {
        let store = self.bucket(bucket)?;
        let prefix = prefix.trim_end_matches('/');
        let path = (!prefix.is_empty()).then(|| ObjectPath::from(prefix));
        let metas: Vec<_> = store.list(path.as_ref()).try_collect().await?;
        Ok(metas
            .into_iter()
            .filter_map(|m| {
                let full = m.location.to_string();
                let name = full
                    .strip_prefix(prefix)
                    .map(|n| n.trim_start_matches('/'))
                    .unwrap_or(&full);
                (!name.is_empty() && !name.contains('/')).then(|| Listed {
                    name: name.to_owned(),
                    etag: m.e_tag.unwrap_or_else(|| m.last_modified.to_rfc3339()),
                })
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_s3_or_https() {
        assert_eq!(
            ObjectUrl::parse("s3://fleet-data/inv/nodes.json").ok(),
            Some(ObjectUrl::S3 {
                bucket: "fleet-data".into(),
                key: "inv/nodes.json".into()
            })
        );
        assert!(ObjectUrl::parse("https://inventory.example.com/web").is_ok());
        for bad in [
            "s3://A/x",
            "s3://ok-bucket/../x",
            "ftp://x/y",
            "file:///etc/passwd",
            "nodes.json",
        ] {
            assert!(ObjectUrl::parse(bad).is_err(), "{bad} accepted");
        }
    }
}
