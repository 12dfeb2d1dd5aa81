//! Request metrics and the Prometheus text exposition served at admin `/metrics`.
//!
//! Role: count every request (by route, upstream, method and status class), time it (request and
//! upstream duration histograms, in seconds), count its bytes, and render those together with the
//! gauges and counters that other modules keep (connections, target health, rate-limit decisions,
//! reloads, access-log drops) in the Prometheus text format 0.0.4.
//!
//! Invariants:
//! - Labels are bounded: route and upstream *names* from the config, a fixed set of methods
//!   (anything else is `OTHER`) and status classes. Raw paths never become labels.
//! - The request path does no lookup and takes no lock: the snapshot carries, per route index,
//!   the `Arc<RouteMetrics>` bound to it at reload time, and recording is a handful of relaxed
//!   atomic adds into the calling worker's own shard (one cache line set per worker, so two
//!   workers never contend on a counter).
//! - Counters live in a registry keyed by (route name, upstream name), so a reload keeps the
//!   counters of every route that is still there; a removed route's series disappear.
//! - Rendering runs on the admin thread and sums the shards; it never blocks the workers.
//!
//! Why not `prometheus-client`: its `Family` looks label sets up in a locked map per observation;
//! here every label set is known when the config is compiled, so the cells are resolved once.

use std::cell::Cell;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Every metric name, as exposed (documented in `docs/metrics.md`).
pub mod names {
    pub const REQUESTS: &str = "gatehouse_http_requests_total";
    pub const REQUEST_DURATION: &str = "gatehouse_http_request_duration_seconds";
    pub const UPSTREAM_DURATION: &str = "gatehouse_upstream_duration_seconds";
    pub const BANDWIDTH: &str = "gatehouse_bandwidth_bytes_total";
    pub const OPEN_CONNECTIONS: &str = "gatehouse_open_connections";
    pub const REQUESTS_IN_FLIGHT: &str = "gatehouse_requests_in_flight";
    pub const TARGET_HEALTH: &str = "gatehouse_upstream_target_health";
    pub const TARGET_IN_FLIGHT: &str = "gatehouse_upstream_target_requests_in_flight";
    pub const HEALTHY_TARGETS: &str = "gatehouse_upstream_healthy_targets";
    pub const TARGET_EJECTIONS: &str = "gatehouse_upstream_target_ejections_total";
    pub const RETRIES: &str = "gatehouse_upstream_retries_total";
    pub const RETRIES_EXHAUSTED: &str = "gatehouse_upstream_retry_budget_exhausted_total";
    pub const HEDGES: &str = "gatehouse_upstream_hedges_total";
    pub const OVERLOADED: &str = "gatehouse_upstream_overloaded_total";
    pub const EJECTIONS: &str = "gatehouse_upstream_ejections_total";
    pub const UPSTREAM_IN_FLIGHT: &str = "gatehouse_upstream_requests_in_flight";
    pub const PENDING_CONNECTS: &str = "gatehouse_upstream_pending_connects";
    pub const BREAKER_STATE: &str = "gatehouse_circuit_breaker_state";
    pub const BREAKER_TRANSITIONS: &str = "gatehouse_circuit_breaker_transitions_total";
    pub const BREAKER_REJECTED: &str = "gatehouse_circuit_breaker_rejected_total";
    pub const RATELIMIT: &str = "gatehouse_ratelimit_decisions_total";
    pub const CONCURRENCY: &str = "gatehouse_concurrency_limit_decisions_total";
    pub const RELOADS: &str = "gatehouse_config_reloads_total";
    pub const RELOAD_SUCCESS_TS: &str = "gatehouse_config_last_reload_success_timestamp_seconds";
    pub const RELOAD_DURATION: &str = "gatehouse_config_last_reload_duration_seconds";
    pub const CONFIG_INFO: &str = "gatehouse_config_info";
    pub const ACCESS_LOG_DROPPED: &str = "gatehouse_access_log_dropped_total";
    pub const CONSUMER_REQUESTS: &str = "gatehouse_consumer_requests_total";
    pub const IP_DENIED: &str = "gatehouse_ip_denied_total";
    pub const UNREADABLE: &str = "gatehouse_http_unreadable_requests_total";
    pub const H2_CALM: &str = "gatehouse_http2_enhance_your_calm_total";
    pub const AUTH: &str = "gatehouse_auth_decisions_total";
    pub const TRACING_SPANS: &str = "gatehouse_tracing_spans_total";
    pub const TRACING_EXPORT_FAILURES: &str = "gatehouse_tracing_export_failures_total";
    pub const BUILD_INFO: &str = "gatehouse_build_info";
    pub const TLS_CERT_NOT_AFTER: &str = "gatehouse_tls_certificate_not_after_seconds";
    pub const TLS_HANDSHAKE_FAILURES: &str = "gatehouse_tls_handshake_failures_total";
    pub const START_TIME: &str = "process_start_time_seconds";
}

