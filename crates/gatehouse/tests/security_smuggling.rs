//! Security regressions: HTTP/1.1 request smuggling and message framing (RFC 9112 §6, §7).
//!
//! Every hostile request is sent as raw bytes to an in-process gateway in front of a real hyper
//! backend (an independent parser). For each refused request we check the status, that the gateway
//! closed the connection, and the property that matters: no request (and in particular no
//! smuggled second request) reached the backend. For each accepted request we check exactly what
//! the backend received, and that it never saw `Transfer-Encoding` together with `Content-Length`.

use std::time::Duration;

use gatehouse_testkit::{gateway, raw, raw_closes, simple_config, status_of, Backend, Received, TestGateway};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Marker path of every request an attacker tries to smuggle; it must never reach the backend.
const SMUGGLED: &str = "/smuggled";

/// Time for anything the gateway might (wrongly) have forwarded to be recorded by the backend.
const SETTLE: Duration = Duration::from_millis(100);

/// The same, per case in a table (refusals happen before any upstream connection is made).
const CASE_SETTLE: Duration = Duration::from_millis(30);

/// One backend behind a catch-all route limited to 1 KiB bodies.
async fn setup() -> (Backend, TestGateway) {
    let backend = Backend::named("b").await;
    let routes = "  - name: all\n    upstream: backend\n    max_body_bytes: 1KiB\n";
    let gw = gateway(&simple_config(&[backend.url()], routes)).await;
    (backend, gw)
}

fn no_smuggled(backend: &Backend) {
    let reqs = backend.requests();
    assert!(!reqs.iter().any(|r| r.uri.contains(SMUGGLED)), "a smuggled request reached the backend: {reqs:#?}");
}

fn framing_is_single(r: &Received) {
    assert!(
        !(r.header("transfer-encoding").is_some() && r.header("content-length").is_some()),
        "backend received both Transfer-Encoding and Content-Length: {r:#?}"
    );
    assert!(r.header_all("content-length").len() <= 1, "several Content-Length fields: {r:#?}");
    assert!(r.header_all("transfer-encoding").len() <= 1, "several Transfer-Encoding fields: {r:#?}");
}

/// The JSON error code of a raw gateway answer.
fn error_code(resp: &str) -> String {
    let body = resp.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    let v: serde_json::Value = serde_json::from_str(body).unwrap_or(serde_json::Value::Null);
    v["error"]["code"].as_str().unwrap_or("").to_string()
}

/// Sends `req` on a fresh connection; expects exactly one answer with `status` and `code`, the
/// connection closed, and nothing at all forwarded to the backend.
async fn rejected(gw: &TestGateway, backend: &Backend, name: &str, req: &[u8], status: u16, code: &str) {
    let before = backend.count();
    let (resp, closed) = raw_closes(gw.addr, req).await;
    assert_eq!(status_of(&resp), status, "{name}: wrong answer: {resp:?}");
    assert_eq!(error_code(&resp), code, "{name}: wrong error code: {resp:?}");
    assert_eq!(resp.matches("HTTP/1.1 ").count(), 1, "{name}: more than one response: {resp:?}");
    assert!(closed, "{name}: connection left open after a framing error");
    tokio::time::sleep(CASE_SETTLE).await;
    assert_eq!(backend.count(), before, "{name}: the backend received something: {:#?}", backend.requests());
    no_smuggled(backend);
}

fn post(headers: &str, body: &str) -> Vec<u8> {
    format!("POST /upload HTTP/1.1\r\nHost: gw.test\r\n{headers}\r\n{body}").into_bytes()
}

fn smuggled_request() -> String {
    format!("GET {SMUGGLED} HTTP/1.1\r\nHost: gw.test\r\n\r\n")
}

#[tokio::test]
async fn content_length_and_transfer_encoding_together_are_refused() {
    let (backend, gw) = setup().await;
    let s = smuggled_request();
    // CL.TE: a CL-framing front end would forward `0\r\n\r\nGET /smuggled` as body.
    let cl_te = post("Content-Length: 6\r\nTransfer-Encoding: chunked\r\n", &format!("0\r\n\r\n{s}"));
    // TE.CL: a TE-framing front end with a CL-framing back end.
    let body = format!("{:x}\r\n{s}\r\n0\r\n\r\n", s.len());
    let te_cl = post("Transfer-Encoding: chunked\r\nContent-Length: 4\r\n", &body);
    // Both orders, with the CL covering the whole chunked body.
    let cl_first = post(&format!("Content-Length: {}\r\nTransfer-Encoding: chunked\r\n", body.len()), &body);
    let te_first = post(&format!("Transfer-Encoding: chunked\r\nContent-Length: {}\r\n", body.len()), &body);
    // Zero CL with TE (and the reverse).
    let cl0 = post("Content-Length: 0\r\nTransfer-Encoding: chunked\r\n", &body);
    for (name, req) in
        [("CL.TE", cl_te), ("TE.CL", te_cl), ("CL then TE", cl_first), ("TE then CL", te_first), ("CL 0 + TE", cl0)]
    {
        rejected(&gw, &backend, name, &req, 400, "bad_request").await;
    }
}

