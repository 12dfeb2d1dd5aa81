//! Request phases and the closed set of per-route policies.
//!
//! The phases, in the order the proxy runs them:
//! - `on_request`: after routing, before a target is chosen. Policies run in config order and each
//!   returns `Flow::Continue` or `Flow::Respond(response)`; the first `Respond` ends the phase and
//!   the request never reaches an upstream. (Auth, rate limits and CORS plug in here.)
//! - `on_response`: after the upstream's response head arrived, before it is written to the
//!   client; policies run in reverse config order (like Envoy's filter chain) and may edit the
//!   status and headers. Not run for responses the gateway produced itself.
//! - `on_log`: once per request, errors included, after the response was written.
//!
//! Invariants: policies are an enum matched in code, compiled once per snapshot; an empty phase is
//! a loop over an empty slice. Policies never see raw config.

use std::net::IpAddr;

use bytes::Bytes;

use crate::error::LocalResponse;
use crate::http1::Headers;

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
}

/// What every phase may read and annotate about the current request.
#[derive(Debug)]
pub struct RequestCtx {
    /// ASCII (validated when taken from the client, hex when generated).
    pub request_id: Bytes,
    pub client_ip: IpAddr,
    pub route: Option<usize>,
    pub params: Vec<(String, String)>,
    /// Error kind for the access log (`no_healthy_upstream`, `upstream_timeout`, ...).
    pub error_kind: Option<&'static str>,
    pub upstream_status: Option<u16>,
    pub status: u16,
}

impl RequestCtx {
    pub fn request_id_str(&self) -> &str {
        std::str::from_utf8(&self.request_id).unwrap_or("-")
    }
}

impl Stack {
    pub fn on_request(&self, _ctx: &mut RequestCtx, headers: &mut Headers) -> Flow {
        for p in &self.request {
            match p {
                RequestPolicy::Headers(e) => e.apply(headers),
            }
        }
        Flow::Continue
    }

    pub fn on_response(&self, _ctx: &mut RequestCtx, _status: &mut u16, headers: &mut Headers) {
        for p in self.response.iter().rev() {
            match p {
                ResponsePolicy::Headers(e) => e.apply(headers),
            }
        }
    }
}

/// The log phase: runs for every request. Observability (issue 7) hangs the access log and
/// metrics here.
pub fn on_log(ctx: &RequestCtx, method: &[u8], path: &str) {
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
}
