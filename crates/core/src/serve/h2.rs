//! HTTP/2 from clients: one task drives the connection (the `h2` crate does framing, HPACK,
//! flow control and the RFC 9113 message checks), each stream runs the same request pipeline as
//! an HTTP/1.1 request (`request::handle_request`) in its own task.
//!
//! Invariants:
//! - What `h2` refuses never reaches the pipeline: connection-specific fields, `te` other than
//!   `trailers`, upper-case names, CR/LF/NUL in values, pseudo-header errors (stream reset with
//!   PROTOCOL_ERROR), and a body that disagrees with its `content-length` (the body read fails
//!   before the end, so a body we forwarded in part is cut off, never completed).
//!   On top of that we refuse, with 400 before routing: values with leading or trailing
//!   whitespace, a `host` that differs from `:authority`, and more fields than
//!   `limits.max_headers` (431), a `:path` over `max_uri_bytes` (414); plain CONNECT gets 405
//!   (no tunnels to arbitrary hosts).
//! - Bounded per connection: `max_concurrent_streams` open streams (more are refused by h2), the
//!   header list (`limits.max_header_bytes`; h2 also derives from it a cap on the CONTINUATION
//!   frames of one header block and closes the connection past it), flow-control windows, and resets: more than
//!   `max_resets` streams reset by the client (or by h2 for errors) within `reset_window` end the
//!   connection with GOAWAY `ENHANCE_YOUR_CALM` (rapid reset, CVE-2023-44487).
//! - Idle: a connection with no stream for the listener's `timeouts.idle` gets GOAWAY and closes
//!   (a header block that never completes opens no stream, so it counts as idle too).
//! - Drain: when the gateway stops, a GOAWAY tells the client to open no new streams; open
//!   streams finish (bounded by the drain timeout, like HTTP/1.1 connections).
//! - Cookies split across fields (RFC 9113 §8.2.3) are joined with `; ` before the pipeline, so
//!   an HTTP/1.1 upstream gets one `cookie` field.
//! - An answer may go out before the request body ended (the gateway answers without waiting);
//!   the unread body is then drained (at most 64 KiB within 1 s) so the client's END_STREAM
//!   closes the stream, and only past that bound is the stream reset.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes};
use h2::server::SendResponse;
use h2::{Reason, RecvStream};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::downstream::stream::{ResetBudget, Stream};
use crate::downstream::{Client, Conn};
use crate::error::GatewayError;
use crate::http1::{BodyKind, Headers, RequestHead};
use crate::request::handle_request;
use crate::state::Shared;
use crate::upstream::mono_ns;

/// Bytes already read from a socket (the sniffed preface) in front of the socket itself.
pub struct Prefixed<S> {
    pre: Bytes,
    io: S,
}

