//! The one forwarder: every request that a route sends to an upstream goes through `forward`,
//! whatever the client's protocol (HTTP/1.1 connection or HTTP/2 stream) and the target's
//! (HTTP/1.1, HTTP/2, either over TLS).
//!
//! In the order it runs:
//! 1. upgrades that need their own path (`tunnel.rs`: an extended CONNECT end to end);
//! 2. admission (`admission.rs`: breaker, request cap, retry budget, first target), before the
//!    body is read;
//! 3. the request body (`body.rs`: read ahead, whole, or streaming);
//! 4. the attempt loop (here): target choice, the route's deadline, the attempt's CLIENT span,
//!    hedging, retries by status or failure, passive health and the breaker; each attempt goes
//!    through the target's leg (`h1.rs` or `h2.rs`) and yields an `UpResp`;
//! 5. a `101` to an upgrade → `tunnel.rs`; anything else → `relay.rs`.
//!
//! Invariants:
//! - There is one attempt loop and one relay for every protocol pair: a rule (retry, deadline,
//!   hedge, health feedback, framing) is written once and holds for all of them.
//! - Nothing reaches an upstream before admission said yes and the read-ahead part of the body
//!   passed its checks.
//! - A request is sent more than once only when it is replayable (`ReqBody::replayable`) and
//!   the retry rules allow it; an upgrade or a streamed body is sent once.

pub(crate) mod admission;
pub(crate) mod body;
pub(crate) mod h1;
pub(crate) mod h2;
pub(crate) mod relay;
pub mod tunnel;

use std::future::poll_fn;
use std::sync::atomic::Ordering;

use ::h2::RecvStream;
use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::{Duration, Instant};

use crate::ctx::RequestCtx;
use crate::downstream::{Client, Conn, Fail};
use crate::error::GatewayError;
use crate::grpc::{self, GrpcKind};
use crate::http1::{self, RequestHead};
use crate::retry;
use crate::snapshot::{ListenerRt, Route};
use crate::trace::ClientSpan;
use crate::upstream::pool::UpConn;
use crate::upstream::{observe_latency, Target, Upstream};
use admission::{
    client_span, observe_target, pick_target, race_hedge, tried_bit, Admission, AttemptErr, InflightGuard,
};
use body::{read_request_body, BodyMode, RestSrc};
use h1::{H1Opts, HeadParts, Rest};
use http1::BodyDecoder;

pub use body::PREBUFFER;

/// An upstream's response head, and where its body comes from.
pub(crate) enum UpResp {
    H1 {
        conn: UpConn,
        head: http1::ResponseHead,
    },
    /// `_slot` holds the stream's place on its upstream connection until the response is done.
    H2 {
        status: u16,
        headers: crate::http1::Headers,
        body: RecvStream,
        length: Option<u64>,
        _slot: crate::http2::client::StreamSlot,
    },
}

impl UpResp {
    pub(crate) fn status(&self) -> u16 {
        match self {
            UpResp::H1 { head, .. } => head.status,
            UpResp::H2 { status, .. } => *status,
        }
    }
}

/// One attempt's result: the response head and when the request was sent.
pub(crate) type Attempt = Result<(UpResp, Instant), AttemptErr>;

/// The request as the route sends it upstream.
pub(crate) struct Outgoing<'a> {
    pub head: &'a mut RequestHead,
    pub route: &'a Route,
    /// The path to send (normalised, then rewritten by the route).
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub listener: &'a ListenerRt,
    /// The body limit (the route's, else the listener's).
    pub limit: u64,
    /// The protocols of an upgrade request the route allows.
    pub upgrade: Option<&'a Bytes>,
}

