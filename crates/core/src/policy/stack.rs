//! A route's compiled policies and the runner of their phases (see the contract in `mod.rs`).
//!
//! `route_policies!` below is the one list of policy types: it declares the `RoutePolicy` enum
//! and its dispatch to each type's `Policy` hooks. Adding a policy adds one line there.
//!
//! Invariants: phases run in config order on the request and in reverse on the response; the
//! first policy that answers or refuses ends the request phase, and every policy before it hears
//! `on_refused` (in reverse order); a route without policies costs a loop over an empty slice.

use bytes::Bytes;

use super::concurrency::ConcurrencyPolicy;
use super::cors::CorsPolicy;
use super::headers::{RequestHeaders, ResponseHeaders};
use super::ip::IpFilterPolicy;
use super::rate_limit::RateLimitPolicy;
use super::{Flow, Policy};
use crate::ctx::{RequestCtx, RequestInfo};
use crate::error::GatewayError;
use crate::http1::Headers;
use crate::policy::auth::{AuthPolicy, AuthorizePolicy, ExternalAuthPolicy};

/// The most response body the body phase buffers; a larger one is refused (502
/// `upstream_response_too_large`) on routes whose policies need the whole body.
pub const MAX_BUFFERED_RESPONSE: u64 = 8 * 1024 * 1024;

