//! The request body on its way upstream: how much is read before anything is sent, and where
//! the rest comes from. This is where a body phase hooks in (a policy that needs the body gets
//! it whole, under the route's size cap).
//!
//! Invariants:
//! - Up to `PREBUFFER` bytes (and the start of every chunked body) are read before any backend
//!   sees the request: a malformed or oversized body is refused first, a complete small body can
//!   be re-sent (retries, hedging, a stale connection), and a small chunked body goes upstream
//!   with a `Content-Length`. A longer body streams, and is then sent once.
//! - A gRPC body from an HTTP/2 client streams from its first byte (a client or bidirectional
//!   stream's sender may wait for answers before sending more). An HTTP/1.1 body for an HTTP/2
//!   upstream, and every gRPC-Web body, is read whole (bounded by the body limit) first.
//! - Every byte counts against the route's (or listener's) body limit; the whole read is bounded
//!   by the listener's `timeouts.body_read`: a slow client gets 408, a vanished one is dropped.

use bytes::{Bytes, BytesMut};
use h2::RecvStream;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

use crate::downstream::{reserve, Client, Conn, Fail};
use crate::error::GatewayError;
use crate::http1::{BodyDecoder, BodyKind, Decoded, RequestHead};
use crate::snapshot::ListenerRt;

/// Request bodies up to this size are read completely before anything goes upstream.
pub const PREBUFFER: u64 = 64 * 1024;

/// Where the part of the body that was not read ahead is.
pub(crate) enum RestSrc {
    /// Nowhere: `pre` is the whole body.
    None,
    /// On the HTTP/1.1 client connection, behind this decoder.
    H1(BodyDecoder),
    /// On the HTTP/2 client stream.
    H2(RecvStream),
}

/// The request body as the forwarder holds it.
pub(crate) struct ReqBody {
    /// What was read ahead (the whole body when `rest` is `None`).
    pub pre: Bytes,
    pub rest: RestSrc,
    /// How the body is framed toward an HTTP/1.1 upstream.
    pub framing: BodyKind,
}

impl ReqBody {
    pub(crate) fn empty() -> ReqBody {
        ReqBody { pre: Bytes::new(), rest: RestSrc::None, framing: BodyKind::Empty }
    }

    /// The whole body is in memory: the request can be sent again.
    pub(crate) fn replayable(&self) -> bool {
        matches!(self.rest, RestSrc::None)
    }
}

/// How to read a body.
#[derive(Clone, Copy)]
pub(crate) struct BodyMode {
    /// Read it whole (an HTTP/1.1 client's body for an HTTP/2 upstream, gRPC-Web).
    pub whole: bool,
    /// A gRPC call from an HTTP/2 client: stream from the first byte.
    pub interactive: bool,
}

