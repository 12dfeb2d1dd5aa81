//! State of policies that outlives a snapshot: the `Limiters` registry (rate limits,
//! concurrency limits, Redis clients, identity state) and the compiled limit keys (`KeySpec`).
//!
//! Invariants:
//! - A limit key is compiled once per snapshot into a `KeySpec`; per request it is hashed into a
//!   `u64` with the limiter's own random SipHash keys, without allocating. Limiters store these
//!   hashes, never raw values: state per key is two `u64`s whatever the client sends, and a client
//!   cannot choose values that collide (the hash keys are secret and per limiter).
//! - Limiters live in `Limiters`, keyed by (route name, policy index, the policy's state-relevant
//!   config). A reload that keeps a policy as it was re-attaches the same limiter (counters and
//!   in-flight counts survive); any change to what the state means (limit, burst, key, max, ...)
//!   starts a fresh one. Policies no longer in the config are dropped after the reload.
//! - Cluster-mode Redis connections (`cluster.rs`) live here too, one per distinct `cluster.redis`
//!   connection setting (URL and timeouts): a reload that keeps them keeps the connection.
//! - The registry's mutex is taken at compile time and by the sweeper, never per request.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use gatehouse_config as cfg;

use crate::http1::Headers;

use super::cluster::{self, RedisClient};
use super::concurrency::ConcurrencyLimiter;
use super::rate_limit::RateLimiter;

/// One compiled part of a limit key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyPart {
    ClientIp,
    Route,
    /// Lower-cased header name.
    Header(String),
    /// The authenticated identity's name.
    Consumer,
    /// A claim of the verified token.
    Claim(String),
}

/// A compiled limit key: its parts are hashed in order into one `u64`.
#[derive(Debug, Clone)]
pub struct KeySpec {
    parts: Vec<KeyPart>,
    /// `[route]`: one counter for the route; no hashing at all.
    constant: bool,
}

impl KeySpec {
    pub fn compile(key: &cfg::LimitKey) -> KeySpec {
        let parts: Vec<KeyPart> = key
            .0
            .iter()
            .map(|p| match p {
                cfg::KeyPart::ClientIp => KeyPart::ClientIp,
                cfg::KeyPart::Route => KeyPart::Route,
                cfg::KeyPart::Header(h) => KeyPart::Header(h.to_ascii_lowercase()),
                cfg::KeyPart::Consumer => KeyPart::Consumer,
                cfg::KeyPart::Claim(c) => KeyPart::Claim(c.clone()),
            })
            .collect();
        let constant = parts.iter().all(|p| *p == KeyPart::Route);
        KeySpec { parts, constant }
    }

    /// The request's key under this spec. A missing header hashes as "absent", so requests that
    /// omit it share one key (omitting a header never escapes a limit). Only the first value of a
    /// repeated header counts.
    pub fn hash(&self, seed: &impl BuildHasher, client_ip: IpAddr, headers: &Headers) -> u64 {
        self.hash_with(seed, client_ip, headers, None)
    }

    /// Like `hash`, with the request's identity for `consumer` and `claim` parts (no identity,
    /// or no such claim: one shared "absent" key, like a missing header).
    pub fn hash_with(
        &self,
        seed: &impl BuildHasher,
        client_ip: IpAddr,
        headers: &Headers,
        identity: Option<&crate::identity::Identity>,
    ) -> u64 {
        if self.constant {
            return 0;
        }
        let mut h = seed.build_hasher();
        for p in &self.parts {
            match p {
                KeyPart::ClientIp => match client_ip {
                    IpAddr::V4(ip) => {
                        h.write_u8(4);
                        h.write(&ip.octets());
                    }
                    IpAddr::V6(ip) => {
                        h.write_u8(6);
                        h.write(&ip.octets());
                    }
                },
                KeyPart::Route => h.write_u8(0),
                KeyPart::Header(name) => match headers.get(name) {
                    Some(v) => {
                        h.write_u8(1);
                        h.write_usize(v.len());
                        h.write(v);
                    }
                    None => h.write_u8(2),
                },
                KeyPart::Consumer => match identity {
                    Some(id) => {
                        h.write_u8(3);
                        h.write_usize(id.name.len());
                        h.write(id.name.as_bytes());
                    }
                    None => h.write_u8(4),
                },
                KeyPart::Claim(c) => match identity.and_then(|id| id.claim(c)) {
                    Some(v) => {
                        let s = match v {
                            serde_json::Value::String(s) => s.clone(),
                            other => other.to_string(),
                        };
                        h.write_u8(5);
                        h.write_usize(s.len());
                        h.write(s.as_bytes());
                    }
                    None => h.write_u8(6),
                },
            }
        }
        h.finish()
    }
}

/// A hasher for keys that already are uniform 64-bit hashes: passes them through.
#[derive(Default, Clone, Copy)]
pub(crate) struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used by `HashMap<u64, _>`; fold anything else for completeness.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

pub(crate) type KeyMap<V> = HashMap<u64, V, std::hash::BuildHasherDefault<PassThrough>>;

/// Number of shards of a limiter's key map (a power of two; the top bits of the key pick one).
pub(crate) const SHARDS: usize = 64;

pub(crate) fn shard_of(key: u64) -> usize {
    (key >> (64 - SHARDS.trailing_zeros())) as usize
}

/// Which policy of which route a limiter belongs to, and the config its state depends on.
pub type StateId = (String, usize, String);

