//! HTTP/2 end to end with real peers: curl (nghttp2) and the `h2` crate as clients, hyper's
//! HTTP/2 server and tungstenite's WebSocket server as upstreams, certificates from a test CA.
//! Covers h2c prior knowledge and ALPN `h2` beside HTTP/1.1 on the same listeners, bodies both
//! ways (buffered and streamed), `h2c://` and `https://` + `protocol: http2` upstreams reached
//! from both client protocols, trailers, WebSocket over extended CONNECT (RFC 8441) to an
//! HTTP/1.1 WebSocket server, and gateway errors answered as gRPC statuses.

#[path = "common/ws.rs"]
mod ws;
use ws::ws_echo;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use gatehouse_testkit::tls::{curl, Pki};
use gatehouse_testkit::{checksum, pattern, request, Backend, Cfg, Reply};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::Message;

/// An h2c connection to `addr` (prior knowledge) with the `h2` crate.
async fn h2c(addr: SocketAddr) -> h2::client::SendRequest<Bytes> {
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let (send, conn) = h2::client::handshake(tcp).await.expect("h2 handshake");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    send.ready().await.expect("ready")
}

struct H2Resp {
    status: u16,
    headers: http::HeaderMap,
    body: Vec<u8>,
    trailers: Option<http::HeaderMap>,
}

async fn h2_call(send: &mut h2::client::SendRequest<Bytes>, req: http::Request<()>, body: &[u8]) -> H2Resp {
    let end = body.is_empty();
    let (resp, mut tx) = send.send_request(req, end).expect("send request");
    if !end {
        tx.send_data(Bytes::copy_from_slice(body), true).expect("send body");
    }
    let resp = tokio::time::timeout(Duration::from_secs(10), resp).await.expect("response in time").expect("response");
    let (parts, mut rx) = resp.into_parts();
    let mut out = Vec::new();
    while let Some(d) = rx.data().await {
        let d = d.expect("body");
        let _ = rx.flow_control().release_capacity(d.len());
        out.extend_from_slice(&d);
    }
    let trailers = rx.trailers().await.expect("trailers");
    H2Resp { status: parts.status.as_u16(), headers: parts.headers, body: out, trailers }
}

fn get(uri: &str) -> http::Request<()> {
    http::Request::get(uri).body(()).expect("request")
}

fn echo() -> gatehouse_testkit::Handler {
    Arc::new(|r| {
        Reply::text(200, &format!("{} {} {}", r.method, r.uri, checksum(&r.body)))
            .header("x-len", &r.body.len().to_string())
            .trailer("x-checksum", &checksum(&r.body).to_string())
    })
}

/// Upstream `up` at `target` with `upstream_extra` fields, one route `r` with `route_extra`.
fn one_route(target: &str, upstream_extra: &str, route_extra: &str) -> Cfg {
    Cfg::new().upstream_with("up", &[target], upstream_extra).route_with("r", "up", route_extra)
}

