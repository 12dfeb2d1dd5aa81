//! The one error type of the data plane and its one mapping to an HTTP response.
//!
//! Invariants: every failure a client can see is a `GatewayError`; `to_response` is the only place
//! that turns one into a status, a stable `code` and the documented JSON body
//! `{"error": {"status", "code", "message", "request_id"}}`. Messages never include secrets or
//! upstream internals beyond the upstream's configured name.

use bytes::Bytes;

use crate::http1::parse::HeadError;

/// Who caused an error: decides logging level, metrics labels and whether a retry could help.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorSource {
    Client,
    Upstream,
    Gateway,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GatewayError {
    #[error("bad request: {0}")]
    BadRequest(String),
    #[error("request header fields too large")]
    HeaderTooLarge,
    #[error("request URI too long")]
    UriTooLong,
    #[error("request body larger than {limit} bytes")]
    BodyTooLarge { limit: u64 },
    #[error("request not received in time")]
    RequestTimeout,
    #[error("no route matches the request")]
    RouteNotFound,
    #[error("method not allowed")]
    MethodNotAllowed { allow: String },
    #[error("no healthy target in upstream `{upstream}`")]
    NoHealthyUpstream { upstream: String },
    #[error("could not connect to upstream `{upstream}`")]
    UpstreamConnect { upstream: String },
    /// The TLS handshake with an `https://` target failed (untrusted certificate, wrong name).
    #[error("TLS handshake with upstream `{upstream}` failed")]
    UpstreamTls { upstream: String },
    #[error("upstream `{upstream}` did not answer in time")]
    UpstreamTimeout { upstream: String },
    #[error("upstream `{upstream}` sent an invalid response")]
    UpstreamProtocol { upstream: String, detail: &'static str },
    /// The answer is larger than what the route's response body phase may buffer.
    #[error(
        "upstream `{upstream}` sent a response larger than {limit} bytes, the most this route's policies may buffer"
    )]
    UpstreamResponseTooLarge { upstream: String, limit: u64 },
    #[error("upstream `{upstream}` closed the connection")]
    UpstreamReset { upstream: String },
    #[error("the gateway is shutting down")]
    ShuttingDown,
    #[error("rate limit exceeded; retry in {retry_after} s")]
    RateLimited {
        /// Whole seconds, rounded up, until the request would be admitted (`Retry-After`).
        retry_after: u64,
    },
    #[error("too many requests in flight for this route; try again later")]
    ConcurrencyLimited,
    #[error("the rate limit cannot be checked right now; try again later")]
    RateLimitUnavailable,
    #[error("upstream `{upstream}` is failing; its circuit breaker is open, retry in {retry_after} s")]
    CircuitOpen {
        upstream: String,
        /// Whole seconds, rounded up, until the breaker lets probes through (`Retry-After`).
        retry_after: u64,
    },
    #[error("upstream `{upstream}` has too many requests in flight; try again later")]
    UpstreamOverloaded { upstream: String },
    #[error("the route's deadline passed before upstream `{upstream}` answered")]
    DeadlineExceeded { upstream: String },
    /// Identity missing or invalid (401). `message` says which, never why a signature failed.
    #[error("{message}")]
    Unauthorized {
        message: &'static str,
        /// The `WWW-Authenticate` value (one challenge per method of the route's `auth`).
        challenge: Bytes,
    },
    #[error("the authenticated identity is not allowed to use this route")]
    Forbidden,
    #[error("authentication cannot be checked right now; try again later")]
    AuthUnavailable,
    /// A CORS preflight from an origin, or for a method or headers, the route does not allow.
    #[error("cross-origin request not allowed")]
    CorsRejected,
    /// The client address is refused by an `ip_filter` (listener or route).
    #[error("requests from this address are not allowed")]
    IpDenied,
}

