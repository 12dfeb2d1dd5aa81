//! The HTTP/1.1 data plane: one task per client connection runs every request on it through
//! parse → normalise → route → `on_request` → pick target → forward → `on_response` → `on_log`.
//! HTTP/2 streams run the same `handle_request` (their client is `Client::H2`, see
//! `http2::server`); forwarding with HTTP/2 on either side is `http2::forward`, which shares
//! `Admission` and the retry decision with `forward` here.
//!
//! Invariants:
//! - Nothing reaches an upstream before the head passed the strict parser, the path was
//!   normalised, a route matched and the request phase said `Continue`. The path that was matched
//!   is the path that is forwarded (after the route's explicit rewrite).
//! - Bodies stream both ways; only the head and at most one read buffer are held in memory.
//! - Hop-by-hop fields (and those named in `Connection`) never cross the proxy; forwarding headers
//!   from untrusted peers are replaced, never trusted.
//! - Once any byte of a response went to the client, a failure closes the connection instead of
//!   sending a second response, so a truncated body can never look complete.
//! - A pooled upstream connection is reused only after a fully read, well-framed response.
//! - Upgrades (`Connection: upgrade` + `Upgrade`): forwarded only for protocols the route lists
//!   (`upgrades`, default `[websocket]`), on bodiless HTTP/1.1 requests, never retried or hedged.
//!   Bytes are tunnelled only after the upstream answered 101 naming a protocol the client asked
//!   for; any other answer is relayed as a normal response and the client connection is then
//!   closed, so nothing the client sent after its upgrade request reaches anyone. The upgraded
//!   upstream connection is never pooled.

use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;
use tokio::time::{Instant, Sleep};

use crate::counted::Counted;
use crate::error::{GatewayError, LocalResponse};
use crate::http1::headers::trim;
use crate::http1::{self, parse_request, BodyKind, Headers, RequestHead};
use crate::normalize::{is_normal_path, normalize_target};
use crate::pipeline::{on_log, Flow, RequestCtx};
use crate::router::{Lookup, RequestView};
use crate::snapshot::{ListenerRt, Rewrite, Route, Snapshot, TplPart};
use crate::upstream::balancer::rand_u64;
use crate::upstream::Registry;

/// State shared by every worker: the current snapshot, long-lived registries, lifecycle.
pub struct Shared {
    pub snapshot: ArcSwap<Snapshot>,
    pub registry: Registry,
    /// Rate and concurrency limiters, kept across reloads like `registry`.
    pub limiters: crate::policy::Limiters,
    /// Open access-log writers by output, kept across reloads.
    pub access_logs: crate::access_log::AccessLogs,
    pub shutdown: watch::Receiver<bool>,
    /// Set once a drain starts; read per request (an atomic load, no lock).
    pub stopping: std::sync::atomic::AtomicBool,
    /// Woken (`notify_waiters`) when a drain starts, so idle keep-alive connections close at once.
    pub stop: Arc<tokio::sync::Notify>,
    /// Open client connections (traffic listeners only).
    pub connections: AtomicUsize,
    /// Requests being processed.
    pub inflight: AtomicUsize,
    /// Request counters and reload figures for `/metrics`, kept across reloads.
    pub metrics: crate::metrics::Metrics,
    /// The tracer and the `tracing` config it was built from: a reload that keeps the section
    /// keeps the tracer (its queue and exporter connection).
    pub tracer: std::sync::Mutex<Option<(gatehouse_config::Tracing, Arc<crate::trace::Tracer>)>>,
}

const READ_CHUNK: usize = 16 * 1024;
pub(crate) const FLUSH_AT: usize = 64 * 1024;

pub(crate) struct CountGuard<'a>(&'a AtomicUsize);

impl<'a> CountGuard<'a> {
    pub(crate) fn new(c: &'a AtomicUsize) -> Self {
        c.fetch_add(1, Ordering::Relaxed);
        CountGuard(c)
    }
}

impl Drop for CountGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Per-connection buffers and identity.
pub(crate) struct Conn {
    pub(crate) rbuf: BytesMut,
    pub(crate) wbuf: Vec<u8>,
    /// The upstream request head being built (reused across requests).
    pub(crate) ubuf: Vec<u8>,
    pub(crate) peer: SocketAddr,
    /// The peer's IP as text, and `for=...;proto=http`, computed once per connection.
    peer_ip: Bytes,
    forwarded_for: Bytes,
    /// Whether the peer is a trusted proxy, cached per listener config generation.
    trusted_cache: Option<(usize, bool)>,
    pub(crate) shared: Arc<Shared>,
    /// Registered with `Shared::stop` once per connection (not per request): no lock per request.
    stop: Pin<Box<tokio::sync::futures::OwnedNotified>>,
    pub(crate) timer: Pin<Box<Sleep>>,
    /// Client bytes consumed and written before the current request (see `counted`).
    mark: (u64, u64),
    /// The connection is TLS: `https` in X-Forwarded-Proto/Forwarded, HSTS is sent.
    pub(crate) https: bool,
    /// The verified client certificate's subject (mTLS).
    client_subject: Option<Bytes>,
}

impl Conn {
    fn proto(&self) -> Bytes {
        Bytes::from_static(if self.https { b"https" } else { b"http" })
    }

    pub(crate) fn stopping(&self) -> bool {
        self.shared.stopping.load(Ordering::Relaxed)
    }

