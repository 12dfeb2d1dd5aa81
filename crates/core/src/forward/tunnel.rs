//! Upgraded connections (WebSocket and other `Upgrade` protocols), for every protocol pair: an
//! HTTP/1.1 upgrade relayed as such, an HTTP/2 client's extended CONNECT (RFC 8441) turned into
//! an HTTP/1.1 upgrade, or sent end to end to an HTTP/2 upstream; and the byte tunnel they all
//! end in.
//!
//! Entered only after the upstream answered `101 Switching Protocols` with an `Upgrade` the
//! client asked for (see `forward`); from then on both connections carry opaque bytes and
//! the gateway copies them both ways until one side is done.
//!
//! Invariants:
//! - Two fixed buffers per tunnel (no allocation per read); a write completes before the next
//!   read of the same direction, so a slow reader slows its writer (backpressure), never memory.
//! - Half-close is passed on: EOF from one side shuts down writing to the other, and the tunnel
//!   lasts until both directions ended.
//! - The tunnel closes after `idle` without a byte in either direction, and at the gateway's
//!   drain deadline (`server.drain_timeout` after a drain started): a drain never waits on an
//!   open WebSocket forever.
//! - The upstream connection is owned by the tunnel and dropped with it: never pooled.

//! - An HTTP/2 client gets its 200 only after the upstream switched (a 101 naming the protocol,
//!   or a 2xx to the extended CONNECT); a CONNECT is never answered 200 from a plain response.
//! - Never retried or hedged: a second attempt could open a second session.

use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

use super::admission::{observe_target, Admission, InflightGuard};
use super::h2::{from_h2_headers, h2_headers, upstream_uri};
use super::relay::{relay, Answering};
use super::UpResp;
use crate::ctx::RequestCtx;
use crate::downstream::{Client, Conn, Fail};
use crate::error::{ErrorKind, GatewayError};
use crate::http1::headers::trim;
use crate::http1::{self, RequestHead};
use crate::policy::stack::response_phase;
use crate::snapshot::Route;
use crate::state::Shared;
use crate::upstream::pool::UpConn;
use crate::upstream::Upstream;

const BUF: usize = 16 * 1024;

/// How a tunnel ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// Both sides closed (or one failed).
    Closed,
    /// No byte in either direction for the idle timeout.
    Idle,
    /// The gateway's drain deadline passed.
    Drained,
}

impl End {
    /// The access log's `error_kind` for this ending (`None` for a normal close).
    pub fn error_kind(self) -> Option<ErrorKind> {
        match self {
            End::Closed => None,
            End::Idle => Some(ErrorKind::TunnelIdleTimeout),
            End::Drained => Some(ErrorKind::TunnelDrained),
        }
    }
}

/// Copies bytes both ways until both sides closed, the tunnel idled out, or the drain deadline.
/// Returns how it ended and the bytes copied client→upstream and upstream→client.
pub async fn run<C, U>(client: &mut C, upstream: &mut U, idle: Duration, shared: &Shared) -> (End, u64, u64)
where
    C: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    let mut from_client = vec![0u8; BUF];
    let mut from_upstream = vec![0u8; BUF];
    let (mut up, mut down) = (0u64, 0u64);
    let (mut client_open, mut upstream_open) = (true, true);
    // Registered before the flag is read, so a drain that starts in between is not missed.
    let stop = shared.stop.notified();
    tokio::pin!(stop);
    stop.as_mut().enable();
    let drain = || Instant::now() + shared.snapshot.load().drain_timeout;
    let mut hard = shared.stopping.load(std::sync::atomic::Ordering::Relaxed).then(drain);
    let idle_timer = tokio::time::sleep(idle);
    tokio::pin!(idle_timer);
    // Far enough to never fire; only used while no drain is under way.
    let never = Instant::now() + Duration::from_secs(86_400 * 365);
    while client_open || upstream_open {
        tokio::select! {
            r = client.read(&mut from_client), if client_open => match r {
                Ok(0) | Err(_) => {
                    client_open = false;
                    let _ = upstream.shutdown().await;
                }
                Ok(n) => {
                    if upstream.write_all(&from_client[..n]).await.is_err() {
                        return (End::Closed, up, down);
                    }
                    up += n as u64;
                    idle_timer.as_mut().reset(Instant::now() + idle);
                }
            },
            r = upstream.read(&mut from_upstream), if upstream_open => match r {
                Ok(0) | Err(_) => {
                    upstream_open = false;
                    let _ = client.shutdown().await;
                }
                Ok(n) => {
                    if client.write_all(&from_upstream[..n]).await.is_err() {
                        return (End::Closed, up, down);
                    }
                    down += n as u64;
                    idle_timer.as_mut().reset(Instant::now() + idle);
                }
            },
            _ = &mut idle_timer => return (End::Idle, up, down),
            _ = &mut stop, if hard.is_none() => hard = Some(drain()),
            _ = tokio::time::sleep_until(hard.unwrap_or(never)), if hard.is_some() => return (End::Drained, up, down),
        }
    }
    (End::Closed, up, down)
}

