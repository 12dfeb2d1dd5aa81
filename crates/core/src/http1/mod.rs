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
pub use headers::{Headers, Known};
pub use parse::{parse_request, parse_response, BodyKind, HeadError, HeadLimits, RequestHead, ResponseHead};

/// Is `n` a hop-by-hop field (RFC 9110 §7.6.1) or a framing field the proxy re-creates itself?
pub fn is_hop_by_hop(n: &[u8]) -> bool {
    Known::of(n).is_hop_by_hop()
}

/// Removes hop-by-hop fields and every field named in `Connection`.
pub fn strip_hop_by_hop(h: &mut Headers) {
    // Common case: `Connection` only says `keep-alive` or `close`, which name nothing extra.
    if h.strip_plain_hop_by_hop() {
        return;
    }
    let named: Vec<Vec<u8>> = h
        .get_all_known(Known::Connection)
        .flat_map(|v| v.split(|&b| b == b','))
        .map(|t| headers::trim(t).to_ascii_lowercase())
        .filter(|t| !t.is_empty())
        .collect();
    h.remove_fields(|k, n| k.is_hop_by_hop() || named.iter().any(|x| n.eq_ignore_ascii_case(x)));
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

/// `%XX` (upper-case hex) for every byte of `v` that `keep` does not accept. The keep-set is
/// the caller's: form values keep only unreserved characters, `grpc-message` keeps printable
/// ASCII but `%`.
pub fn percent_encode(v: &[u8], keep: impl Fn(u8) -> bool) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(v.len());
    for &b in v {
        if keep(b) {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(HEX[(b >> 4) as usize] as char);
            out.push(HEX[(b & 0xf) as usize] as char);
        }
    }
    out
}

/// `%XX` escapes decoded; anything else (a lone `%`, bad hex, `+`) kept as is. For query
/// parameters and `k=v` lists, never for paths (those follow `normalize`'s stricter rules).
pub fn percent_decode(v: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(v.len());
    let mut i = 0;
    while i < v.len() {
        if v[i] == b'%' && i + 2 < v.len() {
            let h = (v[i + 1] as char).to_digit(16);
            let l = (v[i + 2] as char).to_digit(16);
            if let (Some(h), Some(l)) = (h, l) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(v[i]);
        i += 1;
    }
    out
}

/// Whether a response with this status may carry a body (RFC 9110 §6.4.1: not 1xx, 204, 304).
pub fn may_have_body(status: u16) -> bool {
    status >= 200 && status != 204 && status != 304
}

/// Appends the decimal form of `n` without allocating.
pub(crate) fn push_u64(out: &mut Vec<u8>, mut n: u64) {
    let mut tmp = [0u8; 20];
    let mut i = tmp.len();
    loop {
        i -= 1;
        tmp[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&tmp[i..]);
}