#[tokio::test]
async fn h2c_prior_knowledge_and_http1_share_a_listener() {
    let backend = Backend::start("b", echo()).await;
    let gw = one_route(&backend.url(), "", "").start().await;
    let url = format!("http://{}/x?q=1", gw.addr);
    let c = curl(&["--http2-prior-knowledge", "-w", "%{http_code} %{http_version}", &url]).await;
    assert!(c.ok && c.stdout == "200 2", "{c:?}");
    let c = curl(&["--http1.1", "-w", "%{http_code} %{http_version}", &url]).await;
    assert!(c.ok && c.stdout == "200 1.1", "{c:?}");

    // Buffered (small) and streamed (over 64 KiB) bodies arrive intact, with the path as sent.
    let mut send = h2c(gw.addr).await;
    for len in [10usize, 300 * 1024] {
        let body = pattern(len, len as u64);
        let req = http::Request::post(format!("http://gatehouse.test/up/load?n={len}")).body(()).expect("req");
        let r = h2_call(&mut send, req, &body).await;
        assert_eq!(r.status, 200);
        assert_eq!(String::from_utf8_lossy(&r.body), format!("POST /up/load?n={len} {}", checksum(&body)));
        assert_eq!(r.headers["x-len"], len.to_string().as_str());
        let seen = backend.last().expect("request");
        // `:authority` plays the part of Host: forwarded as X-Forwarded-Host, Host is the target's.
        assert_eq!(seen.header("x-forwarded-host"), Some("gatehouse.test"), "{seen:?}");
        assert_eq!(seen.header("host"), Some(backend.addr.to_string().as_str()));
        assert!(seen.header("x-request-id").is_some());
        assert_eq!(seen.header("x-forwarded-proto"), Some("http"));
    }
    assert_eq!(backend.count(), 4, "two curl requests, two bodies");
    // Split cookies (RFC 9113 §8.2.3) reach an HTTP/1.1 upstream as one field.
    let req = http::Request::get("http://gatehouse.test/c")
        .header("cookie", "a=1")
        .header("cookie", "b=2")
        .body(())
        .expect("req");
    let r = h2_call(&mut send, req, b"").await;
    assert_eq!(r.status, 200);
    assert_eq!(backend.last().expect("req").header_all("cookie"), vec!["a=1; b=2"]);
}

#[tokio::test]
async fn alpn_offers_h2_then_http1_and_can_be_turned_off() {
    let pki = Pki::new("h2-alpn");
    let leaf = pki.issue("gw", "/CN=gw.test", &["gw.test"], 30);
    let backend = Backend::named("b").await;
    let tls = format!(
        "    tls:\n      certificates:\n        - cert: {}\n          key: {}\n",
        leaf.cert.display(),
        leaf.key.display()
    );
    for (http2, want) in [("", "2"), ("http2: {enabled: false}", "1.1")] {
        let gw = one_route(&backend.url(), "", "").listener(&tls).listener(http2).start().await;
        let resolve = format!("gw.test:{}:127.0.0.1", gw.addr.port());
        let url = format!("https://gw.test:{}/hello", gw.addr.port());
        let ca = pki.ca().display().to_string();
        let c = curl(&["--http2", "--cacert", &ca, "--resolve", &resolve, "-w", "%{http_code} %{http_version}", &url])
            .await;
        assert!(c.ok && c.stdout == format!("200 {want}"), "{http2}: {c:?}");
        let c =
            curl(&["--http1.1", "--cacert", &ca, "--resolve", &resolve, "-w", "%{http_code} %{http_version}", &url])
                .await;
        assert!(c.ok && c.stdout == "200 1.1", "{c:?}");
    }
    assert_eq!(backend.requests().iter().filter(|r| r.header("x-forwarded-proto") == Some("https")).count(), 4);
}

#[tokio::test]
async fn h2c_upstream_from_both_client_protocols_with_trailers() {
    let backend = Backend::start_h2c("h2", echo()).await;
    let gw = one_route(&format!("h2c://{}", backend.addr), "", "").start().await;

    // HTTP/1.1 client → HTTP/2 upstream: body (read whole first), status, headers.
    let body = pattern(100 * 1024, 7);
    let r = request(gw.addr, "PUT", "/one", &[("content-type", "application/octet-stream")], &body).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text(), format!("PUT http://{}/one {}", backend.addr, checksum(&body)));
    let seen = backend.last().expect("request");
    // hyper's HTTP/2 server shows the request target as an absolute URI.
    assert!(seen.uri.ends_with("/one"), "{seen:?}");
    assert_eq!(seen.body.len(), body.len());
    assert!(seen.header("connection").is_none() && seen.header("transfer-encoding").is_none());

    // HTTP/2 client → HTTP/2 upstream: streamed body, trailers relayed as trailers.
    let mut send = h2c(gw.addr).await;
    let body = pattern(200 * 1024, 9);
    let req = http::Request::post("http://gatehouse.test/two").body(()).expect("req");
    let r = h2_call(&mut send, req, &body).await;
    assert_eq!(r.status, 200);
    assert_eq!(String::from_utf8_lossy(&r.body), format!("POST http://{}/two {}", backend.addr, checksum(&body)));
    let t = r.trailers.expect("trailers relayed");
    assert_eq!(t["x-checksum"], checksum(&body).to_string().as_str());
    assert_eq!(backend.count(), 2);
}

