//! Validation of a route's `policies` list: the order rules (what needs an identity must come
//! after `auth`, `cors` before any identity check), and the `rate_limit` and
//! `concurrency_limit` policies with their keys. The other policies are checked in `identity`
//! and `edge`.
//!
//! Invariants: the same rules as the rest of `validate/` (every problem collected with its
//! path, nothing stops early). A rate limit that passes can be run by both the local GCRA
//! limiter and the Redis script: its interval and burst tolerance fit their arithmetic.

use super::{Validator, MAX_CONCURRENCY};
use crate::net::is_token;
use crate::types::{ConcurrencyLimit, Config, KeyPart, LimitKey, Policy, RateLimit, RateLimitMode};
use crate::yaml::{join_index, join_key};

/// Longest rate-limit period (`365d`).
pub const MAX_RATE_PERIOD_SECS: u64 = 365 * 86_400;
/// Longest time a rate limit's burst may take to refill (its GCRA tolerance, `burst × period / count`).
pub const MAX_RATE_TOLERANCE_SECS: u64 = 365 * 86_400;
/// Largest `concurrency_limit.queue`.
pub const MAX_QUEUE: u32 = 100_000;

impl Validator<'_> {
    pub(super) fn policies(&mut self, policies: &[Policy], cfg: &Config, p: &str) {
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
}
