//! `upstreams[]`: named groups of targets and how the gateway talks to them (balancing,
//! connection pool, timeouts, active and passive health, circuit breaker, limits, retry budget,
//! TLS, protocol). `CircuitBreaker` is here because a route's override uses the same shape.
//!
//! Invariants: plain data with `deny_unknown_fields` and documented defaults (from
//! [`super::defaults`]); ranges and references are checked in `validate/upstream.rs`.

use serde::{Deserialize, Serialize};

use super::defaults;
use crate::units::Dur;

/// A named group of targets.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Upstream {
    pub name: String,
    pub targets: Vec<Target>,
    #[serde(default)]
    pub balancer: Balancer,
    #[serde(default)]
    pub pool: Pool,
    #[serde(default)]
    pub timeouts: UpstreamTimeouts,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check: Option<HealthCheck>,
    /// Passive health: targets that keep failing real requests leave rotation for a while.
    #[serde(default)]
    pub outlier_detection: OutlierDetection,
    /// Fail fast while the upstream as a whole is failing.
    #[serde(default)]
    pub circuit_breaker: CircuitBreaker,
    /// Caps on concurrent work sent to this upstream; overflow is 503 `upstream_overloaded` at once.
    #[serde(default)]
    pub limits: UpstreamLimits,
    /// How many retries the routes to this upstream may add, as a share of its requests.
    #[serde(default)]
    pub retry_budget: RetryBudget,
    /// TLS to `https://` targets (CA, SNI override, client certificate).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<UpstreamTls>,
    /// What the gateway speaks to the targets: `http1` (default for `http://` and `https://`)
    /// or `http2` (`https://` targets then negotiate `h2` by ALPN). `h2c://` targets always
    /// speak HTTP/2 over plain TCP.
    #[serde(default)]
    pub protocol: UpstreamProtocol,
}

/// `upstreams[].protocol`.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum UpstreamProtocol {
    #[default]
    Http1,
    Http2,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Target {
    /// `http://host:port`, `https://host:port` (TLS, see `upstreams[].tls`) or `h2c://host:port`
    /// (HTTP/2 over plain TCP, e.g. a gRPC service).
    pub url: String,
    #[serde(default = "defaults::weight")]
    pub weight: u32,
}

/// How a target is chosen for each request.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum Balancer {
    /// Smooth weighted round robin.
    #[default]
    RoundRobin,
    /// Power of two random choices, fewer in-flight requests wins.
    LeastRequest,
    /// Power of two random choices over a peak-sensitive EWMA of latency × load.
    PeakEwma,
    /// Consistent hashing on a request key (ketama ring).
    ConsistentHash(HashOn),
}

/// The request key for consistent hashing.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum HashOn {
    Header(String),
    Cookie(String),
    ClientIp,
    Path,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Pool {
    /// Idle keep-alive connections kept per target and worker.
    #[serde(default = "defaults::max_idle_per_target")]
    pub max_idle_per_target: usize,
    /// Idle pooled connections are closed after this; keep it below the upstream's keep-alive.
    #[serde(default = "defaults::pool_idle_timeout")]
    pub idle_timeout: Dur,
}

