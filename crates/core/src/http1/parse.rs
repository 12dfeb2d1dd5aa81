//! Strict HTTP/1.x head parsing for requests (from clients) and responses (from upstreams).
//!
//! Invariants: a head is accepted only if its framing is unambiguous (RFC 9112 §6): at most one
//! `Content-Length` made of digits only, `Transfer-Encoding` exactly `chunked` and never together
//! with `Content-Length` or in HTTP/1.0, exactly one valid `Host` in HTTP/1.1. Syntax problems
//! that httparse finds (whitespace before a colon, obs-fold, CR/NUL in values, empty names) are
//! errors too. Anything refused here never reaches an upstream: the caller answers 400 and closes.

use bytes::{Bytes, BytesMut};

use std::mem::MaybeUninit;

use super::headers::{has_token, trim, Headers, Known, RawField, Span};

/// How a message body is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyKind {
    /// No body (or a zero `Content-Length`).
    Empty,
    /// Exactly this many bytes.
    Length(u64),
    /// Chunked transfer coding.
    Chunked,
    /// Until the connection closes (responses only).
    UntilClose,
}

/// Why a head was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeadError {
    #[error("request head larger than the limit")]
    HeadTooLarge,
    #[error("too many header fields")]
    TooManyHeaders,
    #[error("request target longer than the limit")]
    UriTooLong,
    #[error("malformed message head: {0}")]
    Malformed(&'static str),
    #[error("ambiguous message framing: {0}")]
    Framing(&'static str),
    /// An `Expect` other than `100-continue` (RFC 9110 §10.1.1: 417).
    #[error("unsupported expectation")]
    Expectation,
}

/// The parsed head of a client request.
#[derive(Debug)]
pub struct RequestHead {
    pub method: Bytes,
    /// Raw request target as received (origin-form, absolute-form or `*`).
    pub target: Bytes,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor: u8,
    pub headers: Headers,
    pub body: BodyKind,
    /// The client asked to keep the connection open after this exchange.
    pub keep_alive: bool,
    pub expect_continue: bool,
    /// Authority from `Host` or from an absolute-form target (absolute-form wins, RFC 9112 §3.2.2).
    pub authority: Option<Bytes>,
}

/// The parsed head of an upstream response.
#[derive(Debug)]
pub struct ResponseHead {
    pub status: u16,
    pub reason: Bytes,
    pub minor: u8,
    pub headers: Headers,
    pub body: BodyKind,
    pub keep_alive: bool,
}

/// Limits applied while parsing a request head.
#[derive(Clone, Copy, Debug)]
pub struct HeadLimits {
    pub max_head: usize,
    pub max_headers: usize,
    pub max_uri: usize,
}

/// The position of `s` inside the parsed buffer `base`. httparse hands out slices of the buffer,
/// except that empty values (and our `unwrap_or("")` defaults) may point anywhere: those become
/// an empty span instead of an out-of-range one (found by tests/hostile_input.rs).
fn span_of(base: &[u8], s: &[u8]) -> Span {
    let (b, p) = (base.as_ptr() as usize, s.as_ptr() as usize);
    if s.is_empty() || p < b || p + s.len() > b + base.len() {
        return Span { start: 0, end: 0 };
    }
    let start = p - b;
    Span { start: start as u32, end: (start + s.len()) as u32 }
}

/// Most header fields httparse gets slots for; `max_headers` is clamped to this.
pub const MAX_HEADER_SLOTS: usize = 256;

/// Tries to parse a request head from the front of `buf`. `Ok(None)` means more bytes are needed.
/// On success the head bytes are split off `buf`; what remains is body or the next request.
pub fn parse_request(buf: &mut BytesMut, limits: HeadLimits) -> Result<Option<RequestHead>, HeadError> {
    // Uninitialised slots: zeroing 256 headers per request would cost more than parsing.
    let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADER_SLOTS];
    let slots = &mut slots[..limits.max_headers.clamp(1, MAX_HEADER_SLOTS)];
    let status = {
        let data: &[u8] = &buf[..];
        let mut parsed = httparse::Request::new(&mut []);
        match parsed.parse_with_uninit_headers(data, slots) {
            Ok(httparse::Status::Complete(n)) => {
                let base = data;
                let method = span_of(base, parsed.method.unwrap_or("").as_bytes());
                let path = span_of(base, parsed.path.unwrap_or("").as_bytes());
                let minor = parsed.version.unwrap_or(1);
                let spans: Vec<RawField> = parsed
                    .headers
                    .iter()
                    .map(|h| RawField::new(span_of(base, h.name.as_bytes()), span_of(base, h.value), h.name.as_bytes()))
                    .collect();
                Ok((n, method, path, minor, spans))
            }
            Ok(httparse::Status::Partial) => Err(None),
            Err(e) => Err(Some(e)),
        }
    };
    let (n, method, target, minor, spans): (usize, Span, Span, u8, Vec<RawField>) = match status {
        Ok(v) => v,
        Err(None) => {
            // A partial request line is refused early only for what the complete line would be
            // refused for: a target already longer than `max_uri` (the verdict must not depend on
            // where a read ends; found by fuzzing). A long method waits for `max_head`.
            if !buf.contains(&b'\n') {
                if let Some(sp) = buf.iter().position(|&b| b == b' ') {
                    let rest = &buf[sp + 1..];
                    if rest.iter().position(|&b| b == b' ').unwrap_or(rest.len()) > limits.max_uri {
                        return Err(HeadError::UriTooLong);
                    }
                }
            }
            if buf.len() > limits.max_head {
                return Err(HeadError::HeadTooLarge);
            }
            return Ok(None);
        }
        Err(Some(e)) => return Err(map_httparse(e)),
    };
    if (target.end - target.start) as usize > limits.max_uri {
        return Err(HeadError::UriTooLong);
    }
    if n > limits.max_head {
        return Err(HeadError::HeadTooLarge);
    }
    let head = buf.split_to(n).freeze();
    let method_b = head.slice(method.start as usize..method.end as usize);
    let target_b = head.slice(target.start as usize..target.end as usize);
    let headers = Headers::from_raw(head, spans);
    finish_request(method_b, target_b, minor, headers)
}