/// Long-lived limiters keyed by stable ids (see the module invariants).
#[derive(Debug, Default)]
pub struct Limiters {
    rate: Mutex<HashMap<StateId, Arc<RateLimiter>>>,
    concurrency: Mutex<HashMap<StateId, Arc<ConcurrencyLimiter>>>,
    /// Redis clients by connection setting (URL, timeout, connect timeout).
    redis: Mutex<HashMap<RedisId, Arc<RedisClient>>>,
    /// Identity state (JWKS and introspection caches, auth decision counters); kept here so it
    /// survives reloads like the limiters.
    pub auth: Arc<crate::policy::auth::AuthState>,
    /// Requests refused by `ip_filter` (listener and route), for `/metrics`.
    pub ip_denied: Arc<super::ip::IpDenials>,
}

/// What a Redis connection depends on: a change means a new connection.
pub type RedisId = (String, std::time::Duration, std::time::Duration);

/// The registry id of a `cluster.redis` section.
pub fn redis_id(r: &cfg::Redis) -> RedisId {
    (r.url.clone(), r.timeout.0, r.connect_timeout.0)
}

impl Limiters {
    pub fn new() -> Limiters {
        Limiters::default()
    }

    /// The rate limiter for `id`, created by `make` on first use.
    pub fn rate(&self, id: StateId, make: impl FnOnce() -> RateLimiter) -> Arc<RateLimiter> {
        let mut map = self.rate.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(id).or_insert_with(|| Arc::new(make())).clone()
    }

    /// The concurrency limiter for `id`, created by `make` on first use.
    pub fn concurrency(&self, id: StateId, make: impl FnOnce() -> ConcurrencyLimiter) -> Arc<ConcurrencyLimiter> {
        let mut map = self.concurrency.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(id).or_insert_with(|| Arc::new(make())).clone()
    }

    /// The Redis client for `r`, created (not yet connected) on first use.
    pub fn redis(&self, r: &cfg::Redis) -> Result<Arc<RedisClient>, cluster::SetupError> {
        let mut map = self.redis.lock().unwrap_or_else(|p| p.into_inner());
        let id = redis_id(r);
        if let Some(c) = map.get(&id) {
            return Ok(c.clone());
        }
        let c = Arc::new(RedisClient::new(r)?);
        map.insert(id, c.clone());
        Ok(c)
    }

    /// Drops Redis clients whose setting is not `live` (after a reload).
    pub fn retain_redis(&self, live: Option<&RedisId>) {
        self.redis.lock().unwrap_or_else(|p| p.into_inner()).retain(|k, _| Some(k) == live);
    }

    /// Drops limiters whose policy is not in the new config (the old snapshot keeps its `Arc`s
    /// until its last request finishes).
    pub fn retain(&self, live: &[StateId]) {
        self.rate.lock().unwrap_or_else(|p| p.into_inner()).retain(|k, _| live.contains(k));
        self.concurrency.lock().unwrap_or_else(|p| p.into_inner()).retain(|k, _| live.contains(k));
    }

    /// Every rate limiter with its id (for the admin API and metrics).
    pub fn rate_limiters(&self) -> Vec<(StateId, Arc<RateLimiter>)> {
        self.rate.lock().unwrap_or_else(|p| p.into_inner()).iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }

    /// Every concurrency limiter with its id.
    pub fn concurrency_limiters(&self) -> Vec<(StateId, Arc<ConcurrencyLimiter>)> {
        self.concurrency.lock().unwrap_or_else(|p| p.into_inner()).iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }

    /// Removes expired keys from every rate limiter. The registry lock is released before any
    /// limiter is swept.
    pub fn sweep(&self) {
        for (_, l) in self.rate_limiters() {
            l.sweep();
        }
    }
}

/// How often the gateway sweeps expired rate-limit keys.
pub const SWEEP_INTERVAL: std::time::Duration = std::time::Duration::from_secs(10);

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use std::hash::RandomState;

    #[test]
    fn keys_hash_by_parts() {
        let seed = RandomState::new();
        let ip1: IpAddr = "10.0.0.1".parse().unwrap();
        let ip2: IpAddr = "10.0.0.2".parse().unwrap();
        let mut h1 = Headers::new();
        h1.append(Bytes::from_static(b"x-tenant"), Bytes::from_static(b"a"));
        let mut h2 = Headers::new();
        h2.append(Bytes::from_static(b"x-tenant"), Bytes::from_static(b"b"));
        let none = Headers::new();

        let route = KeySpec::compile(&cfg::LimitKey(vec![cfg::KeyPart::Route]));
        assert_eq!(route.hash(&seed, ip1, &h1), route.hash(&seed, ip2, &h2));

        let ip = KeySpec::compile(&cfg::LimitKey(vec![cfg::KeyPart::ClientIp]));
        assert_ne!(ip.hash(&seed, ip1, &none), ip.hash(&seed, ip2, &none));
        assert_eq!(ip.hash(&seed, ip1, &h1), ip.hash(&seed, ip1, &h2));

        let hdr = KeySpec::compile(&cfg::LimitKey(vec![cfg::KeyPart::Header("X-Tenant".into())]));
        assert_ne!(hdr.hash(&seed, ip1, &h1), hdr.hash(&seed, ip1, &h2));
        assert_eq!(hdr.hash(&seed, ip1, &none), hdr.hash(&seed, ip2, &none), "absent is one shared key");
        assert_ne!(hdr.hash(&seed, ip1, &none), hdr.hash(&seed, ip1, &h1));

        let both =
            KeySpec::compile(&cfg::LimitKey(vec![cfg::KeyPart::ClientIp, cfg::KeyPart::Header("x-tenant".into())]));
        let all = [both.hash(&seed, ip1, &h1), both.hash(&seed, ip1, &h2), both.hash(&seed, ip2, &h1)];
        assert!(all[0] != all[1] && all[0] != all[2] && all[1] != all[2]);
    }

    #[test]
    fn shards_cover_the_range() {
        assert_eq!(shard_of(0), 0);
        assert_eq!(shard_of(u64::MAX), SHARDS - 1);
    }
}
