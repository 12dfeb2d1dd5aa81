//! `TokenCache`: tokens that passed verification, so a client reusing its token (as real clients
//! do for the token's whole lifetime) costs a SHA-256 and a map lookup instead of a signature
//! check (~250 µs for RS256/ES256 with RustCrypto).
//!
//! Why a hit is as good as a verification:
//! - The key is the SHA-256 of the exact token bytes. A different token (any changed header,
//!   claim or signature byte) has a different digest unless SHA-256 collides, so a hit means these
//!   bytes were verified before. Nothing but digests is stored as a key (no token text in memory
//!   beyond its request), and the lookup reveals nothing about stored entries beyond what the
//!   client already sent.
//! - Only tokens that passed every check (signature, algorithm binding, claims) are inserted, so
//!   forged or random tokens can neither hit nor fill the cache; a flood of them takes the full
//!   verification path every time, as without a cache.
//! - The caller re-runs the time-dependent claim checks (`exp`, `nbf`, `iat`, lifetime) on every
//!   hit, so a cached token expires exactly when an uncached one would.
//! - An entry records the generation of the key set that verified it and is used only while that
//!   set is current (and fresh, for a JWKS): after a JWKS rotation or refresh the next request
//!   verifies against the new keys again, so a key withdrawn by the IdP stops working as fast as
//!   without a cache. Static keys only change with a reload, which compiles a new verifier with
//!   an empty cache (the same holds for every other config change: issuers, audiences, keys).
//!
//! Bounds: at most `capacity` entries (split over `SHARDS` mutex-protected shards so workers
//! rarely contend), evicted first-in first-out; an entry holds a 32-byte digest, a generation and
//! a shared pointer to the claims. Capacity 0 disables the cache.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// Entries per `jwt` method unless configured otherwise.
pub const DEFAULT_CAPACITY: usize = 4096;
const SHARDS: usize = 16;

/// The digest a token is cached under.
pub type TokenDigest = [u8; 32];

pub fn digest(token: &str) -> TokenDigest {
    Sha256::digest(token.as_bytes()).into()
}

struct Entry {
    generation: u64,
    claims: Arc<Map<String, Value>>,
}

#[derive(Default)]
struct Shard {
    map: HashMap<TokenDigest, Entry>,
    /// Insertion order of the keys in `map` (same length: keys are pushed only when new).
    order: VecDeque<TokenDigest>,
}

/// A bounded map from token digest to verified claims.
pub struct TokenCache {
    shards: Box<[Mutex<Shard>]>,
    per_shard: usize,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl std::fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenCache").field("capacity", &self.capacity()).finish_non_exhaustive()
    }
}

impl Default for TokenCache {
    fn default() -> TokenCache {
        TokenCache::new(DEFAULT_CAPACITY)
    }
}

impl TokenCache {
    pub fn new(capacity: usize) -> TokenCache {
        let per_shard = capacity.div_ceil(SHARDS);
        let shards = (0..if per_shard == 0 { 0 } else { SHARDS }).map(|_| Mutex::default()).collect();
        TokenCache { shards, per_shard, hits: AtomicU64::new(0), misses: AtomicU64::new(0) }
    }

    pub fn capacity(&self) -> usize {
        self.per_shard * self.shards.len()
    }

    pub fn enabled(&self) -> bool {
        !self.shards.is_empty()
    }

    fn shard(&self, d: &TokenDigest) -> Option<&Mutex<Shard>> {
        // The digest is uniformly distributed, so its first byte spreads tokens evenly.
        self.shards.get(usize::from(d[0]) % SHARDS.max(1))
    }

    /// The claims of a token verified with key-set `generation`, if cached under that generation.
    pub fn get(&self, d: &TokenDigest, generation: u64) -> Option<Arc<Map<String, Value>>> {
        let shard = self.shard(d)?.lock().unwrap_or_else(|p| p.into_inner());
        let hit = shard.map.get(d).filter(|e| e.generation == generation).map(|e| e.claims.clone());
        drop(shard);
        if hit.is_some() { &self.hits } else { &self.misses }.fetch_add(1, Ordering::Relaxed);
        hit
    }

    /// Remembers a token that passed every check with key-set `generation`.
    pub fn insert(&self, d: TokenDigest, generation: u64, claims: Arc<Map<String, Value>>) {
        let Some(shard) = self.shard(&d) else { return };
        let mut shard = shard.lock().unwrap_or_else(|p| p.into_inner());
        let entry = Entry { generation, claims };
        if let Some(e) = shard.map.get_mut(&d) {
            // Re-verified after a key change: refresh in place, keep its place in the order.
            *e = entry;
            return;
        }
        while shard.map.len() >= self.per_shard {
            let Some(old) = shard.order.pop_front() else { break };
            shard.map.remove(&old);
        }
        shard.map.insert(d, entry);
        shard.order.push_back(d);
    }

    /// `(hits, misses)` since start.
    pub fn stats(&self) -> (u64, u64) {
        (self.hits.load(Ordering::Relaxed), self.misses.load(Ordering::Relaxed))
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).map.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(sub: &str) -> Arc<Map<String, Value>> {
        let mut m = Map::new();
        m.insert("sub".into(), Value::String(sub.into()));
        Arc::new(m)
    }

    #[test]
    fn hits_only_the_same_token_and_generation() {
        let c = TokenCache::new(64);
        c.insert(digest("a.b.c"), 1, claims("a"));
        assert_eq!(c.get(&digest("a.b.c"), 1).as_deref(), Some(&*claims("a")));
        assert!(c.get(&digest("a.b.d"), 1).is_none(), "another token");
        assert!(c.get(&digest("a.b.c"), 2).is_none(), "keys changed since");
        c.insert(digest("a.b.c"), 2, claims("a"));
        assert!(c.get(&digest("a.b.c"), 2).is_some());
        assert_eq!(c.len(), 1);
        assert_eq!(c.stats(), (2, 2));
    }

    #[test]
    fn bounded_first_in_first_out() {
        let c = TokenCache::new(32);
        assert_eq!(c.capacity(), 32);
        for i in 0..1000 {
            c.insert(digest(&format!("t{i}")), 0, claims("x"));
        }
        assert!(c.len() <= 32, "{} entries", c.len());
        assert!(c.get(&digest("t999"), 0).is_some(), "the newest stays");
        assert!(c.get(&digest("t0"), 0).is_none(), "the oldest went");
    }

    #[test]
    fn capacity_zero_disables() {
        let c = TokenCache::new(0);
        assert!(!c.enabled());
        c.insert(digest("t"), 0, claims("x"));
        assert!(c.get(&digest("t"), 0).is_none());
        assert!(c.is_empty());
    }
}
