//! Real backends on 127.0.0.1 ephemeral ports: `Backend` (hyper's HTTP/1.1 and HTTP/2 servers,
//! plain or TLS, recording every request), `RawBackend` (fixed bytes per request head) and
//! `FaultyBackend` (misbehaving on purpose: resets, truncations, stalls).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::client::find;
use crate::tls;

/// What a backend received.
#[derive(Debug, Clone)]
pub struct Received {
    /// `HTTP/1.1` or `HTTP/2.0`: what the backend spoke for this request.
    pub version: String,
    pub method: String,
    /// Path and query as sent on the request line.
    pub uri: String,
    /// Header names lower-cased, in order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        self.headers.iter().filter(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str()).collect()
    }
}

/// What a backend answers.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub delay: Option<Duration>,
    /// Trailer fields after the body (sent by the HTTP/2 backends; HTTP/1.1 ones ignore them).
    pub trailers: Vec<(String, String)>,
}

impl Reply {
    pub fn text(status: u16, body: &str) -> Reply {
        Reply {
            status,
            headers: vec![("content-type".into(), "text/plain".into())],
            body: body.as_bytes().to_vec(),
            delay: None,
            trailers: Vec::new(),
        }
    }
    pub fn trailer(mut self, k: &str, v: &str) -> Reply {
        self.trailers.push((k.into(), v.into()));
        self
    }
    pub fn header(mut self, k: &str, v: &str) -> Reply {
        self.headers.push((k.into(), v.into()));
        self
    }
    pub fn delay(mut self, d: Duration) -> Reply {
        self.delay = Some(d);
        self
    }
}

pub type Handler = Arc<dyn Fn(&Received) -> Reply + Send + Sync>;