#[tokio::test]
async fn invalid_content_length_values_are_refused() {
    let (backend, gw) = setup().await;
    let s = smuggled_request();
    let cases: &[(&str, &str)] = &[
        ("duplicate equal CL", "Content-Length: 5\r\nContent-Length: 5\r\n"),
        ("duplicate differing CL", "Content-Length: 5\r\nContent-Length: 40\r\n"),
        ("CL 0 then CL 40", "Content-Length: 0\r\nContent-Length: 40\r\n"),
        ("list CL `5, 5`", "Content-Length: 5, 5\r\n"),
        ("list CL `5,40`", "Content-Length: 5,40\r\n"),
        ("signed +5", "Content-Length: +5\r\n"),
        ("negative -5", "Content-Length: -5\r\n"),
        ("hex 0x5", "Content-Length: 0x5\r\n"),
        ("empty CL", "Content-Length: \r\n"),
        ("empty CL then CL", "Content-Length: \r\nContent-Length: 5\r\n"),
        ("space inside", "Content-Length: 5 5\r\n"),
        ("exponent", "Content-Length: 1e1\r\n"),
        ("u64 overflow", "Content-Length: 18446744073709551616\r\n"),
        ("20 digits", "Content-Length: 99999999999999999999\r\n"),
        ("quoted", "Content-Length: \"5\"\r\n"),
        ("space before colon", "Content-Length : 5\r\n"),
    ];
    for (name, h) in cases {
        rejected(&gw, &backend, name, &post(h, &format!("hello{s}")), 400, "bad_request").await;
    }
}

