//! The master key and AES-256-GCM sealing of private keys at rest.
//!
//! A sealed blob is `nonce (12 bytes) || ciphertext || tag`; the associated data binds
//! it to its row (for the CA: the trust domain), so a blob copied to another row does
//! not open. The key id stored beside each blob names the master key that sealed it,
//! which is how a rotation knows what to re-seal.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use sha2::{Digest, Sha256};

#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("master key must be 32 bytes given as 64 hex characters or base64, got {0} bytes")]
    BadLength(usize),
    #[error("master key is neither hex nor base64")]
    BadEncoding,
    #[error(
        "sealed key was written by master key {stored}, but the configured master key is {configured}"
    )]
    WrongKey { stored: String, configured: String },
    #[error(
        "sealed key does not open with the configured master key (wrong key or corrupted data)"
    )]
    Open,
    #[error("random number generator failed")]
    Rng,
}

/// The 256-bit key that seals private keys in the database. Its `Debug` never shows it.
pub struct MasterKey {
    key: LessSafeKey,
    /// HMAC-SHA256 keyed by the master key, for [`MasterKey::derive`].
    derive: aws_lc_rs::hmac::Key,
    id: String,
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MasterKey({})", self.id)
    }
}

impl MasterKey {
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, SealError> {
        if bytes.len() != 32 {
            return Err(SealError::BadLength(bytes.len()));
        }
        let id =
            hex::encode(&Sha256::digest([b"ferry-master-key-id:".as_slice(), bytes].concat())[..8]);
        let unbound =
            UnboundKey::new(&AES_256_GCM, bytes).map_err(|_| SealError::BadLength(bytes.len()))?;
        Ok(Self {
            key: LessSafeKey::new(unbound),
            derive: aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, bytes),
            id,
        })
    }

    /// Parses the text form: 64 hex characters or standard base64 of 32 bytes.
    pub fn parse(text: &str) -> Result<Self, SealError> {
        use base64::Engine;
        let text = text.trim();
        let bytes = if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
            hex::decode(text).map_err(|_| SealError::BadEncoding)?
        } else {
            base64::engine::general_purpose::STANDARD
                .decode(text)
                .map_err(|_| SealError::BadEncoding)?
        };
        Self::from_bytes(&bytes)
    }

    /// A new random key in its text form (hex), for a key file created on first start.
    pub fn generate_text() -> Result<String, SealError> {
        let mut bytes = [0u8; 32];
        aws_lc_rs::rand::fill(&mut bytes).map_err(|_| SealError::Rng)?;
        Ok(hex::encode(bytes))
    }

    /// Short stable id of this key (not secret: a truncated hash).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// A 32-byte key for `purpose` (HMAC-SHA256(master, purpose)): the same on every
    /// replica, unrelated to the sealing key and to other purposes. Seals nothing.
    pub fn derive(&self, purpose: &[u8]) -> [u8; 32] {
        let tag = aws_lc_rs::hmac::sign(&self.derive, purpose);
        let mut out = [0u8; 32];
        out.copy_from_slice(tag.as_ref()); // HMAC-SHA256 tags are always 32 bytes
        out
    }

    pub fn seal(&self, plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>, SealError> {
        let mut nonce = [0u8; NONCE_LEN];
        aws_lc_rs::rand::fill(&mut nonce).map_err(|_| SealError::Rng)?;
        let mut buf = plaintext.to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad),
                &mut buf,
            )
            .map_err(|_| SealError::Rng)?;
        Ok([nonce.as_slice(), &buf].concat())
    }

    pub fn open(
        &self,
        sealed: &[u8],
        aad: &[u8],
        stored_key_id: &str,
    ) -> Result<Vec<u8>, SealError> {
        if stored_key_id != self.id {
            return Err(SealError::WrongKey {
                stored: stored_key_id.to_owned(),
                configured: self.id.clone(),
            });
        }
        if sealed.len() < NONCE_LEN {
            return Err(SealError::Open);
        }
        let (nonce, ct) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| SealError::Open)?;
        let mut buf = ct.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(aad), &mut buf)
            .map_err(|_| SealError::Open)?;
        Ok(plain.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_keys_open_only_with_their_key_and_row() {
        let key = MasterKey::parse(&MasterKey::generate_text().expect("rng")).expect("valid");
        let sealed = key.seal(b"private key", b"ferry.local").expect("seal");
        assert!(
            !sealed.windows(11).any(|w| w == b"private key"),
            "plaintext visible"
        );
        assert_eq!(
            key.open(&sealed, b"ferry.local", key.id()).expect("opens"),
            b"private key"
        );
        assert!(matches!(
            key.open(&sealed, b"other.domain", key.id()),
            Err(SealError::Open)
        ));
        let other = MasterKey::from_bytes(&[7u8; 32]).expect("valid");
        assert!(matches!(
            other.open(&sealed, b"ferry.local", key.id()),
            Err(SealError::WrongKey { .. })
        ));
        assert!(matches!(
            MasterKey::parse("abcd"),
            Err(SealError::BadEncoding | SealError::BadLength(_))
        ));
    }
}
