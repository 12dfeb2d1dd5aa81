//! Compiling a validated `Config` into the immutable `Snapshot` the data plane runs on.
//!
//! Invariants: everything a request needs is resolved here (route table, header names/values as
//! bytes, regexes, durations, upstream references as `Arc`s), so the hot path never parses config
//! or looks anything up by name. Long-lived state comes from the `Registry` by stable names.
//! Compilation only fails on what validation should already have refused.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use gatehouse_config::{self as cfg, Cidr, Config};

use crate::http1::parse::MAX_HEADER_SLOTS;
use crate::http1::HeadLimits;
use crate::policy::{Limiters, Stack};
use crate::retry::{DeadlinePolicy, RetryPolicy};
use crate::router::{PathSpec, PredKind, RouteSpec, RouteTable, ValuePred};
use crate::upstream::breaker::{BreakerConfig, CircuitBreaker};
use crate::upstream::outlier::OutlierConfig;
use crate::upstream::{target_addr, Balancer, HashKey, Registry, Target, Upstream};

/// What a route ends in (the handlers live in `terminal/`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Terminal {
    /// Forward to the route's upstream (`forward::forward`).
    Proxy,
}

/// A listener's compiled settings (the socket itself is bound once at start).
#[derive(Debug, Clone)]
pub struct ListenerRt {
    pub name: String,
    pub address: SocketAddr,
    pub trusted_proxies: Vec<Cidr>,
    /// Checked on the trusted-proxy client address before routing.
    pub ip_filter: Option<crate::policy::ip::IpFilterRt>,
    /// Send RFC 7239 `Forwarded` too.
    pub forwarded_header: bool,
    /// `headers_with_underscores`.
    pub underscores: cfg::UnderscoreHeaders,
    /// `escaped_slashes`.
    pub escaped_slashes: cfg::EscapedSlashes,
    pub limits: HeadLimits,
    pub max_body: u64,
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    pub idle_timeout: Duration,
    /// TLS termination (certificates read when this snapshot was compiled).
    pub tls: Option<Arc<crate::tls::ServerTls>>,
    /// Plain listener that answers everything with a redirect to https: (status, port).
    pub redirect_https: Option<(u16, Option<u16>)>,
    /// HTTP/2 from clients (ALPN `h2`, prior-knowledge `h2c`); `None` when disabled.
    pub http2: Option<gatehouse_config::Http2>,
}

