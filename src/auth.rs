//! API keys: generated with 192 bits of randomness, shown once, stored as SHA-256.
//!
//! A fast hash is right here (unlike passwords): the key is random, so there is nothing to
//! brute-force from its hash, and every request must check one.

use rand::RngCore;
use sha2::{Digest, Sha256};

/// Prefix that makes Herald keys recognizable in logs and secret scanners.
const PREFIX: &str = "hld_";

pub fn generate_key() -> String {
    let mut bytes = [0u8; 24];
    rand::rng().fill_bytes(&mut bytes);
    format!("{PREFIX}{}", hex::encode(bytes))
}

pub fn hash_key(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_unique_and_hash_stably() {
        let (a, b) = (generate_key(), generate_key());
        assert_ne!(a, b);
        assert!(a.starts_with("hld_") && a.len() == 52);
        assert_eq!(hash_key(&a), hash_key(&a));
        assert_ne!(hash_key(&a), hash_key(&b));
    }
}