    /// Whether the peer is in `trusted` (cached by the list's address: stable for a snapshot).
    fn peer_trusted(&mut self, trusted: &[gatehouse_config::Cidr]) -> bool {
        if trusted.is_empty() {
            return false;
        }
        let key = trusted.as_ptr() as usize;
        match self.trusted_cache {
            Some((k, v)) if k == key => v,
            _ => {
                let v = trusted.iter().any(|c| c.contains(self.peer.ip()));
                self.trusted_cache = Some((key, v));
                v
            }
        }
    }
}

#[allow(clippy::large_enum_variant)]
enum HeadRead {
    // Not boxed: the head moves once into `handle_request`; an allocation per request costs more.
    Head(RequestHead),
    Closed,
    Error(GatewayError),
}

/// Why forwarding stopped early.
pub(crate) enum Fail {
    /// Nothing was written to the client yet: answer with this error.
    Before(GatewayError),
    /// The response already started (or the client is gone): close the connection.
    After,
}

/// Where the client of one request is: an HTTP/1.x connection, or one HTTP/2 stream.
pub(crate) enum Client<'a, S> {
    H1(&'a mut Counted<S>),
    H2(&'a mut crate::http2::server::Stream),
}

impl Conn {
    /// Per-connection state for a client at `peer`.
    pub(crate) fn new(peer: SocketAddr, shared: Arc<Shared>, https: bool, client_subject: Option<Bytes>) -> Conn {
        let (peer_ip, forwarded_for) = Conn::peer_texts(peer, https);
        Conn::with_texts(peer, shared, https, client_subject, peer_ip, forwarded_for)
    }

    /// The peer's IP as text and its `Forwarded` element, made once per connection (HTTP/2
    /// streams share their connection's).
    pub(crate) fn peer_texts(peer: SocketAddr, https: bool) -> (Bytes, Bytes) {
        let proto = if https { "https" } else { "http" };
        let fwd = match peer.ip() {
            IpAddr::V4(ip) => format!("for={ip};proto={proto}"),
            IpAddr::V6(ip) => format!("for=\"[{ip}]\";proto={proto}"),
        };
        (Bytes::from(peer.ip().to_string()), Bytes::from(fwd))
    }

    pub(crate) fn with_texts(
        peer: SocketAddr,
        shared: Arc<Shared>,
        https: bool,
        client_subject: Option<Bytes>,
        peer_ip: Bytes,
        forwarded_for: Bytes,
    ) -> Conn {
        Conn {
            rbuf: BytesMut::new(),
            wbuf: Vec::new(),
            ubuf: Vec::new(),
            peer,
            peer_ip,
            forwarded_for,
            trusted_cache: None,
            stop: Box::pin(shared.stop.clone().notified_owned()),
            shared,
            timer: Box::pin(tokio::time::sleep(Duration::ZERO)),
            mark: (0, 0),
            https,
            client_subject,
        }
    }
}

/// What the first bytes of a plain connection are.
enum Sniffed {
    Http1,
    Http2,
    Closed,
}

/// Reads until the bytes either are the HTTP/2 connection preface or cannot be (one read in
/// the HTTP/1.1 case: a request line never starts with `PRI * HTTP/2.0`).
async fn sniff_preface<S: AsyncRead + Unpin>(io: &mut S, c: &mut Conn, idle: Duration) -> Sniffed {
    const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    c.timer.as_mut().reset(Instant::now() + idle);
    loop {
        let n = c.rbuf.len().min(PREFACE.len());
        if n > 0 && c.rbuf[..n] != PREFACE[..n] {
            return Sniffed::Http1;
        }
        if n == PREFACE.len() {
            return Sniffed::Http2;
        }
        reserve(&mut c.rbuf);
        tokio::select! {
            biased;
            r = io.read_buf(&mut c.rbuf) => match r {
                Ok(0) | Err(_) => return Sniffed::Closed,
                Ok(_) => {}
            },
            _ = &mut c.timer => return Sniffed::Closed,
            _ = c.stop.as_mut() => return Sniffed::Closed,
        }
    }
}

/// Serves one plain client connection until it closes, errs, idles out, or the gateway drains.
pub async fn serve_connection<S>(io: S, peer: SocketAddr, listener: usize, shared: Arc<Shared>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    serve_connection_with(io, peer, listener, shared, None).await
}

/// Serves one client connection; `tls` is what its (finished) TLS handshake established.
pub async fn serve_connection_with<S>(
    io: S,
    peer: SocketAddr,
    listener: usize,
    shared: Arc<Shared>,
    tls: Option<crate::tls::ConnTls>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let _conn = CountGuard::new(&shared.connections);
    let https = tls.is_some();
    let mut c = Conn::new(peer, shared.clone(), https, tls.and_then(|t| t.client_subject));
    c.rbuf.reserve(READ_CHUNK);
    c.wbuf.reserve(4096);
    c.ubuf.reserve(512);
    let mut io = io;
    // Plain listeners with HTTP/2 on take the h2c preface (prior knowledge); TLS connections
    // chose their protocol by ALPN before reaching here.
    if !https {
        let first = shared.snapshot.load().listeners.get(listener).map(|l| (l.http2.is_some(), l.idle_timeout));
        if let Some((true, idle)) = first {
            match sniff_preface(&mut io, &mut c, idle).await {
                Sniffed::Closed => return,
                Sniffed::Http1 => {}
                Sniffed::Http2 => {
                    let pre = c.rbuf.split().freeze();
                    drop(_conn);
                    let io = crate::http2::server::Prefixed::new(pre, io);
                    return crate::http2::server::serve(io, peer, listener, shared, None).await;
                }
            }
        }
    }
    let mut io = Counted::new(io);
    // Bytes the sniffing read count as read from this connection.
    io.read = c.rbuf.len() as u64;
    loop {
        // Only the listener's read settings are needed to wait for a head; the snapshot used for
        // the request is loaded once the head is complete, so a reload applies to the very next
        // request even on a connection that was idle across it.
        let Some(rs) = shared.snapshot.load().listeners.get(listener).map(ReadSettings::of) else { break };
        c.mark = (io.read - c.rbuf.len() as u64, io.written);
        match read_head(&mut io, &mut c, rs).await {
            HeadRead::Closed => break,
            HeadRead::Error(e) => {
                // No head, so no route or method: counted apart, and logged at debug level; the
                // answer still carries a request id the client can quote.
                shared.metrics.unreadable.fetch_add(1, Ordering::Relaxed);
                let id = new_request_id();
                let id_str = std::str::from_utf8(&id).unwrap_or("-");
                tracing::debug!(request_id = id_str, peer = %peer, error = %e, "request head refused");
                let resp = e.to_response(id_str);
                c.wbuf.clear();
                let name = shared.snapshot.load().request_id_header.clone();
                resp.write_to(&mut c.wbuf, &[(std::str::from_utf8(&name).unwrap_or("x-request-id"), &id)], false);
                let _ = io.write_all(&c.wbuf).await;
                break;
            }
            HeadRead::Head(head) => {
                let _req = CountGuard::new(&shared.inflight);
                let snap = shared.snapshot.load_full();
                let Some(l) = snap.listeners.get(listener) else { break };
                let keep = handle_request(&mut Client::H1(&mut io), &mut c, head, &snap, l).await;
                if !keep || c.stopping() {
                    break;
                }
            }
        }
    }
    let _ = io.shutdown().await;
}

pub(crate) fn reserve(buf: &mut BytesMut) {
    if buf.capacity() - buf.len() < 1024 {
        buf.reserve(READ_CHUNK);
    }
}

/// What waiting for a request head needs from the listener (copied out of the snapshot).
#[derive(Clone, Copy)]
struct ReadSettings {
    limits: http1::HeadLimits,
    idle_timeout: Duration,
    header_timeout: Duration,
}

impl ReadSettings {
    fn of(l: &ListenerRt) -> ReadSettings {
        ReadSettings { limits: l.limits, idle_timeout: l.idle_timeout, header_timeout: l.header_timeout }
    }
}

async fn read_head<S: AsyncRead + Unpin>(io: &mut S, c: &mut Conn, l: ReadSettings) -> HeadRead {
    if c.rbuf.is_empty() {
        if c.stopping() {
            return HeadRead::Closed;
        }
        c.timer.as_mut().reset(Instant::now() + l.idle_timeout);
        reserve(&mut c.rbuf);
        tokio::select! {
            biased;
            r = io.read_buf(&mut c.rbuf) => match r {
                Ok(0) | Err(_) => return HeadRead::Closed,
                Ok(_) => {}
            },
            _ = &mut c.timer => return HeadRead::Closed,
            _ = c.stop.as_mut() => return HeadRead::Closed,
        }
    }
    // The head deadline is armed only if the head did not arrive whole (the common case needs
    // no timer update at all).
    let mut armed = false;
    loop {
        match parse_request(&mut c.rbuf, l.limits) {
            Ok(Some(h)) => return HeadRead::Head(h),
            Ok(None) => {}
            Err(e) => return HeadRead::Error(e.into()),
        }
        if !armed {
            c.timer.as_mut().reset(Instant::now() + l.header_timeout);
            armed = true;
        }
        reserve(&mut c.rbuf);
        tokio::select! {
            biased;
            r = io.read_buf(&mut c.rbuf) => match r {
                Ok(0) | Err(_) => return HeadRead::Closed,
                Ok(_) => {}
            },
            _ = &mut c.timer => return HeadRead::Error(GatewayError::RequestTimeout),
        }
    }
}

/// A new random request id: 32 lower-case hex digits.
pub fn new_request_id() -> Bytes {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let (a, b) = (rand_u64(), rand_u64());
    let mut v = Vec::with_capacity(32);
    for x in [a, b] {
        for i in (0..16).rev() {
            v.push(HEX[((x >> (i * 4)) & 0xf) as usize]);
        }
    }
    Bytes::from(v)
}

/// Appends the decimal form of `n` without allocating.
pub(crate) fn push_u64(out: &mut Vec<u8>, mut n: u64) {
    let mut tmp = [0u8; 20];
    let mut i = tmp.len();
    loop {
        i -= 1;
        tmp[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&tmp[i..]);
}

fn valid_request_id(v: &[u8]) -> bool {
    !v.is_empty() && v.len() <= 128 && v.iter().all(|&b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
}

/// The client address after trusted proxies: walk `X-Forwarded-For` right to left while the hop is
/// trusted; the first untrusted address is the client.
pub fn client_ip(peer: IpAddr, headers: &Headers, trusted: &[gatehouse_config::Cidr]) -> IpAddr {
    let is_trusted = |ip: IpAddr| trusted.iter().any(|c| c.contains(ip));
    if !is_trusted(peer) {
        return peer;
    }
    let mut hops: Vec<IpAddr> = Vec::new();
    for v in headers.get_all("x-forwarded-for") {
        for part in v.split(|&b| b == b',') {
            match std::str::from_utf8(trim(part)).ok().and_then(|s| s.parse::<IpAddr>().ok()) {
                Some(ip) => hops.push(ip),
                None => return peer,
            }
        }
    }
    let mut ip = peer;
    for hop in hops.into_iter().rev() {
        ip = hop;
        if !is_trusted(hop) {
            break;
        }
    }
    ip
}

/// The method a CORS preflight asks about: `OPTIONS` with `Origin` and a token-valued
/// `Access-Control-Request-Method`.
fn preflight_method<'h>(method: &[u8], headers: &'h Headers) -> Option<&'h [u8]> {
    if method != b"OPTIONS" || !headers.contains("origin") {
        return None;
    }
    let m = trim(headers.get("access-control-request-method")?);
    let token = !m.is_empty() && m.iter().all(|&b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    token.then_some(m)
}

/// Lower-cased host without port, borrowed when already lower-case.
fn host_key(authority: &[u8]) -> std::borrow::Cow<'_, str> {
    let a = std::str::from_utf8(authority).unwrap_or("");
    let host =
        if a.starts_with('[') { a.find(']').map_or(a, |e| &a[..=e]) } else { a.rsplit_once(':').map_or(a, |(h, _)| h) };
    if host.bytes().any(|b| b.is_ascii_uppercase()) {
        std::borrow::Cow::Owned(host.to_ascii_lowercase())
    } else {
        std::borrow::Cow::Borrowed(host)
    }
}

/// Sends a response the gateway made itself. For a gRPC request it becomes a trailers-only
/// gRPC answer (`grpc::local_response`); the log keeps the HTTP status and error code.
async fn write_local<S: AsyncWrite + Unpin>(
    io: &mut Client<'_, S>,
    c: &mut Conn,
    resp: &LocalResponse,
    ctx: &RequestCtx,
    head_only: bool,
) -> bool {
    let converted;
    let resp = match ctx.grpc {
        Some(kind) if resp.status >= 300 => {
            converted = crate::grpc::local_response(resp, kind, ctx.error_kind);
            &converted
        }
        _ => resp,
    };
    match io {
        Client::H1(io) => {
            c.wbuf.clear();
            let name = std::str::from_utf8(&ctx.request_id_header).unwrap_or("x-request-id");
            resp.write_to(&mut c.wbuf, &[(name, &ctx.request_id)], head_only);
            io.write_all(&c.wbuf).await.is_ok()
        }
        Client::H2(s) => s.send_local(resp, ctx, head_only),
    }
}

/// Sets the request's byte counts from the connection's totals, just before the log phase.
fn settle_bytes<S>(io: &Client<'_, S>, c: &Conn, ctx: &mut RequestCtx) {
    match io {
        Client::H1(io) => {
            ctx.bytes_in = (io.read - c.rbuf.len() as u64).saturating_sub(c.mark.0);
            ctx.bytes_out = io.written.saturating_sub(c.mark.1);
        }
        Client::H2(s) => {
            ctx.bytes_in = s.bytes_in;
            ctx.bytes_out = s.bytes_out;
        }
    }
}

/// Runs one request to completion. Returns whether the connection may serve another.
pub(crate) async fn handle_request<S>(
    io: &mut Client<'_, S>,
    c: &mut Conn,
    mut head: RequestHead,
    snap: &Snapshot,
    l: &ListenerRt,
) -> bool
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let rid_name = std::str::from_utf8(&snap.request_id_header).unwrap_or("x-request-id");
    let request_id = match head.headers.get(rid_name) {
        Some(v) if snap.trust_request_id && valid_request_id(v) => head.headers.slice_of(v),
        _ => new_request_id(),
    };
    let mut ctx = RequestCtx {
        request_id,
        request_id_header: snap.request_id_header.clone(),
        client_ip: client_ip(c.peer.ip(), &head.headers, &l.trusted_proxies),
        route: None,
        params: Vec::new(),
        error_kind: None,
        upstream_status: None,
        status: 0,
        rate: None,
        permits: Vec::new(),
        local_headers: Vec::new(),
        target: None,
        attempts: 0,
        upstream_us: None,
        started: Instant::now(),
        bytes_in: 0,
        bytes_out: 0,
        log: None,
        span: None,
        identity: None,
        forward_query: None,
        cors: None,
        client_cert_subject: c.client_subject.clone(),
        grpc: head.headers.get("content-type").and_then(crate::grpc::classify),
        grpc_status: None,
    };
    if let Some(t) = &snap.tracer {
        // The SERVER span starts with the request; the caller's trace context (if valid) is its
        // parent. With propagation on, the client's headers are replaced per upstream attempt.
        let parents: Vec<&[u8]> = head.headers.get_all("traceparent").collect();
        let states: Vec<&[u8]> = head.headers.get_all("tracestate").collect();
        let incoming = t.extract(&parents, &states);
        ctx.span = Some(t.start_server(incoming));
        if t.propagates() {
            head.headers.remove("traceparent");
            head.headers.remove("tracestate");
        }
    }
    if snap.access_log.is_some() {
        let host = head.authority.as_deref().map(|a| String::from_utf8_lossy(a).into_owned()).unwrap_or_default();
        let protocol = match io {
            Client::H2(_) => "HTTP/2",
            Client::H1(_) if head.minor == 0 => "HTTP/1.0",
            Client::H1(_) => "HTTP/1.1",
        };
        ctx.log = Some(crate::pipeline::LogFields { host, protocol, query: None });
    }
    let is_head = &head.method[..] == b"HEAD";
    let body_pending = head.body != BodyKind::Empty;
    let keep_alive = head.keep_alive;
    let method = head.method.clone();
    // Set by `forward` once the client's body was read completely (keep-alive stays possible).
    let mut body_done = !body_pending;

    // Normalise the target; the fast path borrows, the slow path allocates once.
    let target = head.target.clone();
    let origin: &[u8] = if target.first() == Some(&b'/') {
        &target
    } else if target.as_ref() == b"*" {
        b"*"
    } else {
        // absolute-form: keep path and query
        let after_scheme = target.iter().position(|&b| b == b':').map_or(0, |p| p + 3);
        match target[after_scheme.min(target.len())..].iter().position(|&b| b == b'/' || b == b'?') {
            Some(p) if target[after_scheme + p] == b'/' => &target[after_scheme + p..],
            _ => b"/",
        }
    };
    let (path_raw, query_raw) = match origin.iter().position(|&b| b == b'?') {
        Some(q) => (&origin[..q], Some(&origin[q + 1..])),
        None => (origin, None),
    };
    let normal;
    let (path, query): (&str, Option<&str>) =
        if is_normal_path(path_raw) && query_raw.is_none_or(|q| q.iter().all(|&b| b.is_ascii_graphic() && b != b'#')) {
            (std::str::from_utf8(path_raw).unwrap_or("/"), query_raw.map(|q| std::str::from_utf8(q).unwrap_or("")))
        } else {
            match normalize_target(origin) {
                Ok(t) => {
                    normal = t;
                    (normal.path.as_str(), normal.query.as_deref())
                }
                Err(e) => {
                    let err = GatewayError::BadRequest(e.0.to_string());
                    return finish_error(io, c, snap, &mut ctx, err, is_head, &method, "", true, keep_alive).await;
                }
            }
        };

    let authority = head.authority.clone();
    let host = authority.as_deref().map(host_key).unwrap_or_default();
    if let Some((status, port)) = l.redirect_https {
        return redirect_https(
            io,
            c,
            snap,
            &mut ctx,
            (status, port),
            &host,
            path,
            query,
            &method,
            body_pending,
            keep_alive,
        )
        .await;
    }
    if let Some(span) = ctx.span.as_mut().filter(|s| s.is_sampled()) {
        let (client, peer) = (ctx.client_ip.to_string(), c.peer.ip().to_string());
        let m = std::str::from_utf8(&method).unwrap_or("_OTHER");
        span.set_request(m, path, Some(&host), Some(&client), Some(&peer));
    }
    if let Some(f) = ctx.log.as_mut() {
        if snap.config.access_log.include_query {
            f.query = query.map(str::to_string);
        }
    }
    // The listener's address filter runs before routing: a refused client learns nothing about
    // the routes.
    if l.ip_filter.as_ref().is_some_and(|f| !f.admits(ctx.client_ip)) {
        c.shared.metrics.ip_denied.count_listener();
        let err = GatewayError::IpDenied;
        // Closed after the 403: a refused client gets no connection to keep sending on.
        return finish_error(io, c, snap, &mut ctx, err, is_head, &method, path, body_pending, false).await;
    }
    // A CORS preflight is routed by the method it asks about (`Access-Control-Request-Method`),
    // so it reaches the `cors` policy of the route the actual request would take even when that
    // route's methods exclude OPTIONS. If that route has no `cors` policy, the preflight is
    // routed as the plain OPTIONS request it is.
    let asked = preflight_method(&head.method, &head.headers);
    let view = RequestView { host: &host, path, method: asked.unwrap_or(&head.method), headers: &head.headers, query };
    let mut lookup = snap.router.lookup(&view);
    if asked.is_some() && !matches!(&lookup, Lookup::Found { route, .. } if snap.routes[*route].stack.cors.is_some()) {
        lookup = snap.router.lookup(&RequestView { method: &head.method, ..view });
    }
    let (route_idx, params) = match lookup {
        Lookup::Found { route, params } => (route, params),
        Lookup::NotFound => {
            return finish_error(
                io,
                c,
                snap,
                &mut ctx,
                GatewayError::RouteNotFound,
                is_head,
                &method,
                path,
                body_pending,
                keep_alive,
            )
            .await
        }
        Lookup::MethodNotAllowed { allow } => {
            let err = GatewayError::MethodNotAllowed { allow: allow.join(", ") };
            return finish_error(io, c, snap, &mut ctx, err, is_head, &method, path, body_pending, keep_alive).await;
        }
    };
    let route = &snap.routes[route_idx];
    ctx.route = Some(route_idx);
    if let Some(span) = ctx.span.as_mut() {
        span.set_route(&route.http_route);
    }
    ctx.params = params;

    let limit = route.max_body.unwrap_or(l.max_body);
    if let BodyKind::Length(n) = head.body {
        if n > limit {
            let err = GatewayError::BodyTooLarge { limit };
            return finish_error(io, c, snap, &mut ctx, err, is_head, &method, path, true, keep_alive).await;
        }
    }

    // Sanitise in one pass: hop-by-hop (and what `Connection` names), expectations, the client's
    // Host and request id (we send our own), and forwarding headers from untrusted peers.
    let zero_length = head.body == BodyKind::Empty && head.headers.contains("content-length");
    let peer_trusted = c.peer_trusted(&l.trusted_proxies);
    let fwd_prior = if peer_trusted { prior_forwarding(&head.headers) } else { (Vec::new(), Vec::new()) };
    let upgrade = upgrade_request(&head, route);
    sanitize_request(&mut head.headers, peer_trusted);
    if let Some(u) = &upgrade {
        // `Connection`/`Upgrade` are hop-by-hop: this hop asks the upstream for the same switch.
        head.headers.append(Bytes::from_static(b"connection"), Bytes::from_static(b"upgrade"));
        head.headers.append(Bytes::from_static(b"upgrade"), u.clone());
    }
    add_forwarding(&mut head, c, peer_trusted, fwd_prior, l.forwarded_header);
    if let Some(s) = &c.client_subject {
        head.headers.append(Bytes::from_static(b"x-client-cert-subject"), s.clone());
    }
    if zero_length {
        // An explicit empty body stays explicit (origins may answer 411 to a bodiless POST).
        head.headers.append(Bytes::from_static(b"content-length"), Bytes::from_static(b"0"));
    }
    // The client's copy goes (ours replaces it); `x-request-id` always went with the sanitising.
    if &snap.request_id_header[..] != b"x-request-id" {
        head.headers.remove(rid_name);
    }
    head.headers.append(ctx.request_id_header.clone(), ctx.request_id.clone());

    let info = crate::pipeline::RequestInfo { method: &method, path, query };
    let flow = route.stack.on_request(&mut ctx, &mut head.headers, &info).await;
    // A policy that removed credential parameters changes the query that is forwarded and logged.
    let forward_query = ctx.forward_query.take();
    let query = match &forward_query {
        Some(q) => Some(q.as_str()).filter(|q| !q.is_empty()),
        None => query,
    };
    if forward_query.is_some() {
        if let Some(f) = ctx.log.as_mut().filter(|f| f.query.is_some()) {
            f.query = query.map(str::to_string);
        }
    }
    if let Flow::Respond(resp) = flow {
        if ctx.error_kind == Some("ip_denied") {
            c.shared.metrics.ip_denied.count_route();
        }
        ctx.status = resp.status;
        // An upgrade request that is answered here did not switch: close (see `forward`).
        let keep = !resp.close && !body_pending && head.keep_alive && upgrade.is_none();
        let mut resp = resp;
        resp.close = !keep;
        let ok = write_local(io, c, &resp, &ctx, is_head).await;
        settle_bytes(io, c, &mut ctx);
        on_log(&mut ctx, snap, &method, path);
        return ok && keep;
    }

    let out_path = rewrite_path(route, path, &ctx.params);
    let out = crate::forward::Outgoing {
        head: &mut head,
        route,
        path: &out_path,
        query,
        listener: l,
        limit,
        upgrade: upgrade.as_ref(),
    };
    let forwarded = crate::forward::forward(io, c, out, &mut ctx, &mut body_done).await;
    match forwarded {
        Ok(keep) => {
            settle_bytes(io, c, &mut ctx);
            on_log(&mut ctx, snap, &method, path);
            keep
        }
        Err(Fail::Before(err)) => {
            let mut rate = Vec::new();
            route.stack.rate_headers(&ctx, |n, v| rate.push((n, v)));
            // A gateway error (502, 504, ...) is readable by the page only with the CORS headers.
            if ctx.cors.is_some() {
                route.stack.cors_headers(&ctx, |n, v| rate.push((n, v)));
            }
            ctx.local_headers = rate;
            let pending = !body_done;
            // A failed upgrade closes the client connection like a refused one: bytes the client
            // sent for the new protocol must never be read as HTTP.
            let keep_alive = keep_alive && upgrade.is_none();
            finish_error(io, c, snap, &mut ctx, err, is_head, &method, path, pending, keep_alive).await
        }
        Err(Fail::After) => {
            ctx.error_kind.get_or_insert("response_aborted");
            settle_bytes(io, c, &mut ctx);
            on_log(&mut ctx, snap, &method, path);
            false
        }
    }
}

