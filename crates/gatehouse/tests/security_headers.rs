//! Security regressions: header abuse and slow clients.
//!
//! - Hop-by-hop fields and every field named in `Connection` never reach the backend, and naming a
//!   field the gateway itself sets (`X-Forwarded-For`) cannot remove the gateway's value (Apache
//!   CVE-2022-31813 class).
//! - Forwarding headers from an untrusted peer are replaced, from a trusted proxy appended to.
//! - Host rules (RFC 9112 §3.2), head size/count/URI limits (431/414), and the slowloris and
//!   slow-body deadlines (408), with nothing forwarded for any refused request.

use std::time::{Duration, Instant};

use gatehouse_testkit::{raw, raw_closes, request, status_of, Backend, Cfg, RawBackend, TestGateway};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const SETTLE: Duration = Duration::from_millis(100);

/// The same, per case in a table (refusals happen before any upstream connection is made).
const CASE_SETTLE: Duration = Duration::from_millis(30);

/// One backend behind a catch-all route; `listener_extra` is appended to the listener item.
async fn setup(listener_extra: &str) -> (Backend, TestGateway) {
    let backend = Backend::named("b").await;
    let gw =
        Cfg::new().listener(listener_extra).upstream("backend", &[backend.url()]).route("all", "backend").start().await;
    (backend, gw)
}

fn error_code(resp: &str) -> String {
    let body = resp.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    let v: serde_json::Value = serde_json::from_str(body).unwrap_or(serde_json::Value::Null);
    v["error"]["code"].as_str().unwrap_or("").to_string()
}

async fn rejected(gw: &TestGateway, backend: &Backend, name: &str, req: &[u8], status: u16, code: &str) {
    let before = backend.count();
    let (resp, closed) = raw_closes(gw.addr, req).await;
    assert_eq!(status_of(&resp), status, "{name}: {resp:?}");
    assert_eq!(error_code(&resp), code, "{name}: {resp:?}");
    assert!(closed, "{name}: connection left open");
    tokio::time::sleep(CASE_SETTLE).await;
    assert_eq!(backend.count(), before, "{name}: forwarded anyway: {:#?}", backend.last());
}

const HOP_BY_HOP: &[&str] =
    &["connection", "keep-alive", "te", "trailer", "upgrade", "proxy-connection", "proxy-authorization"];

