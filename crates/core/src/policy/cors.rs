//! The `cors` route policy: preflights answered at the gateway, allow headers added to responses.
//!
//! Request phase (`check`):
//! - no `Origin` header: not a CORS request, nothing happens (the response still gets
//!   `Vary: Origin`, since it would differ with one);
//! - a preflight (`OPTIONS` with `Origin` and `Access-Control-Request-Method`): answered here,
//!   never forwarded. Allowed origin, method and requested headers → 200 with the allow headers;
//!   anything else → 403 `cors_rejected` without any `Access-Control-Allow-*` header (the browser
//!   then fails the preflight; the status makes the refusal visible in logs and devtools);
//! - an actual request from an allowed origin: the grant is kept in `RequestCtx::cors` and the
//!   response phase adds `Access-Control-Allow-Origin` (+ `-Credentials`, `-Expose-Headers`). A
//!   request from any other origin is forwarded unchanged and its response gets no CORS headers.
//!
//! Invariants:
//! - Credentials are never granted to an origin matched only by `*`: such a match answers the
//!   literal `*` and no `Access-Control-Allow-Credentials` (validation also refuses `*` together
//!   with `allow_credentials`). An origin is reflected only when an exact entry or a pattern
//!   matched it; `null` and requests with several `Origin` fields match nothing.
//! - On a route with `cors`, the gateway owns the CORS response headers: the upstream's
//!   `Access-Control-*` response fields are removed, so a backend that reflects any origin cannot
//!   widen what the policy allows.
//! - Everything (patterns, header values) is compiled at load; per request only byte comparisons.

use bytes::Bytes;
use gatehouse_config::{Cors, OriginPattern, Route};

pub use crate::ctx::CorsGrant;

use super::{CompilePolicy, Flow, Policy, PolicyEnv, StateId};
use crate::ctx::{RequestCtx, RequestInfo};
use crate::error::{CompileError, GatewayError, LocalResponse};
use crate::http1::headers::trim;
use crate::http1::Headers;

/// Response fields the policy owns on its route (the upstream's copies are removed).
const OWNED: &[&str] = &[
    "access-control-allow-origin",
    "access-control-allow-credentials",
    "access-control-expose-headers",
    "access-control-allow-methods",
    "access-control-allow-headers",
    "access-control-max-age",
];

#[derive(Debug)]
pub struct CorsPolicy {
    /// Exact entries and patterns (reflected when matched).
    origins: Vec<OriginPattern>,
    /// `*` was listed (answered as `*`, never with credentials).
    any: bool,
    credentials: bool,
    /// Upper-cased methods.
    methods: Vec<String>,
    methods_value: Bytes,
    /// Lower-cased header names.
    headers: Vec<String>,
    headers_value: Option<Bytes>,
    expose_value: Option<Bytes>,
    max_age_value: Option<Bytes>,
}

impl CorsPolicy {
    /// Compiles a validated `cors` policy (entries that do not parse were refused by validation
    /// and are skipped here, so a bad entry can only narrow what is allowed).
    pub fn compile(c: &Cors) -> CorsPolicy {
        let mut origins = Vec::new();
        let mut any = false;
        for o in &c.allow_origins {
            match OriginPattern::parse(o) {
                Ok(OriginPattern::Any) => any = true,
                Ok(p) => origins.push(p),
                Err(_) => {}
            }
        }
        let methods: Vec<String> = c.allow_methods.iter().map(|m| m.to_ascii_uppercase()).collect();
        let headers: Vec<String> = c.allow_headers.iter().map(|h| h.to_ascii_lowercase()).collect();
        let join = |v: &[String]| (!v.is_empty()).then(|| Bytes::from(v.join(", ")));
        CorsPolicy {
            origins,
            any,
            credentials: c.allow_credentials,
            methods_value: Bytes::from(methods.join(", ")),
            methods,
            headers_value: join(&headers),
            headers,
            expose_value: join(&c.expose_headers),
            max_age_value: c.max_age.map(|d| Bytes::from(d.0.as_secs().to_string())),
        }
    }

    /// The grant for `origin`, if any. Reflection needs an exact or pattern match; `*` alone
    /// answers `*` and never carries credentials.
    fn grant(&self, origin: &[u8]) -> Option<CorsGrant> {
        if self.origins.iter().any(|p| p.matches(origin)) {
            return Some(CorsGrant { allow_origin: Bytes::copy_from_slice(origin), credentials: self.credentials });
        }
        if self.any && !origin.eq_ignore_ascii_case(b"null") {
            return Some(CorsGrant { allow_origin: Bytes::from_static(b"*"), credentials: false });
        }
        None
    }

    /// Whether this request is a CORS preflight (the router matches it by the requested method).
    pub fn is_preflight(method: &[u8], headers: &Headers) -> bool {
        method == b"OPTIONS" && headers.contains("origin") && headers.contains("access-control-request-method")
    }