/// The answer of a `redirect_https` listener: the same host and path on `https://`. Without a
/// Host there is nothing to redirect to (400).
#[allow(clippy::too_many_arguments)]
async fn redirect_https<S: AsyncWrite + Unpin>(
    io: &mut Client<'_, S>,
    c: &mut Conn,
    snap: &Snapshot,
    ctx: &mut RequestCtx,
    (status, port): (u16, Option<u16>),
    host: &str,
    path: &str,
    query: Option<&str>,
    method: &[u8],
    body_pending: bool,
    keep_alive: bool,
) -> bool {
    let is_head = method == b"HEAD";
    if host.is_empty() {
        let err = GatewayError::BadRequest("no Host to redirect to".into());
        return finish_error(io, c, snap, ctx, err, is_head, method, path, body_pending, keep_alive).await;
    }
    let mut location = format!("https://{host}");
    if let Some(p) = port.filter(|&p| p != 443) {
        location.push_str(&format!(":{p}"));
    }
    location.push_str(path);
    if let Some(q) = query {
        location.push('?');
        location.push_str(q);
    }
    let mut resp = LocalResponse::new(status, "text/plain; charset=utf-8", Bytes::new());
    resp.headers.push((Bytes::from_static(b"location"), Bytes::from(location)));
    // An unread request body would be taken for the next request: close instead.
    let keep = keep_alive && !body_pending && !c.stopping();
    resp.close = !keep;
    ctx.status = status;
    ctx.error_kind = Some("redirect_https");
    let ok = write_local(io, c, &resp, ctx, is_head).await;
    settle_bytes(io, c, ctx);
    on_log(ctx, snap, method, path);
    ok && keep
}

