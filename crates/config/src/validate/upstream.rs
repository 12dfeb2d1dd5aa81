//! Validation of `upstreams[]`: names, targets (URL, protocol, duplicates, weights), balancer,
//! pool, timeouts, health checks, outlier detection, circuit breaker, limits and retry budget.
//!
//! Invariants: the same rules as the rest of `validate/` (every problem collected with its
//! path, nothing stops early). Target URLs are parsed by the same `crate::net` parser the data
//! plane uses. The circuit breaker check is shared with a route's override of it.

use std::collections::HashMap;

use super::{Items, Validator, MAX_CONCURRENCY};
use crate::net::{is_dns_name, is_token, parse_target_url};
use crate::types::{Balancer, CircuitBreaker, Config, HashOn, HealthCheck, OutlierDetection, Upstream};
use crate::yaml::{join_index, join_key};

/// Largest allowed target weight.
pub const MAX_WEIGHT: u32 = 10_000;
/// Largest retry budget share, in percent of requests.
pub const MAX_BUDGET_PERCENT: u32 = 1000;
/// Largest allowed `pool.max_idle_per_target`.
pub const MAX_IDLE_PER_TARGET: usize = 100_000;

impl Validator<'_> {
    pub(super) fn upstreams(&mut self, cfg: &Config, partial: &Items) {
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

    pub(super) fn circuit_breaker(&mut self, cb: &CircuitBreaker, p: &str) {
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
}
