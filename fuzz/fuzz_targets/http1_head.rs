//! HTTP/1.1 head parsing and the framing decision (`BodyKind`), requests and responses, on
//! arbitrary bytes with the default listener limits.
//!
//! Properties:
//! - never panics;
//! - a parsed head consumed exactly its own bytes, and parsing those bytes again gives the same
//!   head (nothing depended on what followed);
//! - the head as the gateway writes it upstream (request line + `Headers::write_to`) parses to
//!   the same method, target, fields, framing and keep-alive: no desync between our reading and
//!   the next hop's;
//! - the framing decision agrees with the fields: `Chunked` iff one `Transfer-Encoding: chunked`
//!   and no `Content-Length`, `Length(n)` iff one `Content-Length: n` (n > 0) and no TE;
//! - bytes arriving in two reads give the same verdict as in one: every strict prefix of an
//!   accepted head asks for more bytes instead of failing;
//! - the routing path of an accepted target is computed without panicking.

#![no_main]

use bytes::BytesMut;
use gatehouse_core::http1::parse::parse_content_length;
use gatehouse_core::http1::{parse_request, parse_response, BodyKind, RequestHead, ResponseHead};
use gatehouse_fuzz::{default_limits, routing_target};
use libfuzzer_sys::fuzz_target;

fn fields(h: &gatehouse_core::http1::Headers) -> Vec<(Vec<u8>, Vec<u8>)> {
    h.iter().map(|(n, v)| (n.to_vec(), v.to_vec())).collect()
}

fn check_framing(h: &gatehouse_core::http1::Headers, body: BodyKind, is_response_without_body: bool) {
    let cl: Vec<&[u8]> = h.get_all("content-length").collect();
    let te: Vec<&[u8]> = h.get_all("transfer-encoding").collect();
    assert!(cl.len() <= 1 && te.len() <= 1, "duplicate framing fields accepted");
    assert!(cl.is_empty() || te.is_empty(), "Content-Length with Transfer-Encoding accepted");
    if let Some(v) = cl.first() {
        assert!(parse_content_length(v).is_some(), "invalid Content-Length accepted: {v:?}");
    }
    if is_response_without_body {
        assert_eq!(body, BodyKind::Empty);
        return;
    }
    match body {
        BodyKind::Chunked => assert_eq!(te.len(), 1),
        BodyKind::Length(n) => {
            assert!(n > 0);
            assert_eq!(cl.first().and_then(|v| parse_content_length(v)), Some(n));
        }
        BodyKind::Empty => {
            assert!(te.is_empty());
            assert!(cl.first().is_none_or(|v| parse_content_length(v) == Some(0)));
        }
        BodyKind::UntilClose => assert!(cl.is_empty() && te.is_empty()),
    }
}

fn same_request(a: &RequestHead, b: &RequestHead) {
    assert_eq!(a.method, b.method);
    assert_eq!(a.target, b.target);
    assert_eq!(a.minor, b.minor);
    assert_eq!(fields(&a.headers), fields(&b.headers));
    assert_eq!(a.body, b.body);
    assert_eq!(a.keep_alive, b.keep_alive);
    assert_eq!(a.expect_continue, b.expect_continue);
    assert_eq!(a.authority, b.authority);
}

fn same_response(a: &ResponseHead, b: &ResponseHead) {
    assert_eq!(a.status, b.status);
    assert_eq!(a.minor, b.minor);
    assert_eq!(fields(&a.headers), fields(&b.headers));
    assert_eq!(a.body, b.body);
    assert_eq!(a.keep_alive, b.keep_alive);
}

/// Where to cut an accepted head of `used` bytes in two reads, from the input's last two bytes
/// (free bytes when a body follows the head; any cut can be chosen).
fn split_point(data: &[u8], used: usize) -> usize {
    let n = data.len();
    let at = usize::from(data[n - 1]) | usize::from(data[n.saturating_sub(2)]) << 8;
    at * used / 65536
}

fn request(data: &[u8]) {
    let limits = default_limits();
    let mut buf = BytesMut::from(data);
    let head = match parse_request(&mut buf, limits) {
        Ok(Some(h)) => h,
        Ok(None) => {
            assert_eq!(&buf[..], data, "an incomplete head consumed bytes");
            return;
        }
        Err(_) => return,
    };
    let used = data.len() - buf.len();
    assert!(used > 0 && data[..used].ends_with(b"\n"));
    check_framing(&head.headers, head.body, false);
    if head.body == BodyKind::Chunked {
        assert_eq!(head.minor, 1, "chunked in HTTP/1.0 accepted");
    }

    // The head's own bytes, alone, parse to the same head and are consumed completely.
    let mut again = BytesMut::from(&data[..used]);
    let h2 = parse_request(&mut again, limits).expect("own bytes refused").expect("own bytes incomplete");
    assert!(again.is_empty());
    same_request(&head, &h2);

    // Split in two reads (where: the input's last two bytes): the first read must ask for more,
    // never fail.
    let split = split_point(data, used);
    if split > 0 && split < used {
        let mut first = BytesMut::from(&data[..split]);
        match parse_request(&mut first, limits) {
            Ok(None) => {}
            other => panic!("prefix of {used} accepted bytes cut at {split}: {other:?}"),
        }
    }

    // As written upstream: request line and `write_to`.
    let mut out = Vec::new();
    out.extend_from_slice(&head.method);
    out.push(b' ');
    out.extend_from_slice(&head.target);
    out.extend_from_slice(if head.minor == 0 { b" HTTP/1.0\r\n" } else { b" HTTP/1.1\r\n" });
    head.headers.write_to(&mut out);
    out.extend_from_slice(b"\r\n");
    let mut wire = BytesMut::from(&out[..]);
    let h3 =
        parse_request(&mut wire, limits).expect("re-serialised head refused").expect("re-serialised head incomplete");
    assert!(wire.is_empty());
    same_request(&head, &h3);

    // The path the router would see (origin-form only; absolute-form is reduced by the caller).
    if head.target.first() == Some(&b'/') {
        let _ = routing_target(&head.target);
    }
}

fn response(data: &[u8], request_was_head: bool) {
    let max_head = default_limits().max_head;
    let mut buf = BytesMut::from(data);
    let head = match parse_response(&mut buf, max_head, request_was_head) {
        Ok(Some(h)) => h,
        Ok(None) => {
            assert_eq!(&buf[..], data, "an incomplete head consumed bytes");
            return;
        }
        Err(_) => return,
    };
    let used = data.len() - buf.len();
    assert!((100..=599).contains(&head.status));
    let no_body = request_was_head || head.status < 200 || head.status == 204 || head.status == 304;
    check_framing(&head.headers, head.body, no_body);
    let mut again = BytesMut::from(&data[..used]);
    let h2 = parse_response(&mut again, max_head, request_was_head).expect("own bytes refused").expect("incomplete");
    assert!(again.is_empty());
    same_response(&head, &h2);
    let split = split_point(data, used);
    if split > 0 && split < used {
        let mut first = BytesMut::from(&data[..split]);
        match parse_response(&mut first, max_head, request_was_head) {
            Ok(None) => {}
            other => panic!("prefix of {used} accepted bytes cut at {split}: {other:?}"),
        }
    }
}

fuzz_target!(|data: &[u8]| {
    request(data);
    response(data, data.len().is_multiple_of(7));
});
