//! What one request carries through every step and phase: its id, the client address, the
//! route and path parameters, the verified identity, what policies granted or reported (rate
//! limit, CORS), the attempts made upstream, the byte counts, the trace span and the fields the
//! access log needs. Made once per request in `request::handle_request`, dropped at its end
//! (which frees any concurrency permit it holds).
//!
//! It also defines the small facts policies leave in it (`RateReport`, `CorsGrant`, `Permit`,
//! `Refunds`): policies depend on the context, never the other way round.

use std::net::IpAddr;

use bytes::Bytes;

use std::sync::Arc;

use crate::identity::Identity;

/// The parts of the request line that policies may read (the normalised path, the raw query).
#[derive(Debug, Clone, Copy)]
pub struct RequestInfo<'a> {
    pub method: &'a [u8],
    pub path: &'a str,
    pub query: Option<&'a str>,
}

/// What every phase may read and annotate about the current request.
#[derive(Debug)]
pub struct RequestCtx {
    /// ASCII (validated when taken from the client, hex when generated).
    pub request_id: Bytes,
    /// The header that carries it (`server.request_id.header`, lower-cased).
    pub request_id_header: Bytes,
    /// `request_id_header` as the header list recognises it (from the snapshot).
    pub request_id_known: crate::http1::Known,
    pub client_ip: IpAddr,
    pub route: Option<usize>,
    pub params: Vec<(String, String)>,
    /// Error kind for the access log (`no_healthy_upstream`, `upstream_timeout`, ...).
    pub error_kind: Option<crate::error::ErrorKind>,
    pub upstream_status: Option<u16>,
    pub status: u16,
    /// The most restrictive rate limit that reports itself, for the response headers.
    pub rate: Option<RateReport>,
    /// Who decided each rate limit that admitted this request (what a refund must undo).
    pub rate_refunds: Refunds,
    /// Concurrency slots held by this request; freed when the context is dropped.
    pub permits: Vec<Permit>,
    /// Headers for a response the gateway produces itself for this request (an error after the
    /// request phase), e.g. the rate-limit headers.
    pub local_headers: Vec<(Bytes, Bytes)>,
    /// The chosen target's index in the route's upstream (of the last attempt).
    pub target: Option<usize>,
    /// Attempts made upstream (retries and a hedged attempt included); 0 = none.
    pub attempts: u32,
    /// Time from the request sent upstream to the response head, in microseconds.
    pub upstream_us: Option<u64>,
    /// When the request head was complete (request duration, metrics and access log).
    pub started: tokio::time::Instant,
    /// Bytes of this request read from the client (head and body) and written to it; set just
    /// before the log phase.
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// Only filled when the access log is on (no cost otherwise): start time, host, query.
    pub log: Option<LogFields>,
    /// The request's SERVER span when tracing is on; ended by the log phase.
    pub span: Option<crate::trace::ServerSpan>,
    /// Who the request is, once an `auth` policy verified it.
    pub identity: Option<Box<Identity>>,
    /// The query to forward (and log) instead of the client's, when a policy removed
    /// credential parameters from it (empty = no query).
    pub forward_query: Option<String>,
    /// What the route's `cors` policy granted this (actual, non-preflight) request.
    pub cors: Option<CorsGrant>,
    /// The subject (RFC 4514, e.g. `CN=client,O=Example`) of the client certificate verified
    /// during the TLS handshake (listener `tls.client_auth`); `None` on plain connections or
    /// without a certificate. Also forwarded upstream as `X-Client-Cert-Subject`.
    pub client_cert_subject: Option<Bytes>,
    /// The request is gRPC or gRPC-Web (by its content type): the gateway's own answers are then
    /// gRPC statuses, and gRPC-Web is translated for HTTP/2 upstreams.
    pub grpc: Option<crate::grpc::GrpcKind>,
    /// The upstream's `grpc-status` (from its headers or trailers), for the access log.
    pub grpc_status: Option<u32>,
}

