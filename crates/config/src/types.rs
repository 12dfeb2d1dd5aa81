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
    /// Who may call the gateway: names, groups, metadata and (hashed) credentials.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub consumers: Vec<Consumer>,
    /// Reserved for named, reusable policy sets; must be absent or empty for now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policies: Option<serde_json::Value>,
    /// State shared by a fleet of gateways (Redis for cluster-mode rate limits).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<Cluster>,
    /// One JSON line per request.
    #[serde(default)]
    pub access_log: AccessLog,
    /// Distributed tracing (W3C trace context, OTLP/HTTP export). Off unless enabled.
    #[serde(default)]
    pub tracing: Tracing,
    /// What `/metrics` exports beyond the defaults.
    #[serde(default)]
    pub metrics: Metrics,
}

/// `metrics`: opt-in label sets (cardinality is the operator's choice).
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Metrics {
    /// Count requests per consumer (`gatehouse_consumer_requests_total{consumer,status_class}`).
    /// Only consumers declared in `consumers` become label values; other identities count as
    /// `_unmapped`.
    #[serde(default)]
    pub consumer_label: bool,
}

/// `tracing`: spans exported over OTLP/HTTP (protobuf). Fields left out come from the standard
/// `OTEL_*` environment variables, then the defaults (see docs/tracing.md).
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Tracing {
    #[serde(default)]
    pub enabled: bool,
    /// Collector base URL (`http://host:4318`); `/v1/traces` is appended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_name: Option<String>,
    /// `parentbased_always_on` (default), `parentbased_traceidratio`, `traceidratio`,
    /// `parentbased_always_off`, `always_on`, `always_off`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sampler: Option<String>,
    /// The ratio of the `*traceidratio` samplers, 0.0 to 1.0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ratio: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_size: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_size: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule_delay: Option<Dur>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub export_timeout: Option<Dur>,
    /// Extra headers on every export request (e.g. an API key; use `${ENV}`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
}

/// `access_log`: one JSON object per request, written off the request path.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AccessLog {
    /// Off by default (and in the load benchmark).
    #[serde(default)]
    pub enabled: bool,
    /// `stdout`, or a file path (opened for appending).
    #[serde(default = "defaults::access_log_path")]
    pub path: String,
    /// Also log the query string (off: queries often carry tokens).
    #[serde(default)]
    pub include_query: bool,
}

impl Default for AccessLog {
    fn default() -> Self {
        AccessLog { enabled: false, path: defaults::access_log_path(), include_query: false }
    }
}

/// `cluster`: what a fleet of gateways shares.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Cluster {
    /// The Redis server that holds cluster-mode rate-limit state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redis: Option<Redis>,
}

/// `cluster.redis`: one Redis server (one multiplexed, auto-reconnecting connection per gateway).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Redis {
    /// `redis://[user:password@]host[:port][/db]`, or `rediss://` for TLS.
    pub url: String,
    /// TLS settings for a `rediss://` URL (without them: the system's root certificates).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<RedisTls>,
    /// Bound on one rate-limit call (connection wait included); then the policy's `on_redis_error`.
    #[serde(default = "defaults::redis_timeout")]
    pub timeout: Dur,
    /// Bound on establishing (or re-establishing) the connection in the background.
    #[serde(default = "defaults::redis_connect_timeout")]
    pub connect_timeout: Dur,
    /// Prepended to every key the gateway writes, so several fleets can share one Redis.
    #[serde(default = "defaults::redis_key_prefix")]
    pub key_prefix: String,
    /// Connections to Redis, each multiplexed (pipelined); calls are spread over them.
    #[serde(default = "defaults::redis_pool_size")]
    pub pool_size: usize,
}

/// `server.request_id`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RequestId {
    /// The header that carries the id to the upstream and back to the client.
    #[serde(default = "defaults::request_id_header")]
    pub header: String,
    /// Keep a client's id when it is valid (1 to 128 of `A-Z a-z 0-9 - _ . :`); `false`: always
    /// generate one (for gateways facing untrusted clients that should not choose log keys).
    #[serde(default = "defaults::yes")]
    pub trust_incoming: bool,
}

impl Default for RequestId {
    fn default() -> Self {
        RequestId { header: defaults::request_id_header(), trust_incoming: true }
    }
}

/// `cluster.redis.tls`: PEM files for TLS to Redis.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RedisTls {
    /// CA certificate(s) that signed the server's certificate, instead of the system roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<String>,
    /// A client certificate (chain) for Redis servers that require one (`tls-auth-clients yes`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_file: Option<String>,
    /// The client certificate's private key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_file: Option<String>,
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
    /// On SIGTERM/SIGINT, how long to keep serving normally with `/readyz` answering 503 before
    /// the listeners close, so load balancers stop sending new connections first.
    #[serde(default = "defaults::zero")]
    pub shutdown_delay: Dur,
    /// The request id: which header carries it, and whether a client's (valid) id is kept.
    #[serde(default)]
    pub request_id: RequestId,
    /// Reload when the config file (or its directory, for symlink swaps) changes.
    #[serde(default = "defaults::yes")]
    pub watch_config: bool,
}

