//! Cluster-mode rate limiting: the same GCRA as `rate_limit.rs`, run atomically inside Redis by a
//! Lua script, so every gateway sharing one Redis enforces one limit.
//!
//! Invariants:
//! - Same semantics as the local limiter (see `rate_limit.rs`): `T = period / count`,
//!   `τ = burst × T`, a request of cost `c` is admitted iff `max(TAT, now) + c × T − now ≤ τ + T`,
//!   and only an admitted request writes its TAT. The only difference is resolution: the script
//!   counts in whole microseconds (Lua numbers are doubles; µs since 1970 fit in 2^53, ns do not),
//!   so `T` is `period / count` rounded down to a microsecond. Validation refuses cluster limits
//!   faster than one request per microsecond.
//! - Time is the Redis server's (`redis.call('TIME')`), never the gateway's: gateways with skewed
//!   clocks agree. The TAT key expires (PX) `SLACK_MS` after the bucket is full again, when it
//!   means the same as an absent key, so Redis memory is bounded by the active keys.
//! - Keys: `<key_prefix>rl:<policy fingerprint>:<request key hash>`. Both hashes must be the same
//!   in every gateway process, so they use SipHash-2-4 with fixed keys (not the local limiter's
//!   random per-process keys); the request key is hashed to 128 bits, so accidental collisions
//!   are negligible. The prefix up to the last `:` is built once per snapshot.
//! - The scripts are hashed once per process (`LazyLock`); `redis::Script` sends EVALSHA and
//!   falls back to loading the script on NOSCRIPT (a restarted or flushed Redis).
//! - One `RedisClient` (one auto-reconnecting multiplexed `ConnectionManager`) per distinct
//!   `cluster.redis` section, kept in the `Limiters` registry so reloads keep the connection.
//!   Every call is bounded by `cluster.redis.timeout`. After a failure the client skips Redis for
//!   `BACKOFF` (callers apply their `on_redis_error` at once instead of each waiting the timeout),
//!   then lets requests probe again; the `ConnectionManager` reconnects in the background, so a
//!   Redis that comes back is used again without a restart.
//! - Batching (`batch: B`): one Redis call reserves up to `B` units (`RESERVE_LUA`: the same GCRA
//!   step with the largest cost the bucket admits, at most `B`); the gateway admits from its
//!   reservation locally until it is spent or `ttl` passes, then unused units are dropped. Every
//!   admitted request was paid for in Redis, and a reservation is spent within `ttl = B × T`
//!   (capped at `MAX_BATCH_TTL`) of being paid, so across the whole fleet the admissions in any
//!   window exceed the limit by at most `ttl / T ≤ B` units. The other way, units reserved by one
//!   gateway are not available to another: each gateway holds at most one reservation per key
//!   (while one request reserves, the gateway's other requests for the key go to Redis one unit
//!   at a time), so up to `B − 1` unused units, and a fleet of `N` gateways may refuse up to
//!   `N × (B − 1)` requests early. A refusal from Redis is repeated locally until its
//!   `Retry-After` (at most `ttl`), which can refuse up to `B` more units per gateway early.
//!   Redis round trips drop by up to `B` times while admitting, and to about one per key and
//!   `ttl` while refusing.

use std::fmt::Write as _;
use std::hash::{BuildHasher, Hasher};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::LazyLock;
use std::time::Duration;

use gatehouse_config as cfg;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::Script;
use tokio::time::Instant;

use super::decision::{Decision, Via};
use super::KeySpec;
use crate::http1::Headers;

/// How long a client skips Redis after an error before letting requests try again.
pub const BACKOFF: Duration = Duration::from_millis(250);

/// Extra lifetime of a TAT key after its bucket is full again (absorbs clock steps in Redis).
pub const SLACK_MS: u64 = 1_000;

/// Refund: KEYS[1]: the TAT; ARGV[1]: cost × T (µs). Moves the TAT back, keeping its TTL.
const REFUND_LUA: &str = r"
local stored = redis.call('GET', KEYS[1])
if stored then
  local tat = tonumber(stored) - tonumber(ARGV[1])
  redis.call('SET', KEYS[1], string.format('%.0f', tat), 'KEEPTTL')
end
return 0
";

