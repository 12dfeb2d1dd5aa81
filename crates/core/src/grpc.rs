//! gRPC at the edge: recognising gRPC and gRPC-Web requests, answering gateway errors the way a
//! gRPC client can read them, and translating gRPC-Web (binary and base64 text) to gRPC.
//!
//! Invariants:
//! - A request is gRPC by its `content-type` alone (`application/grpc` or `application/grpc+…`);
//!   gRPC-Web by `application/grpc-web[-text][+…]`. Nothing else is ever translated.
//! - Every response the gateway produces itself for a gRPC or gRPC-Web request is a
//!   "trailers-only" gRPC response: HTTP 200, the gRPC content type, `grpc-status` and a
//!   percent-encoded `grpc-message` in the headers, and no body, so clients report a gRPC status
//!   instead of failing to parse an HTML/JSON body. The HTTP status and stable error code stay in
//!   the access log and metrics (recorded before the conversion).
//! - gRPC-Web responses end with the upstream's trailers as one length-prefixed frame whose
//!   flag byte is 0x80 (the gRPC-Web protocol), after every data frame; text mode base64-encodes
//!   the whole body as one continuous base64 string (3-byte groups carried across chunks).

use base64::Engine;
use bytes::{BufMut, Bytes, BytesMut};

use crate::error::{ErrorKind, LocalResponse};
use crate::http1::Headers;

/// What kind of gRPC a request is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrpcKind {
    /// Native gRPC (HTTP/2).
    Grpc,
    /// gRPC-Web, binary frames.
    Web,
    /// gRPC-Web, base64 text.
    WebText,
}

impl GrpcKind {
    pub fn is_web(self) -> bool {
        self != GrpcKind::Grpc
    }
}

/// The gRPC kind of a request with this `content-type`, if any.
pub fn classify(content_type: &[u8]) -> Option<GrpcKind> {
    let base = content_type.split(|&b| b == b';').next().unwrap_or_default();
    let base = crate::http1::headers::trim(base);
    let (main, _suffix) = match base.iter().position(|&b| b == b'+') {
        Some(p) => (&base[..p], Some(&base[p + 1..])),
        None => (base, None),
    };
    let is = |s: &str| main.eq_ignore_ascii_case(s.as_bytes());
    if is("application/grpc") {
        Some(GrpcKind::Grpc)
    } else if is("application/grpc-web") {
        Some(GrpcKind::Web)
    } else if is("application/grpc-web-text") {
        Some(GrpcKind::WebText)
    } else {
        None
    }
}

/// The content type sent upstream for a gRPC-Web request: the same message format (`+proto`,
/// `+json`, ...) as native gRPC.
pub fn upstream_content_type(content_type: &[u8]) -> Bytes {
    match content_type.iter().position(|&b| b == b'+') {
        Some(p) => {
            let mut v = b"application/grpc".to_vec();
            v.extend_from_slice(&content_type[p..]);
            Bytes::from(v)
        }
        None => Bytes::from_static(b"application/grpc"),
    }
}

/// The content type returned to a gRPC-Web client for the upstream's `application/grpc[+fmt]`.
pub fn web_content_type(kind: GrpcKind, upstream: Option<&[u8]>) -> Bytes {
    let suffix = upstream.and_then(|ct| ct.iter().position(|&b| b == b'+').map(|p| &ct[p..])).unwrap_or(b"+proto");
    let mut v = if kind == GrpcKind::WebText {
        b"application/grpc-web-text".to_vec()
    } else {
        b"application/grpc-web".to_vec()
    };
    v.extend_from_slice(suffix);
    Bytes::from(v)
}

/// The gRPC status code for a response the gateway produced: by the stable error code when
/// there is one, else by the HTTP status (gRPC's "HTTP to gRPC status code mapping").
pub fn status_code(http_status: u16, kind: Option<ErrorKind>) -> u32 {
    match kind.map(ErrorKind::as_str) {
        Some("route_not_found" | "method_not_allowed") => 12, // UNIMPLEMENTED
        Some(
            "unauthorized" | "credentials_missing" | "credentials_invalid" | "token_expired" | "credentials_multiple",
        ) => 16, // UNAUTHENTICATED
        Some("forbidden" | "cors_rejected" | "ip_denied") => 7, // PERMISSION_DENIED
        Some("rate_limited" | "concurrency_limited" | "body_too_large" | "header_too_large" | "uri_too_long") => 8, // RESOURCE_EXHAUSTED
        Some("upstream_timeout" | "deadline_exceeded" | "request_timeout") => 4, // DEADLINE_EXCEEDED
        Some(
            "no_healthy_upstream"
            | "upstream_connect_failed"
            | "upstream_tls_failed"
            | "upstream_reset"
            | "upstream_invalid_response"
            | "circuit_open"
            | "upstream_overloaded"
            | "shutting_down"
            | "rate_limit_unavailable"
            | "auth_unavailable",
        ) => 14, // UNAVAILABLE
        Some("bad_request") => 13,                                               // INTERNAL
        _ => match http_status {
            400 => 13,
            401 => 16,
            403 => 7,
            404 => 12,
            429 | 502 | 503 | 504 => 14,
            _ => 2, // UNKNOWN
        },
    }
}