impl Default for Server {
    fn default() -> Self {
        Server {
            workers: 0,
            drain_timeout: defaults::drain_timeout(),
            shutdown_delay: defaults::zero(),
            request_id: RequestId::default(),
            watch_config: true,
        }
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
    /// Client addresses (after trusted proxies) refused or admitted before routing (403).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_filter: Option<IpFilter>,
    /// Terminate TLS on this listener (certificates by SNI, optional client certificates).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<ListenerTls>,
    /// Answer every request on this (plain) listener with a redirect to `https://`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redirect_https: Option<RedirectHttps>,
    /// HTTP/2 from clients: `h2` by ALPN on TLS listeners, prior-knowledge `h2c` on plain ones.
    #[serde(default)]
    pub http2: Http2,
}

/// `listeners[].http2`: HTTP/2 from clients and its protections. The header list is bounded by
/// `limits.max_header_bytes` (and `limits.max_headers`), like an HTTP/1.1 head.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Http2 {
    /// Offer `h2` in ALPN (TLS) and accept the HTTP/2 preface (plain). Default true.
    #[serde(default = "defaults::yes")]
    pub enabled: bool,
    /// Streams a client may have open at once (SETTINGS_MAX_CONCURRENT_STREAMS); more are refused.
    #[serde(default = "defaults::h2_max_streams")]
    pub max_concurrent_streams: u32,
    /// Flow-control window per stream: how much request body a client may send ahead.
    #[serde(default = "defaults::h2_stream_window")]
    pub initial_stream_window: ByteSize,
    /// Flow-control window of the whole connection.
    #[serde(default = "defaults::h2_connection_window")]
    pub initial_connection_window: ByteSize,
    /// Streams reset (by the client, or by the gateway for a protocol error) allowed within
    /// `reset_window`; one more and the connection ends with GOAWAY `ENHANCE_YOUR_CALM`
    /// (the rapid-reset attack, CVE-2023-44487).
    #[serde(default = "defaults::h2_max_resets")]
    pub max_resets: u32,
    #[serde(default = "defaults::h2_reset_window")]
    pub reset_window: Dur,
}

impl Default for Http2 {
    fn default() -> Self {
        Http2 {
            enabled: true,
            max_concurrent_streams: defaults::h2_max_streams(),
            initial_stream_window: defaults::h2_stream_window(),
            initial_connection_window: defaults::h2_connection_window(),
            max_resets: defaults::h2_max_resets(),
            reset_window: defaults::h2_reset_window(),
        }
    }
}

/// `listeners[].tls`: certificates chosen by SNI; TLS 1.2 and 1.3; ALPN `h2` then `http/1.1`
/// (`http/1.1` only with `http2.enabled: false`).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ListenerTls {
    /// At least one. A client's SNI picks the certificate whose names match it exactly, then by
    /// wildcard (`*.example.com`); without a match (or without SNI) the `default: true` one, else
    /// the first.
    pub certificates: Vec<TlsCertificate>,
    /// Oldest protocol version offered: `"1.2"` (default) or `"1.3"`.
    #[serde(default = "defaults::tls_min_version")]
    pub min_version: String,
    /// Ask clients for a certificate and verify it against a CA bundle (mTLS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_auth: Option<ClientAuth>,
}

/// A certificate chain and its private key, both PEM files, re-read on every reload and when
/// either file changes.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TlsCertificate {
    /// PEM file: the leaf certificate first, then intermediates.
    pub cert: String,
    /// PEM file: the private key (PKCS#8, PKCS#1 or SEC1).
    pub key: String,
    /// SNI names served by this certificate; default: the certificate's DNS subject alt names.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<String>,
    /// Served when no name matches (or the client sent no SNI). At most one per listener.
    #[serde(default)]
    pub default: bool,
}

/// `listeners[].tls.client_auth`: client certificates verified against `ca`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ClientAuth {
    /// PEM bundle of the CAs client certificates must chain to.
    pub ca: String,
    /// Refuse the handshake without a valid client certificate (default). `false`: a certificate
    /// is optional, but one that is sent must verify.
    #[serde(default = "defaults::yes")]
    pub required: bool,
}

/// `listeners[].redirect_https`: every request gets a redirect to the same host and path on https.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RedirectHttps {
    /// 308 (default, keeps the method and body) or 301.
    #[serde(default = "defaults::redirect_status")]
    pub status: u16,
    /// Port of the https URL; default 443 (left out of the URL).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
}