    /// The request phase: answers preflights, records the grant of an actual request.
    pub fn check(&self, method: &[u8], headers: &Headers, grant_out: &mut Option<CorsGrant>, request_id: &str) -> Flow {
        let mut origins = headers.get_all("origin");
        let Some(origin) = origins.next() else { return Flow::Continue };
        // Several `Origin` fields: no browser sends that; grant nothing.
        let grant = if origins.next().is_some() { None } else { self.grant(origin) };
        if !Self::is_preflight(method, headers) {
            *grant_out = grant;
            return Flow::Continue;
        }
        let vary = (
            Bytes::from_static(b"vary"),
            Bytes::from_static(b"Origin, Access-Control-Request-Method, Access-Control-Request-Headers"),
        );
        let refuse = || {
            let mut r = GatewayError::CorsRejected.to_response(request_id);
            r.headers.push(vary.clone());
            Flow::Respond(r)
        };
        let Some(grant) = grant else { return refuse() };
        let method_ok = headers
            .get("access-control-request-method")
            .is_some_and(|m| self.methods.iter().any(|a| a.as_bytes().eq_ignore_ascii_case(trim(m))));
        let headers_ok = headers.get_all("access-control-request-headers").all(|v| {
            v.split(|&b| b == b',')
                .map(trim)
                .filter(|h| !h.is_empty())
                .all(|h| self.headers.iter().any(|a| a.as_bytes().eq_ignore_ascii_case(h)))
        });
        if !method_ok || !headers_ok {
            return refuse();
        }
        let mut r = LocalResponse { status: 200, headers: Vec::with_capacity(7), body: Bytes::new(), close: false };
        r.headers.push((Bytes::from_static(b"access-control-allow-origin"), grant.allow_origin));
        if grant.credentials {
            r.headers.push((Bytes::from_static(b"access-control-allow-credentials"), Bytes::from_static(b"true")));
        }
        r.headers.push((Bytes::from_static(b"access-control-allow-methods"), self.methods_value.clone()));
        if let Some(h) = &self.headers_value {
            r.headers.push((Bytes::from_static(b"access-control-allow-headers"), h.clone()));
        }
        if let Some(m) = &self.max_age_value {
            r.headers.push((Bytes::from_static(b"access-control-max-age"), m.clone()));
        }
        r.headers.push(vary);
        Flow::Respond(r)
    }

    /// Headers for a response to an actual request (`grant` from `check`): always `Vary: Origin`,
    /// the allow headers only when granted.
    pub fn response_headers(&self, grant: Option<&CorsGrant>, mut put: impl FnMut(Bytes, Bytes)) {
        put(Bytes::from_static(b"vary"), Bytes::from_static(b"Origin"));
        let Some(g) = grant else { return };
        put(Bytes::from_static(b"access-control-allow-origin"), g.allow_origin.clone());
        if g.credentials {
            put(Bytes::from_static(b"access-control-allow-credentials"), Bytes::from_static(b"true"));
        }
        if let Some(e) = &self.expose_value {
            put(Bytes::from_static(b"access-control-expose-headers"), e.clone());
        }
    }

    /// Removes the upstream's CORS fields (the policy owns them on this route).
    pub fn strip_upstream(h: &mut Headers) {
        h.remove_where(|n| OWNED.iter().any(|o| n.eq_ignore_ascii_case(o.as_bytes())));
    }
}

/// A `cors` keeps no state across reloads.
impl CompilePolicy for Cors {
    type Runtime = Box<CorsPolicy>;

    fn fingerprint(&self) -> String {
        "cors".into()
    }

    fn compile(&self, _: &mut PolicyEnv<'_>, _: &Route, _: &StateId) -> Result<Box<CorsPolicy>, CompileError> {
        Ok(Box::new(CorsPolicy::compile(self)))
    }
}

/// CORS's side of the policy contract: a preflight is answered here (200 with the allow headers,
/// or 403 `cors_rejected`); an actual request's grant is recorded, and its headers go on the
/// upstream's answer (replacing the upstream's own `Access-Control-*` fields) and on any answer
/// the gateway makes itself, so the page can read a 401, 429 or 502.
impl Policy for CorsPolicy {
    async fn on_request(&self, ctx: &mut RequestCtx, _: usize, headers: &mut Headers, req: &RequestInfo<'_>) -> Flow {
        let mut grant = None;
        let flow = self.check(req.method, headers, &mut grant, ctx.request_id_str());
        ctx.cors = grant;
        match flow {
            Flow::Respond(r) if r.status >= 400 => {
                // The refusal keeps the policy's own fields (`Vary`); the exit renders the error.
                ctx.local_headers.extend(r.headers);
                Flow::Fail(GatewayError::CorsRejected)
            }
            f => f,
        }
    }

    fn on_response(&self, ctx: &mut RequestCtx, _: usize, _: &mut u16, headers: &mut Headers) {
        CorsPolicy::strip_upstream(headers);
        self.response_headers(ctx.cors.as_ref(), |n, v| headers.append(n, v));
    }

    fn local_headers(&self, ctx: &RequestCtx, _: usize, put: &mut dyn FnMut(Bytes, Bytes)) {
        if ctx.cors.is_some() {
            self.response_headers(ctx.cors.as_ref(), put);
        }
    }
}
