//! Validation of a route's `policies` list: the `ValidatePolicy` contract every policy's config
//! type implements, its dispatch (generated from `for_each_policy!`), and the checks of the
//! `rate_limit` and `concurrency_limit` policies with their keys. The other policies implement
//! it in `identity` and `edge`.
//!
//! Invariants: the same rules as the rest of `validate/` (every problem collected with its
//! path, nothing stops early). Order rules are each policy's own: a policy sees the policies
//! before it on its route (`PolicyScope`), whose effects (`AUTHENTICATES`, `CHECKS_IDENTITY`)
//! are declared by their types, so no check names another policy's kind except to refuse a
//! second copy of itself. A rate limit that passes can be run by both the local GCRA limiter
//! and the Redis script: its interval and burst tolerance fit their arithmetic.

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

/// The checks of one policy's config, implemented by its config type; `Validator::policies`
/// calls it for each item of a route's list, in order, through the dispatch generated from
/// `for_each_policy!`.
pub(super) trait ValidatePolicy {
    /// The policy sets the request's identity: what reads it must come after one.
    const AUTHENTICATES: bool = false;
    /// The policy refuses requests by who sent them: a `cors` must come before it (a preflight
    /// carries no credentials, so the check would refuse it first).
    const CHECKS_IDENTITY: bool = false;

    /// Records every problem of this item; `p` is its path (`routes[0].policies[2].rate_limit`).
    fn validate(&self, v: &mut Validator<'_>, scope: &PolicyScope<'_>, p: &str);
}

/// What a policy's checks may know beyond its own config.
pub(super) struct PolicyScope<'a> {
    pub cfg: &'a Config,
    /// The policies before this one on its route, in order.
    pub before: &'a [Policy],
}

/// The dispatch from a `Policy` to its type's `ValidatePolicy` impl (and its declared effects).
/// Called through the trait, so a listed type without the impl is reported as such.
macro_rules! dispatch {
    ($($(#[$doc:meta])* $name:literal $variant:ident($ty:ty),)*) => {
        fn validate_policy(v: &mut Validator<'_>, policy: &Policy, scope: &PolicyScope<'_>, p: &str) {
            match policy {
                $(Policy::$variant(c) => ValidatePolicy::validate(c, v, scope, &join_key(p, $name)),)*
            }
        }

        fn authenticates(policy: &Policy) -> bool {
            match policy {
                $(Policy::$variant(_) => <$ty as ValidatePolicy>::AUTHENTICATES,)*
            }
        }

        fn checks_identity(policy: &Policy) -> bool {
            match policy {
                $(Policy::$variant(_) => <$ty as ValidatePolicy>::CHECKS_IDENTITY,)*
            }
        }
    };
}

crate::for_each_policy!(dispatch);

impl PolicyScope<'_> {
    /// Some earlier policy sets the identity.
    pub fn authenticated(&self) -> bool {
        self.before.iter().any(authenticates)
    }

    /// Some earlier policy refuses by identity.
    pub fn identity_checked(&self) -> bool {
        self.before.iter().any(checks_identity)
    }
}

impl Validator<'_> {
    pub(super) fn policies(&mut self, policies: &[Policy], cfg: &Config, p: &str) {
        for (k, policy) in policies.iter().enumerate() {
            validate_policy(self, policy, &PolicyScope { cfg, before: &policies[..k] }, &join_index(p, k));
        }
    }

    /// `what` reads the identity, so an `auth` must come earlier on the route.
    pub(super) fn needs_identity(&mut self, scope: &PolicyScope<'_>, what: &str, path: String) {
        if !scope.authenticated() {
            self.err(path, format!("{what} needs an `auth` policy earlier in this route's policies"));
        }
    }

    /// A `consumer` or `claim` key counts by identity, so an `auth` must come earlier.
    fn identity_key(&mut self, scope: &PolicyScope<'_>, key: &LimitKey, p: &str) {
        if key.0.iter().any(|k| matches!(k, KeyPart::Consumer | KeyPart::Claim(_))) {
            self.needs_identity(scope, "a `consumer` or `claim` key", join_key(p, "key"));
        }
    }
}

impl ValidatePolicy for RateLimit {
    fn validate(&self, v: &mut Validator<'_>, scope: &PolicyScope<'_>, p: &str) {
        v.identity_key(scope, &self.key, p);
        v.rate_limit(self, p);
    }
}

impl ValidatePolicy for ConcurrencyLimit {
    fn validate(&self, v: &mut Validator<'_>, scope: &PolicyScope<'_>, p: &str) {
        v.identity_key(scope, &self.key, p);
        v.concurrency_limit(self, p);
    }
}

impl Validator<'_> {
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