/// The GCRA step, generalised for batching. KEYS[1]: the TAT (µs, Redis clock). ARGV: T (µs),
/// τ (µs), want, need, slack (ms). Takes `n = min(want, units the bucket admits now)` units if
/// `n ≥ need`; with `want = need = cost` it is exactly one GCRA step of `rate_limit::gcra`.
/// Returns `{n (0 = refused), remaining after, reset_us, retry_after_us}`.
const RESERVE_LUA: &str = r"
local t = tonumber(ARGV[1])
local tau = tonumber(ARGV[2])
local want = tonumber(ARGV[3])
local need = tonumber(ARGV[4])
local slack = tonumber(ARGV[5])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local base = now
local stored = redis.call('GET', KEYS[1])
if stored then
  local tat = tonumber(stored)
  if tat and tat > now then base = tat end
end
local limit = tau + t
local avail = math.floor((now + limit - base) / t)
if avail < need then
  if avail < 0 then avail = 0 end
  return {0, avail, base - now, base + need * t - now - limit}
end
local n = math.min(want, avail)
local new_tat = base + n * t
local ttl = math.ceil((new_tat - now) / 1000) + slack
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', ttl)
return {n, avail - n, new_tat - now, 0}
";

/// The longest a reservation may be held before its unused units are dropped.
pub const MAX_BATCH_TTL: Duration = Duration::from_secs(10);

/// Reservations a gateway holds at most per policy (beyond, requests go to Redis one by one).
const MAX_RESERVATIONS: usize = 65_536;
const RESERVATION_SHARDS: usize = 16;

static RESERVE: LazyLock<Script> = LazyLock::new(|| Script::new(RESERVE_LUA));
static REFUND: LazyLock<Script> = LazyLock::new(|| Script::new(REFUND_LUA));

/// Why a cluster-mode call did not produce a decision.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("redis did not answer within {0:?}")]
    Timeout(Duration),
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("redis is backing off after a recent error")]
    BackingOff,
    #[error("redis returned an unexpected reply: {0:?}")]
    Reply([i64; 4]),
}

/// Setting up a client failed (only on what validation should have refused, or no runtime).
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("invalid Redis URL: {0}")]
    Url(redis::RedisError),
    #[error("cannot create the Redis connection: {0}")]
    Manager(redis::RedisError),
    #[error("the Redis connection needs a tokio runtime")]
    NoRuntime,
    #[error("cannot read `{0}`: {1}")]
    File(String, std::io::Error),
}

/// One `cluster.redis` connection, shared by every cluster-mode policy that uses it.
pub struct RedisClient {
    /// `pool_size` multiplexed connections; calls rotate over them.
    conns: Vec<ConnectionManager>,
    next: std::sync::atomic::AtomicUsize,
    timeout: Duration,
    epoch: Instant,
    /// Redis is skipped until this many ms after `epoch` (0: not backing off).
    skip_until_ms: AtomicU64,
    /// Calls that failed or timed out (not counting the ones skipped while backing off).
    pub failures: AtomicU64,
}

impl std::fmt::Debug for RedisClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisClient").field("timeout", &self.timeout).finish()
    }
}