impl Default for Pool {
    fn default() -> Self {
        Pool { max_idle_per_target: defaults::max_idle_per_target(), idle_timeout: defaults::pool_idle_timeout() }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct UpstreamTimeouts {
    #[serde(default = "defaults::connect")]
    pub connect: Dur,
    /// From the request fully sent to the response head received; then 504.
    #[serde(default = "defaults::response_header")]
    pub response_header: Dur,
}

impl Default for UpstreamTimeouts {
    fn default() -> Self {
        UpstreamTimeouts { connect: defaults::connect(), response_header: defaults::response_header() }
    }
}

/// Active HTTP health checking.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HealthCheck {
    #[serde(default = "defaults::hc_path")]
    pub path: String,
    #[serde(default = "defaults::hc_interval")]
    pub interval: Dur,
    #[serde(default = "defaults::hc_timeout")]
    pub timeout: Dur,
    /// Consecutive successes that bring an unhealthy target back.
    #[serde(default = "defaults::hc_healthy")]
    pub healthy_threshold: u32,
    /// Consecutive failures that take a target out of rotation.
    #[serde(default = "defaults::hc_unhealthy")]
    pub unhealthy_threshold: u32,
    /// Statuses counted as healthy (inclusive range); default 200-399.
    #[serde(default = "defaults::hc_status")]
    pub expected_status: StatusRange,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StatusRange {
    pub min: u16,
    pub max: u16,
}

/// `upstreams[].outlier_detection`: passive health from the outcomes of real requests.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OutlierDetection {
    #[serde(default = "defaults::yes")]
    pub enabled: bool,
    /// Consecutive failures (5xx, connect failure, reset, timeout) that eject a target; 0 = off.
    #[serde(default = "defaults::od_consecutive")]
    pub consecutive_failures: u32,
    /// Failure percentage over `window` that ejects a target (given `min_requests`); 0 = off.
    #[serde(default = "defaults::od_failure_rate")]
    pub failure_rate: u32,
    /// Requests a target must have served within `window` before its failure rate counts.
    #[serde(default = "defaults::od_min_requests")]
    pub min_requests: u32,
    /// The sliding window of the failure rate.
    #[serde(default = "defaults::window")]
    pub window: Dur,
    /// First ejection time; the n-th consecutive ejection lasts n × this, up to `max_ejection`.
    #[serde(default = "defaults::od_base_ejection")]
    pub base_ejection: Dur,
    #[serde(default = "defaults::od_max_ejection")]
    pub max_ejection: Dur,
    /// At most this share of the upstream's targets is ejected at once (rounded down).
    #[serde(default = "defaults::od_max_ejected_percent")]
    pub max_ejected_percent: u32,
}

impl Default for OutlierDetection {
    fn default() -> Self {
        OutlierDetection {
            enabled: true,
            consecutive_failures: defaults::od_consecutive(),
            failure_rate: defaults::od_failure_rate(),
            min_requests: defaults::od_min_requests(),
            window: defaults::window(),
            base_ejection: defaults::od_base_ejection(),
            max_ejection: defaults::od_max_ejection(),
            max_ejected_percent: defaults::od_max_ejected_percent(),
        }
    }
}

/// `circuit_breaker` (upstream, or a route's override): closed → open → half-open → closed.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CircuitBreaker {
    #[serde(default = "defaults::yes")]
    pub enabled: bool,
    /// Failed-request percentage over `window` that opens the circuit (given `min_calls`); 0 = off.
    #[serde(default = "defaults::cb_failure_rate")]
    pub failure_rate: u32,
    /// A request slower than this (response head) is a slow call; absent = slow calls not tracked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slow_call_duration: Option<Dur>,
    /// Slow-call percentage over `window` that opens the circuit (with `slow_call_duration`).
    #[serde(default = "defaults::cb_slow_call_rate")]
    pub slow_call_rate: u32,
    /// Requests within `window` before either rate is judged.
    #[serde(default = "defaults::cb_min_calls")]
    pub min_calls: u32,
    #[serde(default = "defaults::window")]
    pub window: Dur,
    /// How long the circuit stays open (503 + `Retry-After`, upstream untouched).
    #[serde(default = "defaults::cb_open_duration")]
    pub open_duration: Dur,
    /// Probe requests let through when half-open; all must succeed to close the circuit.
    #[serde(default = "defaults::cb_half_open_probes")]
    pub half_open_probes: u32,
}

impl Default for CircuitBreaker {
    fn default() -> Self {
        CircuitBreaker {
            enabled: true,
            failure_rate: defaults::cb_failure_rate(),
            slow_call_duration: None,
            slow_call_rate: defaults::cb_slow_call_rate(),
            min_calls: defaults::cb_min_calls(),
            window: defaults::window(),
            open_duration: defaults::cb_open_duration(),
            half_open_probes: defaults::cb_half_open_probes(),
        }
    }
}

/// `upstreams[].limits`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct UpstreamLimits {
    /// Requests in flight to this upstream (all targets, all workers).
    #[serde(default = "defaults::max_requests")]
    pub max_requests: u32,
    /// Connections being opened to this upstream at once.
    #[serde(default = "defaults::max_pending")]
    pub max_pending: u32,
}

impl Default for UpstreamLimits {
    fn default() -> Self {
        UpstreamLimits { max_requests: defaults::max_requests(), max_pending: defaults::max_pending() }
    }
}

/// `upstreams[].retry_budget`: retries ≤ `percent` % of requests + `min_per_second`, over 10 s.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RetryBudget {
    #[serde(default = "defaults::budget_percent")]
    pub percent: u32,
    /// Retries always allowed per second (so a quiet upstream can still be retried).
    #[serde(default = "defaults::budget_min_per_second")]
    pub min_per_second: u32,
}

impl Default for RetryBudget {
    fn default() -> Self {
        RetryBudget { percent: defaults::budget_percent(), min_per_second: defaults::budget_min_per_second() }
    }
}

/// `upstreams[].tls`: how `https://` targets are verified and what the gateway presents.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct UpstreamTls {
    /// PEM bundle of trusted CAs, instead of the system's trust store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<String>,
    /// SNI and the name the certificate must carry; default: the target's host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
    /// A client certificate for upstreams that require mTLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_cert: Option<ClientCert>,
}

/// A client certificate and key (PEM files).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ClientCert {
    pub cert: String,
    pub key: String,
}