fn map_httparse(e: httparse::Error) -> HeadError {
    use httparse::Error as E;
    match e {
        E::TooManyHeaders => HeadError::TooManyHeaders,
        E::HeaderName => HeadError::Malformed("invalid header field name (or whitespace before colon, or obs-fold)"),
        E::HeaderValue => HeadError::Malformed("invalid character in a header field value"),
        E::NewLine => HeadError::Malformed("invalid line ending"),
        E::Status => HeadError::Malformed("invalid status"),
        E::Token => HeadError::Malformed("invalid method token"),
        E::Version => HeadError::Malformed("unsupported HTTP version"),
    }
}

/// Parses a Content-Length value: 1*DIGIT, no sign, no spaces inside, fits in u64.
pub fn parse_content_length(v: &[u8]) -> Option<u64> {
    let v = trim(v);
    if v.is_empty() || v.len() > 19 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(v).ok()?.parse().ok()
}

/// Decides body framing from CL/TE per RFC 9112 §6.3, refusing anything ambiguous.
fn framing(headers: &Headers, minor: u8) -> Result<(Option<u64>, bool), &'static str> {
    let mut cl: Option<u64> = None;
    let mut cl_count = 0;
    let mut te_count = 0;
    let mut chunked = false;
    for (known, _, value) in headers.fields() {
        if known == Known::ContentLength {
            cl_count += 1;
            if cl_count > 1 {
                return Err("more than one Content-Length");
            }
            cl = Some(parse_content_length(value).ok_or("invalid Content-Length")?);
        } else if known == Known::TransferEncoding {
            te_count += 1;
            if te_count > 1 {
                return Err("more than one Transfer-Encoding");
            }
            if !trim(value).eq_ignore_ascii_case(b"chunked") {
                return Err("unsupported transfer coding (only `chunked` is accepted)");
            }
            chunked = true;
        }
    }
    if chunked && cl_count > 0 {
        return Err("both Content-Length and Transfer-Encoding");
    }
    if chunked && minor == 0 {
        return Err("Transfer-Encoding in an HTTP/1.0 message");
    }
    Ok((cl, chunked))
}