/// `routes[].hsts`: the `Strict-Transport-Security` header, sent on responses over TLS only
/// (RFC 6797 §7.2: never over plain HTTP).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Hsts {
    #[serde(default = "defaults::hsts_max_age")]
    pub max_age: Dur,
    #[serde(default)]
    pub include_subdomains: bool,
    #[serde(default)]
    pub preload: bool,
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
    /// Bearer token required by the endpoints that change state (`PUT /config`, `POST /reload`,
    /// rollback). Without one those endpoints answer 403. Use `${ENV}` to keep it out of the file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// How many applied configs the admin API keeps for `GET /config/history` and rollback.
    #[serde(default = "defaults::admin_history")]
    pub history: usize,
}

impl Default for Admin {
    fn default() -> Self {
        Admin { address: defaults::admin_address(), token: None, history: defaults::admin_history() }
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

/// `routes[].retry`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Retry {
    /// Attempts in total, the first included; 1 = no retries.
    #[serde(default = "defaults::retry_attempts")]
    pub attempts: u32,
    /// Failures that are retried: `connect_failure`, `reset`, `timeout`, or a status (`503`).
    #[serde(default = "defaults::retry_on")]
    pub on: Vec<RetryOn>,
    /// Also retry non-idempotent methods (POST, PATCH) whose body was buffered. Only when the
    /// upstream de-duplicates (e.g. an idempotency key): the first attempt may have been applied.
    #[serde(default)]
    pub non_idempotent: bool,
    #[serde(default)]
    pub backoff: Backoff,
}

impl Default for Retry {
    fn default() -> Self {
        Retry {
            attempts: defaults::retry_attempts(),
            on: defaults::retry_on(),
            non_idempotent: false,
            backoff: Backoff::default(),
        }
    }
}

/// Exponential backoff with full jitter: attempt n waits a random time in [0, min(max, base × 2ⁿ⁻¹)].
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Backoff {
    #[serde(default = "defaults::backoff_base")]
    pub base: Dur,
    #[serde(default = "defaults::backoff_max")]
    pub max: Dur,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff { base: defaults::backoff_base(), max: defaults::backoff_max() }
    }
}

/// One retry condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RetryOn {
    /// The connection could not be opened (refused, unreachable, connect timeout).
    ConnectFailure,
    /// The connection broke before a response head arrived.
    Reset,
    /// No response head within the per-attempt timeout.
    Timeout,
    /// The upstream answered with this status.
    Status(u16),
}

impl<'de> Deserialize<'de> for RetryOn {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = RetryOn;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("`connect_failure`, `reset`, `timeout` or a status code such as 503")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<RetryOn, E> {
                match v {
                    "connect_failure" => Ok(RetryOn::ConnectFailure),
                    "reset" => Ok(RetryOn::Reset),
                    "timeout" => Ok(RetryOn::Timeout),
                    other => match other.parse::<u16>() {
                        Ok(s) => Ok(RetryOn::Status(s)),
                        Err(_) => Err(E::custom(format!(
                            "unknown retry condition `{other}`: use connect_failure, reset, timeout or a status code such as 503"
                        ))),
                    },
                }
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<RetryOn, E> {
                u16::try_from(v).map(RetryOn::Status).map_err(|_| E::custom(format!("{v} is not an HTTP status")))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<RetryOn, E> {
                u16::try_from(v).map(RetryOn::Status).map_err(|_| E::custom(format!("{v} is not an HTTP status")))
            }
        }
        d.deserialize_any(V)
    }
}

impl Serialize for RetryOn {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            RetryOn::ConnectFailure => s.serialize_str("connect_failure"),
            RetryOn::Reset => s.serialize_str("reset"),
            RetryOn::Timeout => s.serialize_str("timeout"),
            RetryOn::Status(c) => s.serialize_u16(*c),
        }
    }
}

/// `routes[].deadline`: one time limit for the whole request, all attempts and backoffs included.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Deadline {
    pub timeout: Dur,
    /// Send the remaining time upstream with each attempt.
    #[serde(default = "defaults::yes")]
    pub propagate: bool,
    /// The header carrying it; default `x-request-timeout` (`grpc-timeout` for `format: grpc`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
    #[serde(default)]
    pub format: DeadlineFormat,
}

/// How the remaining time is written.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum DeadlineFormat {
    /// Whole milliseconds: `2500`.
    #[default]
    Milliseconds,
    /// Seconds with millisecond precision: `2.500`.
    Seconds,
    /// gRPC's `grpc-timeout` form: `2500m`.
    Grpc,
}