/// The `grpc-status` in an HTTP/2 header or trailer block.
pub fn status_of(map: &http::HeaderMap) -> Option<u32> {
    map.get("grpc-status")?.to_str().ok()?.trim().parse().ok()
}

/// `grpc-message` encoding: percent-encode everything outside printable ASCII and `%`.
pub fn encode_message(msg: &str) -> Bytes {
    Bytes::from(crate::http1::percent_encode(msg.as_bytes(), |b| (0x20..=0x7e).contains(&b) && b != b'%'))
}

/// Turns a response the gateway made for a gRPC request into a trailers-only gRPC response.
/// Headers a client may act on (`retry-after`, `www-authenticate`, rate-limit and CORS headers)
/// are kept; the JSON body's message becomes `grpc-message`.
pub fn local_response(resp: &LocalResponse, kind: GrpcKind, error_kind: Option<ErrorKind>) -> LocalResponse {
    let code = status_code(resp.status, error_kind);
    let message = serde_json::from_slice::<serde_json::Value>(&resp.body)
        .ok()
        .and_then(|v| v["error"]["message"].as_str().map(str::to_string))
        .unwrap_or_else(|| crate::http1::reason(resp.status).to_string());
    let ct: &'static str = match kind {
        GrpcKind::Grpc => "application/grpc",
        GrpcKind::Web => "application/grpc-web+proto",
        GrpcKind::WebText => "application/grpc-web-text+proto",
    };
    let mut out = LocalResponse::new(200, ct, Bytes::new());
    for (n, v) in &resp.headers {
        if !n.eq_ignore_ascii_case(b"content-type") {
            out.headers.push((n.clone(), v.clone()));
        }
    }
    out.headers.push((Bytes::from_static(b"grpc-status"), Bytes::from(code.to_string())));
    out.headers.push((Bytes::from_static(b"grpc-message"), encode_message(&message)));
    out.close = resp.close;
    out
}

/// The gRPC-Web trailer frame: flag 0x80, big-endian length, then `name: value\r\n` lines
/// (names lower-case, as HTTP/2 requires them anyway).
pub fn trailer_frame(trailers: &Headers) -> Bytes {
    let mut block = Vec::new();
    for (n, v) in trailers.iter() {
        block.extend_from_slice(&n.to_ascii_lowercase());
        block.extend_from_slice(b": ");
        block.extend_from_slice(v);
        block.extend_from_slice(b"\r\n");
    }
    let mut out = BytesMut::with_capacity(5 + block.len());
    out.put_u8(0x80);
    out.put_u32(block.len() as u32);
    out.extend_from_slice(&block);
    out.freeze()
}

/// Decodes a gRPC-Web-text request body. Clients may send several base64 strings back to back,
/// each with its own padding, so the input is decoded one 4-character group at a time.
pub fn decode_text(body: &[u8]) -> Result<Bytes, &'static str> {
    let clean: Vec<u8> = body.iter().copied().filter(|b| !b.is_ascii_whitespace()).collect();
    if !clean.len().is_multiple_of(4) {
        return Err("gRPC-Web text body is not valid base64");
    }
    let mut out = Vec::with_capacity(clean.len() / 4 * 3);
    for group in clean.chunks(4) {
        base64::engine::general_purpose::STANDARD
            .decode_vec(group, &mut out)
            .map_err(|_| "gRPC-Web text body is not valid base64")?;
    }
    Ok(Bytes::from(out))
}

/// Base64 for a streamed gRPC-Web-text response: whole 3-byte groups are encoded as data
/// arrives, the remainder waits for the next chunk, and `finish` pads the tail. The client thus
/// sees one continuous base64 string, whatever the chunking.
#[derive(Debug, Default)]
pub struct TextEncoder {
    carry: Vec<u8>,
}

impl TextEncoder {
    pub fn push(&mut self, data: &[u8]) -> Bytes {
        self.carry.extend_from_slice(data);
        let whole = self.carry.len() - self.carry.len() % 3;
        if whole == 0 {
            return Bytes::new();
        }
        let out = base64::engine::general_purpose::STANDARD.encode(&self.carry[..whole]);
        self.carry.drain(..whole);
        Bytes::from(out)
    }

