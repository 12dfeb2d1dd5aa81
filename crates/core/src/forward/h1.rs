//! The HTTP/1.1 upstream leg: one attempt to an `http://` or `https://` (HTTP/1.1) target.
//! It writes the request head (and the buffered body) in one write on a pooled or new
//! connection, streams the rest of a body that was not buffered (from an HTTP/1.1 or an HTTP/2
//! client), and reads the response head.
//!
//! Invariants:
//! - Touches no client state but the body it streams, so two attempts can run at once (hedging).
//! - A new connection's connect is bounded by `timeouts.connect` cut to the route's deadline,
//!   and counted against `max_pending`.
//! - A reused connection is re-sent on a fresh one (not counted as an attempt) only when nothing
//!   of the request can have been processed: its write failed. A connection that takes the
//!   request and then closes without answering may have processed it: that is an attempt that
//!   failed (`upstream_reset`), and sending it again is a retry, under the route's retry rules.
//!   A backend therefore sees at most `retry.attempts` deliveries of a request.
//! - Interim 1xx answers are skipped; a 101 is accepted only when this hop asked to upgrade.

use crate::timer::LazyTimer;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use h2::RecvStream;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

use super::admission::{Admission, AttemptErr};
use super::body::read_more_body;
use super::UpResp;
use crate::downstream::{reserve, Fail};
use crate::error::GatewayError;
use crate::http1::push_u64;
use crate::http1::{self, parse_response, BodyDecoder, BodyKind, Decoded, RequestHead};
use crate::snapshot::Route;
use crate::trace::ClientSpan;
use crate::upstream::pool::{self, UpConn};
use crate::upstream::{Target, Upstream};

const MAX_RESPONSE_HEAD: usize = 64 * 1024;

/// Everything needed to write the request head for one attempt.
pub(crate) struct HeadParts<'a> {
    pub(crate) head: &'a RequestHead,
    pub(crate) route: &'a Route,
    pub(crate) path: &'a str,
    pub(crate) query: Option<&'a str>,
    /// The client's Host (routes with `preserve_host` or a `Host` set by request_headers).
    pub(crate) fixed_host: Option<Bytes>,
    pub(crate) framing: BodyKind,
    pub(crate) pre: &'a [u8],
}

impl HeadParts<'_> {
    /// The remaining-deadline header for an attempt, when the route propagates its deadline.
    pub(crate) fn deadline_header(&self, deadline: Option<Instant>) -> Option<(Bytes, Bytes)> {
        match (&self.route.deadline, deadline) {
            (Some(d), Some(at)) => {
                d.header.as_ref().map(|h| (h.clone(), d.value(at.saturating_duration_since(Instant::now()))))
            }
            _ => None,
        }
    }

    /// The request for `target`: head (with the remaining deadline, if propagated) and the
    /// buffered body.
    pub(crate) fn build(
        &self,
        out: &mut Vec<u8>,
        target: &Target,
        deadline: Option<Instant>,
        trace: Option<&ClientSpan>,
    ) {
        let host = self.fixed_host.as_ref().unwrap_or(&target.authority);
        let extra = self.deadline_header(deadline);
        write_request_head(out, self.head, self.path, self.query, host, self.framing, extra, trace);
        if self.framing == BodyKind::Chunked {
            if !self.pre.is_empty() {
                push_chunk(out, self.pre);
            }
        } else {
            out.extend_from_slice(self.pre);
        }
    }
}

/// A pooled connection to `target`, or a new one (counted against `max_pending`).
async fn get_conn(
    target: &Target,
    upstream: &Upstream,
    now: Instant,
    deadline: Option<Instant>,
) -> Result<UpConn, AttemptErr> {
    if let Some(conn) = pool::checkout(target.state.id, now) {
        return Ok(conn);
    }
    let Some(_pending) = upstream.state.pending_slot(upstream.max_pending) else {
        return Err(AttemptErr::Overloaded);
    };
    let timeout = match deadline {
        Some(d) => upstream.connect_timeout.min(d.saturating_duration_since(now)),
        None => upstream.connect_timeout,
    };
    pool::connect(target, timeout).await.map_err(|e| {
        tracing::debug!(upstream = %upstream.name, target = %target.url, error = %e, "connect failed");
        match e {
            pool::ConnectError::Tls(e) => {
                tracing::warn!(upstream = %upstream.name, target = %target.url, error = %e, "upstream TLS handshake failed");
                AttemptErr::Tls
            }
            e => AttemptErr::Connect { timed_out: e.timed_out() },
        }
    })
}

