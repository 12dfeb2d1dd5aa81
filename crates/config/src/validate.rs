//! Semantic validation: everything serde cannot check (references, ranges, formats, conflicts
//! between routes), collected as a list of [`ConfigError`]s, each with its path.
//!
//! Invariants:
//! - Validation never stops early and never panics; it reports every problem it finds.
//! - A config that passes can be compiled by the data plane without any further failure:
//!   every address, URL, CIDR, regex and template here is parsed exactly as the data plane will
//!   parse it (the parsers live in [`crate::net`] and [`crate::path`] so both sides share them),
//!   and templates are inserted into a `matchit` router per host bucket, as the router does.
//! - Paths name the original list indices (`routes[3]`) even when some items failed to parse.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::SocketAddr;

use crate::error::ConfigError;
use crate::net::{is_dns_name, is_token, parse_socket_addr, parse_target_url, Cidr};
use crate::path::{check_config_path, check_rewrite, parse_template, Template};
use crate::types::{
    Balancer, ConcurrencyLimit, Config, HashOn, HeaderOps, HealthCheck, KeyPart, LimitKey, Listener, PathMatch, Policy,
    RateLimit, RateLimitMode, Redis, Route, RouteMatch, Upstream, ValueMatch,
};
use crate::types::{CircuitBreaker, DeadlineFormat, OutlierDetection, Retry, RetryOn};
use crate::yaml::{join_index, join_key};
// The map lives with the YAML layer that builds it; `validate::SourceMap` stays a public path.
pub use crate::yaml::SourceMap;

mod auth;
mod edge;
pub use auth::{parse_service_url, JWT_ALGORITHMS};

/// Headers the gateway manages itself; routes may not set, add or remove them.
pub const HOP_BY_HOP_HEADERS: &[&str] = &[
    "connection",
    "keep-alive",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "content-length",
    "proxy-connection",
];

/// Largest allowed target weight.
pub const MAX_WEIGHT: u32 = 10_000;
/// Most attempts a route may make for one request (the first included).
pub const MAX_RETRY_ATTEMPTS: u32 = 10;
/// Largest retry budget share, in percent of requests.
pub const MAX_BUDGET_PERCENT: u32 = 1000;
/// Largest allowed `pool.max_idle_per_target`.
pub const MAX_IDLE_PER_TARGET: usize = 100_000;

/// Longest rate-limit period (`365d`).
pub const MAX_RATE_PERIOD_SECS: u64 = 365 * 86_400;
/// Longest time a rate limit's burst may take to refill (its GCRA tolerance, `burst × period / count`).
pub const MAX_RATE_TOLERANCE_SECS: u64 = 365 * 86_400;
/// Largest `concurrency_limit.max`.
pub const MAX_CONCURRENCY: u32 = 1_000_000;
/// Largest `concurrency_limit.queue`.
pub const MAX_QUEUE: u32 = 100_000;
/// Longest `cluster.redis.timeout` / `connect_timeout`: a rate-limit call waits at most this.
pub const MAX_REDIS_TIMEOUT_SECS: u64 = 10;
/// Longest `cluster.redis.key_prefix`.
pub const MAX_REDIS_KEY_PREFIX: usize = 128;

/// Which items of a partially parsed document the `Config` holds (their original indices).
#[derive(Debug, Clone, Default)]
pub(crate) struct Items {
    /// How many listener items the document has (parsed or not).
    pub listener_items: usize,
    pub listener_ix: Vec<usize>,
    pub upstream_ix: Vec<usize>,
    pub route_ix: Vec<usize>,
    /// Every upstream name written in the document, in order, including items that failed to
    /// parse (so routes naming them are not also flagged).
    pub upstream_names: Vec<String>,
    /// Original indices of routes that had deserialization errors (their match may be partial,
    /// so they take no part in the shadowing check).
    pub tainted_routes: HashSet<usize>,
}

/// Validates a complete `Config` (e.g. one built in code); errors carry paths but no locations.
pub fn validate(cfg: &Config) -> Vec<ConfigError> {
    validate_with_locations(cfg, &SourceMap::default())
}

/// Validates a complete `Config` parsed from the document described by `map`.
pub fn validate_with_locations(cfg: &Config, map: &SourceMap) -> Vec<ConfigError> {
    let items = Items {
        listener_items: cfg.listeners.len(),
        listener_ix: (0..cfg.listeners.len()).collect(),
        upstream_ix: (0..cfg.upstreams.len()).collect(),
        route_ix: (0..cfg.routes.len()).collect(),
        upstream_names: cfg.upstreams.iter().map(|u| u.name.clone()).collect(),
        tainted_routes: HashSet::new(),
    };
    validate_items(cfg, &items, map)
}

pub(crate) fn validate_items(cfg: &Config, partial: &Items, map: &SourceMap) -> Vec<ConfigError> {
    let has_redis = cfg.cluster.as_ref().is_some_and(|c| c.redis.is_some());
    let mut v = Validator { errors: Vec::new(), map, has_redis };
    v.version(cfg);
    let listener_addrs = v.listeners(cfg, partial);
    v.admin(cfg, &listener_addrs);
    v.reserved(cfg);
    v.consumers(cfg);
    v.cluster(cfg);
    v.access_log(cfg);
    v.tracing(cfg);
    if cfg.server.shutdown_delay.0 > std::time::Duration::from_secs(300) {
        v.err("server.shutdown_delay", "must be at most 300s");
    }
    let rid = cfg.server.request_id.header.to_ascii_lowercase();
    if !is_token(&rid) {
        v.err("server.request_id.header", format!("invalid header name {rid:?}"));
    } else if HOP_BY_HOP_HEADERS.contains(&rid.as_str())
        || ["host", "content-length", "transfer-encoding", "authorization", "cookie"].contains(&rid.as_str())
    {
        v.err("server.request_id.header", format!("`{rid}` cannot carry the request id"));
    }
    v.upstreams(cfg, partial);
    v.routes(cfg, partial);
    v.errors
}

/// The name a listener is known by: its `name`, or `listener-N` for the N-th listener.
pub fn listener_name(listener: &Listener, index: usize) -> String {
    listener.name.clone().unwrap_or_else(|| format!("listener-{index}"))
}