/// Upper bounds of the duration histograms, in microseconds (rendered as seconds).
const BUCKETS_US: [u64; 14] = [
    500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000, 5_000_000,
    10_000_000,
];
const NB: usize = BUCKETS_US.len() + 1;

/// Method label values; the last one collects every other method.
const METHODS: [&str; 8] = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "OTHER"];
/// Status classes; index 0 is a request that ended without any response (client went away).
const CLASSES: [&str; 6] = ["none", "1xx", "2xx", "3xx", "4xx", "5xx"];

/// The route label for requests that matched no route (404, 405, 400 before routing).
pub const UNMATCHED: &str = "_unmatched";

fn method_index(m: &[u8]) -> usize {
    match m {
        b"GET" => 0,
        b"HEAD" => 1,
        b"POST" => 2,
        b"PUT" => 3,
        b"DELETE" => 4,
        b"PATCH" => 5,
        b"OPTIONS" => 6,
        _ => 7,
    }
}

fn class_index(status: u16) -> usize {
    match status {
        100..=599 => (status / 100) as usize,
        _ => 0,
    }
}

fn bucket_index(us: u64) -> usize {
    BUCKETS_US.iter().position(|&b| us <= b).unwrap_or(BUCKETS_US.len())
}

thread_local! {
    /// This thread's shard: workers set it once (`set_worker`); other threads use shard 0.
    static SHARD: Cell<usize> = const { Cell::new(0) };
}

/// Called once by each worker thread with its index.
pub fn set_worker(index: usize) {
    SHARD.with(|s| s.set(index + 1));
}

#[derive(Default)]
struct Histogram {
    buckets: [AtomicU64; NB],
    sum_us: AtomicU64,
}

impl Histogram {
    fn observe(&self, us: u64) {
        self.buckets[bucket_index(us)].fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
    }
}

/// One worker's counters for one route; aligned so shards never share a cache line.
#[derive(Default)]
#[repr(align(128))]
struct Shard {
    requests: [[AtomicU64; CLASSES.len()]; METHODS.len()],
    duration: Histogram,
    upstream: Histogram,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
}

/// What one finished request contributes.
#[derive(Debug, Clone, Copy)]
pub struct Observation<'a> {
    pub method: &'a [u8],
    pub status: u16,
    pub duration_us: u64,
    pub upstream_us: Option<u64>,
    pub bytes_in: u64,
    pub bytes_out: u64,
}

/// The counters of one (route, upstream) pair.
pub struct RouteMetrics {
    pub route: String,
    pub upstream: String,
    shards: Box<[Shard]>,
}

impl RouteMetrics {
    fn new(route: &str, upstream: &str, shards: usize) -> RouteMetrics {
        RouteMetrics {
            route: route.to_string(),
            upstream: upstream.to_string(),
            shards: (0..shards.max(1)).map(|_| Shard::default()).collect(),
        }
    }

    /// Records one request into the calling worker's shard.
    pub fn observe(&self, o: &Observation<'_>) {
        let i = SHARD.with(|s| s.get());
        let s = &self.shards[i % self.shards.len()];
        s.requests[method_index(o.method)][class_index(o.status)].fetch_add(1, Ordering::Relaxed);
        s.duration.observe(o.duration_us);
        if let Some(us) = o.upstream_us {
            s.upstream.observe(us);
        }
        if o.bytes_in > 0 {
            s.bytes_in.fetch_add(o.bytes_in, Ordering::Relaxed);
        }
        if o.bytes_out > 0 {
            s.bytes_out.fetch_add(o.bytes_out, Ordering::Relaxed);
        }
    }

    /// Requests counted so far, all methods and classes.
    pub fn total_requests(&self) -> u64 {
        self.shards.iter().flat_map(|s| s.requests.iter().flatten()).map(|a| a.load(Ordering::Relaxed)).sum()
    }

    fn sum<F: Fn(&Shard) -> &AtomicU64>(&self, f: F) -> u64 {
        self.shards.iter().map(|s| f(s).load(Ordering::Relaxed)).sum()
    }
}

/// Requests of one consumer by status class (only with `metrics.consumer_label`).
pub struct ConsumerMetrics {
    pub consumer: String,
    shards: Box<[ConsumerShard]>,
}

#[derive(Default)]
#[repr(align(128))]
struct ConsumerShard([AtomicU64; CLASSES.len()]);