#[tokio::test]
async fn https_upstream_speaks_h2_by_alpn() {
    let pki = Pki::new("h2-up");
    let leaf = pki.issue("up", "/CN=up.test", &["up.test", "127.0.0.1"], 30);
    let backend = Backend::start_h2_tls("h2tls", echo(), &leaf.cert, &leaf.key).await;
    let extra =
        format!("    protocol: http2\n    tls:\n      ca: {}\n      server_name: up.test\n", pki.ca().display());
    let gw = one_route(&format!("https://127.0.0.1:{}", backend.addr.port()), &extra, "").start().await;
    let r = request(gw.addr, "GET", "/tls", &[], b"").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().starts_with("GET https://"), "{}", r.text());
    let mut send = h2c(gw.addr).await;
    let r = h2_call(&mut send, get("http://gatehouse.test/tls2"), b"").await;
    assert_eq!(r.status, 200);
    assert!(r.trailers.is_some());
}

fn extended_connect(path: &str) -> http::Request<()> {
    let mut req = http::Request::builder()
        .method(http::Method::CONNECT)
        .uri(format!("http://gatehouse.test{path}"))
        .header("sec-websocket-version", "13")
        .body(())
        .expect("req");
    req.extensions_mut().insert(h2::ext::Protocol::from_static("websocket"));
    req
}

#[tokio::test]
async fn websocket_over_extended_connect_to_an_http1_server() {
    let ws = ws_echo().await;
    let gw = one_route(&format!("http://{ws}"), "", "").start().await;
    let mut send = h2c(gw.addr).await;
    // The server's SETTINGS are in once a first exchange completed.
    let _ = h2_call(&mut send, get("http://gatehouse.test/warmup"), b"").await;
    assert!(send.is_extended_connect_protocol_enabled(), "SETTINGS_ENABLE_CONNECT_PROTOCOL");
    let (resp, tx) = send.send_request(extended_connect("/chat"), false).expect("send");
    let resp = tokio::time::timeout(Duration::from_secs(5), resp).await.expect("in time").expect("response");
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().get("sec-websocket-accept").is_none());
    let io = gatehouse_core::http2::io::H2Io::new(tx, resp.into_body());
    let mut client = tokio_tungstenite::WebSocketStream::from_raw_socket(io, Role::Client, None).await;
    for msg in ["hello", "over", "h2"] {
        client.send(Message::text(msg)).await.expect("send");
        let back = tokio::time::timeout(Duration::from_secs(5), client.next()).await.expect("echo in time");
        assert_eq!(back.expect("frame").expect("ok"), Message::text(msg));
    }
}