/// Checks a `cluster.redis.url`: `redis[s]://[user[:password]@]host[:port][/db]`. The data
/// plane's Redis client parses the same URL; this refuses what it would refuse.
pub fn check_redis_url(url: &str) -> Result<(), String> {
    let form = "expected `redis://host[:port][/db]` (or `rediss://` for TLS), e.g. `redis://127.0.0.1:6379/0`";
    let rest = if let Some(r) = url.strip_prefix("redis://").or_else(|| url.strip_prefix("rediss://")) {
        r
    } else {
        return Err(format!("unsupported Redis URL `{url}`: {form}"));
    };
    // Credentials end at the last `@`; the host part never contains one.
    let host_part = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
    let (authority, db) = match host_part.split_once('/') {
        Some((a, db)) => (a, Some(db)),
        None => (host_part, None),
    };
    if let Some(db) = db {
        if !db.is_empty() && db.parse::<u32>().is_err() {
            return Err(format!("invalid Redis database `{db}`: expected a number such as `/0`"));
        }
    }
    if authority.contains(['?', '#']) || db.is_some_and(|d| d.contains(['?', '#'])) {
        return Err(format!("URL parameters are not supported: {form}"));
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let Some((h, after)) = v6.split_once(']') else { return Err(format!("invalid Redis host in `{url}`: {form}")) };
        (h, after.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err(format!("the Redis URL `{url}` has no host: {form}"));
    }
    if !(is_dns_name(host) || host.parse::<std::net::IpAddr>().is_ok()) {
        return Err(format!("invalid Redis host `{host}`: {form}"));
    }
    if let Some(p) = port {
        if !matches!(p.parse::<u16>(), Ok(n) if n > 0) {
            return Err(format!("invalid Redis port `{p}`: expected 1-65535"));
        }
    }
    Ok(())
}

/// Whether `s` is a valid name for a listener, upstream or route: `[A-Za-z0-9_.-]+`.
pub fn is_valid_name(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

struct Validator<'a> {
    errors: Vec<ConfigError>,
    map: &'a SourceMap,
    /// The config has a `cluster.redis` section (cluster-mode rate limits need one).
    has_redis: bool,
}

impl Validator<'_> {
    fn err(&mut self, path: impl Into<String>, message: impl Into<String>) {
        let path = path.into();
        let (line, column) = self.map.locate(&path);
        self.errors.push(ConfigError { path, line, column, message: message.into() });
    }

    fn name(&mut self, path: &str, kind: &str, name: &str) {
        if name.is_empty() {
            self.err(path, format!("{kind} name must not be empty"));
        } else if !is_valid_name(name) {
            self.err(path, format!("invalid {kind} name {name:?}: use letters, digits, `_`, `.` and `-` only"));
        }
    }

    fn positive_dur(&mut self, path: String, d: &crate::units::Dur) {
        if d.0.is_zero() {
            self.err(path, "must be greater than 0");
        }
    }

    fn version(&mut self, cfg: &Config) {
        if let Some(v) = cfg.version {
            if v != 1 {
                self.err("version", format!("unsupported version {v}: this release understands version 1"));
            }
        }
    }

    fn listeners(&mut self, cfg: &Config, partial: &Items) -> Vec<(SocketAddr, String)> {
        if cfg.listeners.is_empty() && partial.listener_items == 0 {
            self.err("listeners", "at least one listener is required");
        }
        let mut names: HashMap<String, String> = HashMap::new();
        let mut addrs: Vec<(SocketAddr, String)> = Vec::new();
        for (pos, l) in cfg.listeners.iter().enumerate() {
            let i = partial.listener_ix.get(pos).copied().unwrap_or(pos);
            let p = join_index("listeners", i);
            if let Some(n) = &l.name {
                self.name(&join_key(&p, "name"), "listener", n);
            }
            let name = listener_name(l, i);
            if let Some(first) = names.get(&name) {
                let how = if l.name.is_none() { " (an unnamed listener defaults to `listener-N`)" } else { "" };
                self.err(join_key(&p, "name"), format!("duplicate listener name `{name}` (also {first}){how}"));
            } else {
                names.insert(name, p.clone());
            }
            match parse_socket_addr(&l.address) {
                Err(e) => self.err(join_key(&p, "address"), e),
                Ok(addr) => {
                    if let Some(other) = clash(&addrs, addr) {
                        self.err(join_key(&p, "address"), other);
                    }
                    addrs.push((addr, p.clone()));
                }
            }
            for (k, c) in l.trusted_proxies.iter().enumerate() {
                if let Err(e) = Cidr::parse(c) {
                    self.err(join_index(&join_key(&p, "trusted_proxies"), k), e);
                }
            }
            if let Some(f) = &l.ip_filter {
                self.ip_filter(f, &join_key(&p, "ip_filter"));
            }
            let lim = &l.limits;
            let lp = join_key(&p, "limits");
            for (field, value) in [
                ("max_header_bytes", lim.max_header_bytes.0),
                ("max_headers", lim.max_headers as u64),
                ("max_uri_bytes", lim.max_uri_bytes.0),
                ("max_body_bytes", lim.max_body_bytes.0),
            ] {
                if value == 0 {
                    self.err(join_key(&lp, field), "must be greater than 0");
                }
            }
            if lim.max_uri_bytes.0 > lim.max_header_bytes.0 {
                self.err(
                    join_key(&lp, "max_uri_bytes"),
                    format!(
                        "max_uri_bytes ({}) cannot exceed max_header_bytes ({}): the request line is part of the head",
                        lim.max_uri_bytes, lim.max_header_bytes
                    ),
                );
            }
            let tp = join_key(&p, "timeouts");
            self.positive_dur(join_key(&tp, "header_read"), &l.timeouts.header_read);
            self.positive_dur(join_key(&tp, "body_read"), &l.timeouts.body_read);
            self.positive_dur(join_key(&tp, "idle"), &l.timeouts.idle);
            self.listener_tls(l, &p);
            self.http2(&l.http2, &join_key(&p, "http2"));
        }
        addrs
    }

    /// `listeners[].http2`: values inside what RFC 9113 allows (windows up to 2^31-1 bytes).
    fn http2(&mut self, h: &crate::types::Http2, p: &str) {
        const MAX_WINDOW: u64 = (1 << 31) - 1;
        if h.max_concurrent_streams == 0 {
            self.err(join_key(p, "max_concurrent_streams"), "must be at least 1");
        }
        for (field, v) in [
            ("initial_stream_window", h.initial_stream_window.0),
            ("initial_connection_window", h.initial_connection_window.0),
        ] {
            if !(65_535..=MAX_WINDOW).contains(&v) {
                self.err(join_key(p, field), format!("must be between 65535 bytes and 2 GiB - 1 (RFC 9113), got {v}"));
            }
        }
        if h.max_resets == 0 {
            self.err(join_key(p, "max_resets"), "must be at least 1");
        }
        self.positive_dur(join_key(p, "reset_window"), &h.reset_window);
    }

    /// The shape of `listeners[].tls` and `redirect_https`; the files themselves (PEM, key
    /// match, expiry) are read by the data plane's TLS module (`gatehouse validate` runs both).
    fn listener_tls(&mut self, l: &crate::types::Listener, p: &str) {
        if let Some(r) = &l.redirect_https {
            let rp = join_key(p, "redirect_https");
            if l.tls.is_some() {
                self.err(&rp, "a TLS listener cannot redirect to https (it already is); set it on the plain listener");
            }
            if !matches!(r.status, 301 | 308) {
                self.err(join_key(&rp, "status"), format!("status {} is not 301 or 308", r.status));
            }
            if r.port == Some(0) {
                self.err(join_key(&rp, "port"), "port must be from 1 to 65535");
            }
        }
        let Some(tls) = &l.tls else { return };
        let tp = join_key(p, "tls");
        if tls.certificates.is_empty() {
            self.err(join_key(&tp, "certificates"), "at least one certificate is required");
        }
        if !matches!(tls.min_version.as_str(), "1.2" | "1.3") {
            self.err(join_key(&tp, "min_version"), format!("`{}` is not \"1.2\" or \"1.3\"", tls.min_version));
        }
        let mut default_at: Option<String> = None;
        for (k, c) in tls.certificates.iter().enumerate() {
            let cp = join_index(&join_key(&tp, "certificates"), k);
            for (field, v) in [("cert", &c.cert), ("key", &c.key)] {
                if v.trim().is_empty() {
                    self.err(join_key(&cp, field), "a file path is required");
                }
            }
            for (n, name) in c.names.iter().enumerate() {
                let bare = name.strip_prefix("*.").unwrap_or(name);
                if !is_dns_name(bare) || bare.contains('*') {
                    self.err(
                        join_index(&join_key(&cp, "names"), n),
                        format!("`{name}` is not a DNS name or a `*.example.com` wildcard"),
                    );
                }
            }
            if c.default {
                if let Some(first) = &default_at {
                    self.err(
                        join_key(&cp, "default"),
                        format!("only one default certificate per listener (also {first})"),
                    );
                } else {
                    default_at = Some(cp.clone());
                }
            }
        }
        if let Some(ca) = &tls.client_auth {
            if ca.ca.trim().is_empty() {
                self.err(join_key(&join_key(&tp, "client_auth"), "ca"), "a file path is required");
            }
        }
    }

    fn admin(&mut self, cfg: &Config, listeners: &[(SocketAddr, String)]) {
        let Some(admin) = &cfg.admin else { return };
        match parse_socket_addr(&admin.address) {
            Err(e) => self.err("admin.address", e),
            Ok(addr) => {
                if let Some(msg) = clash(listeners, addr) {
                    self.err("admin.address", msg);
                }
            }
        }
        if let Some(t) = &admin.token {
            if t.len() < 16 {
                self.err("admin.token", "must be at least 16 characters (it guards config changes)");
            } else if !t.bytes().all(|b| b.is_ascii_graphic()) {
                self.err("admin.token", "must be printable ASCII without spaces");
            }
        }
        if !(1..=1000).contains(&admin.history) {
            self.err("admin.history", "must be between 1 and 1000");
        }
    }

    fn reserved(&mut self, cfg: &Config) {
        let (key, value) = ("policies", &cfg.policies);
        let empty = match value {
            None | Some(serde_json::Value::Null) => true,
            Some(serde_json::Value::Object(m)) => m.is_empty(),
            Some(serde_json::Value::Array(a)) => a.is_empty(),
            Some(serde_json::Value::String(s)) => s.is_empty(),
            Some(_) => false,
        };
        if !empty {
            self.err(key, format!("`{key}` is reserved for a later release; remove it or leave it empty"));
        }
    }

    fn access_log(&mut self, cfg: &Config) {
        let p = &cfg.access_log.path;
        if p.is_empty() || p.chars().any(|c| c.is_control()) {
            self.err("access_log.path", "must be `stdout` or a file path without control characters");
        }
    }

    fn tracing(&mut self, cfg: &Config) {
        let t = &cfg.tracing;
        if let Some(e) = &t.endpoint {
            match e.strip_prefix("http://") {
                Some(rest) if !rest.is_empty() && !rest.contains('@') => {}
                Some(_) => self.err("tracing.endpoint", "must be http://host:port without credentials (use headers)"),
                None if e.starts_with("https://") => self.err(
                    "tracing.endpoint",
                    "https:// collectors are not supported yet; point it at a local collector or agent over http://",
                ),
                None => self.err("tracing.endpoint", "must be an http:// URL such as http://127.0.0.1:4318"),
            }
        }
        const SAMPLERS: &[&str] = &[
            "parentbased_always_on",
            "parentbased_always_off",
            "parentbased_traceidratio",
            "traceidratio",
            "always_on",
            "always_off",
        ];
        if let Some(sm) = &t.sampler {
            if !SAMPLERS.contains(&sm.as_str()) {
                self.err("tracing.sampler", format!("unknown sampler; expected one of {}", SAMPLERS.join(", ")));
            }
        }
        if let Some(r) = t.ratio {
            if !(0.0..=1.0).contains(&r) {
                self.err("tracing.ratio", "must be between 0.0 and 1.0");
            }
        }
        if t.batch_size == Some(0) {
            self.err("tracing.batch_size", "must be at least 1");
        }
        if t.queue_size == Some(0) {
            self.err("tracing.queue_size", "must be at least 1");
        }
        if let (Some(b), Some(q)) = (t.batch_size, t.queue_size) {
            if b > q {
                self.err("tracing.batch_size", "must not exceed tracing.queue_size");
            }
        }
        for (k, v) in &t.headers {
            if !is_token(k) {
                self.err(format!("tracing.headers.{k}"), "not a valid header name");
            }
            if v.chars().any(|c| c.is_control()) {
                self.err(format!("tracing.headers.{k}"), "header values must not contain control characters");
            }
        }
    }

    fn cluster(&mut self, cfg: &Config) {
        let Some(r) = cfg.cluster.as_ref().and_then(|c| c.redis.as_ref()) else { return };
        self.redis(r, "cluster.redis");
    }

    fn redis(&mut self, r: &Redis, p: &str) {
        if let Err(e) = check_redis_url(&r.url) {
            self.err(join_key(p, "url"), e);
        }
        for (field, d) in [("timeout", &r.timeout), ("connect_timeout", &r.connect_timeout)] {
            if d.0.is_zero() {
                self.err(join_key(p, field), "must be greater than 0");
            } else if d.0 > std::time::Duration::from_secs(MAX_REDIS_TIMEOUT_SECS) {
                self.err(join_key(p, field), format!("must be at most {MAX_REDIS_TIMEOUT_SECS}s"));
            }
        }
        if let Some(tls) = &r.tls {
            let tp = join_key(p, "tls");
            if !r.url.starts_with("rediss://") {
                self.err(&tp, "TLS settings need a `rediss://` URL");
            }
            for (field, file) in [("ca_file", &tls.ca_file), ("cert_file", &tls.cert_file), ("key_file", &tls.key_file)]
            {
                if let Some(f) = file {
                    if let Err(e) = std::fs::metadata(f) {
                        self.err(join_key(&tp, field), format!("cannot read `{f}`: {e}"));
                    }
                }
            }
            if tls.cert_file.is_some() != tls.key_file.is_some() {
                self.err(&tp, "`cert_file` and `key_file` go together (a client certificate and its key)");
            }
        }
        if !(1..=64).contains(&r.pool_size) {
            self.err(join_key(p, "pool_size"), format!("must be between 1 and 64, got {}", r.pool_size));
        }
        if r.key_prefix.len() > MAX_REDIS_KEY_PREFIX {
            self.err(join_key(p, "key_prefix"), format!("must be at most {MAX_REDIS_KEY_PREFIX} bytes"));
        } else if r.key_prefix.bytes().any(|b| b.is_ascii_control() || b == b' ') {
            self.err(join_key(p, "key_prefix"), "must not contain spaces or control characters");
        }
    }

    fn upstreams(&mut self, cfg: &Config, partial: &Items) {
        let mut names: HashMap<&str, String> = HashMap::new();
        for (pos, u) in cfg.upstreams.iter().enumerate() {
            let i = partial.upstream_ix.get(pos).copied().unwrap_or(pos);
            let p = join_index("upstreams", i);
            self.name(&join_key(&p, "name"), "upstream", &u.name);
            if let Some(first) = names.get(u.name.as_str()) {
                self.err(join_key(&p, "name"), format!("duplicate upstream name `{}` (also {first})", u.name));
            } else {
                names.insert(&u.name, p.clone());
            }
            self.upstream(u, &p);
        }
    }

    fn upstream(&mut self, u: &Upstream, p: &str) {
        if let Some(tls) = &u.tls {
            let sp = join_key(p, "tls");
            if let Some(n) = &tls.server_name {
                if !is_dns_name(n) && n.parse::<std::net::IpAddr>().is_err() {
                    self.err(join_key(&sp, "server_name"), format!("`{n}` is not a DNS name or an IP address"));
                }
            }
            let files = [("ca", tls.ca.as_ref())].into_iter().chain(
                tls.client_cert
                    .iter()
                    .flat_map(|c| [("client_cert.cert", Some(&c.cert)), ("client_cert.key", Some(&c.key))]),
            );
            for (field, v) in files {
                if v.is_some_and(|v| v.trim().is_empty()) {
                    self.err(join_key(&sp, field), "a file path is required");
                }
            }
        }
        let tp = join_key(p, "targets");
        if u.targets.is_empty() {
            self.err(&tp, "an upstream needs at least one target");
        }
        let mut seen: HashMap<String, usize> = HashMap::new();
        let h2c_of = |t: &crate::types::Target| t.url.starts_with("h2c://");
        if u.targets.iter().any(h2c_of) && !u.targets.iter().all(h2c_of) {
            self.err(
                &tp,
                "mixes `h2c://` with other targets: all targets of an upstream speak one protocol (split the upstream)",
            );
        }
        for (j, t) in u.targets.iter().enumerate() {
            let jp = join_index(&tp, j);
            match parse_target_url(&t.url) {
                Err(e) => self.err(join_key(&jp, "url"), e),
                Ok(url) => {
                    if u.protocol == crate::types::UpstreamProtocol::Http2 && !url.tls && !url.h2c {
                        self.err(
                            join_key(&jp, "url"),
                            format!("`protocol: http2` over plain TCP needs an `h2c://` target, not `{}`", t.url),
                        );
                    }
                    let authority = url.authority();
                    if let Some(first) = seen.get(&authority) {
                        self.err(
                            join_key(&jp, "url"),
                            format!(
                                "duplicate target `{authority}` (same as targets[{first}]); raise its `weight` instead"
                            ),
                        );
                    } else {
                        seen.insert(authority, j);
                    }
                }
            }
            if !(1..=MAX_WEIGHT).contains(&t.weight) {
                self.err(
                    join_key(&jp, "weight"),
                    format!("weight must be between 1 and {MAX_WEIGHT}, got {}", t.weight),
                );
            }
        }
        if let Balancer::ConsistentHash(on) = &u.balancer {
            let bp = join_key(&join_key(p, "balancer"), "consistent_hash");
            match on {
                HashOn::Header(h) if !is_token(h) => {
                    self.err(join_key(&bp, "header"), format!("invalid header name {h:?}"));
                }
                HashOn::Cookie(c) if !is_token(c) => {
                    self.err(join_key(&bp, "cookie"), format!("invalid cookie name {c:?}"));
                }
                _ => {}
            }
        }
        let pp = join_key(p, "pool");
        if u.pool.max_idle_per_target > MAX_IDLE_PER_TARGET {
            self.err(
                join_key(&pp, "max_idle_per_target"),
                format!("must be at most {MAX_IDLE_PER_TARGET}, got {}", u.pool.max_idle_per_target),
            );
        }
        self.positive_dur(join_key(&pp, "idle_timeout"), &u.pool.idle_timeout);
        let top = join_key(p, "timeouts");
        self.positive_dur(join_key(&top, "connect"), &u.timeouts.connect);
        self.positive_dur(join_key(&top, "response_header"), &u.timeouts.response_header);
        if let Some(hc) = &u.health_check {
            self.health_check(hc, &join_key(p, "health_check"));
        }
        self.outlier_detection(&u.outlier_detection, &join_key(p, "outlier_detection"));
        self.circuit_breaker(&u.circuit_breaker, &join_key(p, "circuit_breaker"));
        let lp = join_key(p, "limits");
        for (field, v) in [("max_requests", u.limits.max_requests), ("max_pending", u.limits.max_pending)] {
            if !(1..=MAX_CONCURRENCY).contains(&v) {
                self.err(join_key(&lp, field), format!("must be between 1 and {MAX_CONCURRENCY}, got {v}"));
            }
        }
        let bp = join_key(p, "retry_budget");
        if u.retry_budget.percent > MAX_BUDGET_PERCENT {
            self.err(
                join_key(&bp, "percent"),
                format!("must be at most {MAX_BUDGET_PERCENT}, got {}", u.retry_budget.percent),
            );
        }
        if u.retry_budget.min_per_second > MAX_CONCURRENCY {
            self.err(
                join_key(&bp, "min_per_second"),
                format!("must be at most {MAX_CONCURRENCY}, got {}", u.retry_budget.min_per_second),
            );
        }
    }

    fn percent(&mut self, path: String, v: u32) {
        if v > 100 {
            self.err(path, format!("a percentage must be between 0 and 100, got {v}"));
        }
    }

    fn outlier_detection(&mut self, o: &OutlierDetection, p: &str) {
        self.percent(join_key(p, "failure_rate"), o.failure_rate);
        self.percent(join_key(p, "max_ejected_percent"), o.max_ejected_percent);
        self.positive_dur(join_key(p, "window"), &o.window);
        self.positive_dur(join_key(p, "base_ejection"), &o.base_ejection);
        if o.max_ejection.0 < o.base_ejection.0 {
            self.err(
                join_key(p, "max_ejection"),
                format!(
                    "max_ejection ({}) must not be shorter than base_ejection ({})",
                    o.max_ejection, o.base_ejection
                ),
            );
        }
        if o.failure_rate > 0 && o.min_requests == 0 {
            self.err(join_key(p, "min_requests"), "must be at least 1 when failure_rate is set");
        }
    }

    fn circuit_breaker(&mut self, cb: &CircuitBreaker, p: &str) {
        self.percent(join_key(p, "failure_rate"), cb.failure_rate);
        self.percent(join_key(p, "slow_call_rate"), cb.slow_call_rate);
        if let Some(d) = &cb.slow_call_duration {
            self.positive_dur(join_key(p, "slow_call_duration"), d);
        }
        if cb.min_calls == 0 {
            self.err(join_key(p, "min_calls"), "must be at least 1");
        }
        self.positive_dur(join_key(p, "window"), &cb.window);
        self.positive_dur(join_key(p, "open_duration"), &cb.open_duration);
        if !(1..=MAX_CONCURRENCY).contains(&cb.half_open_probes) {
            self.err(
                join_key(p, "half_open_probes"),
                format!("must be between 1 and {MAX_CONCURRENCY}, got {}", cb.half_open_probes),
            );
        }
    }

    fn retry(&mut self, r: &Retry, p: &str) {
        if !(1..=MAX_RETRY_ATTEMPTS).contains(&r.attempts) {
            self.err(
                join_key(p, "attempts"),
                format!("must be between 1 (no retries) and {MAX_RETRY_ATTEMPTS}, got {}", r.attempts),
            );
        }
        let op = join_key(p, "on");
        let mut seen = Vec::new();
        for (k, on) in r.on.iter().enumerate() {
            let kp = join_index(&op, k);
            if let RetryOn::Status(s) = on {
                if !(400..=599).contains(s) {
                    self.err(&kp, format!("only 4xx and 5xx statuses can be retried, got {s}"));
                }
            }
            if seen.contains(on) {
                self.err(&kp, "listed twice");
            }
            seen.push(*on);
        }
        let bp = join_key(p, "backoff");
        self.positive_dur(join_key(&bp, "base"), &r.backoff.base);
        if r.backoff.max.0 < r.backoff.base.0 {
            self.err(
                join_key(&bp, "max"),
                format!("max ({}) must not be shorter than base ({})", r.backoff.max, r.backoff.base),
            );
        }
    }

    fn health_check(&mut self, hc: &HealthCheck, p: &str) {
        if !hc.path.starts_with('/') {
            self.err(join_key(p, "path"), format!("health check path must start with `/`: write `/{}`", hc.path));
        } else if hc.path.bytes().any(|b| b.is_ascii_control() || b == b' ' || b >= 0x80) {
            self.err(join_key(p, "path"), "health check path must not contain spaces, control or non-ASCII characters");
        }
        self.positive_dur(join_key(p, "interval"), &hc.interval);
        if hc.timeout.0.is_zero() {
            self.err(join_key(p, "timeout"), "must be greater than 0");
        } else if hc.timeout.0 > hc.interval.0 && !hc.interval.0.is_zero() {
            self.err(
                join_key(p, "timeout"),
                format!("timeout ({}) must not exceed interval ({})", hc.timeout, hc.interval),
            );
        }
        if hc.healthy_threshold == 0 {
            self.err(join_key(p, "healthy_threshold"), "must be at least 1");
        }
        if hc.unhealthy_threshold == 0 {
            self.err(join_key(p, "unhealthy_threshold"), "must be at least 1");
        }
        let sp = join_key(p, "expected_status");
        let s = hc.expected_status;
        for (field, v) in [("min", s.min), ("max", s.max)] {
            if !(100..=599).contains(&v) {
                self.err(join_key(&sp, field), format!("status must be between 100 and 599, got {v}"));
            }
        }
        if s.min > s.max {
            self.err(&sp, format!("min ({}) must not be greater than max ({})", s.min, s.max));
        }
    }

    fn routes(&mut self, cfg: &Config, partial: &Items) {
        let mut known: Vec<&str> = Vec::new();
        for n in &partial.upstream_names {
            if !known.contains(&n.as_str()) {
                known.push(n);
            }
        }
        let mut names: HashMap<&str, String> = HashMap::new();
        let mut seen_matches: HashMap<String, (String, &str)> = HashMap::new();
        // Parsed templates: (route path, route name, hosts, template text).
        let mut templates: Vec<(String, &str, &[String], &str)> = Vec::new();

        for (pos, r) in cfg.routes.iter().enumerate() {
            let i = partial.route_ix.get(pos).copied().unwrap_or(pos);
            let p = join_index("routes", i);
            self.name(&join_key(&p, "name"), "route", &r.name);
            if let Some(first) = names.get(r.name.as_str()) {
                self.err(join_key(&p, "name"), format!("duplicate route name `{}` (also {first})", r.name));
            } else {
                names.insert(&r.name, p.clone());
            }
            if !known.contains(&r.upstream.as_str()) {
                let list = if known.is_empty() {
                    "none are defined".to_string()
                } else {
                    format!("known: {}", known.join(", "))
                };
                self.err(join_key(&p, "upstream"), format!("unknown upstream {:?} ({list})", r.upstream));
            }
            let template = self.route_match(&r.matches, &join_key(&p, "match"));
            if let (Some(_), Some(PathMatch::Template(t))) = (&template, &r.matches.path) {
                templates.push((p.clone(), r.name.as_str(), r.matches.hosts.as_slice(), t.as_str()));
            }
            self.rewrite(r, template.as_ref(), &p);
            self.header_ops(&r.request_headers, &join_key(&p, "request_headers"), true);
            self.header_ops(&r.response_headers, &join_key(&p, "response_headers"), false);
            if r.max_body_bytes.is_some_and(|b| b.0 == 0) {
                self.err(join_key(&p, "max_body_bytes"), "must be greater than 0");
            }
            if r.timeout.is_some_and(|t| t.0.is_zero()) {
                self.err(join_key(&p, "timeout"), "must be greater than 0");
            }
            self.policies(&r.policies, cfg, &join_key(&p, "policies"));
            self.upgrades(r, &p);
            self.retry(&r.retry, &join_key(&p, "retry"));
            if let Some(d) = &r.deadline {
                let dp = join_key(&p, "deadline");
                self.positive_dur(join_key(&dp, "timeout"), &d.timeout);
                if let Some(h) = &d.header {
                    if !is_token(h) {
                        self.err(join_key(&dp, "header"), format!("invalid header name {h:?}"));
                    } else if HOP_BY_HOP_HEADERS.contains(&h.to_ascii_lowercase().as_str()) {
                        self.err(join_key(&dp, "header"), format!("`{h}` is managed by the gateway"));
                    }
                }
                if d.format == DeadlineFormat::Grpc && d.timeout.0.as_millis() > 99_999_999 {
                    self.err(join_key(&dp, "timeout"), "too long for the grpc-timeout format (8 digits of ms)");
                }
            }
            if let Some(h) = &r.hedge {
                self.positive_dur(join_key(&join_key(&p, "hedge"), "delay"), &h.delay);
            }
            if let Some(cb) = &r.circuit_breaker {
                self.circuit_breaker(cb, &join_key(&p, "circuit_breaker"));
            }
            let key = match_key(&r.matches);
            if partial.tainted_routes.contains(&i) {
                // Its match may lack parts that failed to parse; comparing it would mislead.
            } else if let Some((first, first_name)) = seen_matches.get(&key) {
                self.err(
                    join_key(&p, "match"),
                    format!(
                        "shadowed by {first} ({first_name:?}): it has exactly the same match, so this route can never be chosen"
                    ),
                );
            } else {
                seen_matches.insert(key, (p.clone(), r.name.as_str()));
            }
        }
        self.template_conflicts(&templates);
    }

    /// Checks a route's match; returns the parsed template when the path is a valid template.
    fn route_match(&mut self, m: &RouteMatch, p: &str) -> Option<Template> {
        let hp = join_key(p, "hosts");
        let mut hosts: HashMap<String, usize> = HashMap::new();
        for (k, h) in m.hosts.iter().enumerate() {
            let kp = join_index(&hp, k);
            if let Err(e) = check_host(h) {
                self.err(&kp, e);
            }
            let lower = h.to_ascii_lowercase();
            if let Some(first) = hosts.get(&lower) {
                self.err(&kp, format!("duplicate host `{h}` (also hosts[{first}]; hosts are case-insensitive)"));
            } else {
                hosts.insert(lower, k);
            }
        }
        let pp = join_key(p, "path");
        let mut template = None;
        match &m.path {
            None => {}
            Some(PathMatch::Exact(s)) => {
                if let Err(e) = check_config_path(s) {
                    self.err(join_key(&pp, "exact"), e);
                }
            }
            Some(PathMatch::Prefix(s)) => {
                if let Err(e) = check_config_path(s) {
                    self.err(join_key(&pp, "prefix"), e);
                }
            }
            Some(PathMatch::Template(s)) => match parse_template(s) {
                Ok(t) => template = Some(t),
                Err(e) => self.err(join_key(&pp, "template"), e),
            },
            Some(PathMatch::Regex(s)) => {
                if let Err(e) = compile_regex(s) {
                    self.err(join_key(&pp, "regex"), e);
                }
            }
        }
        let mp = join_key(p, "methods");
        let mut methods: HashSet<&str> = HashSet::new();
        for (k, method) in m.methods.iter().enumerate() {
            let kp = join_index(&mp, k);
            if !is_token(method) {
                self.err(&kp, format!("invalid method {method:?}: methods are tokens such as `GET` or `PURGE`"));
            } else if method.bytes().any(|b| b.is_ascii_lowercase()) {
                self.err(
                    &kp,
                    format!("methods are case-sensitive and upper-case: write `{}`", method.to_ascii_uppercase()),
                );
            }
            if !methods.insert(method) {
                self.err(&kp, format!("duplicate method `{method}`"));
            }
        }
        for (k, vm) in m.headers.iter().enumerate() {
            self.value_match(vm, &join_index(&join_key(p, "headers"), k), true);
        }
        for (k, vm) in m.query.iter().enumerate() {
            self.value_match(vm, &join_index(&join_key(p, "query"), k), false);
        }
        template
    }

    fn value_match(&mut self, vm: &ValueMatch, p: &str, header: bool) {
        if header {
            if !is_token(&vm.name) {
                self.err(join_key(p, "name"), format!("invalid header name {:?}", vm.name));
            }
        } else if vm.name.is_empty()
            || vm.name.chars().any(|c| c.is_control() || c.is_whitespace() || matches!(c, '&' | '=' | '#'))
        {
            self.err(
                join_key(p, "name"),
                format!(
                    "invalid query parameter name {:?}: it must be non-empty without spaces, `&`, `=` or `#`",
                    vm.name
                ),
            );
        }
        let set = usize::from(vm.exact.is_some()) + usize::from(vm.regex.is_some()) + usize::from(vm.present.is_some());
        if set != 1 {
            let what = if set == 0 { "set one of" } else { "set only one of" };
            self.err(p, format!("{what} `exact`, `regex` or `present`"));
        }
        if let Some(re) = &vm.regex {
            if let Err(e) = compile_regex(re) {
                self.err(join_key(p, "regex"), e);
            }
        }
    }

    fn rewrite(&mut self, r: &Route, template: Option<&Template>, p: &str) {
        let Some(rw) = &r.rewrite else { return };
        let rp = join_key(p, "rewrite");
        if rw.strip_prefix && rw.path.is_some() {
            self.err(&rp, "use either `strip_prefix` or `path`, not both");
        }
        if rw.strip_prefix && !matches!(r.matches.path, Some(PathMatch::Prefix(_))) {
            self.err(join_key(&rp, "strip_prefix"), "`strip_prefix` needs a `prefix` path matcher on this route");
        }
        if let Some(path) = &rw.path {
            let pp = join_key(&rp, "path");
            match (&r.matches.path, template) {
                (Some(PathMatch::Template(_)), Some(t)) => {
                    if let Err(e) = check_rewrite(path, t) {
                        self.err(pp, e);
                    }
                }
                // The template itself is invalid: already reported.
                (Some(PathMatch::Template(_)), None) => {}
                _ => self.err(pp, "`rewrite.path` needs a `template` path matcher on this route"),
            }
        }
    }

    fn header_ops(&mut self, ops: &HeaderOps, p: &str, request: bool) {
        // Lower-cased name → where it was first seen.
        let mut seen: HashMap<String, String> = HashMap::new();
        let mut check_name = |v: &mut Self, name: &str, path: &str, op: &str| {
            let lower = name.to_ascii_lowercase();
            if !is_token(name) {
                v.err(path, format!("invalid header name {name:?}"));
            } else if HOP_BY_HOP_HEADERS.contains(&lower.as_str()) {
                v.err(
                    path,
                    format!("`{lower}` is a hop-by-hop or framing header managed by the gateway; it cannot be {op}"),
                );
            } else if request && lower == "host" && op != "set" {
                v.err(path, format!("`host` cannot be {op} (every request needs exactly one); use `set` to change it"));
            }
            if let Some(first) = seen.get(&lower) {
                v.err(path, format!("header `{name}` is also changed at {first} (header names are case-insensitive)"));
            } else {
                seen.insert(lower, path.to_string());
            }
        };
        for (op, map) in [("set", &ops.set), ("added", &ops.add)] {
            let key = if op == "set" { "set" } else { "add" };
            for (name, value) in map.iter() {
                let path = join_key(&join_key(p, key), name);
                check_name(self, name, &path, op);
                if let Some(bad) = value.chars().find(|c| c.is_control() && *c != '\t') {
                    let which = match bad {
                        '\r' => "CR".to_string(),
                        '\n' => "LF".to_string(),
                        '\0' => "NUL".to_string(),
                        c => format!("U+{:04X}", u32::from(c)),
                    };
                    self.err(
                        path,
                        format!("header value contains a control character ({which}), which is not allowed"),
                    );
                }
            }
        }
        for (k, name) in ops.remove.iter().enumerate() {
            let path = join_index(&join_key(p, "remove"), k);
            check_name(self, name, &path, "removed");
        }
    }

    fn policies(&mut self, policies: &[Policy], cfg: &Config, p: &str) {
        // Identity exists only after an `auth` policy: what reads it must come later.
        let mut authenticated = false;
        let (mut identity_checked, mut has_cors) = (false, false);
        for (k, policy) in policies.iter().enumerate() {
            let kp = join_index(p, k);
            let identity_key =
                |key: &LimitKey| key.0.iter().any(|k| matches!(k, KeyPart::Consumer | KeyPart::Claim(_)));
            let needs_identity = |v: &mut Self, what: &str, path: String| {
                if !authenticated {
                    v.err(path, format!("{what} needs an `auth` policy earlier in this route's policies"));
                }
            };
            match policy {
                Policy::RateLimit(rl) => {
                    if identity_key(&rl.key) {
                        needs_identity(
                            self,
                            "a `consumer` or `claim` key",
                            join_key(&join_key(&kp, "rate_limit"), "key"),
                        );
                    }
                    self.rate_limit(rl, &join_key(&kp, "rate_limit"))
                }
                Policy::ConcurrencyLimit(cl) => {
                    if identity_key(&cl.key) {
                        needs_identity(
                            self,
                            "a `consumer` or `claim` key",
                            join_key(&join_key(&kp, "concurrency_limit"), "key"),
                        );
                    }
                    self.concurrency_limit(cl, &join_key(&kp, "concurrency_limit"))
                }
                Policy::Auth(a) => {
                    if authenticated {
                        self.err(
                            join_key(&kp, "auth"),
                            "a route has at most one `auth` policy (list several methods in it)",
                        );
                    }
                    authenticated = true;
                    self.auth(a, cfg, &join_key(&kp, "auth"));
                }
                Policy::Authorize(a) => {
                    needs_identity(self, "`authorize`", join_key(&kp, "authorize"));
                    self.authorize(a, &join_key(&kp, "authorize"));
                }
                Policy::ExternalAuth(e) => self.external_auth(e, &join_key(&kp, "external_auth")),
                Policy::Cors(c) => {
                    // A preflight carries no credentials: a `cors` after an identity check would
                    // never see one (the check refuses it first).
                    if identity_checked {
                        self.err(
                            join_key(&kp, "cors"),
                            "`cors` must come before `auth`, `authorize` and `external_auth` (preflights carry no credentials)",
                        );
                    }
                    if has_cors {
                        self.err(join_key(&kp, "cors"), "a route has at most one `cors` policy");
                    }
                    has_cors = true;
                    self.cors(c, &join_key(&kp, "cors"));
                }
                Policy::IpFilter(f) => self.ip_filter(f, &join_key(&kp, "ip_filter")),
            }
            if matches!(policy, Policy::Auth(_) | Policy::Authorize(_) | Policy::ExternalAuth(_)) {
                identity_checked = true;
            }
        }
    }

    fn rate_limit(&mut self, rl: &RateLimit, p: &str) {
        /// More units per reservation than this would make the error bound meaningless.
        const MAX_BATCH: u64 = 10_000;
        let lp = join_key(p, "limit");
        let rate = rl.limit;
        let mut interval_ns: Option<u128> = None;
        if rate.count == 0 {
            self.err(&lp, format!("the count of `{}` must be greater than 0", rate));
        } else if rate.period_secs == 0 {
            self.err(&lp, format!("the period of `{}` must be greater than 0", rate));
        } else if rate.period_secs > MAX_RATE_PERIOD_SECS {
            self.err(&lp, format!("the period of `{rate}` is longer than the maximum of 365 days"));
        } else if u128::from(rate.count) > u128::from(rate.period_secs) * 1_000_000_000 {
            self.err(&lp, format!("`{rate}` is more than one request per nanosecond"));
        } else {
            interval_ns = Some(u128::from(rate.period_secs) * 1_000_000_000 / u128::from(rate.count));
        }
        if let Some(t) = interval_ns {
            if t * u128::from(rl.burst) > u128::from(MAX_RATE_TOLERANCE_SECS) * 1_000_000_000 {
                self.err(
                    join_key(p, "burst"),
                    format!("burst {} of `{rate}` would take more than 365 days to refill", rl.burst),
                );
            }
        }
        if rl.cost == 0 {
            self.err(join_key(p, "cost"), "must be at least 1");
        } else if rl.cost > rl.burst.saturating_add(1) {
            self.err(
                join_key(p, "cost"),
                format!(
                    "cost {} is more than the limit can ever admit at once (burst + 1 = {}), so every request would be refused; raise `burst` to at least {}",
                    rl.cost,
                    rl.burst.saturating_add(1),
                    rl.cost - 1
                ),
            );
        }
        if let Some(n) = &rl.name {
            self.name(&join_key(p, "name"), "rate limit", n);
        }
        if rl.mode == RateLimitMode::Cluster {
            if !self.has_redis {
                self.err(
                    join_key(p, "mode"),
                    "`mode: cluster` needs a `cluster.redis` section (the Redis server that holds the shared state)",
                );
            }
            // The Redis script counts in whole microseconds (Lua numbers are doubles).
            if interval_ns.is_some_and(|t| t < 1_000) {
                self.err(
                    &lp,
                    format!("`{rate}` is more than one request per microsecond, the resolution of `mode: cluster`"),
                );
            }
            if let Some(b) = rl.batch {
                if !(2..=MAX_BATCH).contains(&b) {
                    self.err(join_key(p, "batch"), format!("must be between 2 and {MAX_BATCH}, got {b}"));
                } else if b < rl.cost {
                    self.err(join_key(p, "batch"), format!("must be at least the cost ({})", rl.cost));
                }
            }
        } else {
            for (field, set) in [("on_redis_error", rl.on_redis_error.is_some()), ("batch", rl.batch.is_some())] {
                if set {
                    self.err(join_key(p, field), "only applies to `mode: cluster`");
                }
            }
        }
        self.limit_key(&rl.key, &join_key(p, "key"));
    }

    fn concurrency_limit(&mut self, cl: &ConcurrencyLimit, p: &str) {
        if !(1..=MAX_CONCURRENCY).contains(&cl.max) {
            self.err(join_key(p, "max"), format!("must be between 1 and {MAX_CONCURRENCY}, got {}", cl.max));
        }
        if cl.queue > MAX_QUEUE {
            self.err(join_key(p, "queue"), format!("must be at most {MAX_QUEUE}, got {}", cl.queue));
        }
        self.positive_dur(join_key(p, "queue_timeout"), &cl.queue_timeout);
        self.limit_key(&cl.key, &join_key(p, "key"));
    }

    fn limit_key(&mut self, key: &LimitKey, p: &str) {
        if key.0.is_empty() {
            self.err(
                p,
                "a key needs at least one part: `client_ip`, `route`, `consumer`, `{header: NAME}` or `{claim: NAME}`",
            );
        }
        let single = key.0.len() == 1;
        let mut seen: Vec<KeyPart> = Vec::new();
        for (k, part) in key.0.iter().enumerate() {
            let kp = if single { p.to_string() } else { join_index(p, k) };
            let lower = match part {
                KeyPart::Header(h) => {
                    if !is_token(h) {
                        self.err(join_key(&kp, "header"), format!("invalid header name {h:?}"));
                    }
                    KeyPart::Header(h.to_ascii_lowercase())
                }
                KeyPart::Claim(c) => {
                    if c.is_empty() {
                        self.err(join_key(&kp, "claim"), "claim name must not be empty");
                    }
                    part.clone()
                }
                other => other.clone(),
            };
            if seen.contains(&lower) {
                self.err(&kp, "this key part is listed twice");
            } else {
                seen.push(lower);
            }
        }
    }

    fn template_conflicts(&mut self, templates: &[(String, &str, &[String], &str)]) {
        // Host bucket → template text → first route (config order) using it.
        let mut buckets: BTreeMap<String, BTreeMap<&str, usize>> = BTreeMap::new();
        for (idx, (_, _, hosts, t)) in templates.iter().enumerate() {
            let keys: Vec<String> = if hosts.is_empty() {
                vec![String::new()]
            } else {
                hosts.iter().map(|h| h.to_ascii_lowercase()).collect::<BTreeSet<_>>().into_iter().collect()
            };
            for key in keys {
                buckets.entry(key).or_default().entry(t).or_insert(idx);
            }
        }
        let mut reported: HashSet<(usize, usize)> = HashSet::new();
        for (host, by_template) in &buckets {
            let mut router = matchit::Router::new();
            for (t, &idx) in by_template {
                let Err(e) = router.insert(*t, ()) else { continue };
                let host_text =
                    if host.is_empty() { "routes without hosts".to_string() } else { format!("host `{host}`") };
                match e {
                    matchit::InsertError::Conflict { with } => {
                        let other = by_template.get(with.as_str()).copied();
                        let (later, earlier) = match other {
                            Some(o) if o < idx => (idx, Some(o)),
                            Some(o) => (o, Some(idx)),
                            None => (idx, None),
                        };
                        if !reported.insert((later, earlier.unwrap_or(usize::MAX))) {
                            continue;
                        }
                        let later_t = templates[later].3;
                        let message = match earlier {
                            Some(e) => format!(
                                "template `{later_t}` conflicts with `{}` of {} ({:?}) for {host_text}: a request path could match both",
                                templates[e].3, templates[e].0, templates[e].1
                            ),
                            None => format!(
                                "template `{later_t}` conflicts with `{with}` for {host_text}: a request path could match both"
                            ),
                        };
                        self.err(join_key(&templates[later].0, "match.path.template"), message);
                    }
                    other => {
                        if reported.insert((idx, usize::MAX)) {
                            self.err(
                                join_key(&templates[idx].0, "match.path.template"),
                                format!("template `{t}` is not accepted by the router: {other}"),
                            );
                        }
                    }
                }
            }
        }
    }
}