impl GatewayError {
    pub fn status(&self) -> u16 {
        match self {
            GatewayError::BadRequest(_) => 400,
            GatewayError::HeaderTooLarge => 431,
            GatewayError::UriTooLong => 414,
            GatewayError::BodyTooLarge { .. } => 413,
            GatewayError::RequestTimeout => 408,
            GatewayError::RouteNotFound => 404,
            GatewayError::MethodNotAllowed { .. } => 405,
            GatewayError::NoHealthyUpstream { .. }
            | GatewayError::ShuttingDown
            | GatewayError::ConcurrencyLimited
            | GatewayError::RateLimitUnavailable
            | GatewayError::CircuitOpen { .. }
            | GatewayError::UpstreamOverloaded { .. }
            | GatewayError::AuthUnavailable => 503,
            GatewayError::Unauthorized { .. } => 401,
            GatewayError::Forbidden | GatewayError::CorsRejected | GatewayError::IpDenied => 403,
            GatewayError::RateLimited { .. } => 429,
            GatewayError::UpstreamConnect { .. }
            | GatewayError::UpstreamTls { .. }
            | GatewayError::UpstreamProtocol { .. }
            | GatewayError::UpstreamResponseTooLarge { .. }
            | GatewayError::UpstreamReset { .. } => 502,
            GatewayError::UpstreamTimeout { .. } | GatewayError::DeadlineExceeded { .. } => 504,
        }
    }

    /// Stable machine-readable code, documented in docs/configuration.md.
    pub fn code(&self) -> &'static str {
        match self {
            GatewayError::BadRequest(_) => "bad_request",
            GatewayError::HeaderTooLarge => "header_too_large",
            GatewayError::UriTooLong => "uri_too_long",
            GatewayError::BodyTooLarge { .. } => "body_too_large",
            GatewayError::RequestTimeout => "request_timeout",
            GatewayError::RouteNotFound => "route_not_found",
            GatewayError::MethodNotAllowed { .. } => "method_not_allowed",
            GatewayError::NoHealthyUpstream { .. } => "no_healthy_upstream",
            GatewayError::UpstreamConnect { .. } => "upstream_connect_failed",
            GatewayError::UpstreamTls { .. } => "upstream_tls_failed",
            GatewayError::UpstreamTimeout { .. } => "upstream_timeout",
            GatewayError::UpstreamProtocol { .. } => "upstream_invalid_response",
            GatewayError::UpstreamReset { .. } => "upstream_reset",
            GatewayError::UpstreamResponseTooLarge { .. } => "upstream_response_too_large",
            GatewayError::ShuttingDown => "shutting_down",
            GatewayError::RateLimited { .. } => "rate_limited",
            GatewayError::ConcurrencyLimited => "concurrency_limited",
            GatewayError::RateLimitUnavailable => "rate_limit_unavailable",
            GatewayError::CircuitOpen { .. } => "circuit_open",
            GatewayError::UpstreamOverloaded { .. } => "upstream_overloaded",
            GatewayError::DeadlineExceeded { .. } => "deadline_exceeded",
            GatewayError::Unauthorized { .. } => "unauthorized",
            GatewayError::Forbidden => "forbidden",
            GatewayError::AuthUnavailable => "auth_unavailable",
            GatewayError::CorsRejected => "cors_rejected",
            GatewayError::IpDenied => "ip_denied",
        }
    }

    pub fn source(&self) -> ErrorSource {
        match self {
            GatewayError::BadRequest(_)
            | GatewayError::HeaderTooLarge
            | GatewayError::UriTooLong
            | GatewayError::BodyTooLarge { .. }
            | GatewayError::RequestTimeout
            | GatewayError::RouteNotFound
            | GatewayError::MethodNotAllowed { .. }
            | GatewayError::RateLimited { .. }
            | GatewayError::Unauthorized { .. }
            | GatewayError::Forbidden
            | GatewayError::CorsRejected
            | GatewayError::IpDenied => ErrorSource::Client,
            GatewayError::NoHealthyUpstream { .. }
            | GatewayError::UpstreamConnect { .. }
            | GatewayError::UpstreamTls { .. }
            | GatewayError::UpstreamTimeout { .. }
            | GatewayError::UpstreamProtocol { .. }
            | GatewayError::UpstreamReset { .. }
            | GatewayError::UpstreamResponseTooLarge { .. }
            | GatewayError::DeadlineExceeded { .. } => ErrorSource::Upstream,
            GatewayError::ShuttingDown
            | GatewayError::ConcurrencyLimited
            | GatewayError::RateLimitUnavailable
            | GatewayError::CircuitOpen { .. }
            | GatewayError::UpstreamOverloaded { .. }
            | GatewayError::AuthUnavailable => ErrorSource::Gateway,
        }
    }

    /// Whether refusing with this error gives back the quota earlier rate limits took for the
    /// request: yes for capacity and address refusals, no for identity refusals (the limits in
    /// front of `auth` are what slows down credential guessing).
    pub fn refunds_quota(&self) -> bool {
        matches!(
            self,
            GatewayError::RateLimited { .. }
                | GatewayError::RateLimitUnavailable
                | GatewayError::ConcurrencyLimited
                | GatewayError::IpDenied
        )
    }

    /// Client errors about framing leave the connection in an unknown state: close it.
    pub fn closes_connection(&self) -> bool {
        matches!(
            self,
            GatewayError::BadRequest(_)
                | GatewayError::HeaderTooLarge
                | GatewayError::UriTooLong
                | GatewayError::BodyTooLarge { .. }
                | GatewayError::RequestTimeout
                | GatewayError::ShuttingDown
        )
    }

    /// Maps this error to the response the client gets.
    pub fn to_response(&self, request_id: &str) -> LocalResponse {
        let body = serde_json::json!({
            "error": {
                "status": self.status(),
                "code": self.code(),
                "message": self.to_string(),
                "request_id": request_id,
            }
        });
        let mut r = LocalResponse::json(self.status(), body.to_string());
        match self {
            GatewayError::MethodNotAllowed { allow } => {
                r.headers.push((Bytes::from_static(b"allow"), Bytes::from(allow.clone())));
            }
            GatewayError::RateLimited { retry_after } => {
                r.headers.push((Bytes::from_static(b"retry-after"), Bytes::from(retry_after.to_string())));
            }
            // Redis is retried after a short backoff; a second is a sensible hint for clients.
            GatewayError::RateLimitUnavailable | GatewayError::AuthUnavailable => {
                r.headers.push((Bytes::from_static(b"retry-after"), Bytes::from_static(b"1")));
            }
            GatewayError::CircuitOpen { retry_after, .. } => {
                r.headers.push((Bytes::from_static(b"retry-after"), Bytes::from(retry_after.to_string())));
            }
            // Overload clears as soon as requests finish: a second is the shortest useful hint.
            GatewayError::UpstreamOverloaded { .. } => {
                r.headers.push((Bytes::from_static(b"retry-after"), Bytes::from_static(b"1")));
            }
            GatewayError::Unauthorized { challenge, .. } if !challenge.is_empty() => {
                r.headers.push((Bytes::from_static(b"www-authenticate"), challenge.clone()));
            }
            _ => {}
        }
        r.close = self.closes_connection();
        r
    }
}

