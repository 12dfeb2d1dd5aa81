//! WebSocket and upgrades through the gateway, with a real WebSocket client and server
//! (tokio-tungstenite): echo both ways, a refused upgrade that tunnels nothing, a 101 for a
//! protocol nobody asked for, upgrades disabled per route, the tunnel idle timeout, and the
//! drain deadline closing an open tunnel.

#[path = "common/ws.rs"]
mod ws;
use ws::ws_echo;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use gatehouse_testkit::{Backend, Cfg, TestGateway};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;

/// An upstream that answers every request head with `answer` and records every byte it
/// receives (all connections), so a test can prove what was (not) tunnelled.
async fn raw_upstream(answer: &'static [u8]) -> (SocketAddr, Arc<Mutex<Vec<u8>>>) {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = l.local_addr().expect("addr");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let seen2 = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let seen = seen2.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let mut answered = false;
                let mut head = Vec::new();
                while let Ok(Ok(n)) = tokio::time::timeout(Duration::from_secs(3), s.read(&mut buf)).await {
                    if n == 0 {
                        return;
                    }
                    seen.lock().unwrap_or_else(|p| p.into_inner()).extend_from_slice(&buf[..n]);
                    head.extend_from_slice(&buf[..n]);
                    if !answered && head.windows(4).any(|w| w == b"\r\n\r\n") {
                        answered = true;
                        let _ = s.write_all(answer).await;
                    }
                }
            });
        }
    });
    (addr, seen)
}

/// Upstream `ws` at `targets`, one route `ws` with `route_extra`.
fn ws_config(targets: &[SocketAddr], route_extra: &str) -> Cfg {
    let urls: Vec<String> = targets.iter().map(|t| format!("http://{t}")).collect();
    Cfg::new().upstream("ws", &urls).route_with("ws", "ws", route_extra)
}

async fn gw_for(target: SocketAddr, route_extra: &str, top_extra: &str) -> TestGateway {
    ws_config(&[target], route_extra).yaml(top_extra).start().await
}

const UPGRADE: &str = "GET /chat HTTP/1.1\r\nHost: gatehouse.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";

#[tokio::test]
async fn websocket_echo_through_the_gateway() {
    let gw = gw_for(ws_echo().await, "", "").await;
    let stream = TcpStream::connect(gw.addr).await.expect("connect");
    let (mut ws, resp) =
        tokio_tungstenite::client_async("ws://gatehouse.test/chat", stream).await.expect("handshake via gateway");
    assert_eq!(resp.status(), 101);
    assert!(resp.headers().contains_key("x-request-id"));
    for i in 0..20 {
        let text = format!("hello {i}");
        ws.send(Message::text(text.clone())).await.expect("send");
        assert_eq!(ws.next().await.expect("reply").expect("frame"), Message::text(text));
    }
    let big = vec![7u8; 200_000];
    ws.send(Message::binary(big.clone())).await.expect("send binary");
    assert_eq!(ws.next().await.expect("reply").expect("frame"), Message::binary(big));
    ws.close(None).await.expect("close");
}

/// The upstream refuses (200, 400, 426): the client gets that response, the connection is
/// closed, and nothing the client sent after its upgrade request reaches the upstream.
#[tokio::test]
async fn refused_upgrade_tunnels_nothing() {
    for answer in [
        &b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nno"[..],
        b"HTTP/1.1 400 Bad Request\r\ncontent-length: 2\r\n\r\nno",
        b"HTTP/1.1 426 Upgrade Required\r\nupgrade: websocket\r\nconnection: upgrade\r\ncontent-length: 2\r\n\r\nno",
    ] {
        let answer: &'static [u8] = answer;
        let (up, seen) = raw_upstream(answer).await;
        let gw = gw_for(up, "", "").await;
        let mut c = TcpStream::connect(gw.addr).await.expect("connect");
        // Frames (here: a smuggled request) sent right behind the upgrade request, before any
        // answer, as an eager client would.
        let smuggled = "GET /internal/admin HTTP/1.1\r\nHost: x\r\n\r\n";
        c.write_all(format!("{UPGRADE}{smuggled}").as_bytes()).await.expect("write");
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        let deadline = Instant::now() + Duration::from_secs(3);
        while !String::from_utf8_lossy(&got).ends_with("no") && Instant::now() < deadline {
            match tokio::time::timeout(Duration::from_secs(2), c.read(&mut buf)).await {
                Ok(Ok(n)) if n > 0 => got.extend_from_slice(&buf[..n]),
                _ => break,
            }
        }
        let text = String::from_utf8_lossy(&got).to_string();
        let status = &answer[9..12];
        assert!(text.starts_with(&format!("HTTP/1.1 {}", String::from_utf8_lossy(status))), "{text}");
        assert!(text.to_ascii_lowercase().contains("connection: close"), "{text}");
        // More bytes after the refusal: the gateway closed, nothing is delivered.
        let _ = c.write_all(b"\x81\x05hello more bytes").await;
        let closed = tokio::time::timeout(Duration::from_secs(2), c.read(&mut buf)).await;
        assert!(matches!(closed, Ok(Ok(0)) | Ok(Err(_))), "connection left open: {closed:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
        let seen = String::from_utf8_lossy(&seen.lock().unwrap_or_else(|p| p.into_inner())).to_string();
        assert_eq!(seen.matches("HTTP/1.1\r\n").count(), 1, "upstream got more than the upgrade request: {seen}");
        assert!(!seen.contains("internal") && !seen.contains("hello"), "bytes were tunnelled: {seen}");
        assert!(seen.to_ascii_lowercase().contains("upgrade: websocket"), "{seen}");
    }
}

#[tokio::test]
async fn a_101_for_another_protocol_is_a_502_and_tunnels_nothing() {
    let (up, seen) =
        raw_upstream(b"HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: h2c\r\n\r\nRAW").await;
    let gw = gw_for(up, "", "").await;
    let mut c = TcpStream::connect(gw.addr).await.expect("connect");
    c.write_all(format!("{UPGRADE}after").as_bytes()).await.expect("write");
    let mut got = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(3), c.read_to_end(&mut got)).await;
    assert!(read.is_ok(), "the gateway left the connection open");
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 502"), "{text}");
    assert_eq!(text.matches("HTTP/1.1").count(), 1, "eager bytes were read as a request: {text}");
    assert!(!text.contains("RAW"), "{text}");
    assert!(!String::from_utf8_lossy(&seen.lock().unwrap_or_else(|p| p.into_inner())).contains("after"));
}

