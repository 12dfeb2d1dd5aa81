//! Test-only helpers: real backends on 127.0.0.1 ephemeral ports, raw and HTTP clients,
//! launchers for the gateway (in-process through the real pipeline, or the real binary), a
//! real `redis-server` (`RedisServer`) for cluster-mode tests, a real OTLP trace receiver
//! (`OtlpReceiver`, Python with the official `opentelemetry-proto` decoder) and a real gRPC
//! service and client (`GrpcServer`, `grpc_call`: Python with the official `grpcio`).
//!
//! Invariants: backends are independent implementations (hyper's server), so a test checks the
//! gateway against another parser, never against itself; every wait is bounded in time.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
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

pub use gatehouse_core::Gateway;

pub mod h2raw;
pub mod prom;
pub mod tls;

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

fn find(h: &[u8], n: &[u8]) -> Option<usize> {
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

/// An in-process gateway running the real pipeline (worker threads, snapshot, admin).
pub struct TestGateway {
    pub gw: Arc<Gateway>,
    pub addr: SocketAddr,
    pub admin: Option<SocketAddr>,
}

/// Parses `yaml` through the real loader (panics listing every problem) and starts it.
pub async fn gateway(yaml: &str) -> TestGateway {
    let config = load(yaml);
    let gw = Gateway::start(config, gatehouse_core::Options { workers: 1, admin: true, ..Default::default() })
        .await
        .expect("gateway starts");
    TestGateway { addr: gw.listen_addrs[0], admin: gw.admin_addr, gw }
}

/// Loads a YAML config or panics with every error.
pub fn load(yaml: &str) -> gatehouse_config::Config {
    match gatehouse_config::load_str(yaml, &|_| None) {
        Ok(c) => c,
        Err(errs) => {
            panic!("invalid test config:\n{}", errs.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n"))
        }
    }
}

/// A minimal config: one listener on an ephemeral port, admin on an ephemeral port, one upstream
/// `backend` with the given target URLs, and the given routes YAML (indented list items) or a
/// catch-all route when `routes` is empty.
pub fn simple_config(targets: &[String], routes: &str) -> String {
    let c = Cfg::new().admin().upstream("backend", targets);
    if routes.is_empty() { c.route("all", "backend") } else { c.routes_yaml(routes) }.to_yaml()
}

/// A gateway config for tests, built item by item; `to_yaml()` is what the loader reads.
///
/// ```ignore
/// let yaml = Cfg::new()
///     .admin()
///     .upstream("backend", &[backend.url()])
///     .route_with("api", "backend", "match: {path: {prefix: /api}}\nrewrite: {strip_prefix: true}")
///     .to_yaml();
/// ```
///
/// The `*_with` / `listener` / `admin_with` arguments are the item's extra fields as a YAML block
/// (at any indentation: it is re-indented here); `routes_yaml` and `yaml` are the escape hatches
/// for anything else (raw route list items, raw top-level sections).
#[derive(Debug, Clone)]
pub struct Cfg {
    /// Each listener's address and its extra fields (indented).
    listeners: Vec<(String, String)>,
    admin: Option<(String, String)>,
    top: String,
    upstreams: String,
    routes: String,
}

impl Default for Cfg {
    fn default() -> Cfg {
        Cfg::new()
    }
}

/// `block` (YAML at any indentation: its common indentation is removed) indented by `n` spaces,
/// newline-ended.
fn indent(block: &str, n: usize) -> String {
    let lines = block.lines().filter(|l| !l.trim().is_empty());
    let common = lines.map(|l| l.len() - l.trim_start_matches(' ').len()).min().unwrap_or(0);
    let pad = " ".repeat(n);
    block
        .lines()
        .map(|l| if l.trim().is_empty() { "\n".to_string() } else { format!("{pad}{}\n", &l[common..]) })
        .collect()
}

impl Cfg {
    /// One listener on `127.0.0.1:0`, no admin listener, no upstreams, no routes.
    pub fn new() -> Cfg {
        Cfg {
            listeners: vec![("127.0.0.1:0".into(), String::new())],
            admin: None,
            top: String::new(),
            upstreams: String::new(),
            routes: String::new(),
        }
    }

    /// The first listener's address (default `127.0.0.1:0`).
    pub fn listen(mut self, addr: &str) -> Cfg {
        self.listeners[0].0 = addr.to_string();
        self
    }

    /// Extra fields of the last listener (`tls: ...`, `http2: ...`, `timeouts: ...`).
    pub fn listener(mut self, fields: &str) -> Cfg {
        if let Some(l) = self.listeners.last_mut() {
            l.1.push_str(&indent(fields, 4));
        }
        self
    }

    /// Another listener on `addr`, with extra fields.
    pub fn add_listener(mut self, addr: &str, fields: &str) -> Cfg {
        self.listeners.push((addr.to_string(), indent(fields, 4)));
        self
    }

    /// The admin listener on `127.0.0.1:0`.
    pub fn admin(self) -> Cfg {
        self.admin_with("127.0.0.1:0", "")
    }

    /// The admin listener on `addr`, with extra fields (`token: ...`).
    pub fn admin_with(mut self, addr: &str, fields: &str) -> Cfg {
        self.admin = Some((addr.to_string(), indent(fields, 2)));
        self
    }

    /// An upstream with these target URLs.
    pub fn upstream<S: AsRef<str>>(self, name: &str, targets: &[S]) -> Cfg {
        self.upstream_with(name, targets, "")
    }

    /// An upstream with these target URLs and extra fields (`tls: ...`, `protocol: http2`, ...).
    pub fn upstream_with<S: AsRef<str>>(mut self, name: &str, targets: &[S], fields: &str) -> Cfg {
        let t: String = targets.iter().map(|u| format!("      - url: {}\n", u.as_ref())).collect();
        self.upstreams.push_str(&format!("  - name: {name}\n    targets:\n{t}{}", indent(fields, 4)));
        self
    }

    /// An upstream with weighted targets (`(url, weight)`) and extra fields.
    pub fn upstream_weighted<S: AsRef<str>>(mut self, name: &str, targets: &[(S, u32)], fields: &str) -> Cfg {
        let t: String =
            targets.iter().map(|(u, w)| format!("      - {{url: \"{}\", weight: {w}}}\n", u.as_ref())).collect();
        self.upstreams.push_str(&format!("  - name: {name}\n    targets:\n{t}{}", indent(fields, 4)));
        self
    }

    /// A route to `upstream` matching every request.
    pub fn route(self, name: &str, upstream: &str) -> Cfg {
        self.route_with(name, upstream, "")
    }

    /// A route to `upstream` with extra fields (`match: ...`, `policies: ...`, ...).
    pub fn route_with(mut self, name: &str, upstream: &str, fields: &str) -> Cfg {
        self.routes.push_str(&format!("  - name: {name}\n    upstream: {upstream}\n{}", indent(fields, 4)));
        self
    }

    /// Route list items as raw YAML (each `  - ...`, indented 2).
    pub fn routes_yaml(mut self, items: &str) -> Cfg {
        self.routes.push_str(items);
        if !items.is_empty() && !items.ends_with('\n') {
            self.routes.push('\n');
        }
        self
    }

    /// Raw top-level sections (`access_log: ...`, `server: ...`, `cluster: ...`), at column 0.
    pub fn yaml(mut self, sections: &str) -> Cfg {
        self.top.push_str(&indent(sections, 0));
        self
    }

    /// An in-process gateway running this config ([`gateway`]).
    pub async fn start(&self) -> TestGateway {
        gateway(&self.to_yaml()).await
    }

    pub fn to_yaml(&self) -> String {
        let mut y = String::from("listeners:\n");
        for (addr, fields) in &self.listeners {
            y.push_str(&format!("  - address: {addr}\n{fields}"));
        }
        if let Some((addr, fields)) = &self.admin {
            y.push_str(&format!("admin:\n  address: {addr}\n{fields}"));
        }
        y.push_str(&self.top);
        y.push_str(&format!("upstreams:\n{}routes:\n{}", self.upstreams, self.routes));
        y
    }
}

/// A free TCP port on 127.0.0.1 (bound then released; for the binary launcher).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("free port")
}

/// The real `gatehouse` binary running a config file.
pub struct GatewayProcess {
    pub child: Child,
    pub dir: PathBuf,
    pub config: PathBuf,
}

impl GatewayProcess {
    /// Writes `yaml` to a temp dir and runs `bin run --config FILE`; waits until `ready` (an
    /// admin address) answers /readyz, up to 10 s.
    pub fn spawn(bin: &str, yaml: &str, ready: SocketAddr) -> GatewayProcess {
        GatewayProcess::spawn_with_args(bin, &[], yaml, ready)
    }

    /// Sends a signal (`TERM`, `HUP`, ...) with kill(1).
    pub fn signal(&self, sig: &str) {
        let _ = Command::new("kill").arg(format!("-{sig}")).arg(self.child.id().to_string()).status();
    }

    pub fn config_path(&self) -> &Path {
        &self.config
    }

    /// Waits for exit up to `timeout`; returns the exit status if it exited.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = std::time::Instant::now() + timeout;
        while std::time::Instant::now() < deadline {
            if let Ok(Some(s)) = self.child.try_wait() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

// ---------------------------------------------------------------------------------------------
// Helpers added for the end-to-end proxy, balancer and lifecycle tests.
// ---------------------------------------------------------------------------------------------

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

impl GatewayProcess {
    /// Like [`GatewayProcess::spawn`], with extra arguments before `run` (e.g. `--log-format json`).
    pub fn spawn_with_args(bin: &str, global_args: &[&str], yaml: &str, ready: SocketAddr) -> GatewayProcess {
        let dir = std::env::temp_dir().join(format!("gatehouse-test-{}-{}", std::process::id(), free_port()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let config = dir.join("gatehouse.yaml");
        std::fs::write(&config, yaml).expect("write config");
        GatewayProcess::spawn_file(bin, global_args, dir, config, ready)
    }

    /// Runs `bin run --config CONFIG` on an existing file (in `dir`, removed by nobody: the
    /// caller owns it); waits until `ready` answers /readyz, up to 10 s.
    pub fn spawn_file(
        bin: &str,
        global_args: &[&str],
        dir: PathBuf,
        config: PathBuf,
        ready: SocketAddr,
    ) -> GatewayProcess {
        let child = Command::new(bin)
            .args(global_args)
            .args(["run", "--config"])
            .arg(&config)
            .args(["--workers", "1"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn gatehouse");
        let mut p = GatewayProcess { child, dir, config };
        if !p.wait_ready(ready, Duration::from_secs(10)) {
            panic!("gatehouse did not become ready");
        }
        p
    }

    /// Waits until `admin` answers /readyz with 200 (false on timeout or if the process exited).
    pub fn wait_ready(&mut self, admin: SocketAddr, timeout: Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        while std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return false;
            }
            if let Ok(mut s) = std::net::TcpStream::connect(admin) {
                use std::io::{Read, Write};
                let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                let _ = s.write_all(b"GET /readyz HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n");
                let mut out = String::new();
                let _ = s.read_to_string(&mut out);
                if out.starts_with("HTTP/1.1 200") {
                    return true;
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// Collects the child's stderr on a thread; the returned buffer fills as lines arrive.
    pub fn capture_stderr(&mut self) -> Arc<Mutex<String>> {
        let buf = Arc::new(Mutex::new(String::new()));
        if let Some(mut err) = self.child.stderr.take() {
            let b = buf.clone();
            std::thread::spawn(move || {
                use std::io::Read;
                let mut tmp = [0u8; 4096];
                loop {
                    match err.read(&mut tmp) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => b.lock().expect("lock").push_str(&String::from_utf8_lossy(&tmp[..n])),
                    }
                }
            });
        }
        buf
    }
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

/// A real `redis-server` on an ephemeral 127.0.0.1 port, without persistence; killed on drop.
///
/// The binary is required: if it is missing, `start` panics with how to install it (the tests
/// must fail, not skip; `.ci/run` installs Debian's `redis-server`). `REDIS_SERVER` overrides
/// the binary path.
pub struct RedisServer {
    child: Option<Child>,
    pub port: u16,
    dir: PathBuf,
    /// TLS only (`start_tls`): the port speaks TLS with a certificate signed by `ca_file()`.
    tls: bool,
}

impl RedisServer {
    /// Starts a server on a free port and waits (up to 10 s) until it answers PING.
    pub fn start() -> RedisServer {
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("gatehouse-redis-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let mut r = RedisServer { child: None, port, dir, tls: false };
        r.restart();
        r
    }

    /// Like `start`, but the port speaks only TLS: a test CA (made with the `openssl` CLI, in
    /// the server's temp dir) signs a certificate for 127.0.0.1. Clients need no certificate.
    pub fn start_tls() -> RedisServer {
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("gatehouse-redis-tls-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let run = |args: &[&str]| {
            let out = Command::new("openssl").args(args).current_dir(&dir).output().expect("openssl runs");
            assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        };
        run(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=gatehouse test CA",
        ]);
        run(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=127.0.0.1",
        ]);
        std::fs::write(dir.join("ext.cnf"), "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n").expect("ext");
        run(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
        ]);
        let mut r = RedisServer { child: None, port, dir, tls: true };
        r.restart();
        r
    }

    /// The test CA that signed a TLS server's certificate.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    fn binary() -> String {
        std::env::var("REDIS_SERVER").unwrap_or_else(|_| "redis-server".to_string())
    }

    /// `redis://127.0.0.1:<port>/0` (`rediss://` for a TLS server).
    pub fn url(&self) -> String {
        let scheme = if self.tls { "rediss" } else { "redis" };
        format!("{scheme}://127.0.0.1:{}/0", self.port)
    }

    /// Whether the server answers PING right now.
    pub fn ping(&self) -> bool {
        use std::io::{Read, Write};
        if self.tls {
            let out = Command::new("redis-cli")
                .args(["--tls", "--cacert"])
                .arg(self.ca_file())
                .args(["-p", &self.port.to_string(), "ping"])
                .output();
            return out.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("PONG"));
        }
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let Ok(mut s) = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else { return false };
        let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
        let mut buf = [0u8; 16];
        s.write_all(b"PING\r\n").is_ok() && matches!(s.read(&mut buf), Ok(n) if buf[..n].starts_with(b"+PONG"))
    }

    /// Kills the server (its data is gone: no persistence).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// (Re)starts the server on the same port; waits until it answers PING (up to 10 s).
    pub fn restart(&mut self) {
        self.stop();
        let bin = Self::binary();
        let port = self.port.to_string();
        let mut cmd = Command::new(&bin);
        if self.tls {
            cmd.args(["--port", "0", "--tls-port", &port, "--tls-auth-clients", "no"]).args([
                "--tls-cert-file",
                "server.pem",
                "--tls-key-file",
                "server.key",
                "--tls-ca-cert-file",
                "ca.pem",
            ]);
        } else {
            cmd.args(["--port", &port]);
        }
        let child = cmd
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        match child {
            Ok(c) => self.child = Some(c),
            Err(e) => panic!(
                "cannot run `{bin}` ({e}): the cluster-mode tests need a real Redis. Install it \
                 (Debian/Ubuntu: `apt-get install redis-server`; `.ci/run` does) or set REDIS_SERVER"
            ),
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::time::Instant::now() < deadline {
            if self.ping() {
                return;
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!("`{bin}` exited with {status} before answering PING on port {}", self.port);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("`{bin}` did not answer PING on port {} within 10 s", self.port);
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Shuts an in-process gateway down, bounded to 5 s.
pub async fn stop(gw: TestGateway) {
    let _ = tokio::time::timeout(Duration::from_secs(5), gw.gw.shutdown()).await;
}

/// A route list item `name` on exact path `/name` to upstream `backend`, with the given policies
/// (YAML list items indented 6 spaces).
pub fn policy_route(name: &str, policies: &str) -> String {
    format!(
        "  - name: {name}\n    upstream: backend\n    match: {{path: {{exact: /{name}}}}}\n    policies:\n{policies}"
    )
}

/// The statuses of a list of responses.
pub fn statuses(rs: &[Resp]) -> Vec<u16> {
    rs.iter().map(|r| r.status).collect()
}

/// The responses to five requests on a route limited to 3 per minute (`limit: 3/min`) in draft
/// header mode: what local and cluster mode must both answer, byte for byte.
pub fn assert_three_per_minute(rs: &[Resp]) {
    assert_eq!(statuses(rs), [200, 200, 200, 429, 429]);
    for (i, r) in rs[..3].iter().enumerate() {
        assert_eq!(r.header("ratelimit-policy"), Some("\"limited\";q=3;w=60"), "{:?}", r.headers);
        let want = format!("\"limited\";r={};t={}", 2 - i, 20 * (i + 1));
        assert_eq!(r.header("ratelimit"), Some(want.as_str()));
        assert_eq!(r.header("retry-after"), None);
    }
    let refused = &rs[3];
    assert_eq!(refused.header("retry-after"), Some("20"), "{:?}", refused.headers);
    assert_eq!(refused.header("ratelimit"), Some("\"limited\";r=0;t=60"));
    assert_eq!(refused.header("ratelimit-policy"), Some("\"limited\";q=3;w=60"));
    assert_eq!(refused.header("content-type"), Some("application/json"));
    let v = refused.json();
    assert_eq!(v["error"]["status"], 429);
    assert_eq!(v["error"]["code"], "rate_limited");
    assert_eq!(v["error"]["request_id"].as_str(), refused.header("x-request-id"));
}

/// A real OTLP/HTTP trace receiver: `otlp_receiver.py` decoding with the official
/// `opentelemetry-proto` Python package (an independent decoder of what the exporter encodes).
/// Killed on drop.
pub struct OtlpReceiver {
    /// Base URL (`http://127.0.0.1:PORT`), as `OTEL_EXPORTER_OTLP_ENDPOINT` takes it.
    pub endpoint: String,
    pub port: u16,
    child: Child,
    events: Arc<Mutex<Vec<serde_json::Value>>>,
}

impl OtlpReceiver {
    pub fn start() -> OtlpReceiver {
        OtlpReceiver::start_with(&[])
    }

    /// Starts the receiver with extra arguments (`--port N`, `--fail-first N`, `--fail-status S`,
    /// `--retry-after S`); waits up to 10 s for it to listen.
    pub fn start_with(args: &[&str]) -> OtlpReceiver {
        use std::io::BufRead;
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("otlp_receiver.py");
        let mut child = Command::new("python3")
            .arg(&script)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 runs (the OTLP receiver needs `pip install opentelemetry-proto`, see .ci/run)");
        let stdout = child.stdout.take().expect("piped stdout");
        let events = Arc::new(Mutex::new(Vec::new()));
        let (port_tx, port_rx) = std::sync::mpsc::channel();
        let ev = events.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(p) = line.strip_prefix("PORT ") {
                    let _ = port_tx.send(p.trim().parse::<u16>().expect("port number"));
                } else if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
                    ev.lock().expect("events").push(v);
                }
            }
        });
        let port = match port_rx.recv_timeout(Duration::from_secs(10)) {
            Ok(p) => p,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the OTLP receiver did not start (is opentelemetry-proto installed? see .ci/run)");
            }
        };
        OtlpReceiver { endpoint: format!("http://127.0.0.1:{port}"), port, child, events }
    }

    fn events_of(&self, kind: &str) -> Vec<serde_json::Value> {
        self.events.lock().expect("events").iter().filter(|e| e["event"] == kind).cloned().collect()
    }

    /// The decoded spans received so far, waiting up to `wait` for at least one.
    pub fn spans(&self, wait: Duration) -> Vec<serde_json::Value> {
        self.wait_spans(1, wait)
    }

    /// Waits up to `wait` for at least `n` spans; returns all received (maybe fewer on timeout).
    pub fn wait_spans(&self, n: usize, wait: Duration) -> Vec<serde_json::Value> {
        self.wait_events("span", n, wait)
    }

    /// One entry per export request (`status` answered, request `headers`, `spans` decoded),
    /// waiting up to `wait` for at least `n`. The receiver's output is read asynchronously, so an
    /// export the client saw answered may take a moment to show here.
    pub fn wait_requests(&self, n: usize, wait: Duration) -> Vec<serde_json::Value> {
        self.wait_events("request", n, wait)
    }

    fn wait_events(&self, kind: &str, n: usize, wait: Duration) -> Vec<serde_json::Value> {
        let deadline = std::time::Instant::now() + wait;
        loop {
            let events = self.events_of(kind);
            if events.len() >= n || std::time::Instant::now() >= deadline {
                return events;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
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

/// Fetches the admin `/upstreams` JSON.
pub async fn upstreams_view(gw: &TestGateway) -> serde_json::Value {
    get(gw.admin.expect("admin listener"), "/upstreams").await.json()
}

// ---------------------------------------------------------------------------------------------
// A real gRPC service and client (Python `grpcio`) for the HTTP/2 and gRPC tests.
// ---------------------------------------------------------------------------------------------

/// A real gRPC server: `grpc_server.py`, the official `grpcio` server with service `test.Echo`
/// (bytes in and out, no code generation; methods `Unary`, `ServerStream`, `ClientStream`,
/// `Bidi`, `Fail`, `Slow`), insecure (h2c) on 127.0.0.1. Killed on drop; it also exits when the
/// test process does (its stdin closes).
pub struct GrpcServer {
    pub addr: SocketAddr,
    child: Child,
}

impl GrpcServer {
    /// Starts the server on an ephemeral port; waits up to 10 s for it to listen.
    pub fn start() -> GrpcServer {
        use std::io::BufRead;
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("grpc_server.py");
        let mut child = Command::new("python3")
            .arg(&script)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 runs (the gRPC server needs `pip install grpcio`, see .ci/run)");
        let stdout = child.stdout.take().expect("piped stdout");
        let (port_tx, port_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(p) = line.strip_prefix("PORT ") {
                    let _ = port_tx.send(p.trim().parse::<u16>().expect("port number"));
                }
            }
        });
        let port = match port_rx.recv_timeout(Duration::from_secs(10)) {
            Ok(p) => p,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the gRPC server did not start (is grpcio installed? see .ci/run)");
            }
        };
        GrpcServer { addr: SocketAddr::from(([127, 0, 0, 1], port)), child }
    }

    /// The upstream target URL for the gateway (`h2c://127.0.0.1:PORT`).
    pub fn h2c_url(&self) -> String {
        format!("h2c://{}", self.addr)
    }
}

impl Drop for GrpcServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One call with the official `grpcio` client (`grpc_client.py`) to `target` (`host:port`):
/// `method` of `test.Echo` (or a full `/pkg.Service/Method` path), then `args` (messages and
/// options such as `--metadata k=v`, `--timeout S`, `--size N`, `--pingpong`, `--ca FILE`,
/// `--server-name NAME`; see the script). Returns the script's JSON: `code` (`"OK"`,
/// `"NOT_FOUND"`, ...), `code_value`, `details`, `messages`, `message_lengths`,
/// `initial_metadata`, `trailing_metadata`, `elapsed_ms`. Blocking; the process is killed after
/// 30 s.
pub fn grpc_call(target: &str, method: &str, args: &[&str]) -> serde_json::Value {
    use std::io::Read;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("grpc_client.py");
    let mut child = Command::new("python3")
        .arg(&script)
        .arg(target)
        .arg(method)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs (the gRPC client needs `pip install grpcio`, see .ci/run)");
    let (mut out, mut err) = (child.stdout.take().expect("stdout"), child.stderr.take().expect("stderr"));
    let reader = std::thread::spawn(move || {
        let (mut o, mut e) = (Vec::new(), Vec::new());
        let _ = out.read_to_end(&mut o);
        let _ = err.read_to_end(&mut e);
        (o, e)
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Ok(Some(s)) = child.try_wait() {
            break Some(s);
        }
        if std::time::Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let (o, e) = reader.join().expect("reader");
    let (o, e) = (String::from_utf8_lossy(&o), String::from_utf8_lossy(&e));
    let Some(status) = status else { panic!("grpc_client.py {method} {args:?} ran over 30 s; stderr:\n{e}") };
    match serde_json::from_str(o.trim()) {
        Ok(v) if status.success() => v,
        _ => panic!("grpc_client.py {method} {args:?} failed ({status}); stdout:\n{o}\nstderr:\n{e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::Cfg;

    #[test]
    fn cfg_puts_every_item_in_its_place_and_the_loader_accepts_it() {
        let yaml = Cfg::new()
            .listener("    timeouts: {idle: 1s}\n")
            .admin_with("127.0.0.1:0", "token: a-long-enough-admin-token-0123")
            .yaml("server:\n  drain_timeout: 1s")
            .upstream_with("a", &["http://127.0.0.1:1"], "pool:\n  idle_timeout: 5s")
            .upstream_weighted("b", &[("http://127.0.0.1:2", 3)], "")
            .route_with("r", "a", "match: {path: {prefix: /r}}")
            .routes_yaml("  - {name: s, upstream: b}")
            .to_yaml();
        let want = "\
listeners:
  - address: 127.0.0.1:0
    timeouts: {idle: 1s}
admin:
  address: 127.0.0.1:0
  token: a-long-enough-admin-token-0123
server:
  drain_timeout: 1s
upstreams:
  - name: a
    targets:
      - url: http://127.0.0.1:1
    pool:
      idle_timeout: 5s
  - name: b
    targets:
      - {url: \"http://127.0.0.1:2\", weight: 3}
routes:
  - name: r
    upstream: a
    match: {path: {prefix: /r}}
  - {name: s, upstream: b}
";
        assert_eq!(yaml, want);
        crate::load(&yaml);
    }
}