impl From<HeadError> for GatewayError {
    fn from(e: HeadError) -> Self {
        match e {
            HeadError::HeadTooLarge | HeadError::TooManyHeaders => GatewayError::HeaderTooLarge,
            HeadError::UriTooLong => GatewayError::UriTooLong,
            HeadError::Malformed(m) | HeadError::Framing(m) => GatewayError::BadRequest(m.to_string()),
        }
    }
}

/// A response produced by the gateway itself (errors, admin, demo services, policies).
#[derive(Debug, Clone)]
pub struct LocalResponse {
    pub status: u16,
    pub headers: Vec<(Bytes, Bytes)>,
    pub body: Bytes,
    /// Close the client connection after this response.
    pub close: bool,
}

impl LocalResponse {
    pub fn new(status: u16, content_type: &'static str, body: impl Into<Bytes>) -> LocalResponse {
        LocalResponse {
            status,
            headers: vec![(Bytes::from_static(b"content-type"), Bytes::from_static(content_type.as_bytes()))],
            body: body.into(),
            close: false,
        }
    }

    pub fn json(status: u16, body: impl Into<Bytes>) -> LocalResponse {
        LocalResponse::new(status, "application/json", body)
    }

    pub fn text(status: u16, body: impl Into<Bytes>) -> LocalResponse {
        LocalResponse::new(status, "text/plain; charset=utf-8", body)
    }

    pub fn header(mut self, name: &'static str, value: impl Into<Bytes>) -> LocalResponse {
        self.headers.push((Bytes::from_static(name.as_bytes()), value.into()));
        self
    }

