//! The one error type of the data plane and its one mapping to an HTTP response.
//!
//! Invariants: every failure a client can see is a `GatewayError`; `to_response` is the only place
//! that turns one into a status, a stable `code` and the documented JSON body
//! `{"error": {"status", "code", "message", "request_id"}}`. Messages never include secrets or
//! upstream internals beyond the upstream's configured name.

use bytes::Bytes;

use crate::http1::parse::HeadError;

/// The `UpstreamProtocol` detail of an upstream that switched protocols unasked.
pub const UNSOLICITED_101: &str = "unsolicited 101";

/// Who caused an error: decides logging level, metrics labels and whether a retry could help.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorSource {
    Client,
    Upstream,
    Gateway,
}

/// The one vocabulary of `error_kind`: what the access log, the request's span and the debug
/// event say about how a request ended. Every `GatewayError` has its kind (`GatewayError::kind`,
/// whose string is the answer's `code`); the others say how a request ended without an error
/// answer of the gateway's own, or refine one (which credential problem a 401 was). Each is
/// documented in docs/configuration.md ("Error responses"); a test keeps that table complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The gateway answered `GatewayError::BadRequest`.
    BadRequest,
    /// The gateway answered `GatewayError::HeaderTooLarge`.
    HeaderTooLarge,
    /// The gateway answered `GatewayError::ExpectationFailed`.
    ExpectationFailed,
    /// The gateway answered `GatewayError::UriTooLong`.
    UriTooLong,
    /// The gateway answered `GatewayError::BodyTooLarge`.
    BodyTooLarge,
    /// The gateway answered `GatewayError::RequestTimeout`.
    RequestTimeout,
    /// The gateway answered `GatewayError::RouteNotFound`.
    RouteNotFound,
    /// The gateway answered `GatewayError::MethodNotAllowed`.
    MethodNotAllowed,
    /// The gateway answered `GatewayError::NoHealthyUpstream`.
    NoHealthyUpstream,
    /// The gateway answered `GatewayError::UpstreamConnect`.
    UpstreamConnectFailed,
    /// The gateway answered `GatewayError::UpstreamTls`.
    UpstreamTlsFailed,
    /// The gateway answered `GatewayError::UpstreamTimeout`.
    UpstreamTimeout,
    /// The gateway answered `GatewayError::UpstreamProtocol`.
    UpstreamInvalidResponse,
    /// The gateway answered `GatewayError::UpstreamReset`.
    UpstreamReset,
    /// The gateway answered `GatewayError::UpstreamResponseTooLarge`.
    UpstreamResponseTooLarge,
    /// The gateway answered `GatewayError::ShuttingDown`.
    ShuttingDown,
    /// The gateway answered `GatewayError::RateLimited`.
    RateLimited,
    /// The gateway answered `GatewayError::ConcurrencyLimited`.
    ConcurrencyLimited,
    /// The gateway answered `GatewayError::RateLimitUnavailable`.
    RateLimitUnavailable,
    /// The gateway answered `GatewayError::CircuitOpen`.
    CircuitOpen,
    /// The gateway answered `GatewayError::UpstreamOverloaded`.
    UpstreamOverloaded,
    /// The gateway answered `GatewayError::DeadlineExceeded`.
    DeadlineExceeded,
    /// The gateway answered `GatewayError::Unauthorized`.
    Unauthorized,
    /// The gateway answered `GatewayError::Forbidden`.
    Forbidden,
    /// The gateway answered `GatewayError::AuthUnavailable`.
    AuthUnavailable,
    /// The gateway answered `GatewayError::CorsRejected`.
    CorsRejected,
    /// The gateway answered `GatewayError::IpDenied`.
    IpDenied,
    /// The listener's `redirect_https` answered with a redirect to `https://`.
    RedirectHttps,
    /// A listener with `escaped_slashes: unescape_and_redirect` redirected to the decoded path.
    RedirectUnescaped,
    /// The upstream's body broke after the answer had started: the client's connection (or stream) was cut.
    UpstreamTruncated,
    /// An HTTP/2 client reset its stream while the gateway waited on the upstream.
    ClientReset,
    /// The answer could not be completed (the client went away, or its connection failed mid-answer).
    ResponseAborted,
    /// An upgraded connection (WebSocket) idled past the route's `tunnel_idle_timeout`.
    TunnelIdleTimeout,
    /// An upgraded connection was closed by a drain (`server.drain_timeout`).
    TunnelDrained,
    /// `auth` found no credential (answered 401 `unauthorized`).
    CredentialsMissing,
    /// `auth` found a credential that does not verify (401 `unauthorized`).
    CredentialsInvalid,
    /// `auth` found a token outside its validity period (401 `unauthorized`).
    TokenExpired,
    /// `auth` found several credentials for one method (401 `unauthorized`).
    CredentialsMultiple,
    /// `external_auth` said no; its own answer was relayed.
    ExternalAuthDenied,
}