/// A WebSocket echo server speaking HTTP/2 only (hyper, with RFC 8441 extended CONNECT).
async fn h2_ws_echo() -> SocketAddr {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = l.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(|req: hyper::Request<hyper::body::Incoming>| async move {
                    let ws = req.method() == http::Method::CONNECT
                        && req.extensions().get::<hyper::ext::Protocol>().map(|p| p.as_str()) == Some("websocket");
                    let empty = http_body_util::Empty::<Bytes>::new();
                    if !ws {
                        let r = hyper::Response::builder().status(400).body(empty).expect("resp");
                        return Ok::<_, std::convert::Infallible>(r);
                    }
                    tokio::spawn(async move {
                        let Ok(up) = hyper::upgrade::on(req).await else { return };
                        let mut ws =
                            tokio_tungstenite::WebSocketStream::from_raw_socket(TokioIo::new(up), Role::Server, None)
                                .await;
                        while let Some(Ok(m)) = ws.next().await {
                            if (m.is_text() || m.is_binary()) && ws.send(m).await.is_err() {
                                return;
                            }
                        }
                    });
                    Ok(hyper::Response::builder().header("x-h2-ws", "yes").body(empty).expect("resp"))
                });
                let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .enable_connect_protocol()
                    .serve_connection(TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn websocket_over_extended_connect_to_an_http2_server() {
    let ws = h2_ws_echo().await;
    let gw = one_route(&format!("h2c://{ws}"), "", "").start().await;
    let mut send = h2c(gw.addr).await;
    let _ = h2_call(&mut send, get("http://gatehouse.test/warmup"), b"").await;
    let (resp, tx) = send.send_request(extended_connect("/chat"), false).expect("send");
    let resp = tokio::time::timeout(Duration::from_secs(5), resp).await.expect("in time").expect("response");
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-h2-ws"], "yes");
    let io = gatehouse_core::http2::io::H2Io::new(tx, resp.into_body());
    let mut client = tokio_tungstenite::WebSocketStream::from_raw_socket(io, Role::Client, None).await;
    for msg in ["h2", "all", "the way"] {
        client.send(Message::text(msg)).await.expect("send");
        let back = tokio::time::timeout(Duration::from_secs(5), client.next()).await.expect("echo in time");
        assert_eq!(back.expect("frame").expect("ok"), Message::text(msg));
    }
    // An HTTP/1.1 client's upgrade cannot be carried to an HTTP/2 upstream: refused, not tunnelled.
    let raw = gatehouse_testkit::raw(
        gw.addr,
        b"GET /chat HTTP/1.1\r\nHost: g\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
          Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    )
    .await;
    assert!(raw.starts_with("HTTP/1.1 502"), "{raw}");
}

#[tokio::test]
async fn extended_connect_refused_when_the_route_allows_no_upgrade() {
    let backend = Backend::named("plain").await;
    let gw = one_route(&backend.url(), "", "upgrades: []").start().await;
    let mut send = h2c(gw.addr).await;
    let (resp, _tx) = send.send_request(extended_connect("/chat"), false).expect("send");
    let resp = tokio::time::timeout(Duration::from_secs(5), resp).await.expect("in time").expect("response");
    assert_eq!(resp.status(), 400);
    assert_eq!(backend.count(), 0, "nothing reached the upstream");
}

#[tokio::test]
async fn gateway_errors_for_grpc_requests_are_grpc_statuses() {
    let gw = one_route("http://127.0.0.1:9", "", "match: {path: {exact: /only}}").start().await;
    let mut send = h2c(gw.addr).await;
    let grpc = |path: &str| {
        http::Request::post(format!("http://gatehouse.test{path}"))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(())
            .expect("req")
    };
    // No route: UNIMPLEMENTED, trailers-only (status in the headers, no body).
    let r = h2_call(&mut send, grpc("/pkg.Svc/Method"), b"\0\0\0\0\0").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.headers["grpc-status"], "12");
    assert_eq!(r.headers["content-type"], "application/grpc");
    assert!(r.body.is_empty());
    // Upstream refused the connection: UNAVAILABLE.
    let r = h2_call(&mut send, grpc("/only"), b"\0\0\0\0\0").await;
    assert_eq!(r.headers["grpc-status"], "14", "{:?}", r.headers);
    assert!(r.headers.contains_key("grpc-message"));
    // The same error for a plain request stays JSON.
    let r = h2_call(&mut send, get("http://gatehouse.test/only"), b"").await;
    assert_eq!(r.status, 502);
    assert!(String::from_utf8_lossy(&r.body).contains("upstream_connect_failed"));
}

#[tokio::test]
async fn drain_sends_goaway_and_lets_open_streams_finish() {
    let backend = Backend::start(
        "slow",
        Arc::new(|_: &gatehouse_testkit::Received| Reply::text(200, "slow done").delay(Duration::from_millis(600))),
    )
    .await;
    let gw = one_route(&backend.url(), "", "").start().await;
    let mut send = h2c(gw.addr).await;
    let (resp, _tx) = send.send_request(get("http://gatehouse.test/slow"), true).expect("send");
    let in_flight = tokio::spawn(async move {
        let resp = resp.await.expect("response");
        let mut body = resp.into_body();
        let mut out = Vec::new();
        while let Some(d) = body.data().await {
            out.extend_from_slice(&d.expect("data"));
        }
        out
    });
    assert!(gatehouse_testkit::wait_for(Duration::from_secs(3), || async { backend.count() >= 1 }).await);
    let gw2 = gw.gw.clone();
    let shutdown = tokio::spawn(async move { gw2.shutdown().await });
    // Once the GOAWAY is in, new streams on this connection are refused (streams the client
    // opened before it arrived are still served, as RFC 9113 §6.8 asks); the open one completes.
    let refused = gatehouse_testkit::wait_for(Duration::from_secs(2), || {
        let s = send.clone();
        async move {
            match s.ready().await {
                Err(_) => true,
                Ok(mut s) => match s.send_request(get("http://gatehouse.test/late"), true) {
                    Err(_) => true,
                    Ok((r, _)) => r.await.is_err(),
                },
            }
        }
    })
    .await;
    assert!(refused, "new streams still accepted during the drain");
    let body = tokio::time::timeout(Duration::from_secs(5), in_flight).await.expect("in time").expect("join");
    assert_eq!(body, b"slow done");
    let _ = tokio::time::timeout(Duration::from_secs(5), shutdown).await;
}

#[tokio::test]
async fn idle_connections_are_closed_after_the_idle_timeout() {
    let backend = Backend::named("b").await;
    let gw = one_route(&backend.url(), "", "").listener("timeouts: {idle: 300ms}").start().await;
    let tcp = TcpStream::connect(gw.addr).await.expect("connect");
    let (send, conn) = h2::client::handshake(tcp).await.expect("handshake");
    let driver = tokio::spawn(conn);
    let mut send = send.ready().await.expect("ready");
    let r = h2_call(&mut send, get("http://gatehouse.test/x"), b"").await;
    assert_eq!(r.status, 200);
    let started = std::time::Instant::now();
    // The gateway ends the idle connection: the client's connection task finishes.
    let ended = tokio::time::timeout(Duration::from_secs(3), driver).await;
    assert!(ended.is_ok(), "idle HTTP/2 connection still open after 3 s");
    assert!(started.elapsed() >= Duration::from_millis(200), "closed too early: {:?}", started.elapsed());
}

#[tokio::test]
async fn hedging_works_with_http2_on_either_side() {
    let slow_reply = || {
        Arc::new(|_: &gatehouse_testkit::Received| Reply::text(200, "slow").delay(Duration::from_millis(1500)))
            as gatehouse_testkit::Handler
    };
    let fast_reply =
        || Arc::new(|_: &gatehouse_testkit::Received| Reply::text(200, "fast")) as gatehouse_testkit::Handler;
    // An HTTP/2 client in front of HTTP/1.1 targets, then an HTTP/1.1 client in front of h2c ones.
    let (s1, f1) = (Backend::start("slow", slow_reply()).await, Backend::start("fast", fast_reply()).await);
    let (s2, f2) = (Backend::start_h2c("slow", slow_reply()).await, Backend::start_h2c("fast", fast_reply()).await);
    for (targets, h2_client) in
        [([s1.url(), f1.url()], true), ([format!("h2c://{}", s2.addr), format!("h2c://{}", f2.addr)], false)]
    {
        let gw = Cfg::new().upstream("up", &targets).route_with("r", "up", "hedge: {delay: 50ms}").start().await;
        let t = std::time::Instant::now();
        let mut send = if h2_client { Some(h2c(gw.addr).await) } else { None };
        for _ in 0..4 {
            let body = match send.as_mut() {
                Some(send) => {
                    String::from_utf8(h2_call(send, get("http://gatehouse.test/h"), b"").await.body).expect("utf8")
                }
                None => request(gw.addr, "GET", "/h", &[], b"").await.text(),
            };
            assert_eq!(body, "fast", "h2 client: {h2_client}");
        }
        // Half of the first attempts went to the slow target, each hedged after 50 ms.
        assert!(t.elapsed() < Duration::from_millis(1200), "h2 client {h2_client}: took {:?}", t.elapsed());
    }
}

#[tokio::test]
async fn streams_cancelled_while_waiting_upstream_count_toward_the_reset_budget() {
    let slow = Backend::start(
        "slow",
        Arc::new(|_: &gatehouse_testkit::Received| Reply::text(200, "late").delay(Duration::from_millis(800))),
    )
    .await;
    let gw = one_route(&slow.url(), "", "").listener("http2: {max_resets: 5, reset_window: 10s}").admin().start().await;
    let tcp = TcpStream::connect(gw.addr).await.expect("connect");
    let (send, conn) = h2::client::handshake(tcp).await.expect("handshake");
    let driver = tokio::spawn(conn);
    let mut cancelled = 0;
    // Each stream reaches the upstream, then the client cancels it: the gateway sees the reset
    // while it waits and counts it; the sixth ends the connection with ENHANCE_YOUR_CALM.
    for i in 0..20 {
        let Ok(mut s) = send.clone().ready().await else { break };
        let Ok((resp, _tx)) = s.send_request(get(&format!("http://gatehouse.test/c{i}")), true) else { break };
        let seen = slow.count();
        let reached = gatehouse_testkit::wait_for(Duration::from_secs(2), || async { slow.count() > seen }).await;
        if !reached {
            break;
        }
        drop(resp); // dropping the response future resets the stream (CANCEL)
        cancelled += 1;
    }
    let ended = tokio::time::timeout(Duration::from_secs(3), driver).await;
    let reason = match ended {
        Ok(Ok(Err(e))) => e.reason(),
        other => panic!("connection still open or closed cleanly after {cancelled} resets: {other:?}"),
    };
    assert_eq!(reason, Some(h2::Reason::ENHANCE_YOUR_CALM));
    assert!((6..=8).contains(&cancelled), "{cancelled} streams cancelled before the GOAWAY");
    let admin = gw.admin.expect("admin");
    let metrics = gatehouse_testkit::get(admin, "/metrics").await.text();
    assert!(metrics.contains("gatehouse_http2_enhance_your_calm_total 1"), "{metrics}");
}

#[tokio::test]
async fn head_and_empty_answers_from_an_h2c_upstream_keep_http1_framing_intact() {
    // A bare `h2` server that sends no content-length (hyper would add one): HEAD and /empty end
    // with the HEADERS frame, others get "hello" in a DATA frame.
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = l.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            tokio::spawn(async move {
                let Ok(mut conn) = h2::server::handshake(s).await else { return };
                while let Some(Ok((req, mut respond))) = conn.accept().await {
                    let end = req.method() == http::Method::HEAD || req.uri().path() == "/empty";
                    let resp = http::Response::builder().status(200).header("x-a", "1").body(()).expect("resp");
                    if let Ok(mut tx) = respond.send_response(resp, end) {
                        if !end {
                            let _ = tx.send_data(Bytes::from_static(b"hello"), true);
                        }
                    }
                }
            });
        }
    });
    let gw = one_route(&format!("h2c://{addr}"), "", "").start().await;
    // Pipelined on one keep-alive connection: a HEAD answer, an empty 200, then a normal one.
    // Each must be framed exactly (no stray last-chunk after HEAD), or the next would not parse.
    let raw = gatehouse_testkit::raw_timeout(
        gw.addr,
        b"HEAD /a HTTP/1.1\r\nHost: g\r\n\r\nGET /empty HTTP/1.1\r\nHost: g\r\n\r\nGET /b HTTP/1.1\r\nHost: g\r\n\r\n",
        Duration::from_millis(500),
    )
    .await;
    let parts: Vec<&str> = raw.split("HTTP/1.1 200 OK\r\n").collect();
    assert_eq!(parts.len(), 4, "three answers expected:\n{raw}");
    assert!(parts[1].ends_with("\r\n\r\n"), "HEAD answer has a body:\n{raw}");
    assert!(parts[2].to_ascii_lowercase().contains("content-length: 0") && parts[2].ends_with("\r\n\r\n"), "{raw}");
    assert!(parts[3].ends_with("5\r\nhello\r\n0\r\n\r\n"), "{raw}");
}

