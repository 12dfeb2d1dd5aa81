//! The one response relay: the upstream's answer (from either leg) to the client (either
//! protocol). The response phase runs on the head; the body is decoded from the upstream's
//! framing and re-framed for the client (length kept, chunked for HTTP/1.1 when the length is
//! unknown, close-delimited for HTTP/1.0, DATA frames and trailers for HTTP/2, the trailer frame
//! and base64 for gRPC-Web).
//!
//! Invariants:
//! - Head and a small body leave in one write; afterwards one write per upstream read (batched
//!   up to `FLUSH_AT`), and buffered bytes are flushed before waiting on the upstream.
//! - If the upstream body breaks before anything reached the client, the client gets a clean
//!   502; after that, the HTTP/2 stream is reset or the HTTP/1.1 connection closed, so a
//!   truncated body never looks complete.
//! - An upstream connection returns to the pool only after a complete, well-framed response
//!   with keep-alive, and never after an upgrade request.

use std::future::poll_fn;
use std::task::Poll;

use bytes::Bytes;
use h2::{Reason, SendStream};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::{Duration, Instant};

use super::h1::push_chunk;
use super::h2::{from_h2_headers, h2_headers, send_all};
use super::UpResp;
use crate::ctx::RequestCtx;
use crate::downstream::{reserve, Client, Conn, Fail, FLUSH_AT};
use crate::error::{ErrorKind, GatewayError};
use crate::grpc::{self, GrpcKind};
use crate::http1::push_u64;
use crate::http1::{self, BodyDecoder, BodyKind, Decoded, Headers, RequestHead};
use crate::policy::stack::response_phase;
use crate::policy::stack::MAX_BUFFERED_RESPONSE;
use crate::snapshot::Route;
use crate::upstream::pool;
use crate::upstream::{Target, Upstream};

/// Where the response goes: an HTTP/1.1 connection (with its framing) or an HTTP/2 stream.
struct Out<'a, 'b, S> {
    io: &'a mut Client<'b, S>,
    c: &'a mut Conn,
    tx: Option<SendStream<Bytes>>,
    /// HTTP/1.1: chunked framing (else content-length or close-delimited).
    chunked: bool,
    /// Something reached the client already.
    started: bool,
    /// The request was HEAD: the response has a head only.
    head_only: bool,
    /// The upstream's name (for errors).
    upstream: &'a str,
    text: Option<grpc::TextEncoder>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Out<'_, '_, S> {
    /// Sends (HTTP/2) or buffers (HTTP/1.1) the response head. `reason` is the upstream's
    /// reason phrase, kept when the status is unchanged.
    #[allow(clippy::too_many_arguments)]
    async fn head(
        &mut self,
        status: u16,
        reason: Option<&[u8]>,
        headers: &Headers,
        length: Option<u64>,
        end: bool,
        keep: bool,
        minor: u8,
    ) -> Result<(), Fail> {
        match &mut *self.io {
            Client::H2(s) => {
                let mut r = http::Response::new(());
                *r.status_mut() = http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::BAD_GATEWAY);
                *r.headers_mut() = h2_headers(headers);
                if let Some(n) = length {
                    r.headers_mut().insert(http::header::CONTENT_LENGTH, http::HeaderValue::from(n));
                }
                self.started = true;
                match s.respond.send_response(r, end) {
                    Ok(tx) => {
                        self.tx = Some(tx);
                        Ok(())
                    }
                    Err(_) => {
                        s.resets.note();
                        Err(Fail::After)
                    }
                }
            }
            Client::Capture(k) => {
                k.status = status;
                let mut copy = Headers::new();
                for (n, v) in headers.iter() {
                    copy.append(Bytes::copy_from_slice(n), headers.slice_of(v));
                }
                k.headers = copy;
                Ok(())
            }
            Client::H1(_) => {
                let w = &mut self.c.wbuf;
                w.clear();
                w.extend_from_slice(if minor == 1 { b"HTTP/1.1 " } else { b"HTTP/1.0 " });
                push_u64(w, status as u64);
                w.push(b' ');
                match reason {
                    Some(r) => w.extend_from_slice(r),
                    None => w.extend_from_slice(http1::reason(status).as_bytes()),
                }
                w.extend_from_slice(b"\r\n");
                headers.write_to(w);
                match length {
                    Some(n) => {
                        w.extend_from_slice(b"content-length: ");
                        push_u64(w, n);
                        w.extend_from_slice(b"\r\n");
                    }
                    // No body follows (an empty one, or a HEAD answer): nothing to frame, and a
                    // HEAD answer must not carry even a last chunk.
                    None if end => {
                        let bodyless = status < 200 || status == 204 || status == 304;
                        if !self.head_only && !bodyless {
                            w.extend_from_slice(b"content-length: 0\r\n");
                        }
                    }
                    None if minor == 1 && status >= 200 && status != 204 && status != 304 => {
                        self.chunked = true;
                        w.extend_from_slice(b"transfer-encoding: chunked\r\n");
                    }
                    None => {}
                }
                if !keep {
                    w.extend_from_slice(b"connection: close\r\n");
                } else if minor == 0 {
                    w.extend_from_slice(b"connection: keep-alive\r\n");
                }
                w.extend_from_slice(b"\r\n");
                Ok(())
            }
        }
    }