/// Where the part of a request body that was not buffered comes from (it is sent once).
pub(crate) enum Rest<'a, S> {
    /// Nothing: the body is complete in `HeadParts::pre`, and can be sent again.
    None,
    /// Still on the HTTP/1.1 client connection (`rbuf` holds what was read ahead of it).
    H1 { io: &'a mut S, rbuf: &'a mut BytesMut, dec: &'a mut BodyDecoder, body_done: &'a mut bool },
    /// Still on the HTTP/2 client stream: taken from the slot only once the head went out, so an
    /// attempt that fails before keeps it for the answer's stream (see `forward`).
    H2(&'a mut Option<RecvStream>),
}

/// What an HTTP/1.1 attempt needs beyond the request.
pub(crate) struct H1Opts {
    pub upgrading: bool,
    pub limit: u64,
    pub body_timeout: Duration,
}

/// One attempt to an HTTP/1.1 target: head and buffered body in one write, the rest of the body
/// streamed, then the response head.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn exchange<S: AsyncRead + Unpin>(
    parts: &HeadParts<'_>,
    target: &Target,
    upstream: &Upstream,
    adm: &Admission<'_>,
    ubuf: &mut Vec<u8>,
    timer: &mut LazyTimer,
    rest: Rest<'_, S>,
    span: Option<&ClientSpan>,
    o: &H1Opts,
) -> Result<(UpResp, Instant), AttemptErr> {
    let is_head = &parts.head.method[..] == b"HEAD";
    parts.build(ubuf, target, adm.deadline, span);
    let buffered = matches!(rest, Rest::None);
    let mut fresh_try = false;
    let mut conn = loop {
        let t0 = Instant::now();
        let mut conn = get_conn(target, upstream, t0, adm.deadline).await?;
        let reused = conn.reused && !fresh_try;
        if conn.stream.write_all(ubuf).await.is_err() {
            // Only the head and the buffered start were sent, and they failed: safe to send again.
            if reused {
                fresh_try = true;
                continue;
            }
            return Err(AttemptErr::Reset);
        }
        if !buffered {
            break conn;
        }
        let head_by = head_deadline(adm, t0);
        match read_response_head(&mut conn, is_head, o.upgrading, head_by, timer).await {
            Ok(head) => return Ok((UpResp::H1 { conn, head }, t0)),
            Err(e) => return Err(e.into()),
        }
    };
    send_rest(&mut conn, rest, parts.framing, parts.pre.len() as u64, o.limit, o.body_timeout).await?;
    let sent_at = Instant::now();
    match read_response_head(&mut conn, is_head, false, head_deadline(adm, sent_at), timer).await {
        Ok(head) => Ok((UpResp::H1 { conn, head }, sent_at)),
        Err(e) => Err(e.into()),
    }
}

/// When the response head must have arrived for a request sent at `sent`: the attempt's
/// timeout, cut to the route's deadline.
pub(crate) fn head_deadline(adm: &Admission<'_>, sent: Instant) -> Instant {
    let by = sent + adm.response_timeout;
    adm.deadline.map_or(by, |d| d.min(by))
}

/// Streams the rest of the client's body upstream (re-chunked when `framing` is chunked) within
/// the listener's body deadline, refusing it past `limit`.
async fn send_rest<S: AsyncRead + Unpin>(
    conn: &mut UpConn,
    rest: Rest<'_, S>,
    framing: BodyKind,
    mut sent: u64,
    limit: u64,
    body_timeout: Duration,
) -> Result<(), AttemptErr> {
    let deadline = Instant::now() + body_timeout;
    let chunked = framing == BodyKind::Chunked;
    let too_large = || AttemptErr::Client(Fail::Before(GatewayError::BodyTooLarge { limit }));
    let mut out: Vec<u8> = Vec::new();
    match rest {
        Rest::None => return Ok(()),
        Rest::H1 { io, rbuf, dec, body_done } => {
            loop {
                match dec.decode(rbuf) {
                    Ok(Decoded::Data(d)) => {
                        sent += d.len() as u64;
                        if sent > limit {
                            return Err(too_large());
                        }
                        send_piece(conn, &mut out, &d, chunked).await?;
                    }
                    Ok(Decoded::Done) => break,
                    Ok(Decoded::NeedMore) => read_more_body(io, rbuf, deadline).await.map_err(AttemptErr::Client)?,
                    Err(e) => return Err(AttemptErr::Client(Fail::Before(GatewayError::BadRequest(e.to_string())))),
                }
            }
            *body_done = true;
        }
        Rest::H2(slot) => {
            let Some(mut rx) = slot.take() else { return Ok(()) };
            loop {
                match tokio::time::timeout_at(deadline, rx.data()).await {
                    Err(_) => return Err(AttemptErr::Client(Fail::Before(GatewayError::RequestTimeout))),
                    Ok(None) => break,
                    Ok(Some(Ok(d))) => {
                        let _ = rx.flow_control().release_capacity(d.len());
                        sent += d.len() as u64;
                        if sent > limit {
                            return Err(too_large());
                        }
                        send_piece(conn, &mut out, &d, chunked).await?;
                    }
                    // Dropping the connection mid-chunk: the upstream never sees a complete request.
                    Ok(Some(Err(_))) => return Err(AttemptErr::Client(Fail::After)),
                }
            }
        }
    }
    if chunked {
        conn.stream.write_all(b"0\r\n\r\n").await.map_err(|_| AttemptErr::Reset)?;
    }
    Ok(())
}

