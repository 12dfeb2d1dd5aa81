//! Upstreams: compiled target lists, their long-lived state, and the registry that keeps that
//! state across reloads.
//!
//! Invariants: a `TargetState` (health, passive-health ejection, in-flight count, latency
//! estimate) is keyed by (upstream name, target URL) in the `Registry`; an `UpstreamState`
//! (circuit breaker, retry budget, concurrency counters) by (upstream name, the settings it
//! depends on); a route's own circuit breaker by (route name, its settings). A reload that keeps
//! a target or those settings keeps the state, so health, load, breakers and budgets do not
//! reset. Per-request work touches only atomics; the registry's mutexes are taken at compile
//! time only.

pub mod balancer;
pub mod breaker;
pub mod budget;
pub mod health;
pub mod outlier;
pub mod pool;
pub mod window;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use breaker::{BreakerConfig, CircuitBreaker};
use budget::RetryBudget;
use outlier::{OutlierConfig, OutlierState};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;

pub use balancer::{Balancer, HashKey};

/// State of one target that outlives config snapshots.
#[derive(Debug)]
pub struct TargetState {
    /// Stable id, used to key connection pools.
    pub id: u64,
    healthy: AtomicBool,
    pub inflight: AtomicU32,
    /// Peak-EWMA latency estimate in nanoseconds.
    pub ewma_ns: AtomicU64,
    /// When the estimate was last updated (ns since the registry's epoch).
    pub ewma_stamp_ns: AtomicU64,
    /// Consecutive active-check successes / failures.
    pub hc_ok: AtomicU32,
    pub hc_fail: AtomicU32,
    /// Last health-check outcome text, for the admin API.
    pub last_check: Mutex<Option<String>>,
    /// Passive health (ejection by real requests' outcomes).
    pub outlier: OutlierState,
}

impl TargetState {
    fn new(id: u64) -> TargetState {
        TargetState {
            id,
            healthy: AtomicBool::new(true),
            inflight: AtomicU32::new(0),
            ewma_ns: AtomicU64::new(0),
            ewma_stamp_ns: AtomicU64::new(0),
            hc_ok: AtomicU32::new(0),
            hc_fail: AtomicU32::new(0),
            last_check: Mutex::new(None),
            outlier: OutlierState::default(),
        }
    }

    /// In rotation: active checks (if any) say healthy and passive health has not ejected it.
    /// The clock is read only while an ejection is pending.
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
            && (self.outlier.ejected_until() == 0 || !self.outlier.is_ejected(mono_ns()))
    }

    /// `is_healthy` at a given clock value (tests, admin).
    pub fn is_healthy_at(&self, now: u64) -> bool {
        self.healthy.load(Ordering::Relaxed) && !self.outlier.is_ejected(now)
    }

    /// The active health checks' verdict alone.
    pub fn actively_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    pub fn set_healthy(&self, v: bool) {
        self.healthy.store(v, Ordering::Relaxed);
    }
}

/// Where to connect.
#[derive(Debug, Clone)]
pub enum Addr {
    Ip(std::net::SocketAddr),
    /// A DNS name, resolved when a new connection is opened.
    Dns(String),
}

/// One compiled target.
#[derive(Debug, Clone)]
pub struct Target {
    pub url: String,
    pub addr: Addr,
    /// `host:port` as sent in `Host` when the route does not preserve the client's host.
    pub authority: Bytes,
    pub weight: u32,
    pub state: Arc<TargetState>,
    /// `https://` targets: the TLS client config and server name.
    pub tls: Option<Arc<crate::tls::TargetTls>>,
    /// Spoken to with HTTP/2 (`h2c://`, or `https://` with `protocol: http2`).
    pub http2: bool,
}