impl RedisClient {
    /// A client for `r`; connects lazily (on the first call), so a gateway starts while Redis
    /// is down. Must run inside a tokio runtime.
    pub fn new(r: &cfg::Redis) -> Result<RedisClient, SetupError> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(SetupError::NoRuntime);
        }
        let client = match &r.tls {
            _ if !r.url.starts_with("rediss://") => redis::Client::open(r.url.as_str()).map_err(SetupError::Url)?,
            tls => {
                // rustls with the ring provider (the only one compiled in) as the process default.
                let _ = rustls::crypto::ring::default_provider().install_default();
                let read = |f: &Option<String>| -> Result<Option<Vec<u8>>, SetupError> {
                    f.as_ref().map(|f| std::fs::read(f).map_err(|e| SetupError::File(f.clone(), e))).transpose()
                };
                let tls = tls.clone().unwrap_or_default();
                let client_tls = match (read(&tls.cert_file)?, read(&tls.key_file)?) {
                    (Some(client_cert), Some(client_key)) => Some(redis::ClientTlsConfig { client_cert, client_key }),
                    _ => None,
                };
                let certs = redis::TlsCertificates { client_tls, root_cert: read(&tls.ca_file)? };
                redis::Client::build_with_tls(r.url.as_str(), certs).map_err(SetupError::Url)?
            }
        };
        let config = ConnectionManagerConfig::new()
            .set_response_timeout(Some(r.timeout.0))
            .set_connection_timeout(Some(r.connect_timeout.0))
            // A few quick retries per reconnect; a failed reconnect is retried on the next call.
            .set_number_of_retries(2)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_millis(500));
        let conns = (0..r.pool_size.max(1))
            .map(|_| ConnectionManager::new_lazy_with_config(client.clone(), config.clone()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(SetupError::Manager)?;
        Ok(RedisClient {
            conns,
            next: std::sync::atomic::AtomicUsize::new(0),
            timeout: r.timeout.0,
            epoch: Instant::now(),
            skip_until_ms: AtomicU64::new(0),
            failures: AtomicU64::new(0),
        })
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Whether calls are skipped right now (a recent failure).
    pub fn backing_off(&self) -> bool {
        let until = self.skip_until_ms.load(Ordering::Relaxed);
        until != 0 && self.now_ms() < until
    }

    fn failed(&self, e: &ClusterError) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        let until = self.now_ms().saturating_add(u64::try_from(BACKOFF.as_millis()).unwrap_or(u64::MAX)).max(1);
        // Log once per backoff period, not once per request.
        let prev = self.skip_until_ms.swap(until, Ordering::Relaxed);
        if prev == 0 || self.now_ms() >= prev {
            tracing::warn!(error = %e, backoff_ms = BACKOFF.as_millis() as u64, "redis rate-limit call failed");
        }
    }

    /// Runs `inv` under the timeout and the backoff.
    async fn run<T: redis::FromRedisValue>(&self, inv: redis::ScriptInvocation<'_>) -> Result<T, ClusterError> {
        if self.backing_off() {
            return Err(ClusterError::BackingOff);
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.conns.len();
        let mut conn = self.conns[i].clone();
        let r = match tokio::time::timeout(self.timeout, inv.invoke_async::<T>(&mut conn)).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(ClusterError::Redis(e)),
            Err(_) => Err(ClusterError::Timeout(self.timeout)),
        };
        match r {
            Ok(v) => {
                if self.skip_until_ms.load(Ordering::Relaxed) != 0 {
                    self.skip_until_ms.store(0, Ordering::Relaxed);
                    tracing::info!("redis rate-limit calls succeed again");
                }
                Ok(v)
            }
            Err(e) => {
                self.failed(&e);
                Err(e)
            }
        }
    }
}

/// Fixed SipHash-2-4 keys: every gateway of a fleet must map a request to the same Redis key.
const FLEET_KEYS: [(u64, u64); 2] =
    [(0x6761_7465_686f_7573, 0x652d_726c_2d6b_6579), (0x9e37_79b9_7f4a_7c15, 0xc2b2_ae3d_27d4_eb4f)];

/// A `BuildHasher` with fixed keys (deterministic across processes, unlike `RandomState`).
#[derive(Clone, Copy)]
struct Fleet(u64, u64);

impl BuildHasher for Fleet {
    #[allow(deprecated)] // SipHasher is deprecated only in favour of the randomly keyed DefaultHasher.
    type Hasher = std::hash::SipHasher;
    #[allow(deprecated)]
    fn build_hasher(&self) -> std::hash::SipHasher {
        std::hash::SipHasher::new_with_keys(self.0, self.1)
    }
}

/// The fleet-wide fingerprint of a policy's state id (route, position, limit/burst/key).
pub fn fingerprint(id: &super::StateId) -> u64 {
    let mut h = Fleet(FLEET_KEYS[0].0, FLEET_KEYS[0].1).build_hasher();
    h.write(id.0.as_bytes());
    h.write_u8(0xff);
    h.write_u64(id.1 as u64);
    h.write(id.2.as_bytes());
    h.finish()
}

/// A compiled cluster-mode rate limit (per snapshot; the client is long-lived).
#[derive(Debug)]
pub struct ClusterLimit {
    client: std::sync::Arc<RedisClient>,
    /// `<key_prefix>rl:<fingerprint>:`, built once.
    prefix: String,
    t_us: u64,
    tau_us: u64,
    on_error: cfg::OnRedisError,
    batch: Option<Batcher>,
}

/// Units reserved from Redis for one key, admitted locally.
#[derive(Debug, Clone, Copy)]
struct Reservation {
    left: u64,
    /// Unused units are dropped then (the error bound depends on it).
    expires: Instant,
    /// What Redis reported right after the reservation (for the response headers).
    remaining: u64,
    reset_at: Instant,
    /// A refusal from Redis, repeated locally until then.
    refused_until: Option<Instant>,
    /// A request of this gateway is reserving for this key right now: others go to Redis one
    /// unit at a time instead of reserving too (so at most one batch per key and gateway is
    /// outstanding, which is what bounds the early refusals).
    reserving: bool,
}