/// Sends the request upstream (with retries, hedging, the deadline, the breaker and the
/// upstream's limits) and relays the response. `Ok(keep_alive)` on success. `body_done` is set
/// once the client's body was read completely.
pub(crate) async fn forward<S>(
    io: &mut Client<'_, S>,
    c: &mut Conn,
    out: Outgoing<'_>,
    ctx: &mut RequestCtx,
    body_done: &mut bool,
) -> Result<bool, Fail>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let Outgoing { head, route, path, query, listener: l, limit, upgrade } = out;
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
            Client::H2(s) => Box::pin(tunnel::connect_h2(s, c, head, route, path, query, ctx, asked)).await,
            Client::H1(_) | Client::Capture(_) => Err(Fail::Before(GatewayError::UpstreamProtocol {
                upstream: upstream.name.clone(),
                detail: "HTTP/1.1 upgrades to HTTP/2 upstreams are not supported",
            })),
        };
    }
    let adm = Admission::begin(route, ctx, head, path)?;
    let web = ctx.grpc.filter(|k| k.is_web() && route.grpc_web && upstream.http2);
    let grpc_up = upstream.http2 && ctx.grpc.is_some();

    let mut body = if upgrade.is_some() {
        body::ReqBody::empty()
    } else {
        // The request body phase needs the whole body (under the route's limit).
        let whole =
            web.is_some() || (upstream.http2 && matches!(io, Client::H1(_))) || route.stack.needs_request_body();
        let mode = BodyMode { whole, interactive: ctx.grpc == Some(GrpcKind::Grpc) };
        read_request_body(io, c, head, l, limit, mode, body_done).await?
    };
    if route.stack.needs_request_body() && upgrade.is_none() && body.replayable() {
        let mut b = body.pre.to_vec();
        route.stack.on_request_body(ctx, &mut head.headers, &mut b).map_err(Fail::Before)?;
        if b.len() as u64 > limit {
            return Err(Fail::Before(GatewayError::BodyTooLarge { limit }));
        }
        if !(b.is_empty() && body.framing == http1::BodyKind::Empty) {
            body.framing = http1::BodyKind::Length(b.len() as u64);
        }
        body.pre = Bytes::from(b);
    }
    if web == Some(GrpcKind::WebText) && body.replayable() {
        let decoded = grpc::decode_text(&body.pre).map_err(|e| Fail::Before(GatewayError::BadRequest(e.into())))?;
        body.framing = http1::BodyKind::Length(decoded.len() as u64);
        body.pre = decoded;
    }
    if web.is_some() {
        let ct = head.headers.get("content-type").map(grpc::upstream_content_type);
        if let Some(ct) = ct {
            head.headers.set(Bytes::from_static(b"content-type"), ct);
        }
        head.headers.remove("x-grpc-web");
    }

    let replayable = body.replayable();
    let safe_method = retry::idempotent(&head.method);
    // Sending the request again after it may have reached the upstream.
    let may_resend = replayable && (safe_method || route.retry.non_idempotent);
    // An upgrade is never hedged or retried: a second attempt could open a second tunnel.
    let hedge = route.hedge.filter(|_| replayable && safe_method && upstream.targets.len() > 1 && upgrade.is_none());
    // The unread rest of a body: an HTTP/1.1 client's stays behind its decoder (untouched when
    // an attempt fails to connect, so the next attempt can still send it); an HTTP/2 client's
    // stream is handed to the first attempt that sends it, and is gone after that.
    let (mut h1_rest, mut h2_rest): (Option<BodyDecoder>, Option<RecvStream>) = match body.rest {
        RestSrc::None => (None, None),
        RestSrc::H1(dec) => (Some(dec), None),
        RestSrc::H2(rx) => (None, Some(rx)),
    };
    let mut rest_gone = false;
    let pre = body.pre;
    let parts =
        HeadParts { head, route, path, query, fixed_host: adm.fixed_host.clone(), framing: body.framing, pre: &pre };
    let opts = H1Opts { upgrading: upgrade.is_some(), limit, body_timeout: l.body_timeout };
    let key = adm.key.as_deref();
    let mut next_pick = Some(adm.first_pick);
    let mut tried = 0u64;
    let mut attempt = 0u32;
    let mut last: Option<Fail> = None;
    let mut _inflight: Option<InflightGuard> = None;
    let outcome = loop {
        attempt += 1;
        ctx.attempts = attempt;
        let Some(mut ti) = next_pick.take().or_else(|| pick_target(upstream, key, tried)) else {
            adm.record(true);
            break Err(
                last.unwrap_or(Fail::Before(GatewayError::NoHealthyUpstream { upstream: upstream.name.clone() }))
            );
        };
        if adm.deadline.is_some_and(|d| Instant::now() >= d) {
            adm.record(true);
            break Err(Fail::Before(GatewayError::DeadlineExceeded { upstream: upstream.name.clone() }));
        }
        tried |= tried_bit(ti);
        ctx.target = Some(ti);
        let target = &upstream.targets[ti];
        target.state.inflight.fetch_add(1, Ordering::Relaxed);
        _inflight = Some(InflightGuard(target));
        let span = client_span(ctx.span.as_ref(), &parts.head.method, target);
        let leg = Leg { parts: &parts, upstream, adm: &adm, grpc: grpc_up, opts: &opts };
        let (winner, result) = if let (Some(delay), 1) = (hedge, attempt) {
            // A hedged first attempt (the request is complete in memory).
            // Boxed: the race holds two attempts; inline it would make every request's future
            // carry their space (see "Future sizes" in docs/architecture.md).
            let run = Box::pin(leg.hedged(ti, key, delay, span.as_ref(), ctx.span.as_ref(), &mut c.ubuf, &mut c.timer));
            match cancelled(io, run).await {
                Some(r) => r,
                None => return Err(client_reset(ctx, span)),
            }
        } else if let (Client::H1(h), false) = (&mut *io, target.http2) {
            // HTTP/1.1 on both sides, the common case: the leg directly (an HTTP/1.1 client cannot
            // cancel a stream, so nothing to race it against). The rest of a body still on the
            // client connection streams from it (an HTTP/1.1 client's body for an HTTP/2 target
            // is read whole, so it never has one).
            let rest = match h1_rest.as_mut() {
                Some(dec) => Rest::H1 { io: &mut **h, rbuf: &mut c.rbuf, dec, body_done: &mut *body_done },
                None => Rest::None,
            };
            let r = h1::exchange(&parts, target, upstream, &adm, &mut c.ubuf, &mut c.timer, rest, span.as_ref(), &opts);
            (ti, r.await)
        } else {
            let had = h2_rest.is_some();
            let r = match cancelled(io, leg.one(target, &mut h2_rest, span.as_ref(), &mut c.ubuf, &mut c.timer)).await {
                Some(r) => (ti, r),
                None => return Err(client_reset(ctx, span)),
            };
            rest_gone |= had && h2_rest.is_none();
            r
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
            upstream.targets[ti].state.inflight.fetch_add(1, Ordering::Relaxed);
            _inflight = Some(InflightGuard(&upstream.targets[ti]));
        }
        match result {
            Ok((resp, sent_at)) => {
                let status = resp.status();
                observe_target(upstream, ti, status >= 500);
                if may_resend && route.retry.retries_status(status) {
                    if let Some(wait) = adm.retry_wait(route, attempt, upgrade.is_some()) {
                        // The answer is dropped unread with its connection or stream.
                        drop(resp);
                        ctx.upstream_status = Some(status);
                        tracing::debug!(upstream = %upstream.name, status, attempt, "retrying");
                        tokio::time::sleep(wait).await;
                        continue;
                    }
                }
                break Ok((ti, resp, sent_at));
            }
            Err(e) => {
                // A streamed HTTP/2 body that went out with the failed attempt cannot go again.
                let once = upgrade.is_some() || rest_gone;
                let (wait, fail) = match adm.attempt_failed(e, route, ti, may_resend, attempt, once) {
                    Ok(w) => w,
                    Err(f) => break Err(f),
                };
                last = Some(fail);
                tokio::time::sleep(wait).await;
                continue;
            }
        }
    };
    let (ti, resp, sent_at) = match outcome {
        Ok(v) => v,
        Err(f) => {
            // An HTTP/2 client's body that no attempt sent stays with its stream until after the
            // answer (then `serve::h2` drains it): dropped now, the answer would be followed by a
            // reset of a stream the client is still sending on.
            if let (Client::H2(s), Some(rx)) = (&mut *io, h2_rest.take()) {
                s.body = Some(rx);
            }
            return Err(f);
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
        (UpResp::H1 { conn, head: rh }, Some(asked), Client::H1(h)) if rh.status == 101 => {
            return Box::pin(tunnel::tunnel(&mut **h, c, route, ctx, conn, rh, asked)).await;
        }
        (UpResp::H1 { conn, head: rh }, Some(asked), Client::H2(s)) if rh.status == 101 => {
            return Box::pin(tunnel::tunnel_to_h2(s, c, route, ctx, conn, rh, asked)).await;
        }
        (resp, _, _) => resp,
    };
    let a = relay::Answering {
        head: parts.head,
        route,
        target,
        web,
        upgrading: upgrade.is_some(),
        response_timeout: adm.response_timeout,
        t1,
    };
    relay::relay(io, c, ctx, resp, a).await
}