#[allow(clippy::too_many_arguments)]
async fn finish_error<S: AsyncWrite + Unpin>(
    io: &mut Client<'_, S>,
    c: &mut Conn,
    snap: &Snapshot,
    ctx: &mut RequestCtx,
    err: GatewayError,
    is_head: bool,
    method: &[u8],
    path: &str,
    body_pending: bool,
    client_keep_alive: bool,
) -> bool {
    let mut resp = err.to_response(ctx.request_id_str());
    resp.headers.append(&mut ctx.local_headers);
    // An unread request body would be parsed as the next request: close instead. And honour a
    // client that asked to close (or an HTTP/1.0 client without keep-alive).
    if body_pending || !client_keep_alive || c.stopping() {
        resp.close = true;
    }
    ctx.status = resp.status;
    ctx.error_kind = Some(err.code());
    let ok = write_local(io, c, &resp, ctx, is_head).await;
    settle_bytes(io, c, ctx);
    on_log(ctx, snap, method, path);
    ok && !resp.close
}

/// The path sent upstream for `path` on `route` (its `rewrite` applied to the normalised path).
pub fn rewrite_path(route: &Route, path: &str, params: &[(String, String)]) -> String {
    match &route.rewrite {
        Rewrite::None => path.to_string(),
        Rewrite::StripPrefix(p) => {
            let rest = &path[p.len().min(path.len())..];
            if rest.starts_with('/') {
                rest.to_string()
            } else {
                format!("/{rest}")
            }
        }
        Rewrite::Template(parts) => {
            let mut out = String::with_capacity(path.len());
            for part in parts {
                match part {
                    TplPart::Lit(s) => out.push_str(s),
                    TplPart::Param(name) => {
                        if let Some((_, v)) = params.iter().find(|(k, _)| k == name) {
                            out.push_str(v);
                        }
                    }
                }
            }
            out
        }
    }
}