#[tokio::test]
async fn transfer_encoding_obfuscations_are_refused() {
    let (backend, gw) = setup().await;
    let s = smuggled_request();
    let body = format!("0\r\n\r\n{s}");
    let cases: &[(&str, &[u8])] = &[
        ("xchunked", b"Transfer-Encoding: xchunked\r\n"),
        ("chunked-x", b"Transfer-Encoding: chunked-x\r\n"),
        ("quoted", b"Transfer-Encoding: \"chunked\"\r\n"),
        ("chunked, identity", b"Transfer-Encoding: chunked, identity\r\n"),
        ("identity", b"Transfer-Encoding: identity\r\n"),
        ("gzip, chunked", b"Transfer-Encoding: gzip, chunked\r\n"),
        ("chunked, chunked", b"Transfer-Encoding: chunked, chunked\r\n"),
        ("empty TE", b"Transfer-Encoding: \r\n"),
        ("two TE lines", b"Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n"),
        ("two chunked lines", b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n"),
        ("space before colon", b"Transfer-Encoding : chunked\r\n"),
        ("tab before colon", b"Transfer-Encoding\t: chunked\r\n"),
        ("TE via obs-fold", b"Transfer-Encoding:\r\n chunked\r\n"),
        ("TE folded onto another field", b"X-Foo: bar\r\n Transfer-Encoding: chunked\r\n"),
        ("vertical tab", b"Transfer-Encoding: chunked\x0b\r\n"),
        ("form feed", b"Transfer-Encoding: \x0cchunked\r\n"),
        ("NBSP after name", b"Transfer-Encoding\xa0: chunked\r\n"),
        ("0x82 in name", b"Transfer-Encoding\x82: chunked\r\n"),
        ("line without colon", b"Transfer-Encoding chunked\r\n"),
    ];
    for (name, h) in cases {
        let mut req = b"POST /upload HTTP/1.1\r\nHost: gw.test\r\n".to_vec();
        req.extend_from_slice(h);
        req.extend_from_slice(b"\r\n");
        req.extend_from_slice(body.as_bytes());
        rejected(&gw, &backend, name, &req, 400, "bad_request").await;
    }
}

#[tokio::test]
async fn transfer_encoding_in_http10_is_refused() {
    let (backend, gw) = setup().await;
    let req = format!("POST /upload HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{}", smuggled_request());
    rejected(&gw, &backend, "TE in HTTP/1.0", req.as_bytes(), 400, "bad_request").await;
    let req = b"POST /upload HTTP/1.0\r\nHost: gw.test\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n";
    rejected(&gw, &backend, "TE in HTTP/1.0 with Host", req, 400, "bad_request").await;
}

#[tokio::test]
async fn malformed_header_lines_are_refused() {
    let (backend, gw) = setup().await;
    let cases: &[(&str, &[u8])] = &[
        ("obs-fold", b"GET / HTTP/1.1\r\nHost: gw.test\r\nX-A: a\r\n b\r\n\r\n"),
        ("obs-fold with tab", b"GET / HTTP/1.1\r\nHost: gw.test\r\nX-A: a\r\n\tb\r\n\r\n"),
        ("bare CR in value", b"GET / HTTP/1.1\r\nHost: gw.test\r\nX-A: a\rb\r\n\r\n"),
        ("bare CR as line end", b"GET / HTTP/1.1\r\nHost: gw.test\rX-A: b\r\n\r\n"),
        ("CR smuggling a header", b"GET / HTTP/1.1\r\nHost: gw.test\r\nX-A: a\rContent-Length: 40\r\n\r\n"),
        ("NUL in value", b"GET / HTTP/1.1\r\nHost: gw.test\r\nX-A: a\0b\r\n\r\n"),
        ("NUL in name", b"GET / HTTP/1.1\r\nHost: gw.test\r\nX\0A: a\r\n\r\n"),
        ("empty header name", b"GET / HTTP/1.1\r\n: empty\r\nHost: gw.test\r\n\r\n"),
        ("empty name before CL", b"POST / HTTP/1.1\r\nHost: gw.test\r\n: x\r\nContent-Length: 5\r\n\r\nhello"),
        ("space in name", b"GET / HTTP/1.1\r\nHost: gw.test\r\nX A: a\r\n\r\n"),
        ("leading whitespace line", b"GET / HTTP/1.1\r\n Host: gw.test\r\n\r\n"),
        ("DEL in value", b"GET / HTTP/1.1\r\nHost: gw.test\r\nX-A: a\x7fb\r\n\r\n"),
        ("double space in request line", b"GET  / HTTP/1.1\r\nHost: gw.test\r\n\r\n"),
        ("tab in request target", b"GET /a\tb HTTP/1.1\r\nHost: gw.test\r\n\r\n"),
        ("HTTP/1.2", b"GET / HTTP/1.2\r\nHost: gw.test\r\n\r\n"),
        ("HTTP/2.0 in HTTP/1 syntax", b"GET / HTTP/2.0\r\nHost: gw.test\r\n\r\n"),
        ("lower-case version", b"GET / http/1.1\r\nHost: gw.test\r\n\r\n"),
    ];
    for (name, req) in cases {
        rejected(&gw, &backend, name, req, 400, "bad_request").await;
    }
    // An expectation the gateway cannot meet is 417 (RFC 9110 §10.1.1), nothing forwarded.
    let req = b"POST / HTTP/1.1\r\nHost: gw.test\r\nExpect: 100-continuex\r\nContent-Length: 1\r\n\r\nx";
    rejected(&gw, &backend, "unsupported Expect", req, 417, "expectation_failed").await;
}

/// A complete chunked request head, `body` follows.
fn chunked(body: &[u8]) -> Vec<u8> {
    let mut r = b"POST /upload HTTP/1.1\r\nHost: gw.test\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    r.extend_from_slice(body);
    r
}

const BAD_CHUNKED_BODIES: &[(&str, &[u8])] = &[
    ("size 0x5", b"0x5\r\nhello\r\n0\r\n\r\n"),
    ("size +5", b"+5\r\nhello\r\n0\r\n\r\n"),
    ("size -0", b"-0\r\n\r\n"),
    ("leading space", b" 5\r\nhello\r\n0\r\n\r\n"),
    ("trailing space", b"5 \r\nhello\r\n0\r\n\r\n"),
    ("underscore 1_0", b"1_0\r\n0123456789abcdef\r\n0\r\n\r\n"),
    ("17 hex digits", b"10000000000000005\r\nhello\r\n0\r\n\r\n"),
    ("empty size", b"\r\nhello\r\n0\r\n\r\n"),
    ("non-hex size", b"g\r\nhello\r\n0\r\n\r\n"),
    ("chunk spill", b"5\r\nhelloXX\r\n0\r\n\r\n"),
    ("chunk spill into smuggled request", b"3\r\nhelloGET /smuggled HTTP/1.1\r\nHost: gw.test\r\n\r\n0\r\n\r\n"),
    ("data without CRLF", b"5\r\nhello0\r\n\r\n"),
    ("CR in extension", b"5;a\rb\r\nhello\r\n0\r\n\r\n"),
    ("LF in extension", b"5;a\nb\r\nhello\r\n0\r\n\r\n"),
    ("NUL in extension", b"5;a\0b\r\nhello\r\n0\r\n\r\n"),
    ("bare LF after size", b"5\nhello\r\n0\r\n\r\n"),
    ("bare LF after data", b"5\r\nhello\n0\r\n\r\n"),
    ("bare LF in last chunk", b"5\r\nhello\r\n0\n\n"),
    ("bare LF ending trailers", b"5\r\nhello\r\n0\r\n\n"),
    ("bare CR line end", b"5\rhello\r\n0\r\n\r\n"),
    ("trailer without colon", b"5\r\nhello\r\n0\r\nbad trailer\r\n\r\n"),
    ("trailer obs-fold", b"5\r\nhello\r\n0\r\nX-T: a\r\n b\r\n\r\n"),
    ("trailer with NUL", b"5\r\nhello\r\n0\r\nX-T: a\0b\r\n\r\n"),
];

/// Invalid chunked bodies: 400 and close, and no complete request (nor anything smuggled) ever
/// reaches the backend. The gateway streams bodies, so it may already have sent the request head
/// upstream when it meets the bad chunk; it must then abort that upstream connection, which the
/// hyper backend sees as a body error (recorded here with an empty body, never the real one).
#[tokio::test]
async fn invalid_chunked_bodies_are_refused_without_a_complete_request_upstream() {
    let (backend, gw) = setup().await;
    for (name, body) in BAD_CHUNKED_BODIES {
        let (resp, closed) = raw_closes(gw.addr, &chunked(body)).await;
        assert_eq!(status_of(&resp), 400, "{name}: {resp:?}");
        assert_eq!(error_code(&resp), "bad_request", "{name}: {resp:?}");
        assert_eq!(resp.matches("HTTP/1.1 ").count(), 1, "{name}: {resp:?}");
        assert!(closed, "{name}: connection left open");
    }
    tokio::time::sleep(SETTLE).await;
    no_smuggled(&backend);
    for r in backend.requests() {
        assert_eq!(r.uri, "/upload");
        assert!(r.body.is_empty(), "the backend received a body it took as complete: {r:#?}");
    }
}

/// The stricter property: a bad chunked body that arrived in the same packet as its head is
/// refused before anything is sent upstream (nginx buffers and checks it; the backend gets nothing).
#[tokio::test]
async fn invalid_chunked_bodies_never_reach_the_backend() {
    let (backend, gw) = setup().await;
    for (name, body) in BAD_CHUNKED_BODIES {
        rejected(&gw, &backend, name, &chunked(body), 400, "bad_request").await;
    }
}

/// The stricter property for bodies over the limit: a chunk whose size line alone exceeds the route
/// limit, or an over-limit body already buffered, is refused before anything is sent upstream.
#[tokio::test]
async fn chunked_body_over_limit_never_reaches_the_backend() {
    let (backend, gw) = setup().await;
    let one = format!("7d0\r\n{}\r\n0\r\n\r\n", "z".repeat(2000));
    rejected(&gw, &backend, "one 2000-byte chunk", &chunked(one.as_bytes()), 413, "body_too_large").await;
    let huge = b"ffffffffffffffff\r\nzzzz";
    rejected(&gw, &backend, "declared 2^64-1 chunk", &chunked(huge), 413, "body_too_large").await;
}

/// A minimal raw upstream that records the exact bytes of each forwarded request (one request per
/// connection: it answers with `connection: close`), to check what goes on the wire, byte for byte.
struct Capture {
    addr: std::net::SocketAddr,
    seen: std::sync::Arc<std::sync::Mutex<Vec<Vec<u8>>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Capture {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn find(h: &[u8], n: &[u8]) -> Option<usize> {
    h.windows(n.len()).position(|w| w == n)
}

/// Whether `buf` holds one complete request (head plus CL or chunked body).
fn complete_request(buf: &[u8]) -> bool {
    let Some(end) = find(buf, b"\r\n\r\n") else { return false };
    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
    let body = &buf[end + 4..];
    if head.contains("\r\ntransfer-encoding: chunked") {
        return body.ends_with(b"0\r\n\r\n");
    }
    let cl = head.split("\r\n").find_map(|l| l.strip_prefix("content-length: ")).and_then(|v| v.parse().ok());
    body.len() >= cl.unwrap_or(0)
}

async fn capture() -> Capture {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = l.local_addr().expect("addr");
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let rec = seen.clone();
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else { continue };
            let rec = rec.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut tmp = [0u8; 4096];
                while !complete_request(&buf) {
                    match tokio::time::timeout(Duration::from_secs(2), s.read(&mut tmp)).await {
                        Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&tmp[..n]),
                        _ => break,
                    }
                }
                let done = complete_request(&buf);
                rec.lock().expect("lock").push(buf);
                if done {
                    let _ = s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok").await;
                }
            });
        }
    });
    Capture { addr, seen, task }
}