/// A real HTTP/1.1 backend (hyper) that records every request.
pub struct Backend {
    pub addr: SocketAddr,
    pub name: String,
    received: Arc<Mutex<Vec<Received>>>,
    connections: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Backend {
    /// Starts a backend that answers with `handler`.
    pub async fn start(name: &str, handler: Handler) -> Backend {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind backend");
        Backend::serve(l, name, handler)
    }

    /// Starts a backend on a specific address (to bring a killed backend back).
    pub async fn start_at(addr: SocketAddr, name: &str, handler: Handler) -> Backend {
        let l = TcpListener::bind(addr).await.expect("bind backend");
        Backend::serve(l, name, handler)
    }

    /// Starts an `https://` backend serving `cert`/`key` (PEM files) with rustls.
    pub async fn start_tls(name: &str, handler: Handler, cert: &Path, key: &Path) -> Backend {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind backend");
        Backend::serve_with(l, name, handler, Some(tls::acceptor(cert, key, None)))
    }

    /// Starts an HTTP/2-only backend over plain TCP (prior knowledge, for `h2c://` targets).
    pub async fn start_h2c(name: &str, handler: Handler) -> Backend {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind backend");
        Backend::serve_proto(l, name, handler, None, Some(u32::MAX))
    }

    /// An h2c backend that allows at most `max_streams` concurrent streams per connection
    /// (SETTINGS_MAX_CONCURRENT_STREAMS), like a gRPC server with a stream limit.
    pub async fn start_h2c_limited(name: &str, handler: Handler, max_streams: u32) -> Backend {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind backend");
        Backend::serve_proto(l, name, handler, None, Some(max_streams))
    }

    /// Starts an HTTP/2-only `https://` backend (ALPN `h2`).
    pub async fn start_h2_tls(name: &str, handler: Handler, cert: &Path, key: &Path) -> Backend {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind backend");
        Backend::serve_proto(l, name, handler, Some(tls::acceptor_alpn(cert, key, &[b"h2"])), Some(u32::MAX))
    }

    fn serve(l: TcpListener, name: &str, handler: Handler) -> Backend {
        Backend::serve_with(l, name, handler, None)
    }

    fn serve_with(l: TcpListener, name: &str, handler: Handler, tls: Option<tokio_rustls::TlsAcceptor>) -> Backend {
        Backend::serve_proto(l, name, handler, tls, None)
    }

    fn serve_proto(
        l: TcpListener,
        name: &str,
        handler: Handler,
        tls: Option<tokio_rustls::TlsAcceptor>,
        h2: Option<u32>,
    ) -> Backend {
        let addr = l.local_addr().expect("addr");
        let received = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(AtomicUsize::new(0));
        let (rec, conns) = (received.clone(), connections.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = l.accept().await else { continue };
                conns.fetch_add(1, Ordering::SeqCst);
                let (rec, handler, tls) = (rec.clone(), handler.clone(), tls.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |req: hyper::Request<Incoming>| {
                        let (rec, handler) = (rec.clone(), handler.clone());
                        async move {
                            let (parts, body) = req.into_parts();
                            let body = body.collect().await.map(|b| b.to_bytes().to_vec()).unwrap_or_default();
                            let r = Received {
                                version: format!("{:?}", parts.version),
                                method: parts.method.to_string(),
                                uri: parts.uri.to_string(),
                                headers: parts
                                    .headers
                                    .iter()
                                    .map(|(k, v)| {
                                        (k.as_str().to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned())
                                    })
                                    .collect(),
                                body,
                            };
                            let reply = handler(&r);
                            rec.lock().expect("lock").push(r);
                            if let Some(d) = reply.delay {
                                tokio::time::sleep(d).await;
                            }
                            let mut resp = hyper::Response::builder().status(reply.status);
                            for (k, v) in &reply.headers {
                                resp = resp.header(k.as_str(), v.as_str());
                            }
                            let mut trailers = http::HeaderMap::new();
                            for (k, v) in &reply.trailers {
                                if let (Ok(k), Ok(v)) =
                                    (http::HeaderName::from_bytes(k.as_bytes()), http::HeaderValue::from_str(v))
                                {
                                    trailers.append(k, v);
                                }
                            }
                            let t = (!trailers.is_empty()).then_some(trailers);
                            let body = Full::new(Bytes::from(reply.body)).with_trailers(async move { t.map(Ok) });
                            Ok::<_, std::convert::Infallible>(resp.body(body).expect("response"))
                        }
                    });
                    let h2b = || {
                        let mut b = hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new());
                        if let Some(n) = h2.filter(|&n| n != u32::MAX) {
                            b.max_concurrent_streams(n);
                        }
                        b
                    };
                    match (tls, h2.is_some()) {
                        (None, false) => {
                            let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
                        }
                        (None, true) => {
                            let _ = h2b().serve_connection(TokioIo::new(stream), svc).await;
                        }
                        (Some(acceptor), h2) => {
                            let Ok(Ok(s)) = tokio::time::timeout(Duration::from_secs(5), acceptor.accept(stream)).await
                            else {
                                return;
                            };
                            if h2 {
                                let _ = h2b().serve_connection(TokioIo::new(s), svc).await;
                            } else {
                                let _ = http1::Builder::new().serve_connection(TokioIo::new(s), svc).await;
                            }
                        }
                    }
                });
            }
        });
        Backend { addr, name: name.to_string(), received, connections, task }
    }

    /// A backend that answers 200 with `{"backend": name, "path": uri}`.
    pub async fn named(name: &str) -> Backend {
        let n = name.to_string();
        Backend::start(
            name,
            Arc::new(move |r: &Received| {
                let body = serde_json::json!({"backend": n, "path": r.uri}).to_string();
                Reply::text(200, &body).header("content-type", "application/json")
            }),
        )
        .await
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn requests(&self) -> Vec<Received> {
        self.received.lock().expect("lock").clone()
    }

    pub fn count(&self) -> usize {
        self.received.lock().expect("lock").len()
    }

    pub fn last(&self) -> Option<Received> {
        self.received.lock().expect("lock").last().cloned()
    }

    /// TCP connections accepted so far (to check upstream keep-alive).
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// Stops accepting (existing connections are dropped with the runtime's tasks).
    pub fn stop(&self) {
        self.task.abort();
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A backend that answers every request head with fixed raw bytes (for misbehaving upstreams).
pub struct RawBackend {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl RawBackend {
    /// For each request head received, writes `response`; closes after it when `close` is set.
    pub async fn start(response: &'static [u8], close: bool) -> RawBackend {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = l.local_addr().expect("addr");
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = l.accept().await else { continue };
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut tmp = [0u8; 4096];
                    loop {
                        match s.read(&mut tmp).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&tmp[..n]),
                        }
                        if let Some(p) = find(&buf, b"\r\n\r\n") {
                            buf.drain(..p + 4);
                            if s.write_all(response).await.is_err() || close {
                                return;
                            }
                        }
                    }
                });
            }
        });
        RawBackend { addr, task }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for RawBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// How a `FaultyBackend` answers right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// 200 with `{"backend":NAME}`, keep-alive.
    Healthy,
    /// This status with a short body, keep-alive.
    Status(u16),
    /// Reads the request and never answers.
    Hang,
    /// Answers 200 after this delay.
    Slow(Duration),
    /// Resets the connection (RST) after reading the request, before any response byte.
    Reset,
    /// Writes bytes that are not HTTP, then closes.
    Garbage,
    /// Sends a head announcing 1000 bytes, 10 of them, then closes.
    CloseMidBody,
}

/// A backend that misbehaves on command (`set`), can be killed (listener and every open
/// connection dropped: new connections are refused) and revived on the same address. It speaks
/// just enough HTTP/1.1 by hand (head, `Content-Length` bodies) to break it in controlled ways;
/// correct responses are checked by the gateway's parser, not by this one.
pub struct FaultyBackend {
    pub addr: SocketAddr,
    pub name: String,
    fault: Arc<Mutex<Fault>>,
    hits: Arc<AtomicUsize>,
    /// Values of this request header seen, when `watch_header` is set.
    seen: Arc<Mutex<Vec<String>>>,
    watch_header: Arc<Mutex<Option<String>>>,
    tasks: Arc<Mutex<Vec<tokio::task::AbortHandle>>>,
}