#[tokio::test]
async fn hop_by_hop_fields_are_stripped() {
    let (backend, gw) = setup("").await;
    let r = request(
        gw.addr,
        "GET",
        "/hop",
        &[
            ("connection", "keep-alive, Upgrade, X-Secret, x-other-secret"),
            ("keep-alive", "timeout=5, max=100"),
            ("te", "trailers, deflate"),
            ("trailer", "X-Checksum"),
            // Not a protocol the route allows to upgrade to (the default allows only
            // `websocket`, see tests/websocket.rs): `Upgrade` is a plain hop-by-hop field here.
            ("upgrade", "h2c"),
            ("proxy-connection", "keep-alive"),
            ("proxy-authorization", "Basic dXNlcjpwYXNz"),
            ("x-secret", "s1"),
            ("X-Other-Secret", "s2"),
            ("x-kept", "yes"),
        ],
        b"",
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let got = backend.last().expect("forwarded");
    for h in HOP_BY_HOP.iter().chain(&["x-secret", "x-other-secret"]) {
        assert!(got.header(h).is_none(), "`{h}` crossed the proxy: {got:#?}");
    }
    assert_eq!(got.header("x-kept"), Some("yes"));
}

/// Naming the gateway's own fields in `Connection` does not remove what the gateway adds, and
/// naming framing fields does not break framing.
#[tokio::test]
async fn connection_cannot_remove_the_gateways_own_headers() {
    let (backend, gw) = setup("    forwarded_header: true\n").await;
    let r = request(
        gw.addr,
        "POST",
        "/cve-2022-31813",
        &[
            ("connection", "close, X-Forwarded-For, X-Forwarded-Proto, X-Forwarded-Host, Forwarded, X-Request-Id"),
            ("x-forwarded-for", "10.0.0.1"),
            ("content-type", "text/plain"),
        ],
        b"hello",
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let got = backend.last().expect("forwarded");
    assert_eq!(got.header_all("x-forwarded-for"), ["127.0.0.1"], "{got:#?}");
    assert_eq!(got.header("x-forwarded-proto"), Some("http"));
    assert_eq!(got.header("x-forwarded-host"), Some("gatehouse.test"));
    assert!(got.header("forwarded").is_some_and(|f| f.starts_with("for=127.0.0.1")), "{got:#?}");
    assert!(got.header("x-request-id").is_some_and(|v| !v.is_empty()));
    assert_eq!(got.body, b"hello");

    // `Connection: Content-Length` / `Transfer-Encoding` / `Host`: framing and Host are recreated.
    for (conn, body_framing) in [("content-length", "content-length"), ("transfer-encoding, host", "content-length")] {
        let req = format!(
            "POST /frame HTTP/1.1\r\nHost: gw.test\r\nConnection: {conn}\r\nContent-Length: 5\r\n\r\nhelloGET /next HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\n\r\n"
        );
        let (resp, _) = raw_closes(gw.addr, req.as_bytes()).await;
        assert_eq!(resp.matches("HTTP/1.1 200 ").count(), 2, "{conn}: {resp:?}");
        let reqs = backend.requests();
        let got = &reqs[reqs.len() - 2];
        assert_eq!(got.uri, "/frame");
        assert_eq!(got.body, b"hello", "{conn}");
        assert!(got.header(body_framing).is_some(), "{conn}: {got:#?}");
        assert!(got.header("host").is_some(), "{conn}: {got:#?}");
        assert_eq!(reqs.last().map(|r| r.uri.as_str()), Some("/next"));
    }
}

const SPOOFED: &[(&str, &str)] = &[
    ("x-forwarded-for", "1.2.3.4"),
    ("x-forwarded-host", "evil.example"),
    ("x-forwarded-proto", "https"),
    ("x-forwarded-port", "443"),
    ("x-real-ip", "1.2.3.4"),
    ("forwarded", "for=1.2.3.4;proto=https;host=evil.example"),
];

#[tokio::test]
async fn forwarding_headers_from_untrusted_peers_are_replaced() {
    let (backend, gw) = setup("    forwarded_header: true\n").await;
    let r = request(gw.addr, "GET", "/xff", SPOOFED, b"").await;
    assert_eq!(r.status, 200);
    let got = backend.last().expect("forwarded");
    assert_eq!(got.header_all("x-forwarded-for"), ["127.0.0.1"], "{got:#?}");
    assert_eq!(got.header_all("x-forwarded-proto"), ["http"]);
    assert_eq!(got.header_all("x-forwarded-host"), ["gatehouse.test"]);
    assert!(got.header("x-forwarded-port").is_none());
    assert!(got.header("x-real-ip").is_none());
    assert_eq!(got.header_all("forwarded"), ["for=127.0.0.1;proto=http;host=\"gatehouse.test\""], "{got:#?}");
    let all = format!("{:?}", got.headers);
    assert!(!all.contains("1.2.3.4") && !all.contains("evil.example"), "spoofed value forwarded: {all}");

    // Several spoofed XFF lines and a comma list are all dropped.
    let req = b"GET /xff2 HTTP/1.1\r\nHost: gw.test\r\nX-Forwarded-For: 1.2.3.4, 5.6.7.8\r\nx-forwarded-for: 9.9.9.9\r\nConnection: close\r\n\r\n";
    assert_eq!(status_of(&raw(gw.addr, req).await), 200);
    assert_eq!(backend.last().expect("forwarded").header_all("x-forwarded-for"), ["127.0.0.1"]);
}

/// Without `forwarded_header`, no RFC 7239 `Forwarded` is added, and a spoofed one is still removed.
#[tokio::test]
async fn forwarded_header_is_opt_in_and_spoofed_ones_are_removed() {
    let (backend, gw) = setup("").await;
    let r = request(gw.addr, "GET", "/xff", SPOOFED, b"").await;
    assert_eq!(r.status, 200);
    let got = backend.last().expect("forwarded");
    assert!(got.header("forwarded").is_none(), "{got:#?}");
    assert_eq!(got.header_all("x-forwarded-for"), ["127.0.0.1"], "{got:#?}");
}

#[tokio::test]
async fn forwarding_headers_from_trusted_proxies_are_appended_to() {
    let (backend, gw) = setup("    trusted_proxies: [127.0.0.1/32]\n    forwarded_header: true\n").await;
    let r = request(gw.addr, "GET", "/xff", SPOOFED, b"").await;
    assert_eq!(r.status, 200);
    let got = backend.last().expect("forwarded");
    assert_eq!(got.header_all("x-forwarded-for"), ["1.2.3.4, 127.0.0.1"], "{got:#?}");
    assert_eq!(got.header_all("x-forwarded-proto"), ["https"]);
    assert_eq!(got.header_all("x-forwarded-host"), ["evil.example"]);
    assert_eq!(
        got.header_all("forwarded"),
        ["for=1.2.3.4;proto=https;host=evil.example, for=127.0.0.1;proto=http;host=\"gatehouse.test\""],
        "{got:#?}"
    );

    // Several XFF lines are joined in order, then the peer is appended.
    let req = b"GET /xff2 HTTP/1.1\r\nHost: gw.test\r\nX-Forwarded-For: 1.2.3.4, 5.6.7.8\r\nx-forwarded-for: 9.9.9.9\r\nConnection: close\r\n\r\n";
    assert_eq!(status_of(&raw(gw.addr, req).await), 200);
    assert_eq!(
        backend.last().expect("forwarded").header_all("x-forwarded-for"),
        ["1.2.3.4, 5.6.7.8, 9.9.9.9, 127.0.0.1"]
    );

    // Without prior headers the gateway starts the chain.
    let r = request(gw.addr, "GET", "/fresh", &[], b"").await;
    assert_eq!(r.status, 200);
    let got = backend.last().expect("forwarded");
    assert_eq!(got.header_all("x-forwarded-for"), ["127.0.0.1"]);
    assert_eq!(got.header_all("x-forwarded-proto"), ["http"]);
}

#[tokio::test]
async fn invalid_host_headers_are_refused() {
    let (backend, gw) = setup("").await;
    let cases: &[(&str, &[u8])] = &[
        ("duplicate Host", b"GET / HTTP/1.1\r\nHost: gw.test\r\nHost: gw.test\r\n\r\n"),
        ("differing Host", b"GET / HTTP/1.1\r\nHost: gw.test\r\nhost: evil.example\r\n\r\n"),
        ("missing Host in HTTP/1.1", b"GET / HTTP/1.1\r\nX-A: b\r\n\r\n"),
        ("Host with a space", b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n"),
        ("Host with userinfo", b"GET / HTTP/1.1\r\nHost: gw@evil\r\n\r\n"),
        ("Host with a path", b"GET / HTTP/1.1\r\nHost: gw.test/admin\r\n\r\n"),
        ("Host with a query", b"GET / HTTP/1.1\r\nHost: gw.test?x\r\n\r\n"),
        ("Host with a fragment", b"GET / HTTP/1.1\r\nHost: gw.test#x\r\n\r\n"),
        ("Host with a backslash", b"GET / HTTP/1.1\r\nHost: gw.test\\evil\r\n\r\n"),
        ("Host with non-ASCII", b"GET / HTTP/1.1\r\nHost: gw.t\xc3\xa9st\r\n\r\n"),
        ("Host with a comma list", b"GET / HTTP/1.1\r\nHost: gw.test, evil.example\r\n\r\n"),
        // Would be forwarded as `X-Forwarded-Host: gw.test,evil.example`, a two-element list.
        ("Host with a comma", b"GET / HTTP/1.1\r\nHost: gw.test,evil.example\r\n\r\n"),
        ("absolute-form authority with a comma", b"GET http://gw.test,evil.example/ HTTP/1.1\r\nHost: gw.test\r\n\r\n"),
        ("empty Host", b"GET / HTTP/1.1\r\nHost: \r\n\r\n"),
    ];
    for (name, req) in cases {
        rejected(&gw, &backend, name, req, 400, "bad_request").await;
    }
    // HTTP/1.0 may omit Host.
    let resp = raw(gw.addr, b"GET /old HTTP/1.0\r\n\r\n").await;
    assert_eq!(status_of(&resp), 200, "{resp:?}");
    assert_eq!(backend.last().expect("forwarded").uri, "/old");
}

const LIMITS: &str = "    limits: {max_header_bytes: 4KiB, max_headers: 20, max_uri_bytes: 1KiB}\n";

#[tokio::test]
async fn oversized_heads_are_refused() {
    let (backend, gw) = setup(LIMITS).await;
    // Header block over max_header_bytes.
    let big = format!("GET / HTTP/1.1\r\nHost: gw.test\r\nX-Big: {}\r\n\r\n", "a".repeat(5000));
    rejected(&gw, &backend, "header over 4 KiB", big.as_bytes(), 431, "header_too_large").await;
    // Many small fields adding up over the limit.
    let mut many_small = "GET / HTTP/1.1\r\nHost: gw.test\r\n".to_string();
    for i in 0..10 {
        many_small.push_str(&format!("X-{i}: {}\r\n", "b".repeat(500)));
    }
    many_small.push_str("\r\n");
    rejected(&gw, &backend, "head over 4 KiB in pieces", many_small.as_bytes(), 431, "header_too_large").await;
    // A head that never ends (no final CRLF) is cut off at the limit, not buffered forever.
    let endless = format!("GET / HTTP/1.1\r\nHost: gw.test\r\nX-Big: {}", "c".repeat(8000));
    rejected(&gw, &backend, "unterminated head", endless.as_bytes(), 431, "header_too_large").await;

    // More than max_headers fields.
    let mut many = "GET / HTTP/1.1\r\nHost: gw.test\r\n".to_string();
    for i in 0..20 {
        many.push_str(&format!("X-{i}: 1\r\n"));
    }
    many.push_str("\r\n");
    rejected(&gw, &backend, "21 fields", many.as_bytes(), 431, "header_too_large").await;
    // Exactly max_headers fields is fine.
    let mut ok = "GET /twenty HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\n".to_string();
    for i in 0..18 {
        ok.push_str(&format!("X-{i}: 1\r\n"));
    }
    ok.push_str("\r\n");
    assert_eq!(status_of(&raw(gw.addr, ok.as_bytes()).await), 200);
    assert_eq!(backend.last().expect("forwarded").uri, "/twenty");

    // URI over max_uri_bytes: complete request, and a request line that never ends.
    let long = format!("GET /{} HTTP/1.1\r\nHost: gw.test\r\n\r\n", "u".repeat(1100));
    rejected(&gw, &backend, "URI over 1 KiB", long.as_bytes(), 414, "uri_too_long").await;
    let endless = format!("GET /{}", "u".repeat(3000));
    rejected(&gw, &backend, "unterminated request line", endless.as_bytes(), 414, "uri_too_long").await;
    // Long query counts too.
    let long_q = format!("GET /?q={} HTTP/1.1\r\nHost: gw.test\r\n\r\n", "q".repeat(1100));
    rejected(&gw, &backend, "query over 1 KiB", long_q.as_bytes(), 414, "uri_too_long").await;
}

/// Writes `head` then one header line every 300 ms; returns what was read and when the gateway
/// closed the connection (measured from the first byte), with a 4 s bound.
async fn trickle_headers(gw: &TestGateway) -> (String, Option<Duration>) {
    let s = TcpStream::connect(gw.addr).await.expect("connect");
    let (mut rd, mut wr) = s.into_split();
    let start = Instant::now();
    wr.write_all(b"GET /slow HTTP/1.1\r\nHost: gw.test\r\n").await.expect("write");
    let writer = tokio::spawn(async move {
        for i in 0..12 {
            tokio::time::sleep(Duration::from_millis(300)).await;
            if wr.write_all(format!("X-Slow-{i}: 1\r\n").as_bytes()).await.is_err() {
                return;
            }
        }
    });
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let closed_at = loop {
        match tokio::time::timeout_at((start + Duration::from_secs(4)).into(), rd.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break Some(start.elapsed()),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Err(_) => break None,
        }
    };
    writer.abort();
    (String::from_utf8_lossy(&out).into_owned(), closed_at)
}

#[tokio::test]
async fn slowloris_headers_get_408_and_close() {
    let (backend, gw) = setup("    timeouts: {header_read: 1s}\n").await;
    let (resp, closed_at) = trickle_headers(&gw).await;
    let closed_at = closed_at.expect("connection still open after 4 s of trickled headers");
    assert!(resp.starts_with("HTTP/1.1 408 "), "{resp:?}");
    assert_eq!(error_code(&resp), "request_timeout");
    assert!(closed_at >= Duration::from_millis(900), "closed too early: {closed_at:?}");
    assert!(closed_at <= Duration::from_millis(1500), "the head deadline is not a whole-head deadline: {closed_at:?}");
    tokio::time::sleep(SETTLE).await;
    assert_eq!(backend.count(), 0);
    // The listener still serves others.
    assert_eq!(request(gw.addr, "GET", "/after", &[], b"").await.status, 200);
}

#[tokio::test]
async fn slow_body_gets_408_and_never_reaches_the_backend_complete() {
    let (backend, gw) = setup("    timeouts: {body_read: 1s}\n").await;
    let s = TcpStream::connect(gw.addr).await.expect("connect");
    let (mut rd, mut wr) = s.into_split();
    let start = Instant::now();
    wr.write_all(b"POST /slow HTTP/1.1\r\nHost: gw.test\r\nContent-Length: 100\r\n\r\n").await.expect("write");
    let writer = tokio::spawn(async move {
        for _ in 0..10 {
            if wr.write_all(b"0123456789").await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    });
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let closed_at = loop {
        match tokio::time::timeout_at((start + Duration::from_secs(4)).into(), rd.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break Some(start.elapsed()),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Err(_) => break None,
        }
    };
    writer.abort();
    let resp = String::from_utf8_lossy(&out);
    let closed_at = closed_at.expect("connection still open after 4 s of a trickled body");
    assert!(closed_at <= Duration::from_millis(1500), "body deadline not enforced: {closed_at:?}");
    assert!(resp.is_empty() || resp.starts_with("HTTP/1.1 408 "), "{resp:?}");
    tokio::time::sleep(SETTLE).await;
    for r in backend.requests() {
        assert_ne!(r.body.len(), 100, "the backend received the complete slow body");
        assert!(r.body.is_empty(), "the backend took a partial body as complete: {r:#?}");
    }
}

/// h2c upgrade smuggling (Bishop Fox): the upgrade fields are hop-by-hop, so the backend sees a
/// plain HTTP/1.1 request and never a chance to switch protocols on the gateway's connection.
#[tokio::test]
async fn h2c_upgrade_is_stripped() {
    let (backend, gw) = setup("").await;
    let req = b"GET /h2c HTTP/1.1\r\nHost: gw.test\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\nGET /after HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\n\r\n";
    let (resp, closed) = raw_closes(gw.addr, req).await;
    assert!(closed);
    assert_eq!(resp.matches("HTTP/1.1 200 ").count(), 2, "{resp:?}");
    // Status lines only: the random request ids in the body and headers may contain "101".
    assert!(!resp.contains("HTTP/1.1 101"), "{resp:?}");
    let got = backend.requests();
    assert_eq!(got.iter().map(|r| r.uri.as_str()).collect::<Vec<_>>(), ["/h2c", "/after"]);
    for h in ["upgrade", "connection", "http2-settings"] {
        assert!(got[0].header(h).is_none(), "`{h}` forwarded: {:#?}", got[0]);
    }
}

/// A client's `X-Request-Id` is propagated only when it is a safe token; anything else is replaced
/// by a generated id (it ends up in logs and in the response).
#[tokio::test]
async fn client_request_ids_are_validated() {
    let (backend, gw) = setup("").await;
    let r = request(gw.addr, "GET", "/id", &[("x-request-id", "abc-123_X.y:z")], b"").await;
    assert_eq!(r.header("x-request-id"), Some("abc-123_X.y:z"));
    assert_eq!(backend.last().expect("forwarded").header_all("x-request-id"), ["abc-123_X.y:z"]);
    let long = "a".repeat(200);
    for bad in ["a b", "<script>", "a,b", "\"q\"", long.as_str(), "id%0d%0a"] {
        let r = request(gw.addr, "GET", "/id", &[("x-request-id", bad)], b"").await;
        let id = r.header("x-request-id").expect("an id").to_string();
        assert_ne!(id, bad);
        assert!(id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()), "{bad:?} -> {id:?}");
        assert_eq!(backend.last().expect("forwarded").header_all("x-request-id"), [id.as_str()], "{bad:?}");
    }
}

/// `server.request_id`: a custom header carries the id both ways (a client's copy of it is
/// replaced when incoming ids are not trusted, and never duplicated), on proxied and on
/// gateway-made responses.
#[tokio::test]
async fn request_id_header_is_configurable_and_incoming_ids_can_be_ignored() {
    let backend = Backend::named("b").await;
    let gw = Cfg::new()
        .yaml("server:\n  request_id: {header: X-Correlation-Id, trust_incoming: false}")
        .upstream("backend", &[backend.url()])
        .route_with("all", "backend", "match: {path: {prefix: /id}}")
        .start()
        .await;
    let r = request(gw.addr, "GET", "/id", &[("x-correlation-id", "client-chosen-1")], b"").await;
    let id = r.header("x-correlation-id").expect("the id comes back").to_string();
    assert_ne!(id, "client-chosen-1", "incoming ids are not trusted");
    assert!(id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
    assert!(r.header("x-request-id").is_none(), "only the configured header");
    assert_eq!(backend.last().expect("forwarded").header_all("x-correlation-id"), [id.as_str()]);
    // A gateway-made answer (404) carries it too.
    let r = request(gw.addr, "GET", "/nowhere", &[], b"").await;
    assert_eq!(r.status, 404);
    let id = r.header("x-correlation-id").expect("an id on a local answer");
    assert_eq!(r.json()["error"]["request_id"], id);
}

/// Header names with `_` (CGI/WSGI backends read `X_Forwarded_For` as `X-Forwarded-For`): by
/// default they are dropped before anything reads the request, so they cannot stand in for the
/// forwarding and identity headers the gateway strips and sets.
#[tokio::test]
async fn underscore_header_names_are_dropped_by_default() {
    let (backend, gw) = setup("").await;
    let req = b"GET /u HTTP/1.1\r\nHost: gw.test\r\nX_Forwarded_For: 6.6.6.6\r\nX_Consumer_Name: admin\r\nX_Real_IP: 6.6.6.6\r\nX-Ok: 1\r\nConnection: close\r\n\r\n";
    let (resp, _) = raw_closes(gw.addr, req).await;
    assert_eq!(status_of(&resp), 200, "{resp}");
    let got = backend.last().expect("forwarded");
    assert!(got.headers.iter().all(|(n, _)| !n.contains('_')), "{:#?}", got.headers);
    assert!(got.headers.iter().all(|(_, v)| !v.contains("6.6.6.6")), "{:#?}", got.headers);
    assert_eq!(got.header("x-ok"), Some("1"));
    assert_eq!(got.header("x-forwarded-for"), Some("127.0.0.1"));
}

/// `headers_with_underscores: reject` answers 400 and forwards nothing; `allow` keeps them.
#[tokio::test]
async fn underscore_header_names_rejected_or_allowed_when_configured() {
    let (backend, gw) = setup("headers_with_underscores: reject").await;
    let req = b"GET /u HTTP/1.1\r\nHost: gw.test\r\nX_Consumer_Name: admin\r\nConnection: close\r\n\r\n";
    rejected(&gw, &backend, "underscore rejected", req, 400, "bad_request").await;
    let (backend, gw) = setup("headers_with_underscores: allow").await;
    let (resp, _) = raw_closes(gw.addr, req).await;
    assert_eq!(status_of(&resp), 200, "{resp}");
    assert_eq!(backend.last().expect("forwarded").header("x_consumer_name"), Some("admin"));
}

/// A backend that answers a plain request with `101`: the client gets 502 and its connection is
/// closed (the exchange's protocol state is unknown), so a pipelined request is never read from it.
#[tokio::test]
async fn an_unsolicited_101_closes_the_client_connection() {
    let up =
        RawBackend::start(b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: foo\r\n\r\n", false)
            .await;
    let gw = Cfg::new().upstream("backend", &[up.url()]).route("all", "backend").start().await;
    let req = b"GET /a HTTP/1.1\r\nHost: gw.test\r\n\r\nGET /b HTTP/1.1\r\nHost: gw.test\r\n\r\n";
    let (resp, closed) = raw_closes(gw.addr, req).await;
    assert_eq!(status_of(&resp), 502, "{resp}");
    assert_eq!(resp.matches("HTTP/1.1 ").count(), 1, "the pipelined request was answered: {resp}");
    assert!(closed, "connection left open after the unsolicited 101");
}
