//! Request phases and the closed set of per-route policies.
//!
//! The phases, in the order the proxy runs them:
//! - `on_request`: after routing, before a target is chosen. Policies run in config order and each
//!   returns `Flow::Continue` or `Flow::Respond(response)`; the first `Respond` ends the phase and
//!   the request never reaches an upstream. Rate and concurrency limits, auth, `ip_filter` and
//!   `cors` run here; a CORS preflight is answered by its `cors` policy. When a policy after a
//!   `cors` that granted the request refuses it, the refusal carries the CORS headers too (so
//!   the browser lets the page read the 401/429). A rate limit's decision is carried in `RequestCtx::rate` so the response phase
//!   can report it; a concurrency slot is a `Permit` in `RequestCtx::permits`, freed when the
//!   context is dropped at the end of the request, whatever the outcome. When a rate or
//!   concurrency limit refuses, the rate limits that already admitted this request are refunded,
//!   so a refused request consumes no quota; each refund goes to whoever decided (local limiter,
//!   overflow bucket, Redis; nothing for a cluster limit's fail-open admission). A cluster-mode
//!   limit awaits Redis here (bounded by `cluster.redis.timeout`); its `fail_closed` refusal is
//!   a 503 `rate_limit_unavailable` without rate-limit headers.
//! - `on_response`: after the upstream's response head arrived, before it is written to the
//!   client; policies run in reverse config order (like Envoy's filter chain) and may edit the
//!   status and headers, then the reported rate limit's headers are set. Not run for responses
//!   the gateway produced itself; those get `RequestCtx::local_headers` (rate-limit headers
//!   included) instead.
//! - `on_log`: once per request, errors included, after the response was written.
//!
//! Invariants: policies are an enum matched in code, compiled once per snapshot; an empty phase is
//! a loop over an empty slice. Policies never see raw config.

use bytes::Bytes;

use crate::auth::{AuthPolicy, AuthorizePolicy, ExternalAuthPolicy};
use crate::ctx::{RequestCtx, RequestInfo};
use crate::error::{GatewayError, LocalResponse};
use crate::http1::Headers;
use crate::policy::cors::CorsPolicy;
use crate::policy::ip::IpFilterRt;
use crate::policy::rate_limit::Via;
use crate::policy::{ConcurrencyPolicy, RateLimitPolicy, RateReport};
use crate::snapshot::Route;

/// What refunding each admitted rate limit must undo, 2 bits per policy for the first 64
/// policies of a route (no allocation per request). Beyond 64, `Local` is assumed.
#[derive(Default, Clone, Copy)]
struct Refunds(u128);

impl Refunds {
    const LOCAL: u128 = 0;
    const OVERFLOW: u128 = 1;
    const REDIS: u128 = 2;
    const NOTHING: u128 = 3;

    fn set(&mut self, i: usize, via: Via, overflow: bool) {
        let v = match via {
            Via::Local if overflow => Self::OVERFLOW,
            Via::Local => Self::LOCAL,
            Via::Redis => Self::REDIS,
            Via::FailOpen | Via::FailClosed => Self::NOTHING,
        };
        if i < 64 {
            self.0 |= v << (2 * i);
        }
    }

    fn get(&self, i: usize) -> (Via, bool) {
        let v = if i < 64 { (self.0 >> (2 * i)) & 3 } else { Self::LOCAL };
        match v {
            Self::LOCAL => (Via::Local, false),
            Self::OVERFLOW => (Via::Local, true),
            Self::REDIS => (Via::Redis, false),
            _ => (Via::FailOpen, false),
        }
    }
}

/// The explicit result of a request-phase policy.
#[derive(Debug)]
pub enum Flow {
    Continue,
    Respond(LocalResponse),
}

/// Compiled header edits: remove, then set, then add.
#[derive(Debug, Clone, Default)]
pub struct HeaderEdits {
    pub remove: Vec<String>,
    pub set: Vec<(Bytes, Bytes)>,
    pub add: Vec<(Bytes, Bytes)>,
}

