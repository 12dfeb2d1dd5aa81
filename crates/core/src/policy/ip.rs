//! Client-address allow/deny lists (`ip_filter`), for a listener (checked before routing) and as
//! a route policy.
//!
//! Invariants: the address checked is the trusted-proxy client address (`request::sanitize::client_ip`): a
//! peer that is not a trusted proxy cannot choose it with `X-Forwarded-For`. `deny` wins over
//! `allow`; an empty `allow` admits everyone not denied. CIDRs are parsed at load; a check is a
//! scan of the compiled blocks, no allocation, no lock.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use gatehouse_config::{Cidr, IpFilter, Route};

use super::{CompilePolicy, Flow, Policy, PolicyEnv, StateId};
use crate::ctx::{RequestCtx, RequestInfo};
use crate::error::{CompileError, GatewayError};
use crate::http1::Headers;

#[derive(Debug, Clone, Default)]
pub struct IpFilterRt {
    allow: Vec<Cidr>,
    deny: Vec<Cidr>,
}

impl IpFilterRt {
    /// Compiles a validated filter (blocks that do not parse were refused by validation).
    pub fn compile(f: &IpFilter) -> IpFilterRt {
        let parse = |v: &[String]| v.iter().filter_map(|c| Cidr::parse(c).ok()).collect::<Vec<_>>();
        IpFilterRt { allow: parse(&f.allow), deny: parse(&f.deny) }
    }

    pub fn admits(&self, ip: IpAddr) -> bool {
        // `Cidr::contains` treats an IPv4-mapped IPv6 address (`::ffff:10.0.0.1`, from a
        // dual-stack socket) as its IPv4 address, so `deny: [10.0.0.0/8]` sees it too.
        if self.deny.iter().any(|c| c.contains(ip)) {
            return false;
        }
        self.allow.is_empty() || self.allow.iter().any(|c| c.contains(ip))
    }
}

/// Requests refused by `ip_filter`, for `/metrics` (kept across reloads in `Limiters::ip_denied`).
#[derive(Debug, Default)]
pub struct IpDenials {
    pub listener: AtomicU64,
    pub route: AtomicU64,
}

impl IpDenials {
    pub fn count_listener(&self) {
        self.listener.fetch_add(1, Ordering::Relaxed);
    }
    pub fn count_route(&self) {
        self.route.fetch_add(1, Ordering::Relaxed);
    }
}

/// A route's `ip_filter` policy: the compiled lists and the counter its refusals go to.
#[derive(Debug)]
pub struct IpFilterPolicy {
    filter: IpFilterRt,
    denials: Arc<IpDenials>,
}

impl IpFilterPolicy {
    pub fn new(filter: IpFilterRt, denials: Arc<IpDenials>) -> IpFilterPolicy {
        IpFilterPolicy { filter, denials }
    }
}

/// An `ip_filter` counts its refusals in the registry's `ip_denied` (kept across reloads).
impl CompilePolicy for IpFilter {
    type Runtime = IpFilterPolicy;

    fn fingerprint(&self) -> String {
        "ip_filter".into()
    }

    fn compile(&self, env: &mut PolicyEnv<'_>, _: &Route, _: &StateId) -> Result<IpFilterPolicy, CompileError> {
        Ok(IpFilterPolicy::new(IpFilterRt::compile(self), env.limiters.ip_denied.clone()))
    }
}

/// 403 `ip_denied` unless the client address is admitted, counted in
/// `gatehouse_ip_denied_total{scope="route"}`.
impl Policy for IpFilterPolicy {
    async fn on_request(&self, ctx: &mut RequestCtx, _: usize, _: &mut Headers, _: &RequestInfo<'_>) -> Flow {
        if self.filter.admits(ctx.client_ip) {
            Flow::Continue
        } else {
            self.denials.count_route();
            Flow::Fail(GatewayError::IpDenied)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deny_wins_and_mapped_v4() {
        let f = IpFilterRt::compile(&IpFilter {
            allow: vec!["10.0.0.0/8".into(), "::1".into()],
            deny: vec!["10.1.0.0/16".into()],
        });
        assert!(f.admits("10.2.3.4".parse().unwrap()));
        assert!(!f.admits("10.1.3.4".parse().unwrap()));
        assert!(!f.admits("::ffff:10.1.3.4".parse().unwrap()));
        assert!(f.admits("::ffff:10.2.3.4".parse().unwrap()));
        assert!(!f.admits("192.168.0.1".parse().unwrap()));
        assert!(f.admits("::1".parse().unwrap()));
        let deny_only = IpFilterRt::compile(&IpFilter { allow: vec![], deny: vec!["127.0.0.1".into()] });
        assert!(!deny_only.admits("127.0.0.1".parse().unwrap()));
        assert!(deny_only.admits("127.0.0.2".parse().unwrap()));
    }
}