/// Whatever odd-but-valid syntax the client used, the upstream gets a canonical head: CRLF line
/// endings only (a forwarder must not pass bare LF on, HTTP Garden bug 16), one framing field in
/// canonical form, chunk extensions and trailers not forwarded.
#[tokio::test]
async fn forwarded_requests_are_canonical_on_the_wire() {
    let cap = capture().await;
    let routes = "  - name: all\n    upstream: backend\n    max_body_bytes: 1KiB\n";
    let gw = gateway(&simple_config(&[format!("http://{}", cap.addr)], routes)).await;
    let cases: &[(&str, &[u8], &[u8], &str)] = &[
        (
            "bare LF head",
            b"POST /a HTTP/1.1\nHost: gw.test\nX-A: 1\nContent-Length: 5\nConnection: close\n\nhello",
            b"hello",
            "content-length: 5",
        ),
        (
            "CL with OWS and zeros",
            b"POST /a HTTP/1.1\r\nHost: gw.test\r\nContent-Length: \t005 \r\nConnection: close\r\n\r\nhello",
            b"hello",
            "content-length: 5",
        ),
        (
            "chunked with OWS, extensions and trailers",
            b"POST /a HTTP/1.1\r\nHost: gw.test\r\nTransfer-Encoding:  chunked \r\nConnection: close\r\n\r\n5;ext=\"x\"\r\nhello\r\n0;last\r\nX-Trailer: t\r\nContent-Length: 99\r\n\r\n",
            // Small chunked bodies are buffered and validated before anything goes upstream, and
            // forwarded with a Content-Length (extensions and trailers dropped).
            b"hello",
            "content-length: 5",
        ),
    ];
    for (name, req, body, framing) in cases {
        let before = cap.seen.lock().expect("lock").len();
        let resp = raw(gw.addr, req).await;
        assert!(resp.starts_with("HTTP/1.1 200 "), "{name}: {resp:?}");
        let seen = cap.seen.lock().expect("lock").clone();
        assert_eq!(seen.len(), before + 1, "{name}");
        let wire = &seen[before];
        let end = find(wire, b"\r\n\r\n").expect("head end") + 4;
        let (head, got_body) = wire.split_at(end);
        for (i, &b) in head.iter().enumerate() {
            if b == b'\n' {
                assert!(
                    i > 0 && head[i - 1] == b'\r',
                    "{name}: bare LF forwarded: {:?}",
                    String::from_utf8_lossy(head)
                );
            }
            if b == b'\r' {
                assert_eq!(head.get(i + 1), Some(&b'\n'), "{name}: bare CR forwarded");
            }
        }
        let head = String::from_utf8_lossy(head).to_ascii_lowercase();
        assert!(head.starts_with("post /a http/1.1\r\n"), "{name}: {head:?}");
        let framing_lines: Vec<&str> = head
            .split("\r\n")
            .filter(|l| l.starts_with("content-length:") || l.starts_with("transfer-encoding:"))
            .collect();
        assert_eq!(framing_lines, [*framing], "{name}: {head:?}");
        assert!(!head.contains("trailer"), "{name}: {head:?}");
        assert_eq!(got_body, *body, "{name}: body on the wire: {:?}", String::from_utf8_lossy(got_body));
    }
}