/// The `Upgrade` value to forward when `head` asks to switch protocols and `route` allows every
/// protocol it names. Only HTTP/1.1, bodiless requests (RFC 9110 §7.8 lets a server ignore an
/// upgrade; with a body, the switch would have to wait for the whole body), and WebSocket only
/// with GET (RFC 6455 §4.1). Otherwise `None`: the request goes on as a plain one, with
/// `Upgrade` stripped as the hop-by-hop field it is.
fn upgrade_request(head: &RequestHead, route: &Route) -> Option<Bytes> {
    upgrade_request_with(head, &route.upgrades)
}

fn upgrade_request_with(head: &RequestHead, upgrades: &[String]) -> Option<Bytes> {
    if upgrades.is_empty() || head.minor != 1 || head.body != BodyKind::Empty {
        return None;
    }
    if !head.headers.get_all("connection").any(|v| http1::headers::has_token(v, "upgrade")) {
        return None;
    }
    let mut values = head.headers.get_all("upgrade");
    let value = values.next()?;
    if values.next().is_some() {
        return None;
    }
    let mut any = false;
    for proto in value.split(|&b| b == b',').map(trim).filter(|p| !p.is_empty()) {
        let name = proto.split(|&b| b == b'/').next().unwrap_or(proto);
        if !upgrades.iter().any(|u| u.as_bytes().eq_ignore_ascii_case(name)) {
            return None;
        }
        if name.eq_ignore_ascii_case(b"websocket") && &head.method[..] != b"GET" {
            return None;
        }
        any = true;
    }
    any.then(|| head.headers.slice_of(value))
}