    async fn data(&mut self, d: Bytes) -> Result<(), Fail> {
        let d = match self.text.as_mut() {
            Some(t) => t.push(&d),
            None => d,
        };
        if d.is_empty() {
            return Ok(());
        }
        match &mut *self.io {
            Client::H2(s) => {
                s.bytes_out += d.len() as u64;
                let Some(tx) = self.tx.as_mut() else { return Err(Fail::After) };
                if send_all(tx, d, false).await.is_err() {
                    s.resets.note();
                    return Err(Fail::After);
                }
                Ok(())
            }
            Client::Capture(k) => {
                if k.body.len() + d.len() > k.limit {
                    let limit = k.limit as u64;
                    let upstream = self.upstream.to_string();
                    return Err(Fail::Before(GatewayError::UpstreamResponseTooLarge { upstream, limit }));
                }
                k.body.extend_from_slice(&d);
                Ok(())
            }
            Client::H1(io) => {
                if self.chunked {
                    push_chunk(&mut self.c.wbuf, &d);
                } else {
                    self.c.wbuf.extend_from_slice(&d);
                }
                if self.c.wbuf.len() >= FLUSH_AT {
                    io.write_all(&self.c.wbuf).await.map_err(|_| Fail::After)?;
                    self.c.wbuf.clear();
                    self.started = true;
                }
                Ok(())
            }
        }
    }

    /// Pushes out what is buffered (HTTP/1.1) before waiting on the upstream.
    async fn flush(&mut self) -> Result<(), Fail> {
        if let Client::H1(io) = &mut *self.io {
            if !self.c.wbuf.is_empty() {
                io.write_all(&self.c.wbuf).await.map_err(|_| Fail::After)?;
                self.c.wbuf.clear();
                self.started = true;
            }
        }
        Ok(())
    }

    async fn end(&mut self, trailers: Option<Headers>) -> Result<(), Fail> {
        if let Some(t) = self.text.as_mut() {
            let tail = t.finish();
            self.text = None;
            self.data(tail).await?;
        }
        match &mut *self.io {
            Client::H2(_) => {
                let Some(tx) = self.tx.as_mut() else { return Ok(()) };
                let r = match trailers {
                    Some(t) if !t.is_empty() => tx.send_trailers(h2_headers(&t)),
                    _ => tx.send_data(Bytes::new(), true),
                };
                r.map_err(|_| Fail::After)
            }
            Client::Capture(k) => {
                k.trailers = trailers;
                Ok(())
            }
            Client::H1(_) => {
                if self.chunked {
                    self.c.wbuf.extend_from_slice(b"0\r\n");
                    if let Some(t) = trailers {
                        t.write_to(&mut self.c.wbuf);
                    }
                    self.c.wbuf.extend_from_slice(b"\r\n");
                }
                self.flush().await
            }
        }
    }