#[tokio::test]
async fn a_target_stream_limit_opens_more_upstream_connections_instead_of_queueing() {
    // The target allows 2 streams per connection and answers after 400 ms: 6 concurrent requests
    // on one connection would take 3 × 400 ms; spread over 3 connections they take ~400 ms.
    let slow = Arc::new(|_: &gatehouse_testkit::Received| Reply::text(200, "ok").delay(Duration::from_millis(400)));
    let backend = Backend::start_h2c_limited("limited", slow, 2).await;
    let gw = one_route(&format!("h2c://{}", backend.addr), "", "").start().await;
    // Warm up: the first connection learns the target's SETTINGS.
    assert_eq!(request(gw.addr, "GET", "/warm", &[], b"").await.status, 200);
    let t = std::time::Instant::now();
    let mut send = h2c(gw.addr).await;
    let calls: Vec<_> = (0..6)
        .map(|i| {
            let (resp, _) = send.send_request(get(&format!("http://gatehouse.test/c{i}")), true).expect("send");
            tokio::spawn(async move { resp.await.map(|r| r.status().as_u16()) })
        })
        .collect();
    for c in calls {
        assert_eq!(c.await.expect("join").expect("response"), 200);
    }
    assert!(t.elapsed() < Duration::from_millis(1000), "requests queued on one connection: {:?}", t.elapsed());
    assert!(backend.connections() >= 3, "{} upstream connections", backend.connections());
    let _ = &mut send;
}