impl<S> Prefixed<S> {
    pub fn new(pre: Bytes, io: S) -> Self {
        Prefixed { pre, io }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.pre.is_empty() {
            let n = this.pre.len().min(buf.remaining());
            buf.put_slice(&this.pre[..n]);
            this.pre.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.io).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

/// Per-connection facts every stream needs.
struct ConnInfo {
    /// Streams running now, and when the last one ended (the connection's idle clock).
    active: AtomicU32,
    last_end_ns: AtomicU64,
    peer: SocketAddr,
    /// `Conn::peer_texts`, made once for all streams.
    peer_texts: (Bytes, Bytes),
    listener: usize,
    shared: Arc<Shared>,
    https: bool,
    client_subject: Option<Bytes>,
    resets: Arc<ResetBudget>,
}

/// Serves one HTTP/2 client connection (after ALPN `h2`, or a sniffed h2c preface).
pub async fn serve<S>(io: S, peer: SocketAddr, listener: usize, shared: Arc<Shared>, tls: Option<crate::tls::ConnTls>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let _conn = crate::state::CountGuard::new(&shared.connections);
    let (settings, limits, header_timeout, idle_timeout) = {
        let snap = shared.snapshot.load();
        let Some(l) = snap.listeners.get(listener) else { return };
        (l.http2.clone().unwrap_or_default(), l.limits, l.header_timeout, l.idle_timeout)
    };
    let mut builder = h2::server::Builder::new();
    builder
        .max_concurrent_streams(settings.max_concurrent_streams)
        .initial_window_size(settings.initial_stream_window.0.min(u32::MAX as u64) as u32)
        .initial_connection_window_size(settings.initial_connection_window.0.min(u32::MAX as u64) as u32)
        .max_header_list_size(limits.max_head.min(u32::MAX as usize) as u32)
        .max_send_buffer_size(256 * 1024)
        .max_local_error_reset_streams(Some(settings.max_resets as usize))
        .enable_connect_protocol();
    let mut conn = match tokio::time::timeout(header_timeout, builder.handshake::<_, Bytes>(io)).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "HTTP/2 handshake failed");
            return;
        }
        Err(_) => {
            tracing::debug!(%peer, "HTTP/2 handshake timed out");
            return;
        }
    };
    let info = Arc::new(ConnInfo {
        active: AtomicU32::new(0),
        last_end_ns: AtomicU64::new(mono_ns()),
        peer,
        peer_texts: Conn::peer_texts(peer, tls.is_some()),
        listener,
        https: tls.is_some(),
        client_subject: tls.and_then(|t| t.client_subject),
        resets: Arc::new(ResetBudget::new(settings.max_resets, settings.reset_window.0)),
        shared: shared.clone(),
    });
    let stop = shared.stop.clone();
    let mut stopping = shared.stopping.load(Ordering::Relaxed);
    if stopping {
        conn.graceful_shutdown();
    }
    let mut calm = false;
    // A connection without a stream for `timeouts.idle` is closed (GOAWAY), like an idle
    // HTTP/1.1 keep-alive connection; a header block that never completes is no stream either.
    let idle = tokio::time::sleep(idle_timeout);
    tokio::pin!(idle);
    let mut idle_closed = false;
    loop {
        if !stopping && shared.stopping.load(Ordering::Relaxed) {
            stopping = true;
            conn.graceful_shutdown();
        }
        tokio::select! {
            biased;
            _ = info.resets.exceeded.notified(), if !calm => {
                tracing::debug!(%peer, "HTTP/2 stream resets over the limit: GOAWAY ENHANCE_YOUR_CALM");
                shared.metrics.h2_calm.fetch_add(1, Ordering::Relaxed);
                conn.abrupt_shutdown(Reason::ENHANCE_YOUR_CALM);
                calm = true;
            }
            _ = stop.notified(), if !stopping => {
                stopping = true;
                conn.graceful_shutdown();
            }
            _ = &mut idle, if !idle_closed => {
                let quiet_ns = mono_ns().saturating_sub(info.last_end_ns.load(Ordering::Relaxed));
                let quiet = Duration::from_nanos(quiet_ns);
                if info.active.load(Ordering::Relaxed) == 0 && quiet >= idle_timeout {
                    idle_closed = true;
                    conn.graceful_shutdown();
                } else {
                    let wait = if info.active.load(Ordering::Relaxed) == 0 { idle_timeout.saturating_sub(quiet) } else { idle_timeout };
                    idle.as_mut().reset(tokio::time::Instant::now() + wait);
                }
            }
            next = conn.accept() => match next {
                Some(Ok((req, respond))) => {
                    if calm {
                        continue;
                    }
                    info.active.fetch_add(1, Ordering::Relaxed);
                    // Boxed: the stream's future is large, and moving it into the task by value
                    // costs a copy of all of it per stream.
                    tokio::spawn(Box::pin(run_stream(req, respond, info.clone())));
                }
                Some(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "HTTP/2 connection error");
                    break;
                }
                None => break,
            },
        }
    }
}

/// Runs one stream through the pipeline.
/// Marks a stream's end on the connection's idle clock.
struct StreamGuard<'a>(&'a ConnInfo);