/// RFC 3986 `host [ ":" port ]` characters (reg-name, IP-literal), except `,`: the authority is
/// forwarded in `X-Forwarded-Host`, a comma-separated list, where `a,evil` would read as two hosts.
pub(crate) fn valid_host(v: &[u8]) -> bool {
    !v.is_empty()
        && v.iter().all(|&b| {
            b.is_ascii_alphanumeric()
                || matches!(
                    b,
                    b'.' | b'-'
                        | b'_'
                        | b'~'
                        | b':'
                        | b'['
                        | b']'
                        | b'%'
                        | b'!'
                        | b'$'
                        | b'&'
                        | b'\''
                        | b'('
                        | b')'
                        | b'*'
                        | b'+'
                        | b';'
                        | b'='
                )
        })
}

fn finish_request(method: Bytes, target: Bytes, minor: u8, headers: Headers) -> Result<Option<RequestHead>, HeadError> {
    let (cl, chunked) = framing(&headers, minor).map_err(HeadError::Framing)?;
    let mut host: Option<&[u8]> = None;
    let mut host_count = 0;
    let mut keep_alive = minor == 1;
    let mut expect_continue = false;
    for (known, _, value) in headers.fields() {
        if known == Known::Host {
            host_count += 1;
            host = Some(value);
        } else if known == Known::Connection {
            if has_token(value, "close") {
                keep_alive = false;
            } else if minor == 0 && has_token(value, "keep-alive") {
                keep_alive = true;
            }
        } else if known == Known::Expect {
            if trim(value).eq_ignore_ascii_case(b"100-continue") {
                // RFC 9110 §10.1.1: an HTTP/1.0 request's 100-continue MUST be ignored (a 1.0
                // client does not expect an interim response and could take it as the final one).
                expect_continue = minor == 1;
            } else {
                return Err(HeadError::Expectation);
            }
        }
    }
    if host_count > 1 {
        return Err(HeadError::Malformed("more than one Host header"));
    }
    if minor == 1 && host_count == 0 {
        return Err(HeadError::Malformed("missing Host header"));
    }
    if let Some(h) = host {
        if !valid_host(h) {
            return Err(HeadError::Malformed("invalid Host header"));
        }
    }
    // Absolute-form: the authority of the target wins over Host.
    let mut authority = host.map(|h| headers.slice_of(h));
    if target.first() != Some(&b'/') && target.as_ref() != b"*" {
        let lower = target.to_ascii_lowercase();
        let rest = if lower.starts_with(b"http://") {
            7
        } else if lower.starts_with(b"https://") {
            8
        } else {
            return Err(HeadError::Malformed("unsupported request-target form"));
        };
        let end = target[rest..].iter().position(|&b| b == b'/' || b == b'?').map_or(target.len(), |p| p + rest);
        let auth = target.slice(rest..end);
        if !valid_host(&auth) {
            return Err(HeadError::Malformed("invalid authority in request target"));
        }
        authority = Some(auth);
    }
    let body = if chunked {
        BodyKind::Chunked
    } else {
        match cl {
            Some(0) | None => BodyKind::Empty,
            Some(n) => BodyKind::Length(n),
        }
    };
    Ok(Some(RequestHead { method, target, minor, headers, body, keep_alive, expect_continue, authority }))
}