#[tokio::test]
async fn upgrades_disabled_on_a_route_are_plain_requests() {
    let backend = Backend::named("b").await;
    let target: SocketAddr = backend.url().trim_start_matches("http://").parse().expect("addr");
    let gw = gw_for(target, "    upgrades: []\n", "").await;
    let mut c = TcpStream::connect(gw.addr).await.expect("connect");
    c.write_all(UPGRADE.as_bytes()).await.expect("write");
    let mut buf = [0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(3), c.read(&mut buf)).await.expect("answer").expect("read");
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&buf[..n]));
    let got = backend.last().expect("forwarded");
    assert!(got.header("upgrade").is_none() && got.header("connection").is_none(), "{got:#?}");
}

#[tokio::test]
async fn idle_tunnel_is_closed() {
    let gw = gw_for(ws_echo().await, "    tunnel_idle_timeout: 300ms\n", "").await;
    let stream = TcpStream::connect(gw.addr).await.expect("connect");
    let (mut ws, _) = tokio_tungstenite::client_async("ws://gatehouse.test/chat", stream).await.expect("handshake");
    // Traffic keeps it open past the timeout.
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        ws.send(Message::text("ping")).await.expect("send");
        assert_eq!(ws.next().await.expect("reply").expect("frame"), Message::text("ping"));
    }
    let t0 = Instant::now();
    let end = tokio::time::timeout(Duration::from_secs(3), ws.next()).await.expect("closed within 3 s");
    assert!(!matches!(end, Some(Ok(Message::Text(_)))), "{end:?}");
    let waited = t0.elapsed();
    assert!(waited >= Duration::from_millis(250) && waited < Duration::from_secs(2), "{waited:?}");
}

#[tokio::test]
async fn drain_closes_open_tunnels_at_its_deadline() {
    let gw = gw_for(ws_echo().await, "", "server:\n  drain_timeout: 300ms\n").await;
    let stream = TcpStream::connect(gw.addr).await.expect("connect");
    let (mut ws, _) = tokio_tungstenite::client_async("ws://gatehouse.test/chat", stream).await.expect("handshake");
    ws.send(Message::text("x")).await.expect("send");
    assert_eq!(ws.next().await.expect("reply").expect("frame"), Message::text("x"));
    let t0 = Instant::now();
    let g = gw.gw.clone();
    let shutdown = tokio::spawn(async move { g.shutdown().await });
    // Still usable during the drain...
    tokio::time::sleep(Duration::from_millis(50)).await;
    ws.send(Message::text("y")).await.expect("send during drain");
    assert_eq!(ws.next().await.expect("reply").expect("frame"), Message::text("y"));
    // ...and closed at the deadline.
    let end = tokio::time::timeout(Duration::from_secs(3), ws.next()).await.expect("closed by the drain");
    assert!(!matches!(end, Some(Ok(Message::Text(_)))), "{end:?}");
    assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
    let _ = tokio::time::timeout(Duration::from_secs(5), shutdown).await;
}

