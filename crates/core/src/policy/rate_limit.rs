//! The local rate limiter: GCRA (the generic cell rate algorithm) over a sharded, bounded key map.
//!
//! Semantics (pinned by the tests below, documented in docs/configuration.md "Policies"):
//! - A limit of `count` per `period` has the emission interval `T = period / count` (integer
//!   nanoseconds, rounded down) and the tolerance `τ = burst × T`. Each key stores one value, its
//!   TAT (theoretical arrival time, ns since the limiter's epoch); an absent key is a TAT in the past.
//! - A request of cost `c` at time `now` computes `tat' = max(TAT, now) + c × T` and is admitted iff
//!   `tat' − now ≤ τ + T`; only an admitted request stores `tat'`. A refused request changes
//!   nothing. So `burst: 0` admits one request per `T` (10/s → one per 100 ms) and `burst: b`
//!   admits `b + 1` at once, then one per `T`. A cost above `burst + 1` could never pass (the
//!   config refuses it).
//! - Reported: `remaining = ⌊(now + τ + T − max(TAT, now)) / T⌋` (cost-1 requests admissible right
//!   now), `reset = max(TAT, now) − now` (until the bucket is full again) and, for a refusal,
//!   `retry_after = tat' − now − (τ + T)` (until this very request would pass).
//!
//! State store: `SHARDS` cache-line-padded shards of `Mutex<HashMap<u64, u64>>`, chosen by the top
//! bits of the key hash. A std mutex held for one hash-map lookup (tens of ns, no allocation, no
//! await) is what governor/linkerd-style sharded maps do; with 64 shards two workers rarely meet,
//! and an uncontended futex lock is one atomic. We chose it over a lock-free map for bounded
//! memory with simple, exact eviction. The house rule "no blocking locks on the hot path" is
//! kept in spirit: no lock is held across I/O, await or allocation-heavy work.
//!
//! Bounded memory: at most `max_keys` (default [`MAX_KEYS`]) keys per limiter, split evenly over
//! the shards. When a new key arrives at a full shard, keys whose TAT is in the past are evicted
//! first (they mean "full bucket", so dropping them changes no decision); the scan only runs when
//! some key can have expired (a lower bound of the shard's TATs is kept). If the shard is still
//! full, the new key is counted in one **overflow bucket** shared by every untracked key of the
//! limiter, with the same limit. A flood of random client IPs therefore cannot grow memory, and it
//! gets at most one key's quota in total instead of one quota per address; tracked keys keep
//! their own state. `sweep` (run every `SWEEP_INTERVAL` by the gateway) removes expired keys.
//!
//! Time: `tokio::time::Instant`, so tests drive it with `tokio::time::pause`.
//!
//! Cluster mode (`cluster.rs`): a `RateLimitPolicy` with a `ClusterLimit` decides in Redis with
//! the same algorithm; this limiter then only counts decisions and serves as the
//! `on_redis_error: local` fallback. `Decision::via` records who decided, so a refund goes to the
//! same place.
//!
//! Compiling (`CompilePolicy for cfg::RateLimit`): the limiter is the one kept in `Limiters` for
//! the policy's `StateId`, whose fingerprint is the limit, burst and key, so a reload that keeps
//! them keeps the counters. The same id, hashed, names the policy's keys in Redis.

use std::hash::RandomState;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use bytes::Bytes;
use gatehouse_config as cfg;
use tokio::time::Instant;

pub use crate::ctx::RateReport;

use super::cluster::ClusterLimit;
pub use super::decision::{Decision, Via};
use super::{shard_of, CompilePolicy, Flow, KeyMap, KeySpec, Policy, PolicyEnv, StateId, SHARDS};
use crate::ctx::{RequestCtx, RequestInfo};
use crate::error::{CompileError, GatewayError};
use crate::http1::Headers;

/// Default cap on the number of keys one rate limiter tracks.
pub const MAX_KEYS: usize = 100_000;

#[repr(align(64))]
struct Shard(Mutex<ShardState>);