/// Tries to parse an upstream response head. `Ok(None)` means more bytes are needed.
/// `request_was_head` and the status decide whether a body follows (RFC 9112 §6.3 rules 1-2).
pub fn parse_response(
    buf: &mut BytesMut,
    max_head: usize,
    request_was_head: bool,
) -> Result<Option<ResponseHead>, HeadError> {
    // Uninitialised slots, as for requests: zeroing them per response costs more than parsing.
    let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; 128];
    let parsed = {
        let data: &[u8] = &buf[..];
        let mut res = httparse::Response::new(&mut []);
        match httparse::ParserConfig::default().parse_response_with_uninit_headers(&mut res, data, &mut slots) {
            Ok(httparse::Status::Complete(n)) => {
                let base = data;
                let spans: Vec<RawField> = res
                    .headers
                    .iter()
                    .map(|h| RawField::new(span_of(base, h.name.as_bytes()), span_of(base, h.value), h.name.as_bytes()))
                    .collect();
                let reason = span_of(base, res.reason.unwrap_or("").as_bytes());
                Some((n, res.code.unwrap_or(0), reason, res.version.unwrap_or(1), spans))
            }
            Ok(httparse::Status::Partial) => None,
            Err(e) => return Err(map_httparse(e)),
        }
    };
    let Some((n, status, reason, minor, spans)) = parsed else {
        if buf.len() > max_head {
            return Err(HeadError::HeadTooLarge);
        }
        return Ok(None);
    };
    if n > max_head {
        return Err(HeadError::HeadTooLarge);
    }
    if !(100..=599).contains(&status) {
        return Err(HeadError::Malformed("status code out of range"));
    }
    let head = buf.split_to(n).freeze();
    let reason = head.slice(reason.start as usize..reason.end as usize);
    let headers = Headers::from_raw(head, spans);
    let (cl, chunked) = framing(&headers, minor).map_err(HeadError::Framing)?;
    let mut keep_alive = minor == 1;
    for v in headers.get_all_known(Known::Connection) {
        if has_token(v, "close") {
            keep_alive = false;
        } else if minor == 0 && has_token(v, "keep-alive") {
            keep_alive = true;
        }
    }
    let no_body = request_was_head || (100..200).contains(&status) || status == 204 || status == 304;
    let body = if no_body {
        BodyKind::Empty
    } else if chunked {
        BodyKind::Chunked
    } else {
        match cl {
            Some(0) => BodyKind::Empty,
            Some(n) => BodyKind::Length(n),
            None => {
                keep_alive = false;
                BodyKind::UntilClose
            }
        }
    };
    Ok(Some(ResponseHead { status, reason, minor, headers, body, keep_alive }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A request line whose target is within `max_uri` is not refused because a read ended
    /// inside it, however long its method; a target over `max_uri` is refused early.
    #[test]
    fn partial_request_line_verdict_matches_the_complete_one() {
        let limits = HeadLimits { max_head: 64 * 1024, max_headers: 32, max_uri: 1024 };
        let method = "M".repeat(40);
        let target = format!("/{}", "a".repeat(1000));
        let full = format!("{method} {target} HTTP/1.0\r\n\r\n");
        let mut whole = BytesMut::from(full.as_bytes());
        assert!(matches!(parse_request(&mut whole, limits), Ok(Some(_))));
        let cut = full.len() - 6;
        let mut part = BytesMut::from(&full.as_bytes()[..cut]);
        assert!(matches!(parse_request(&mut part, limits), Ok(None)), "a prefix asks for more");
        let long = format!("GET /{} ", "a".repeat(1100));
        let mut part = BytesMut::from(long.as_bytes());
        assert!(matches!(parse_request(&mut part, limits), Err(HeadError::UriTooLong)));
    }

    const L: HeadLimits = HeadLimits { max_head: 8192, max_headers: 32, max_uri: 1024 };

    fn req(s: &[u8]) -> Result<Option<RequestHead>, HeadError> {
        let mut b = BytesMut::from(s);
        parse_request(&mut b, L)
    }

    #[test]
    fn simple_get() {
        let mut b = BytesMut::from(&b"GET /a?b=1 HTTP/1.1\r\nHost: x\r\n\r\nGET"[..]);
        let h = parse_request(&mut b, L).unwrap().unwrap();
        assert_eq!(&h.method[..], b"GET");
        assert_eq!(&h.target[..], b"/a?b=1");
        assert_eq!(h.body, BodyKind::Empty);
        assert!(h.keep_alive);
        assert_eq!(&b[..], b"GET");
    }

    #[test]
    fn partial() {
        assert!(req(b"GET / HTTP/1.1\r\nHost: x\r\n").unwrap().is_none());
    }

    #[test]
    fn framing_rules() {
        let bad: &[&[u8]] = &[
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +5\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 5\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n\r\n",
            b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\nX: a\r\n b\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\nX: a\rb\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\nX: a\0b\r\n\r\n",
            b"GET / HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: gw@evil\r\n\r\n",
            b"GET / HTTP/1.1\r\n: x\r\nHost: x\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: gw,evil\r\n\r\n",
            b"GET http://gw,evil/ HTTP/1.1\r\nHost: x\r\n\r\n",
        ];
        for b in bad {
            assert!(req(b).is_err(), "accepted: {:?}", String::from_utf8_lossy(b));
        }
    }

    #[test]
    fn limits() {
        let mut long = b"GET /".to_vec();
        long.extend(std::iter::repeat_n(b'a', 2000));
        long.extend_from_slice(b" HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(req(&long).unwrap_err(), HeadError::UriTooLong);
        let mut big = b"GET / HTTP/1.1\r\nHost: x\r\nX: ".to_vec();
        big.extend(std::iter::repeat_n(b'a', 9000));
        assert_eq!(req(&big).unwrap_err(), HeadError::HeadTooLarge);
        let mut many = b"GET / HTTP/1.1\r\nHost: x\r\n".to_vec();
        for i in 0..40 {
            many.extend_from_slice(format!("X-{i}: 1\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        assert_eq!(req(&many).unwrap_err(), HeadError::TooManyHeaders);
    }

    #[test]
    fn expect_continue_only_in_http11() {
        let h =
            req(b"POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n").unwrap().unwrap();
        assert!(h.expect_continue);
        let h = req(b"POST / HTTP/1.0\r\nExpect: 100-Continue\r\nContent-Length: 1\r\n\r\n").unwrap().unwrap();
        assert!(!h.expect_continue);
    }

    #[test]
    fn absolute_form_authority_wins() {
        let h = req(b"GET http://b.example/x HTTP/1.1\r\nHost: a.example\r\n\r\n").unwrap().unwrap();
        assert_eq!(h.authority.as_deref(), Some(&b"b.example"[..]));
    }

    #[test]
    fn empty_values_and_reason_do_not_break_spans() {
        let mut b = BytesMut::from(&b"HTTP/1.1 200\r\nX-Empty:\r\nContent-Length: 0\r\n\r\n"[..]);
        let r = parse_response(&mut b, 8192, false).unwrap().unwrap();
        assert_eq!(&r.reason[..], b"");
        assert_eq!(r.headers.get("x-empty"), Some(&b""[..]));
        let h = req(b"GET / HTTP/1.1\r\nHost: x\r\nX-Empty:\r\n\r\n").unwrap().unwrap();
        assert_eq!(h.headers.get("x-empty"), Some(&b""[..]));
    }

    #[test]
    fn responses() {
        let mut b = BytesMut::from(&b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc"[..]);
        let r = parse_response(&mut b, 8192, false).unwrap().unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.body, BodyKind::Length(3));
        let mut b = BytesMut::from(&b"HTTP/1.1 200 OK\r\n\r\n"[..]);
        assert_eq!(parse_response(&mut b, 8192, false).unwrap().unwrap().body, BodyKind::UntilClose);
        let mut b = BytesMut::from(&b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n"[..]);
        assert!(parse_response(&mut b, 8192, false).is_err());
        let mut b = BytesMut::from(&b"HTTP/1.1 204 No\r\nContent-Length: 3\r\n\r\n"[..]);
        assert_eq!(parse_response(&mut b, 8192, false).unwrap().unwrap().body, BodyKind::Empty);
        let mut b = BytesMut::from(&b"garbage\r\n\r\n"[..]);
        assert!(parse_response(&mut b, 8192, false).is_err());
    }
}