/// `routes[].hedge`: for idempotent requests, a second attempt (another target when possible)
/// after `delay` without a response head; the first response head wins.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Hedge {
    pub delay: Dur,
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
    /// The route's policies, run in this order in the request phase (see docs "Policies").
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub policies: Vec<Policy>,
    /// When and how failed attempts are retried.
    #[serde(default)]
    pub retry: Retry,
    /// A total time limit over all attempts, propagated upstream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline: Option<Deadline>,
    /// Hedged requests (idempotent only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hedge: Option<Hedge>,
    /// This route's own circuit breaker, used instead of the upstream's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub circuit_breaker: Option<CircuitBreaker>,
    /// Protocols a client may switch to with `Upgrade` (tunnelled only after the upstream
    /// answers 101). Default: `[websocket]`; `[]` disables upgrades on the route.
    #[serde(default = "defaults::upgrades")]
    pub upgrades: Vec<String>,
    /// An upgraded tunnel with no byte in either direction for this long is closed.
    #[serde(default = "defaults::tunnel_idle_timeout")]
    pub tunnel_idle_timeout: Dur,
    /// Translate gRPC-Web requests (`application/grpc-web*`, binary and base64 text) to gRPC
    /// when the route's upstream speaks HTTP/2. Default true.
    #[serde(default = "defaults::yes")]
    pub grpc_web: bool,
    /// `Strict-Transport-Security` on this route's responses over TLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hsts: Option<Hsts>,
}

/// One route policy: `- rate_limit: {...}`, `- concurrency_limit: {...}`, `- auth: {...}`,
/// `- authorize: {...}` or `- external_auth: {...}`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum Policy {
    RateLimit(RateLimit),
    ConcurrencyLimit(ConcurrencyLimit),
    /// Authenticate the request (methods tried in order); sets the request's identity.
    Auth(Auth),
    /// Allow only some identities (consumers, groups, scopes, claim conditions); 403 otherwise.
    Authorize(Authorize),
    /// Ask an HTTP service whether the request may pass.
    ExternalAuth(ExternalAuth),
    /// Cross-origin resource sharing: preflights answered at the gateway, allow headers added.
    Cors(Cors),
    /// Client-address allow and deny lists (CIDR), after trusted proxies.
    IpFilter(IpFilter),
}

/// `cors`: which browser origins may call the route, and how.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Cors {
    /// Exact origins (`https://app.example.com`), patterns with a leftmost wildcard label
    /// (`https://*.example.com`), or `*` (any origin, never with credentials).
    pub allow_origins: Vec<String>,
    /// Methods a preflight may ask for; default GET, HEAD, POST.
    #[serde(default = "defaults::cors_methods")]
    pub allow_methods: Vec<String>,
    /// Request headers a preflight may ask for (case-insensitive).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_headers: Vec<String>,
    /// Response headers the browser lets scripts read.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub expose_headers: Vec<String>,
    /// Send `Access-Control-Allow-Credentials: true` (refused together with `*`).
    #[serde(default)]
    pub allow_credentials: bool,
    /// How long a browser may cache a preflight answer (`Access-Control-Max-Age`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age: Option<Dur>,
}

/// `ip_filter`: client addresses (CIDR) refused (`deny`) or the only ones admitted (`allow`).
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct IpFilter {
    /// When not empty, only these addresses are admitted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow: Vec<String>,
    /// Always refused, even when also in `allow`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deny: Vec<String>,
}

/// A consumer: someone (a person, a service) the gateway can identify.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Consumer {
    pub name: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    /// Free-form labels (not sent anywhere unless a route asks for them).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
    #[serde(default)]
    pub credentials: Credentials,
}

/// A consumer's credentials; secrets only in hashed form.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    /// API keys as SHA-256 digests (`gatehouse hash-key`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub api_keys: Vec<ApiKeyCredential>,
    /// Basic-auth users with an argon2 or bcrypt password hash (`gatehouse hash-password`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub basic: Vec<BasicCredential>,
    /// JWTs that identify this consumer: `sub` (and optionally `iss`) equal to these.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub jwt: Vec<JwtCredential>,
    /// Client certificates that identify this consumer, by subject as the gateway renders it
    /// (RFC 4514, e.g. `CN=billing,O=Example`; the same text as `X-Client-Cert-Subject`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mtls: Vec<MtlsCredential>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MtlsCredential {
    pub subject: String,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyCredential {
    /// Lower-case hex SHA-256 of the key (64 characters).
    pub sha256: String,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BasicCredential {
    pub username: String,
    /// A PHC argon2 string (`$argon2id$...`) or a bcrypt hash (`$2b$...`).
    pub password_hash: String,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct JwtCredential {
    pub subject: String,
    /// When set, the token's `iss` must equal it too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
}

/// `auth`: authenticate with the first method whose credential the request carries.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Auth {
    /// Tried in order; the first one whose credential is present decides.
    pub methods: Vec<AuthMethod>,
    /// A consumer to use when the request carries no credential at all (instead of 401).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anonymous: Option<String>,
    /// The realm in `WWW-Authenticate` challenges.
    #[serde(default = "defaults::realm")]
    pub realm: String,
    /// Headers that carry the verified identity to the upstream.
    #[serde(default)]
    pub upstream_headers: IdentityHeaders,
}

/// One authentication method of an `auth` policy.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum AuthMethod {
    Jwt(Box<Jwt>),
    ApiKey(ApiKeyAuth),
    Basic(BasicAuth),
    Introspection(Introspection),
    /// The client certificate verified by the listener's `tls.client_auth`.
    Mtls(MtlsAuth),
}