impl HeaderEdits {
    pub fn is_empty(&self) -> bool {
        self.remove.is_empty() && self.set.is_empty() && self.add.is_empty()
    }

    pub fn apply(&self, h: &mut Headers) {
        for n in &self.remove {
            h.remove(n);
        }
        for (n, v) in &self.set {
            h.set(n.clone(), v.clone());
        }
        for (n, v) in &self.add {
            h.append(n.clone(), v.clone());
        }
    }
}

/// Policies of the request phase.
#[derive(Debug)]
pub enum RequestPolicy {
    /// `request_headers` of the route.
    Headers(HeaderEdits),
    /// A `rate_limit` policy.
    RateLimit(RateLimitPolicy),
    /// A `concurrency_limit` policy.
    ConcurrencyLimit(ConcurrencyPolicy),
    /// An `auth` policy: sets `RequestCtx::identity` or answers 401/503.
    Auth(Box<AuthPolicy>),
    /// An `authorize` policy: 403 unless the identity is allowed.
    Authorize(AuthorizePolicy),
    /// An `external_auth` policy: an HTTP service decides.
    ExternalAuth(Box<ExternalAuthPolicy>),
    /// A `cors` policy: answers preflights, grants actual requests (headers added on response).
    Cors(Box<CorsPolicy>),
    /// An `ip_filter` policy: 403 `ip_denied` unless the client address is admitted.
    IpFilter(IpFilterRt),
}

/// Policies of the response phase.
#[derive(Debug)]
pub enum ResponsePolicy {
    /// `response_headers` of the route.
    Headers(HeaderEdits),
}

/// A route's compiled policies per phase.
#[derive(Debug, Default)]
pub struct Stack {
    pub request: Vec<RequestPolicy>,
    pub response: Vec<ResponsePolicy>,
    /// Index in `request` of the route's `cors` policy (at most one).
    pub cors: Option<usize>,
}

impl Stack {
    pub async fn on_request(&self, ctx: &mut RequestCtx, headers: &mut Headers, req: &RequestInfo<'_>) -> Flow {
        match self.run_request(ctx, headers, req).await {
            Flow::Respond(mut r) if ctx.cors.is_some() => {
                self.cors_headers(ctx, |n, v| r.headers.push((n, v)));
                Flow::Respond(r)
            }
            f => f,
        }
    }

    /// Calls `put` for the CORS headers of a response to this request (none without `cors`).
    pub fn cors_headers(&self, ctx: &RequestCtx, put: impl FnMut(Bytes, Bytes)) {
        if let Some(RequestPolicy::Cors(c)) = self.cors.and_then(|i| self.request.get(i)) {
            c.response_headers(ctx.cors.as_ref(), put);
        }
    }

