//! Gatehouse's own HTTP/1.1 codec: strict head parsing, streaming body framing, and the few
//! helpers both sides of the proxy share.
//!
//! Why our own and not hyper's: a proxy must refuse ambiguous framing *before* anything reaches
//! an upstream (hyper silently prefers Transfer-Encoding over Content-Length), must forward exactly
//! what it authorised, and must not pay for building a `HeaderMap` per request on the hot path.
//! HTTP/2 (the protocols issue) will use hyper/h2 and feed the same pipeline.

pub mod chunked;
pub mod headers;
pub mod parse;

pub use chunked::{BodyDecoder, BodyError, Decoded};
pub use headers::Headers;
pub use parse::{parse_request, parse_response, BodyKind, HeadError, HeadLimits, RequestHead, ResponseHead};

/// Hop-by-hop fields (RFC 9110 §7.6.1) plus the framing fields the proxy re-creates itself.
pub const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "proxy-authorization",
    "proxy-authenticate",
    "content-length",
];

/// Removes hop-by-hop fields and every field named in `Connection`.
pub fn strip_hop_by_hop(h: &mut Headers) {
    let mut named: Vec<Vec<u8>> = Vec::new();
    for v in h.get_all("connection") {
        for t in v.split(|&b| b == b',') {
            let t = headers::trim(t);
            if !t.is_empty() {
                named.push(t.to_ascii_lowercase());
            }
        }
    }
    h.remove_where(|n| {
        HOP_BY_HOP.iter().any(|hb| n.eq_ignore_ascii_case(hb.as_bytes()))
            || named.iter().any(|x| n.eq_ignore_ascii_case(x))
    });
}

/// The standard reason phrase for the statuses the gateway produces itself.
pub fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Content Too Large",
        414 => "URI Too Long",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "",
    }
}