/// One compiled upstream.
#[derive(Debug)]
pub struct Upstream {
    pub name: String,
    pub targets: Vec<Target>,
    pub balancer: Balancer,
    pub max_idle_per_target: usize,
    pub pool_idle_timeout: Duration,
    pub connect_timeout: Duration,
    pub response_timeout: Duration,
    pub health_check: Option<gatehouse_config::HealthCheck>,
    /// Passive health settings; `None` when disabled.
    pub outlier: Option<OutlierConfig>,
    /// The targets speak HTTP/2 (validation keeps an upstream's targets to one protocol).
    pub http2: bool,
    pub max_requests: u32,
    pub max_pending: u32,
    /// Breaker, budget and counters, from the registry.
    pub state: Arc<UpstreamState>,
}

/// State of one upstream that outlives config snapshots while its settings stay the same.
#[derive(Debug)]
pub struct UpstreamState {
    /// `None` when the upstream's circuit breaker is disabled.
    pub breaker: Option<CircuitBreaker>,
    pub budget: RetryBudget,
    requests: AtomicU32,
    pending: AtomicU32,
    overloaded: AtomicU64,
    ejections: AtomicU64,
    hedges: AtomicU64,
}

/// A held unit of an upstream's `max_requests` or `max_pending`; released on drop.
#[derive(Debug)]
pub struct Slot<'a>(&'a AtomicU32);

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

fn take_slot(counter: &AtomicU32, max: u32) -> Option<Slot<'_>> {
    if counter.fetch_add(1, Ordering::Relaxed) >= max {
        counter.fetch_sub(1, Ordering::Relaxed);
        return None;
    }
    Some(Slot(counter))
}

impl UpstreamState {
    pub fn new(breaker: Option<BreakerConfig>, budget: &gatehouse_config::RetryBudget) -> UpstreamState {
        UpstreamState {
            breaker: breaker.map(CircuitBreaker::new),
            budget: RetryBudget::new(budget.percent, budget.min_per_second),
            requests: AtomicU32::new(0),
            pending: AtomicU32::new(0),
            overloaded: AtomicU64::new(0),
            ejections: AtomicU64::new(0),
            hedges: AtomicU64::new(0),
        }
    }

    /// A request slot, or `None` when `max` requests are in flight (counted as overloaded).
    pub fn request_slot(&self, max: u32) -> Option<Slot<'_>> {
        let s = take_slot(&self.requests, max);
        if s.is_none() {
            self.overloaded.fetch_add(1, Ordering::Relaxed);
        }
        s
    }

    /// A slot for opening a connection, or `None` when `max` connects are pending.
    pub fn pending_slot(&self, max: u32) -> Option<Slot<'_>> {
        let s = take_slot(&self.pending, max);
        if s.is_none() {
            self.overloaded.fetch_add(1, Ordering::Relaxed);
        }
        s
    }

    pub fn note_ejection(&self) {
        self.ejections.fetch_add(1, Ordering::Relaxed);
    }

    pub fn note_hedge(&self) {
        self.hedges.fetch_add(1, Ordering::Relaxed);
    }

    /// Requests in flight to this upstream.
    pub fn requests_in_flight(&self) -> u32 {
        self.requests.load(Ordering::Relaxed)
    }
    /// Connections being opened.
    pub fn pending_connects(&self) -> u32 {
        self.pending.load(Ordering::Relaxed)
    }
    /// Requests refused with 503 `upstream_overloaded` (`max_requests` or `max_pending`).
    pub fn overloaded_total(&self) -> u64 {
        self.overloaded.load(Ordering::Relaxed)
    }
    /// Target ejections by passive health in this upstream (per-target totals are on
    /// `TargetState::outlier`).
    pub fn ejections_total(&self) -> u64 {
        self.ejections.load(Ordering::Relaxed)
    }
    /// Retries allowed by the budget (hedged attempts included).
    pub fn retries_total(&self) -> u64 {
        self.budget.retries_total()
    }
    /// Retries refused because the budget was spent.
    pub fn retries_exhausted_total(&self) -> u64 {
        self.budget.exhausted_total()
    }
    /// Hedged second attempts sent.
    pub fn hedges_total(&self) -> u64 {
        self.hedges.load(Ordering::Relaxed)
    }
}