/// RFC 9110 §7.8 lets a server ignore `Upgrade`; with a request body the gateway does: the
/// request is forwarded as a plain one (body included), without the upgrade fields.
#[tokio::test]
async fn upgrade_with_a_body_is_a_plain_request() {
    let backend = Backend::named("b").await;
    let target: SocketAddr = backend.url().trim_start_matches("http://").parse().expect("addr");
    let gw = gw_for(target, "", "").await;
    let mut c = TcpStream::connect(gw.addr).await.expect("connect");
    let req = "GET /chat HTTP/1.1\r\nHost: gatehouse.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
               Content-Length: 4\r\n\r\nbody";
    c.write_all(req.as_bytes()).await.expect("write");
    let mut buf = [0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(3), c.read(&mut buf)).await.expect("answer").expect("read");
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&buf[..n]));
    let got = backend.last().expect("forwarded");
    assert_eq!(got.body, b"body");
    assert!(got.header("upgrade").is_none(), "{got:#?}");
}

/// Retries and hedging never apply to an upgrade: one attempt, whatever the route says.
#[tokio::test]
async fn upgrades_are_never_retried_or_hedged() {
    let (a, seen_a) = raw_upstream(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n").await;
    let (b, seen_b) =
        raw_upstream(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 1\r\nconnection: close\r\n\r\nx").await;
    let route =
        "retry:\n  attempts: 3\n  on: [connect_failure, reset, timeout, 503]\n  backoff: {base: 1ms, max: 2ms}\n\
                 hedge: {delay: 1ms}";
    let gw = ws_config(&[a, b], route).start().await;
    let mut c = TcpStream::connect(gw.addr).await.expect("connect");
    c.write_all(UPGRADE.as_bytes()).await.expect("write");
    let mut got = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(3), c.read_to_end(&mut got)).await;
    assert!(read.is_ok(), "connection left open");
    assert!(got.starts_with(b"HTTP/1.1 503"), "{}", String::from_utf8_lossy(&got));
    tokio::time::sleep(Duration::from_millis(100)).await;
    let count = |s: &Arc<Mutex<Vec<u8>>>| {
        String::from_utf8_lossy(&s.lock().unwrap_or_else(|p| p.into_inner())).matches("GET /chat").count()
    };
    assert_eq!(count(&seen_a) + count(&seen_b), 1, "the upgrade was sent more than once");
}

/// The tunnel's bytes count into the request's byte counters: one access-log line when the
/// tunnel ends, status 101, with everything the client sent and received.
#[tokio::test]
async fn tunnel_bytes_are_logged_with_the_request() {
    let log = std::env::temp_dir().join(format!("gatehouse-ws-{}-{}.log", std::process::id(), line!()));
    let _ = std::fs::remove_file(&log);
    let top = format!("access_log:\n  enabled: true\n  path: {}\n", log.display());
    let gw = gw_for(ws_echo().await, "", &top).await;
    let stream = TcpStream::connect(gw.addr).await.expect("connect");
    let (mut ws, _) = tokio_tungstenite::client_async("ws://gatehouse.test/chat", stream).await.expect("handshake");
    let payload = vec![1u8; 100_000];
    ws.send(Message::binary(payload.clone())).await.expect("send");
    assert_eq!(ws.next().await.expect("reply").expect("frame"), Message::binary(payload));
    ws.close(None).await.expect("close");
    while let Some(Ok(_)) = ws.next().await {}
    // The server closed its side after the close handshake; the client's goes with `ws`.
    drop(ws);
    let mut line = None;
    for _ in 0..150 {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if let Some(l) = text.lines().next() {
            line = Some(serde_json::from_str::<serde_json::Value>(l).expect("JSON line"));
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let line = line.expect("an access-log line for the tunnel");
    assert_eq!(line["status"], 101, "{line}");
    assert!(line["bytes_received"].as_u64().unwrap_or(0) > 100_000, "{line}");
    assert!(line["bytes_sent"].as_u64().unwrap_or(0) > 100_000, "{line}");
    let _ = std::fs::remove_file(&log);
}

/// Reloads do not disturb an open WebSocket: a tunnel keeps working across 5 reloads that change
/// other routes and the WebSocket route's own settings, and the next WebSocket uses the new config.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_websockets_survive_reloads() {
    let echo = ws_echo().await;
    let gw = gw_for(echo, "", "").await;
    let stream = TcpStream::connect(gw.addr).await.expect("connect");
    let (mut ws, _) = tokio_tungstenite::client_async("ws://gatehouse.test/chat", stream).await.expect("handshake");
    for v in 0..5 {
        let yaml = ws_config(&[echo], &format!("tunnel_idle_timeout: {}s", 30 + v))
            .route_with(&format!("other{v}"), "ws", &format!("match: {{path: {{prefix: /other{v}}}}}"))
            .to_yaml();
        gw.gw.reload(gatehouse_testkit::load(&yaml)).expect("reload");
        let text = format!("after reload {v}");
        ws.send(Message::text(text.clone())).await.expect("send");
        let reply = tokio::time::timeout(Duration::from_secs(3), ws.next()).await.expect("in time");
        assert_eq!(reply.expect("reply").expect("frame"), Message::text(text));
    }
    assert_eq!(gw.gw.reload_count(), 5);
    ws.close(None).await.expect("close");
}
