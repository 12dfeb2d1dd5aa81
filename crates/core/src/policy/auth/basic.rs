//! Basic auth: `Authorization: Basic base64(user:password)` checked against argon2 or bcrypt
//! hashes of the consumers' passwords.
//!
//! Invariants:
//! - Password hashing is slow by design, so verification runs on tokio's blocking pool, never on
//!   a traffic worker; an unknown user is verified against a dummy hash so its timing matches a
//!   known user with a wrong password (no user enumeration by timing).
//! - Successful verifications are cached for `CACHE_TTL`, keyed by SHA-256 of (user, password,
//!   stored hash): memory holds no password, and a changed hash in the config misses the cache.
//!   Failures are never cached. The cache holds at most `CACHE_MAX` entries (then it is cleared).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use sha2::{Digest, Sha256};
use tokio::time::Instant;

pub const CACHE_TTL: Duration = Duration::from_secs(300);
pub const CACHE_MAX: usize = 10_000;

/// An argon2id hash of a random password, verified when the user is unknown.
const DUMMY: &str = "$argon2id$v=19$m=19456,t=2,p=1$Z2F0ZWhvdXNlLWR1bW15$0nKFi5Vj6Y0Yx3kO3ZbNRPTu3kBdKtu4NlXMkaIVHSk";

/// Username → (consumer index, password hash).
#[derive(Debug, Default)]
pub struct BasicTable {
    users: HashMap<String, (usize, String)>,
}

/// Process-wide cache of successful verifications (see the module docs).
#[derive(Debug, Default)]
pub struct VerifiedCache {
    map: Mutex<HashMap<[u8; 32], Instant>>,
}

/// Splits a `Basic` credential into user and password (`None` when malformed).
pub fn decode(value: &[u8]) -> Option<(String, String)> {
    let raw = STANDARD.decode(super::trim(value)).ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (u, p) = text.split_once(':')?;
    Some((u.to_string(), p.to_string()))
}

/// Whether `password` matches the PHC argon2 or bcrypt `hash`.
pub fn verify_password(password: &str, hash: &str) -> bool {
    if hash.starts_with("$argon2") {
        use argon2::password_hash::{PasswordHash, PasswordVerifier};
        match PasswordHash::new(hash) {
            Ok(h) => argon2::Argon2::default().verify_password(password.as_bytes(), &h).is_ok(),
            Err(_) => false,
        }
    } else if hash.starts_with("$2") {
        bcrypt::verify(password, hash).unwrap_or(false)
    } else {
        false
    }
}

/// An argon2id hash of `password` with the salt `salt` (16 random bytes from the caller).
pub fn hash_password(password: &str, salt: &[u8; 16]) -> Result<String, String> {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let salt = SaltString::encode_b64(salt).map_err(|e| e.to_string())?;
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

impl BasicTable {
    pub fn insert(&mut self, user: &str, consumer: usize, hash: &str) {
        self.users.insert(user.to_string(), (consumer, hash.to_string()));
    }

    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// The consumer whose user and password these are.
    pub async fn check(&self, cache: &VerifiedCache, user: &str, password: &str) -> Option<usize> {
        let (idx, hash) = match self.users.get(user) {
            Some((i, h)) => (Some(*i), h.clone()),
            None => (None, DUMMY.to_string()),
        };
        let mut d = Sha256::new();
        for part in [user.as_bytes(), password.as_bytes(), hash.as_bytes()] {
            d.update((part.len() as u64).to_le_bytes());
            d.update(part);
        }
        let digest: [u8; 32] = d.finalize().into();
        let now = Instant::now();
        if idx.is_some() {
            let map = cache.map.lock().unwrap_or_else(|p| p.into_inner());
            if map.get(&digest).is_some_and(|t| now < *t) {
                return idx;
            }
        }
        let pw = password.to_string();
        let ok = tokio::task::spawn_blocking(move || verify_password(&pw, &hash)).await.unwrap_or(false);
        let idx = idx.filter(|_| ok)?;
        let mut map = cache.map.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= CACHE_MAX {
            map.retain(|_, t| now < *t);
            if map.len() >= CACHE_MAX {
                map.clear();
            }
        }
        map.insert(digest, now + CACHE_TTL);
        Some(idx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_credentials() {
        assert_eq!(decode(b"YWxpY2U6cHc6eA=="), Some(("alice".into(), "pw:x".into())));
        assert_eq!(decode(b"!!"), None);
        assert_eq!(decode(b"YWxpY2U="), None, "no colon");
    }

    #[test]
    fn argon2_and_bcrypt() {
        let h = hash_password("pw", &[7; 16]).unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password("pw", &h));
        assert!(!verify_password("px", &h));
        let b = bcrypt::hash_with_salt("pw", 4, [3; 16]).unwrap().to_string();
        assert!(verify_password("pw", &b));
        assert!(!verify_password("px", &b));
        assert!(!verify_password("pw", "plain"));
        assert!(!verify_password("x", DUMMY));
        // The dummy must really be verified (a parse failure would answer instantly).
        assert!(argon2::password_hash::PasswordHash::new(DUMMY).is_ok());
    }
}