struct ShardState {
    map: KeyMap<u64>,
    /// No key's TAT is below this: until `now` reaches it, no key can have expired.
    earliest_tat: u64,
}

impl ShardState {
    fn evict_expired(&mut self, now: u64) {
        self.map.retain(|_, tat| *tat > now);
        self.earliest_tat = self.map.values().copied().min().unwrap_or(u64::MAX);
    }
}

/// A GCRA limiter for one policy of one route (see the module docs).
pub struct RateLimiter {
    interval_ns: u64,
    tolerance_ns: u64,
    epoch: Instant,
    seed: RandomState,
    shards: Box<[Shard]>,
    shard_cap: usize,
    overflow_tat: AtomicU64,
    /// Admitted requests.
    pub allowed: AtomicU64,
    /// Refused requests (429).
    pub limited: AtomicU64,
    /// Decisions made in the overflow bucket because the key map was full.
    pub overflowed: AtomicU64,
    /// Cluster mode: requests whose Redis call failed, timed out or was skipped while backing
    /// off (then decided by `on_redis_error`; those decided locally also count in
    /// `allowed`/`limited`, fail-open ones in `allowed`).
    pub redis_errors: AtomicU64,
    /// Cluster mode, `fail_closed`: requests refused with 503 because Redis was unavailable.
    pub unavailable: AtomicU64,
    /// Admissions given back because a later policy refused the request (they stay counted in
    /// `allowed`: admitted requests = allowed - refunded).
    pub refunded: AtomicU64,
}

impl std::fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimiter")
            .field("interval_ns", &self.interval_ns)
            .field("tolerance_ns", &self.tolerance_ns)
            .field("keys", &self.len())
            .finish()
    }
}

/// `(allowed, TAT after the decision, decision)` for one GCRA step.
fn gcra(tat: u64, now: u64, inc: u64, t: u64, tau: u64) -> (bool, Decision) {
    let base = tat.max(now);
    let new_tat = base.saturating_add(inc);
    let limit = tau.saturating_add(t);
    let remaining_at = |tat_after: u64| now.saturating_add(limit).saturating_sub(tat_after) / t.max(1);
    if new_tat - now <= limit {
        let d = Decision {
            allowed: true,
            remaining: remaining_at(new_tat),
            reset_ns: new_tat - now,
            retry_after_ns: 0,
            overflow: false,
            via: Via::Local,
        };
        (true, d)
    } else {
        let d = Decision {
            allowed: false,
            remaining: remaining_at(base),
            reset_ns: base - now,
            retry_after_ns: new_tat - now - limit,
            overflow: false,
            via: Via::Local,
        };
        (false, d)
    }
}

impl RateLimiter {
    /// A limiter with emission interval `interval_ns` (≥ 1) and tolerance `tolerance_ns`.
    pub fn new(interval_ns: u64, tolerance_ns: u64) -> RateLimiter {
        RateLimiter::with_max_keys(interval_ns, tolerance_ns, MAX_KEYS)
    }

    /// Like `new` with another key cap (at least one key per shard).
    pub fn with_max_keys(interval_ns: u64, tolerance_ns: u64, max_keys: usize) -> RateLimiter {
        RateLimiter {
            interval_ns: interval_ns.max(1),
            tolerance_ns,
            epoch: Instant::now(),
            seed: RandomState::new(),
            shards: (0..SHARDS)
                .map(|_| Shard(Mutex::new(ShardState { map: KeyMap::default(), earliest_tat: u64::MAX })))
                .collect(),
            shard_cap: (max_keys / SHARDS).max(1),
            overflow_tat: AtomicU64::new(0),
            allowed: AtomicU64::new(0),
            limited: AtomicU64::new(0),
            overflowed: AtomicU64::new(0),
            redis_errors: AtomicU64::new(0),
            unavailable: AtomicU64::new(0),
            refunded: AtomicU64::new(0),
        }
    }

    /// `(T, τ)` of this limiter in nanoseconds.
    pub fn interval_tolerance(&self) -> (u64, u64) {
        (self.interval_ns, self.tolerance_ns)
    }