/// Compiles a regex as the data plane will (as written, and anchored for whole-path matching).
pub fn compile_regex(re: &str) -> Result<regex::Regex, String> {
    let describe = |e: regex::Error| {
        let text = e.to_string();
        let detail = text
            .lines()
            .find_map(|l| l.trim().strip_prefix("error: "))
            .map(str::to_string)
            .unwrap_or_else(|| text.lines().last().unwrap_or("").trim().to_string());
        format!("invalid regex: {detail}")
    };
    regex::Regex::new(re).map_err(describe)?;
    regex::Regex::new(&format!("^(?:{re})$")).map_err(describe)
}

/// Checks a route host: a DNS name or IP (case-insensitive), or `*.` followed by a DNS name.
pub fn check_host(h: &str) -> Result<(), String> {
    if h.is_empty() {
        return Err("host must not be empty".to_string());
    }
    if h == "*" {
        return Err("`*` is not a host: leave `hosts` out to match any host".to_string());
    }
    if let Some(v6) = h.strip_prefix('[') {
        return match v6.split_once(']') {
            Some((ip, "")) if ip.parse::<std::net::Ipv6Addr>().is_ok() => Ok(()),
            Some((ip, rest)) if rest.starts_with(':') => {
                Err(format!("ports are not part of host matching: write `[{ip}]`"))
            }
            _ => Err(format!("`{h}` is not a valid IPv6 host: write it as `[::1]`")),
        };
    }
    if h.parse::<std::net::Ipv6Addr>().is_ok() {
        return Err(format!("IPv6 hosts are written in brackets: `[{h}]`"));
    }
    if let Some((name, port)) = h.rsplit_once(':') {
        if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("ports are not part of host matching: write `{name}`"));
        }
        return Err(format!("`{h}` is not a valid host"));
    }
    if let Some(stripped) = h.strip_suffix('.') {
        return Err(format!("remove the trailing dot: write `{stripped}`"));
    }
    let (wild, rest) = match h.strip_prefix("*.") {
        Some(rest) => (true, rest),
        None => (false, h),
    };
    if rest.contains('*') {
        return Err(format!("`{h}`: a wildcard is only allowed as the whole first label, as in `*.example.com`"));
    }
    if !wild && rest.parse::<std::net::Ipv4Addr>().is_ok() {
        return Ok(());
    }
    if is_dns_name(rest) {
        Ok(())
    } else {
        Err(format!("`{h}` is not a valid host: expected a DNS name, an IP address or `*.example.com`"))
    }
}

