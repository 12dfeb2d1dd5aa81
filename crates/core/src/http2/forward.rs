//! Forwarding when HTTP/2 is on either side: an HTTP/2 client (to any upstream), or any client
//! to an HTTP/2 upstream (`h2c://`, `https://` + `protocol: http2`). HTTP/1.1 to HTTP/1.1 keeps
//! its own tuned path (`proxy::forward`); both share admission (breaker, request cap, retry
//! budget, first pick), the retry rules, target health and the attempt's trace span.
//!
//! Invariants:
//! - Request bodies: up to `PREBUFFER` bytes are read before anything
//!   goes upstream (so a malformed or oversized body is refused before a backend sees it, and
//!   the request can be retried); a longer body from an HTTP/2 client then streams, and is sent
//!   once. A gRPC request body streams from its first byte: a client or bidirectional stream's
//!   sender may wait for answers before sending more. An HTTP/1.1 body for an
//!   HTTP/2 upstream, and every gRPC-Web body, is read whole (bounded by the body limit) first.
//! - A streamed request body runs in its own task toward an HTTP/2 upstream, concurrently with
//!   the response: bidirectional gRPC streams flow both ways at once.
//! - Responses stream back with their trailers (`grpc-status` ...): as HTTP/2 trailers to an
//!   HTTP/2 client, as chunked trailers to an HTTP/1.1 client, as the final frame for gRPC-Web.
//! - A body that breaks after the response started ends the client's stream with a reset (or
//!   the HTTP/1.1 connection with a close), never with a clean end: truncation stays visible.
//! - An HTTP/2 client's extended CONNECT (WebSocket, RFC 8441) to an HTTP/1.1 upstream becomes
//!   an HTTP/1.1 upgrade; bytes flow only after the upstream's 101 named the protocol, and the
//!   client gets 200 only then. Toward an HTTP/2 upstream it stays an extended CONNECT (only to a
//!   target that announced SETTINGS_ENABLE_CONNECT_PROTOCOL) and its 2xx opens a stream-to-stream
//!   tunnel. An HTTP/1.1 upgrade toward an HTTP/2 upstream is refused (502).

use std::future::poll_fn;

use bytes::Bytes;
use h2::{Reason, RecvStream, SendStream};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::{Duration, Instant};

use crate::error::GatewayError;
use crate::grpc::{self, GrpcKind};
use crate::http1::{self, BodyDecoder, BodyKind, Decoded, Headers, RequestHead};
use crate::pipeline::RequestCtx;
use crate::proxy::{
    client_span, exchange_buffered, observe_target, pick_target, prebuffer, push_chunk, push_u64, race_hedge,
    read_response_head, reserve, response_phase, tried_bit, upgrade_matches, Admission, AttemptErr, Client, Conn, Fail,
    HeadParts, InflightGuard, ReadFail, FLUSH_AT, PREBUFFER,
};
use crate::retry;
use crate::snapshot::{ListenerRt, Route};
use crate::trace::ClientSpan;
use crate::upstream::pool::{self, UpConn};
use crate::upstream::{observe_latency, Target, Upstream};

/// The request body as the forwarder holds it.
enum Body {
    /// Complete: can be sent again (retries).
    Full(Bytes),
    /// `pre` was read; the rest still streams from the HTTP/2 client and is sent once.
    Stream { pre: Bytes, rest: RecvStream },
}

/// An upstream's response head, and where its body comes from.
enum UpResp {
    H1 {
        conn: UpConn,
        head: http1::ResponseHead,
    },
    /// `_slot` holds the stream's place on its upstream connection until the response is done.
    H2 {
        status: u16,
        headers: Headers,
        body: RecvStream,
        length: Option<u64>,
        _slot: super::client::StreamSlot,
    },
}

impl UpResp {
    fn status(&self) -> u16 {
        match self {
            UpResp::H1 { head, .. } => head.status,
            UpResp::H2 { status, .. } => *status,
        }
    }
}

/// Writes all of `data` on an HTTP/2 stream, waiting for flow-control capacity as needed.
pub(crate) async fn send_all(tx: &mut SendStream<Bytes>, mut data: Bytes, end: bool) -> Result<(), h2::Error> {
    if data.is_empty() {
        if end {
            tx.send_data(data, true)?;
        }
        return Ok(());
    }
    while !data.is_empty() {
        tx.reserve_capacity(data.len());
        let mut cap = tx.capacity();
        if cap == 0 {
            cap = match poll_fn(|cx| tx.poll_capacity(cx)).await {
                Some(Ok(n)) => n,
                Some(Err(e)) => return Err(e),
                None => return Err(h2::Error::from(Reason::CANCEL)),
            };
            if cap == 0 {
                continue;
            }
        }
        let chunk = data.split_to(cap.min(data.len()));
        tx.send_data(chunk, end && data.is_empty())?;
    }
    Ok(())
}