    /// The body broke: before anything was sent, a clean 502; after, the client sees an abort.
    /// `kind` is the log's `error_kind` when the answer is cut; before anything was sent, the
    /// 502's own code is (set by the exit).
    fn broken(&mut self, ctx: &mut RequestCtx, kind: ErrorKind, upstream: &str, detail: &'static str) -> Fail {
        if let Some(tx) = self.tx.as_mut() {
            tx.send_reset(Reason::INTERNAL_ERROR);
            ctx.error_kind = Some(kind);
            return Fail::After;
        }
        if self.started {
            ctx.error_kind = Some(kind);
            Fail::After
        } else {
            Fail::Before(GatewayError::UpstreamProtocol { upstream: upstream.to_string(), detail })
        }
    }
}

/// What the relay needs to know about the request it answers.
pub(crate) struct Answering<'a> {
    pub head: &'a RequestHead,
    pub route: &'a Route,
    pub target: &'a Target,
    pub web: Option<GrpcKind>,
    /// The request asked to upgrade (the answer was not a 101): close after it, never pool.
    pub upgrading: bool,
    pub response_timeout: Duration,
    /// When the response head arrived (the pooled connection's idle clock starts there).
    pub t1: Instant,
}

/// Relays the upstream's response (head, body, trailers) to the client. `Ok(keep_alive)`.
pub(crate) async fn relay<S>(
    io: &mut Client<'_, S>,
    c: &mut Conn,
    ctx: &mut RequestCtx,
    resp: UpResp,
    a: Answering<'_>,
) -> Result<bool, Fail>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let Answering { head, route, target, web, upgrading, response_timeout, t1 } = a;
    let upstream: &Upstream = &route.upstream;
    let is_head = &head.method[..] == b"HEAD";
    let up_status = resp.status();
    let mut resp = resp;
    let (mut headers, mut length, empty) = match &mut resp {
        UpResp::H1 { head: rh, .. } => {
            let keep_cl = if rh.body == BodyKind::Empty && (is_head || rh.status == 304) {
                rh.headers.get("content-length").and_then(http1::parse::parse_content_length)
            } else {
                None
            };
            let mut h = std::mem::take(&mut rh.headers);
            http1::strip_hop_by_hop(&mut h);
            let length = match rh.body {
                BodyKind::Length(n) => Some(n),
                // A bodiless answer keeps the length it describes (HEAD, 304); none is invented
                // where the status forbids one (1xx, 204, 304).
                BodyKind::Empty => keep_cl.or_else(|| http1::may_have_body(rh.status).then_some(0)),
                BodyKind::Chunked | BodyKind::UntilClose => None,
            };
            (h, length, rh.body == BodyKind::Empty)
        }
        UpResp::H2 { headers, length, body, .. } => (std::mem::take(headers), *length, body.is_end_stream()),
    };
    if ctx.grpc.is_some() {
        // A trailers-only answer carries its status in the headers.
        ctx.grpc_status = headers.get("grpc-status").and_then(|v| std::str::from_utf8(v).ok()?.trim().parse().ok());
    }
    let mut status = up_status;
    response_phase(&route.stack, ctx, &mut status, &mut headers);
    if let Some(v) = route.hsts.as_ref().filter(|_| c.https) {
        headers.set(Bytes::from_static(b"strict-transport-security"), v.clone());
    }
    if let Some(kind) = web {
        let up_ct = headers.get("content-type").map(Bytes::copy_from_slice);
        headers.set(Bytes::from_static(b"content-type"), grpc::web_content_type(kind, up_ct.as_deref()));
        // The body gains the trailer frame (and base64): its length is no longer known.
        if !empty {
            length = None;
        }
    }
    // RFC 9110 §8.6: no Content-Length on 1xx or 204, whichever leg said it.
    if status < 200 || status == 204 {
        length = None;
    }
    if matches!(io, Client::H2(_)) && (status == 304 || is_head) && length == Some(0) {
        length = None;
    }
    if route.stack.needs_response_body() && !empty && !is_head && web.is_none() && ctx.grpc.is_none() {
        // Boxed: a rare path that would otherwise enlarge every relay's future.
        let (body, trailers) = Box::pin(read_whole(resp, upstream, response_timeout, target, t1, upgrading)).await?;
        let answer = (status, headers, body, trailers);
        return Box::pin(send_transformed(io, c, ctx, route, head, answer, upgrading)).await;
    }
    ctx.status = status;
    let minor = head.minor;
    // After a refused upgrade the client may already have sent bytes for the new protocol:
    // close instead of reading them as HTTP.
    let h1_keep = head.keep_alive && !c.stopping() && !upgrading && (length.is_some() || minor == 1);
    // The upstream's reason phrase, when the status is still its own.
    let reason = match &resp {
        UpResp::H1 { head: rh, .. } if rh.status == status && !rh.reason.is_empty() => Some(rh.reason.clone()),
        _ => None,
    };
    let mut out = Out {
        io,
        c,
        tx: None,
        chunked: false,
        started: false,
        head_only: is_head,
        upstream: &upstream.name,
        text: (web == Some(GrpcKind::WebText)).then(grpc::TextEncoder::default),
    };
    let empty_now = empty || is_head;
    out.head(status, reason.as_deref(), &headers, length, empty_now, h1_keep, minor).await?;
    if empty_now {
        if let UpResp::H1 { conn, head: rh } = resp {
            if rh.keep_alive && rh.body != BodyKind::UntilClose && !upgrading {
                pool::checkin(target.state.id, conn, upstream.max_idle_per_target, t1 + upstream.pool_idle_timeout);
            }
        }
        if matches!(out.io, Client::H1(_)) {
            out.end(None).await?;
        }
        return Ok(h1_keep);
    }
    let mut trailers: Option<Headers> = None;
    match resp {
        UpResp::H1 { mut conn, head: rh } => {
            let mut dec = BodyDecoder::new(rh.body);
            loop {
                match dec.decode(&mut conn.rbuf) {
                    Ok(Decoded::Data(d)) => out.data(d).await?,
                    Ok(Decoded::Done) => break,
                    Ok(Decoded::NeedMore) => {
                        out.flush().await?;
                        reserve(&mut conn.rbuf);
                        match tokio::time::timeout(response_timeout, conn.stream.read_buf(&mut conn.rbuf)).await {
                            Ok(Ok(0)) if dec.on_eof() => break,
                            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => {
                                return Err(out.broken(
                                    ctx,
                                    ErrorKind::UpstreamTruncated,
                                    &upstream.name,
                                    "response body truncated",
                                ));
                            }
                            Ok(Ok(_)) => {}
                        }
                    }
                    Err(_) => {
                        return Err(out.broken(
                            ctx,
                            ErrorKind::UpstreamInvalidResponse,
                            &upstream.name,
                            "malformed response body",
                        ));
                    }
                }
            }
            if rh.keep_alive && rh.body != BodyKind::UntilClose && !upgrading {
                pool::checkin(target.state.id, conn, upstream.max_idle_per_target, t1 + upstream.pool_idle_timeout);
            }
        }
        UpResp::H2 { mut body, .. } => {
            loop {
                // What is buffered for an HTTP/1.1 client goes out before waiting for the next
                // DATA frame: a stream (server-streaming gRPC, gRPC-Web, SSE) reaches the client
                // as it is produced, while frames that are already there still share one write.
                let next = match poll_fn(|cx| Poll::Ready(body.poll_data(cx))).await {
                    Poll::Ready(d) => Ok(d),
                    Poll::Pending => {
                        out.flush().await?;
                        tokio::time::timeout(response_timeout, body.data()).await
                    }
                };
                match next {
                    Ok(Some(Ok(d))) => {
                        let _ = body.flow_control().release_capacity(d.len());
                        out.data(d).await?;
                    }
                    Ok(None) => break,
                    Ok(Some(Err(_))) | Err(_) => {
                        return Err(out.broken(
                            ctx,
                            ErrorKind::UpstreamTruncated,
                            &upstream.name,
                            "response body truncated",
                        ));
                    }
                }
            }
            match tokio::time::timeout(response_timeout, body.trailers()).await {
                Ok(Ok(Some(map))) => {
                    if ctx.grpc.is_some() {
                        ctx.grpc_status = grpc::status_of(&map);
                    }
                    trailers = Some(from_h2_headers(&map).0);
                }
                Ok(Ok(None)) => {}
                Ok(Err(_)) | Err(_) => {
                    return Err(out.broken(
                        ctx,
                        ErrorKind::UpstreamTruncated,
                        &upstream.name,
                        "response trailers missing",
                    ));
                }
            }
        }
    }
    if web.is_some() {
        // gRPC-Web carries the trailers in the body, as the last frame.
        if let Some(t) = trailers.take() {
            out.data(grpc::trailer_frame(&t)).await?;
        }
    }
    out.end(trailers).await?;
    Ok(h1_keep)
}