impl ConsumerMetrics {
    fn new(consumer: &str, shards: usize) -> ConsumerMetrics {
        ConsumerMetrics {
            consumer: consumer.to_string(),
            shards: (0..shards.max(1)).map(|_| ConsumerShard::default()).collect(),
        }
    }

    pub fn observe(&self, status: u16) {
        let i = SHARD.with(|s| s.get());
        self.shards[i % self.shards.len()].0[class_index(status)].fetch_add(1, Ordering::Relaxed);
    }
}

/// The label for identities that are no declared consumer (token subjects are unbounded).
pub const UNMAPPED: &str = "_unmapped";

/// The metrics of one snapshot: per route index, plus the unmatched bucket, plus (opt-in) per
/// consumer name.
#[derive(Clone, Default)]
pub struct Bound {
    pub routes: Vec<Arc<RouteMetrics>>,
    pub unmatched: Option<Arc<RouteMetrics>>,
    /// Empty unless `metrics.consumer_label`; read-only, so lookups take no lock.
    pub consumers: HashMap<String, Arc<ConsumerMetrics>>,
}

impl Bound {
    /// The cell for a request that matched `route` (or none).
    #[inline]
    pub fn for_route(&self, route: Option<usize>) -> Option<&Arc<RouteMetrics>> {
        match route {
            Some(i) => self.routes.get(i),
            None => self.unmatched.as_ref(),
        }
    }
}

/// The registry of long-lived counters, owned by the gateway.
pub struct Metrics {
    shards: usize,
    routes: Mutex<HashMap<(String, String), Arc<RouteMetrics>>>,
    consumers: Mutex<HashMap<String, Arc<ConsumerMetrics>>>,
    unmatched: Arc<RouteMetrics>,
    pub reloads_ok: AtomicU64,
    pub reloads_failed: AtomicU64,
    /// Unix time (ms) of the last successful load (start included).
    pub last_success_ms: AtomicU64,
    /// How long the last successful load took (validate + compile + swap), in µs.
    pub last_reload_us: AtomicU64,
    /// Requests refused by `ip_filter` (listener and route), exported by `/metrics`.
    /// Requests answered with an error before a head could be parsed (no route, no method).
    pub unreadable: AtomicU64,
    /// HTTP/2 connections closed with GOAWAY ENHANCE_YOUR_CALM (too many stream resets).
    pub h2_calm: AtomicU64,
    config_hash: Mutex<String>,
    started_ms: u64,
    /// Client TLS handshakes that failed or timed out (bad client certificate, no shared
    /// protocol, a plain-HTTP client on a TLS port, ...).
    pub tls_handshake_failures: AtomicU64,
}

pub(crate) fn unix_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

impl Metrics {
    /// `workers` worker threads write; one more shard serves every other thread.
    pub fn new(workers: usize) -> Metrics {
        let shards = workers + 1;
        Metrics {
            shards,
            routes: Mutex::new(HashMap::new()),
            consumers: Mutex::new(HashMap::new()),
            unmatched: Arc::new(RouteMetrics::new(UNMATCHED, "", shards)),
            reloads_ok: AtomicU64::new(0),
            reloads_failed: AtomicU64::new(0),
            last_success_ms: AtomicU64::new(0),
            last_reload_us: AtomicU64::new(0),
            unreadable: AtomicU64::new(0),
            h2_calm: AtomicU64::new(0),
            config_hash: Mutex::new(String::new()),
            started_ms: unix_ms(),
            tls_handshake_failures: AtomicU64::new(0),
        }
    }