/// `mtls`: the identity is the subject of the client certificate the TLS listener verified
/// (`listeners[].tls.client_auth`); it maps to the consumer whose `credentials.mtls` names it.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MtlsAuth {
    /// Refuse certificates whose subject maps to no consumer (default: admit them, named by the
    /// subject, like a token whose `sub` maps to no consumer).
    #[serde(default)]
    pub require_consumer: bool,
}

/// Where a credential is read from.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum CredentialSource {
    /// `Authorization: Bearer <token>`.
    Bearer,
    Header(String),
    Cookie(String),
    Query(String),
}

/// `jwt`: a signed JSON Web Token.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Jwt {
    /// Static keys (inline PEM/JWK, file, or HMAC secret).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keys: Vec<JwtKey>,
    /// Keys fetched by the gateway from a JWKS URL (or found through OIDC discovery).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks: Option<JwksSource>,
    /// Allowed `alg` values; empty = every algorithm the keys allow (never `none`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub algorithms: Vec<String>,
    /// Accepted `iss` values; empty = not checked.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub issuers: Vec<String>,
    /// The token's `aud` must contain one of these; empty = not checked.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub audiences: Vec<String>,
    /// Refuse tokens without `exp`.
    #[serde(default = "defaults::yes")]
    pub require_exp: bool,
    /// Tolerance for `exp`, `nbf` and `iat` against this gateway's clock.
    #[serde(default = "defaults::clock_skew")]
    pub clock_skew: Dur,
    /// Refuse tokens whose `exp − iat` (or `exp − now` without `iat`) exceeds this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_lifetime: Option<Dur>,
    /// Claims that must be present.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub required_claims: Vec<String>,
    /// Where the token is read; default `[bearer]`.
    #[serde(default = "defaults::bearer")]
    pub from: Vec<CredentialSource>,
}

/// A static JWT verification key: exactly one of `pem`, `file`, `jwk`, `secret`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct JwtKey {
    /// Matches the token header's `kid`; a key without `kid` matches any token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
    /// The one algorithm this key verifies (RFC 8725: a key is used with one algorithm).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alg: Option<String>,
    /// A PEM public key (RSA, EC or Ed25519).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pem: Option<String>,
    /// A file holding a PEM public key or a JWK / JWK set (JSON).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// An inline JWK.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwk: Option<serde_json::Value>,
    /// An HMAC secret (HS256/384/512), as given (use `${ENV}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

/// Keys the gateway fetches: from `url`, or from the `jwks_uri` of an OIDC `discovery` document.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct JwksSource {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// `.../.well-known/openid-configuration`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discovery: Option<String>,
    /// Lower bound on the cache time taken from `Cache-Control: max-age`.
    #[serde(default = "defaults::jwks_cache_min")]
    pub cache_min: Dur,
    /// Upper bound on the cache time (also used when the response has no `max-age`).
    #[serde(default = "defaults::jwks_cache_max")]
    pub cache_max: Dur,
    /// At most one refetch per this interval when a token names an unknown `kid` (or after a
    /// failed fetch).
    #[serde(default = "defaults::jwks_refetch_interval")]
    pub refetch_interval: Dur,
    /// How long an expired key set is still used while the JWKS URL fails; then fail closed.
    #[serde(default = "defaults::jwks_stale_for")]
    pub stale_for: Dur,
    /// Bound on one fetch.
    #[serde(default = "defaults::auth_call_timeout")]
    pub timeout: Dur,
}

/// `api_key`: a key compared (as SHA-256) with the consumers' `api_keys`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyAuth {
    /// Where the key is read; default `[{header: X-API-Key}]`.
    #[serde(default = "defaults::api_key_from")]
    pub from: Vec<CredentialSource>,
}

/// `basic`: `Authorization: Basic`, checked against the consumers' `basic` users.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BasicAuth {}

