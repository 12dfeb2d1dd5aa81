//! Compiling a route's configured policies into its `Stack`: the one place where a config
//! policy becomes a `RoutePolicy` and meets its long-lived state (limiters re-attached by stable
//! id, Redis clients, identity caches).
//!
//! Invariants: compilation only fails on what validation should already have refused; every
//! piece of state a policy uses is taken from (or registered in) `Limiters` by an id made of the
//! route's name, the policy's index and the settings its state depends on (`state_fingerprint`),
//! so a reload that keeps a policy keeps its counters and one that changes it starts fresh.

use std::sync::Arc;

use gatehouse_config as cfg;

use super::cors::CorsPolicy;
use super::headers::{HeaderEdits, RequestHeaders, ResponseHeaders};
use super::ip::{IpFilterPolicy, IpFilterRt};
use super::{ClusterLimit, ConcurrencyLimiter, ConcurrencyPolicy, Limiters, RateLimitPolicy, RateLimiter, RedisClient};
use super::{RoutePolicy, Stack, StateId};
use crate::error::CompileError;

/// What compiling policies needs from the snapshot being built, and what it records for the
/// registry's clean-up after the swap.
pub(crate) struct PolicyEnv<'a> {
    pub limiters: &'a Limiters,
    pub consumers: Arc<crate::policy::auth::Consumers>,
    pub redis: Option<(&'a cfg::Redis, Arc<RedisClient>)>,
    /// Limiter ids still in use (the others are dropped after the reload).
    pub live_limiters: Vec<StateId>,
    pub live_auth: crate::policy::auth::Live,
}

impl PolicyEnv<'_> {
    /// The route's policies in config order, then its header edits.
    pub(crate) fn compile(&mut self, r: &cfg::Route) -> Result<Stack, CompileError> {
        let mut policies = Vec::with_capacity(r.policies.len() + 2);
        // Limits run before request transforms, so a key header is read as the client sent it.
        for (i, p) in r.policies.iter().enumerate() {
            let id = (r.name.clone(), i, state_fingerprint(p));
            self.live_limiters.push(id.clone());
            policies.push(match p {
                cfg::Policy::RateLimit(rl) => {
                    let limiter = self.limiters.rate(id.clone(), || RateLimiter::for_config(rl));
                    let (t, tau) = limiter.interval_tolerance();
                    let policy = RateLimitPolicy::new(rl, &r.name, limiter);
                    RoutePolicy::RateLimit(match (rl.mode, &self.redis) {
                        (cfg::RateLimitMode::Local, _) => policy,
                        (cfg::RateLimitMode::Cluster, Some((rc, client))) => {
                            let c = ClusterLimit::new(
                                client.clone(),
                                &rc.key_prefix,
                                &id,
                                t,
                                tau,
                                rl.on_redis_error.unwrap_or_default(),
                            );
                            policy.with_cluster(match rl.batch {
                                Some(b) => c.with_batch(b),
                                None => c,
                            })
                        }
                        (cfg::RateLimitMode::Cluster, None) => {
                            return Err(CompileError(format!(
                                "route `{}`: `mode: cluster` needs a `cluster.redis` section",
                                r.name
                            )))
                        }
                    })
                }
                cfg::Policy::ConcurrencyLimit(c) => {
                    let limiter = self.limiters.concurrency(id, || ConcurrencyLimiter::for_config(c));
                    RoutePolicy::ConcurrencyLimit(ConcurrencyPolicy::new(c, limiter))
                }
                cfg::Policy::Auth(a) => RoutePolicy::Auth(Box::new(
                    crate::policy::auth::compile_auth(a, &self.consumers, &self.limiters.auth, &mut self.live_auth)
                        .map_err(|e| CompileError(format!("route `{}`: {e}", r.name)))?,
                )),
                cfg::Policy::Authorize(a) => {
                    RoutePolicy::Authorize(crate::policy::auth::AuthorizePolicy::compile(a, &self.limiters.auth))
                }
                cfg::Policy::ExternalAuth(e) => RoutePolicy::ExternalAuth(Box::new(
                    crate::policy::auth::ExternalAuthPolicy::compile(e, &self.limiters.auth)
                        .map_err(|e| CompileError(format!("route `{}`: {e}", r.name)))?,
                )),
                cfg::Policy::Cors(c) => RoutePolicy::Cors(Box::new(CorsPolicy::compile(c))),
                cfg::Policy::IpFilter(f) => {
                    let counter = self.limiters.ip_denied.clone();
                    RoutePolicy::IpFilter(IpFilterPolicy::new(IpFilterRt::compile(f), counter))
                }
            });
        }

        let req = HeaderEdits::compile(&r.request_headers);
        if !req.is_empty() {
            policies.push(RoutePolicy::RequestHeaders(RequestHeaders(req)));
        }
        let resp = HeaderEdits::compile(&r.response_headers);
        if !resp.is_empty() {
            policies.push(RoutePolicy::ResponseHeaders(ResponseHeaders(resp)));
        }
        Ok(Stack::new(policies))
    }
}

fn state_fingerprint(p: &cfg::Policy) -> String {
    match p {
        cfg::Policy::RateLimit(rl) => {
            format!("rate_limit {}/{}s burst={} key={:?}", rl.limit.count, rl.limit.period_secs, rl.burst, rl.key)
        }
        cfg::Policy::ConcurrencyLimit(c) => {
            format!("concurrency_limit max={} queue={} timeout={:?} key={:?}", c.max, c.queue, c.queue_timeout, c.key)
        }
        // Their long-lived state (key sets, caches) lives in `AuthState`, keyed by its settings.
        cfg::Policy::Auth(_) => "auth".into(),
        cfg::Policy::Authorize(_) => "authorize".into(),
        cfg::Policy::ExternalAuth(_) => "external_auth".into(),
        cfg::Policy::Cors(_) => "cors".into(),
        cfg::Policy::IpFilter(_) => "ip_filter".into(),
    }
}