/// Is this request header dropped before forwarding? One length-bucketed match per header.
fn drop_on_forward(n: &[u8], peer_trusted: bool) -> bool {
    if http1::is_hop_by_hop(n) {
        return true;
    }
    let eq = |s: &str| n.eq_ignore_ascii_case(s.as_bytes());
    // Identity headers are the gateway's to set (after `auth`); a client's copy is a forgery.
    if n.len() > 11 && n[..11].eq_ignore_ascii_case(b"x-consumer-") {
        return true;
    }
    match n.len() {
        4 => eq("host"),
        6 => eq("expect"),
        9 => !peer_trusted && (eq("forwarded") || eq("x-real-ip")),
        12 => eq("x-request-id"),
        15 => !peer_trusted && eq("x-forwarded-for"),
        16 => !peer_trusted && (eq("x-forwarded-host") || eq("x-forwarded-port")),
        17 => !peer_trusted && eq("x-forwarded-proto"),
        // Set only from a verified client certificate; a client's own copy is a forgery.
        21 => eq("x-client-cert-subject"),
        _ => false,
    }
}

fn sanitize_request(h: &mut Headers, peer_trusted: bool) {
    let named: Vec<Vec<u8>> = h
        .get_all("connection")
        .flat_map(|v| v.split(|&b| b == b','))
        .map(|t| trim(t).to_ascii_lowercase())
        .filter(|t| !t.is_empty())
        .collect();
    h.remove_where(|n| drop_on_forward(n, peer_trusted) || named.iter().any(|x| n.eq_ignore_ascii_case(x)));
}