    /// Resolves the cells for `routes` (name, upstream name), in route order, keeping the counters
    /// of pairs that existed before and forgetting pairs that are gone.
    pub fn bind<'a>(&self, routes: impl Iterator<Item = (&'a str, &'a str)>) -> Bound {
        let mut map = self.routes.lock().unwrap_or_else(|p| p.into_inner());
        let mut next = HashMap::with_capacity(map.len());
        let mut bound = Vec::new();
        for (r, u) in routes {
            let key = (r.to_string(), u.to_string());
            let cell = match map.remove(&key) {
                Some(c) => c,
                None => next.get(&key).cloned().unwrap_or_else(|| Arc::new(RouteMetrics::new(r, u, self.shards))),
            };
            next.insert(key, cell.clone());
            bound.push(cell);
        }
        *map = next;
        Bound { routes: bound, unmatched: Some(self.unmatched.clone()), consumers: HashMap::new() }
    }

    /// Resolves the per-consumer cells for `consumers` (plus `_unmapped`), keeping the counters
    /// of consumers that stay.
    pub fn bind_consumers<'a>(
        &self,
        consumers: impl Iterator<Item = &'a str>,
    ) -> HashMap<String, Arc<ConsumerMetrics>> {
        let mut map = self.consumers.lock().unwrap_or_else(|p| p.into_inner());
        let mut next = HashMap::new();
        for name in consumers.chain(std::iter::once(UNMAPPED)) {
            let cell = map.remove(name).or_else(|| next.get(name).cloned());
            let cell = cell.unwrap_or_else(|| Arc::new(ConsumerMetrics::new(name, self.shards)));
            next.insert(name.to_string(), cell);
        }
        *map = next.clone();
        next
    }

    /// Records a successful (re)load of a config whose text hashes to `hash`.
    pub fn reload_succeeded(&self, hash: &str, took: std::time::Duration, initial: bool) {
        if !initial {
            self.reloads_ok.fetch_add(1, Ordering::Relaxed);
        }
        self.last_success_ms.store(unix_ms(), Ordering::Relaxed);
        self.last_reload_us.store(took.as_micros() as u64, Ordering::Relaxed);
        *self.config_hash.lock().unwrap_or_else(|p| p.into_inner()) = hash.to_string();
    }

    pub fn tls_handshake_failed(&self) {
        self.tls_handshake_failures.fetch_add(1, Ordering::Relaxed);
    }

    pub fn reload_failed(&self) {
        self.reloads_failed.fetch_add(1, Ordering::Relaxed);
    }

    pub fn config_hash(&self) -> String {
        self.config_hash.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn started_ms(&self) -> u64 {
        self.started_ms
    }
}

/// Escapes a label value per the text format (backslash, double quote, newline).
pub fn escape(v: &str) -> std::borrow::Cow<'_, str> {
    if !v.contains(['\\', '"', '\n']) {
        return v.into();
    }
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n").into()
}

/// A text-format writer: `# HELP`/`# TYPE` once per family, then samples.
pub struct Exposition {
    out: String,
}

impl Default for Exposition {
    fn default() -> Self {
        Self::new()
    }
}

impl Exposition {
    pub fn new() -> Exposition {
        Exposition { out: String::with_capacity(16 * 1024) }
    }

    pub fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    /// One sample; `labels` are (name, value) pairs, values escaped here.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{k}=\"{}\"", escape(v));
            }
            self.out.push('}');
        }
        if value.is_finite() && value.fract() == 0.0 && value.abs() < 1e15 {
            let _ = writeln!(self.out, " {}", value as i64);
        } else {
            let _ = writeln!(self.out, " {value}");
        }
    }

    pub fn finish(self) -> String {
        self.out
    }
}

/// Renders the per-route families of `cells` (the running snapshot's, unmatched last).
pub fn render_routes(x: &mut Exposition, cells: &[&RouteMetrics]) {
    x.family(names::REQUESTS, "counter", "Requests by route, upstream, method and status class.");
    for m in cells {
        for (mi, method) in METHODS.iter().enumerate() {
            for (ci, class) in CLASSES.iter().enumerate() {
                let n = m.sum(|s| &s.requests[mi][ci]);
                if n > 0 {
                    let labels =
                        [("route", &*m.route), ("upstream", &*m.upstream), ("method", method), ("status_class", class)];
                    x.sample(names::REQUESTS, &labels, n as f64);
                }
            }
        }
    }
    type Pick = fn(&Shard) -> &Histogram;
    let histograms: [(&str, &str, Pick); 2] = [
        (names::REQUEST_DURATION, "Time from the request head to the end of the response, in seconds.", |s| {
            &s.duration
        }),
        (names::UPSTREAM_DURATION, "Time from the request sent upstream to the response head, in seconds.", |s| {
            &s.upstream
        }),
    ];
    for (name, help, pick) in histograms {
        x.family(name, "histogram", help);
        let (bucket, sum, count) = (format!("{name}_bucket"), format!("{name}_sum"), format!("{name}_count"));
        for m in cells {
            let mut counts = [0u64; NB];
            let mut sum_us = 0u64;
            for s in m.shards.iter() {
                let h = pick(s);
                for (c, b) in counts.iter_mut().zip(&h.buckets) {
                    *c += b.load(Ordering::Relaxed);
                }
                sum_us += h.sum_us.load(Ordering::Relaxed);
            }
            let total: u64 = counts.iter().sum();
            if total == 0 {
                continue;
            }
            let mut cumulative = 0;
            for (i, c) in counts.iter().enumerate() {
                cumulative += c;
                let le = match BUCKETS_US.get(i) {
                    Some(us) => format!("{}", *us as f64 / 1e6),
                    None => "+Inf".to_string(),
                };
                let labels = [("route", &*m.route), ("upstream", &*m.upstream), ("le", &*le)];
                x.sample(&bucket, &labels, cumulative as f64);
            }
            let labels = [("route", &*m.route), ("upstream", &*m.upstream)];
            x.sample(&sum, &labels, sum_us as f64 / 1e6);
            x.sample(&count, &labels, total as f64);
        }
    }
    x.family(names::BANDWIDTH, "counter", "Bytes received from clients (in) and sent to clients (out), by route.");
    for m in cells {
        for (dir, n) in [("in", m.sum(|s| &s.bytes_in)), ("out", m.sum(|s| &s.bytes_out))] {
            if n > 0 {
                x.sample(
                    names::BANDWIDTH,
                    &[("route", &m.route), ("upstream", &m.upstream), ("direction", dir)],
                    n as f64,
                );
            }
        }
    }
}

