//! Security regressions: misbehaving backends (Envoy #9016, sozu #529, tempesta #900, Caddy #7845
//! class). The gateway must turn a bad upstream response into its own documented JSON error
//! (`{"error":{"status","code","message","request_id"}}`), never relay ambiguous framing, and never
//! let a truncated body look complete.

use std::time::{Duration, Instant};

use gatehouse_testkit::{free_port, get, raw_closes, Backend, Cfg, RawBackend, Received, Reply, Resp, TestGateway};

/// The gateway's error body, checked for shape; returns it.
fn error_json(r: &Resp, status: u16, code: &str) -> serde_json::Value {
    assert_eq!(r.status, status, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/json"), "{r:?}");
    let v = r.json();
    let e = &v["error"];
    assert_eq!(e["status"], status, "{v}");
    assert_eq!(e["code"], code, "{v}");
    assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
    let id = e["request_id"].as_str().expect("request_id");
    assert_eq!(r.header("x-request-id"), Some(id), "request id in body and header differ");
    v
}

/// A gateway with one upstream per target URL, routed by prefix `/u{i}`.
async fn multi_gateway(targets: &[String], upstream_extra: &str) -> TestGateway {
    let mut cfg = Cfg::new();
    for (i, t) in targets.iter().enumerate() {
        let u = format!("u{i}");
        cfg = cfg.upstream_with(&u, &[t], upstream_extra).route_with(
            &format!("r{i}"),
            &u,
            &format!("match: {{path: {{prefix: /{u}}}}}"),
        );
    }
    cfg.start().await
}

fn leak(v: Vec<u8>) -> &'static [u8] {
    Box::leak(v.into_boxed_slice())
}