/// How the forwarded path is rewritten.
#[derive(Debug, Clone)]
pub enum Rewrite {
    None,
    StripPrefix(String),
    Template(Vec<TplPart>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TplPart {
    Lit(String),
    Param(String),
}

/// A compiled route.
#[derive(Debug)]
pub struct Route {
    pub name: String,
    /// The matched-path template for traces (`http.route`): the exact path or template, a
    /// prefix as `/api/*`, the route's name for a regex. Never a raw request path.
    pub http_route: String,
    /// What the route ends in (`terminal/`).
    pub terminal: Terminal,
    /// The upstream a `Proxy` terminal forwards to.
    pub upstream: Arc<Upstream>,
    pub rewrite: Rewrite,
    pub preserve_host: bool,
    pub max_body: Option<u64>,
    pub timeout: Option<Duration>,
    pub stack: Stack,
    pub retry: RetryPolicy,
    pub deadline: Option<DeadlinePolicy>,
    /// Delay before a hedged second attempt (idempotent, fully buffered requests only).
    pub hedge: Option<Duration>,
    /// The route's own breaker, used instead of the upstream's.
    pub breaker: Option<Arc<CircuitBreaker>>,
    /// Lower-cased protocol names a client may `Upgrade` to on this route.
    pub upgrades: Vec<String>,
    /// An upgraded tunnel idle this long is closed.
    pub tunnel_idle: Duration,
    /// Translate gRPC-Web to gRPC (only when the upstream speaks HTTP/2).
    pub grpc_web: bool,
    /// `Strict-Transport-Security` value, added to responses on TLS connections.
    pub hsts: Option<Bytes>,
}

impl Route {
    /// The breaker guarding this route's requests, if any.
    pub fn breaker(&self) -> Option<&CircuitBreaker> {
        self.breaker.as_deref().or(self.upstream.state.breaker.as_ref())
    }
}

/// The immutable runtime configuration, swapped atomically on reload.
pub struct Snapshot {
    pub config: Arc<Config>,
    /// The access-log writer when `access_log.enabled` (set by the gateway from its registry of
    /// open logs, so compiling opens no files).
    pub access_log: Option<Arc<crate::access_log::AccessLog>>,
    /// The span exporter when `tracing.enabled` (set by the gateway, which keeps one tracer per
    /// tracing config across reloads).
    pub tracer: Option<Arc<crate::trace::Tracer>>,
    /// `server.request_id.header`, lower-cased (`x-request-id` by default).
    pub request_id_header: Bytes,
    /// `request_id_header` recognised once here (see `http1::Known`), not per request.
    pub request_id_known: crate::http1::Known,
    /// `server.request_id.trust_incoming`.
    pub trust_request_id: bool,
    /// Per-route request counters, bound by the gateway from its metrics registry (empty when
    /// compiled outside a gateway, e.g. by `gatehouse explain`).
    pub metrics: crate::metrics::Bound,
    pub router: RouteTable,
    pub routes: Vec<Route>,
    pub upstreams: Vec<Arc<Upstream>>,
    pub listeners: Vec<ListenerRt>,
    pub drain_timeout: Duration,
}

pub use crate::error::CompileError;

/// Resolves a listen address (`IP:port` or `localhost:port`); the config crate's parser, so
/// validation and compilation can never disagree.
pub fn parse_listen_addr(s: &str) -> Result<SocketAddr, CompileError> {
    gatehouse_config::net::parse_socket_addr(s).map_err(CompileError)
}

fn pred(v: &cfg::ValueMatch, lower_name: bool) -> Result<ValuePred, CompileError> {
    let kind = if let Some(e) = &v.exact {
        PredKind::Exact(e.clone())
    } else if let Some(r) = &v.regex {
        PredKind::Regex(regex::Regex::new(&format!("^(?:{r})$")).map_err(|e| CompileError(e.to_string()))?)
    } else {
        PredKind::Present(v.present.unwrap_or(true))
    };
    let name = if lower_name { v.name.to_ascii_lowercase() } else { v.name.clone() };
    Ok(ValuePred { name, kind, invert: v.invert })
}

/// Splits `/v2/users/{id}/{*rest}` into literal and parameter parts.
pub fn parse_template(t: &str) -> Vec<TplPart> {
    let mut parts = Vec::new();
    let mut rest = t;
    while let Some(open) = rest.find('{') {
        if open > 0 {
            parts.push(TplPart::Lit(rest[..open].to_string()));
        }
        let Some(close) = rest[open..].find('}') else { break };
        let name = rest[open + 1..open + close].trim_start_matches('*');
        parts.push(TplPart::Param(name.to_string()));
        rest = &rest[open + close + 1..];
    }
    if !rest.is_empty() {
        parts.push(TplPart::Lit(rest.to_string()));
    }
    parts
}

/// What a policy's long-lived state depends on: a change here starts fresh counters on reload.
/// Compiles a validated config. State for upstream targets comes from (and goes back to)
/// `registry`, state for rate and concurrency limits from `limiters`.
pub fn compile(config: Config, registry: &Registry, limiters: &Limiters) -> Result<Snapshot, CompileError> {
    // Files first: a certificate that does not load fails the reload before any state changes.
    let mut listener_tls = Vec::new();
    for (i, l) in config.listeners.iter().enumerate() {
        let t = l.tls.as_ref().map(|t| crate::tls::server(t, i, l.http2.enabled).map(Arc::new)).transpose();
        listener_tls.push(t.map_err(|e| CompileError(e.to_string()))?);
    }
    let mut upstreams: Vec<Arc<Upstream>> = Vec::new();
    let mut live = Vec::new();
    let mut live_states = Vec::new();
    for (ui, u) in config.upstreams.iter().enumerate() {
        let mut targets = Vec::new();
        let mut client_tls = None;
        for (ti, t) in u.targets.iter().enumerate() {
            let (addr, authority) = target_addr(&t.url).map_err(CompileError)?;
            let h2 = t.url.starts_with("h2c://") || u.protocol == cfg::UpstreamProtocol::Http2;
            let tls = if t.url.starts_with("https://") {
                let base = format!("upstreams[{ui}].tls");
                if client_tls.is_none() {
                    client_tls = Some(
                        crate::tls::client_config(u.tls.as_ref(), &base, h2)
                            .map_err(|e| CompileError(e.to_string()))?,
                    );
                }
                let url = gatehouse_config::net::parse_target_url(&t.url).map_err(CompileError)?;
                let name = u.tls.as_ref().and_then(|t| t.server_name.clone()).unwrap_or(url.host);
                let config = client_tls.clone().ok_or_else(|| CompileError("no TLS client config".into()))?;
                let tt = crate::tls::TargetTls::new(config, &name, &format!("upstreams[{ui}].targets[{ti}].url"))
                    .map_err(|e| CompileError(e.to_string()))?;
                Some(Arc::new(tt))
            } else {
                None
            };
            live.push((u.name.clone(), t.url.clone()));
            let state = registry.target(&u.name, &t.url);
            state.outlier.set_window(u.outlier_detection.window.0.as_nanos() as u64);
            targets.push(Target {
                url: t.url.clone(),
                addr,
                authority: Bytes::from(authority),
                weight: t.weight.max(1),
                state,
                tls,
                http2: h2,
            });
        }
        let balancer = match &u.balancer {
            cfg::Balancer::RoundRobin => Balancer::round_robin(&targets.iter().map(|t| t.weight).collect::<Vec<_>>()),
            cfg::Balancer::LeastRequest => Balancer::LeastRequest {
                weights: Balancer::p2c_weights(&targets.iter().map(|t| t.weight).collect::<Vec<_>>()),
            },
            cfg::Balancer::PeakEwma => Balancer::PeakEwma {
                weights: Balancer::p2c_weights(&targets.iter().map(|t| t.weight).collect::<Vec<_>>()),
            },
            cfg::Balancer::ConsistentHash(on) => {
                let key = match on {
                    cfg::HashOn::Header(h) => HashKey::Header(h.to_ascii_lowercase()),
                    cfg::HashOn::Cookie(c) => HashKey::Cookie(c.clone()),
                    cfg::HashOn::ClientIp => HashKey::ClientIp,
                    cfg::HashOn::Path => HashKey::Path,
                };
                Balancer::consistent_hash(key, &targets.iter().map(|t| (t.url.clone(), t.weight)).collect::<Vec<_>>())
            }
        };
        let http2 = targets.iter().any(|t| t.http2);
        upstreams.push(Arc::new(Upstream {
            name: u.name.clone(),
            targets,
            balancer,
            max_idle_per_target: u.pool.max_idle_per_target,
            pool_idle_timeout: u.pool.idle_timeout.0,
            connect_timeout: u.timeouts.connect.0,
            response_timeout: u.timeouts.response_header.0,
            health_check: u.health_check.clone(),
            outlier: OutlierConfig::from_config(&u.outlier_detection),
            http2,
            max_requests: u.limits.max_requests,
            max_pending: u.limits.max_pending,
            state: {
                let st = registry.upstream(&u.name, BreakerConfig::from_config(&u.circuit_breaker), &u.retry_budget);
                live_states.push(st.clone());
                st
            },
        }));
    }
    registry.retain(&live);
    let mut live_breakers = Vec::new();

    // The fleet's Redis, only when some policy uses it (created lazily; connects on first use).
    let redis_cfg = config.cluster.as_ref().and_then(|c| c.redis.as_ref());
    let uses_redis = config
        .routes
        .iter()
        .flat_map(|r| &r.policies)
        .any(|p| matches!(p, cfg::Policy::RateLimit(rl) if rl.mode == cfg::RateLimitMode::Cluster));
    let redis = match redis_cfg {
        Some(rc) if uses_redis => Some((rc, limiters.redis(rc).map_err(|e| CompileError(e.to_string()))?)),
        _ => None,
    };

    let mut specs = Vec::new();
    let mut routes = Vec::new();
    let mut env = crate::policy::compile::PolicyEnv {
        limiters,
        consumers: Arc::new(crate::policy::auth::Consumers::compile(&config.consumers)),
        redis: redis.clone(),
        live_limiters: Vec::new(),
        live_auth: crate::policy::auth::Live::default(),
    };
    for r in &config.routes {
        let upstream = upstreams
            .iter()
            .find(|u| u.name == r.upstream)
            .cloned()
            .ok_or_else(|| CompileError(format!("route `{}`: unknown upstream `{}`", r.name, r.upstream)))?;
        let path = match &r.matches.path {
            None => PathSpec::Prefix("/".into()),
            Some(cfg::PathMatch::Exact(p)) => PathSpec::Exact(p.clone()),
            Some(cfg::PathMatch::Prefix(p)) => PathSpec::Prefix(p.clone()),
            Some(cfg::PathMatch::Template(p)) => PathSpec::Template(p.clone()),
            Some(cfg::PathMatch::Regex(p)) => PathSpec::Regex(p.clone()),
        };
        let rewrite = match &r.rewrite {
            Some(rw) if rw.strip_prefix => match &path {
                PathSpec::Prefix(p) => Rewrite::StripPrefix(p.trim_end_matches('/').to_string()),
                _ => Rewrite::None,
            },
            Some(cfg::Rewrite { path: Some(t), .. }) => Rewrite::Template(parse_template(t)),
            _ => Rewrite::None,
        };
        specs.push(RouteSpec {
            hosts: r.matches.hosts.iter().map(|h| h.to_ascii_lowercase()).collect(),
            path,
            methods: r.matches.methods.iter().map(|m| m.to_ascii_uppercase()).collect(),
            headers: r.matches.headers.iter().map(|v| pred(v, true)).collect::<Result<_, _>>()?,
            query: r.matches.query.iter().map(|v| pred(v, false)).collect::<Result<_, _>>()?,
        });
        let stack = Stack::compile(&mut env, r)?;
        let http_route = match &r.matches.path {
            None => "/".to_string(),
            Some(cfg::PathMatch::Exact(p)) | Some(cfg::PathMatch::Template(p)) => p.clone(),
            Some(cfg::PathMatch::Prefix(p)) => format!("{}/*", p.trim_end_matches('/')),
            // A regex is no template: the route's name stands for it.
            Some(cfg::PathMatch::Regex(_)) => r.name.clone(),
        };
        routes.push(Route {
            name: r.name.clone(),
            http_route,
            terminal: Terminal::Proxy,
            upstream,
            rewrite,
            preserve_host: r.preserve_host,
            max_body: r.max_body_bytes.map(|b| b.0),
            timeout: r.timeout.map(|d| d.0),
            stack,
            retry: RetryPolicy::from_config(&r.retry),
            deadline: r.deadline.as_ref().map(DeadlinePolicy::from_config),
            hedge: r.hedge.as_ref().map(|h| h.delay.0),
            breaker: r.circuit_breaker.as_ref().and_then(BreakerConfig::from_config).map(|c| {
                let b = registry.route_breaker(&r.name, c);
                live_breakers.push(b.clone());
                b
            }),
            upgrades: r.upgrades.iter().map(|u| u.to_ascii_lowercase()).collect(),
            tunnel_idle: r.tunnel_idle_timeout.0,
            grpc_web: r.grpc_web,
            hsts: r.hsts.as_ref().map(|h| {
                let mut v = format!("max-age={}", h.max_age.0.as_secs());
                if h.include_subdomains {
                    v.push_str("; includeSubDomains");
                }
                if h.preload {
                    v.push_str("; preload");
                }
                Bytes::from(v)
            }),
        });
    }
    registry.retain_resilience(&live_states, &live_breakers);
    let router = RouteTable::build(specs).map_err(|e| CompileError(e.to_string()))?;
    limiters.retain(&env.live_limiters);
    limiters.auth.retain(&env.live_auth.jwks, &env.live_auth.introspection);
    limiters.retain_redis(redis.as_ref().map(|(rc, _)| crate::policy::redis_id(rc)).as_ref());

    let mut listeners = Vec::new();
    for ((i, l), tls) in config.listeners.iter().enumerate().zip(listener_tls) {
        listeners.push(ListenerRt {
            name: l.name.clone().unwrap_or_else(|| format!("listener-{i}")),
            address: parse_listen_addr(&l.address)?,
            trusted_proxies: l
                .trusted_proxies
                .iter()
                .map(|c| Cidr::parse(c).map_err(CompileError))
                .collect::<Result<_, _>>()?,
            ip_filter: l.ip_filter.as_ref().map(crate::policy::ip::IpFilterRt::compile),
            forwarded_header: l.forwarded_header,
            underscores: l.headers_with_underscores,
            escaped_slashes: l.escaped_slashes,
            limits: HeadLimits {
                max_head: l.limits.max_header_bytes.0 as usize,
                max_headers: l.limits.max_headers.min(MAX_HEADER_SLOTS),
                max_uri: l.limits.max_uri_bytes.0 as usize,
            },
            max_body: l.limits.max_body_bytes.0,
            header_timeout: l.timeouts.header_read.0,
            body_timeout: l.timeouts.body_read.0,
            idle_timeout: l.timeouts.idle.0,
            tls,
            redirect_https: l.redirect_https.as_ref().map(|r| (r.status, r.port)),
            http2: l.http2.enabled.then(|| l.http2.clone()),
        });
    }
    Ok(Snapshot {
        access_log: None,
        tracer: None,
        // The default as a static: cloning it per request then touches no shared refcount.
        request_id_header: match config.server.request_id.header.to_ascii_lowercase() {
            h if h == "x-request-id" => Bytes::from_static(b"x-request-id"),
            h => Bytes::from(h),
        },
        request_id_known: crate::http1::Known::of(config.server.request_id.header.as_bytes()),
        trust_request_id: config.server.request_id.trust_incoming,
        metrics: Default::default(),
        drain_timeout: config.server.drain_timeout.0,
        config: Arc::new(config),
        router,
        routes,
        upstreams,
        listeners,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates() {
        assert_eq!(
            parse_template("/v2/users/{id}/x{*rest}"),
            vec![
                TplPart::Lit("/v2/users/".into()),
                TplPart::Param("id".into()),
                TplPart::Lit("/x".into()),
                TplPart::Param("rest".into())
            ]
        );
    }
}
