//! Which CA `ferryctl` trusts for the control plane: a PEM file (`--ca-cert`), or one
//! CA pinned by fingerprint (`--ca-fingerprint`), never the system roots.
//!
//! Pinning fetches `/v1/control-plane-ca` (or, from a control plane too old to have
//! it, `/v1/trust-bundle`) once without verifying the server, then keeps only the
//! certificate whose DER hashes to the pin. That fetch sends no token: an impostor
//! learns nothing, and cannot pass the verified connection that follows, because it has
//! no certificate signed by the pinned CA.

use crate::args::GlobalOpts;
use crate::error::{CliError, causes};
use ferry_shared::api::routes;
use ferry_shared::hash::ca_fingerprint;
use reqwest::Url;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use std::path::Path;
use std::time::Duration;

/// A trust bundle is a few CA certificates; anything far larger is not one.
const MAX_BUNDLE_BYTES: usize = 1024 * 1024;

/// The certificates to verify the server with, as DER.
pub async fn roots(
    opts: &GlobalOpts,
    base: &Url,
) -> Result<Vec<CertificateDer<'static>>, CliError> {
    match (&opts.ca_cert, &opts.ca_fingerprint) {
        (Some(path), None) => read_ca_file(path),
        (Some(path), Some(pin)) => {
            // Both given: the file must hold the pinned CA, and only that one is trusted.
            let certs = read_ca_file(path)?;
            pick_pinned(certs, pin).map_err(|offered| {
                CliError::Usage(format!(
                    "{} does not contain the CA {pin} (it holds {offered})",
                    path.display()
                ))
            })
        }
        (None, Some(pin)) => {
            let mut url = route_url(base, routes::CONTROL_PLANE_CA);
            let pem = match fetch_unverified(&url).await {
                Err(CliError::Refused(p)) if p.status == 404 => {
                    url = route_url(base, routes::TRUST_BUNDLE);
                    fetch_unverified(&url).await?
                }
                other => other?,
            };
            let certs = parse_pem(&pem);
            pick_pinned(certs, pin).map_err(|offered| {
                CliError::Untrusted(format!(
                    "the CA of {url} is not {pin}: the server offered {offered}"
                ))
            })
        }
        (None, None) => Err(CliError::Usage(format!(
            "no CA to verify {base} with: pass --ca-cert FILE (or FERRY_CA_CERT) with the \
             control plane's CA, or --ca-fingerprint sha256:HEX (printed by `ferryctl join-token create`)"
        ))),
    }
}

fn read_ca_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, CliError> {
    let pem = std::fs::read(path)
        .map_err(|e| CliError::Usage(format!("cannot read CA file {}: {e}", path.display())))?;
    let certs = parse_pem(&pem);
    if certs.is_empty() {
        return Err(CliError::Usage(format!(
            "{} holds no PEM certificate",
            path.display()
        )));
    }
    Ok(certs)
}

/// Every well-formed `CERTIFICATE` block; other blocks and garbage are skipped.
fn parse_pem(pem: &[u8]) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_slice_iter(pem)
        .filter_map(Result::ok)
        .collect()
}

/// The one certificate matching `pin`, or the fingerprints that were offered instead.
fn pick_pinned(
    certs: Vec<CertificateDer<'static>>,
    pin: &str,
) -> Result<Vec<CertificateDer<'static>>, String> {
    let offered: Vec<String> = certs.iter().map(|c| ca_fingerprint(c)).collect();
    match certs.into_iter().zip(&offered).find(|(_, fp)| *fp == pin) {
        Some((cert, _)) => Ok(vec![cert]),
        None if offered.is_empty() => Err("no certificate".to_owned()),
        None => Err(offered.join(", ")),
    }
}

fn route_url(base: &Url, route: &str) -> Url {
    let mut url = base.clone();
    url.set_path(&format!("{}{route}", base.path().trim_end_matches('/')));
    url
}

/// GET the trust bundle accepting any server certificate. No credentials go with it.
async fn fetch_unverified(url: &Url) -> Result<Vec<u8>, CliError> {
    let unreachable = |e: reqwest::Error| CliError::Unreachable {
        url: url.to_string(),
        cause: causes(&e),
    };
    let client = reqwest::Client::builder()
        .tls_danger_accept_invalid_certs(true)
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(30))
        .user_agent(concat!("ferryctl/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(unreachable)?;
    let resp = client.get(url.clone()).send().await.map_err(unreachable)?;
    let status = resp.status();
    let body = resp.bytes().await.map_err(unreachable)?;
    if !status.is_success() {
        return Err(crate::error::refusal(status.as_u16(), &body));
    }
    if body.len() > MAX_BUNDLE_BYTES {
        return Err(CliError::BadResponse {
            url: url.to_string(),
            detail: format!("trust bundle of {} bytes is too large", body.len()),
        });
    }
    Ok(body.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pem_of(der: &[u8]) -> String {
        // Minimal base64 so the test needs no extra crate; PEM readers only need the
        // standard alphabet with padding.
        const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut b64 = String::new();
        for chunk in der.chunks(3) {
            let n = chunk.iter().fold(0u32, |acc, b| (acc << 8) | u32::from(*b))
                << (8 * (3 - chunk.len()));
            for i in 0..4 {
                if i <= chunk.len() {
                    b64.push(char::from(A[((n >> (18 - 6 * i)) & 63) as usize]));
                } else {
                    b64.push('=');
                }
            }
        }
        format!("-----BEGIN CERTIFICATE-----\n{b64}\n-----END CERTIFICATE-----\n")
    }

    #[test]
    fn pins_select_only_the_matching_certificate() {
        let bundle = format!("{}junk\n{}", pem_of(b"first-ca"), pem_of(b"second-ca"));
        let certs = parse_pem(bundle.as_bytes());
        assert_eq!(certs.len(), 2);
        let pin = ca_fingerprint(b"second-ca");
        let picked = pick_pinned(certs.clone(), &pin).expect("pinned CA present");
        assert_eq!(picked.len(), 1);
        assert_eq!(picked[0].as_ref(), b"second-ca");

        let offered = pick_pinned(certs, &ca_fingerprint(b"other")).expect_err("no match");
        assert!(offered.contains(&ca_fingerprint(b"first-ca")), "{offered}");
        assert_eq!(
            pick_pinned(Vec::new(), &pin).expect_err("empty"),
            "no certificate"
        );
    }

    #[test]
    fn the_ca_url_keeps_a_path_prefix() {
        let base = Url::parse("https://cp.example:8443/ferry/").expect("valid url");
        assert_eq!(
            route_url(&base, routes::CONTROL_PLANE_CA).as_str(),
            "https://cp.example:8443/ferry/v1/control-plane-ca"
        );
    }
}
