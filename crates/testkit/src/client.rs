//! Clients the tests speak to the gateway with: raw bytes over TCP (`raw`, `raw_closes`), hyper's
//! HTTP/1.1 client (`request`, `KeepAliveClient`, chunked bodies), its HTTP/2 client
//! (`request_h2`), a blocking client for threads without a runtime, and data helpers.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub(crate) fn find(h: &[u8], n: &[u8]) -> Option<usize> {
    h.windows(n.len()).position(|w| w == n)
}

/// Sends raw bytes and reads until the peer closes or 2 s pass without data.
pub async fn raw(addr: SocketAddr, request: &[u8]) -> String {
    raw_timeout(addr, request, Duration::from_secs(2)).await
}

pub async fn raw_timeout(addr: SocketAddr, request: &[u8], idle: Duration) -> String {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(request).await.expect("write");
    let mut out = Vec::new();
    let mut tmp = [0u8; 8192];
    loop {
        match tokio::time::timeout(idle, s.read(&mut tmp)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => out.extend_from_slice(&tmp[..n]),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether the gateway closed the connection after answering `request` (reads to EOF within 2 s).
pub async fn raw_closes(addr: SocketAddr, request: &[u8]) -> (String, bool) {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(request).await.expect("write");
    let mut out = Vec::new();
    let mut tmp = [0u8; 8192];
    loop {
        match tokio::time::timeout(Duration::from_secs(2), s.read(&mut tmp)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (String::from_utf8_lossy(&out).into_owned(), true),
            Err(_) => return (String::from_utf8_lossy(&out).into_owned(), false),
            Ok(Ok(n)) => out.extend_from_slice(&tmp[..n]),
        }
    }
}

/// The status code of the first response in a raw reply (0 if none).
pub fn status_of(raw: &str) -> u16 {
    raw.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0)
}

/// A response as seen by a real HTTP client (hyper).
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// One request on a fresh connection with hyper's client.
pub async fn request(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Resp {
    let stream = TcpStream::connect(addr).await.expect("connect");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.expect("handshake");
    tokio::spawn(conn);
    let mut b = hyper::Request::builder().method(method).uri(path);
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        b = b.header("host", "gatehouse.test");
    }
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let req = b.body(Full::new(Bytes::copy_from_slice(body))).expect("request");
    send_on(&mut sender, req).await
}

pub async fn get(addr: SocketAddr, path: &str) -> Resp {
    request(addr, "GET", path, &[], b"").await
}

/// Builds a hyper request, adding `host: gatehouse.test` unless the caller sent a Host.
fn build_request<B>(method: &str, path: &str, headers: &[(&str, &str)], body: B) -> hyper::Request<B> {
    let mut b = hyper::Request::builder().method(method).uri(path);
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        b = b.header("host", "gatehouse.test");
    }
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(body).expect("request")
}

/// Sends one request on `sender` and reads the whole response (bounded: 10 s each for the head
/// and the body).
async fn send_on<B>(sender: &mut hyper::client::conn::http1::SendRequest<B>, req: hyper::Request<B>) -> Resp
where
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let resp = tokio::time::timeout(Duration::from_secs(10), sender.send_request(req))
        .await
        .expect("response in time")
        .expect("response");
    read_resp(resp).await
}

/// Reads a whole response (the body bounded to 10 s).
async fn read_resp(resp: hyper::Response<Incoming>) -> Resp {
    let status = resp.status().as_u16();
    let headers = resp
        .headers()
        .iter()
        .map(|(k, v)| (k.as_str().to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
        .collect();
    let body = tokio::time::timeout(Duration::from_secs(10), resp.into_body().collect())
        .await
        .expect("body in time")
        .map(|b| b.to_bytes().to_vec())
        .unwrap_or_default();
    Resp { status, headers, body }
}

/// A request body hyper sends with `Transfer-Encoding: chunked`, one chunk per frame.
pub struct ChunkedBody {
    chunks: std::collections::VecDeque<Bytes>,
}

impl ChunkedBody {
    pub fn new(chunks: &[&[u8]]) -> ChunkedBody {
        ChunkedBody { chunks: chunks.iter().map(|c| Bytes::copy_from_slice(c)).collect() }
    }
}

impl hyper::body::Body for ChunkedBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        std::task::Poll::Ready(self.chunks.pop_front().map(|c| Ok(hyper::body::Frame::data(c))))
    }
}

/// One request on a fresh connection whose body goes out chunked (no Content-Length).
pub async fn request_chunked(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    chunks: &[&[u8]],
) -> Resp {
    let stream = TcpStream::connect(addr).await.expect("connect");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.expect("handshake");
    tokio::spawn(conn);
    send_on(&mut sender, build_request(method, path, headers, ChunkedBody::new(chunks))).await
}

/// A hyper client bound to ONE keep-alive connection: every `send` reuses it.
pub struct KeepAliveClient {
    sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
}

impl KeepAliveClient {
    pub async fn connect(addr: SocketAddr) -> KeepAliveClient {
        let stream = TcpStream::connect(addr).await.expect("connect");
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.expect("handshake");
        tokio::spawn(conn);
        KeepAliveClient { sender }
    }