/// `introspection`: OAuth2 token introspection (RFC 7662) of an opaque bearer token.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Introspection {
    /// The introspection endpoint (`http://` only until the TLS issue lands).
    pub url: String,
    pub client_id: String,
    pub client_secret: String,
    /// How long an answer is reused (never past the token's `exp`).
    #[serde(default = "defaults::introspection_cache")]
    pub cache_ttl: Dur,
    #[serde(default = "defaults::auth_call_timeout")]
    pub timeout: Dur,
    #[serde(default = "defaults::bearer")]
    pub from: Vec<CredentialSource>,
}

/// Upstream headers that carry the identity; client-sent copies are always removed.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct IdentityHeaders {
    #[serde(default = "defaults::consumer_header")]
    pub consumer: String,
    #[serde(default = "defaults::groups_header")]
    pub groups: String,
    /// Claim name → header name, e.g. `{sub: X-User-Id}`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub claims: BTreeMap<String, String>,
}

impl Default for IdentityHeaders {
    fn default() -> Self {
        IdentityHeaders {
            consumer: defaults::consumer_header(),
            groups: defaults::groups_header(),
            claims: BTreeMap::new(),
        }
    }
}

/// `authorize`: who may pass, once `auth` established an identity.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Authorize {
    /// Allowed consumer names (or token subjects); with `groups`, either list admits.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub consumers: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    /// Every one of these must be in the token's `scope` (space-separated) or `scp` claim.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<String>,
    /// Every condition must hold.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub claims: Vec<ClaimCondition>,
}

/// A condition on a claim: exactly one of `equals`, `one_of`, `contains`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ClaimCondition {
    /// A claim name; dots reach into objects (`realm_access.roles`).
    pub claim: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub equals: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub one_of: Option<Vec<serde_json::Value>>,
    /// The claim (an array, or a space-separated string) contains this value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contains: Option<serde_json::Value>,
}

/// `external_auth`: an HTTP service decides.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ExternalAuth {
    /// `http://host:port/prefix`; the request's path and query are appended.
    pub url: String,
    /// Request headers sent along (the method and path always are).
    #[serde(default = "defaults::external_headers")]
    pub headers: Vec<String>,
    /// Headers of the service's 2xx answer copied onto the upstream request.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub copy_headers: Vec<String>,
    /// No answer in this time: 503 (fail closed).
    #[serde(default = "defaults::auth_call_timeout")]
    pub timeout: Dur,
}

/// A GCRA rate limit: `limit` requests per period, `burst` extra at once, per `key`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// `<count>/<period>`: `100/s`, `1000/min`, `10000/day`, `500/10s`.
    pub limit: Rate,
    /// Requests admitted at once on top of the steady one (GCRA tolerance = burst × period/count).
    #[serde(default)]
    pub burst: u64,
    /// What is counted separately; default: the client IP.
    #[serde(default = "defaults::rate_limit_key")]
    pub key: LimitKey,
    /// Units one request uses.
    #[serde(default = "defaults::cost")]
    pub cost: u64,
    /// Which response headers report the limit.
    #[serde(default)]
    pub headers: RateLimitHeaders,
    /// Policy name in the `RateLimit`/`RateLimit-Policy` headers; default: the route's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Where the state lives: this process (`local`) or the fleet's Redis (`cluster`).
    #[serde(default)]
    pub mode: RateLimitMode,
    /// Cluster mode only: what to do when Redis fails or is slower than `cluster.redis.timeout`
    /// (default `local`). Refused on a local-mode limit, where it would mean nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_redis_error: Option<OnRedisError>,
    /// Cluster mode only: reserve up to this many units per Redis call and admit from the
    /// reservation locally (fewer round trips, a bounded error; see docs/configuration.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch: Option<u64>,
}

/// Where a rate limit's state lives.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum RateLimitMode {
    /// In this gateway's memory: the limit is per gateway process.
    #[default]
    Local,
    /// In `cluster.redis`: one limit shared by every gateway using that Redis.
    Cluster,
}

/// A cluster-mode rate limit's behaviour when Redis errs or times out.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum OnRedisError {
    /// Admit the request (unlimited while Redis is down).
    FailOpen,
    /// Refuse the request with 503 `rate_limit_unavailable`.
    FailClosed,
    /// Decide with this gateway's local limiter, same limit and burst (per-process limit).
    #[default]
    Local,
}

/// At most `max` requests in flight per key; more wait in a bounded queue or get 503.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ConcurrencyLimit {
    pub max: u32,
    /// What is counted separately; default: the whole route.
    #[serde(default = "defaults::concurrency_key")]
    pub key: LimitKey,
    /// Requests that may wait for a slot (per key); 0 = answer 503 at once.
    #[serde(default)]
    pub queue: u32,
    /// How long a queued request waits for a slot before it gets 503.
    #[serde(default = "defaults::queue_timeout")]
    pub queue_timeout: Dur,
}