impl FaultyBackend {
    pub async fn start(name: &str) -> FaultyBackend {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let b = FaultyBackend {
            addr: l.local_addr().expect("addr"),
            name: name.to_string(),
            fault: Arc::new(Mutex::new(Fault::Healthy)),
            hits: Arc::new(AtomicUsize::new(0)),
            seen: Arc::new(Mutex::new(Vec::new())),
            watch_header: Arc::new(Mutex::new(None)),
            tasks: Arc::new(Mutex::new(Vec::new())),
        };
        b.serve(l);
        b
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Changes how every following request is answered.
    pub fn set(&self, f: Fault) {
        *self.fault.lock().expect("lock") = f;
    }

    /// Requests received (complete heads), whatever the answer.
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    /// Records the values of request header `name` (lower-case) from now on.
    pub fn watch_header(&self, name: &str) {
        *self.watch_header.lock().expect("lock") = Some(name.to_string());
    }

    pub fn seen_header_values(&self) -> Vec<String> {
        self.seen.lock().expect("lock").clone()
    }

    /// Kills the backend: stops listening and drops every open connection.
    pub fn kill(&self) {
        for t in self.tasks.lock().expect("lock").drain(..) {
            t.abort();
        }
    }

    /// Listens again on the same address (after `kill`).
    pub async fn revive(&self) {
        let l = TcpListener::bind(self.addr).await.expect("rebind");
        self.serve(l);
    }

    fn serve(&self, l: TcpListener) {
        let (fault, hits, tasks) = (self.fault.clone(), self.hits.clone(), self.tasks.clone());
        let (seen, watch, name) = (self.seen.clone(), self.watch_header.clone(), self.name.clone());
        let conn_tasks = tasks.clone();
        let accept = tokio::spawn(async move {
            loop {
                let Ok((s, _)) = l.accept().await else { continue };
                let (fault, hits, seen, watch, name) =
                    (fault.clone(), hits.clone(), seen.clone(), watch.clone(), name.clone());
                let h = tokio::spawn(async move { faulty_conn(s, fault, hits, seen, watch, name).await });
                conn_tasks.lock().expect("lock").push(h.abort_handle());
            }
        });
        tasks.lock().expect("lock").push(accept.abort_handle());
    }
}

impl Drop for FaultyBackend {
    fn drop(&mut self) {
        self.kill();
    }
}

async fn faulty_conn(
    mut s: TcpStream,
    fault: Arc<Mutex<Fault>>,
    hits: Arc<AtomicUsize>,
    seen: Arc<Mutex<Vec<String>>>,
    watch: Arc<Mutex<Option<String>>>,
    name: String,
) {
    let mut buf = Vec::new();
    let mut tmp = [0u8; 4096];
    loop {
        // One request: head, then a Content-Length body if any.
        let head_end = loop {
            if let Some(p) = find(&buf, b"\r\n\r\n") {
                break p + 4;
            }
            match s.read(&mut tmp).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&tmp[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
        let body_len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:").map(|v| v.trim().parse().unwrap_or(0)))
            .unwrap_or(0);
        while buf.len() < head_end + body_len {
            match s.read(&mut tmp).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&tmp[..n]),
            }
        }
        buf.drain(..head_end + body_len);
        if let Some(h) = watch.lock().expect("lock").clone() {
            let prefix = format!("{h}:");
            if let Some(v) = head.lines().find_map(|l| l.strip_prefix(prefix.as_str())) {
                seen.lock().expect("lock").push(v.trim().to_string());
            }
        }
        hits.fetch_add(1, Ordering::SeqCst);
        let f = *fault.lock().expect("lock");
        let ok = || {
            let body = format!("{{\"backend\":\"{name}\"}}");
            format!("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}", body.len())
        };
        let out = match f {
            Fault::Healthy => ok(),
            Fault::Slow(d) => {
                tokio::time::sleep(d).await;
                ok()
            }
            Fault::Status(code) => {
                format!("HTTP/1.1 {code} Whatever\r\ncontent-type: text/plain\r\ncontent-length: 4\r\n\r\nsick")
            }
            Fault::Hang => {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                return;
            }
            Fault::Reset => {
                let _ = s.set_zero_linger();
                return;
            }
            Fault::Garbage => {
                let _ = s.write_all(b"\x16\x03\x01 this is not http\r\n\r\n").await;
                return;
            }
            Fault::CloseMidBody => {
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n0123456789").await;
                return;
            }
        };
        if s.write_all(out.as_bytes()).await.is_err() {
            return;
        }
    }
}