/// Reads the whole upstream body (for the response body phase), up to
/// `MAX_BUFFERED_RESPONSE`; returns it with the trailers. A reusable HTTP/1.1 connection goes
/// back to the pool once the body was read.
async fn read_whole(
    resp: UpResp,
    upstream: &Upstream,
    response_timeout: Duration,
    target: &Target,
    t1: Instant,
    upgrading: bool,
) -> Result<(Vec<u8>, Option<Headers>), Fail> {
    let cap = MAX_BUFFERED_RESPONSE;
    let too_large =
        || Fail::Before(GatewayError::UpstreamResponseTooLarge { upstream: upstream.name.clone(), limit: cap });
    let broken = |detail| Fail::Before(GatewayError::UpstreamProtocol { upstream: upstream.name.clone(), detail });
    let mut body = Vec::new();
    match resp {
        UpResp::H1 { mut conn, head: rh } => {
            let mut dec = BodyDecoder::new(rh.body);
            loop {
                match dec.decode(&mut conn.rbuf) {
                    Ok(Decoded::Data(d)) => {
                        body.extend_from_slice(&d);
                        if body.len() as u64 > cap {
                            return Err(too_large());
                        }
                    }
                    Ok(Decoded::Done) => break,
                    Ok(Decoded::NeedMore) => {
                        reserve(&mut conn.rbuf);
                        match tokio::time::timeout(response_timeout, conn.stream.read_buf(&mut conn.rbuf)).await {
                            Ok(Ok(0)) if dec.on_eof() => break,
                            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return Err(broken("response body truncated")),
                            Ok(Ok(_)) => {}
                        }
                    }
                    Err(_) => return Err(broken("malformed response body")),
                }
            }
            if rh.keep_alive && rh.body != BodyKind::UntilClose && !upgrading {
                pool::checkin(target.state.id, conn, upstream.max_idle_per_target, t1 + upstream.pool_idle_timeout);
            }
            Ok((body, None))
        }
        UpResp::H2 { body: mut rx, .. } => {
            loop {
                match tokio::time::timeout(response_timeout, rx.data()).await {
                    Ok(Some(Ok(d))) => {
                        let _ = rx.flow_control().release_capacity(d.len());
                        body.extend_from_slice(&d);
                        if body.len() as u64 > cap {
                            return Err(too_large());
                        }
                    }
                    Ok(None) => break,
                    Ok(Some(Err(_))) | Err(_) => return Err(broken("response body truncated")),
                }
            }
            let trailers = match tokio::time::timeout(response_timeout, rx.trailers()).await {
                Ok(Ok(t)) => t.map(|m| from_h2_headers(&m).0),
                Ok(Err(_)) | Err(_) => return Err(broken("response trailers missing")),
            };
            Ok((body, trailers))
        }
    }
}

/// Runs the response body phase on a buffered answer and sends it with its (new) length.
async fn send_transformed<S>(
    io: &mut Client<'_, S>,
    c: &mut Conn,
    ctx: &mut RequestCtx,
    route: &Route,
    head: &RequestHead,
    (mut status, mut headers, mut body, trailers): (u16, Headers, Vec<u8>, Option<Headers>),
    upgrading: bool,
) -> Result<bool, Fail>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    route.stack.on_response_body(ctx, &mut status, &mut headers, &mut body).map_err(Fail::Before)?;
    ctx.status = status;
    let keep = head.keep_alive && !c.stopping() && !upgrading;
    let upstream = &route.upstream.name;
    let mut out = Out { io, c, tx: None, chunked: false, started: false, head_only: false, upstream, text: None };
    let length = http1::may_have_body(status).then_some(body.len() as u64);
    let end = body.is_empty() && trailers.is_none();
    out.head(status, None, &headers, length, end, keep, head.minor).await?;
    if !end {
        out.data(Bytes::from(body)).await?;
    }
    out.end(trailers).await?;
    Ok(keep)
}