    async fn run_request(&self, ctx: &mut RequestCtx, headers: &mut Headers, req: &RequestInfo<'_>) -> Flow {
        // Who decided each admitting rate limit, for a refund.
        let mut refunds = Refunds::default();
        for (i, p) in self.request.iter().enumerate() {
            match p {
                RequestPolicy::Headers(e) => e.apply(headers),
                RequestPolicy::RateLimit(rl) => {
                    let d = rl.check(ctx, headers).await;
                    let report = RateReport { policy: i, remaining: d.remaining, reset_ns: d.reset_ns };
                    if !d.allowed {
                        self.refund(i, refunds, ctx, headers).await;
                        if d.via == Via::FailClosed {
                            // Nothing is known about the limit: no rate-limit headers.
                            ctx.error_kind = Some("rate_limit_unavailable");
                            ctx.rate = None;
                        } else {
                            ctx.error_kind = Some("rate_limited");
                            // The refusing limit is the one reported (when it reports at all).
                            ctx.rate = rl.reports().then_some(report);
                        }
                        return Flow::Respond(rl.refusal(ctx, &d, &report));
                    }
                    refunds.set(i, d.via, d.overflow);
                    // A fail-open admission knows nothing about the limit: it reports nothing.
                    if d.via != Via::FailOpen && rl.reports() && ctx.rate.is_none_or(|r| report.tighter_than(&r)) {
                        ctx.rate = Some(report);
                    }
                }
                // An auth refusal refunds nothing: limits before `auth` are what slows down
                // credential guessing.
                RequestPolicy::Auth(a) => {
                    if let Err(e) = a.authenticate(ctx, headers, req).await {
                        ctx.rate = None;
                        return Flow::Respond(e.to_response(ctx.request_id_str()));
                    }
                }
                RequestPolicy::Authorize(a) => {
                    if let Err(e) = a.check(ctx) {
                        ctx.rate = None;
                        return Flow::Respond(e.to_response(ctx.request_id_str()));
                    }
                }
                RequestPolicy::ExternalAuth(x) => {
                    if let Err(resp) = x.check(ctx, headers, req).await {
                        ctx.rate = None;
                        return Flow::Respond(resp);
                    }
                }
                RequestPolicy::IpFilter(f) => {
                    if !f.admits(ctx.client_ip) {
                        self.refund(i, refunds, ctx, headers).await;
                        ctx.rate = None;
                        ctx.error_kind = Some("ip_denied");
                        return Flow::Respond(GatewayError::IpDenied.to_response(ctx.request_id_str()));
                    }
                }
                RequestPolicy::Cors(c) => {
                    let mut grant = None;
                    let flow = c.check(req.method, headers, &mut grant, ctx.request_id_str());
                    ctx.cors = grant;
                    if let Flow::Respond(r) = flow {
                        if r.status >= 400 {
                            ctx.error_kind = Some("cors_rejected");
                        }
                        ctx.rate = None;
                        return Flow::Respond(r);
                    }
                }
                RequestPolicy::ConcurrencyLimit(cl) => match cl.acquire(ctx, headers).await {
                    Some(permit) => ctx.permits.push(permit),
                    None => {
                        self.refund(i, refunds, ctx, headers).await;
                        ctx.rate = None;
                        ctx.error_kind = Some("concurrency_limited");
                        return Flow::Respond(GatewayError::ConcurrencyLimited.to_response(ctx.request_id_str()));
                    }
                },
            }
        }
        Flow::Continue
    }

    /// Refunds the rate limits before policy `upto` that admitted this request.
    async fn refund(&self, upto: usize, refunds: Refunds, ctx: &RequestCtx, headers: &Headers) {
        for (i, p) in self.request[..upto].iter().enumerate() {
            if let RequestPolicy::RateLimit(rl) = p {
                let (via, overflow) = refunds.get(i);
                rl.refund_key(ctx, headers, via, overflow).await;
            }
        }
    }

    /// Calls `put` for each header of the reported rate limit, if any.
    pub fn rate_headers(&self, ctx: &RequestCtx, put: impl FnMut(Bytes, Bytes)) {
        if let Some(r) = &ctx.rate {
            if let Some(RequestPolicy::RateLimit(rl)) = self.request.get(r.policy) {
                rl.headers_for(r, put);
            }
        }
    }

    pub fn on_response(&self, ctx: &mut RequestCtx, _status: &mut u16, headers: &mut Headers) {
        for p in self.response.iter().rev() {
            match p {
                ResponsePolicy::Headers(e) => e.apply(headers),
            }
        }
        if self.cors.is_some() {
            CorsPolicy::strip_upstream(headers);
            self.cors_headers(ctx, |n, v| headers.append(n, v));
        }
        self.rate_headers(ctx, |n, v| headers.set(n, v));
    }
}