impl ErrorKind {
    /// Every kind (for the documentation check).
    pub const ALL: &'static [ErrorKind] = &[
        ErrorKind::BadRequest,
        ErrorKind::HeaderTooLarge,
        ErrorKind::ExpectationFailed,
        ErrorKind::UriTooLong,
        ErrorKind::BodyTooLarge,
        ErrorKind::RequestTimeout,
        ErrorKind::RouteNotFound,
        ErrorKind::MethodNotAllowed,
        ErrorKind::NoHealthyUpstream,
        ErrorKind::UpstreamConnectFailed,
        ErrorKind::UpstreamTlsFailed,
        ErrorKind::UpstreamTimeout,
        ErrorKind::UpstreamInvalidResponse,
        ErrorKind::UpstreamReset,
        ErrorKind::UpstreamResponseTooLarge,
        ErrorKind::ShuttingDown,
        ErrorKind::RateLimited,
        ErrorKind::ConcurrencyLimited,
        ErrorKind::RateLimitUnavailable,
        ErrorKind::CircuitOpen,
        ErrorKind::UpstreamOverloaded,
        ErrorKind::DeadlineExceeded,
        ErrorKind::Unauthorized,
        ErrorKind::Forbidden,
        ErrorKind::AuthUnavailable,
        ErrorKind::CorsRejected,
        ErrorKind::IpDenied,
        ErrorKind::RedirectHttps,
        ErrorKind::RedirectUnescaped,
        ErrorKind::UpstreamTruncated,
        ErrorKind::ClientReset,
        ErrorKind::ResponseAborted,
        ErrorKind::TunnelIdleTimeout,
        ErrorKind::TunnelDrained,
        ErrorKind::CredentialsMissing,
        ErrorKind::CredentialsInvalid,
        ErrorKind::TokenExpired,
        ErrorKind::CredentialsMultiple,
        ErrorKind::ExternalAuthDenied,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::BadRequest => "bad_request",
            ErrorKind::HeaderTooLarge => "header_too_large",
            ErrorKind::ExpectationFailed => "expectation_failed",
            ErrorKind::UriTooLong => "uri_too_long",
            ErrorKind::BodyTooLarge => "body_too_large",
            ErrorKind::RequestTimeout => "request_timeout",
            ErrorKind::RouteNotFound => "route_not_found",
            ErrorKind::MethodNotAllowed => "method_not_allowed",
            ErrorKind::NoHealthyUpstream => "no_healthy_upstream",
            ErrorKind::UpstreamConnectFailed => "upstream_connect_failed",
            ErrorKind::UpstreamTlsFailed => "upstream_tls_failed",
            ErrorKind::UpstreamTimeout => "upstream_timeout",
            ErrorKind::UpstreamInvalidResponse => "upstream_invalid_response",
            ErrorKind::UpstreamReset => "upstream_reset",
            ErrorKind::UpstreamResponseTooLarge => "upstream_response_too_large",
            ErrorKind::ShuttingDown => "shutting_down",
            ErrorKind::RateLimited => "rate_limited",
            ErrorKind::ConcurrencyLimited => "concurrency_limited",
            ErrorKind::RateLimitUnavailable => "rate_limit_unavailable",
            ErrorKind::CircuitOpen => "circuit_open",
            ErrorKind::UpstreamOverloaded => "upstream_overloaded",
            ErrorKind::DeadlineExceeded => "deadline_exceeded",
            ErrorKind::Unauthorized => "unauthorized",
            ErrorKind::Forbidden => "forbidden",
            ErrorKind::AuthUnavailable => "auth_unavailable",
            ErrorKind::CorsRejected => "cors_rejected",
            ErrorKind::IpDenied => "ip_denied",
            ErrorKind::RedirectHttps => "redirect_https",
            ErrorKind::RedirectUnescaped => "redirect_unescaped",
            ErrorKind::UpstreamTruncated => "upstream_truncated",
            ErrorKind::ClientReset => "client_reset",
            ErrorKind::ResponseAborted => "response_aborted",
            ErrorKind::TunnelIdleTimeout => "tunnel_idle_timeout",
            ErrorKind::TunnelDrained => "tunnel_drained",
            ErrorKind::CredentialsMissing => "credentials_missing",
            ErrorKind::CredentialsInvalid => "credentials_invalid",
            ErrorKind::TokenExpired => "token_expired",
            ErrorKind::CredentialsMultiple => "credentials_multiple",
            ErrorKind::ExternalAuthDenied => "external_auth_denied",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GatewayError {
    #[error("bad request: {0}")]
    BadRequest(String),
    #[error("request header fields too large")]
    HeaderTooLarge,
    /// An `Expect` the gateway cannot meet (anything but `100-continue`).
    #[error("the expectation in `Expect` cannot be met (only `100-continue` is supported)")]
    ExpectationFailed,
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
            GatewayError::ExpectationFailed => 417,
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
        self.kind().as_str()
    }