/// Writes one piece of a streamed body upstream, as a chunk when the framing is chunked.
async fn send_piece(conn: &mut UpConn, out: &mut Vec<u8>, d: &[u8], chunked: bool) -> Result<(), AttemptErr> {
    out.clear();
    if chunked {
        push_chunk(out, d);
    } else {
        out.extend_from_slice(d);
    }
    conn.stream.write_all(out).await.map_err(|_| AttemptErr::Reset)
}

impl From<ReadFail> for AttemptErr {
    fn from(f: ReadFail) -> AttemptErr {
        match f {
            ReadFail::ClosedEarly => AttemptErr::Reset,
            ReadFail::Timeout => AttemptErr::Timeout,
            ReadFail::Protocol(d) => AttemptErr::Protocol(d),
        }
    }
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn write_request_head(
    out: &mut Vec<u8>,
    head: &RequestHead,
    path: &str,
    query: Option<&str>,
    host: &[u8],
    framing: BodyKind,
    extra: Option<(Bytes, Bytes)>,
    trace: Option<&ClientSpan>,
) {
    out.clear();
    out.extend_from_slice(&head.method);
    out.push(b' ');
    out.extend_from_slice(path.as_bytes());
    if let Some(q) = query {
        out.push(b'?');
        out.extend_from_slice(q.as_bytes());
    }
    out.extend_from_slice(b" HTTP/1.1\r\nhost: ");
    out.extend_from_slice(host);
    out.extend_from_slice(b"\r\n");
    head.headers.write_except(out, http1::Known::Host);
    match framing {
        BodyKind::Length(n) => {
            out.extend_from_slice(b"content-length: ");
            push_u64(out, n);
            out.extend_from_slice(b"\r\n");
        }
        BodyKind::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
        BodyKind::Empty | BodyKind::UntilClose => {}
    }
    if let Some((n, v)) = extra {
        out.extend_from_slice(&n);
        out.extend_from_slice(b": ");
        out.extend_from_slice(&v);
        out.extend_from_slice(b"\r\n");
    }
    if let Some(tp) = trace.and_then(ClientSpan::traceparent) {
        out.extend_from_slice(b"traceparent: ");
        out.extend_from_slice(&tp);
        out.extend_from_slice(b"\r\n");
        if let Some(ts) = trace.and_then(ClientSpan::tracestate) {
            out.extend_from_slice(b"tracestate: ");
            out.extend_from_slice(ts.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
    }
    out.extend_from_slice(b"\r\n");
}

pub(crate) fn push_chunk(out: &mut Vec<u8>, data: &[u8]) {
    out.extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

pub(crate) enum ReadFail {
    /// The connection closed before any response byte (stale keep-alive connection).
    ClosedEarly,
    /// No complete head before the deadline.
    Timeout,
    /// Not a valid response head.
    Protocol(&'static str),
}

pub(crate) async fn read_response_head(
    conn: &mut UpConn,
    is_head: bool,
    upgrading: bool,
    deadline: Instant,
    timer: &mut LazyTimer,
) -> Result<http1::ResponseHead, ReadFail> {
    timer.arm(deadline);
    let mut got_any = !conn.rbuf.is_empty();
    loop {
        match parse_response(&mut conn.rbuf, MAX_RESPONSE_HEAD, is_head) {
            // A 101 ends the HTTP exchange: only valid when this hop asked for an upgrade.
            Ok(Some(h)) if h.status == 101 && upgrading => return Ok(h),
            Ok(Some(h)) if h.status == 101 => return Err(ReadFail::Protocol(crate::error::UNSOLICITED_101)),
            // Interim responses (100, 102, 103) are consumed; the final one follows.
            Ok(Some(h)) if h.status < 200 => continue,
            Ok(Some(h)) => return Ok(h),
            Ok(None) => {}
            Err(_) => return Err(ReadFail::Protocol("malformed response head")),
        }
        reserve(&mut conn.rbuf);
        let read = tokio::select! {
            biased;
            r = conn.stream.read_buf(&mut conn.rbuf) => Ok(r),
            _ = timer.fired() => Err(()),
        };
        match read {
            Ok(Ok(0)) | Ok(Err(_)) => {
                return Err(if got_any {
                    ReadFail::Protocol("connection closed inside the response head")
                } else {
                    ReadFail::ClosedEarly
                })
            }
            Ok(Ok(_)) => got_any = true,
            Err(_) => return Err(ReadFail::Timeout),
        }
    }
}
