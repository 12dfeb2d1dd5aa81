//! The client side of a request: the `Client` it answers through whatever its protocol (an
//! HTTP/1.x connection, an HTTP/2 stream (`stream.rs`), or a terminal's in-memory capture), the
//! per-connection state (`Conn`), and the one exit for answers the gateway makes itself
//! (`respond.rs`). The connection loops that make these are in `serve/`.
//!
//! Invariants:
//! - Per-connection state (`Conn`) is made once per connection: buffers, the peer's texts, a
//!   reusable timer, the drain notification. A request allocates none of it.
//! - A request knows whether anything reached its client yet (`Fail::Before` vs `Fail::After`):
//!   before, it still gets a clean error answer; after, the connection (or stream) is cut, so a
//!   broken answer never looks complete.

pub(crate) mod respond;
pub(crate) mod stream;

use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};

use crate::counted::Counted;
use crate::ctx::RequestCtx;
use crate::error::GatewayError;
use crate::state::Shared;

pub(crate) const READ_CHUNK: usize = 16 * 1024;
/// A connection's first read buffer: a request head fits; bodies grow it by `READ_CHUNK`. Idle
/// and half-open connections are most of a burst, and each costs this much, not `READ_CHUNK`.
pub(crate) const READ_FIRST: usize = 4 * 1024;
/// Buffers larger than this (grown by a body or a large head) are released between requests.
const IDLE_KEEP: usize = 2 * READ_FIRST;
pub(crate) const FLUSH_AT: usize = 64 * 1024;

/// Per-connection buffers and identity (opaque outside the crate: a terminal passes its
/// request's `Conn` to `terminal::call`).
pub struct Conn {
    pub(crate) rbuf: BytesMut,
    pub(crate) wbuf: Vec<u8>,
    /// The upstream request head being built (reused across requests).
    pub(crate) ubuf: Vec<u8>,
    pub(crate) peer: SocketAddr,
    /// The peer's IP as text, and `for=...;proto=http`, computed once per connection.
    pub(crate) peer_ip: Bytes,
    pub(crate) forwarded_for: Bytes,
    /// Whether the peer is a trusted proxy, cached per listener config generation.
    pub(crate) trusted_cache: Option<(usize, bool)>,
    pub(crate) shared: Arc<Shared>,
    /// Registered with `Shared::stop` once per connection (not per request): no lock per request.
    pub(crate) stop: Pin<Box<tokio::sync::futures::OwnedNotified>>,
    pub(crate) timer: crate::timer::LazyTimer,
    /// Client bytes consumed and written before the current request (see `counted`).
    pub(crate) mark: (u64, u64),
    /// The connection is TLS: `https` in X-Forwarded-Proto/Forwarded, HSTS is sent.
    pub(crate) https: bool,
    /// The verified client certificate's subject (mTLS).
    pub(crate) client_subject: Option<Bytes>,
}

impl Conn {
    pub(crate) fn proto(&self) -> Bytes {
        Bytes::from_static(if self.https { b"https" } else { b"http" })
    }

    pub(crate) fn stopping(&self) -> bool {
        self.shared.stopping.load(Ordering::Relaxed)
    }

    /// Whether the peer is in `trusted` (cached by the list's address: stable for a snapshot).
    pub(crate) fn peer_trusted(&mut self, trusted: &[gatehouse_config::Cidr]) -> bool {
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

/// Why forwarding stopped early.
pub(crate) enum Fail {
    /// Nothing was written to the client yet: answer with this error.
    Before(GatewayError),
    /// The response already started (or the client is gone): close the connection.
    After,
}

/// Where the client of one request is: an HTTP/1.x connection, one HTTP/2 stream, or a route
/// terminal inside the gateway that calls an upstream and takes the answer in memory.
pub(crate) enum Client<'a, S> {
    H1(&'a mut Counted<S>),
    H2(&'a mut stream::Stream),
    Capture(&'a mut Captured),
}

/// The client side of a call a route terminal makes through the forwarder (`terminal::call`):
/// the request body it sends, and the answer as it arrived (after the route's response phase).
#[derive(Debug, Default)]
pub struct Captured {
    /// The complete request body.
    pub request_body: Bytes,
    pub status: u16,
    pub headers: crate::http1::Headers,
    pub body: Vec<u8>,
    pub trailers: Option<crate::http1::Headers>,
    /// The most body bytes taken; a longer answer fails the call.
    pub limit: usize,
}

impl Conn {
    /// Connection state for a call a route terminal makes on behalf of this connection's client
    /// (its own buffers and timer; the same peer, shared state and TLS facts).
    pub(crate) fn for_call(&self) -> Conn {
        let (ip, fwd) = (self.peer_ip.clone(), self.forwarded_for.clone());
        Conn::with_texts(self.peer, self.shared.clone(), self.https, self.client_subject.clone(), ip, fwd)
    }

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
            timer: crate::timer::LazyTimer::new(),
            mark: (0, 0),
            https,
            client_subject,
        }
    }
}

pub(crate) fn reserve(buf: &mut BytesMut) {
    if buf.capacity() - buf.len() < 1024 {
        buf.reserve(if buf.capacity() == 0 { READ_FIRST } else { READ_CHUNK });
    }
}

impl Conn {
    /// Between requests (nothing read ahead): gives back buffers a body or a large head grew,
    /// so an idle keep-alive connection holds at most the small ones.
    pub(crate) fn trim_idle(&mut self) {
        if self.rbuf.is_empty() && self.rbuf.capacity() > IDLE_KEEP {
            self.rbuf = BytesMut::new();
        }
        if self.wbuf.capacity() > IDLE_KEEP {
            self.wbuf = Vec::new();
        }
        if self.ubuf.capacity() > IDLE_KEEP {
            self.ubuf = Vec::new();
        }
    }
}

/// Sets the request's byte counts from the connection's totals, just before the log phase.
pub(crate) fn settle_bytes<S>(io: &Client<'_, S>, c: &Conn, ctx: &mut RequestCtx) {
    match io {
        Client::H1(io) => {
            ctx.bytes_in = (io.read - c.rbuf.len() as u64).saturating_sub(c.mark.0);
            ctx.bytes_out = io.written.saturating_sub(c.mark.1);
        }
        Client::H2(s) => {
            ctx.bytes_in = s.bytes_in;
            ctx.bytes_out = s.bytes_out;
        }
        Client::Capture(k) => {
            ctx.bytes_in = k.request_body.len() as u64;
            ctx.bytes_out = k.body.len() as u64;
        }
    }
}