#[tokio::test]
async fn the_access_log_carries_the_protocol_and_the_grpc_status() {
    let backend = Backend::start_h2c(
        "grpc",
        Arc::new(|_: &gatehouse_testkit::Received| {
            Reply::text(200, "").header("content-type", "application/grpc").trailer("grpc-status", "5")
        }),
    )
    .await;
    let log = std::env::temp_dir().join(format!(
        "gatehouse-h2-access-{}-{}.log",
        std::process::id(),
        gatehouse_testkit::free_port()
    ));
    let gw = one_route(&format!("h2c://{}", backend.addr), "", "match: {path: {prefix: /svc}}")
        .yaml(&format!("access_log:\n  enabled: true\n  path: {}", log.display()))
        .start()
        .await;
    let mut send = h2c(gw.addr).await;
    let grpc = |path: &str| {
        http::Request::post(format!("http://gatehouse.test{path}"))
            .header("content-type", "application/grpc")
            .body(())
            .expect("req")
    };
    let r = h2_call(&mut send, grpc("/svc/Get"), b"\0\0\0\0\0").await;
    assert_eq!(r.trailers.expect("trailers")["grpc-status"], "5");
    let r = h2_call(&mut send, grpc("/nope/Get"), b"\0\0\0\0\0").await;
    assert_eq!(r.headers["grpc-status"], "12");
    let _ = h2_call(&mut send, get("http://gatehouse.test/svc/plain"), b"").await;
    let mut lines = Vec::new();
    for _ in 0..200 {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        lines = text.lines().map(|l| serde_json::from_str::<serde_json::Value>(l).expect("JSON line")).collect();
        if lines.len() >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert!(lines.iter().all(|l| l["protocol"] == "HTTP/2"), "{lines:?}");
    assert_eq!((lines[0]["status"].as_u64(), lines[0]["grpc_status"].as_u64()), (Some(200), Some(5)));
    // The gateway's own answer: the HTTP status it stands for, and the gRPC status sent.
    assert_eq!((lines[1]["status"].as_u64(), lines[1]["grpc_status"].as_u64()), (Some(404), Some(12)));
    assert!(lines[2].get("grpc_status").is_none(), "not a gRPC request: {:?}", lines[2]);
    let _ = std::fs::remove_file(&log);
}