/// Responses no conforming HTTP/1.1 client could frame unambiguously: each is a 502.
#[tokio::test]
async fn malformed_upstream_responses_become_502() {
    let mut huge_head = b"HTTP/1.1 200 OK\r\n".to_vec();
    for i in 0..80 {
        huge_head.extend_from_slice(format!("x-filler-{i}: {}\r\n", "f".repeat(1000)).as_bytes());
    }
    huge_head.extend_from_slice(b"content-length: 2\r\n\r\nok");
    let cases: Vec<(&str, &'static [u8], bool)> = vec![
        ("garbage with a blank line", b"garbage\r\n\r\n", true),
        ("binary garbage then close", b"\x00\x01\x02\x03 not http at all", true),
        ("HTTP/0.9-style body", b"<html>hello</html>\r\n\r\n", true),
        ("CL + TE", b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", false),
        ("TE + CL", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n5\r\nhello\r\n0\r\n\r\n", false),
        ("two different CLs", b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 45\r\n\r\nhelloHTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nfake", false),
        ("CL list", b"HTTP/1.1 200 OK\r\nContent-Length: 5, 45\r\n\r\nhello", false),
        ("negative CL", b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\nhello", true),
        ("unknown transfer coding", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nhello", true),
        ("TE in an HTTP/1.0 response", b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", true),
        ("unsolicited 101", b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\nGET /admin HTTP/1.1\r\n\r\n", false),
        ("status out of range", b"HTTP/1.1 999 Nope\r\nContent-Length: 0\r\n\r\n", false),
        ("two-digit status", b"HTTP/1.1 20 OK\r\nContent-Length: 0\r\n\r\n", false),
        ("obs-fold in response", b"HTTP/1.1 200 OK\r\nX-A: a\r\n b\r\nContent-Length: 2\r\n\r\nok", false),
        ("NUL in response header", b"HTTP/1.1 200 OK\r\nX-A: a\0b\r\nContent-Length: 2\r\n\r\nok", false),
        ("space before colon", b"HTTP/1.1 200 OK\r\nContent-Length : 2\r\n\r\nok", false),
        ("head closed midway", b"HTTP/1.1 200 OK\r\nContent-Le", true),
        ("response head over 64 KiB", leak(huge_head), false),
    ];
    let mut backends = Vec::new();
    for (_, bytes, close) in &cases {
        backends.push(RawBackend::start(bytes, *close).await);
    }
    let gw = multi_gateway(&backends.iter().map(|b| b.url()).collect::<Vec<_>>(), "").await;
    for (i, (name, _, _)) in cases.iter().enumerate() {
        let r = get(gw.addr, &format!("/u{i}/x")).await;
        assert_eq!(r.status, 502, "{name}: {r:?}");
        let v = error_json(&r, 502, "upstream_invalid_response");
        assert!(v["error"]["message"].as_str().unwrap_or("").contains(&format!("u{i}")), "{name}: {v}");
        assert!(!r.text().contains("fake") && !r.text().contains("hello"), "{name}: upstream bytes relayed: {r:?}");
    }
}

/// A backend that dies inside the body: the client gets the status line and the announced length,
/// then the connection closes before the length is reached; never a complete-looking body.
#[tokio::test]
async fn truncated_bodies_never_look_complete() {
    let mut cl = b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n".to_vec();
    cl.extend(std::iter::repeat_n(b'a', 1000));
    let cl = RawBackend::start(leak(cl), true).await;
    let chunked =
        RawBackend::start(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n wor", true).await;
    let bad_chunk =
        RawBackend::start(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\n", true).await;
    let gw = multi_gateway(&[cl.url(), chunked.url(), bad_chunk.url()], "").await;

    let (resp, closed) = raw_closes(gw.addr, b"GET /u0 HTTP/1.1\r\nHost: gw.test\r\n\r\n").await;
    assert!(closed, "connection left open after a truncated body");
    assert!(resp.starts_with("HTTP/1.1 200 "), "{resp:?}");
    let (head, body) = resp.split_once("\r\n\r\n").expect("a head");
    assert!(head.to_ascii_lowercase().contains("content-length: 100000"), "{head}");
    assert!(body.len() < 100_000, "a truncated body was padded to its length");
    assert!(body.bytes().all(|b| b == b'a'), "no second response may follow: {body:?}");

    // Chunked to the client: the last-chunk `0\r\n\r\n` must never be sent for a truncated body.
    let (resp, closed) = raw_closes(gw.addr, b"GET /u1 HTTP/1.1\r\nHost: gw.test\r\n\r\n").await;
    assert!(closed, "connection left open");
    assert!(resp.starts_with("HTTP/1.1 200 "), "{resp:?}");
    assert!(resp.to_ascii_lowercase().contains("transfer-encoding: chunked"), "{resp:?}");
    assert!(!resp.ends_with("0\r\n\r\n"), "truncated chunked body terminated as complete: {resp:?}");
    assert_eq!(resp.matches("HTTP/1.1").count(), 1, "{resp:?}");

    // An invalid chunk from the upstream: whatever the client got, it is not a complete response
    // (here nothing had been flushed yet, so it is a clean 502; see the test below).
    let (resp, _) = raw_closes(gw.addr, b"GET /u2 HTTP/1.1\r\nHost: gw.test\r\n\r\n").await;
    assert!(resp.starts_with("HTTP/1.1 502 "), "{resp:?}");
    assert!(!resp.ends_with("0\r\n\r\n"), "invalid chunked body terminated as complete: {resp:?}");
    assert!(resp.matches("HTTP/1.1").count() <= 1, "{resp:?}");
}

/// When the upstream body turns out invalid before any response byte was flushed to the client,
/// the client should get the gateway's 502, not a silently closed connection (which an HTTP client
/// cannot tell from a network failure, and may retry even for a non-idempotent request).
#[tokio::test]
async fn invalid_upstream_body_before_any_byte_is_sent_is_a_502() {
    let bad_chunk =
        RawBackend::start(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\n", true).await;
    let gw = multi_gateway(&[bad_chunk.url()], "").await;
    let (resp, _) = raw_closes(gw.addr, b"GET /u0 HTTP/1.1\r\nHost: gw.test\r\n\r\n").await;
    assert!(resp.starts_with("HTTP/1.1 502 "), "{resp:?}");
    assert!(resp.contains("\"code\":\"upstream_invalid_response\""), "{resp:?}");
}

#[tokio::test]
async fn refused_connection_is_502_upstream_connect_failed() {
    let gw = multi_gateway(&[format!("http://127.0.0.1:{}", free_port())], "").await;
    let start = Instant::now();
    let r = get(gw.addr, "/u0").await;
    error_json(&r, 502, "upstream_connect_failed");
    assert!(start.elapsed() < Duration::from_secs(2), "refusal should be immediate: {:?}", start.elapsed());
    // A POST whose body looks like a request: the body is read as a body (small bodies are
    // buffered before connecting) and never parsed as the next request: exactly one response.
    let inner = "GET /u0/smuggled HTTP/1.1\r\nHost: gw.test\r\n\r\n";
    let req = format!("POST /u0 HTTP/1.1\r\nHost: gw.test\r\nContent-Length: {}\r\n\r\n{inner}", inner.len());
    let (resp, _) = raw_closes(gw.addr, req.as_bytes()).await;
    assert!(resp.starts_with("HTTP/1.1 502 "), "{resp:?}");
    assert_eq!(resp.matches("HTTP/1.1 ").count(), 1, "{resp:?}");
}

#[tokio::test]
async fn hanging_backend_is_504_upstream_timeout() {
    let slow = Backend::start(
        "slow",
        std::sync::Arc::new(|_: &Received| Reply::text(200, "late").delay(Duration::from_secs(3))),
    )
    .await;
    let gw = multi_gateway(&[slow.url()], "    timeouts: {response_header: 500ms}\n").await;
    let start = Instant::now();
    let r = get(gw.addr, "/u0").await;
    let took = start.elapsed();
    let v = error_json(&r, 504, "upstream_timeout");
    assert!(v["error"]["message"].as_str().unwrap_or("").contains("u0"), "{v}");
    assert!(took >= Duration::from_millis(450) && took < Duration::from_millis(1500), "timeout not honoured: {took:?}");
    assert!(!r.text().contains("late"));
    // Safe GETs are not retried into a second hang.
    assert_eq!(slow.count(), 1, "the request was retried");
}

#[tokio::test]
async fn no_healthy_target_is_503_naming_the_upstream() {
    let hc = "    health_check: {path: /health, interval: 100ms, timeout: 100ms, unhealthy_threshold: 1, healthy_threshold: 1}\n";
    let gw = multi_gateway(&[format!("http://127.0.0.1:{}", free_port())], hc).await;
    let deadline = Instant::now() + Duration::from_secs(3);
    let r = loop {
        let r = get(gw.addr, "/u0").await;
        if r.status == 503 || Instant::now() > deadline {
            break r;
        }
        assert_eq!(r.status, 502, "before the health check marks it down: {r:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let v = error_json(&r, 503, "no_healthy_upstream");
    assert!(v["error"]["message"].as_str().unwrap_or("").contains("`u0`"), "{v}");
}

/// A backend that, after answering the first request on a connection, sends an unsolicited second
/// response on it. A pooled connection holding such bytes must never be reused: the next request
/// (maybe another client's) would be answered with the attacker-chosen bytes (response queue
/// poisoning).
#[tokio::test]
async fn unsolicited_bytes_on_an_idle_upstream_connection_are_never_served() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = l.local_addr().expect("addr");
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else { continue };
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut tmp = [0u8; 4096];
                let mut answered = 0;
                loop {
                    match s.read(&mut tmp).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&tmp[..n]),
                    }
                    while let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        buf.drain(..p + 4);
                        answered += 1;
                        let _ = s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\ngood").await;
                        if answered == 1 {
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            let _ = s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nevil").await;
                        }
                    }
                }
            });
        }
    });
    let gw = multi_gateway(&[format!("http://{addr}")], "").await;
    assert_eq!(get(gw.addr, "/u0/first").await.text(), "good");
    for i in 0..3 {
        // Let the unsolicited bytes arrive on the idle pooled connection first. (Bytes a backend
        // sends *after* the next request went out cannot be told from its answer, in any
        // HTTP/1.1 proxy.)
        tokio::time::sleep(Duration::from_millis(200)).await;
        let r = get(gw.addr, &format!("/u0/next{i}")).await;
        assert_eq!(r.text(), "good", "request {i} was answered with bytes sent before it: {r:?}");
    }
    task.abort();
}

/// Hop-by-hop fields of the response, and those its `Connection` names, never reach the client.
#[tokio::test]
async fn hop_by_hop_response_fields_are_stripped() {
    let b = RawBackend::start(
        b"HTTP/1.1 200 OK\r\nConnection: X-Internal\r\nX-Internal: secret\r\nKeep-Alive: timeout=5\r\nProxy-Authenticate: Basic\r\nUpgrade: h2c\r\nTrailer: X-T\r\nProxy-Connection: keep-alive\r\nX-Public: yes\r\nContent-Length: 2\r\n\r\nok",
        false,
    )
    .await;
    let gw = multi_gateway(&[b.url()], "").await;
    let r = get(gw.addr, "/u0").await;
    assert_eq!((r.status, r.text().as_str()), (200, "ok"));
    for h in ["x-internal", "keep-alive", "proxy-authenticate", "upgrade", "trailer", "proxy-connection"] {
        assert!(r.header(h).is_none(), "`{h}` reached the client: {r:?}");
    }
    assert_eq!(r.header("x-public"), Some("yes"));
}

/// A backend that answers the first request it ever gets (so the gateway pools a connection),
/// then reads every later request head and closes without answering; counts the heads it read.
async fn swallowing_backend() -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Arc;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", l.local_addr().expect("addr"));
    let heads = Arc::new(AtomicUsize::new(0));
    let answered = Arc::new(AtomicBool::new(false));
    let counted = heads.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let (heads, answered) = (counted.clone(), answered.clone());
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut tmp = [0u8; 4096];
                loop {
                    let Ok(n) = s.read(&mut tmp).await else { return };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&tmp[..n]);
                    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        buf.drain(..end + 4);
                        if !answered.swap(true, Ordering::SeqCst) {
                            let _ = s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok").await;
                        } else {
                            heads.fetch_add(1, Ordering::SeqCst);
                            return; // close without answering: the request may have been processed
                        }
                    }
                }
            });
        }
    });
    (url, heads)
}

/// Retry class "one GET delivered three times": a backend that takes a request and closes
/// without answering may have processed it, so sending it again is a retry and obeys the
/// route's `retry.attempts`: the backend sees at most that many deliveries (there is no extra
/// "stale connection" re-send once the request was written).
#[tokio::test]
async fn a_request_is_delivered_at_most_attempts_times() {
    use std::sync::atomic::Ordering;
    for (attempts, fields) in [(1, "retry: {attempts: 1}"), (2, "retry: {attempts: 2}"), (3, "retry: {attempts: 3}")] {
        let (url, heads) = swallowing_backend().await;
        let gw = Cfg::new().upstream("backend", &[url]).route_with("all", "backend", fields).start().await;
        let mut client = gatehouse_testkit::KeepAliveClient::connect(gw.addr).await;
        assert_eq!(client.get("/warm").await.status, 200, "attempts {attempts}: warm-up");
        let r = client.get("/once").await;
        assert_eq!(r.status, 502, "attempts {attempts}: {}", r.text());
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(heads.load(Ordering::SeqCst), attempts, "attempts {attempts}: deliveries of /once");
    }
}
