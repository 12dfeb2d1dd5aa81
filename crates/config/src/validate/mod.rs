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
//! - Errors come in the order the checks run (the loader then sorts them by location; `validate`
//!   returns them as they come), so that order is part of the behaviour: `validate_items` is
//!   the one place that fixes it.
//!
//! Files, one per config section: `listener` (`listeners`, `admin`), `server` (`version`, the
//! reserved `policies`, `server`), `identity` (`consumers`, and the `auth`, `authorize` and
//! `external_auth` policies), `cluster`, `observability` (`access_log`, `tracing`), `upstream`,
//! `route`, `policy` (a route's policy list, rate and concurrency limits) and `edge` (`cors`,
//! `ip_filter`, upgrades). Each adds methods to the one `Validator` defined here, which holds
//! the error list and the shared helpers.

use std::collections::HashSet;

use crate::error::ConfigError;
use crate::types::Config;
// The map lives with the YAML layer that builds it; `validate::SourceMap` stays a public path.
pub use crate::yaml::SourceMap;

mod cluster;
mod edge;
mod identity;
mod listener;
mod observability;
mod policy;
mod route;
mod server;
mod upstream;

pub use cluster::{check_redis_url, MAX_REDIS_KEY_PREFIX, MAX_REDIS_TIMEOUT_SECS};
pub use identity::{parse_service_url, JWT_ALGORITHMS};
pub use listener::listener_name;
pub use policy::{MAX_QUEUE, MAX_RATE_PERIOD_SECS, MAX_RATE_TOLERANCE_SECS};
pub use route::{check_host, compile_regex, MAX_RETRY_ATTEMPTS};
pub use upstream::{MAX_BUDGET_PERCENT, MAX_IDLE_PER_TARGET, MAX_WEIGHT};

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

// Also the cap on upstream limits, retry budgets and half-open probes, hence shared here.
/// Largest `concurrency_limit.max`.
pub const MAX_CONCURRENCY: u32 = 1_000_000;

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
    v.server(cfg);
    v.upstreams(cfg, partial);
    v.routes(cfg, partial);
    v.errors
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
}