/// Reads the client's body as `mode` says. Sets `body_done` once the client's body was read
/// completely (an HTTP/1.1 connection may then serve another request).
pub(crate) async fn read_request_body<S>(
    io: &mut Client<'_, S>,
    c: &mut Conn,
    head: &RequestHead,
    l: &ListenerRt,
    limit: u64,
    mode: BodyMode,
    body_done: &mut bool,
) -> Result<ReqBody, Fail>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    match io {
        Client::H1(io) => {
            if head.body == BodyKind::Empty {
                return Ok(ReqBody::empty());
            }
            if head.expect_continue {
                // We decided to forward: ask the client for the body (RFC 9110 §10.1.1).
                io.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await.map_err(|_| Fail::After)?;
            }
            let mut dec = BodyDecoder::new(head.body);
            let mut pre: Vec<u8> = Vec::new();
            let cap = if mode.whole { u64::MAX } else { PREBUFFER };
            let read_ahead = match head.body {
                BodyKind::Length(n) => mode.whole || n <= PREBUFFER,
                BodyKind::Chunked => true,
                _ => false,
            };
            if read_ahead {
                prebuffer(&mut **io, &mut c.rbuf, &mut dec, &mut pre, limit, cap, l).await?;
            }
            if dec.is_done() {
                *body_done = true;
                let framing = BodyKind::Length(pre.len() as u64);
                return Ok(ReqBody { pre: Bytes::from(pre), rest: RestSrc::None, framing });
            }
            Ok(ReqBody { pre: Bytes::from(pre), rest: RestSrc::H1(dec), framing: head.body })
        }
        Client::Capture(k) => {
            *body_done = true;
            let framing =
                if k.request_body.is_empty() { BodyKind::Empty } else { BodyKind::Length(k.request_body.len() as u64) };
            Ok(ReqBody { pre: k.request_body.clone(), rest: RestSrc::None, framing })
        }
        Client::H2(s) => {
            *body_done = true;
            let Some(mut rest) = s.body.take() else { return Ok(ReqBody::empty()) };
            // A streamed body keeps the length the client declared (h2 checks the DATA frames
            // against it); without one it goes to an HTTP/1.1 upstream chunked.
            let streamed = match head.body {
                BodyKind::Length(n) => BodyKind::Length(n),
                _ => BodyKind::Chunked,
            };
            if mode.interactive {
                // Nothing may wait for a gRPC stream's body: it streams from the first byte.
                return Ok(ReqBody { pre: Bytes::new(), rest: RestSrc::H2(rest), framing: streamed });
            }
            let deadline = Instant::now() + l.body_timeout;
            let mut pre: Vec<u8> = Vec::new();
            loop {
                match tokio::time::timeout_at(deadline, rest.data()).await {
                    Err(_) => {
                        s.body = Some(rest);
                        return Err(Fail::Before(GatewayError::RequestTimeout));
                    }
                    Ok(None) => {
                        s.bytes_in += pre.len() as u64;
                        let framing = if pre.is_empty() && head.body == BodyKind::Empty {
                            BodyKind::Empty
                        } else {
                            BodyKind::Length(pre.len() as u64)
                        };
                        return Ok(ReqBody { pre: Bytes::from(pre), rest: RestSrc::None, framing });
                    }
                    Ok(Some(Ok(d))) => {
                        let _ = rest.flow_control().release_capacity(d.len());
                        pre.extend_from_slice(&d);
                        if pre.len() as u64 > limit {
                            // Kept with the stream: drained (bounded) after the 413, not reset
                            // before the client can read it.
                            s.body = Some(rest);
                            return Err(Fail::Before(GatewayError::BodyTooLarge { limit }));
                        }
                        if !mode.whole && pre.len() as u64 >= PREBUFFER {
                            s.bytes_in += pre.len() as u64;
                            let pre = Bytes::from(pre);
                            return Ok(ReqBody { pre, rest: RestSrc::H2(rest), framing: streamed });
                        }
                    }
                    Ok(Some(Err(e))) => {
                        if e.is_reset() || e.is_io() {
                            s.resets.note();
                            return Err(Fail::After);
                        }
                        // Content-length disagreeing with DATA, and other malformed bodies: the
                        // stream is already reset by h2; nothing was forwarded.
                        return Err(Fail::Before(GatewayError::BadRequest(format!("request body: {e}"))));
                    }
                }
            }
        }
    }
}

/// Reads more of the client's body into the connection buffer before the body deadline: a client
/// that goes away ends the exchange silently, a slow one gets 408.
pub(crate) async fn read_more_body<S: AsyncRead + Unpin>(
    io: &mut S,
    rbuf: &mut BytesMut,
    deadline: Instant,
) -> Result<(), Fail> {
    reserve(rbuf);
    match tokio::time::timeout_at(deadline, io.read_buf(rbuf)).await {
        Ok(Ok(0)) | Ok(Err(_)) => Err(Fail::After),
        Ok(Ok(_)) => Ok(()),
        Err(_) => Err(Fail::Before(GatewayError::RequestTimeout)),
    }
}

/// Reads the client's body into `pre` until it is complete or `cap` bytes are held (`PREBUFFER`
/// before forwarding; `u64::MAX` to read it whole), refusing it once it exceeds `limit`.
pub(crate) async fn prebuffer<S: AsyncRead + Unpin>(
    io: &mut S,
    rbuf: &mut BytesMut,
    body: &mut BodyDecoder,
    pre: &mut Vec<u8>,
    limit: u64,
    cap: u64,
    l: &ListenerRt,
) -> Result<(), Fail> {
    let deadline = Instant::now() + l.body_timeout;
    loop {
        match body.decode(rbuf) {
            Ok(Decoded::Data(d)) => {
                pre.extend_from_slice(&d);
                if (pre.len() as u64).saturating_add(body.declared_remaining()) > limit {
                    return Err(Fail::Before(GatewayError::BodyTooLarge { limit }));
                }
                if pre.len() as u64 >= cap {
                    return Ok(());
                }
            }
            Ok(Decoded::Done) => return Ok(()),
            Ok(Decoded::NeedMore) => {
                if (pre.len() as u64).saturating_add(body.declared_remaining()) > limit {
                    return Err(Fail::Before(GatewayError::BodyTooLarge { limit }));
                }
                read_more_body(io, rbuf, deadline).await?;
            }
            Err(e) => return Err(Fail::Before(GatewayError::BadRequest(e.to_string()))),
        }
    }
}
