//! # The policy contract
//!
//! A route lists policies; each is a `RoutePolicy` (a closed enum, compiled once per snapshot,
//! matched in code, never looked up by name per request) whose type implements `Policy`. A
//! policy's config type implements `CompilePolicy` (`compile.rs`: its compiled type, how it
//! meets its long-lived state), and `RoutePolicy`, its dispatch to the hooks and the
//! compilation of a route's list are generated in `stack.rs` from the config crate's one list of
//! policies (`gatehouse_config::for_each_policy!`). `Stack` runs a route's list through the
//! phases below; the request path (`request::handle_request`, `forward`) calls the stack at the
//! times stated here and nowhere else. A hook a policy does not implement costs a match arm
//! that does nothing.
//!
//! The hooks, in the order a request meets them (`at` is the policy's index in its route's list,
//! the key for per-request state a policy keeps in `RequestCtx`):
//!
//! 1. **`on_request`** — after routing and sanitising, before a target is chosen or any body byte
//!    is read. Policies run in config order (then the route's `request_headers` edits). Each
//!    returns a `Flow`: `Continue`; `Respond(response)` to answer now (a CORS preflight, an
//!    external authoriser's answer); or `Fail(GatewayError)` to refuse (the error becomes the
//!    answer through `downstream::respond`, and its code the request's `error_kind`). A policy
//!    may edit the request headers, set what it learned in the context (identity, CORS grant,
//!    the reported rate limit, concurrency permits), and add headers for its own refusal to
//!    `RequestCtx::local_headers`. A policy that refines the error kind (auth: which credential
//!    problem) sets `RequestCtx::error_kind` itself.
//! 2. **`on_refused`** — when a later policy answered or refused, on each earlier policy in
//!    reverse order: undo what admitting cost (a rate limit refunds its quota when the refusal
//!    `refunds`, i.e. it was about capacity, not about who the client is) and drop what no longer
//!    applies (the rate-limit report).
//! 3. **`on_request_body`** — only on routes where some policy `needs_request_body`: the whole
//!    request body, buffered under the route's body limit, before it goes upstream; the policy
//!    may rewrite it (and its headers) or refuse with a `GatewayError`.
//! 4. **`on_response`** — the upstream's response head, before it is written to the client;
//!    policies run in reverse config order (like Envoy's filter chain) and may change the status
//!    and headers.
//! 5. **`on_response_body`** — only on routes where some policy `needs_response_body`: the whole
//!    response body, buffered up to `stack::MAX_BUFFERED_RESPONSE`, in reverse order, before the
//!    head is sent (so it may change the status, headers and body).
//! 6. **`local_headers`** — for an answer the gateway makes itself after the request phase let
//!    the request through (a 502, 504, ...) or refused it: the headers each policy wants on it
//!    (the CORS grant, so the page can read the error; the reported rate limit).
//!
//! The log phase (`request::log`) is not a policy hook: it runs once per request, errors
//! included, and reads what policies left in the context.
//!
//! Invariants:
//! - A policy owns its side effects: refunds, permits, counters, the headers it reports. The
//!   stack only runs the list; the request path knows no policy by name.
//! - State that must outlive a reload (limiter counters, JWKS caches) lives in `registry.rs`,
//!   keyed by stable ids; a snapshot's policies hold `Arc`s into it.
//! - Policies never see raw config; everything is compiled (keys hashed, names lower-cased).

pub mod auth;
pub mod cluster;
pub mod compile;
pub mod concurrency;
pub mod cors;
pub mod decision;
pub mod headers;
pub mod ip;
pub mod rate_limit;
pub mod registry;
pub mod stack;

use std::future::Future;

use bytes::Bytes;

use crate::ctx::{RequestCtx, RequestInfo};
use crate::error::{GatewayError, LocalResponse};
use crate::http1::Headers;

pub use cluster::{ClusterLimit, RedisClient};
pub use compile::{CompilePolicy, PolicyEnv};
pub use concurrency::{ConcurrencyLimiter, ConcurrencyPolicy, Permit};
pub use headers::HeaderEdits;
pub use rate_limit::{RateLimitPolicy, RateLimiter, RateReport};
pub use registry::{redis_id, KeyPart, KeySpec, Limiters, RedisId, StateId, SWEEP_INTERVAL};
pub(crate) use registry::{shard_of, KeyMap, SHARDS};
pub use stack::{RoutePolicy, Stack};