macro_rules! route_policies {
    ($($(#[$doc:meta])* $variant:ident($ty:ty),)*) => {
        /// One compiled policy of a route: the closed set, matched in code.
        #[derive(Debug)]
        pub enum RoutePolicy {
            $($(#[$doc])* $variant($ty),)*
        }

        impl RoutePolicy {
            async fn on_request(&self, ctx: &mut RequestCtx, at: usize, h: &mut Headers, r: &RequestInfo<'_>) -> Flow {
                match self { $(RoutePolicy::$variant(p) => p.on_request(ctx, at, h, r).await,)* }
            }
            async fn on_refused(&self, ctx: &mut RequestCtx, at: usize, h: &Headers, refund: bool) {
                match self { $(RoutePolicy::$variant(p) => p.on_refused(ctx, at, h, refund).await,)* }
            }
            fn needs_request_body(&self) -> bool {
                match self { $(RoutePolicy::$variant(p) => p.needs_request_body(),)* }
            }
            fn on_request_body(&self, ctx: &mut RequestCtx, at: usize, h: &mut Headers, b: &mut Vec<u8>) -> Result<(), GatewayError> {
                match self { $(RoutePolicy::$variant(p) => p.on_request_body(ctx, at, h, b),)* }
            }
            fn on_response(&self, ctx: &mut RequestCtx, at: usize, s: &mut u16, h: &mut Headers) {
                match self { $(RoutePolicy::$variant(p) => p.on_response(ctx, at, s, h),)* }
            }
            fn needs_response_body(&self) -> bool {
                match self { $(RoutePolicy::$variant(p) => p.needs_response_body(),)* }
            }
            fn on_response_body(&self, ctx: &mut RequestCtx, at: usize, s: &mut u16, h: &mut Headers, b: &mut Vec<u8>) -> Result<(), GatewayError> {
                match self { $(RoutePolicy::$variant(p) => p.on_response_body(ctx, at, s, h, b),)* }
            }
            fn local_headers(&self, ctx: &RequestCtx, at: usize, put: &mut dyn FnMut(Bytes, Bytes)) {
                match self { $(RoutePolicy::$variant(p) => p.local_headers(ctx, at, put),)* }
            }
        }
    };
}

route_policies! {
    /// `rate_limit` (`rate_limit.rs`, with `cluster.rs` for Redis): 429 past the limit.
    RateLimit(RateLimitPolicy),
    /// `concurrency_limit` (`concurrency.rs`): a permit held until the request ends, else 503.
    ConcurrencyLimit(ConcurrencyPolicy),
    /// `auth` (`auth/mod.rs`): sets `RequestCtx::identity`, or 401/503.
    Auth(Box<AuthPolicy>),
    /// `authorize` (`auth/authz.rs`): 403 unless the identity is allowed.
    Authorize(AuthorizePolicy),
    /// `external_auth` (`auth/external.rs`): an HTTP service decides.
    ExternalAuth(Box<ExternalAuthPolicy>),
    /// `cors` (`cors.rs`): answers preflights, grants actual requests.
    Cors(Box<CorsPolicy>),
    /// `ip_filter` (`ip.rs`): 403 `ip_denied` unless the client address is admitted.
    IpFilter(IpFilterPolicy),
    /// The route's `request_headers` edits (`headers.rs`).
    RequestHeaders(RequestHeaders),
    /// The route's `response_headers` edits (`headers.rs`).
    ResponseHeaders(ResponseHeaders),
}

/// A route's compiled policies, in config order.
#[derive(Debug, Default)]
pub struct Stack {
    pub policies: Vec<RoutePolicy>,
    /// Index of the route's `cors` policy (at most one): a CORS preflight is routed to the route
    /// whose policy can answer it.
    pub cors: Option<usize>,
    request_body: bool,
    response_body: bool,
}

impl Stack {
    pub fn new(policies: Vec<RoutePolicy>) -> Stack {
        let cors = policies.iter().position(|p| matches!(p, RoutePolicy::Cors(_)));
        let request_body = policies.iter().any(RoutePolicy::needs_request_body);
        let response_body = policies.iter().any(RoutePolicy::needs_response_body);
        Stack { policies, cors, request_body, response_body }
    }

    /// The request phase (hook 1, and hook 2 on refusal).
    pub async fn on_request(&self, ctx: &mut RequestCtx, headers: &mut Headers, req: &RequestInfo<'_>) -> Flow {
        for (i, p) in self.policies.iter().enumerate() {
            let flow = p.on_request(ctx, i, headers, req).await;
            if matches!(flow, Flow::Continue) {
                continue;
            }
            // Capacity refusals give back what earlier limits took; identity refusals do not
            // (the limits before `auth` are what slows down credential guessing).
            let refund = matches!(&flow, Flow::Fail(e) if e.refunds_quota());
            for j in (0..i).rev() {
                self.policies[j].on_refused(ctx, j, headers, refund).await;
            }
            return flow;
        }
        Flow::Continue
    }

    /// Whether the request body phase runs on this route (the body is then read whole).
    pub fn needs_request_body(&self) -> bool {
        self.request_body
    }

    /// The request body phase (hook 3), in config order.
    pub fn on_request_body(
        &self,
        ctx: &mut RequestCtx,
        headers: &mut Headers,
        body: &mut Vec<u8>,
    ) -> Result<(), GatewayError> {
        for (i, p) in self.policies.iter().enumerate() {
            p.on_request_body(ctx, i, headers, body)?;
        }
        Ok(())
    }

    /// The response-head phase (hook 4), in reverse config order.
    pub fn on_response(&self, ctx: &mut RequestCtx, status: &mut u16, headers: &mut Headers) {
        for (i, p) in self.policies.iter().enumerate().rev() {
            p.on_response(ctx, i, status, headers);
        }
    }

    /// Whether the response body phase runs on this route (the body is then buffered).
    pub fn needs_response_body(&self) -> bool {
        self.response_body
    }

    /// The response body phase (hook 5), in reverse config order.
    pub fn on_response_body(
        &self,
        ctx: &mut RequestCtx,
        status: &mut u16,
        headers: &mut Headers,
        body: &mut Vec<u8>,
    ) -> Result<(), GatewayError> {
        for (i, p) in self.policies.iter().enumerate().rev() {
            p.on_response_body(ctx, i, status, headers, body)?;
        }
        Ok(())
    }

    /// The headers policies want on an answer the gateway makes itself (hook 6).
    pub fn local_headers(&self, ctx: &RequestCtx, mut put: impl FnMut(Bytes, Bytes)) {
        for (i, p) in self.policies.iter().enumerate() {
            p.local_headers(ctx, i, &mut put);
        }
    }
}

/// The response phase on an upstream's answer, whatever the protocols: the route's policies,
/// then our request id unless the upstream sent its own.
pub(crate) fn response_phase(stack: &Stack, ctx: &mut RequestCtx, status: &mut u16, headers: &mut Headers) {
    stack.on_response(ctx, status, headers);
    if headers.get_bytes(&ctx.request_id_header).is_none() {
        headers.append(ctx.request_id_header.clone(), ctx.request_id.clone());
    }
}
