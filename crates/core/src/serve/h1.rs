//! HTTP/1.x client connections: one task per connection reads each request head (strictly
//! parsed, under the idle and header timeouts), hands it to `request::handle_request`, and goes
//! on with the next (pipelined) request until the client, the framing or a drain says close. A
//! plain connection whose first bytes are the HTTP/2 preface goes to `h2.rs` instead.
//!
//! Invariants:
//! - A head is complete within `timeouts.header_read` (the whole head, not per read: slowloris
//!   gets 408 and a close); an idle keep-alive connection closes after `idle_timeout` or at once
//!   when a drain starts.
//! - The snapshot is loaded once the head is complete: a reload applies to the very next request,
//!   even on a connection that was idle across it.
//! - A head that cannot be parsed gets its error answer and a close; nothing was forwarded.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

use crate::counted::Counted;
use crate::downstream::{reserve, Client, Conn, READ_FIRST};
use crate::error::GatewayError;
use crate::http1::{self, parse_request, RequestHead};
use crate::request::handle_request;
use crate::request::sanitize::new_request_id;
use crate::snapshot::ListenerRt;
use crate::state::{CountGuard, Shared};

#[allow(clippy::large_enum_variant)]
enum HeadRead {
    // Not boxed: the head moves once into `handle_request`; an allocation per request costs more.
    Head(RequestHead),
    Closed,
    Error(GatewayError),
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
    c.timer.arm(Instant::now() + idle);
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
            _ = c.timer.fired() => return Sniffed::Closed,
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
    // Sized to need: a first read buffer only; the write buffers grow on first use.
    c.rbuf.reserve(READ_FIRST);
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
                    let io = crate::serve::h2::Prefixed::new(pre, io);
                    return crate::serve::h2::serve(io, peer, listener, shared, None).await;
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
        c.trim_idle();
        c.timer.arm(Instant::now() + l.idle_timeout);
        reserve(&mut c.rbuf);
        tokio::select! {
            biased;
            r = io.read_buf(&mut c.rbuf) => match r {
                Ok(0) | Err(_) => return HeadRead::Closed,
                Ok(_) => {}
            },
            _ = c.timer.fired() => return HeadRead::Closed,
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
            c.timer.arm(Instant::now() + l.header_timeout);
            armed = true;
        }
        reserve(&mut c.rbuf);
        tokio::select! {
            biased;
            r = io.read_buf(&mut c.rbuf) => match r {
                Ok(0) | Err(_) => return HeadRead::Closed,
                Ok(_) => {}
            },
            _ = c.timer.fired() => return HeadRead::Error(GatewayError::RequestTimeout),
        }
    }
}