/// Renders `gatehouse_consumer_requests_total` (nothing when the label is off).
pub fn render_consumers(x: &mut Exposition, consumers: &HashMap<String, Arc<ConsumerMetrics>>) {
    if consumers.is_empty() {
        return;
    }
    x.family(names::CONSUMER_REQUESTS, "counter", "Requests by consumer and status class (opt-in).");
    let mut list: Vec<&Arc<ConsumerMetrics>> = consumers.values().collect();
    list.sort_by(|a, b| a.consumer.cmp(&b.consumer));
    for c in list {
        for (ci, class) in CLASSES.iter().enumerate() {
            let n: u64 = c.shards.iter().map(|s| s.0[ci].load(Ordering::Relaxed)).sum();
            if n > 0 {
                x.sample(names::CONSUMER_REQUESTS, &[("consumer", &c.consumer), ("status_class", class)], n as f64);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obs(method: &'static [u8], status: u16, us: u64) -> Observation<'static> {
        Observation { method, status, duration_us: us, upstream_us: Some(us / 2), bytes_in: 10, bytes_out: 20 }
    }

    #[test]
    fn indexes() {
        assert_eq!(method_index(b"GET"), 0);
        assert_eq!(method_index(b"PROPFIND"), 7);
        assert_eq!(class_index(0), 0);
        assert_eq!(class_index(204), 2);
        assert_eq!(class_index(503), 5);
        assert_eq!(class_index(700), 0);
        assert_eq!(bucket_index(0), 0);
        assert_eq!(bucket_index(500), 0);
        assert_eq!(bucket_index(501), 1);
        assert_eq!(bucket_index(u64::MAX), BUCKETS_US.len());
    }

    #[test]
    fn bind_keeps_counters_of_surviving_routes() {
        let m = Metrics::new(2);
        let b = m.bind([("a", "up"), ("b", "up")].into_iter());
        b.routes[0].observe(&obs(b"GET", 200, 100));
        b.routes[1].observe(&obs(b"GET", 200, 100));
        let b2 = m.bind([("b", "up"), ("c", "up")].into_iter());
        assert_eq!(b2.routes[0].total_requests(), 1, "b kept its counters");
        assert_eq!(b2.routes[1].total_requests(), 0);
        let b3 = m.bind([("a", "up")].into_iter());
        assert_eq!(b3.routes[0].total_requests(), 0, "a was dropped when it left the config");
    }

    #[test]
    fn renders_cumulative_buckets_and_escapes() {
        let m = Metrics::new(1);
        let b = m.bind([("r\"1", "up")].into_iter());
        for us in [100, 1_500, 3_000_000, 20_000_000] {
            b.routes[0].observe(&obs(b"POST", 503, us));
        }
        let mut x = Exposition::new();
        render_routes(&mut x, &[&b.routes[0]]);
        let text = x.finish();
        assert!(
            text.contains(
                r#"gatehouse_http_requests_total{route="r\"1",upstream="up",method="POST",status_class="5xx"} 4"#
            ),
            "{text}"
        );
        assert!(
            text.contains(
                r#"gatehouse_http_request_duration_seconds_bucket{route="r\"1",upstream="up",le="0.0005"} 1"#
            ),
            "{text}"
        );
        assert!(text.contains(r#"le="0.0025"} 2"#), "{text}");
        assert!(
            text.contains(r#"gatehouse_http_request_duration_seconds_bucket{route="r\"1",upstream="up",le="+Inf"} 4"#),
            "{text}"
        );
        assert!(
            text.contains(r#"gatehouse_http_request_duration_seconds_count{route="r\"1",upstream="up"} 4"#),
            "{text}"
        );
        assert!(text.contains(r#"direction="out"} 80"#), "{text}");
    }
}