#[tokio::test]
async fn accepted_framings_are_forwarded_exactly() {
    let (backend, gw) = setup().await;
    // (name, raw request, expected body at the backend)
    let cases: &[(&str, &[u8], &[u8])] = &[
        (
            "plain chunked",
            b"POST /upload HTTP/1.1\r\nHost: gw.test\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
            b"hello world",
        ),
        (
            "OWS around `chunked` (RFC 9110 §5.5)",
            b"POST /upload HTTP/1.1\r\nHost: gw.test\r\nTransfer-Encoding:  chunked \t\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            b"hello",
        ),
        (
            "case-insensitive coding",
            b"POST /upload HTTP/1.1\r\nHost: gw.test\r\nTransfer-Encoding: Chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            b"hello",
        ),
        (
            "chunk extensions and upper-case hex",
            b"POST /upload HTTP/1.1\r\nHost: gw.test\r\nTransfer-Encoding: chunked\r\n\r\nA;name=v\r\n0123456789\r\n0;x\r\n\r\n",
            b"0123456789",
        ),
        (
            "trailers trying to redefine framing are dropped",
            b"POST /upload HTTP/1.1\r\nHost: gw.test\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nContent-Length: 100\r\nTransfer-Encoding: identity\r\n\r\n",
            b"hello",
        ),
        ("leading zeros in CL", b"POST /upload HTTP/1.1\r\nHost: gw.test\r\nContent-Length: 005\r\n\r\nhello", b"hello"),
        ("OWS around CL", b"POST /upload HTTP/1.1\r\nHost: gw.test\r\nContent-Length: \t5 \r\n\r\nhello", b"hello"),
        ("bare LF line endings in the head", b"POST /upload HTTP/1.1\nHost: gw.test\nContent-Length: 5\n\nhello", b"hello"),
        ("CL 0", b"POST /upload HTTP/1.1\r\nHost: gw.test\r\nContent-Length: 0\r\n\r\n", b""),
    ];
    for (name, req, body) in cases {
        let before = backend.count();
        let (resp, _) =
            raw_closes(gw.addr, &[*req, b"GET /next HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\n\r\n"].concat())
                .await;
        assert_eq!(resp.matches("HTTP/1.1 200 ").count(), 2, "{name}: {resp:?}");
        let got = backend.requests();
        assert_eq!(got.len(), before + 2, "{name}: {got:#?}");
        let r = &got[before];
        assert_eq!((r.method.as_str(), r.uri.as_str()), ("POST", "/upload"), "{name}");
        assert_eq!(r.body, *body, "{name}: body");
        framing_is_single(r);
        if body.is_empty() {
            assert!(r.header("transfer-encoding").is_none(), "{name}: {r:#?}");
        }
        assert!(r.header_all("trailer").is_empty());
        assert_eq!(got[before + 1].uri, "/next", "{name}");
        assert!(got[before + 1].body.is_empty(), "{name}");
    }
    // A Content-Length is forwarded normalised (`005` → `5`).
    let cl =
        backend.requests().iter().filter_map(|r| r.header("content-length").map(str::to_string)).collect::<Vec<_>>();
    assert!(cl.iter().all(|v| v.bytes().all(|b| b.is_ascii_digit()) && !v.starts_with('0') || v == "0"), "{cl:?}");
}