    pub fn finish(&mut self) -> Bytes {
        let out = base64::engine::general_purpose::STANDARD.encode(&self.carry);
        self.carry.clear();
        Bytes::from(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::GatewayError;

    #[test]
    fn kinds() {
        assert_eq!(classify(b"application/grpc"), Some(GrpcKind::Grpc));
        assert_eq!(classify(b"application/grpc+proto"), Some(GrpcKind::Grpc));
        assert_eq!(classify(b"Application/GRPC-Web+proto"), Some(GrpcKind::Web));
        assert_eq!(classify(b"application/grpc-web-text"), Some(GrpcKind::WebText));
        assert_eq!(classify(b"application/grpc-web-text+proto; charset=x"), Some(GrpcKind::WebText));
        assert_eq!(classify(b"application/grpcx"), None);
        assert_eq!(classify(b"application/json"), None);
        assert_eq!(&upstream_content_type(b"application/grpc-web+proto")[..], b"application/grpc+proto");
        assert_eq!(&upstream_content_type(b"application/grpc-web-text")[..], b"application/grpc");
        assert_eq!(&web_content_type(GrpcKind::Web, Some(b"application/grpc"))[..], b"application/grpc-web+proto");
        assert_eq!(
            &web_content_type(GrpcKind::WebText, Some(b"application/grpc+json"))[..],
            b"application/grpc-web-text+json"
        );
    }

    #[test]
    fn status_mapping() {
        assert_eq!(status_code(404, Some(ErrorKind::RouteNotFound)), 12);
        assert_eq!(status_code(429, Some(ErrorKind::RateLimited)), 8);
        assert_eq!(status_code(504, Some(ErrorKind::DeadlineExceeded)), 4);
        assert_eq!(status_code(502, Some(ErrorKind::UpstreamConnectFailed)), 14);
        assert_eq!(status_code(401, None), 16);
        assert_eq!(status_code(503, None), 14);
        assert_eq!(status_code(418, None), 2);
    }

    #[test]
    fn trailers_only_errors() {
        let e = GatewayError::RateLimited { retry_after: 3 }.to_response("rid");
        let g = local_response(&e, GrpcKind::Grpc, Some(ErrorKind::RateLimited));
        assert_eq!(g.status, 200);
        assert!(g.body.is_empty());
        let h = |n: &str| g.headers.iter().find(|(k, _)| &k[..] == n.as_bytes()).map(|(_, v)| v.clone());
        assert_eq!(h("grpc-status").as_deref(), Some(&b"8"[..]));
        assert_eq!(h("content-type").as_deref(), Some(&b"application/grpc"[..]));
        assert_eq!(h("retry-after").as_deref(), Some(&b"3"[..]));
        assert!(h("grpc-message").is_some_and(|m| m.starts_with(b"rate limited") || !m.is_empty()));
        assert_eq!(&encode_message("a%b\u{e9}")[..], b"a%25b%C3%A9");
    }

    #[test]
    fn web_text_round_trip() {
        let msg = b"\x00\x00\x00\x00\x05hello";
        let b64 = base64::engine::general_purpose::STANDARD.encode(msg);
        assert_eq!(&decode_text(b64.as_bytes()).unwrap()[..], msg);
        // Two padded segments back to back.
        let two = format!(
            "{}{}",
            base64::engine::general_purpose::STANDARD.encode(b"ab"),
            base64::engine::general_purpose::STANDARD.encode(b"c")
        );
        assert_eq!(&decode_text(two.as_bytes()).unwrap()[..], b"abc");
        assert!(decode_text(b"abc").is_err());
        let mut enc = TextEncoder::default();
        let mut out = Vec::new();
        for part in [&b"h"[..], b"ello, w", b"orld!"] {
            out.extend_from_slice(&enc.push(part));
        }
        out.extend_from_slice(&enc.finish());
        assert_eq!(out, base64::engine::general_purpose::STANDARD.encode(b"hello, world!").into_bytes());
    }

    #[test]
    fn trailer_frames() {
        let mut t = Headers::new();
        t.append(Bytes::from_static(b"grpc-status"), Bytes::from_static(b"0"));
        t.append(Bytes::from_static(b"Grpc-Message"), Bytes::from_static(b"ok"));
        let f = trailer_frame(&t);
        assert_eq!(f[0], 0x80);
        let len = u32::from_be_bytes([f[1], f[2], f[3], f[4]]) as usize;
        assert_eq!(&f[5..], b"grpc-status: 0\r\ngrpc-message: ok\r\n");
        assert_eq!(len, f.len() - 5);
    }
}