/// The response headers of a rate limit.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum RateLimitHeaders {
    /// IETF draft: `RateLimit-Policy` and `RateLimit`.
    #[default]
    Draft,
    /// `X-RateLimit-Limit`, `X-RateLimit-Remaining`, `X-RateLimit-Reset`.
    Legacy,
    None,
}

/// One part of a limit key.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum KeyPart {
    /// The client address after trusted proxies.
    ClientIp,
    /// One counter for the whole route.
    Route,
    /// The value of a request header (absent: one shared "absent" key).
    Header(String),
    /// The authenticated consumer (an `auth` policy must run first; unauthenticated: one key).
    Consumer,
    /// The value of a claim of the verified token (absent: one shared "absent" key).
    Claim(String),
}

/// A limit key: one part (`client_ip`, `route`, `{header: X-Api-Key}`) or a list of parts that are
/// combined (`[client_ip, {header: x-tenant}]`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LimitKey(pub Vec<KeyPart>);

impl<'de> Deserialize<'de> for LimitKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = LimitKey;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("`client_ip`, `route`, `{header: NAME}` or a list of these")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<LimitKey, E> {
                KeyPart::deserialize(serde::de::value::StrDeserializer::<E>::new(v)).map(|p| LimitKey(vec![p]))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<LimitKey, A::Error> {
                KeyPart::deserialize(serde::de::value::MapAccessDeserializer::new(map)).map(|p| LimitKey(vec![p]))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<LimitKey, A::Error> {
                let mut parts = Vec::new();
                while let Some(p) = seq.next_element::<KeyPart>()? {
                    parts.push(p);
                }
                Ok(LimitKey(parts))
            }
        }
        d.deserialize_any(V)
    }
}

impl Serialize for LimitKey {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0.as_slice() {
            [one] => one.serialize(s),
            many => many.serialize(s),
        }
    }
}

/// A rate: `count` per `period_secs` seconds, written `<count>/<period>` (`100/s`, `1000/10s`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rate {
    pub count: u64,
    pub period_secs: u64,
}

impl Rate {
    /// Parses `<count>/<n?><unit>` with unit `s|sec|second|m|min|minute|h|hour|d|day` (plurals
    /// accepted) and an optional multiplier: `100/s`, `1000/10s`, `5/min`, `10000/day`.
    pub fn parse(s: &str) -> Result<Rate, String> {
        let bad = || {
            format!(
                "invalid rate `{s}`: expected `<count>/<period>` such as `100/s`, `1000/min`, `10000/day` or `500/10s`"
            )
        };
        let (count, period) = s.trim().split_once('/').ok_or_else(bad)?;
        let count = count.trim();
        if count.is_empty() || !count.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let count: u64 = count.parse().map_err(|_| format!("invalid rate `{s}`: count too large"))?;
        let period = period.trim();
        let split = period.find(|c: char| !c.is_ascii_digit()).unwrap_or(period.len());
        let (n, unit) = period.split_at(split);
        let n: u64 = if n.is_empty() { 1 } else { n.parse().map_err(|_| bad())? };
        let unit_secs = match unit.trim() {
            "s" | "sec" | "secs" | "second" | "seconds" => 1,
            "m" | "min" | "mins" | "minute" | "minutes" => 60,
            "h" | "hour" | "hours" => 3600,
            "d" | "day" | "days" => 86_400,
            "" => {
                return Err(format!(
                    "invalid rate `{s}`: the period needs a unit (s, min, h or day), e.g. `{count}/{n}s`"
                ))
            }
            other => {
                return Err(format!(
                    "invalid rate `{s}`: unknown period unit `{other}` (use s, sec, second, m, min, minute, h, hour, d or day)"
                ))
            }
        };
        let period_secs = n.checked_mul(unit_secs).ok_or_else(|| format!("invalid rate `{s}`: period too long"))?;
        Ok(Rate { count, period_secs })
    }
}

impl std::fmt::Display for Rate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.period_secs {
            1 => write!(f, "{}/s", self.count),
            60 => write!(f, "{}/min", self.count),
            3600 => write!(f, "{}/h", self.count),
            86_400 => write!(f, "{}/day", self.count),
            p => write!(f, "{}/{p}s", self.count),
        }
    }
}

impl<'de> Deserialize<'de> for Rate {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Rate;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a rate such as `100/s`, `1000/min` or `500/10s`")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Rate, E> {
                Rate::parse(v).map_err(E::custom)
            }
        }
        d.deserialize_str(V)
    }
}

impl Serialize for Rate {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
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