/// Runs `exchange`; for an HTTP/2 client, stops when the client resets its stream (`None`, the
/// reset counted against the connection's budget).
async fn cancelled<S, T>(io: &mut Client<'_, S>, exchange: impl std::future::Future<Output = T>) -> Option<T> {
    match io {
        Client::H2(s) => {
            tokio::select! {
                r = exchange => Some(r),
                _ = poll_fn(|cx| s.respond.poll_reset(cx)) => {
                    s.resets.note();
                    None
                }
            }
        }
        Client::H1(_) | Client::Capture(_) => Some(exchange.await),
    }
}

/// The client reset its stream while an attempt was running.
fn client_reset(ctx: &mut RequestCtx, span: Option<ClientSpan>) -> Fail {
    if let Some(span) = span {
        span.finish(None, Some("client_reset"));
    }
    ctx.error_kind = Some(crate::error::ErrorKind::ClientReset);
    Fail::After
}

/// One attempt to any target, whatever its protocol, for a body that is complete in memory or
/// streams from an HTTP/2 client.
struct Leg<'a, 'p> {
    parts: &'a HeadParts<'p>,
    upstream: &'a Upstream,
    adm: &'a Admission<'a>,
    /// The request is gRPC toward an HTTP/2 upstream (`te: trailers`).
    grpc: bool,
    opts: &'a H1Opts,
}