/// `Transfer_Encoding` is just an unknown field (underscore): the message has no body, so the
/// "chunked body" after it is the next request on the connection, which is garbage → 400 + close.
/// The gateway and the backend agree on the framing: nothing is smuggled.
#[tokio::test]
async fn underscore_transfer_encoding_is_an_unknown_field() {
    let (backend, gw) = setup().await;
    let req = format!(
        "POST /upload HTTP/1.1\r\nHost: gw.test\r\nTransfer_Encoding: chunked\r\n\r\n0\r\n\r\n{}",
        smuggled_request()
    );
    let (resp, closed) = raw_closes(gw.addr, req.as_bytes()).await;
    assert!(resp.starts_with("HTTP/1.1 200 "), "{resp:?}");
    let second = resp.split("HTTP/1.1 ").nth(2).unwrap_or("");
    assert!(second.starts_with("400 "), "the body must be parsed (and refused) as a new request: {resp:?}");
    assert!(closed);
    tokio::time::sleep(SETTLE).await;
    no_smuggled(&backend);
    let got = backend.requests();
    assert_eq!(got.len(), 1, "{got:#?}");
    assert_eq!(got[0].uri, "/upload");
    assert!(got[0].body.is_empty());
    framing_is_single(&got[0]);
    assert!(got[0].header("transfer-encoding").is_none());

    // With a Content-Length next to it, the CL frames the body.
    let req = b"POST /upload HTTP/1.1\r\nHost: gw.test\r\nTransfer_Encoding: chunked\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello";
    let (resp, closed) = raw_closes(gw.addr, req).await;
    assert!(resp.starts_with("HTTP/1.1 200 ") && closed, "{resp:?}");
    let r = backend.last().expect("forwarded");
    assert_eq!(r.body, b"hello");
    assert!(r.header("transfer-encoding").is_none());
    assert_eq!(r.header("content-length"), Some("5"));
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order() {
    let (backend, gw) = setup().await;
    let req = "GET /p1 HTTP/1.1\r\nHost: gw.test\r\n\r\n\
               POST /p2 HTTP/1.1\r\nHost: gw.test\r\nContent-Length: 3\r\n\r\nabc\
               POST /p3 HTTP/1.1\r\nHost: gw.test\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nde\r\n0\r\n\r\n\
               GET /p4 HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\n\r\n";
    let (resp, closed) = raw_closes(gw.addr, req.as_bytes()).await;
    assert!(closed);
    assert_eq!(resp.matches("HTTP/1.1 200 ").count(), 4, "{resp:?}");
    let order: Vec<usize> =
        ["\"/p1\"", "\"/p2\"", "\"/p3\"", "\"/p4\""].iter().map(|p| resp.find(p).expect(p)).collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "responses out of order: {resp:?}");
    let got = backend.requests();
    let seen: Vec<(&str, &str, &[u8])> = got.iter().map(|r| (r.method.as_str(), r.uri.as_str(), &r.body[..])).collect();
    assert_eq!(
        seen,
        vec![
            ("GET", "/p1", &b""[..]),
            ("POST", "/p2", &b"abc"[..]),
            ("POST", "/p3", &b"de"[..]),
            ("GET", "/p4", &b""[..])
        ]
    );
    got.iter().for_each(framing_is_single);
}

/// A GET (or HEAD/OPTIONS) with a body: the body is consumed as body (forwarded with the request),
/// never left in the buffer to be parsed as the next request (Pingora CVE-2025-4366 class).
#[tokio::test]
async fn bodies_of_get_requests_are_never_parsed_as_requests() {
    let (backend, gw) = setup().await;
    let s = smuggled_request();
    for method in ["GET", "HEAD", "OPTIONS", "DELETE"] {
        let before = backend.count();
        let req = format!(
            "{method} /first HTTP/1.1\r\nHost: gw.test\r\nContent-Length: {}\r\n\r\n{s}GET /second HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\n\r\n",
            s.len()
        );
        let (resp, closed) = raw_closes(gw.addr, req.as_bytes()).await;
        assert!(closed, "{method}");
        assert_eq!(resp.matches("HTTP/1.1 200 ").count(), 2, "{method}: {resp:?}");
        let got = &backend.requests()[before..];
        assert_eq!(got.len(), 2, "{method}: {got:#?}");
        assert_eq!((got[0].method.as_str(), got[0].uri.as_str()), (method, "/first"));
        assert_eq!(got[0].body, s.as_bytes(), "{method}: body not forwarded as body");
        assert_eq!(got[1].uri, "/second");
        no_smuggled(&backend);
    }
    // Chunked GET body with a request inside.
    let body = format!("{:x}\r\n{s}\r\n0\r\n\r\n", s.len());
    let req = format!("GET /first HTTP/1.1\r\nHost: gw.test\r\nTransfer-Encoding: chunked\r\n\r\n{body}GET /second HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\n\r\n");
    let before = backend.count();
    let (resp, _) = raw_closes(gw.addr, req.as_bytes()).await;
    assert_eq!(resp.matches("HTTP/1.1 200 ").count(), 2, "{resp:?}");
    let got = &backend.requests()[before..];
    assert_eq!(got.iter().map(|r| r.uri.as_str()).collect::<Vec<_>>(), ["/first", "/second"]);
    assert_eq!(got[0].body, s.as_bytes());
    no_smuggled(&backend);
}