    pub fn access_log_path() -> String {
        "stdout".to_string()
    }
    pub fn request_id_header() -> String {
        "X-Request-Id".to_string()
    }
    pub fn zero() -> Dur {
        Dur(Duration::ZERO)
    }
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
    pub fn admin_history() -> usize {
        10
    }
    pub fn tls_min_version() -> String {
        "1.2".into()
    }
    pub fn redirect_status() -> u16 {
        308
    }
    pub fn hsts_max_age() -> Dur {
        Dur(Duration::from_secs(365 * 24 * 3600))
    }
    pub fn yes() -> bool {
        true
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
    pub fn rate_limit_key() -> super::LimitKey {
        super::LimitKey(vec![super::KeyPart::ClientIp])
    }
    pub fn concurrency_key() -> super::LimitKey {
        super::LimitKey(vec![super::KeyPart::Route])
    }
    pub fn cost() -> u64 {
        1
    }
    pub fn redis_timeout() -> Dur {
        Dur(Duration::from_millis(50))
    }
    pub fn redis_connect_timeout() -> Dur {
        Dur(Duration::from_secs(1))
    }
    pub fn redis_key_prefix() -> String {
        "gatehouse:".to_string()
    }
    pub fn redis_pool_size() -> usize {
        2
    }
    pub fn queue_timeout() -> Dur {
        Dur(Duration::from_secs(1))
    }
    pub fn window() -> Dur {
        Dur(Duration::from_secs(10))
    }
    pub fn od_consecutive() -> u32 {
        5
    }
    pub fn od_failure_rate() -> u32 {
        50
    }
    pub fn od_min_requests() -> u32 {
        20
    }
    pub fn od_base_ejection() -> Dur {
        Dur(Duration::from_secs(30))
    }
    pub fn od_max_ejection() -> Dur {
        Dur(Duration::from_secs(300))
    }
    pub fn od_max_ejected_percent() -> u32 {
        50
    }
    pub fn cb_failure_rate() -> u32 {
        50
    }
    pub fn cb_slow_call_rate() -> u32 {
        80
    }
    pub fn cb_min_calls() -> u32 {
        20
    }
    pub fn cb_open_duration() -> Dur {
        Dur(Duration::from_secs(5))
    }
    pub fn cb_half_open_probes() -> u32 {
        3
    }
    pub fn max_requests() -> u32 {
        1024
    }
    pub fn max_pending() -> u32 {
        1024
    }
    pub fn budget_percent() -> u32 {
        20
    }
    pub fn budget_min_per_second() -> u32 {
        3
    }
    pub fn retry_attempts() -> u32 {
        2
    }
    pub fn retry_on() -> Vec<super::RetryOn> {
        vec![super::RetryOn::ConnectFailure, super::RetryOn::Reset]
    }
    pub fn backoff_base() -> Dur {
        Dur(Duration::from_millis(25))
    }
    pub fn backoff_max() -> Dur {
        Dur(Duration::from_millis(250))
    }
    pub fn upgrades() -> Vec<String> {
        vec!["websocket".to_string()]
    }
    pub fn h2_max_streams() -> u32 {
        100
    }
    pub fn h2_stream_window() -> ByteSize {
        ByteSize(256 * 1024)
    }
    pub fn h2_connection_window() -> ByteSize {
        ByteSize(1024 * 1024)
    }
    pub fn h2_max_resets() -> u32 {
        200
    }
    pub fn h2_reset_window() -> Dur {
        Dur(Duration::from_secs(10))
    }
    pub fn tunnel_idle_timeout() -> Dur {
        Dur(Duration::from_secs(60))
    }
    pub fn cors_methods() -> Vec<String> {
        ["GET", "HEAD", "POST"].iter().map(|m| m.to_string()).collect()
    }
    pub fn realm() -> String {
        "gatehouse".to_string()
    }
    pub fn clock_skew() -> Dur {
        Dur(Duration::from_secs(60))
    }
    pub fn bearer() -> Vec<super::CredentialSource> {
        vec![super::CredentialSource::Bearer]
    }
    pub fn api_key_from() -> Vec<super::CredentialSource> {
        vec![super::CredentialSource::Header("X-API-Key".to_string())]
    }
    pub fn jwks_cache_min() -> Dur {
        Dur(Duration::from_secs(60))
    }
    pub fn jwks_cache_max() -> Dur {
        Dur(Duration::from_secs(24 * 3600))
    }
    pub fn jwks_refetch_interval() -> Dur {
        Dur(Duration::from_secs(30))
    }
    pub fn jwks_stale_for() -> Dur {
        Dur(Duration::from_secs(3600))
    }
    pub fn auth_call_timeout() -> Dur {
        Dur(Duration::from_secs(2))
    }
    pub fn introspection_cache() -> Dur {
        Dur(Duration::from_secs(30))
    }
    pub fn consumer_header() -> String {
        "X-Consumer-Name".to_string()
    }
    pub fn groups_header() -> String {
        "X-Consumer-Groups".to_string()
    }
    pub fn external_headers() -> Vec<String> {
        vec!["authorization".to_string(), "cookie".to_string()]
    }
}