impl Upstream {
    /// Chooses a healthy target for a request, or `None` when none is healthy.
    pub fn pick(&self, key: Option<&[u8]>) -> Option<&Target> {
        self.balancer.pick(&self.targets, key).map(|i| &self.targets[i])
    }
}

/// Long-lived per-target, per-upstream and per-route state keyed by stable names.
#[derive(Debug, Default)]
pub struct Registry {
    targets: Mutex<HashMap<(String, String), Arc<TargetState>>>,
    next_id: AtomicU64,
    /// (upstream name, settings fingerprint) → breaker, budget, counters.
    upstreams: Mutex<HashMap<(String, String), Arc<UpstreamState>>>,
    /// (route name, settings fingerprint) → the route's own breaker.
    route_breakers: Mutex<HashMap<(String, String), Arc<CircuitBreaker>>>,
}

impl Registry {
    pub fn new() -> Registry {
        Registry::default()
    }

    /// The state for (upstream, url), created on first use and kept across reloads.
    pub fn target(&self, upstream: &str, url: &str) -> Arc<TargetState> {
        let mut map = self.targets.lock().unwrap_or_else(|p| p.into_inner());
        map.entry((upstream.to_string(), url.to_string()))
            .or_insert_with(|| Arc::new(TargetState::new(self.next_id.fetch_add(1, Ordering::Relaxed) + 1)))
            .clone()
    }

    /// Drops state of targets no longer in any upstream (after a reload).
    pub fn retain(&self, live: &[(String, String)]) {
        let mut map = self.targets.lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|k, _| live.contains(k));
    }

    /// The state of upstream `name` with these settings: kept across reloads while they stay.
    pub fn upstream(
        &self,
        name: &str,
        breaker: Option<BreakerConfig>,
        budget: &gatehouse_config::RetryBudget,
    ) -> Arc<UpstreamState> {
        let key = (name.to_string(), format!("{breaker:?} {budget:?}"));
        let mut map = self.upstreams.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(key).or_insert_with(|| Arc::new(UpstreamState::new(breaker, budget))).clone()
    }

    /// A route's own circuit breaker with these settings.
    pub fn route_breaker(&self, route: &str, cfg: BreakerConfig) -> Arc<CircuitBreaker> {
        let key = (route.to_string(), format!("{cfg:?}"));
        let mut map = self.route_breakers.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(key).or_insert_with(|| Arc::new(CircuitBreaker::new(cfg))).clone()
    }

    /// Drops upstream and route state no longer referenced by the running snapshot (after a
    /// successful compile; the new snapshot holds `Arc`s to what it uses).
    pub fn retain_resilience(&self, upstreams: &[Arc<UpstreamState>], breakers: &[Arc<CircuitBreaker>]) {
        let mut map = self.upstreams.lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|_, v| upstreams.iter().any(|u| Arc::ptr_eq(u, v)));
        drop(map);
        let mut map = self.route_breakers.lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|_, v| breakers.iter().any(|b| Arc::ptr_eq(b, v)));
    }
}

static MONO_EPOCH: std::sync::OnceLock<tokio::time::Instant> = std::sync::OnceLock::new();

/// Nanoseconds on tokio's clock since a process-wide epoch: the clock of breakers, ejections and
/// budgets (tokio's, so tests can pause and advance it).
pub fn mono_ns() -> u64 {
    let now = tokio::time::Instant::now();
    now.saturating_duration_since(*MONO_EPOCH.get_or_init(|| now)).as_nanos() as u64
}