/// HTTP/1.0 has no close-delimited request bodies (Pingora CVE-2026-2836): without a
/// Content-Length the request has no body, the gateway answers and closes (no keep-alive asked),
/// and bytes after the head are never forwarded, neither as body nor as a request.
#[tokio::test]
async fn http10_request_without_length_has_no_body() {
    let (backend, gw) = setup().await;
    let req = format!("POST /upload HTTP/1.0\r\nHost: gw.test\r\n\r\n{}", smuggled_request());
    let (resp, closed) = raw_closes(gw.addr, req.as_bytes()).await;
    assert!(resp.starts_with("HTTP/1.0 200 ") || resp.starts_with("HTTP/1.1 200 "), "{resp:?}");
    assert_eq!(resp.matches("HTTP/1.").count(), 1, "{resp:?}");
    assert!(closed);
    tokio::time::sleep(SETTLE).await;
    let got = backend.requests();
    assert_eq!(got.len(), 1, "{got:#?}");
    assert!(got[0].body.is_empty());
    no_smuggled(&backend);
}

#[tokio::test]
async fn expect_continue_with_too_large_length_gets_413_without_100() {
    let (backend, gw) = setup().await;
    let req = b"POST /upload HTTP/1.1\r\nHost: gw.test\r\nExpect: 100-continue\r\nContent-Length: 5000000\r\n\r\n";
    let (resp, closed) = raw_closes(gw.addr, req).await;
    assert!(resp.starts_with("HTTP/1.1 413 "), "no final answer straight from the head: {resp:?}");
    assert!(!resp.contains("100 Continue"), "{resp:?}");
    assert_eq!(error_code(&resp), "body_too_large");
    assert!(closed);
    tokio::time::sleep(SETTLE).await;
    assert_eq!(backend.count(), 0);
}

/// A well-behaved `Expect: 100-continue` client waits for `100 Continue`, then sends the body.
#[tokio::test]
async fn expect_continue_within_limit_gets_100_then_the_response() {
    let (backend, gw) = setup().await;
    let mut s = TcpStream::connect(gw.addr).await.expect("connect");
    s.write_all(b"POST /upload HTTP/1.1\r\nHost: gw.test\r\nExpect: 100-continue\r\nContent-Length: 5\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut buf = vec![0u8; 256];
    let n = tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf)).await.expect("100 in time").expect("read");
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 100 Continue\r\n\r\n"));
    s.write_all(b"hello").await.expect("write body");
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(2), s.read_to_end(&mut rest))
        .await
        .expect("response in time")
        .expect("read");
    let rest = String::from_utf8_lossy(&rest);
    assert!(rest.contains("HTTP/1.1 200 "), "{rest:?}");
    let r = backend.last().expect("forwarded");
    assert_eq!(r.body, b"hello");
    assert!(r.header("expect").is_none(), "Expect is hop-by-hop here: the gateway answered it");
}

#[tokio::test]
async fn body_over_route_limit_is_refused_with_content_length() {
    let (backend, gw) = setup().await;
    let body = "x".repeat(2000);
    let req = post("Content-Length: 2000\r\n", &body);
    rejected(&gw, &backend, "CL over limit", &req, 413, "body_too_large").await;
    // A huge but well-formed length (19 digits, the most the parser takes) is just over the limit.
    let req = post("Content-Length: 9999999999999999999\r\n", &smuggled_request());
    rejected(&gw, &backend, "CL 10^19 - 1", &req, 413, "body_too_large").await;
    // Exactly at the limit is fine.
    let body = "y".repeat(1024);
    let req = post("Content-Length: 1024\r\nConnection: close\r\n", &body);
    let resp = raw(gw.addr, &req).await;
    assert!(resp.starts_with("HTTP/1.1 200 "), "{resp:?}");
    assert_eq!(backend.last().expect("forwarded").body, body.as_bytes());
}

/// Chunked bodies announce no length: the limit is enforced while streaming. 413 and close, and the
/// backend never gets a complete request (the upstream connection is aborted mid-body).
#[tokio::test]
async fn body_over_route_limit_is_refused_when_chunked() {
    let (backend, gw) = setup().await;
    let mut body = String::new();
    for _ in 0..5 {
        body.push_str(&format!("190\r\n{}\r\n", "z".repeat(400)));
    }
    body.push_str("0\r\n\r\n");
    let (resp, closed) = raw_closes(gw.addr, &chunked(body.as_bytes())).await;
    assert!(resp.starts_with("HTTP/1.1 413 "), "{resp:?}");
    assert_eq!(error_code(&resp), "body_too_large");
    assert!(closed);
    tokio::time::sleep(SETTLE).await;
    for r in backend.requests() {
        assert!(r.body.is_empty(), "the backend received the over-limit body as complete: {} bytes", r.body.len());
    }
    // One chunk declaring more than the limit.
    let one = format!("7d0\r\n{}\r\n0\r\n\r\n", "z".repeat(2000));
    let (resp, closed) = raw_closes(gw.addr, &chunked(one.as_bytes())).await;
    assert!(resp.starts_with("HTTP/1.1 413 ") && closed, "{resp:?}");
    tokio::time::sleep(SETTLE).await;
    assert!(backend.requests().iter().all(|r| r.body.is_empty()));
}