    pub async fn send(&mut self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Resp {
        tokio::time::timeout(Duration::from_secs(5), self.sender.ready())
            .await
            .expect("connection ready in time")
            .expect("connection still open");
        let req = build_request(method, path, headers, Full::new(Bytes::copy_from_slice(body)));
        send_on(&mut self.sender, req).await
    }

    pub async fn get(&mut self, path: &str) -> Resp {
        self.send("GET", path, &[], b"").await
    }

    /// Whether the server has closed the connection.
    pub fn is_closed(&self) -> bool {
        self.sender.is_closed()
    }
}

// ---------------------------------------------------------------------------------------------
// An HTTP/2 client (hyper's), the counterpart of `request` / `request_chunked`.
// ---------------------------------------------------------------------------------------------

/// The HTTP/2 form of a request written as for HTTP/1.1: a `host` header becomes `:authority`
/// (`gatehouse.test` when there is none), every other header is sent as given. hyper's client
/// drops connection-specific fields (`connection`, `keep-alive`, `transfer-encoding`, ...), which
/// HTTP/2 cannot carry (RFC 9113 §8.2.2).
fn build_h2_request<B>(method: &str, path: &str, headers: &[(&str, &str)], body: B) -> hyper::Request<B> {
    let is_host = |k: &str| k.eq_ignore_ascii_case("host");
    let host = headers.iter().find(|(k, _)| is_host(k)).map(|(_, v)| *v).unwrap_or("gatehouse.test");
    let mut b = hyper::Request::builder().method(method).uri(format!("http://{host}{path}"));
    for (k, v) in headers.iter().filter(|(k, _)| !is_host(k)) {
        b = b.header(*k, *v);
    }
    b.body(body).expect("request")
}

/// An HTTP/2 connection to `addr` with prior knowledge (h2c), bounded to 5 s.
async fn h2_handshake<B>(addr: SocketAddr) -> hyper::client::conn::http2::SendRequest<B>
where
    B: hyper::body::Body + Unpin + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let stream = TcpStream::connect(addr).await.expect("connect");
    let handshake = hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), TokioIo::new(stream));
    let (sender, conn) = tokio::time::timeout(Duration::from_secs(5), handshake)
        .await
        .expect("h2 handshake in time")
        .expect("h2 handshake");
    tokio::spawn(conn);
    sender
}

async fn send_h2<B>(sender: &mut hyper::client::conn::http2::SendRequest<B>, req: hyper::Request<B>) -> Resp
where
    B: hyper::body::Body + Unpin + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    tokio::time::timeout(Duration::from_secs(5), sender.ready())
        .await
        .expect("h2 connection ready in time")
        .expect("h2 connection still open");
    let resp = tokio::time::timeout(Duration::from_secs(10), sender.send_request(req))
        .await
        .expect("h2 response in time")
        .expect("h2 response");
    read_resp(resp).await
}

/// [`request`] over HTTP/2 (h2c, prior knowledge) on a fresh connection; the body, if any, goes
/// in DATA frames with its `content-length`.
pub async fn request_h2(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Resp {
    let mut sender = h2_handshake(addr).await;
    send_h2(&mut sender, build_h2_request(method, path, headers, Full::new(Bytes::copy_from_slice(body)))).await
}

/// [`request_chunked`] over HTTP/2: one DATA frame per chunk, no `content-length` (the HTTP/2
/// counterpart of a chunked body: its length is known only at END_STREAM).
pub async fn request_h2_chunked(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    chunks: &[&[u8]],
) -> Resp {
    let mut sender = h2_handshake(addr).await;
    send_h2(&mut sender, build_h2_request(method, path, headers, ChunkedBody::new(chunks))).await
}

/// Polls `cond` every 20 ms until it holds or `timeout` passes; returns whether it held.
pub async fn wait_for<F, Fut>(timeout: Duration, mut cond: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if cond().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// FNV-1a 64 over `data`: a cheap checksum to compare large bodies in assertion messages.
pub fn checksum(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3))
}

/// `len` bytes of a deterministic, non-repeating-looking pattern (for large-body tests).
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// A blocking HTTP/1.1 GET with `connection: close` and a 5 s read timeout, for tests that drive
/// the real binary from plain threads. Reads until the peer closes or, when the response has a
/// `Content-Length`, until that many body bytes arrived (so it does not depend on the close).
/// Returns the raw response text ("" if it could not connect).
pub fn blocking_get(addr: SocketAddr, path: &str) -> String {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)) else {
        return String::new();
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = s.write_all(format!("GET {path} HTTP/1.1\r\nhost: gatehouse.test\r\nconnection: close\r\n\r\n").as_bytes());
    let mut out = Vec::new();
    let mut tmp = [0u8; 8192];
    loop {
        match s.read(&mut tmp) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&tmp[..n]),
        }
        if let Some(end) = find(&out, b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&out[..end]).to_ascii_lowercase();
            let cl = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok());
            if cl.is_some_and(|cl| out.len() >= end + 4 + cl) {
                break;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

// ---------------------------------------------------------------------------------------------
// A real Redis for the cluster-mode rate-limit tests.
// ---------------------------------------------------------------------------------------------