/// HTTP/2 header block from the pipeline's headers (hop-by-hop and framing fields left out).
fn h2_headers(headers: &Headers) -> http::HeaderMap {
    let mut map = http::HeaderMap::with_capacity(headers.len());
    for (n, v) in headers.iter() {
        if http1::is_hop_by_hop(n) || n.eq_ignore_ascii_case(b"host") {
            continue;
        }
        // `slice_of` shares the parsed head's buffer: no copy of the value.
        if let (Ok(n), Ok(v)) =
            (http::HeaderName::from_bytes(n), http::HeaderValue::from_maybe_shared(headers.slice_of(v)))
        {
            map.append(n, v);
        }
    }
    map
}

fn from_h2_headers(map: &http::HeaderMap) -> (Headers, Option<u64>) {
    let mut out = Headers::new();
    let mut length = None;
    for (n, v) in map {
        if n == http::header::CONTENT_LENGTH {
            length = http1::parse::parse_content_length(v.as_bytes());
            continue;
        }
        out.append(Bytes::copy_from_slice(n.as_str().as_bytes()), Bytes::copy_from_slice(v.as_bytes()));
    }
    (out, length)
}

/// The absolute URI of a request to an HTTP/2 target (`:scheme`, `:authority`, `:path`): the
/// client's Host when the route keeps it, else the target's authority.
fn upstream_uri(target: &Target, fixed_host: Option<&Bytes>, path: &str, query: Option<&str>) -> String {
    let scheme = if target.tls.is_some() { "https" } else { "http" };
    let host = std::str::from_utf8(fixed_host.unwrap_or(&target.authority)).unwrap_or("");
    let mut uri = String::with_capacity(scheme.len() + host.len() + path.len() + 16);
    uri.push_str(scheme);
    uri.push_str("://");
    uri.push_str(host);
    uri.push_str(path);
    if let Some(q) = query {
        uri.push('?');
        uri.push_str(q);
    }
    uri
}