impl Reservation {
    fn empty(now: Instant) -> Reservation {
        Reservation { left: 0, expires: now, remaining: 0, reset_at: now, refused_until: None, reserving: false }
    }
}

/// Clears a key's `reserving` flag if the reserving request is dropped before it finishes.
struct Reserving<'a> {
    b: &'a Batcher,
    key: &'a str,
    armed: bool,
}

impl Drop for Reserving<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.b.finish(self.key, None, Instant::now());
        }
    }
}

/// What the local side decides for a request.
enum Local {
    Decided(Decision),
    /// No units held: this request reserves a batch.
    Reserve,
    /// Another request is reserving: decide this one in Redis alone.
    Single,
}

/// The local side of batching: reservations per Redis key, in shards.
#[derive(Debug)]
struct Batcher {
    size: u64,
    ttl: Duration,
    shards: Box<[std::sync::Mutex<std::collections::HashMap<String, Reservation>>]>,
}

impl Batcher {
    fn shard(&self, key: &str) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, Reservation>> {
        let h = Fleet(FLEET_KEYS[1].0, FLEET_KEYS[1].1).hash_one(key);
        self.shards[(h as usize) % self.shards.len()].lock().unwrap_or_else(|p| p.into_inner())
    }

    fn local(&self, key: &str, cost: u64, now: Instant) -> Local {
        let mut map = self.shard(key);
        if !map.contains_key(key) && map.len() >= MAX_RESERVATIONS / RESERVATION_SHARDS {
            map.retain(|_, v| v.reserving || v.expires > now);
            if map.len() >= MAX_RESERVATIONS / RESERVATION_SHARDS {
                return Local::Single; // full: no batching for new keys until entries expire
            }
        }
        let r = map.entry(key.to_string()).or_insert_with(|| Reservation::empty(now));
        let reset_ns = r.reset_at.saturating_duration_since(now).as_nanos() as u64;
        if let Some(until) = r.refused_until.filter(|&u| u > now) {
            let retry_after_ns = until.saturating_duration_since(now).as_nanos() as u64;
            let d =
                Decision { allowed: false, remaining: 0, reset_ns, retry_after_ns, overflow: false, via: Via::Redis };
            return Local::Decided(d);
        }
        if r.expires > now && r.left >= cost {
            r.left -= cost;
            let remaining = r.remaining + r.left;
            let d =
                Decision { allowed: true, remaining, reset_ns, retry_after_ns: 0, overflow: false, via: Via::Redis };
            return Local::Decided(d);
        }
        if r.reserving {
            return Local::Single;
        }
        r.reserving = true;
        Local::Reserve
    }

    /// Ends a reservation: `result` is the new grant or refusal (`None`: the call failed).
    fn finish(&self, key: &str, result: Option<Reservation>, now: Instant) {
        let mut map = self.shard(key);
        let Some(r) = map.get_mut(key) else { return };
        r.reserving = false;
        let Some(new) = result else { return };
        if new.refused_until.is_some() {
            if r.expires > now && r.left > 0 {
                return; // units are still held (given back meanwhile): no refusal to repeat
            }
        } else if r.expires > now && r.refused_until.is_none() {
            // Keep the earlier expiry: units are never held longer than `ttl` after payment.
            r.left += new.left;
            r.remaining = new.remaining;
            r.reset_at = new.reset_at;
            return;
        }
        *r = new;
    }

    /// Gives `cost` back to a live reservation; false when there is none (refund in Redis).
    fn give_back(&self, key: &str, cost: u64, now: Instant) -> bool {
        let mut map = self.shard(key);
        match map.get_mut(key).filter(|r| r.expires > now && r.refused_until.is_none()) {
            Some(r) => {
                r.left += cost;
                true
            }
            None => false,
        }
    }
}

impl ClusterLimit {
    pub fn new(
        client: std::sync::Arc<RedisClient>,
        key_prefix: &str,
        id: &super::StateId,
        interval_ns: u64,
        tolerance_ns: u64,
        on_error: cfg::OnRedisError,
    ) -> ClusterLimit {
        let t_us = (interval_ns / 1_000).max(1);
        // τ = burst × T in microseconds, so `burst: b` still admits exactly b + 1 at once.
        let burst = tolerance_ns / interval_ns.max(1);
        ClusterLimit {
            client,
            prefix: format!("{key_prefix}rl:{:016x}:", fingerprint(id)),
            t_us,
            tau_us: t_us.saturating_mul(burst),
            on_error,
            batch: None,
        }
    }