    /// The error's kind in the one vocabulary of `error_kind`s.
    pub fn kind(&self) -> ErrorKind {
        match self {
            GatewayError::BadRequest(_) => ErrorKind::BadRequest,
            GatewayError::HeaderTooLarge => ErrorKind::HeaderTooLarge,
            GatewayError::ExpectationFailed => ErrorKind::ExpectationFailed,
            GatewayError::UriTooLong => ErrorKind::UriTooLong,
            GatewayError::BodyTooLarge { .. } => ErrorKind::BodyTooLarge,
            GatewayError::RequestTimeout => ErrorKind::RequestTimeout,
            GatewayError::RouteNotFound => ErrorKind::RouteNotFound,
            GatewayError::MethodNotAllowed { .. } => ErrorKind::MethodNotAllowed,
            GatewayError::NoHealthyUpstream { .. } => ErrorKind::NoHealthyUpstream,
            GatewayError::UpstreamConnect { .. } => ErrorKind::UpstreamConnectFailed,
            GatewayError::UpstreamTls { .. } => ErrorKind::UpstreamTlsFailed,
            GatewayError::UpstreamTimeout { .. } => ErrorKind::UpstreamTimeout,
            GatewayError::UpstreamProtocol { .. } => ErrorKind::UpstreamInvalidResponse,
            GatewayError::UpstreamReset { .. } => ErrorKind::UpstreamReset,
            GatewayError::UpstreamResponseTooLarge { .. } => ErrorKind::UpstreamResponseTooLarge,
            GatewayError::ShuttingDown => ErrorKind::ShuttingDown,
            GatewayError::RateLimited { .. } => ErrorKind::RateLimited,
            GatewayError::ConcurrencyLimited => ErrorKind::ConcurrencyLimited,
            GatewayError::RateLimitUnavailable => ErrorKind::RateLimitUnavailable,
            GatewayError::CircuitOpen { .. } => ErrorKind::CircuitOpen,
            GatewayError::UpstreamOverloaded { .. } => ErrorKind::UpstreamOverloaded,
            GatewayError::DeadlineExceeded { .. } => ErrorKind::DeadlineExceeded,
            GatewayError::Unauthorized { .. } => ErrorKind::Unauthorized,
            GatewayError::Forbidden => ErrorKind::Forbidden,
            GatewayError::AuthUnavailable => ErrorKind::AuthUnavailable,
            GatewayError::CorsRejected => ErrorKind::CorsRejected,
            GatewayError::IpDenied => ErrorKind::IpDenied,
        }
    }

    pub fn source(&self) -> ErrorSource {
        match self {
            GatewayError::BadRequest(_)
            | GatewayError::HeaderTooLarge
            | GatewayError::ExpectationFailed
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
                | GatewayError::ExpectationFailed
                | GatewayError::UriTooLong
                | GatewayError::BodyTooLarge { .. }
                | GatewayError::RequestTimeout
                | GatewayError::ShuttingDown
                // After a `101` the upstream did not have to send, the protocol state of the
                // exchange is unknown: the client connection is not reused.
                | GatewayError::UpstreamProtocol { detail: UNSOLICITED_101, .. }
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
            HeadError::Expectation => GatewayError::ExpectationFailed,
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

/// A config that validation passed but that cannot be compiled (a file that vanished, a Redis
/// client that cannot be built): the reload fails and the running snapshot stays.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CompileError(pub String);

#[cfg(test)]
mod tests {
    use super::*;

    /// Every `error_kind` is documented in the error tables of docs/configuration.md.
    #[test]
    fn every_error_kind_is_documented() {
        let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/configuration.md"))
            .expect("docs/configuration.md");
        let missing: Vec<&str> =
            ErrorKind::ALL.iter().map(|k| k.as_str()).filter(|k| !doc.contains(&format!("| `{k}` |"))).collect();
        assert!(missing.is_empty(), "error kinds missing from the tables in docs/configuration.md: {missing:?}");
    }

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
