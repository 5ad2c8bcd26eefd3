//! SHA-256 helpers: CA fingerprints (`sha256:<hex>`), token hashes, content hashes.

use sha2::{Digest, Sha256};

/// Lowercase hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The pin format used by join tokens and `--ca-fingerprint`: `sha256:` + lowercase hex
/// of the certificate's DER encoding.
pub fn ca_fingerprint(cert_der: &[u8]) -> String {
    format!("sha256:{}", sha256_hex(cert_der))
}

/// Parses a `sha256:<64 hex>` pin, returning the lowercase hex digest.
pub fn parse_fingerprint(pin: &str) -> Option<String> {
    let hex_part = pin.strip_prefix("sha256:")?;
    if hex_part.len() == 64 && hex_part.bytes().all(|b| b.is_ascii_hexdigit()) {
        Some(hex_part.to_ascii_lowercase())
    } else {
        None
    }
}

/// The content hash of a bundle: `sha256:` + hex of SHA-256 over every installed part,
/// each length-prefixed (so no two different bundles serialise alike). Metadata is
/// hashed as the JSON of the sorted map. Version is not part of it: re-delivering the
/// same content under a new version keeps the hash.
pub fn bundle_content_hash(
    certificate: &str,
    chain: &str,
    private_key: Option<&str>,
    trust_bundle: &str,
    metadata_json: &str,
) -> String {
    let mut h = Sha256::new();
    for part in [
        certificate,
        chain,
        private_key.unwrap_or(""),
        trust_bundle,
        metadata_json,
    ] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part.as_bytes());
    }
    format!("sha256:{}", hex::encode(h.finalize()))
}

/// [`bundle_content_hash`] of a wire bundle (what the agent checks before installing).
pub fn hash_of(bundle: &crate::api::Bundle) -> String {
    let metadata = serde_json::to_string(&bundle.metadata).unwrap_or_default();
    bundle_content_hash(
        &bundle.certificate,
        &bundle.chain,
        bundle.private_key.as_deref(),
        &bundle.trust_bundle,
        &metadata,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_hash_separates_fields() {
        let a = bundle_content_hash("ab", "c", None, "", "{}");
        let b = bundle_content_hash("a", "bc", None, "", "{}");
        assert_ne!(a, b, "moving bytes between fields changes the hash");
        assert_eq!(a, bundle_content_hash("ab", "c", Some(""), "", "{}"));
        assert!(a.starts_with("sha256:") && a.len() == 71);
    }

    #[test]
    fn fingerprint_round_trips_and_rejects_malformed_pins() {
        let pin = ca_fingerprint(b"der");
        assert_eq!(parse_fingerprint(&pin).as_deref(), Some(&pin[7..]));
        assert_eq!(
            parse_fingerprint(&pin.to_uppercase().replace("SHA256", "sha256")).as_deref(),
            Some(&pin[7..])
        );
        assert!(parse_fingerprint("sha1:abcd").is_none());
        assert!(parse_fingerprint("sha256:xyz").is_none());
        assert!(parse_fingerprint(&pin[..pin.len() - 1]).is_none());
    }
}