    /// Turns on batching: reserve up to `size` units per Redis call (see the module docs).
    pub fn with_batch(mut self, size: u64) -> ClusterLimit {
        let ttl = Duration::from_micros(self.t_us.saturating_mul(size)).min(MAX_BATCH_TTL);
        self.batch = Some(Batcher { size, ttl, shards: (0..RESERVATION_SHARDS).map(|_| Default::default()).collect() });
        self
    }

    /// How long a reservation lives (batching only).
    pub fn batch_ttl(&self) -> Option<Duration> {
        self.batch.as_ref().map(|b| b.ttl)
    }

    pub fn on_error(&self) -> cfg::OnRedisError {
        self.on_error
    }

    pub fn client(&self) -> &RedisClient {
        &self.client
    }

    /// The request's Redis key.
    pub fn key(
        &self,
        spec: &KeySpec,
        client_ip: IpAddr,
        headers: &Headers,
        identity: Option<&crate::identity::Identity>,
    ) -> String {
        let a = spec.hash_with(&Fleet(FLEET_KEYS[0].0, FLEET_KEYS[0].1), client_ip, headers, identity);
        let b = spec.hash_with(&Fleet(FLEET_KEYS[1].0, FLEET_KEYS[1].1), client_ip, headers, identity);
        let mut k = String::with_capacity(self.prefix.len() + 32);
        k.push_str(&self.prefix);
        let _ = write!(k, "{a:016x}{b:016x}");
        k
    }

    /// Decides `key` with `cost`: from a local reservation when batching holds one, else in Redis.
    pub async fn decide(&self, key: &str, cost: u64) -> Result<Decision, ClusterError> {
        let Some(b) = &self.batch else { return self.decide_one(key, cost).await };
        let now = Instant::now();
        match b.local(key, cost, now) {
            Local::Decided(d) => return Ok(d),
            Local::Single => return self.decide_one(key, cost).await,
            Local::Reserve => {}
        }
        // Cleared on every path, a cancelled request (client gone mid-call) included.
        let mut guard = Reserving { b, key, armed: true };
        let r = self.reserve(key, b.size, cost).await;
        guard.armed = false;
        let now = Instant::now();
        match &r {
            Ok((d, granted)) => {
                let reset_at = now + Duration::from_nanos(d.reset_ns);
                let held = if d.allowed {
                    let left = granted.saturating_sub(cost);
                    Reservation {
                        left,
                        expires: now + b.ttl,
                        remaining: d.remaining - left,
                        reset_at,
                        refused_until: None,
                        reserving: false,
                    }
                } else {
                    // Repeat the refusal locally for as long as Redis would (at most `ttl`), so a
                    // flood over the limit costs one round trip per key and period, not per request.
                    let until = now + Duration::from_nanos(d.retry_after_ns).min(b.ttl);
                    Reservation {
                        left: 0,
                        expires: until,
                        remaining: d.remaining,
                        reset_at,
                        refused_until: Some(until),
                        reserving: false,
                    }
                };
                b.finish(key, Some(held), now);
            }
            Err(_) => b.finish(key, None, now),
        }
        r.map(|(d, _)| d)
    }

    /// One script call taking up to `want` units (at least `cost`): the decision for this request
    /// and the units granted (0: refused).
    async fn reserve(&self, key: &str, want: u64, cost: u64) -> Result<(Decision, u64), ClusterError> {
        let mut inv = RESERVE.key(key);
        inv.arg(self.t_us).arg(self.tau_us).arg(want).arg(cost).arg(SLACK_MS);
        let r: [i64; 4] = self.client.run::<(i64, i64, i64, i64)>(inv).await.map(|(a, b, c, d)| [a, b, c, d])?;
        let us = |v: i64| u64::try_from(v).map(|v| v.saturating_mul(1_000));
        let (Ok(granted), Ok(remaining), Ok(reset_ns), Ok(retry_after_ns)) =
            (u64::try_from(r[0]), u64::try_from(r[1]), us(r[2]), us(r[3]))
        else {
            return Err(ClusterError::Reply(r));
        };
        let left = granted.saturating_sub(cost);
        let d = Decision {
            allowed: granted > 0,
            // This request's view: what Redis has left plus what this gateway still holds.
            remaining: remaining + left,
            reset_ns,
            retry_after_ns: if granted > 0 { 0 } else { retry_after_ns },
            overflow: false,
            via: Via::Redis,
        };
        Ok((d, granted))
    }