/// `X-Forwarded-For` and `Forwarded` values sent by a trusted proxy, to extend.
fn prior_forwarding(h: &Headers) -> (Vec<u8>, Vec<u8>) {
    let join = |name| h.get_all(name).collect::<Vec<_>>().join(&b", "[..]);
    (join("x-forwarded-for"), join("forwarded"))
}

fn add_forwarding(head: &mut RequestHead, c: &Conn, peer_trusted: bool, prior: (Vec<u8>, Vec<u8>), rfc7239: bool) {
    let h = &mut head.headers;
    let orig_host = head.authority.clone().unwrap_or_default();
    let (prior_xff, prior_fwd) = prior;
    if peer_trusted {
        let xff = if prior_xff.is_empty() {
            c.peer_ip.clone()
        } else {
            [&prior_xff[..], b", ", &c.peer_ip[..]].concat().into()
        };
        h.set(Bytes::from_static(b"x-forwarded-for"), xff);
        if !h.contains("x-forwarded-proto") {
            h.append(Bytes::from_static(b"x-forwarded-proto"), c.proto());
        }
        if !h.contains("x-forwarded-host") && !orig_host.is_empty() {
            h.append(Bytes::from_static(b"x-forwarded-host"), orig_host.clone());
        }
    } else {
        h.append(Bytes::from_static(b"x-forwarded-for"), c.peer_ip.clone());
        h.append(Bytes::from_static(b"x-forwarded-proto"), c.proto());
        if !orig_host.is_empty() {
            h.append(Bytes::from_static(b"x-forwarded-host"), orig_host.clone());
        }
    }
    if !rfc7239 {
        // Without the option, a trusted proxy's `Forwarded` passes through untouched and an
        // untrusted one was removed by `sanitize_request`.
        return;
    }
    // RFC 7239: `for=` (IPv6 quoted and bracketed), `proto=`, `host=` quoted.
    let mut fwd = Vec::with_capacity(prior_fwd.len() + c.forwarded_for.len() + orig_host.len() + 12);
    if !prior_fwd.is_empty() {
        fwd.extend_from_slice(&prior_fwd);
        fwd.extend_from_slice(b", ");
    }
    fwd.extend_from_slice(&c.forwarded_for);
    if !orig_host.is_empty() {
        fwd.extend_from_slice(b";host=\"");
        fwd.extend_from_slice(&orig_host);
        fwd.push(b'"');
    }
    if peer_trusted {
        h.set(Bytes::from_static(b"forwarded"), Bytes::from(fwd));
    } else {
        h.append(Bytes::from_static(b"forwarded"), Bytes::from(fwd));
    }
}