/// Describes where `addr` collides with an already used address, if it does.
fn clash(used: &[(SocketAddr, String)], addr: SocketAddr) -> Option<String> {
    if addr.port() == 0 {
        return None;
    }
    for (other, path) in used {
        if other.port() != addr.port() {
            continue;
        }
        if *other == addr {
            return Some(format!("address `{addr}` is already used by {path}"));
        }
        let same_family = other.is_ipv4() == addr.is_ipv4();
        if same_family && (other.ip().is_unspecified() || addr.ip().is_unspecified()) {
            return Some(format!(
                "address `{addr}` overlaps with `{other}` of {path} (same port, one binds every address)"
            ));
        }
    }
    None
}

/// A canonical text form of a match: routes with equal keys match exactly the same requests.
fn match_key(m: &RouteMatch) -> String {
    let hosts: BTreeSet<String> = m.hosts.iter().map(|h| h.to_ascii_lowercase()).collect();
    let path = match &m.path {
        None => PathMatch::Prefix("/".to_string()),
        Some(p) => p.clone(),
    };
    let methods: BTreeSet<&str> = m.methods.iter().map(String::as_str).collect();
    let preds = |v: &[ValueMatch], fold: bool| -> BTreeSet<String> {
        v.iter()
            .map(|p| {
                let name = if fold { p.name.to_ascii_lowercase() } else { p.name.clone() };
                // `present: false` is `present: true` inverted.
                let (present, invert) = match p.present {
                    Some(want) => (Some(want != p.invert), false),
                    None => (None, p.invert),
                };
                format!("{name:?} {:?} {:?} {present:?} {invert}", p.exact, p.regex)
            })
            .collect()
    };
    format!("{hosts:?}|{path:?}|{methods:?}|{:?}|{:?}", preds(&m.headers, true), preds(&m.query, false))
}