/// What the access log needs beyond the context's own fields.
#[derive(Debug)]
pub struct LogFields {
    pub host: String,
    /// The client's protocol: `HTTP/1.0`, `HTTP/1.1` or `HTTP/2`.
    pub protocol: &'static str,
    pub query: Option<String>,
}

impl RequestCtx {
    pub fn request_id_str(&self) -> &str {
        std::str::from_utf8(&self.request_id).unwrap_or("-")
    }
}

impl RequestCtx {
    /// A fresh context for a request with this id from `client_ip`.
    pub fn new(
        request_id: Bytes,
        (request_id_header, request_id_known): (Bytes, crate::http1::Known),
        client_ip: IpAddr,
    ) -> RequestCtx {
        RequestCtx {
            request_id,
            request_id_header,
            request_id_known,
            client_ip,
            route: None,
            params: Vec::new(),
            error_kind: None,
            upstream_status: None,
            status: 0,
            rate: None,
            rate_refunds: Default::default(),
            permits: Vec::new(),
            local_headers: Vec::new(),
            target: None,
            attempts: 0,
            upstream_us: None,
            started: tokio::time::Instant::now(),
            bytes_in: 0,
            bytes_out: 0,
            log: None,
            span: None,
            identity: None,
            forward_query: None,
            cors: None,
            client_cert_subject: None,
            grpc: None,
            grpc_status: None,
        }
    }

    /// The context of a call a route terminal makes for this request: the same request id,
    /// client and identity; its own attempts, target and statuses.
    pub fn for_call(&self) -> RequestCtx {
        let mut ctx = RequestCtx::new(
            self.request_id.clone(),
            (self.request_id_header.clone(), self.request_id_known),
            self.client_ip,
        );
        ctx.identity = self.identity.clone();
        ctx.client_cert_subject = self.client_cert_subject.clone();
        ctx
    }
}

/// The limit reported in the response headers of a request (the most restrictive one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateReport {
    /// Index of the reporting policy in its route's request phase.
    pub policy: usize,
    pub remaining: u64,
    pub reset_ns: u64,
}

impl RateReport {
    /// Whether `self` is more restrictive than `other`: fewer requests left, then a later reset.
    pub fn tighter_than(&self, other: &RateReport) -> bool {
        (self.remaining, std::cmp::Reverse(self.reset_ns)) < (other.remaining, std::cmp::Reverse(other.reset_ns))
    }
}

/// What the request phase granted an actual (non-preflight) CORS request.
#[derive(Debug, Clone)]
pub struct CorsGrant {
    /// `Access-Control-Allow-Origin`: the request's origin, or `*`.
    pub allow_origin: Bytes,
    pub credentials: bool,
}

/// Releases what a `Permit` holds (a concurrency limiter's slot).
pub trait Release: Send + Sync + std::fmt::Debug {
    fn release(&self, key: u64);
}

/// A held slot; dropping it frees the slot and wakes one waiter.
#[derive(Debug)]
pub struct Permit {
    owner: Arc<dyn Release>,
    key: u64,
}

impl Permit {
    pub fn new(owner: Arc<dyn Release>, key: u64) -> Permit {
        Permit { owner, key }
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.owner.release(self.key);
    }
}

/// What refunding each admitting rate limit of a request must undo: a 2-bit code per policy for
/// the first 64 policies of a route (no allocation per request; beyond 64, code 0). The rate
/// limit policy owns the meaning of the codes.
#[derive(Debug, Default, Clone, Copy)]
pub struct Refunds(u128);

impl Refunds {
    pub fn set(&mut self, i: usize, code: u8) {
        if i < 64 {
            self.0 = (self.0 & !(3 << (2 * i))) | (u128::from(code & 3) << (2 * i));
        }
    }

    pub fn get(&self, i: usize) -> u8 {
        if i < 64 {
            ((self.0 >> (2 * i)) & 3) as u8
        } else {
            0
        }
    }
}