/// The response phase on an upstream's answer, whatever the protocols: the route's policies,
/// then our request id unless the upstream sent its own.
pub(crate) fn response_phase(route: &Route, ctx: &mut RequestCtx, status: &mut u16, headers: &mut Headers) {
    route.stack.on_response(ctx, status, headers);
    if !headers.contains(std::str::from_utf8(&ctx.request_id_header).unwrap_or("x-request-id")) {
        headers.append(ctx.request_id_header.clone(), ctx.request_id.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts() {
        assert_eq!(host_key(b"Api.Example.com:8080"), "api.example.com");
        assert_eq!(host_key(b"[::1]:80"), "[::1]");
        assert_eq!(host_key(b"x"), "x");
    }

    fn head(raw: &[u8]) -> RequestHead {
        let mut b = BytesMut::from(raw);
        let limits = http1::HeadLimits { max_head: 8192, max_headers: 32, max_uri: 1024 };
        parse_request(&mut b, limits).ok().flatten().expect("valid head")
    }

    #[test]
    fn upgrade_rules() {
        let allowed = |raw: &[u8], upgrades: &[&str]| -> Option<Bytes> {
            let h = head(raw);
            let names: Vec<String> = upgrades.iter().map(|u| u.to_string()).collect();
            upgrade_request_with(&h, &names)
        };
        let ws = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n\r\n";
        assert_eq!(allowed(ws, &["websocket"]).as_deref(), Some(&b"websocket"[..]));
        assert_eq!(allowed(ws, &[]), None);
        assert_eq!(allowed(ws, &["foo"]), None);
        // Not asked in `Connection`, HTTP/1.0, POST websocket, a body, two fields, one listed
        // protocol not allowed: all plain requests.
        for raw in [
            &b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\r\n"[..],
            b"GET / HTTP/1.0\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: websocket\r\nContent-Length: 1\r\n\r\nx",
            b"GET / HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: websocket\r\nUpgrade: websocket\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: websocket, h2c\r\n\r\n",
        ] {
            assert_eq!(allowed(raw, &["websocket"]), None, "{}", String::from_utf8_lossy(raw));
        }
    }

    #[test]
    fn preflight_methods() {
        let h =
            head(b"OPTIONS / HTTP/1.1\r\nHost: x\r\nOrigin: https://a\r\nAccess-Control-Request-Method: PUT\r\n\r\n");
        assert_eq!(preflight_method(&h.method, &h.headers), Some(&b"PUT"[..]));
        let h = head(b"OPTIONS / HTTP/1.1\r\nHost: x\r\nAccess-Control-Request-Method: PUT\r\n\r\n");
        assert_eq!(preflight_method(&h.method, &h.headers), None);
        let h = head(b"GET / HTTP/1.1\r\nHost: x\r\nOrigin: https://a\r\nAccess-Control-Request-Method: PUT\r\n\r\n");
        assert_eq!(preflight_method(&h.method, &h.headers), None);
        let h =
            head(b"OPTIONS / HTTP/1.1\r\nHost: x\r\nOrigin: https://a\r\nAccess-Control-Request-Method: P T\r\n\r\n");
        assert_eq!(preflight_method(&h.method, &h.headers), None);
    }

    #[test]
    fn request_ids() {
        assert!(valid_request_id(b"abc-123"));
        assert!(!valid_request_id(b"a b"));
        assert!(!valid_request_id(&[b'a'; 200]));
        assert_eq!(new_request_id().len(), 32);
        let mut v = Vec::new();
        push_u64(&mut v, 0);
        push_u64(&mut v, 1234567);
        assert_eq!(v, b"01234567");
    }
}