    /// One GCRA step in Redis for `key` with `cost`.
    async fn decide_one(&self, key: &str, cost: u64) -> Result<Decision, ClusterError> {
        self.reserve(key, cost, cost).await.map(|(d, _)| d)
    }

    /// Gives back an admitted request's cost (a later limit of the same request refused it).
    pub async fn refund(&self, key: &str, cost: u64) -> Result<(), ClusterError> {
        if self.batch.as_ref().is_some_and(|b| b.give_back(key, cost, Instant::now())) {
            return Ok(());
        }
        let mut inv = REFUND.key(key);
        inv.arg(cost.saturating_mul(self.t_us));
        self.client.run::<i64>(inv).await.map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redis_cfg(url: &str) -> cfg::Redis {
        cfg::Redis {
            url: url.into(),
            tls: None,
            timeout: cfg::Dur(Duration::from_millis(50)),
            connect_timeout: cfg::Dur(Duration::from_millis(200)),
            key_prefix: "t:".into(),
            pool_size: 1,
        }
    }

    #[test]
    fn fingerprints_and_keys_are_deterministic() {
        let id = ("api".to_string(), 0, "rate_limit 10/1s burst=0 key=..".to_string());
        assert_eq!(fingerprint(&id), fingerprint(&id.clone()));
        assert_ne!(fingerprint(&id), fingerprint(&("api".to_string(), 1, id.2.clone())));
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let _g = rt.enter();
        let client = std::sync::Arc::new(RedisClient::new(&redis_cfg("redis://127.0.0.1:1/0")).unwrap());
        let l = ClusterLimit::new(client, "gh:", &id, 100_000_000, 900_000_000, cfg::OnRedisError::Local);
        assert_eq!((l.t_us, l.tau_us), (100_000, 900_000));
        let spec = KeySpec::compile(&cfg::LimitKey(vec![cfg::KeyPart::ClientIp]));
        let h = Headers::new();
        let k1 = l.key(&spec, "10.0.0.1".parse().unwrap(), &h, None);
        assert_eq!(k1, l.key(&spec, "10.0.0.1".parse().unwrap(), &h, None), "same request, same key");
        assert_ne!(k1, l.key(&spec, "10.0.0.2".parse().unwrap(), &h, None));
        assert!(k1.starts_with(&format!("gh:rl:{:016x}:", fingerprint(&id))), "{k1}");
        assert_eq!(k1.len(), "gh:rl:".len() + 16 + 1 + 32);
    }

    #[test]
    fn new_needs_a_runtime() {
        assert!(matches!(RedisClient::new(&redis_cfg("redis://127.0.0.1:1")), Err(SetupError::NoRuntime)));
    }

    /// Unreachable Redis: the first call fails within the timeout, then calls are skipped
    /// (no waiting) for `BACKOFF`, then tried again.
    #[tokio::test(start_paused = true)]
    async fn failures_back_off_then_probe_again() {
        // Port 1 on loopback refuses connections at once.
        let client = std::sync::Arc::new(RedisClient::new(&redis_cfg("redis://127.0.0.1:1/0")).unwrap());
        let id = ("r".to_string(), 0, String::new());
        let l = ClusterLimit::new(client.clone(), "t:", &id, 1_000_000, 0, cfg::OnRedisError::FailOpen);
        let e = l.decide("t:k", 1).await.unwrap_err();
        assert!(matches!(e, ClusterError::Redis(_) | ClusterError::Timeout(_)), "{e}");
        assert_eq!(client.failures.load(Ordering::Relaxed), 1);
        assert!(client.backing_off());
        assert!(matches!(l.decide("t:k", 1).await, Err(ClusterError::BackingOff)));
        assert_eq!(client.failures.load(Ordering::Relaxed), 1, "skipped calls are not failures");
        tokio::time::advance(BACKOFF).await;
        assert!(!client.backing_off());
        assert!(!matches!(l.decide("t:k", 1).await, Err(ClusterError::BackingOff)), "probes again");
        assert_eq!(client.failures.load(Ordering::Relaxed), 2);
    }
}