/// Forwards one request when HTTP/2 is on either side. `Ok(keep_alive)` like `proxy::forward`.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn forward_any<S>(
    io: &mut Client<'_, S>,
    c: &mut Conn,
    head: &mut RequestHead,
    route: &Route,
    path: &str,
    query: Option<&str>,
    ctx: &mut RequestCtx,
    l: &ListenerRt,
    limit: u64,
    body_done: &mut bool,
    upgrade: Option<&Bytes>,
) -> Result<bool, Fail>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let upstream: &Upstream = &route.upstream;
    if let Client::H2(s) = io {
        if let (Some(p), None) = (&s.connect_protocol, upgrade) {
            // A 200 to CONNECT means "tunnel open": never answer it from a plain GET upstream.
            let p = String::from_utf8_lossy(p).into_owned();
            return Err(Fail::Before(GatewayError::BadRequest(format!(
                "extended CONNECT for `{p}` is not enabled on this route (routes[].upgrades)"
            ))));
        }
    }
    if let (Some(asked), true) = (upgrade, upstream.http2) {
        return match io {
            // Extended CONNECT end to end (RFC 8441 on both sides).
            Client::H2(s) => connect_h2(s, c, head, route, path, query, ctx, asked).await,
            Client::H1(_) => Err(Fail::Before(GatewayError::UpstreamProtocol {
                upstream: upstream.name.clone(),
                detail: "HTTP/1.1 upgrades to HTTP/2 upstreams are not supported",
            })),
        };
    }
    let adm = Admission::begin(route, ctx, head, path)?;
    let web = ctx.grpc.filter(|k| k.is_web() && route.grpc_web && upstream.http2);
    let grpc_up = upstream.http2 && ctx.grpc.is_some();

    let mut body = if upgrade.is_some() {
        Body::Full(Bytes::new())
    } else {
        let interactive = ctx.grpc == Some(GrpcKind::Grpc);
        read_body(io, c, head, l, limit, web.is_some(), interactive).await?
    };
    if let Body::Full(b) = &body {
        *body_done = true;
        if web == Some(GrpcKind::WebText) {
            let decoded = grpc::decode_text(b).map_err(|e| Fail::Before(GatewayError::BadRequest(e.into())))?;
            body = Body::Full(decoded);
        }
    }
    if web.is_some() {
        let ct = head.headers.get("content-type").map(grpc::upstream_content_type);
        if let Some(ct) = ct {
            head.headers.set(Bytes::from_static(b"content-type"), ct);
        }
        head.headers.remove("x-grpc-web");
    }

    let is_head = &head.method[..] == b"HEAD";
    let replayable = matches!(body, Body::Full(_));
    let safe_method = retry::idempotent(&head.method);
    let may_resend = replayable && (safe_method || route.retry.non_idempotent);
    // An upgrade is never hedged: a second attempt could open a second tunnel.
    let hedge = route.hedge.filter(|_| replayable && safe_method && upstream.targets.len() > 1 && upgrade.is_none());
    let (pre, mut stream_rest) = match body {
        Body::Full(b) => (b, None),
        Body::Stream { pre, rest } => (pre, Some(rest)),
    };
    let framing = match (&stream_rest, pre.is_empty(), head.body) {
        (Some(_), _, _) => BodyKind::Chunked,
        (None, true, BodyKind::Empty) => BodyKind::Empty,
        (None, _, _) => BodyKind::Length(pre.len() as u64),
    };
    let parts = HeadParts { head, route, path, query, fixed_host: adm.fixed_host.clone(), framing, pre: &pre };
    let key = adm.key.as_deref();
    let mut next_pick = Some(adm.first_pick);
    let mut tried = 0u64;
    let mut attempt = 0u32;
    let mut last: Option<Fail> = None;
    let mut _inflight: Option<InflightGuard> = None;
    let (ti, resp, sent_at) = loop {
        attempt += 1;
        ctx.attempts = attempt;
        let Some(mut ti) = next_pick.take().or_else(|| pick_target(upstream, key, tried)) else {
            adm.record(true);
            return Err(
                last.unwrap_or(Fail::Before(GatewayError::NoHealthyUpstream { upstream: upstream.name.clone() }))
            );
        };
        if adm.deadline.is_some_and(|d| Instant::now() >= d) {
            adm.record(true);
            return Err(Fail::Before(GatewayError::DeadlineExceeded { upstream: upstream.name.clone() }));
        }
        tried |= tried_bit(ti);
        ctx.target = Some(ti);
        let target = &upstream.targets[ti];
        target.state.inflight.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        _inflight = Some(InflightGuard(target));
        let span = client_span(ctx.span.as_ref(), &parts.head.method, target);
        let rest = stream_rest.take();
        let limits = (limit, l.body_timeout);
        let (winner, result) = {
            let exchange = async {
                if let (Some(delay), 1, None) = (hedge, attempt, &rest) {
                    let ex = Hedge { parts: &parts, upstream, adm: &adm, grpc: grpc_up, limits, may_resend };
                    ex.run(ti, key, delay, span.as_ref(), ctx.span.as_ref(), &mut c.ubuf, &mut c.timer).await
                } else if target.http2 {
                    (ti, exchange_h2(&parts, target, upstream, rest, &adm, span.as_ref(), grpc_up, limits).await)
                } else {
                    let upgrading = upgrade.is_some();
                    let r = exchange_h1(
                        &parts,
                        target,
                        upstream,
                        &mut c.ubuf,
                        &mut c.timer,
                        rest,
                        &adm,
                        span.as_ref(),
                        upgrading,
                        may_resend,
                        limits,
                    )
                    .await;
                    (ti, r)
                }
            };
            match io {
                // An HTTP/2 client may cancel while we wait: stop, and count the reset.
                Client::H2(s) => {
                    tokio::select! {
                        r = exchange => r,
                        _ = poll_fn(|cx| s.respond.poll_reset(cx)) => {
                            s.resets.note();
                            if let Some(span) = span {
                                span.finish(None, Some("client_reset"));
                            }
                            ctx.error_kind = Some("client_reset");
                            return Err(Fail::After);
                        }
                    }
                }
                Client::H1(_) => exchange.await,
            }
        };
        if let Some(span) = span {
            match &result {
                // A hedged attempt answered first; this one was dropped.
                _ if winner != ti => span.finish(None, Some("hedge_lost")),
                Ok((r, _)) => span.finish(Some(r.status()), None),
                Err(e) => span.finish(None, Some(e.error_type())),
            }
        }
        if winner != ti {
            ti = winner;
            tried |= tried_bit(ti);
            ctx.target = Some(ti);
            upstream.targets[ti].state.inflight.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            _inflight = Some(InflightGuard(&upstream.targets[ti]));
        }
        match result {
            Ok((resp, sent_at)) => {
                let status = resp.status();
                observe_target(upstream, ti, status >= 500);
                if may_resend && route.retry.retries_status(status) {
                    if let Some(wait) = adm.retry_wait(route, attempt, upgrade.is_some()) {
                        drop(resp);
                        ctx.upstream_status = Some(status);
                        tokio::time::sleep(wait).await;
                        continue;
                    }
                }
                break (ti, resp, sent_at);
            }
            Err(e) => {
                let (wait, fail) = adm.attempt_failed(e, route, ti, may_resend, attempt, upgrade.is_some())?;
                last = Some(fail);
                tokio::time::sleep(wait).await;
                continue;
            }
        }
    };
    adm.record(resp.status() >= 500);
    let target = &upstream.targets[ti];
    let t1 = Instant::now();
    ctx.upstream_us = Some(t1.saturating_duration_since(sent_at).as_micros() as u64);
    observe_latency(
        &target.state,
        t1.saturating_duration_since(sent_at),
        crate::upstream::ns_since_epoch(t1.into_std()),
    );
    ctx.upstream_status = Some(resp.status());

    let resp = match (resp, upgrade, &mut *io) {
        (UpResp::H1 { conn, head: rh }, Some(asked), Client::H2(s)) if rh.status == 101 => {
            return tunnel_to_h2(s, c, route, ctx, conn, rh, asked).await;
        }
        (resp, _, _) => resp,
    };
    relay(io, c, parts.head, route, ctx, resp, web, is_head, upstream, target, adm.response_timeout, t1).await
}