    /// Serialises status line, headers, framing and body for an HTTP/1.x client.
    pub fn write_to(&self, out: &mut Vec<u8>, extra: &[(&str, &[u8])], head_only: bool) {
        out.extend_from_slice(b"HTTP/1.1 ");
        out.extend_from_slice(itoa_u16(self.status).as_bytes());
        out.push(b' ');
        out.extend_from_slice(crate::http1::reason(self.status).as_bytes());
        out.extend_from_slice(b"\r\n");
        for (n, v) in &self.headers {
            out.extend_from_slice(n);
            out.extend_from_slice(b": ");
            out.extend_from_slice(v);
            out.extend_from_slice(b"\r\n");
        }
        for (n, v) in extra {
            out.extend_from_slice(n.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(v);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"content-length: ");
        out.extend_from_slice(self.body.len().to_string().as_bytes());
        out.extend_from_slice(b"\r\n");
        if self.close {
            out.extend_from_slice(b"connection: close\r\n");
        }
        out.extend_from_slice(b"\r\n");
        if !head_only {
            out.extend_from_slice(&self.body);
        }
    }
}

fn itoa_u16(n: u16) -> String {
    n.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_body_shape() {
        let r = GatewayError::NoHealthyUpstream { upstream: "users".into() }.to_response("abc");
        assert_eq!(r.status, 503);
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(v["error"]["code"], "no_healthy_upstream");
        assert_eq!(v["error"]["status"], 503);
        assert_eq!(v["error"]["request_id"], "abc");
        assert!(v["error"]["message"].as_str().unwrap().contains("users"));
    }

    #[test]
    fn rate_limited_shape() {
        let e = GatewayError::RateLimited { retry_after: 3 };
        assert_eq!((e.status(), e.code(), e.source()), (429, "rate_limited", ErrorSource::Client));
        assert!(!e.closes_connection());
        let r = e.to_response("id");
        assert!(r.headers.iter().any(|(n, v)| &n[..] == b"retry-after" && &v[..] == b"3"));
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(v["error"]["code"], "rate_limited");
        let c = GatewayError::ConcurrencyLimited;
        assert_eq!((c.status(), c.code()), (503, "concurrency_limited"));
        let u = GatewayError::RateLimitUnavailable;
        assert_eq!((u.status(), u.code(), u.source()), (503, "rate_limit_unavailable", ErrorSource::Gateway));
        let r = u.to_response("id");
        assert!(r.headers.iter().any(|(n, v)| &n[..] == b"retry-after" && &v[..] == b"1"));
    }

    #[test]
    fn resilience_errors() {
        let e = GatewayError::CircuitOpen { upstream: "users".into(), retry_after: 4 };
        assert_eq!((e.status(), e.code(), e.source()), (503, "circuit_open", ErrorSource::Gateway));
        let r = e.to_response("id");
        assert!(r.headers.iter().any(|(n, v)| &n[..] == b"retry-after" && &v[..] == b"4"));
        assert!(!r.close);
        let o = GatewayError::UpstreamOverloaded { upstream: "users".into() };
        assert_eq!((o.status(), o.code()), (503, "upstream_overloaded"));
        let d = GatewayError::DeadlineExceeded { upstream: "users".into() };
        assert_eq!((d.status(), d.code(), d.source()), (504, "deadline_exceeded", ErrorSource::Upstream));
    }

    #[test]
    fn auth_errors() {
        let e = GatewayError::Unauthorized { message: "no", challenge: Bytes::from_static(b"Bearer realm=\"g\"") };
        assert_eq!((e.status(), e.code(), e.source()), (401, "unauthorized", ErrorSource::Client));
        let r = e.to_response("id");
        assert!(r.headers.iter().any(|(n, v)| &n[..] == b"www-authenticate" && &v[..] == b"Bearer realm=\"g\""));
        assert_eq!((GatewayError::Forbidden.status(), GatewayError::Forbidden.code()), (403, "forbidden"));
        assert_eq!(GatewayError::AuthUnavailable.status(), 503);
        assert!(!GatewayError::Forbidden.closes_connection());
    }

    #[test]
    fn allow_header() {
        let r = GatewayError::MethodNotAllowed { allow: "GET, HEAD".into() }.to_response("x");
        assert!(r.headers.iter().any(|(n, v)| &n[..] == b"allow" && &v[..] == b"GET, HEAD"));
        let mut out = Vec::new();
        r.write_to(&mut out, &[], false);
        assert!(out.starts_with(b"HTTP/1.1 405 Method Not Allowed\r\n"));
    }
}