/// A request that closes the connection ends it: pipelined bytes after it are never forwarded.
#[tokio::test]
async fn nothing_after_connection_close_is_forwarded() {
    let (backend, gw) = setup().await;
    let req = format!("GET /last HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\n\r\n{}", smuggled_request());
    let (resp, closed) = raw_closes(gw.addr, req.as_bytes()).await;
    assert!(closed);
    assert_eq!(resp.matches("HTTP/1.1 ").count(), 1, "{resp:?}");
    tokio::time::sleep(SETTLE).await;
    assert_eq!(backend.requests().iter().map(|r| r.uri.clone()).collect::<Vec<_>>(), ["/last"]);
}

/// Requests the gateway answers itself (404, 405) with an unread body close the connection, so the
/// body is never parsed as a request and nothing reaches the backend.
#[tokio::test]
async fn local_answers_with_unread_bodies_close_the_connection() {
    let backend = Backend::named("b").await;
    let routes = "  - name: api\n    match:\n      path: {prefix: /api}\n      methods: [GET]\n    upstream: backend\n";
    let gw = gateway(&simple_config(&[backend.url()], routes)).await;
    let inner = "GET /api/smuggled HTTP/1.1\r\nHost: gw.test\r\n\r\n";
    let chunked_inner = format!("{:x}\r\n{inner}\r\n0\r\n\r\n", inner.len());
    let cases = [
        (
            "404 with CL body",
            format!("POST /nope HTTP/1.1\r\nHost: gw.test\r\nContent-Length: {}\r\n\r\n{inner}", inner.len()),
            404,
        ),
        (
            "405 with CL body",
            format!("POST /api HTTP/1.1\r\nHost: gw.test\r\nContent-Length: {}\r\n\r\n{inner}", inner.len()),
            405,
        ),
        (
            "404 with chunked body",
            format!("POST /nope HTTP/1.1\r\nHost: gw.test\r\nTransfer-Encoding: chunked\r\n\r\n{chunked_inner}"),
            404,
        ),
        (
            "405 with chunked body",
            format!("POST /api HTTP/1.1\r\nHost: gw.test\r\nTransfer-Encoding: chunked\r\n\r\n{chunked_inner}"),
            405,
        ),
    ];
    for (name, req, status) in cases {
        let (resp, closed) = raw_closes(gw.addr, req.as_bytes()).await;
        assert_eq!(status_of(&resp), status, "{name}: {resp:?}");
        assert_eq!(resp.matches("HTTP/1.1 ").count(), 1, "{name}: {resp:?}");
        assert!(closed, "{name}: connection left open with an unread body");
    }
    tokio::time::sleep(SETTLE).await;
    assert_eq!(backend.count(), 0, "{:#?}", backend.requests());
    // Without a body, a 404 keeps the connection usable.
    let (resp, _) = raw_closes(
        gw.addr,
        b"GET /nope HTTP/1.1\r\nHost: gw.test\r\n\r\nGET /api/ok HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(resp.starts_with("HTTP/1.1 404 ") && resp.contains("HTTP/1.1 200 "), "{resp:?}");
    assert_eq!(backend.last().expect("forwarded").uri, "/api/ok");
}

/// RFC 9110 §10.1.1: a 100-continue expectation in an HTTP/1.0 request MUST be ignored; a 1.0
/// client waiting for its final answer must never get an interim `100` it may take as final.
#[tokio::test]
async fn expect_continue_is_ignored_for_http10() {
    let (backend, gw) = setup().await;
    let mut s = TcpStream::connect(gw.addr).await.expect("connect");
    s.write_all(b"POST /upload HTTP/1.0\r\nHost: gw.test\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n")
        .await
        .expect("write");
    let mut buf = vec![0u8; 256];
    let early = tokio::time::timeout(Duration::from_millis(300), s.read(&mut buf)).await;
    if let Ok(Ok(n)) = early {
        panic!("the gateway answered before the body: {:?}", String::from_utf8_lossy(&buf[..n]));
    }
    s.write_all(b"hello").await.expect("write body");
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(2), s.read_to_end(&mut rest))
        .await
        .expect("response in time")
        .expect("read");
    let rest = String::from_utf8_lossy(&rest);
    assert!(rest.starts_with("HTTP/1.0 200 ") || rest.starts_with("HTTP/1.1 200 "), "{rest:?}");
    assert!(!rest.contains(" 100 "), "{rest:?}");
    assert_eq!(backend.last().expect("forwarded").body, b"hello");
}