/// What a request-phase hook decided.
#[derive(Debug)]
pub enum Flow {
    /// Go on: the next policy, then the route's terminal.
    Continue,
    /// Answer the client with this now; nothing goes upstream.
    Respond(LocalResponse),
    /// Refuse with this error (answered through the one exit, `downstream::respond`).
    Fail(GatewayError),
}

/// The hooks of one policy type; every method has a default that does nothing, so a policy
/// implements only the phases it takes part in. See the module documentation for when each
/// runs and what it may change.
pub trait Policy {
    /// The request phase.
    fn on_request(
        &self,
        _ctx: &mut RequestCtx,
        _at: usize,
        _headers: &mut Headers,
        _req: &RequestInfo<'_>,
    ) -> impl Future<Output = Flow> + Send {
        async { Flow::Continue }
    }

    /// A later policy answered or refused the request; `refund` when that was about capacity.
    fn on_refused(
        &self,
        _ctx: &mut RequestCtx,
        _at: usize,
        _headers: &Headers,
        _refund: bool,
    ) -> impl Future<Output = ()> + Send {
        async {}
    }

    /// Whether this policy reads or rewrites the whole request body.
    fn needs_request_body(&self) -> bool {
        false
    }

    /// The request body phase (only when `needs_request_body`).
    fn on_request_body(
        &self,
        _ctx: &mut RequestCtx,
        _at: usize,
        _headers: &mut Headers,
        _body: &mut Vec<u8>,
    ) -> Result<(), GatewayError> {
        Ok(())
    }

    /// The response-head phase on the upstream's answer.
    fn on_response(&self, _ctx: &mut RequestCtx, _at: usize, _status: &mut u16, _headers: &mut Headers) {}

    /// Whether this policy reads or rewrites the whole response body.
    fn needs_response_body(&self) -> bool {
        false
    }

    /// The response body phase (only when `needs_response_body`).
    fn on_response_body(
        &self,
        _ctx: &mut RequestCtx,
        _at: usize,
        _status: &mut u16,
        _headers: &mut Headers,
        _body: &mut Vec<u8>,
    ) -> Result<(), GatewayError> {
        Ok(())
    }

    /// Headers for an answer the gateway makes itself for this request.
    fn local_headers(&self, _ctx: &RequestCtx, _at: usize, _put: &mut dyn FnMut(Bytes, Bytes)) {}
}

/// A boxed policy is a policy: a large compiled type is boxed (`CompilePolicy::Runtime`) to keep
/// `RoutePolicy` small, and every hook goes to the boxed value.
impl<P: Policy> Policy for Box<P> {
    fn on_request(
        &self,
        ctx: &mut RequestCtx,
        at: usize,
        headers: &mut Headers,
        req: &RequestInfo<'_>,
    ) -> impl Future<Output = Flow> + Send {
        (**self).on_request(ctx, at, headers, req)
    }

    fn on_refused(
        &self,
        ctx: &mut RequestCtx,
        at: usize,
        headers: &Headers,
        refund: bool,
    ) -> impl Future<Output = ()> + Send {
        (**self).on_refused(ctx, at, headers, refund)
    }

    fn needs_request_body(&self) -> bool {
        (**self).needs_request_body()
    }

    fn on_request_body(
        &self,
        ctx: &mut RequestCtx,
        at: usize,
        headers: &mut Headers,
        body: &mut Vec<u8>,
    ) -> Result<(), GatewayError> {
        (**self).on_request_body(ctx, at, headers, body)
    }

    fn on_response(&self, ctx: &mut RequestCtx, at: usize, status: &mut u16, headers: &mut Headers) {
        (**self).on_response(ctx, at, status, headers)
    }

    fn needs_response_body(&self) -> bool {
        (**self).needs_response_body()
    }

    fn on_response_body(
        &self,
        ctx: &mut RequestCtx,
        at: usize,
        status: &mut u16,
        headers: &mut Headers,
        body: &mut Vec<u8>,
    ) -> Result<(), GatewayError> {
        (**self).on_response_body(ctx, at, status, headers, body)
    }

    fn local_headers(&self, ctx: &RequestCtx, at: usize, put: &mut dyn FnMut(Bytes, Bytes)) {
        (**self).local_headers(ctx, at, put)
    }
}