impl Drop for StreamGuard<'_> {
    fn drop(&mut self) {
        self.0.last_end_ns.store(mono_ns(), Ordering::Relaxed);
        self.0.active.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn run_stream(req: http::Request<RecvStream>, respond: SendResponse<Bytes>, info: Arc<ConnInfo>) {
    let _stream = StreamGuard(&info);
    let shared = &info.shared;
    let _req = crate::state::CountGuard::new(&shared.inflight);
    let snap = shared.snapshot.load_full();
    let Some(l) = snap.listeners.get(info.listener) else { return };
    let (parts, body) = req.into_parts();
    let mut stream =
        Stream { respond, body: None, connect_protocol: None, bytes_in: 0, bytes_out: 0, resets: info.resets.clone() };
    let (ip, fwd) = info.peer_texts.clone();
    let mut c = Conn::with_texts(info.peer, shared.clone(), info.https, info.client_subject.clone(), ip, fwd);
    match to_head(&parts, &body, l) {
        Ok((head, protocol)) => {
            stream.connect_protocol = protocol;
            if !body.is_end_stream() {
                stream.body = Some(body);
            }
            handle_request(&mut Client::<tokio::net::TcpStream>::H2(&mut stream), &mut c, head, &snap, l).await;
            drain_unread(stream.body.take()).await;
        }
        Err(e) => {
            // Refused before routing: answered like an unreadable HTTP/1.1 head.
            shared.metrics.unreadable.fetch_add(1, Ordering::Relaxed);
            let id = crate::request::sanitize::new_request_id();
            let id_str = std::str::from_utf8(&id).unwrap_or("-");
            tracing::debug!(request_id = id_str, peer = %info.peer, error = %e, "HTTP/2 request refused");
            let mut resp = e.to_response(id_str);
            if let Some(kind) = parts.headers.get("content-type").and_then(|v| crate::grpc::classify(v.as_bytes())) {
                resp = crate::grpc::local_response(&resp, kind, Some(e.kind()));
            }
            stream.send_local_with_id(&resp, (&snap.request_id_header, &id), false);
            drain_unread((!body.is_end_stream()).then_some(body)).await;
        }
    }
}

/// Most of an unread request body drained after the answer, and for how long.
const DRAIN_MAX: usize = 64 * 1024;
const DRAIN_TIME: std::time::Duration = std::time::Duration::from_secs(1);

/// After the answer, a request body nobody read (the gateway answered itself, or refused) is
/// read and dropped, up to `DRAIN_MAX` bytes within `DRAIN_TIME`: the stream then closes with
/// the client's own END_STREAM. Dropped unread, h2 resets it (RST_STREAM NO_ERROR, RFC 9113
/// §8.1), which a client still sending (curl: "Stream error in the HTTP/2 framing layer")
/// reports as a failed request although the answer arrived. Past either bound it is reset.
async fn drain_unread(body: Option<RecvStream>) {
    let Some(mut body) = body else { return };
    let _ = tokio::time::timeout(DRAIN_TIME, async {
        let mut total = 0;
        while total < DRAIN_MAX {
            match body.data().await {
                Some(Ok(chunk)) => {
                    total += chunk.len();
                    let _ = body.flow_control().release_capacity(chunk.len());
                }
                _ => return,
            }
        }
    })
    .await;
}

/// The HTTP/2 request as the pipeline's request head. Errors are answered before routing.
fn to_head(
    parts: &http::request::Parts,
    body: &RecvStream,
    l: &crate::snapshot::ListenerRt,
) -> Result<(RequestHead, Option<Bytes>), GatewayError> {
    let mut protocol = None;
    let mut method = Bytes::copy_from_slice(parts.method.as_str().as_bytes());
    if parts.method == http::Method::CONNECT {
        match parts.extensions.get::<h2::ext::Protocol>() {
            // Extended CONNECT (RFC 8441): the pipeline sees the HTTP/1.1 form of the same
            // request (GET + Upgrade), so routes, methods and the `upgrades` list apply as is.
            Some(p) => {
                protocol = Some(Bytes::copy_from_slice(p.as_str().as_bytes()));
                method = Bytes::from_static(b"GET");
            }
            None => {
                return Err(GatewayError::MethodNotAllowed {
                    allow: "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS".into(),
                })
            }
        }
    }
    let target = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    if target.len() > l.limits.max_uri {
        return Err(GatewayError::UriTooLong);
    }
    if parts.headers.len() > l.limits.max_headers {
        return Err(GatewayError::HeaderTooLarge);
    }
    let authority = parts.uri.authority().map(|a| Bytes::copy_from_slice(a.as_str().as_bytes()));
    // The same rules as an HTTP/1.1 Host: no userinfo (RFC 9113 §8.3.1), no comma, no spaces.
    if authority.as_deref().is_some_and(|a| !crate::http1::parse::valid_host(a)) {
        return Err(GatewayError::BadRequest("invalid `:authority`".into()));
    }
    let mut headers = Headers::new();
    let mut cookies: Vec<&[u8]> = Vec::new();
    for (n, v) in &parts.headers {
        let v = v.as_bytes();
        // RFC 9113 §8.2.1: leading or trailing whitespace makes the message malformed.
        if v.first().is_some_and(|b| *b == b' ' || *b == b'\t') || v.last().is_some_and(|b| *b == b' ' || *b == b'\t') {
            return Err(GatewayError::BadRequest(format!("whitespace around the value of `{}`", n.as_str())));
        }
        if n == http::header::COOKIE {
            cookies.push(v);
            continue;
        }
        if n == http::header::HOST {
            // §8.3.1: a Host that differs from :authority is malformed.
            if authority.as_deref().is_some_and(|a| !a.eq_ignore_ascii_case(v)) {
                return Err(GatewayError::BadRequest("`host` differs from `:authority`".into()));
            }
            if authority.is_some() {
                continue;
            }
        }
        headers.append(Bytes::copy_from_slice(n.as_str().as_bytes()), Bytes::copy_from_slice(v));
    }
    if !cookies.is_empty() {
        headers.append(Bytes::from_static(b"cookie"), Bytes::from(cookies.join(&b"; "[..])));
    }
    let authority = authority.or_else(|| headers.get("host").map(Bytes::copy_from_slice));
    if authority.as_deref().is_some_and(|a| !crate::http1::parse::valid_host(a)) || headers.get_all("host").count() > 1
    {
        return Err(GatewayError::BadRequest("invalid `host`".into()));
    }
    if let Some(p) = &protocol {
        headers.append(Bytes::from_static(b"connection"), Bytes::from_static(b"upgrade"));
        headers.append(Bytes::from_static(b"upgrade"), p.clone());
        if p.eq_ignore_ascii_case(b"websocket") && !headers.contains("sec-websocket-key") {
            // RFC 8441 has no key; an HTTP/1.1 WebSocket server needs one (RFC 6455 §4.1).
            let key = crate::upstream::balancer::rand_u64()
                .to_le_bytes()
                .into_iter()
                .chain(crate::upstream::balancer::rand_u64().to_le_bytes())
                .collect::<Vec<u8>>();
            use base64::Engine;
            headers.append(
                Bytes::from_static(b"sec-websocket-key"),
                Bytes::from(base64::engine::general_purpose::STANDARD.encode(key)),
            );
        }
    }
    let length = parts
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| crate::http1::parse::parse_content_length(v.as_bytes()));
    // An extended CONNECT's DATA frames are the tunnel, not a request body.
    let body_kind = if body.is_end_stream() || protocol.is_some() {
        BodyKind::Empty
    } else {
        match length {
            Some(n) => BodyKind::Length(n),
            // Unknown length: streamed, like a chunked HTTP/1.1 body.
            None => BodyKind::Chunked,
        }
    };
    Ok((
        RequestHead {
            method,
            target: Bytes::copy_from_slice(target.as_bytes()),
            minor: 1,
            headers,
            body: body_kind,
            keep_alive: true,
            expect_continue: false,
            authority,
        },
        protocol,
    ))
}
