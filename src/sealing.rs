//! Secrets at rest. Provider credentials an account sets through the API are stored sealed
//! (XChaCha20-Poly1305) under a key from config, `credentials.key`, so a copy of the database
//! alone gives away no auth token.
//!
//! Each sealed value is a fresh random 24-byte nonce followed by the ciphertext and its tag
//! (random nonces are safe at this size: XChaCha's nonce space makes collisions negligible).
//! The associated data binds a value to the row it was written for (its account and
//! provider), so a sealed token copied into another account's row does not open. The key's
//! id, a short hash, is stored beside each value: a Herald started with another key says so,
//! instead of failing to authenticate with garbage.

use base64::Engine as _;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

const NONCE_LEN: usize = 24;

/// The key that seals and opens stored secrets.
pub struct SealingKey {
    cipher: XChaCha20Poly1305,
    id: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SealError {
    #[error("credentials.key must be 32 bytes written in base64 (e.g. `openssl rand -base64 32`)")]
    BadKey,
    #[error("the stored secret was sealed with another credentials.key (id {0})")]
    OtherKey(String),
    #[error("the stored secret does not open with credentials.key: it was altered or moved")]
    Tampered,
}

impl SealingKey {
    /// The key written in `encoded` (base64 of 32 bytes); None when it is empty (no key
    /// configured).
    ///
    /// # Errors
    /// Not base64, or not 32 bytes.
    pub fn from_config(encoded: &SecretString) -> Result<Option<SealingKey>, SealError> {
        let encoded = encoded.expose_secret().trim();
        if encoded.is_empty() {
            return Ok(None);
        }
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .map_err(|_| SealError::BadKey)?;
        if bytes.len() != 32 {
            return Err(SealError::BadKey);
        }
        let cipher = XChaCha20Poly1305::new_from_slice(&bytes).map_err(|_| SealError::BadKey)?;
        let mut hash = Sha256::new();
        hash.update(b"herald credentials key id\0");
        hash.update(&bytes);
        let id = hex::encode(hash.finalize()).chars().take(16).collect();
        Ok(Some(SealingKey { cipher, id }))
    }

    /// A short, non-secret name for the key, stored beside what it seals.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Seals `plaintext`, bound to `context` (which must be given again to open it).
    pub fn seal(&self, plaintext: &[u8], context: &[u8]) -> Vec<u8> {
        let nonce: [u8; NONCE_LEN] = rand::random();
        let nonce = XNonce::from(nonce);
        // Encryption fails only for inputs of gigabytes; a secret is a few hundred bytes.
        let sealed = self
            .cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext,
                    aad: context,
                },
            )
            .unwrap_or_default();
        let mut out = Vec::with_capacity(NONCE_LEN + sealed.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        out
    }

    /// Opens what [`SealingKey::seal`] sealed under the key named `key_id`, with the same
    /// `context`.
    ///
    /// # Errors
    /// Sealed under another key, or altered, or sealed for another context.
    pub fn open(&self, sealed: &[u8], key_id: &str, context: &[u8]) -> Result<Vec<u8>, SealError> {
        if key_id != self.id {
            return Err(SealError::OtherKey(key_id.to_owned()));
        }
        let (nonce, ciphertext) = sealed
            .split_at_checked(NONCE_LEN)
            .ok_or(SealError::Tampered)?;
        let nonce = XNonce::try_from(nonce).map_err(|_| SealError::Tampered)?;
        self.cipher
            .decrypt(
                &nonce,
                Payload {
                    msg: ciphertext,
                    aad: context,
                },
            )
            .map_err(|_| SealError::Tampered)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> SealingKey {
        let encoded = base64::engine::general_purpose::STANDARD.encode([byte; 32]);
        match SealingKey::from_config(&SecretString::from(encoded)) {
            Ok(Some(k)) => k,
            other => panic!("{:?}", other.err()),
        }
    }

    #[test]
    fn a_sealed_secret_opens_only_with_its_key_and_context() {
        let k = key(7);
        let sealed = k.seal(b"auth-token-123", b"acc_1/twilio");
        assert!(!sealed.windows(14).any(|w| w == b"auth-token-123"));
        assert_eq!(
            k.open(&sealed, k.id(), b"acc_1/twilio").as_deref(),
            Ok(&b"auth-token-123"[..])
        );
        // Another row's context, a flipped bit, a truncated value, another key: refused.
        assert_eq!(
            k.open(&sealed, k.id(), b"acc_2/twilio"),
            Err(SealError::Tampered)
        );
        let mut flipped = sealed.clone();
        if let Some(b) = flipped.last_mut() {
            *b ^= 1;
        }
        assert_eq!(
            k.open(&flipped, k.id(), b"acc_1/twilio"),
            Err(SealError::Tampered)
        );
        assert_eq!(
            k.open(&sealed[..10], k.id(), b"acc_1/twilio"),
            Err(SealError::Tampered)
        );
        let other = key(8);
        assert_ne!(other.id(), k.id());
        assert!(matches!(
            other.open(&sealed, k.id(), b"acc_1/twilio"),
            Err(SealError::OtherKey(_))
        ));
        // Two seals of the same secret differ (fresh nonces).
        assert_ne!(k.seal(b"x", b"c"), k.seal(b"x", b"c"));
    }

    #[test]
    fn only_a_32_byte_base64_key_is_accepted() {
        let parse = |s: &str| {
            SealingKey::from_config(&SecretString::from(s.to_owned())).map(|k| k.is_some())
        };
        assert_eq!(parse(""), Ok(false));
        assert_eq!(parse("not base64!"), Err(SealError::BadKey));
        assert_eq!(parse("c2hvcnQ="), Err(SealError::BadKey));
        assert_eq!(
            parse(&base64::engine::general_purpose::STANDARD.encode([1u8; 32])),
            Ok(true)
        );
    }
}