#[cfg(test)]
mod access_log_tests {
    #[test]
    fn access_log_section() {
        let base = "listeners:\n  - address: 127.0.0.1:0\n";
        let ok =
            crate::load_str(&format!("{base}access_log:\n  enabled: true\n  path: /tmp/x.log\n"), &|_| None).unwrap();
        assert!(ok.access_log.enabled && ok.access_log.path == "/tmp/x.log" && !ok.access_log.include_query);
        let errs =
            crate::load_str(&format!("{base}access_log:\n  enabled: true\n  pathh: x\n"), &|_| None).unwrap_err();
        assert!(errs.iter().any(|e| e.path.starts_with("access_log")), "{errs:?}");
        let errs = crate::load_str(&format!("{base}access_log:\n  path: \"\"\n"), &|_| None).unwrap_err();
        assert!(errs.iter().any(|e| e.path == "access_log.path"), "{errs:?}");
    }

    #[test]
    fn tracing_section() {
        let base = "listeners:\n  - address: 127.0.0.1:0\n";
        let ok = crate::load_str(
            &format!("{base}tracing:\n  enabled: true\n  endpoint: http://127.0.0.1:4318\n  sampler: parentbased_traceidratio\n  ratio: 0.25\n  headers: {{x-api-key: k}}\n"),
            &|_| None,
        )
        .unwrap();
        assert!(ok.tracing.enabled && ok.tracing.ratio == Some(0.25));
        let errs = crate::load_str(
            &format!("{base}tracing:\n  endpoint: https://c:4318\n  sampler: jaeger\n  ratio: 2\n  batch_size: 10\n  queue_size: 5\n"),
            &|_| None,
        )
        .unwrap_err();
        let paths: Vec<&str> = errs.iter().map(|e| e.path.as_str()).collect();
        for p in ["tracing.endpoint", "tracing.sampler", "tracing.ratio", "tracing.batch_size"] {
            assert!(paths.contains(&p), "{p} missing from {paths:?}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::load_str;

    const HEAD: &str = "\
listeners:
  - address: 127.0.0.1:8080
upstreams:
  - name: users
    targets: [{url: \"http://127.0.0.1:9001\"}]
  - name: orders
    targets: [{url: \"http://127.0.0.1:9002\"}]
";

    fn problems(text: &str) -> Vec<ConfigError> {
        match load_str(text, &|_| None) {
            Ok(_) => Vec::new(),
            Err(e) => e,
        }
    }

    /// Asserts that loading `text` fails with exactly one error, at `path`, containing `needle`.
    #[track_caller]
    fn expect_one(text: &str, path: &str, needle: &str) -> ConfigError {
        let errors = problems(text);
        assert_eq!(errors.len(), 1, "expected one error at {path}, got {errors:#?}");
        let e = errors.into_iter().next().unwrap();
        assert_eq!(e.path, path, "{e}");
        assert!(e.message.contains(needle), "expected {needle:?} in: {e}");
        e
    }

    #[track_caller]
    fn expect_ok(text: &str) {
        let errors = problems(text);
        assert!(errors.is_empty(), "expected no errors, got {errors:#?}");
    }

    fn routes(r: &str) -> String {
        format!("{HEAD}routes:\n{r}")
    }

    fn listeners(l: &str) -> String {
        format!("listeners:\n{l}")
    }

    fn upstream(u: &str) -> String {
        format!("listeners:\n  - address: 127.0.0.1:8080\nupstreams:\n{u}")
    }

    #[test]
    fn http2_settings_and_upstream_protocols() {
        let l = |h: &str| listeners(&format!("  - address: 127.0.0.1:8080\n    http2: {h}\n"));
        expect_ok(&l("{max_concurrent_streams: 10, initial_stream_window: 64KiB, reset_window: 1s}"));
        expect_ok(&l("{enabled: false}"));
        expect_one(&l("{max_concurrent_streams: 0}"), "listeners[0].http2.max_concurrent_streams", "at least 1");
        expect_one(&l("{initial_stream_window: 1KiB}"), "listeners[0].http2.initial_stream_window", "65535");
        expect_one(&l("{initial_connection_window: 4GiB}"), "listeners[0].http2.initial_connection_window", "RFC 9113");
        expect_one(&l("{max_resets: 0}"), "listeners[0].http2.max_resets", "at least 1");
        expect_one(&l("{reset_window: 0s}"), "listeners[0].http2.reset_window", "greater than 0");
        expect_ok(&upstream("  - {name: u, targets: [{url: \"h2c://a:50051\"}, {url: \"h2c://b:50051\"}]}\n"));
        expect_ok(&upstream("  - {name: u, protocol: http2, targets: [{url: \"https://a:443\"}]}\n"));
        expect_one(
            &upstream("  - {name: u, protocol: http2, targets: [{url: \"http://a:80\"}]}\n"),
            "upstreams[0].targets[0].url",
            "h2c://",
        );
        expect_one(
            &upstream("  - {name: u, targets: [{url: \"h2c://a:80\"}, {url: \"http://b:80\"}]}\n"),
            "upstreams[0].targets",
            "one protocol",
        );
    }

    #[test]
    fn listener_tls_shape() {
        let tls = |t: &str| listeners(&format!("  - address: 127.0.0.1:8443\n    tls:\n{t}"));
        expect_ok(&tls(
            "      certificates: [{cert: a.pem, key: a.key, names: [\"*.example.com\", api.example.com]}]\n",
        ));
        expect_one(&tls("      certificates: []\n"), "listeners[0].tls.certificates", "at least one certificate");
        expect_one(
            &tls("      certificates: [{cert: \"\", key: a.key}]\n"),
            "listeners[0].tls.certificates[0].cert",
            "path",
        );
        expect_one(
            &tls("      certificates: [{cert: a.pem, key: a.key, names: [\"a.*.com\"]}]\n"),
            "listeners[0].tls.certificates[0].names[0]",
            "wildcard",
        );
        expect_one(
            &tls("      certificates: [{cert: a.pem, key: a.key, default: true}, {cert: b.pem, key: b.key, default: true}]\n"),
            "listeners[0].tls.certificates[1].default",
            "only one default",
        );
        expect_one(
            &tls("      certificates: [{cert: a.pem, key: a.key}]\n      min_version: \"1.1\"\n"),
            "listeners[0].tls.min_version",
            "1.2",
        );
        expect_one(
            &tls("      certificates: [{cert: a.pem, key: a.key}]\n    redirect_https: {}\n"),
            "listeners[0].redirect_https",
            "already is",
        );
        expect_one(
            &listeners("  - address: 127.0.0.1:80\n    redirect_https: {status: 302}\n"),
            "listeners[0].redirect_https.status",
            "301 or 308",
        );
        expect_one(
            &upstream("  - {name: u, targets: [{url: \"https://a:443\"}], tls: {server_name: \"bad name\"}}\n"),
            "upstreams[0].tls.server_name",
            "not a DNS name",
        );
        expect_ok(&upstream(
            "  - {name: u, targets: [{url: \"https://a:443\"}], tls: {ca: ca.pem, server_name: a.internal}}\n",
        ));
    }

    #[test]
    fn head_is_valid() {
        expect_ok(HEAD);
    }

    #[test]
    fn version() {
        expect_ok(&format!("version: 1\n{HEAD}"));
        let e = expect_one(&format!("version: 2\n{HEAD}"), "version", "unsupported version 2");
        assert_eq!((e.line, e.column), (Some(1), Some(10)));
    }

    #[test]
    fn listener_addresses() {
        expect_ok(&listeners(
            "  - address: localhost:80\n  - address: \"[::1]:80\"\n  - address: 0.0.0.0:0\n  - address: 0.0.0.0:0\n",
        ));
        let e = expect_one(&listeners("  - address: example.com:80\n"), "listeners[0].address", "not an IP address");
        assert_eq!((e.line, e.column), (Some(2), Some(14)));
        expect_one(&listeners("  - address: 127.0.0.1\n"), "listeners[0].address", "no port");
        expect_one(
            &listeners("  - address: 127.0.0.1:80\n  - address: 127.0.0.1:80\n"),
            "listeners[1].address",
            "already used by listeners[0]",
        );
        expect_one(
            &listeners("  - address: 0.0.0.0:80\n  - address: 127.0.0.1:80\n"),
            "listeners[1].address",
            "overlaps",
        );
        expect_ok(&listeners("  - address: 0.0.0.0:80\n  - address: \"[::1]:80\"\n"));
    }

    #[test]
    fn listener_names() {
        expect_one(
            &listeners("  - {name: web, address: 127.0.0.1:80}\n  - {name: web, address: 127.0.0.1:81}\n"),
            "listeners[1].name",
            "duplicate listener name `web` (also listeners[0])",
        );
        expect_one(
            &listeners("  - {name: listener-1, address: 127.0.0.1:80}\n  - {address: 127.0.0.1:81}\n"),
            "listeners[1].name",
            "defaults to `listener-N`",
        );
        expect_one(
            &listeners("  - {name: \"my web\", address: 127.0.0.1:80}\n"),
            "listeners[0].name",
            "invalid listener name",
        );
        assert_eq!(listener_name(&load_str(HEAD, &|_| None).unwrap().listeners[0], 0), "listener-0");
    }

    #[test]
    fn trusted_proxies() {
        expect_ok(&listeners(
            "  - address: 127.0.0.1:80\n    trusted_proxies: [10.0.0.0/8, 192.168.1.7, \"fd00::/8\"]\n",
        ));
        expect_one(
            &listeners("  - address: 127.0.0.1:80\n    trusted_proxies: [10.0.0.0/8, 10.0.0.1/8]\n"),
            "listeners[0].trusted_proxies[1]",
            "write `10.0.0.0/8`",
        );
        expect_one(
            &listeners("  - address: 127.0.0.1:80\n    trusted_proxies: [proxy.local]\n"),
            "listeners[0].trusted_proxies[0]",
            "not a CIDR block",
        );
    }

    #[test]
    fn listener_limits_and_timeouts() {
        for field in ["max_header_bytes", "max_headers", "max_uri_bytes", "max_body_bytes"] {
            let errors = problems(&listeners(&format!("  - address: 127.0.0.1:80\n    limits: {{{field}: 0}}\n")));
            assert!(
                errors
                    .iter()
                    .any(|e| e.path == format!("listeners[0].limits.{field}") && e.message.contains("greater than 0")),
                "{field}: {errors:#?}"
            );
        }
        expect_one(
            &listeners("  - address: 127.0.0.1:80\n    limits: {max_header_bytes: 4KiB, max_uri_bytes: 8KiB}\n"),
            "listeners[0].limits.max_uri_bytes",
            "cannot exceed max_header_bytes",
        );
        for field in ["header_read", "body_read", "idle"] {
            expect_one(
                &listeners(&format!("  - address: 127.0.0.1:80\n    timeouts: {{{field}: 0s}}\n")),
                &format!("listeners[0].timeouts.{field}"),
                "greater than 0",
            );
        }
    }

    #[test]
    fn admin() {
        expect_ok(&format!("{HEAD}admin: {{address: 127.0.0.1:9901}}\n"));
        expect_ok(&format!("{HEAD}admin:\n"));
        expect_one(&format!("{HEAD}admin: {{address: nowhere}}\n"), "admin.address", "not an address");
        expect_ok(&format!("{HEAD}admin: {{token: 0123456789abcdef, history: 3}}\n"));
        expect_one(&format!("{HEAD}admin: {{token: short}}\n"), "admin.token", "at least 16");
        expect_one(&format!("{HEAD}admin: {{history: 0}}\n"), "admin.history", "between 1 and 1000");
        expect_one(
            &format!("{HEAD}admin: {{address: 127.0.0.1:8080}}\n"),
            "admin.address",
            "already used by listeners[0]",
        );
    }

    #[test]
    fn reserved_sections() {
        expect_ok(&format!("{HEAD}consumers: []\npolicies: []\ncluster:\n"));
        expect_ok(&format!("{HEAD}cluster: {{}}\n"));
        expect_one(&format!("{HEAD}policies:\n  a: 1\n"), "policies", "reserved for a later release");
    }

    fn identity(consumers: &str, policies: &str) -> String {
        format!("{HEAD}consumers:\n{consumers}routes:\n  - name: a\n    upstream: users\n    policies:\n{policies}")
    }

    const ALICE: &str = "  - name: alice\n    credentials:\n      api_keys: [{sha256: 0264b8205526ceea6fff4c7d3d3b6cf383d579553a931736819eb39ec6dd9a04}]\n";

    #[test]
    fn identity_sections() {
        let key_auth = "      - auth: {methods: [{api_key: {}}]}\n";
        expect_ok(&identity(ALICE, key_auth));
        expect_one(
            &identity("  - name: alice\n    credentials: {api_keys: [{sha256: abc}]}\n", key_auth),
            "consumers[0].credentials.api_keys[0].sha256",
            "64 hex digits",
        );
        expect_one(
            &identity(&format!("{ALICE}{}", ALICE.replace("alice", "bob")), key_auth),
            "consumers[1].credentials.api_keys[0].sha256",
            "also given at",
        );
        expect_one(
            &identity(&format!("{ALICE}  - name: alice\n"), key_auth),
            "consumers[1].name",
            "duplicate consumer name",
        );
        expect_one(
            &identity(
                "  - name: x\n    credentials: {basic: [{username: x, password_hash: hunter2}]}\n",
                "      - auth: {methods: [basic: {}]}\n",
            ),
            "consumers[0].credentials.basic[0].password_hash",
            "argon2",
        );
        expect_one(
            &identity(ALICE, "      - auth: {methods: []}\n"),
            "routes[0].policies[0].auth.methods",
            "at least one method",
        );
        expect_one(
            &identity(ALICE, "      - auth: {anonymous: nobody, methods: [{api_key: {}}]}\n"),
            "routes[0].policies[0].auth.anonymous",
            "unknown consumer",
        );
        expect_one(
            &identity(ALICE, "      - authorize: {groups: [admins]}\n"),
            "routes[0].policies[0].authorize",
            "needs an `auth` policy earlier",
        );
        expect_one(
            &identity(ALICE, "      - rate_limit: {limit: 1/s, key: consumer}\n"),
            "routes[0].policies[0].rate_limit.key",
            "needs an `auth` policy earlier",
        );
        expect_ok(&identity(ALICE, &format!("{key_auth}      - rate_limit: {{limit: 1/s, key: [consumer, {{claim: tenant}}]}}\n      - authorize: {{consumers: [alice]}}\n")));
        expect_one(
            &identity(ALICE, &format!("{key_auth}      - authorize: {{}}\n")),
            "routes[0].policies[1].authorize",
            "at least one of",
        );
        let jwt = |j: &str| identity(ALICE, &format!("      - auth: {{methods: [{{jwt: {j}}}]}}\n"));
        expect_one(&jwt("{}"), "routes[0].policies[0].auth.methods[0].jwt", "`keys` (static) or `jwks`");
        expect_one(
            &jwt("{algorithms: [none], jwks: {url: \"http://idp:80/k\"}}"),
            "routes[0].policies[0].auth.methods[0].jwt.algorithms[0]",
            "never accepted",
        );
        expect_ok(&jwt("{jwks: {url: \"https://idp.example/.well-known/jwks.json\"}}"));
        expect_one(
            &jwt("{jwks: {url: \"ftp://idp:21/k\"}}"),
            "routes[0].policies[0].auth.methods[0].jwt.jwks.url",
            "unsupported scheme",
        );
        expect_one(
            &jwt("{keys: [{pem: x, alg: HS256}]}"),
            "routes[0].policies[0].auth.methods[0].jwt.keys[0].alg",
            "key-confusion",
        );
        expect_one(
            &jwt("{keys: [{secret: short, alg: HS256}]}"),
            "routes[0].policies[0].auth.methods[0].jwt.keys[0].secret",
            "32 bytes",
        );
        expect_one(&jwt("{keys: [{pem: x}]}"), "routes[0].policies[0].auth.methods[0].jwt.keys[0].alg", "required");
        expect_one(
            &jwt("{keys: [{pem: x, secret: zz, alg: RS256}]}"),
            "routes[0].policies[0].auth.methods[0].jwt.keys[0]",
            "exactly one of",
        );
        expect_one(
            &identity(ALICE, "      - external_auth: {url: \"http://a:1/x\", copy_headers: [connection]}\n"),
            "routes[0].policies[0].external_auth.copy_headers[0]",
            "invalid header name",
        );
    }

    fn with_redis(redis: &str) -> String {
        format!("{HEAD}cluster:\n  redis:\n{redis}")
    }

    #[test]
    fn cluster_redis_section() {
        expect_ok(&with_redis("    url: redis://127.0.0.1:6379/0\n"));
        expect_ok(&with_redis(
            "    url: \"redis://user:p@ss@redis.internal:6380/3\"\n    timeout: 20ms\n    connect_timeout: 2s\n    key_prefix: \"prod:gh:\"\n",
        ));
        expect_ok(&with_redis("    url: \"redis://[::1]:6379\"\n"));
        expect_ok(&with_redis("    url: rediss://cache:6380/0\n"));
        expect_ok(&with_redis("    url: redis://cache:6380/0\n    pool_size: 8\n"));
        expect_one(
            &with_redis("    url: redis://cache:6380/0\n    pool_size: 0\n"),
            "cluster.redis.pool_size",
            "between 1 and 64",
        );
        let e = expect_one(
            &with_redis("    url: redis://cache:6380/0\n    tls: {ca_file: /dev/null}\n"),
            "cluster.redis.tls",
            "need a `rediss://` URL",
        );
        assert_eq!(e.line, Some(11), "{e}");
        expect_one(
            &with_redis("    url: rediss://cache:6380/0\n    tls: {ca_file: /nonexistent/ca.pem}\n"),
            "cluster.redis.tls.ca_file",
            "cannot read",
        );
        expect_one(&with_redis("    url: http://cache:6379\n"), "cluster.redis.url", "unsupported Redis URL");
        expect_one(&with_redis("    url: \"redis://:6379\"\n"), "cluster.redis.url", "has no host");
        expect_one(&with_redis("    url: \"redis://cache:0\"\n"), "cluster.redis.url", "invalid Redis port");
        expect_one(&with_redis("    url: \"redis://cache/x\"\n"), "cluster.redis.url", "invalid Redis database");
        expect_one(&with_redis("    url: \"redis://ca che\"\n"), "cluster.redis.url", "invalid Redis host");
        expect_one(&with_redis("    url: redis://a\n    timeout: 0ms\n"), "cluster.redis.timeout", "greater than 0");
        expect_one(
            &with_redis("    url: redis://a\n    connect_timeout: 1h\n"),
            "cluster.redis.connect_timeout",
            "at most 10s",
        );
        expect_one(&with_redis("    url: redis://a\n    key_prefix: \"a b\"\n"), "cluster.redis.key_prefix", "spaces");
        expect_one(&with_redis("    url: redis://a\n    pool: 4\n"), "cluster.redis.pool", "unknown field");
        expect_one(&with_redis("    timeout: 5ms\n"), "cluster.redis", "missing field `url`");
        expect_one(&format!("{HEAD}cluster:\n  etcd: {{}}\n"), "cluster.etcd", "unknown field");
    }

    #[test]
    fn cluster_mode_rate_limits() {
        let redis = "cluster:\n  redis: {url: \"redis://127.0.0.1:6379\"}\n";
        let with = |p: &str| format!("{}{redis}", policy(p));
        expect_ok(&with("rate_limit: {limit: 100/s, mode: cluster}"));
        for on in ["fail_open", "fail_closed", "local"] {
            expect_ok(&with(&format!("rate_limit: {{limit: 100/s, mode: cluster, on_redis_error: {on}}}")));
        }
        expect_ok(&policy("rate_limit: {limit: 100/s, mode: local}"));
        let e = expect_one(
            &policy("rate_limit: {limit: 100/s, mode: cluster}"),
            "routes[1].policies[0].rate_limit.mode",
            "needs a `cluster.redis` section",
        );
        assert!(e.line.is_some(), "{e}");
        expect_one(
            &with("rate_limit: {limit: 100/s, mode: global}"),
            "routes[1].policies[0].rate_limit.mode",
            "unknown variant `global`",
        );
        expect_one(
            &with("rate_limit: {limit: 1/s, mode: cluster, on_redis_error: ignore}"),
            "routes[1].policies[0].rate_limit.on_redis_error",
            "unknown variant",
        );
        expect_one(
            &with("rate_limit: {limit: 1/s, on_redis_error: fail_open}"),
            "routes[1].policies[0].rate_limit.on_redis_error",
            "only applies to `mode: cluster`",
        );
        expect_one(
            &with("rate_limit: {limit: 100/s, burst: 50, batch: 10}"),
            "routes[1].policies[0].rate_limit.batch",
            "only applies to `mode: cluster`",
        );
        expect_ok(&with("rate_limit: {limit: 100/s, burst: 50, mode: cluster, batch: 10}"));
        expect_one(
            &with("rate_limit: {limit: 100/s, burst: 50, mode: cluster, batch: 1}"),
            "routes[1].policies[0].rate_limit.batch",
            "between 2 and",
        );
        expect_one(
            &with("rate_limit: {limit: 2000000/s, mode: cluster}"),
            "routes[1].policies[0].rate_limit.limit",
            "one request per microsecond",
        );
        expect_ok(&policy("rate_limit: {limit: 2000000/s}"));
    }

    #[test]
    fn upstream_names() {
        expect_one(
            &upstream("  - {name: \"\", targets: [{url: \"http://a:1\"}]}\n"),
            "upstreams[0].name",
            "must not be empty",
        );
        expect_one(
            &upstream("  - {name: \"u/1\", targets: [{url: \"http://a:1\"}]}\n"),
            "upstreams[0].name",
            "invalid upstream name",
        );
        expect_one(
            &upstream(
                "  - {name: u, targets: [{url: \"http://a:1\"}]}\n  - {name: u, targets: [{url: \"http://a:1\"}]}\n",
            ),
            "upstreams[1].name",
            "duplicate upstream name `u` (also upstreams[0])",
        );
    }

    #[test]
    fn upstream_targets() {
        expect_one(&upstream("  - {name: u, targets: []}\n"), "upstreams[0].targets", "at least one target");
        expect_one(
            &upstream("  - {name: u, targets: [{url: \"http://a\"}]}\n"),
            "upstreams[0].targets[0].url",
            "no port",
        );
        expect_one(
            &upstream("  - {name: u, targets: [{url: \"http://a:1/v1\"}]}\n"),
            "upstreams[0].targets[0].url",
            "has a path",
        );
        expect_one(
            &upstream("  - {name: u, targets: [{url: \"http://a:1\"}, {url: \"http://A:1/\"}]}\n"),
            "upstreams[0].targets[1].url",
            "duplicate target `a:1`",
        );
        expect_one(
            &upstream("  - {name: u, targets: [{url: \"http://a:1\", weight: 0}]}\n"),
            "upstreams[0].targets[0].weight",
            "between 1 and 10000",
        );
        expect_one(
            &upstream("  - {name: u, targets: [{url: \"http://a:1\", weight: 10001}]}\n"),
            "upstreams[0].targets[0].weight",
            "between 1 and 10000",
        );
        expect_ok(&upstream(
            "  - {name: u, targets: [{url: \"http://a:1\", weight: 10000}, {url: \"http://[::1]:2\"}]}\n",
        ));
    }

    #[test]
    fn upstream_balancer_and_pool() {
        let u = |extra: &str| upstream(&format!("  - name: u\n    targets: [{{url: \"http://a:1\"}}]\n{extra}"));
        for b in [
            "round_robin",
            "least_request",
            "peak_ewma",
            "{consistent_hash: client_ip}",
            "{consistent_hash: path}",
            "{consistent_hash: {header: x-user}}",
            "{consistent_hash: {cookie: session}}",
        ] {
            expect_ok(&u(&format!("    balancer: {b}\n")));
        }
        expect_one(
            &u("    balancer: {consistent_hash: {header: \"x user\"}}\n"),
            "upstreams[0].balancer.consistent_hash.header",
            "invalid header name",
        );
        expect_one(
            &u("    balancer: {consistent_hash: {cookie: \"a;b\"}}\n"),
            "upstreams[0].balancer.consistent_hash.cookie",
            "invalid cookie name",
        );
        expect_one(
            &u("    pool: {max_idle_per_target: 100001}\n"),
            "upstreams[0].pool.max_idle_per_target",
            "at most 100000",
        );
        expect_ok(&u("    pool: {max_idle_per_target: 0}\n"));
        expect_one(&u("    pool: {idle_timeout: 0ms}\n"), "upstreams[0].pool.idle_timeout", "greater than 0");
        expect_one(&u("    timeouts: {connect: 0s}\n"), "upstreams[0].timeouts.connect", "greater than 0");
        expect_one(
            &u("    timeouts: {response_header: 0s}\n"),
            "upstreams[0].timeouts.response_header",
            "greater than 0",
        );
    }

    #[test]
    fn health_checks() {
        let u = |hc: &str| {
            upstream(&format!("  - name: u\n    targets: [{{url: \"http://a:1\"}}]\n    health_check: {hc}\n"))
        };
        expect_ok(&u("{}"));
        expect_ok(&u("{path: /healthz, interval: 2s, timeout: 2s, expected_status: {min: 200, max: 200}}"));
        expect_one(&u("{path: healthz}"), "upstreams[0].health_check.path", "must start with `/`");
        expect_one(&u("{interval: 0s}"), "upstreams[0].health_check.interval", "greater than 0");
        expect_one(&u("{timeout: 0s}"), "upstreams[0].health_check.timeout", "greater than 0");
        expect_one(&u("{interval: 1s, timeout: 2s}"), "upstreams[0].health_check.timeout", "must not exceed interval");
        expect_one(&u("{healthy_threshold: 0}"), "upstreams[0].health_check.healthy_threshold", "at least 1");
        expect_one(&u("{unhealthy_threshold: 0}"), "upstreams[0].health_check.unhealthy_threshold", "at least 1");
        expect_one(
            &u("{expected_status: {min: 99, max: 200}}"),
            "upstreams[0].health_check.expected_status.min",
            "between 100 and 599",
        );
        expect_one(
            &u("{expected_status: {min: 200, max: 600}}"),
            "upstreams[0].health_check.expected_status.max",
            "between 100 and 599",
        );
        expect_one(
            &u("{expected_status: {min: 300, max: 200}}"),
            "upstreams[0].health_check.expected_status",
            "must not be greater than max",
        );
    }

    #[test]
    fn resilience_settings() {
        let u = |extra: &str| upstream(&format!("  - name: u\n    targets: [{{url: \"http://a:1\"}}]\n{extra}"));
        expect_ok(&u("    outlier_detection: {consecutive_failures: 3, base_ejection: 1s}\n    circuit_breaker: {slow_call_duration: 1s}\n"));
        expect_one(
            &u("    outlier_detection: {failure_rate: 101}\n"),
            "upstreams[0].outlier_detection.failure_rate",
            "between 0 and 100",
        );
        expect_one(
            &u("    outlier_detection: {base_ejection: 10s, max_ejection: 5s}\n"),
            "upstreams[0].outlier_detection.max_ejection",
            "must not be shorter",
        );
        expect_one(&u("    circuit_breaker: {min_calls: 0}\n"), "upstreams[0].circuit_breaker.min_calls", "at least 1");
        expect_one(
            &u("    circuit_breaker: {open_duration: 0s}\n"),
            "upstreams[0].circuit_breaker.open_duration",
            "greater than 0",
        );
        expect_one(&u("    limits: {max_requests: 0}\n"), "upstreams[0].limits.max_requests", "between 1");
        expect_one(&u("    retry_budget: {percent: 5000}\n"), "upstreams[0].retry_budget.percent", "at most");
        let r = |extra: &str| routes(&format!("  - name: r\n    upstream: users\n{extra}"));
        expect_ok(&r("    retry: {attempts: 3, on: [connect_failure, reset, timeout, 503]}\n    deadline: {timeout: 2s, format: grpc}\n    hedge: {delay: 50ms}\n"));
        expect_one(&r("    retry: {attempts: 0}\n"), "routes[0].retry.attempts", "between 1");
        expect_one(&r("    retry: {on: [200]}\n"), "routes[0].retry.on[0]", "4xx and 5xx");
        expect_one(&r("    retry: {on: [503, 503]}\n"), "routes[0].retry.on[1]", "listed twice");
        expect_one(
            &r("    retry: {backoff: {base: 100ms, max: 10ms}}\n"),
            "routes[0].retry.backoff.max",
            "must not be shorter",
        );
        expect_one(
            &r("    deadline: {timeout: 1s, header: \"bad header\"}\n"),
            "routes[0].deadline.header",
            "invalid header name",
        );
        expect_one(&r("    hedge: {delay: 0s}\n"), "routes[0].hedge.delay", "greater than 0");
        expect_one(
            &r("    circuit_breaker: {half_open_probes: 0}\n"),
            "routes[0].circuit_breaker.half_open_probes",
            "between 1",
        );
        let errs = problems(&r("    retry: {on: [sometimes]}\n"));
        assert!(errs.iter().any(|e| e.message.contains("unknown retry condition")), "{errs:?}");
    }

    #[test]
    fn route_names_and_upstreams() {
        expect_ok(&routes(
            "  - {name: a, upstream: users}\n  - {name: b.v2, upstream: orders, match: {hosts: [x.com]}}\n",
        ));
        expect_one(
            &routes("  - {name: a, upstream: users}\n  - {name: a, upstream: users, match: {methods: [GET]}}\n"),
            "routes[1].name",
            "duplicate route name `a` (also routes[0])",
        );
        expect_one(&routes("  - {name: \"a b\", upstream: users}\n"), "routes[0].name", "invalid route name");
        let e = expect_one(&routes("  - name: a\n    upstream: userz\n"), "routes[0].upstream", "");
        assert_eq!(e.message, "unknown upstream \"userz\" (known: users, orders)");
        assert_eq!((e.line, e.column), (Some(10), Some(15)));
    }

    #[test]
    fn hosts() {
        let r = |h: &str| routes(&format!("  - {{name: a, upstream: users, match: {{hosts: [{h}]}}}}\n"));
        for ok in [
            "api.example.com",
            "API.Example.COM",
            "\"*.example.com\"",
            "127.0.0.1",
            "\"[::1]\"",
            "localhost",
            "a_b.internal",
        ] {
            expect_ok(&r(ok));
        }
        expect_one(
            &r("\"api.example.com:8080\""),
            "routes[0].match.hosts[0]",
            "ports are not part of host matching: write `api.example.com`",
        );
        expect_one(&r("\"[::1]:80\""), "routes[0].match.hosts[0]", "ports are not part of host matching");
        expect_one(&r("\"::1\""), "routes[0].match.hosts[0]", "brackets");
        expect_one(&r("\"*\""), "routes[0].match.hosts[0]", "leave `hosts` out");
        expect_one(&r("\"a.*.com\""), "routes[0].match.hosts[0]", "whole first label");
        expect_one(&r("\"*.*.com\""), "routes[0].match.hosts[0]", "whole first label");
        expect_one(&r("\"*example.com\""), "routes[0].match.hosts[0]", "whole first label");
        expect_one(&r("example.com."), "routes[0].match.hosts[0]", "trailing dot");
        expect_one(&r("\"exa mple.com\""), "routes[0].match.hosts[0]", "not a valid host");
        expect_one(&r("a.com, A.com"), "routes[0].match.hosts[1]", "duplicate host");
    }

    #[test]
    fn path_matchers() {
        let r = |p: &str| routes(&format!("  - {{name: a, upstream: users, match: {{path: {p}}}}}\n"));
        for ok in [
            "{exact: /}",
            "{prefix: /api}",
            "{prefix: /api/}",
            "{exact: \"/a%2Fb\"}",
            "{template: \"/u/{id}\"}",
            "{template: \"/f/{*rest}\"}",
            "{regex: \"^/v[0-9]+/.*\"}",
        ] {
            expect_ok(&r(ok));
        }
        expect_one(&r("{exact: /a//b}"), "routes[0].match.path.exact", "write `/a/b`");
        expect_one(&r("{prefix: /a/./b}"), "routes[0].match.path.prefix", "write `/a/b`");
        expect_one(&r("{prefix: /a/../b}"), "routes[0].match.path.prefix", "write `/b`");
        expect_one(&r("{prefix: \"/%7Euser\"}"), "routes[0].match.path.prefix", "write `/~user`");
        expect_one(&r("{prefix: \"/a?x=1\"}"), "routes[0].match.path.prefix", "match.query");
        expect_one(&r("{exact: \"/a#b\"}"), "routes[0].match.path.exact", "fragments");
        expect_one(&r("{exact: api}"), "routes[0].match.path.exact", "must start with `/`");
        expect_one(&r("{template: \"/u/{id}/{id}\"}"), "routes[0].match.path.template", "twice");
        expect_one(&r("{template: \"/f/{*rest}/x\"}"), "routes[0].match.path.template", "whole last segment");
        expect_one(&r("{template: \"/u/{user-id}\"}"), "routes[0].match.path.template", "invalid parameter name");
        expect_one(&r("{regex: \"/v(1\"}"), "routes[0].match.path.regex", "invalid regex: unclosed group");
    }

    #[test]
    fn methods() {
        let r = |m: &str| routes(&format!("  - {{name: a, upstream: users, match: {{methods: [{m}]}}}}\n"));
        expect_ok(&r("GET, POST, PURGE"));
        expect_one(&r("GET, get"), "routes[0].match.methods[1]", "write `GET`");
        expect_one(&r("GET, GET"), "routes[0].match.methods[1]", "duplicate method `GET`");
        expect_one(&r("\"GE T\""), "routes[0].match.methods[0]", "invalid method");
    }

    #[test]
    fn header_and_query_predicates() {
        let h = |p: &str| routes(&format!("  - {{name: a, upstream: users, match: {{headers: [{p}]}}}}\n"));
        let q = |p: &str| routes(&format!("  - {{name: a, upstream: users, match: {{query: [{p}]}}}}\n"));
        expect_ok(&h("{name: X-Version, exact: \"2\"}, {name: x-debug, present: true, invert: true}, {name: accept, regex: json}"));
        expect_ok(&q("{name: v, exact: \"2\"}, {name: \"page[size]\", present: true}"));
        expect_one(&h("{name: x}"), "routes[0].match.headers[0]", "set one of `exact`, `regex` or `present`");
        expect_one(&h("{name: x, exact: a, regex: b}"), "routes[0].match.headers[0]", "set only one of");
        expect_one(&h("{name: \"x y\", exact: a}"), "routes[0].match.headers[0].name", "invalid header name");
        expect_one(&h("{name: x, regex: \"(\"}"), "routes[0].match.headers[0].regex", "invalid regex");
        expect_ok(&h("{name: x-internal, present: false}"));
        expect_one(&q("{name: \"a=b\", exact: c}"), "routes[0].match.query[0].name", "invalid query parameter name");
        expect_one(&q("{name: \"\", exact: c}"), "routes[0].match.query[0].name", "invalid query parameter name");
    }

    #[test]
    fn rewrites() {
        let r = |m: &str, rw: &str| {
            routes(&format!("  - {{name: a, upstream: users, match: {{path: {m}}}, rewrite: {rw}}}\n"))
        };
        expect_ok(&r("{prefix: /api}", "{strip_prefix: true}"));
        expect_ok(&r("{template: \"/u/{id}/{*rest}\"}", "{path: \"/v2/users/{id}/{*rest}\"}"));
        expect_one(
            &r("{exact: /api}", "{strip_prefix: true}"),
            "routes[0].rewrite.strip_prefix",
            "needs a `prefix` path matcher",
        );
        expect_one(
            &routes("  - {name: a, upstream: users, rewrite: {strip_prefix: true}}\n"),
            "routes[0].rewrite.strip_prefix",
            "needs a `prefix`",
        );
        expect_one(&r("{prefix: /api}", "{path: /x}"), "routes[0].rewrite.path", "needs a `template` path matcher");
        expect_one(
            &r("{template: \"/u/{id}\"}", "{path: \"/v2/{user}\"}"),
            "routes[0].rewrite.path",
            "does not capture (captured: `id`)",
        );
        expect_one(
            &r("{template: \"/u/{id}\"}", "{path: \"v2/{id}\"}"),
            "routes[0].rewrite.path",
            "must start with `/`",
        );
        let errors = problems(&r("{prefix: /api}", "{strip_prefix: true, path: /x}"));
        assert!(errors.iter().any(|e| e.path == "routes[0].rewrite" && e.message.contains("not both")), "{errors:#?}");
    }

    #[test]
    fn header_operations() {
        let r = |ops: &str| routes(&format!("  - {{name: a, upstream: users, request_headers: {ops}}}\n"));
        let resp = |ops: &str| routes(&format!("  - {{name: a, upstream: users, response_headers: {ops}}}\n"));
        expect_ok(&r("{set: {host: api.internal, X-Gateway: gatehouse}, add: {x-tag: a}, remove: [cookie]}"));
        expect_ok(&resp("{set: {cache-control: no-store}, remove: [server]}"));
        for h in HOP_BY_HOP_HEADERS {
            expect_one(
                &r(&format!("{{set: {{{h}: x}}}}")),
                &format!("routes[0].request_headers.set.{h}"),
                "hop-by-hop or framing header",
            );
            expect_one(
                &resp(&format!("{{remove: [{h}]}}")),
                "routes[0].response_headers.remove[0]",
                "hop-by-hop or framing header",
            );
        }
        expect_one(
            &r("{add: {Transfer-Encoding: chunked}}"),
            "routes[0].request_headers.add.Transfer-Encoding",
            "`transfer-encoding`",
        );
        expect_one(&r("{add: {host: x}}"), "routes[0].request_headers.add.host", "use `set`");
        expect_one(&r("{remove: [Host]}"), "routes[0].request_headers.remove[0]", "`host` cannot be removed");
        expect_one(&r("{set: {\"x y\": a}}"), "routes[0].request_headers.set.x y", "invalid header name");
        expect_one(&r("{set: {x-a: \"a\\r\\nInjected: 1\"}}"), "routes[0].request_headers.set.x-a", "(CR)");
        expect_one(&r("{set: {x-a: \"a\\nb\"}}"), "routes[0].request_headers.set.x-a", "(LF)");
        expect_one(&r("{set: {x-a: \"a\\0b\"}}"), "routes[0].request_headers.set.x-a", "(NUL)");
        expect_one(&r("{set: {X-A: a}, add: {x-a: b}}"), "routes[0].request_headers.add.x-a", "also changed at");
        expect_one(&r("{set: {X-A: a}, remove: [x-a]}"), "routes[0].request_headers.remove[0]", "also changed at");
    }

    #[test]
    fn route_limits_and_policies() {
        expect_one(
            &routes("  - {name: a, upstream: users, max_body_bytes: 0}\n"),
            "routes[0].max_body_bytes",
            "greater than 0",
        );
        expect_one(&routes("  - {name: a, upstream: users, timeout: 0s}\n"), "routes[0].timeout", "greater than 0");
        expect_ok(&routes("  - {name: a, upstream: users, timeout: 2s, max_body_bytes: 1MiB, policies: []}\n"));
        expect_one(
            &routes("  - {name: a, upstream: users, policies: [{rate_limit: {}}]}\n"),
            "routes[0].policies[0].rate_limit",
            "missing field `limit`",
        );
    }

    fn policy(p: &str) -> String {
        routes(&format!(
            "  - {{name: a, upstream: users, match: {{methods: [GET]}}}}\n  - name: b\n    upstream: orders\n    policies:\n      - {p}\n"
        ))
    }

    #[test]
    fn rate_limit_policies() {
        for ok in [
            "rate_limit: {limit: 100/s}",
            "rate_limit: {limit: 1000/min, burst: 20, key: client_ip, cost: 1, headers: draft}",
            "rate_limit: {limit: 10000/day, key: route, headers: legacy, name: daily}",
            "rate_limit: {limit: 500/10s, key: {header: X-Api-Key}, headers: none}",
            "rate_limit: {limit: 5/ 2 minutes, key: [client_ip, {header: x-tenant}], burst: 4, cost: 5}",
            "rate_limit: {limit: 1/h}",
            "concurrency_limit: {max: 10}",
            "concurrency_limit: {max: 10, key: route, queue: 5, queue_timeout: 1s}",
        ] {
            expect_ok(&policy(ok));
        }
        // Several limits on one route (per second and per day).
        expect_ok(&routes(
            "  - name: a\n    upstream: users\n    policies:\n      - rate_limit: {limit: 10/s}\n      - rate_limit: {limit: 1000/day}\n",
        ));
        let e =
            expect_one(&policy("rate_limit: {limit: 0/s}"), "routes[1].policies[0].rate_limit.limit", "greater than 0");
        assert_eq!((e.line, e.column), (Some(13), Some(29)));
        expect_one(&policy("rate_limit: {limit: 5/0s}"), "routes[1].policies[0].rate_limit.limit", "period");
        expect_one(&policy("rate_limit: {limit: 5/366d}"), "routes[1].policies[0].rate_limit.limit", "365 days");
        expect_one(&policy("rate_limit: {limit: 100}"), "routes[1].policies[0].rate_limit.limit", "expected a string");
        expect_one(
            &policy("rate_limit: {limit: 100/week}"),
            "routes[1].policies[0].rate_limit.limit",
            "unknown period unit `week`",
        );
        expect_one(&policy("rate_limit: {limit: 100/10}"), "routes[1].policies[0].rate_limit.limit", "needs a unit");
        expect_one(&policy("rate_limit: {limit: x/s}"), "routes[1].policies[0].rate_limit.limit", "invalid rate");
        expect_one(
            &policy("rate_limit: {limit: 2000000000/s}"),
            "routes[1].policies[0].rate_limit.limit",
            "nanosecond",
        );
        expect_one(
            &policy("rate_limit: {limit: 1/day, burst: 400}"),
            "routes[1].policies[0].rate_limit.burst",
            "365 days",
        );
        expect_one(
            &policy("rate_limit: {limit: 1/s, burst: -1}"),
            "routes[1].policies[0].rate_limit.burst",
            "out of range",
        );
        expect_one(&policy("rate_limit: {limit: 1/s, cost: 0}"), "routes[1].policies[0].rate_limit.cost", "at least 1");
        expect_one(
            &policy("rate_limit: {limit: 10/s, burst: 2, cost: 4}"),
            "routes[1].policies[0].rate_limit.cost",
            "raise `burst` to at least 3",
        );
        expect_one(
            &policy("rate_limit: {limit: 1/s, name: \"a b\"}"),
            "routes[1].policies[0].rate_limit.name",
            "invalid rate limit name",
        );
        let e = expect_one(
            &policy("rate_limit: {limit: 1/s, bursts: 2}"),
            "routes[1].policies[0].rate_limit.bursts",
            "unknown field `bursts`",
        );
        assert!(e.message.contains("did you mean `burst`"), "{e}");
        expect_one(
            &policy("rate_limit: {limit: 1/s, headers: ietf}"),
            "routes[1].policies[0].rate_limit.headers",
            "unknown variant `ietf`",
        );
        expect_one(
            &policy("rate_limit: {limit: 1/s, key: client}"),
            "routes[1].policies[0].rate_limit.key",
            "unknown variant `client`",
        );
        expect_one(
            &policy("rate_limit: {limit: 1/s, key: {header: \"x y\"}}"),
            "routes[1].policies[0].rate_limit.key.header",
            "invalid header name",
        );
        expect_one(
            &policy("rate_limit: {limit: 1/s, key: [client_ip, {header: \"a:b\"}]}"),
            "routes[1].policies[0].rate_limit.key[1].header",
            "invalid header name",
        );
        expect_one(
            &policy("rate_limit: {limit: 1/s, key: [{header: X-A}, {header: x-a}]}"),
            "routes[1].policies[0].rate_limit.key[1]",
            "listed twice",
        );
        expect_one(
            &policy("rate_limit: {limit: 1/s, key: []}"),
            "routes[1].policies[0].rate_limit.key",
            "at least one part",
        );
        expect_one(&policy("rate_limitt: {limit: 1/s}"), "routes[1].policies[0]", "unknown variant `rate_limitt`");
    }

    #[test]
    fn concurrency_limit_policies() {
        expect_one(
            &policy("concurrency_limit: {max: 0}"),
            "routes[1].policies[0].concurrency_limit.max",
            "between 1 and",
        );
        expect_one(&policy("concurrency_limit: {}"), "routes[1].policies[0].concurrency_limit", "missing field `max`");
        expect_one(
            &policy("concurrency_limit: {max: 1, queue: 100001}"),
            "routes[1].policies[0].concurrency_limit.queue",
            "at most 100000",
        );
        expect_one(
            &policy("concurrency_limit: {max: 1, queue: 2, queue_timeout: 0s}"),
            "routes[1].policies[0].concurrency_limit.queue_timeout",
            "greater than 0",
        );
        expect_one(
            &policy("concurrency_limit: {max: 1, limit: 2}"),
            "routes[1].policies[0].concurrency_limit.limit",
            "unknown field `limit`",
        );
    }

    #[test]
    fn second_policy_error_has_its_own_path() {
        let text = routes(
            "  - name: a\n    upstream: users\n    policies:\n      - rate_limit: {limit: 10/s}\n      - rate_limit: {limit: 10/s, cost: 0}\n",
        );
        expect_one(&text, "routes[0].policies[1].rate_limit.cost", "at least 1");
    }

    #[test]
    fn shadowed_routes() {
        let e = expect_one(
            &routes("  - {name: x, upstream: users, match: {path: {prefix: /a}}}\n  - {name: users, upstream: users, match: {path: {prefix: /b}}}\n  - {name: z, upstream: orders, match: {path: {prefix: /b}}}\n"),
            "routes[2].match",
            "shadowed by routes[1] (\"users\")",
        );
        assert_eq!(e.line, Some(11));
        // No match at all is the same as a prefix of `/`.
        expect_one(
            &routes("  - {name: a, upstream: users}\n  - {name: b, upstream: users, match: {path: {prefix: /}}}\n"),
            "routes[1].match",
            "shadowed by routes[0]",
        );
        // Sets compare as sets; header names are case-insensitive; hosts too.
        expect_one(
            &routes("  - {name: a, upstream: users, match: {hosts: [a.com, b.com], methods: [GET, POST], headers: [{name: X-A, exact: \"1\"}, {name: x-b, present: true}]}}\n  - {name: b, upstream: users, match: {hosts: [B.com, a.com], methods: [POST, GET], headers: [{name: x-b, present: true}, {name: x-a, exact: \"1\"}]}}\n"),
            "routes[1].match",
            "shadowed by routes[0]",
        );
        expect_one(
            &routes("  - {name: a, upstream: users, match: {headers: [{name: x, present: false}]}}\n  - {name: b, upstream: users, match: {headers: [{name: X, present: true, invert: true}]}}\n"),
            "routes[1].match",
            "shadowed by routes[0]",
        );
        // Any difference in a predicate keeps them apart.
        expect_ok(&routes("  - {name: a, upstream: users, match: {methods: [GET]}}\n  - {name: b, upstream: users, match: {methods: [POST]}}\n"));
        expect_ok(&routes("  - {name: a, upstream: users, match: {query: [{name: v, exact: \"1\"}]}}\n  - {name: b, upstream: users}\n"));
        expect_ok(&routes("  - {name: a, upstream: users, match: {headers: [{name: v, exact: \"1\"}]}}\n  - {name: b, upstream: users, match: {headers: [{name: v, exact: \"1\", invert: true}]}}\n"));
    }

    #[test]
    fn template_conflicts() {
        let t = |host: &str, tpl: &str, name: &str| {
            let hosts = if host.is_empty() { String::new() } else { format!("hosts: [{host}], ") };
            format!("  - {{name: {name}, upstream: users, match: {{{hosts}path: {{template: \"{tpl}\"}}}}}}\n")
        };
        let e = expect_one(
            &routes(&(t("", "/u/{id}", "by-id") + &t("", "/u/{name}", "by-name"))),
            "routes[1].match.path.template",
            "conflicts with `/u/{id}` of routes[0] (\"by-id\") for routes without hosts",
        );
        assert_eq!(e.line, Some(10));
        // Reported on the later route even when it sorts first.
        expect_one(
            &routes(&(t("", "/u/{name}", "by-name") + &t("", "/u/{id}", "by-id"))),
            "routes[1].match.path.template",
            "conflicts with `/u/{name}` of routes[0]",
        );
        expect_one(
            &routes(&(t("a.com", "/f/{*rest}", "files") + &t("a.com", "/f/{id}", "file"))),
            "routes[1].match.path.template",
            "for host `a.com`",
        );
        // Different host buckets never conflict; identical templates are told apart by predicates.
        expect_ok(&routes(&(t("a.com", "/u/{id}", "a") + &t("b.com", "/u/{name}", "b") + &t("", "/u/{other}", "c"))));
        expect_ok(&routes(
            &(t("", "/u/{id}", "a")
                + "  - {name: b, upstream: users, match: {path: {template: \"/u/{id}\"}, methods: [POST]}}\n"),
        ));
        expect_ok(&routes(&(t("", "/u/{id}", "a") + &t("", "/u/new", "b"))));
    }

    #[test]
    fn validate_without_locations() {
        let mut cfg = load_str(HEAD, &|_| None).unwrap();
        cfg.routes.push(crate::types::Route {
            name: "r".into(),
            matches: RouteMatch::default(),
            upstream: "nope".into(),
            rewrite: None,
            preserve_host: false,
            request_headers: HeaderOps::default(),
            response_headers: HeaderOps::default(),
            max_body_bytes: None,
            timeout: None,
            policies: Vec::new(),
            retry: Default::default(),
            deadline: None,
            hedge: None,
            circuit_breaker: None,
            upgrades: crate::types::defaults::upgrades(),
            tunnel_idle_timeout: crate::types::defaults::tunnel_idle_timeout(),
            grpc_web: true,
            hsts: None,
        });
        let errors = validate(&cfg);
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].to_string(), "routes[0].upstream: unknown upstream \"nope\" (known: users, orders)");
    }
}