/// Reads the request body: whole for HTTP/1.1 clients (the upstream speaks HTTP/2 here) and
/// when `whole`; otherwise up to `PREBUFFER` bytes, then the rest streams.
async fn read_body<S>(
    io: &mut Client<'_, S>,
    c: &mut Conn,
    head: &RequestHead,
    l: &ListenerRt,
    limit: u64,
    whole: bool,
    interactive: bool,
) -> Result<Body, Fail>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let deadline = Instant::now() + l.body_timeout;
    let too_large = || Fail::Before(GatewayError::BodyTooLarge { limit });
    match io {
        Client::H1(io) => {
            if head.body == BodyKind::Empty {
                return Ok(Body::Full(Bytes::new()));
            }
            if head.expect_continue {
                io.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await.map_err(|_| Fail::After)?;
            }
            let mut dec = BodyDecoder::new(head.body);
            let mut buf: Vec<u8> = Vec::new();
            prebuffer(&mut **io, c, &mut dec, &mut buf, limit, u64::MAX, l).await?;
            Ok(Body::Full(Bytes::from(buf)))
        }
        Client::H2(s) => {
            let Some(mut rest) = s.body.take() else { return Ok(Body::Full(Bytes::new())) };
            if interactive {
                // A gRPC call may be a client or bidirectional stream whose sender waits for
                // answers before sending more: nothing may wait for its body, which streams from
                // the first byte (and is sent once).
                return Ok(Body::Stream { pre: Bytes::new(), rest });
            }
            let mut pre: Vec<u8> = Vec::new();
            loop {
                match tokio::time::timeout_at(deadline, rest.data()).await {
                    Err(_) => return Err(Fail::Before(GatewayError::RequestTimeout)),
                    Ok(None) => {
                        s.bytes_in += pre.len() as u64;
                        return Ok(Body::Full(Bytes::from(pre)));
                    }
                    Ok(Some(Ok(d))) => {
                        let _ = rest.flow_control().release_capacity(d.len());
                        pre.extend_from_slice(&d);
                        if pre.len() as u64 > limit {
                            return Err(too_large());
                        }
                        if !whole && pre.len() as u64 >= PREBUFFER {
                            s.bytes_in += pre.len() as u64;
                            return Ok(Body::Stream { pre: Bytes::from(pre), rest });
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

/// What a hedged first attempt needs (the request is replayable: its body is complete).
struct Hedge<'a, 'p> {
    parts: &'a HeadParts<'p>,
    upstream: &'a Upstream,
    adm: &'a Admission<'a>,
    grpc: bool,
    limits: (u64, Duration),
    may_resend: bool,
}

impl Hedge<'_, '_> {
    /// One attempt to `target`, whatever its protocol.
    async fn one(
        &self,
        target: &Target,
        span: Option<&ClientSpan>,
        ubuf: &mut Vec<u8>,
        timer: &mut std::pin::Pin<Box<tokio::time::Sleep>>,
    ) -> Result<(UpResp, Instant), AttemptErr> {
        let (parts, upstream, adm) = (self.parts, self.upstream, self.adm);
        if target.http2 {
            exchange_h2(parts, target, upstream, None, adm, span, self.grpc, self.limits).await
        } else {
            exchange_h1(parts, target, upstream, ubuf, timer, None, adm, span, false, self.may_resend, self.limits)
                .await
        }
    }

    /// The first attempt to `ti`; when no response head came within `delay`, a second to
    /// another target (if the retry budget allows). The first head wins; the other attempt is
    /// dropped (its stream reset, its connection closed). Returns the winner's index, like
    /// `proxy::exchange_hedged` for HTTP/1.1.
    #[allow(clippy::too_many_arguments)]
    async fn run(
        &self,
        ti: usize,
        key: Option<&[u8]>,
        delay: Duration,
        span: Option<&ClientSpan>,
        server_span: Option<&crate::trace::ServerSpan>,
        ubuf: &mut Vec<u8>,
        timer: &mut std::pin::Pin<Box<tokio::time::Sleep>>,
    ) -> (usize, Result<(UpResp, Instant), AttemptErr>) {
        let upstream = self.upstream;
        let first = self.one(&upstream.targets[ti], span, ubuf, timer);
        race_hedge(upstream, ti, key, delay, first, |tj| async move {
            let t2 = &upstream.targets[tj];
            let span2 = client_span(server_span, &self.parts.head.method, t2);
            let (mut ubuf2, mut timer2) = (Vec::new(), Box::pin(tokio::time::sleep(Duration::ZERO)));
            let r = self.one(t2, span2.as_ref(), &mut ubuf2, &mut timer2).await;
            if let Some(s) = span2 {
                match &r {
                    Ok((resp, _)) => s.finish(Some(resp.status()), None),
                    Err(e) => s.finish(None, Some(e.error_type())),
                }
            }
            r
        })
        .await
    }
}

/// One attempt to an HTTP/1.1 target (the client is HTTP/2).
#[allow(clippy::too_many_arguments)]
async fn exchange_h1(
    parts: &HeadParts<'_>,
    target: &Target,
    upstream: &Upstream,
    ubuf: &mut Vec<u8>,
    timer: &mut std::pin::Pin<Box<tokio::time::Sleep>>,
    rest: Option<RecvStream>,
    adm: &Admission<'_>,
    span: Option<&ClientSpan>,
    upgrading: bool,
    may_resend: bool,
    (limit, body_timeout): (u64, Duration),
) -> Result<(UpResp, Instant), AttemptErr> {
    let is_head = &parts.head.method[..] == b"HEAD";
    parts.build(ubuf, target, adm.deadline, span);
    let Some(mut rest) = rest else {
        let (conn, head, t0) = exchange_buffered(
            target,
            upstream,
            ubuf,
            is_head,
            upgrading,
            adm.response_timeout,
            adm.deadline,
            may_resend,
            timer,
        )
        .await?;
        return Ok((UpResp::H1 { conn, head }, t0));
    };
    let t0 = Instant::now();
    let mut conn = match pool::checkout(target.state.id, t0) {
        Some(c) => c,
        None => {
            let Some(_pending) = upstream.state.pending_slot(upstream.max_pending) else {
                return Err(AttemptErr::Overloaded);
            };
            pool::connect(target, upstream.connect_timeout).await.map_err(|e| match e {
                pool::ConnectError::Tls(_) => AttemptErr::Tls,
                e => AttemptErr::Connect { timed_out: e.timed_out() },
            })?
        }
    };
    conn.stream.write_all(ubuf).await.map_err(|_| AttemptErr::Reset)?;
    // The rest of the body, as chunks, within the body deadline.
    let deadline = Instant::now() + body_timeout;
    let mut sent = parts.pre.len() as u64;
    let mut out = Vec::new();
    loop {
        match tokio::time::timeout_at(deadline, rest.data()).await {
            Err(_) => return Err(AttemptErr::Client(Fail::Before(GatewayError::RequestTimeout))),
            Ok(None) => break,
            Ok(Some(Ok(d))) => {
                let _ = rest.flow_control().release_capacity(d.len());
                sent += d.len() as u64;
                if sent > limit {
                    return Err(AttemptErr::Client(Fail::Before(GatewayError::BodyTooLarge { limit })));
                }
                out.clear();
                push_chunk(&mut out, &d);
                conn.stream.write_all(&out).await.map_err(|_| AttemptErr::Reset)?;
            }
            // Dropping the connection mid-chunk: the upstream never sees a complete request.
            Ok(Some(Err(_))) => return Err(AttemptErr::Client(Fail::After)),
        }
    }
    conn.stream.write_all(b"0\r\n\r\n").await.map_err(|_| AttemptErr::Reset)?;
    let sent_at = Instant::now();
    let head_by = adm.deadline.map_or(sent_at + adm.response_timeout, |d| d.min(sent_at + adm.response_timeout));
    match read_response_head(&mut conn, is_head, false, head_by, timer).await {
        Ok(head) => Ok((UpResp::H1 { conn, head }, sent_at)),
        Err(ReadFail::ClosedEarly) => Err(AttemptErr::Reset),
        Err(ReadFail::Timeout) => Err(AttemptErr::Timeout),
        Err(ReadFail::Protocol(d)) => Err(AttemptErr::Protocol(d)),
    }
}

/// One attempt to an HTTP/2 target.
#[allow(clippy::too_many_arguments)]
async fn exchange_h2(
    parts: &HeadParts<'_>,
    target: &Target,
    upstream: &Upstream,
    rest: Option<RecvStream>,
    adm: &Admission<'_>,
    span: Option<&ClientSpan>,
    grpc: bool,
    (limit, body_timeout): (u64, Duration),
) -> Result<(UpResp, Instant), AttemptErr> {
    let t0 = Instant::now();
    let connect_timeout = match adm.deadline {
        Some(d) => upstream.connect_timeout.min(d.saturating_duration_since(t0)),
        None => upstream.connect_timeout,
    };
    let (mut send, slot) = super::client::sender(target, connect_timeout).await.map_err(|e| {
        tracing::debug!(upstream = %upstream.name, target = %target.url, error = %e, "HTTP/2 connect failed");
        match e {
            super::client::H2ConnectError::Connect(pool::ConnectError::Tls(_)) => AttemptErr::Tls,
            super::client::H2ConnectError::Connect(e) => AttemptErr::Connect { timed_out: e.timed_out() },
            super::client::H2ConnectError::Timeout => AttemptErr::Connect { timed_out: true },
            super::client::H2ConnectError::Handshake(_) => AttemptErr::Protocol("HTTP/2 handshake failed"),
        }
    })?;

    let uri = upstream_uri(target, parts.fixed_host.as_ref(), parts.path, parts.query);
    let mut req = http::Request::builder()
        .method(http::Method::from_bytes(&parts.head.method).map_err(|_| AttemptErr::Protocol("method"))?)
        .uri(uri)
        .body(())
        .map_err(|_| AttemptErr::Protocol("request target not valid in HTTP/2"))?;
    *req.headers_mut() = h2_headers(&parts.head.headers);
    let h = req.headers_mut();
    if grpc {
        // gRPC servers require it; the client's own `te` is hop-by-hop and was removed.
        h.insert(http::header::TE, http::HeaderValue::from_static("trailers"));
    }
    if let BodyKind::Length(n) = parts.framing {
        h.insert(http::header::CONTENT_LENGTH, http::HeaderValue::from(n));
    }
    if let Some((n, v)) = parts.deadline_header(adm.deadline) {
        if let (Ok(n), Ok(v)) = (http::HeaderName::from_bytes(&n), http::HeaderValue::from_maybe_shared(v)) {
            h.insert(n, v);
        }
    }
    if let Some(tp) = span.and_then(ClientSpan::traceparent) {
        if let Ok(v) = http::HeaderValue::from_bytes(&tp) {
            h.insert("traceparent", v);
        }
        if let Some(ts) = span.and_then(ClientSpan::tracestate).and_then(|t| http::HeaderValue::from_str(t).ok()) {
            h.insert("tracestate", ts);
        }
    }
    let end = parts.framing == BodyKind::Empty;
    let (resp_fut, mut tx) = send.send_request(req, end).map_err(|e| {
        tracing::debug!(upstream = %upstream.name, error = %e, "HTTP/2 stream refused");
        AttemptErr::Reset
    })?;
    let sent_at = Instant::now();
    let head_by = adm.deadline.map_or(sent_at + adm.response_timeout, |d| d.min(sent_at + adm.response_timeout));
    if !end {
        let pre = Bytes::copy_from_slice(parts.pre);
        match rest {
            None => {
                let sending = send_all(&mut tx, pre, true);
                match tokio::time::timeout_at(head_by, sending).await {
                    Ok(Ok(())) => {}
                    Ok(Err(_)) => return Err(AttemptErr::Reset),
                    Err(_) => return Err(AttemptErr::Timeout),
                }
            }
            Some(rest) => {
                // Concurrent with the response: a bidirectional stream must flow both ways.
                tokio::spawn(pump(pre, rest, tx, limit, body_timeout));
            }
        }
    }
    let resp = match tokio::time::timeout_at(head_by, resp_fut).await {
        Err(_) => return Err(AttemptErr::Timeout),
        Ok(Err(e)) => {
            tracing::debug!(upstream = %upstream.name, error = %e, "HTTP/2 upstream stream failed");
            return Err(if e.reason() == Some(Reason::REFUSED_STREAM) || e.is_go_away() || e.is_io() {
                AttemptErr::Reset
            } else {
                AttemptErr::Protocol("HTTP/2 stream error")
            });
        }
        Ok(Ok(r)) => r,
    };
    let (rp, body) = resp.into_parts();
    let (headers, length) = from_h2_headers(&rp.headers);
    Ok((UpResp::H2 { status: rp.status.as_u16(), headers, body, length, _slot: slot }, sent_at))
}

/// Streams the rest of an HTTP/2 client's body to an HTTP/2 upstream stream.
async fn pump(pre: Bytes, mut rest: RecvStream, mut tx: SendStream<Bytes>, limit: u64, body_timeout: Duration) {
    let mut sent = pre.len() as u64;
    if send_all(&mut tx, pre, false).await.is_err() {
        return;
    }
    let deadline = Instant::now() + body_timeout;
    loop {
        match tokio::time::timeout_at(deadline, rest.data()).await {
            Ok(Some(Ok(d))) => {
                let _ = rest.flow_control().release_capacity(d.len());
                sent += d.len() as u64;
                if sent > limit || send_all(&mut tx, d, false).await.is_err() {
                    tx.send_reset(Reason::CANCEL);
                    return;
                }
            }
            Ok(None) => {
                let _ = tx.send_data(Bytes::new(), true);
                return;
            }
            // The client's body failed (reset, malformed, too slow): the upstream must never
            // see it as complete.
            Ok(Some(Err(_))) | Err(_) => {
                tx.send_reset(Reason::CANCEL);
                return;
            }
        }
    }
}

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
    text: Option<grpc::TextEncoder>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Out<'_, '_, S> {
    async fn head(
        &mut self,
        status: u16,
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
            Client::H1(_) => {
                let w = &mut self.c.wbuf;
                w.clear();
                w.extend_from_slice(if minor == 1 { b"HTTP/1.1 " } else { b"HTTP/1.0 " });
                push_u64(w, status as u64);
                w.push(b' ');
                let reason = http::StatusCode::from_u16(status).ok().and_then(|s| s.canonical_reason());
                w.extend_from_slice(reason.unwrap_or("").as_bytes());
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
    fn broken(&mut self, upstream: &str, detail: &'static str) -> Fail {
        if let Some(tx) = self.tx.as_mut() {
            tx.send_reset(Reason::INTERNAL_ERROR);
            return Fail::After;
        }
        if self.started {
            Fail::After
        } else {
            Fail::Before(GatewayError::UpstreamProtocol { upstream: upstream.to_string(), detail })
        }
    }
}

/// Relays the upstream's response (head, body, trailers) to the client.
#[allow(clippy::too_many_arguments)]
async fn relay<S>(
    io: &mut Client<'_, S>,
    c: &mut Conn,
    head: &RequestHead,
    route: &Route,
    ctx: &mut RequestCtx,
    resp: UpResp,
    web: Option<GrpcKind>,
    is_head: bool,
    upstream: &Upstream,
    target: &Target,
    response_timeout: Duration,
    t1: Instant,
) -> Result<bool, Fail>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
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
                BodyKind::Empty => keep_cl.or(Some(0)),
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
    response_phase(route, ctx, &mut status, &mut headers);
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
    if matches!(io, Client::H2(_)) && (status == 204 || status == 304 || is_head) && length == Some(0) {
        length = None;
    }
    ctx.status = status;
    let minor = head.minor;
    let h1_keep = head.keep_alive && !c.stopping() && (length.is_some() || minor == 1);
    let mut out = Out {
        io,
        c,
        tx: None,
        chunked: false,
        started: false,
        head_only: is_head,
        text: (web == Some(GrpcKind::WebText)).then(grpc::TextEncoder::default),
    };
    let empty_now = empty || is_head;
    out.head(status, &headers, length, empty_now, h1_keep, minor).await?;
    if empty_now {
        if let UpResp::H1 { conn, head: rh } = resp {
            if rh.keep_alive && rh.body != BodyKind::UntilClose {
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
                                ctx.error_kind = Some("upstream_truncated");
                                return Err(out.broken(&upstream.name, "response body truncated"));
                            }
                            Ok(Ok(_)) => {}
                        }
                    }
                    Err(_) => {
                        ctx.error_kind = Some("upstream_invalid_response");
                        return Err(out.broken(&upstream.name, "malformed response body"));
                    }
                }
            }
            if rh.keep_alive && rh.body != BodyKind::UntilClose {
                pool::checkin(target.state.id, conn, upstream.max_idle_per_target, t1 + upstream.pool_idle_timeout);
            }
        }
        UpResp::H2 { mut body, .. } => {
            loop {
                match tokio::time::timeout(response_timeout, body.data()).await {
                    Ok(Some(Ok(d))) => {
                        let _ = body.flow_control().release_capacity(d.len());
                        out.data(d).await?;
                    }
                    Ok(None) => break,
                    Ok(Some(Err(_))) | Err(_) => {
                        ctx.error_kind = Some("upstream_truncated");
                        return Err(out.broken(&upstream.name, "response body truncated"));
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
                    ctx.error_kind = Some("upstream_truncated");
                    return Err(out.broken(&upstream.name, "response trailers missing"));
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

/// An HTTP/2 client's extended CONNECT to an HTTP/2 upstream: the same CONNECT upstream (only
/// to a target that announced `SETTINGS_ENABLE_CONNECT_PROTOCOL`), and once it answered 2xx, the
/// two streams' DATA frames are the tunnel. Any other answer is relayed as a normal response.
/// Never retried (a second attempt could open a second session).
#[allow(clippy::too_many_arguments)]
async fn connect_h2(
    s: &mut crate::http2::server::Stream,
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
    let (mut send, slot) = match super::client::sender(target, upstream.connect_timeout).await {
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
        return relay(
            &mut client,
            c,
            head,
            route,
            ctx,
            resp,
            None,
            false,
            upstream,
            target,
            adm.response_timeout,
            Instant::now(),
        )
        .await;
    }
    let mut st = status;
    response_phase(route, ctx, &mut st, &mut headers);
    ctx.status = status;
    let mut r = http::Response::new(());
    *r.status_mut() = rp.status;
    *r.headers_mut() = h2_headers(&headers);
    let Ok(tx) = s.respond.send_response(r, false) else { return Err(Fail::After) };
    let Some(rx) = s.body.take() else { return Ok(true) };
    let mut client_io = super::io::H2Io::new(tx, rx);
    let mut upstream_io = super::io::H2Io::new(up_tx, up_rx);
    let (end, up, down) = crate::tunnel::run(&mut client_io, &mut upstream_io, route.tunnel_idle, &c.shared).await;
    s.bytes_in += up;
    s.bytes_out += down;
    ctx.error_kind = end.error_kind();
    Ok(true)
}

/// The HTTP/1.1 upstream switched protocols for an HTTP/2 client's extended CONNECT: answer
/// 200 on the stream and copy bytes between the stream's DATA frames and the upstream socket.
async fn tunnel_to_h2(
    s: &mut crate::http2::server::Stream,
    c: &mut Conn,
    route: &Route,
    ctx: &mut RequestCtx,
    mut conn: UpConn,
    mut resp: http1::ResponseHead,
    asked: &Bytes,
) -> Result<bool, Fail> {
    if !upgrade_matches(asked, &resp) {
        ctx.error_kind = Some("upstream_invalid_response");
        return Err(Fail::Before(GatewayError::UpstreamProtocol {
            upstream: route.upstream.name.clone(),
            detail: "101 without a matching Upgrade",
        }));
    }
    http1::strip_hop_by_hop(&mut resp.headers);
    // HTTP/1.1's key/accept handshake does not exist in RFC 8441.
    resp.headers.remove("sec-websocket-accept");
    let mut status = 200;
    response_phase(route, ctx, &mut status, &mut resp.headers);
    ctx.status = 200;
    let mut r = http::Response::new(());
    *r.headers_mut() = h2_headers(&resp.headers);
    let Ok(tx) = s.respond.send_response(r, false) else { return Err(Fail::After) };
    let Some(rx) = s.body.take() else { return Ok(true) };
    let mut tunnel = super::io::H2Io::new(tx, rx);
    if !conn.rbuf.is_empty() {
        let early = conn.rbuf.split();
        tunnel.write_all(&early).await.map_err(|_| Fail::After)?;
    }
    let (end, up, down) = crate::tunnel::run(&mut tunnel, &mut conn.stream, route.tunnel_idle, &c.shared).await;
    s.bytes_in += up;
    s.bytes_out += down;
    ctx.error_kind = end.error_kind();
    Ok(true)
}
