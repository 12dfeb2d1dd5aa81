//! The configuration file's shape, as plain serde types.
//!
//! Invariants: these types carry no behaviour and no derived state; every field a user can write is
//! here with `deny_unknown_fields`, so a typo is an error, never silently ignored. Semantic checks
//! (references, ranges, conflicts) live in `validate.rs`; the data plane compiles these types into
//! its own typed snapshot and never reads them per request.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use crate::units::{ByteSize, Dur};

/// The whole configuration document.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Optional format version; only `1` is understood.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u32>,
    #[serde(default)]
    pub listeners: Vec<Listener>,
    #[serde(default)]
    pub admin: Option<Admin>,
    #[serde(default)]
    pub upstreams: Vec<Upstream>,
    #[serde(default)]
    pub routes: Vec<Route>,
    /// Process-wide settings.
    #[serde(default)]
    pub server: Server,
    /// Reserved for the identity issue; must be absent or empty for now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consumers: Option<serde_json::Value>,
    /// Reserved for named, reusable policy sets; must be absent or empty for now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policies: Option<serde_json::Value>,
    /// Reserved for cluster-shared state (Redis); must be absent or empty for now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<serde_json::Value>,
}

/// Process-wide settings.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Server {
    /// Worker threads; 0 means one per CPU.
    #[serde(default)]
    pub workers: usize,
    /// How long SIGTERM/SIGINT waits for in-flight requests before exiting anyway.
    #[serde(default = "defaults::drain_timeout")]
    pub drain_timeout: Dur,
}

impl Default for Server {
    fn default() -> Self {
        Server { workers: 0, drain_timeout: defaults::drain_timeout() }
    }
}

/// A traffic listener.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Listener {
    /// Stable name; defaults to `listener-N`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `host:port`, e.g. `0.0.0.0:8080` or `[::1]:8080`.
    pub address: String,
    /// Client addresses (CIDRs) whose `X-Forwarded-*`/`Forwarded` headers are trusted.
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    /// Also send the RFC 7239 `Forwarded` header upstream (X-Forwarded-* are always sent).
    #[serde(default)]
    pub forwarded_header: bool,
    #[serde(default)]
    pub limits: ListenerLimits,
    #[serde(default)]
    pub timeouts: ListenerTimeouts,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ListenerLimits {
    /// Largest request head (request line + headers); over it: 431.
    #[serde(default = "defaults::max_header_bytes")]
    pub max_header_bytes: ByteSize,
    /// Most header fields in one request; over it: 431.
    #[serde(default = "defaults::max_headers")]
    pub max_headers: usize,
    /// Longest request target (path + query); over it: 414.
    #[serde(default = "defaults::max_uri_bytes")]
    pub max_uri_bytes: ByteSize,
    /// Default request body limit for routes that set none; over it: 413.
    #[serde(default = "defaults::max_body_bytes")]
    pub max_body_bytes: ByteSize,
}