impl Leg<'_, '_> {
    async fn one(
        &self,
        target: &Target,
        rest: &mut Option<RecvStream>,
        span: Option<&ClientSpan>,
        ubuf: &mut Vec<u8>,
        timer: &mut crate::timer::LazyTimer,
    ) -> Attempt {
        let (parts, upstream, adm) = (self.parts, self.upstream, self.adm);
        if target.http2 {
            let limits = (self.opts.limit, self.opts.body_timeout);
            h2::exchange(parts, target, upstream, rest, adm, span, self.grpc, limits).await
        } else {
            let rest: Rest<'_, tokio::net::TcpStream> = if rest.is_some() { Rest::H2(rest) } else { Rest::None };
            h1::exchange(parts, target, upstream, adm, ubuf, timer, rest, span, self.opts).await
        }
    }

    /// The first attempt to `ti`; when no response head came within `delay`, a second to
    /// another target (if the retry budget allows). The first head wins; the other attempt is
    /// dropped (its stream reset, its connection closed). Returns the winner's index.
    #[allow(clippy::too_many_arguments)]
    async fn hedged(
        &self,
        ti: usize,
        key: Option<&[u8]>,
        delay: Duration,
        span: Option<&ClientSpan>,
        server_span: Option<&crate::trace::ServerSpan>,
        ubuf: &mut Vec<u8>,
        timer: &mut crate::timer::LazyTimer,
    ) -> (usize, Attempt) {
        let upstream = self.upstream;
        // A hedged request is complete in memory: no streamed rest.
        let mut no_rest = None;
        let first = self.one(&upstream.targets[ti], &mut no_rest, span, ubuf, timer);
        race_hedge(upstream, ti, key, delay, first, |tj| async move {
            let t2 = &upstream.targets[tj];
            // The hedged attempt is an attempt of its own: its own CLIENT span, ended with its outcome.
            let span2 = client_span(server_span, &self.parts.head.method, t2);
            let (mut ubuf2, mut timer2) = (Vec::new(), crate::timer::LazyTimer::new());
            let r = self.one(t2, &mut None, span2.as_ref(), &mut ubuf2, &mut timer2).await;
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