/// Parses a target URL with the config crate's parser into where to connect and the authority
/// sent as `Host`. IP literals and `localhost` connect directly; other names resolve per connect.
pub fn target_addr(url: &str) -> Result<(Addr, String), String> {
    let t = gatehouse_config::net::parse_target_url(url)?;
    let addr = match t.host.parse::<std::net::IpAddr>() {
        Ok(ip) => Addr::Ip(std::net::SocketAddr::new(ip, t.port)),
        Err(_) if t.host == "localhost" => {
            Addr::Ip(std::net::SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), t.port))
        }
        Err(_) => Addr::Dns(format!("{}:{}", t.host, t.port)),
    };
    Ok((addr, t.authority()))
}

/// Decay time constant of the peak-EWMA latency estimate.
const TAU_NS: f64 = 10e9;

static EPOCH: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();

/// Nanoseconds since a process-wide epoch (the clock of the EWMA stamps).
pub fn now_ns() -> u64 {
    ns_since_epoch(std::time::Instant::now())
}

/// `t` as nanoseconds since the process-wide epoch.
pub fn ns_since_epoch(t: std::time::Instant) -> u64 {
    t.saturating_duration_since(*EPOCH.get_or_init(std::time::Instant::now)).as_nanos() as u64
}

/// The EWMA as of `now`: decayed toward zero since the last observation, so a target that was
/// slow once is tried again after a while even if nothing was sent to it meanwhile.
pub fn decayed_ewma(state: &TargetState, now: u64) -> u64 {
    let v = state.ewma_ns.load(Ordering::Relaxed);
    let stamp = state.ewma_stamp_ns.load(Ordering::Relaxed);
    let elapsed = now.saturating_sub(stamp) as f64;
    if v == 0 || elapsed <= 0.0 {
        return v;
    }
    (v as f64 * (-elapsed / TAU_NS).exp()) as u64
}

/// Records a completed exchange's latency into the peak-EWMA estimate.
pub fn observe_latency(state: &TargetState, rtt: Duration, now_ns: u64) {
    let rtt_ns = rtt.as_nanos().min(u64::MAX as u128) as u64;
    let prev = state.ewma_ns.load(Ordering::Relaxed);
    let stamp = state.ewma_stamp_ns.swap(now_ns, Ordering::Relaxed);
    let next = if prev == 0 || rtt_ns > prev {
        // Peak sensitivity: a slower observation takes over at once.
        rtt_ns
    } else {
        let elapsed = now_ns.saturating_sub(stamp) as f64;
        let w = (-elapsed / TAU_NS).exp();
        (prev as f64 * w + rtt_ns as f64 * (1.0 - w)) as u64
    };
    state.ewma_ns.store(next.max(1), Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let (a, auth) = target_addr("http://127.0.0.1:8080").unwrap();
        assert!(matches!(a, Addr::Ip(s) if s.port() == 8080));
        assert_eq!(auth, "127.0.0.1:8080");
        let (a, _) = target_addr("http://svc.local:80/").unwrap();
        assert!(matches!(a, Addr::Dns(ref s) if s == "svc.local:80"));
        let (a, auth) = target_addr("http://[::1]:9000").unwrap();
        assert!(matches!(a, Addr::Ip(s) if s.is_ipv6()));
        assert_eq!(auth, "[::1]:9000");
    }

    #[test]
    fn registry_keeps_state() {
        let r = Registry::new();
        let a = r.target("u", "http://a:1");
        a.set_healthy(false);
        let b = r.target("u", "http://a:1");
        assert!(Arc::ptr_eq(&a, &b));
        assert!(!b.is_healthy());
        assert_ne!(r.target("u", "http://b:1").id, a.id);
    }

    #[test]
    fn ewma_is_peak_sensitive() {
        let s = TargetState::new(1);
        observe_latency(&s, Duration::from_millis(10), 0);
        observe_latency(&s, Duration::from_millis(100), 1_000);
        assert_eq!(s.ewma_ns.load(Ordering::Relaxed), 100_000_000);
        observe_latency(&s, Duration::from_millis(10), 20_000_000_000);
        let v = s.ewma_ns.load(Ordering::Relaxed);
        assert!(v < 100_000_000 && v > 10_000_000, "{v}");
    }
}