impl Default for ListenerLimits {
    fn default() -> Self {
        ListenerLimits {
            max_header_bytes: defaults::max_header_bytes(),
            max_headers: defaults::max_headers(),
            max_uri_bytes: defaults::max_uri_bytes(),
            max_body_bytes: defaults::max_body_bytes(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ListenerTimeouts {
    /// Whole request head must arrive within this (slowloris guard); then 408 and close.
    #[serde(default = "defaults::header_read")]
    pub header_read: Dur,
    /// Whole request body must arrive within this (slow-POST guard); then 408 and close.
    #[serde(default = "defaults::body_read")]
    pub body_read: Dur,
    /// An idle keep-alive connection is closed after this.
    #[serde(default = "defaults::idle")]
    pub idle: Dur,
}

impl Default for ListenerTimeouts {
    fn default() -> Self {
        ListenerTimeouts {
            header_read: defaults::header_read(),
            body_read: defaults::body_read(),
            idle: defaults::idle(),
        }
    }
}

/// The admin listener.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Admin {
    #[serde(default = "defaults::admin_address")]
    pub address: String,
}

impl Default for Admin {
    fn default() -> Self {
        Admin { address: defaults::admin_address() }
    }
}

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
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Target {
    /// `http://host:port` (TLS and h2c targets come with the protocols issue).
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

/// One route: a match, an upstream, and what to change on the way.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Route {
    pub name: String,
    #[serde(default, rename = "match")]
    pub matches: RouteMatch,
    pub upstream: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rewrite: Option<Rewrite>,
    /// Send the client's `Host` upstream instead of the target's authority.
    #[serde(default)]
    pub preserve_host: bool,
    #[serde(default)]
    pub request_headers: HeaderOps,
    #[serde(default)]
    pub response_headers: HeaderOps,
    /// Request body limit for this route (default: the listener's `max_body_bytes`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_body_bytes: Option<ByteSize>,
    /// Override of the upstream's response-header timeout for this route.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Dur>,
    /// Reserved for the policy issues (auth, rate limits, ...); must be empty for now.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub policies: Vec<serde_json::Value>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RouteMatch {
    /// Exact hosts (`api.example.com`) or one leading wildcard label (`*.example.com`); empty = any.
    #[serde(default)]
    pub hosts: Vec<String>,
    /// Path matcher; absent = any path (a prefix of `/`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathMatch>,
    /// Allowed methods; empty = any.
    #[serde(default)]
    pub methods: Vec<String>,
    #[serde(default)]
    pub headers: Vec<ValueMatch>,
    #[serde(default)]
    pub query: Vec<ValueMatch>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum PathMatch {
    Exact(String),
    /// Segment-aware prefix: `/api` matches `/api`, `/api/x` and `/api;v=1`, not `/apix`.
    Prefix(String),
    /// `/users/{id}`, `/files/{*rest}`.
    Template(String),
    /// A regular expression matched against the whole normalised path (anchored).
    Regex(String),
}

/// A predicate on a header or query parameter; exactly one of `exact`, `regex`, `present`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ValueMatch {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exact: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regex: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub present: Option<bool>,
    /// Invert the predicate.
    #[serde(default)]
    pub invert: bool,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Rewrite {
    /// Remove the matched prefix (prefix routes only); `/api/x` with prefix `/api` goes up as `/x`.
    #[serde(default)]
    pub strip_prefix: bool,
    /// Replace the path by a template using captured params: `/v2/users/{id}` (template routes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HeaderOps {
    /// Replace (or create) these headers.
    #[serde(default)]
    pub set: BTreeMap<String, String>,
    /// Append these headers, keeping existing values.
    #[serde(default)]
    pub add: BTreeMap<String, String>,
    /// Remove these headers.
    #[serde(default)]
    pub remove: Vec<String>,
}

/// Default values, in one place so docs and code agree.
pub mod defaults {
    use crate::units::{ByteSize, Dur};
    use std::time::Duration;

    use super::StatusRange;

    pub fn drain_timeout() -> Dur {
        Dur(Duration::from_secs(30))
    }
    pub fn max_header_bytes() -> ByteSize {
        ByteSize(64 * 1024)
    }
    pub fn max_headers() -> usize {
        100
    }
    pub fn max_uri_bytes() -> ByteSize {
        ByteSize(8 * 1024)
    }
    pub fn max_body_bytes() -> ByteSize {
        ByteSize(10 * 1024 * 1024)
    }
    pub fn header_read() -> Dur {
        Dur(Duration::from_secs(10))
    }
    pub fn body_read() -> Dur {
        Dur(Duration::from_secs(60))
    }
    pub fn idle() -> Dur {
        Dur(Duration::from_secs(60))
    }
    pub fn admin_address() -> String {
        "127.0.0.1:9901".to_string()
    }
    pub fn weight() -> u32 {
        1
    }
    pub fn max_idle_per_target() -> usize {
        256
    }
    pub fn pool_idle_timeout() -> Dur {
        Dur(Duration::from_secs(30))
    }
    pub fn connect() -> Dur {
        Dur(Duration::from_secs(2))
    }
    pub fn response_header() -> Dur {
        Dur(Duration::from_secs(30))
    }
    pub fn hc_path() -> String {
        "/".to_string()
    }
    pub fn hc_interval() -> Dur {
        Dur(Duration::from_secs(5))
    }
    pub fn hc_timeout() -> Dur {
        Dur(Duration::from_secs(1))
    }
    pub fn hc_healthy() -> u32 {
        2
    }
    pub fn hc_unhealthy() -> u32 {
        3
    }
    pub fn hc_status() -> StatusRange {
        StatusRange { min: 200, max: 399 }
    }
}