/// The upstream answered 101 to an upgrade request: check it named a protocol the client asked
/// for, relay the 101 head, then copy bytes both ways until the tunnel ends. The client
/// connection is not reused afterwards; the upstream connection is dropped (never pooled).
pub(crate) async fn tunnel<S>(
    io: &mut S,
    c: &mut Conn,
    route: &Route,
    ctx: &mut RequestCtx,
    mut conn: UpConn,
    mut resp: http1::ResponseHead,
    asked: &Bytes,
) -> Result<bool, Fail>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    if !upgrade_matches(asked, &resp) {
        ctx.error_kind = Some(ErrorKind::UpstreamInvalidResponse);
        let upstream = route.upstream.name.clone();
        return Err(Fail::Before(GatewayError::UpstreamProtocol {
            upstream,
            detail: "101 without a matching Upgrade",
        }));
    }
    let proto = resp.headers.get("upgrade").map(|v| resp.headers.slice_of(trim(v))).unwrap_or_default();
    http1::strip_hop_by_hop(&mut resp.headers);
    let mut status = 101;
    response_phase(&route.stack, ctx, &mut status, &mut resp.headers);
    ctx.status = 101;
    let w = &mut c.wbuf;
    w.clear();
    w.extend_from_slice(b"HTTP/1.1 101 Switching Protocols\r\n");
    resp.headers.write_to(w);
    w.extend_from_slice(b"connection: upgrade\r\nupgrade: ");
    w.extend_from_slice(&proto);
    w.extend_from_slice(b"\r\n\r\n");
    // Bytes that arrived with the head on either side belong to the new protocol.
    w.extend_from_slice(&conn.rbuf);
    conn.rbuf.clear();
    io.write_all(&c.wbuf).await.map_err(|_| Fail::After)?;
    c.wbuf.clear();
    if !c.rbuf.is_empty() {
        let early = c.rbuf.split();
        conn.stream.write_all(&early).await.map_err(|_| Fail::After)?;
    }
    let (end, _, _) = run(io, &mut conn.stream, route.tunnel_idle, &c.shared).await;
    ctx.error_kind = end.error_kind();
    Ok(false)
}

/// An HTTP/2 client's extended CONNECT to an HTTP/2 upstream: the same CONNECT upstream (only
/// to a target that announced `SETTINGS_ENABLE_CONNECT_PROTOCOL`), and once it answered 2xx, the
/// two streams' DATA frames are the tunnel. Any other answer is relayed as a normal response.
/// Never retried (a second attempt could open a second session).
#[allow(clippy::too_many_arguments)]
pub(crate) async fn connect_h2(
    s: &mut crate::downstream::stream::Stream,
    c: &mut Conn,
    head: &mut RequestHead,
    route: &Route,
    path: &str,
    query: Option<&str>,
    ctx: &mut RequestCtx,
    protocol: &Bytes,
) -> Result<bool, Fail> {
    let upstream: &Upstream = &route.upstream;
    let adm = Admission::begin(route, ctx, head, path)?;
    let ti = adm.first_pick;
    let target = &upstream.targets[ti];
    ctx.target = Some(ti);
    ctx.attempts = 1;
    target.state.inflight.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let _inflight = InflightGuard(target);
    let fail =
        |detail: &'static str| Fail::Before(GatewayError::UpstreamProtocol { upstream: upstream.name.clone(), detail });
    let (mut send, slot) = match crate::http2::client::sender(target, upstream.connect_timeout).await {
        Ok(s) => s,
        Err(e) => {
            observe_target(upstream, ti, true);
            adm.record(true);
            tracing::debug!(upstream = %upstream.name, target = %target.url, error = %e, "HTTP/2 connect failed");
            return Err(Fail::Before(GatewayError::UpstreamConnect { upstream: upstream.name.clone() }));
        }
    };
    if !send.is_extended_connect_protocol_enabled() {
        adm.record(false);
        return Err(fail("the upstream does not support extended CONNECT (RFC 8441)"));
    }
    let uri = upstream_uri(target, adm.fixed_host.as_ref(), path, query);
    let Ok(mut req) = http::Request::builder().method(http::Method::CONNECT).uri(uri).body(()) else {
        return Err(fail("request target not valid in HTTP/2"));
    };
    head.headers.remove("sec-websocket-key");
    *req.headers_mut() = h2_headers(&head.headers);
    let Ok(proto) = std::str::from_utf8(protocol) else { return Err(fail("protocol name")) };
    req.extensions_mut().insert(h2::ext::Protocol::from(proto));
    let Ok((resp_fut, up_tx)) = send.send_request(req, false) else {
        adm.record(true);
        return Err(Fail::Before(GatewayError::UpstreamReset { upstream: upstream.name.clone() }));
    };
    let sent_at = Instant::now();
    let head_by = adm.deadline.map_or(sent_at + adm.response_timeout, |d| d.min(sent_at + adm.response_timeout));
    let resp = match tokio::time::timeout_at(head_by, resp_fut).await {
        Ok(Ok(r)) => r,
        Ok(Err(_)) => {
            observe_target(upstream, ti, true);
            adm.record(true);
            return Err(Fail::Before(GatewayError::UpstreamReset { upstream: upstream.name.clone() }));
        }
        Err(_) => {
            observe_target(upstream, ti, true);
            adm.record(true);
            return Err(Fail::Before(GatewayError::UpstreamTimeout { upstream: upstream.name.clone() }));
        }
    };
    let status = resp.status().as_u16();
    observe_target(upstream, ti, status >= 500);
    adm.record(status >= 500);
    ctx.upstream_status = Some(status);
    ctx.upstream_us = Some(sent_at.elapsed().as_micros() as u64);
    let (rp, up_rx) = resp.into_parts();
    let (mut headers, length) = from_h2_headers(&rp.headers);
    if !(200..300).contains(&status) {
        let resp = UpResp::H2 { status, headers, body: up_rx, length, _slot: slot };
        let mut client = Client::<tokio::net::TcpStream>::H2(s);
        let a = Answering {
            head,
            route,
            target,
            web: None,
            upgrading: true,
            response_timeout: adm.response_timeout,
            t1: Instant::now(),
        };
        return relay(&mut client, c, ctx, resp, a).await;
    }
    let mut st = status;
    response_phase(&route.stack, ctx, &mut st, &mut headers);
    ctx.status = status;
    let mut r = http::Response::new(());
    *r.status_mut() = rp.status;
    *r.headers_mut() = h2_headers(&headers);
    let Ok(tx) = s.respond.send_response(r, false) else { return Err(Fail::After) };
    let Some(rx) = s.body.take() else { return Ok(true) };
    let mut client_io = crate::http2::io::H2Io::new(tx, rx);
    let mut upstream_io = crate::http2::io::H2Io::new(up_tx, up_rx);
    let (end, up, down) = run(&mut client_io, &mut upstream_io, route.tunnel_idle, &c.shared).await;
    s.bytes_in += up;
    s.bytes_out += down;
    ctx.error_kind = end.error_kind();
    Ok(true)
}

