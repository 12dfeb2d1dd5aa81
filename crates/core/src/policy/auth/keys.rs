//! API keys: a presented key is hashed with SHA-256 and looked up among the consumers' digests.
//!
//! Invariants: the config holds only digests, and so does memory; a presented key is never
//! stored or logged. The lookup is by digest, so its timing depends only on the digest of what
//! the client sent, which tells an attacker nothing about any stored key (SHA-256 preimage
//! resistance); the final equality check is constant-time anyway (`subtle`).

use std::collections::HashMap;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Digest → consumer index.
#[derive(Debug, Default)]
pub struct ApiKeyTable {
    by_digest: HashMap<[u8; 32], usize>,
}

/// The lower-case hex SHA-256 of `key`: what `gatehouse hash-key` prints.
pub fn hash_key(key: &str) -> String {
    hex(&Sha256::digest(key.as_bytes()))
}

pub fn hex(bytes: &[u8]) -> String {
    const H: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(H[usize::from(b >> 4)] as char);
        s.push(H[usize::from(b & 15)] as char);
    }
    s
}

fn unhex(s: &str) -> Option<[u8; 32]> {
    let b = s.as_bytes();
    if b.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        let d = |c: u8| (c as char).to_digit(16).map(|v| v as u8);
        *o = (d(b[2 * i])? << 4) | d(b[2 * i + 1])?;
    }
    Some(out)
}

impl ApiKeyTable {
    /// Adds a consumer's key digest (hex, validated by the config).
    pub fn insert(&mut self, sha256_hex: &str, consumer: usize) {
        if let Some(d) = unhex(sha256_hex) {
            self.by_digest.insert(d, consumer);
        }
    }

    /// The consumer owning `key`, if any.
    pub fn lookup(&self, key: &[u8]) -> Option<usize> {
        let d: [u8; 32] = Sha256::digest(key).into();
        let (stored, idx) = self.by_digest.get_key_value(&d)?;
        bool::from(stored.ct_eq(&d)).then_some(*idx)
    }

    pub fn is_empty(&self) -> bool {
        self.by_digest.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_round_trip() {
        let h = hash_key("s3cr3t");
        assert_eq!(h, "4e738ca5563c06cfd0018299933d58db1dd8bf97f6973dc99bf6cdc64b5550bd");
        let mut t = ApiKeyTable::default();
        t.insert(&h, 7);
        assert_eq!(t.lookup(b"s3cr3t"), Some(7));
        assert_eq!(t.lookup(b"s3cr3T"), None);
        assert_eq!(t.lookup(b""), None);
    }
}
