//! The HTTP/2 upstream leg: one attempt to an `h2c://` or `https://` + `protocol: http2`
//! target, as a stream on a multiplexed connection (`http2::client`), plus the header
//! conversions both HTTP/2 sides share.
//!
//! Invariants:
//! - A new connection's connect is bounded by `timeouts.connect` cut to the route's deadline.
//! - A body that streams from an HTTP/2 client is pumped in its own task, concurrently with the
//!   response (bidirectional gRPC streams flow both ways at once), and is sent once; a client
//!   body that fails resets the upstream stream, so the upstream never sees it as complete.
//! - Hop-by-hop fields, `host` and framing fields never enter an HTTP/2 header block.

use std::future::poll_fn;

use bytes::Bytes;
use h2::{Reason, RecvStream, SendStream};
use tokio::time::{Duration, Instant};

use super::admission::{Admission, AttemptErr};
use super::h1::{head_deadline, HeadParts};
use super::UpResp;
use crate::http1::{self, BodyKind, Headers};
use crate::trace::ClientSpan;
use crate::upstream::pool;
use crate::upstream::{Target, Upstream};

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
pub(crate) fn h2_headers(headers: &Headers) -> http::HeaderMap {
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

pub(crate) fn from_h2_headers(map: &http::HeaderMap) -> (Headers, Option<u64>) {
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
pub(crate) fn upstream_uri(target: &Target, fixed_host: Option<&Bytes>, path: &str, query: Option<&str>) -> String {
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

/// One attempt to an HTTP/2 target.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn exchange(
    parts: &HeadParts<'_>,
    target: &Target,
    upstream: &Upstream,
    rest: &mut Option<RecvStream>,
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
    let (mut send, slot) = crate::http2::client::sender(target, connect_timeout).await.map_err(|e| {
        tracing::debug!(upstream = %upstream.name, target = %target.url, error = %e, "HTTP/2 connect failed");
        match e {
            crate::http2::client::H2ConnectError::Connect(pool::ConnectError::Tls(_)) => AttemptErr::Tls,
            crate::http2::client::H2ConnectError::Connect(e) => AttemptErr::Connect { timed_out: e.timed_out() },
            crate::http2::client::H2ConnectError::Timeout => AttemptErr::Connect { timed_out: true },
            crate::http2::client::H2ConnectError::Handshake(_) => AttemptErr::Protocol("HTTP/2 handshake failed"),
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
    let head_by = head_deadline(adm, sent_at);
    if !end {
        let pre = Bytes::copy_from_slice(parts.pre);
        match rest.take() {
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