/// The HTTP/1.1 upstream switched protocols for an HTTP/2 client's extended CONNECT: answer
/// 200 on the stream and copy bytes between the stream's DATA frames and the upstream socket.
pub(crate) async fn tunnel_to_h2(
    s: &mut crate::downstream::stream::Stream,
    c: &mut Conn,
    route: &Route,
    ctx: &mut RequestCtx,
    mut conn: UpConn,
    mut resp: http1::ResponseHead,
    asked: &Bytes,
) -> Result<bool, Fail> {
    if !upgrade_matches(asked, &resp) {
        ctx.error_kind = Some(ErrorKind::UpstreamInvalidResponse);
        return Err(Fail::Before(GatewayError::UpstreamProtocol {
            upstream: route.upstream.name.clone(),
            detail: "101 without a matching Upgrade",
        }));
    }
    http1::strip_hop_by_hop(&mut resp.headers);
    // HTTP/1.1's key/accept handshake does not exist in RFC 8441.
    resp.headers.remove("sec-websocket-accept");
    let mut status = 200;
    response_phase(&route.stack, ctx, &mut status, &mut resp.headers);
    ctx.status = 200;
    let mut r = http::Response::new(());
    *r.headers_mut() = h2_headers(&resp.headers);
    let Ok(tx) = s.respond.send_response(r, false) else { return Err(Fail::After) };
    let Some(rx) = s.body.take() else { return Ok(true) };
    let mut tunnel = crate::http2::io::H2Io::new(tx, rx);
    if !conn.rbuf.is_empty() {
        let early = conn.rbuf.split();
        tunnel.write_all(&early).await.map_err(|_| Fail::After)?;
    }
    let (end, up, down) = run(&mut tunnel, &mut conn.stream, route.tunnel_idle, &c.shared).await;
    s.bytes_in += up;
    s.bytes_out += down;
    ctx.error_kind = end.error_kind();
    Ok(true)
}

/// The upstream's 101 names (in `Connection` and `Upgrade`) a protocol the client asked for.
pub(crate) fn upgrade_matches(asked: &[u8], answered: &http1::ResponseHead) -> bool {
    let connection_ok = answered.headers.get_all("connection").any(|v| http1::headers::has_token(v, "upgrade"));
    let Some(got) = answered.headers.get("upgrade").map(trim) else { return false };
    connection_ok && !got.is_empty() && asked.split(|&b| b == b',').map(trim).any(|p| p.eq_ignore_ascii_case(got))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;

    #[test]
    fn a_101_must_name_an_asked_protocol() {
        let resp = |raw: &[u8]| {
            let mut b = BytesMut::from(raw);
            http1::parse_response(&mut b, 8192, false).ok().flatten().expect("valid response")
        };
        let ok = resp(b"HTTP/1.1 101 S\r\nConnection: Upgrade\r\nUpgrade: WebSocket\r\n\r\n");
        assert!(upgrade_matches(b"websocket", &ok));
        assert!(!upgrade_matches(b"foo", &ok));
        let no_conn = resp(b"HTTP/1.1 101 S\r\nUpgrade: websocket\r\n\r\n");
        assert!(!upgrade_matches(b"websocket", &no_conn));
    }
}