    /// Counts a decision made elsewhere (Redis) in this limiter's counters.
    pub fn count(&self, allowed: bool) {
        if allowed {
            self.allowed.fetch_add(1, Ordering::Relaxed);
        } else {
            self.limited.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The limiter for a configured `rate_limit`. Validation guarantees `count ≥ 1`, a period of at
    /// most a year and at least 1 ns per request, so the arithmetic below cannot overflow.
    pub fn for_config(rl: &cfg::RateLimit) -> RateLimiter {
        let (t, tau) = Self::params(rl);
        RateLimiter::new(t, tau)
    }

    /// `(T, τ)` in nanoseconds for a configured rate limit.
    pub fn params(rl: &cfg::RateLimit) -> (u64, u64) {
        let period_ns = u128::from(rl.limit.period_secs) * 1_000_000_000;
        let t = (period_ns / u128::from(rl.limit.count.max(1))).max(1);
        let tau = t.saturating_mul(u128::from(rl.burst));
        (u64::try_from(t).unwrap_or(u64::MAX), u64::try_from(tau).unwrap_or(u64::MAX))
    }

    /// The secret hash keys that turn request keys into map keys.
    pub fn seed(&self) -> &RandomState {
        &self.seed
    }

    /// Now, in nanoseconds since this limiter was created.
    pub fn now_ns(&self) -> u64 {
        u64::try_from(Instant::now().saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX)
    }

    /// Decides one request of `cost` for `key` now.
    pub fn decide(&self, key: u64, cost: u64) -> Decision {
        self.decide_at(key, cost, self.now_ns())
    }

    /// Decides one request of `cost` for `key` at `now` (ns since the epoch).
    pub fn decide_at(&self, key: u64, cost: u64, now: u64) -> Decision {
        let (t, tau) = (self.interval_ns, self.tolerance_ns);
        let inc = cost.saturating_mul(t);
        let d = {
            let mut s = self.shards[shard_of(key)].0.lock().unwrap_or_else(|p| p.into_inner());
            match s.map.get_mut(&key) {
                Some(tat) => {
                    let (ok, d) = gcra(*tat, now, inc, t, tau);
                    if ok {
                        *tat = now + d.reset_ns;
                    }
                    Some(d)
                }
                None => {
                    let (ok, d) = gcra(0, now, inc, t, tau);
                    if !ok {
                        Some(d)
                    } else {
                        if s.map.len() >= self.shard_cap && now >= s.earliest_tat {
                            s.evict_expired(now);
                        }
                        if s.map.len() >= self.shard_cap {
                            None
                        } else {
                            let tat = now + d.reset_ns;
                            s.map.insert(key, tat);
                            s.earliest_tat = s.earliest_tat.min(tat);
                            Some(d)
                        }
                    }
                }
            }
        };
        let d = match d {
            Some(d) => d,
            None => self.decide_overflow(inc, now),
        };
        if d.allowed {
            self.allowed.fetch_add(1, Ordering::Relaxed);
        } else {
            self.limited.fetch_add(1, Ordering::Relaxed);
        }
        d
    }

    /// One GCRA step on the shared overflow bucket (lock-free compare-and-swap).
    fn decide_overflow(&self, inc: u64, now: u64) -> Decision {
        self.overflowed.fetch_add(1, Ordering::Relaxed);
        let mut tat = self.overflow_tat.load(Ordering::Acquire);
        loop {
            let (ok, mut d) = gcra(tat, now, inc, self.interval_ns, self.tolerance_ns);
            d.overflow = true;
            if !ok {
                return d;
            }
            match self.overflow_tat.compare_exchange_weak(tat, now + d.reset_ns, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return d,
                Err(current) => tat = current,
            }
        }
    }

    /// Gives back an admitted request's cost (a later limit of the same request refused it).
    pub fn refund(&self, key: u64, cost: u64, overflow: bool) {
        let dec = cost.saturating_mul(self.interval_ns);
        if overflow {
            let _ =
                self.overflow_tat.fetch_update(Ordering::AcqRel, Ordering::Acquire, |t| Some(t.saturating_sub(dec)));
        } else {
            let mut s = self.shards[shard_of(key)].0.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(tat) = s.map.get_mut(&key) {
                *tat = tat.saturating_sub(dec);
                let tat = *tat;
                s.earliest_tat = s.earliest_tat.min(tat);
            }
        }
        // Counters only grow (Prometheus reads a decrease as a reset): refunds count apart.
        self.refunded.fetch_add(1, Ordering::Relaxed);
    }

    /// Removes keys whose TAT is in the past (they are equivalent to absent keys).
    pub fn sweep(&self) {
        self.sweep_at(self.now_ns());
    }

    pub fn sweep_at(&self, now: u64) {
        for s in self.shards.iter() {
            let mut s = s.0.lock().unwrap_or_else(|p| p.into_inner());
            if now >= s.earliest_tat {
                s.evict_expired(now);
            }
        }
    }

    /// Keys tracked right now.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.0.lock().unwrap_or_else(|p| p.into_inner()).map.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A compiled `rate_limit` policy of a route.
#[derive(Debug)]
pub struct RateLimitPolicy {
    /// The local limiter: the state in local mode; in cluster mode the `on_redis_error: local`
    /// fallback, and the decision counters in both modes.
    pub limiter: std::sync::Arc<RateLimiter>,
    /// Cluster mode: the Redis-backed GCRA.
    cluster: Option<ClusterLimit>,
    key: KeySpec,
    cost: u64,
    headers: cfg::RateLimitHeaders,
    /// `"name"` as written in the draft headers.
    quoted_name: Bytes,
    /// The static header: draft `ratelimit-policy` or legacy `x-ratelimit-limit` value.
    policy_value: Bytes,
}

/// Whole seconds, rounded up.
fn ceil_secs(ns: u64) -> u64 {
    ns.div_ceil(1_000_000_000)
}

impl RateLimitPolicy {
    /// The policy's name (its `name`, else the route's), as in the draft headers.
    pub fn name(&self) -> &str {
        std::str::from_utf8(&self.quoted_name).unwrap_or("\"\"").trim_matches('"')
    }

    /// Whether decisions are made in Redis (cluster mode).
    pub fn is_cluster(&self) -> bool {
        self.cluster.is_some()
    }

    pub fn new(rl: &cfg::RateLimit, route: &str, limiter: std::sync::Arc<RateLimiter>) -> RateLimitPolicy {
        let name = rl.name.as_deref().unwrap_or(route);
        let quoted_name = Bytes::from(format!("\"{name}\""));
        let policy_value = match rl.headers {
            cfg::RateLimitHeaders::Draft => {
                Bytes::from(format!("\"{name}\";q={};w={}", rl.limit.count, rl.limit.period_secs))
            }
            _ => Bytes::from(rl.limit.count.to_string()),
        };
        RateLimitPolicy {
            limiter,
            cluster: None,
            key: KeySpec::compile(&rl.key),
            cost: rl.cost,
            headers: rl.headers,
            quoted_name,
            policy_value,
        }
    }

    /// Makes this a cluster-mode policy deciding in Redis through `cluster`.
    pub fn with_cluster(mut self, cluster: ClusterLimit) -> RateLimitPolicy {
        self.cluster = Some(cluster);
        self
    }

    fn key(&self, ctx: &RequestCtx, headers: &Headers) -> u64 {
        self.key.hash_with(self.limiter.seed(), ctx.client_ip, headers, ctx.identity.as_deref())
    }

    /// Decides the request and returns the decision. In cluster mode a failed Redis call is
    /// decided by the policy's `on_redis_error` (see `Via`).
    pub async fn check(&self, ctx: &RequestCtx, headers: &Headers) -> Decision {
        let Some(c) = &self.cluster else {
            return self.limiter.decide(self.key(ctx, headers), self.cost);
        };
        let rkey = c.key(&self.key, ctx.client_ip, headers, ctx.identity.as_deref());
        match c.decide(&rkey, self.cost).await {
            Ok(d) => {
                self.limiter.count(d.allowed);
                d
            }
            Err(_) => {
                // The client logs failures (once per backoff period); here they are counted.
                self.limiter.redis_errors.fetch_add(1, Ordering::Relaxed);
                match c.on_error() {
                    cfg::OnRedisError::FailOpen => {
                        self.limiter.count(true);
                        Decision::unmetered(Via::FailOpen)
                    }
                    cfg::OnRedisError::FailClosed => {
                        self.limiter.unavailable.fetch_add(1, Ordering::Relaxed);
                        Decision::unmetered(Via::FailClosed)
                    }
                    cfg::OnRedisError::Local => self.limiter.decide(self.key(ctx, headers), self.cost),
                }
            }
        }
    }

    /// Undoes this request's admitted decision `via`/`overflow` (a later policy refused it).
    pub async fn refund_key(&self, ctx: &RequestCtx, headers: &Headers, via: Via, overflow: bool) {
        match (via, &self.cluster) {
            (Via::Local, _) => self.limiter.refund(self.key(ctx, headers), self.cost, overflow),
            (Via::Redis, Some(c)) => {
                // Best effort: a failed refund leaves the cost consumed, erring on the safe side.
                let refunded =
                    c.refund(&c.key(&self.key, ctx.client_ip, headers, ctx.identity.as_deref()), self.cost).await;
                if refunded.is_ok() {
                    self.limiter.refunded.fetch_add(1, Ordering::Relaxed);
                }
            }
            _ => {}
        }
    }

    /// Whether this policy reports itself in response headers.
    pub fn reports(&self) -> bool {
        self.headers != cfg::RateLimitHeaders::None
    }

    /// Calls `put(name, value)` for each response header describing `r`.
    pub fn headers_for(&self, r: &RateReport, mut put: impl FnMut(Bytes, Bytes)) {
        let reset = ceil_secs(r.reset_ns);
        match self.headers {
            cfg::RateLimitHeaders::Draft => {
                put(Bytes::from_static(b"ratelimit-policy"), self.policy_value.clone());
                let mut v = Vec::with_capacity(self.quoted_name.len() + 24);
                v.extend_from_slice(&self.quoted_name);
                v.extend_from_slice(b";r=");
                crate::http1::push_u64(&mut v, r.remaining);
                v.extend_from_slice(b";t=");
                crate::http1::push_u64(&mut v, reset);
                put(Bytes::from_static(b"ratelimit"), Bytes::from(v));
            }
            cfg::RateLimitHeaders::Legacy => {
                put(Bytes::from_static(b"x-ratelimit-limit"), self.policy_value.clone());
                let mut v = Vec::with_capacity(20);
                crate::http1::push_u64(&mut v, r.remaining);
                put(Bytes::from_static(b"x-ratelimit-remaining"), Bytes::from(v));
                let mut v = Vec::with_capacity(20);
                crate::http1::push_u64(&mut v, reset);
                put(Bytes::from_static(b"x-ratelimit-reset"), Bytes::from(v));
            }
            cfg::RateLimitHeaders::None => {}
        }
    }
}

/// How a rate limit's admission is recorded in `RequestCtx::rate_refunds` (2 bits per policy).
fn refund_code(via: Via, overflow: bool) -> u8 {
    match via {
        Via::Local if overflow => 1,
        Via::Local => 0,
        Via::Redis => 2,
        Via::FailOpen | Via::FailClosed => 3,
    }
}

fn refund_of(code: u8) -> (Via, bool) {
    match code {
        0 => (Via::Local, false),
        1 => (Via::Local, true),
        2 => (Via::Redis, false),
        _ => (Via::FailOpen, false),
    }
}

/// A `rate_limit` compiles to its route's `RateLimitPolicy` over the limiter kept for its id; in
/// cluster mode with a `ClusterLimit` on the snapshot's Redis client.
impl CompilePolicy for cfg::RateLimit {
    type Runtime = RateLimitPolicy;

    fn fingerprint(&self) -> String {
        format!("rate_limit {}/{}s burst={} key={:?}", self.limit.count, self.limit.period_secs, self.burst, self.key)
    }

    fn compile(&self, env: &mut PolicyEnv<'_>, r: &cfg::Route, id: &StateId) -> Result<RateLimitPolicy, CompileError> {
        let limiter = env.limiters.rate(id.clone(), || RateLimiter::for_config(self));
        let (t, tau) = limiter.interval_tolerance();
        let policy = RateLimitPolicy::new(self, &r.name, limiter);
        Ok(match (self.mode, &env.redis) {
            (cfg::RateLimitMode::Local, _) => policy,
            (cfg::RateLimitMode::Cluster, Some((rc, client))) => {
                let c = ClusterLimit::new(
                    client.clone(),
                    &rc.key_prefix,
                    id,
                    t,
                    tau,
                    self.on_redis_error.unwrap_or_default(),
                );
                policy.with_cluster(match self.batch {
                    Some(b) => c.with_batch(b),
                    None => c,
                })
            }
            (cfg::RateLimitMode::Cluster, None) => {
                return Err(CompileError(format!(
                    "route `{}`: `mode: cluster` needs a `cluster.redis` section",
                    r.name
                )))
            }
        })
    }
}

/// The rate limit's side of the policy contract: decide (429, or 503 when a fail-closed cluster
/// limit cannot reach Redis), report the tightest limit in the response headers, and refund the
/// quota when a later capacity refusal turns the request away.
impl Policy for RateLimitPolicy {
    async fn on_request(&self, ctx: &mut RequestCtx, at: usize, headers: &mut Headers, _: &RequestInfo<'_>) -> Flow {
        let d = self.check(ctx, headers).await;
        let report = RateReport { policy: at, remaining: d.remaining, reset_ns: d.reset_ns };
        if !d.allowed {
            if d.via == Via::FailClosed {
                // Nothing is known about the limit: no rate-limit headers.
                ctx.rate = None;
                return Flow::Fail(GatewayError::RateLimitUnavailable);
            }
            // The refusing limit is the one reported (when it reports at all).
            ctx.rate = self.reports().then_some(report);
            return Flow::Fail(GatewayError::RateLimited { retry_after: ceil_secs(d.retry_after_ns).max(1) });
        }
        ctx.rate_refunds.set(at, refund_code(d.via, d.overflow));
        // A fail-open admission knows nothing about the limit: it reports nothing.
        if d.via != Via::FailOpen && self.reports() && ctx.rate.is_none_or(|r| report.tighter_than(&r)) {
            ctx.rate = Some(report);
        }
        Flow::Continue
    }

    async fn on_refused(&self, ctx: &mut RequestCtx, at: usize, headers: &Headers, refund: bool) {
        if refund {
            let (via, overflow) = refund_of(ctx.rate_refunds.get(at));
            self.refund_key(ctx, headers, via, overflow).await;
        }
        // A request turned away is not reported against this limit.
        if ctx.rate.is_some_and(|r| r.policy == at) {
            ctx.rate = None;
        }
    }

    fn on_response(&self, ctx: &mut RequestCtx, at: usize, _: &mut u16, headers: &mut Headers) {
        if let Some(r) = ctx.rate.filter(|r| r.policy == at) {
            self.headers_for(&r, |n, v| headers.set(n, v));
        }
    }

    fn local_headers(&self, ctx: &RequestCtx, at: usize, put: &mut dyn FnMut(Bytes, Bytes)) {
        if let Some(r) = ctx.rate.filter(|r| r.policy == at) {
            self.headers_for(&r, put);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const MS: u64 = 1_000_000;

    fn cfg_rl(rate: &str, burst: u64) -> cfg::RateLimit {
        cfg::RateLimit {
            limit: cfg::Rate::parse(rate).unwrap(),
            burst,
            key: cfg::types::defaults::rate_limit_key(),
            cost: 1,
            headers: cfg::RateLimitHeaders::Draft,
            name: None,
            mode: cfg::RateLimitMode::Local,
            on_redis_error: None,
            batch: None,
        }
    }

    fn limiter(rate: &str, burst: u64) -> RateLimiter {
        RateLimiter::for_config(&cfg_rl(rate, burst))
    }

    async fn advance(ms: u64) {
        tokio::time::advance(Duration::from_millis(ms)).await;
    }

    /// Admitted count of `n` cost-1 requests for `key` right now.
    fn burst_of(l: &RateLimiter, key: u64, n: usize) -> usize {
        (0..n).filter(|_| l.decide(key, 1).allowed).count()
    }

    #[tokio::test(start_paused = true)]
    async fn burst_zero_spaces_requests_evenly() {
        // 10/s, burst 0: exactly one request per 100 ms.
        let l = limiter("10/s", 0);
        assert!(l.decide(1, 1).allowed);
        assert!(!l.decide(1, 1).allowed);
        advance(99).await;
        assert!(!l.decide(1, 1).allowed, "99 ms is too early");
        advance(1).await;
        assert!(l.decide(1, 1).allowed, "100 ms later one more");
        assert!(!l.decide(1, 1).allowed);
        // Over a whole second at 10 ms steps: exactly 10 admitted.
        let mut admitted = 0;
        for _ in 0..100 {
            advance(10).await;
            admitted += usize::from(l.decide(1, 1).allowed);
        }
        assert_eq!(admitted, 10);
    }

    #[tokio::test(start_paused = true)]
    async fn burst_admits_burst_plus_one_at_once_then_spaced() {
        let l = limiter("10/s", 9);
        assert_eq!(burst_of(&l, 7, 20), 10, "burst 9 admits 10 at once");
        advance(50).await;
        assert_eq!(burst_of(&l, 7, 5), 0);
        advance(50).await;
        assert_eq!(burst_of(&l, 7, 5), 1, "then one per 100 ms");
        advance(1000).await;
        assert_eq!(burst_of(&l, 7, 20), 10, "a full second refills the whole burst");
        // Another key is independent.
        assert_eq!(burst_of(&l, 8, 20), 10);
    }

    #[tokio::test(start_paused = true)]
    async fn refused_requests_do_not_consume() {
        let l = limiter("10/s", 0);
        assert!(l.decide(1, 1).allowed);
        // Hammering while limited must not push the next admission further out.
        for _ in 0..1000 {
            assert!(!l.decide(1, 1).allowed);
        }
        advance(100).await;
        assert!(l.decide(1, 1).allowed);
        assert_eq!(l.allowed.load(Ordering::Relaxed), 2);
        assert_eq!(l.limited.load(Ordering::Relaxed), 1000);
    }

    #[tokio::test(start_paused = true)]
    async fn cost_uses_c_intervals() {
        let l = limiter("10/s", 9);
        let d = l.decide(1, 4);
        assert!(d.allowed);
        assert_eq!(d.remaining, 6);
        assert!(l.decide(1, 6).allowed);
        let d = l.decide(1, 1);
        assert!(!d.allowed);
        assert_eq!(d.retry_after_ns, 100 * MS);
        advance(300).await;
        assert!(!l.decide(1, 4).allowed, "300 ms refill 3 units, not 4");
        assert!(l.decide(1, 3).allowed, "but 3 pass, and the refused 4 did not consume");
    }

    #[tokio::test(start_paused = true)]
    async fn reported_numbers() {
        let l = limiter("10/s", 4);
        let d = l.decide(1, 1);
        assert_eq!((d.allowed, d.remaining, d.reset_ns, d.retry_after_ns), (true, 4, 100 * MS, 0));
        for _ in 0..4 {
            l.decide(1, 1);
        }
        let d = l.decide(1, 1);
        assert_eq!((d.allowed, d.remaining, d.reset_ns), (false, 0, 500 * MS));
        assert_eq!(d.retry_after_ns, 100 * MS);
        assert_eq!(ceil_secs(d.retry_after_ns), 1);
        advance(250).await;
        let d = l.decide(1, 1);
        assert_eq!((d.allowed, d.remaining, d.reset_ns), (true, 1, 350 * MS));
    }

    #[tokio::test(start_paused = true)]
    async fn refund_gives_the_cost_back() {
        let l = limiter("10/s", 1);
        let d = l.decide(1, 1);
        assert!(l.decide(1, 1).allowed);
        assert!(!l.decide(1, 1).allowed);
        l.refund(1, 1, d.overflow);
        assert!(l.decide(1, 1).allowed);
    }

    #[tokio::test(start_paused = true)]
    async fn key_cap_evicts_expired_then_overflows_into_one_bucket() {
        // 64 shards × 2 keys; 1/s with burst 1.
        let l = RateLimiter::with_max_keys(1_000 * MS, 1_000 * MS, 128);
        // A flood of distinct keys: the map never exceeds the cap.
        let mut admitted = 0;
        for k in 0..10_000u64 {
            let key = k.wrapping_mul(0x9E37_79B9_7F4A_7C15);
            admitted += usize::from(l.decide(key, 1).allowed);
        }
        assert!(l.len() <= 128, "{}", l.len());
        // Each tracked key got its own quota; the rest shared one overflow bucket (burst 1 → 2).
        assert_eq!(admitted, l.len() + 2);
        assert!(l.overflowed.load(Ordering::Relaxed) > 9_000);
        // Once tracked keys have expired, new keys are tracked again (expired ones evicted first).
        advance(2_000).await;
        let fresh = 0xDEAD_BEEF_u64;
        let d = l.decide(fresh, 1);
        assert!(d.allowed && !d.overflow, "{d:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn sweep_removes_expired_keys_only() {
        let l = limiter("1/s", 0);
        l.decide(1, 1);
        advance(500).await;
        l.decide(2, 1);
        assert_eq!(l.len(), 2);
        advance(600).await;
        l.sweep();
        assert_eq!(l.len(), 1, "key 1 expired at 1 s, key 2 lives until 1.5 s");
        advance(500).await;
        l.sweep();
        assert!(l.is_empty());
        // A swept key starts with a full bucket, as it would have anyway.
        assert!(l.decide(1, 1).allowed);
    }

    #[test]
    fn params_and_reports() {
        let rl = cfg_rl;
        assert_eq!(RateLimiter::params(&rl("10/s", 9)), (100 * MS, 900 * MS));
        assert_eq!(RateLimiter::params(&rl("1000/10s", 0)), (10 * MS, 0));
        assert_eq!(RateLimiter::params(&rl("1/day", 2)), (86_400_000 * MS, 2 * 86_400_000 * MS));
        let a = RateReport { policy: 0, remaining: 1, reset_ns: 5 };
        let b = RateReport { policy: 1, remaining: 2, reset_ns: 50 };
        let c = RateReport { policy: 2, remaining: 1, reset_ns: 9 };
        assert!(a.tighter_than(&b) && c.tighter_than(&a) && !b.tighter_than(&a));
    }

    #[test]
    fn header_values() {
        let rl = cfg_rl("100/min", 0);
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
        let _g = rt.enter();
        let p = RateLimitPolicy::new(&rl, "api", std::sync::Arc::new(RateLimiter::for_config(&rl)));
        let mut out = Vec::new();
        p.headers_for(&RateReport { policy: 0, remaining: 7, reset_ns: 1_200 * MS }, |n, v| out.push((n, v)));
        assert_eq!(out[0], (Bytes::from_static(b"ratelimit-policy"), Bytes::from_static(b"\"api\";q=100;w=60")));
        assert_eq!(out[1], (Bytes::from_static(b"ratelimit"), Bytes::from_static(b"\"api\";r=7;t=2")));
        let legacy = cfg::RateLimit { headers: cfg::RateLimitHeaders::Legacy, name: Some("x".into()), ..rl };
        let p = RateLimitPolicy::new(&legacy, "api", std::sync::Arc::new(RateLimiter::for_config(&legacy)));
        let mut out = Vec::new();
        p.headers_for(&RateReport { policy: 0, remaining: 0, reset_ns: 0 }, |n, v| out.push((n, v)));
        let text: Vec<_> = out.iter().map(|(n, v)| format!("{}: {}", n.escape_ascii(), v.escape_ascii())).collect();
        assert_eq!(text, ["x-ratelimit-limit: 100", "x-ratelimit-remaining: 0", "x-ratelimit-reset: 0"]);
    }
}