/// The log phase: runs for every request, errors included, after the response was written.
/// Records the request's metrics, and writes the access-log line when the access log is on.
pub fn on_log(ctx: &mut RequestCtx, snap: &crate::snapshot::Snapshot, method: &[u8], path: &str) {
    let duration_us = ctx.started.elapsed().as_micros() as u64;
    if let Some(m) = snap.metrics.for_route(ctx.route) {
        m.observe(&crate::metrics::Observation {
            method,
            status: ctx.status,
            duration_us,
            upstream_us: ctx.upstream_us,
            bytes_in: ctx.bytes_in,
            bytes_out: ctx.bytes_out,
        });
    }
    if !snap.metrics.consumers.is_empty() {
        if let Some(id) = &ctx.identity {
            let name = id.consumer.as_ref().map_or(crate::metrics::UNMAPPED, |c| c.name.as_str());
            let cell =
                snap.metrics.consumers.get(name).or_else(|| snap.metrics.consumers.get(crate::metrics::UNMAPPED));
            if let Some(c) = cell {
                c.observe(ctx.status);
            }
        }
    }
    tracing::debug!(
        request_id = %ctx.request_id_str(),
        client_ip = %ctx.client_ip,
        method = %String::from_utf8_lossy(method),
        path,
        status = ctx.status,
        upstream_status = ctx.upstream_status,
        error_kind = ctx.error_kind,
        "request"
    );
    // The trace ids join the log line to the trace (also for unsampled requests).
    let ids = ctx.span.as_ref().filter(|_| snap.access_log.is_some()).map(|s| (s.trace_id_hex(), s.span_id_hex()));
    if let Some(span) = ctx.span.take() {
        // Only a response the gateway produced itself has an error kind worth a span status.
        let status = (ctx.status != 0).then_some(ctx.status);
        span.finish(status, ctx.error_kind);
    }
    let (Some(log), Some(f)) = (&snap.access_log, &ctx.log) else { return };
    let route = ctx.route.and_then(|i| snap.routes.get(i));
    let target = ctx.target.and_then(|t| route.and_then(|r| r.upstream.targets.get(t)));
    let mut line = serde_json::json!({
        "timestamp": crate::access_log::rfc3339_now(),
        "request_id": ctx.request_id_str(),
        "client_ip": ctx.client_ip.to_string(),
        "method": String::from_utf8_lossy(method),
        "protocol": f.protocol,
        "host": f.host,
        "path": path,
        "route": route.map(|r| r.name.as_str()),
        "upstream": route.map(|r| r.upstream.name.as_str()),
        "target": target.map(|t| t.url.as_str()),
        "consumer": ctx.identity.as_ref().map(|i| i.name.as_str()),
        "status": ctx.status,
        "upstream_status": ctx.upstream_status,
        "bytes_received": ctx.bytes_in,
        "bytes_sent": ctx.bytes_out,
        "duration_ms": duration_us as f64 / 1000.0,
        "upstream_ms": ctx.upstream_us.map(|us| us as f64 / 1000.0),
        "attempts": ctx.attempts,
        "error_kind": ctx.error_kind,
    });
    if let Some(obj) = line.as_object_mut() {
        if ctx.grpc.is_some() {
            // The upstream's own status, else the one the gateway answered with (its errors are
            // trailers-only gRPC answers), else what a gRPC client makes of a non-2xx HTTP status.
            let derived = (ctx.status >= 300).then(|| crate::grpc::status_code(ctx.status, ctx.error_kind));
            let status = ctx.grpc_status.or(derived);
            obj.insert("grpc_status".into(), status.map_or(serde_json::Value::Null, |s| s.into()));
        }
        if let Some(q) = &f.query {
            obj.insert("query".into(), serde_json::Value::String(q.clone()));
        }
        if let Some((trace_id, span_id)) = ids {
            obj.insert("trace_id".into(), serde_json::Value::String(trace_id));
            obj.insert("span_id".into(), serde_json::Value::String(span_id));
        }
    }
    log.write(serde_json::to_vec(&line).unwrap_or_default());
}

/// The response phase on an upstream's answer, whatever the protocols: the route's policies,
/// then our request id unless the upstream sent its own.
pub(crate) fn response_phase(route: &Route, ctx: &mut RequestCtx, status: &mut u16, headers: &mut Headers) {
    route.stack.on_response(ctx, status, headers);
    if !headers.contains(std::str::from_utf8(&ctx.request_id_header).unwrap_or("x-request-id")) {
        headers.append(ctx.request_id_header.clone(), ctx.request_id.clone());
    }
}
