//! Idempotency keys (SPEC §1): 1–255 printable ASCII characters, scoped to the account.
//! The request is fingerprinted as parsed JSON (so whitespace and key order do not matter)
//! together with the endpoint it was sent to.

use sha2::{Digest, Sha256};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdempotencyKeyError {
    #[error("the Idempotency-Key header is empty")]
    Empty,
    #[error("the Idempotency-Key header is longer than 255 characters")]
    TooLong,
    #[error("the Idempotency-Key header may hold only printable ASCII characters")]
    NotPrintable,
}

impl IdempotencyKey {
    pub const MAX_LEN: usize = 255;

    pub fn parse(raw: &[u8]) -> Result<Self, IdempotencyKeyError> {
        if raw.is_empty() {
            return Err(IdempotencyKeyError::Empty);
        }
        if raw.len() > Self::MAX_LEN {
            return Err(IdempotencyKeyError::TooLong);
        }
        if !raw.iter().all(|b| (0x20..0x7f).contains(b)) {
            return Err(IdempotencyKeyError::NotPrintable);
        }
        Ok(Self(String::from_utf8_lossy(raw).into_owned()))
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

/// Fingerprint of a request: endpoint plus body, serialized canonically (serde_json's map
/// keeps keys sorted).
pub fn request_hash(endpoint: &str, body: &serde_json::Value) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(endpoint.as_bytes());
    hasher.update([0]);
    hasher.update(body.to_string().as_bytes());
    hasher.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_must_be_short_and_printable() {
        assert!(IdempotencyKey::parse(b"order-42").is_ok());
        assert_eq!(IdempotencyKey::parse(b""), Err(IdempotencyKeyError::Empty));
        assert_eq!(
            IdempotencyKey::parse(&[b'a'; 256]),
            Err(IdempotencyKeyError::TooLong)
        );
        assert!(IdempotencyKey::parse(&[b'a'; 255]).is_ok());
        assert_eq!(
            IdempotencyKey::parse(b"a\tb"),
            Err(IdempotencyKeyError::NotPrintable)
        );
    }

    #[test]
    fn the_fingerprint_ignores_formatting_but_not_content() {
        let a: serde_json::Value = serde_json::from_str(r#"{"a":1,"b":"x"}"#).unwrap_or_default();
        let b: serde_json::Value =
            serde_json::from_str("{ \"b\": \"x\",\n \"a\": 1 }").unwrap_or_default();
        let c: serde_json::Value = serde_json::from_str(r#"{"a":2,"b":"x"}"#).unwrap_or_default();
        assert_eq!(request_hash("/send", &a), request_hash("/send", &b));
        assert_ne!(request_hash("/send", &a), request_hash("/send", &c));
        assert_ne!(request_hash("/send", &a), request_hash("/bulk", &a));
    }
}
