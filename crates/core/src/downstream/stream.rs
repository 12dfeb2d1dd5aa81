//! One HTTP/2 client stream as the request path sees it (how to answer it, its request body,
//! its byte counts), and the per-connection reset budget its failures count against.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use h2::server::SendResponse;
use h2::RecvStream;

use crate::ctx::RequestCtx;
use crate::error::LocalResponse;
use crate::upstream::mono_ns;

/// Resets counted on one connection within a sliding window (rapid-reset protection).
pub(crate) struct ResetBudget {
    max: u32,
    window_ns: u64,
    count: AtomicU32,
    window_start: AtomicU64,
    pub(crate) exceeded: tokio::sync::Notify,
}

impl ResetBudget {
    pub(crate) fn new(max: u32, window: Duration) -> Self {
        ResetBudget {
            max,
            window_ns: window.as_nanos() as u64,
            count: AtomicU32::new(0),
            window_start: AtomicU64::new(mono_ns()),
            exceeded: tokio::sync::Notify::new(),
        }
    }

    /// Counts one reset; past the budget the connection task is told to end the connection.
    pub(crate) fn note(&self) {
        let now = mono_ns();
        let start = self.window_start.load(Ordering::Relaxed);
        if now.saturating_sub(start) > self.window_ns {
            self.window_start.store(now, Ordering::Relaxed);
            self.count.store(0, Ordering::Relaxed);
        }
        if self.count.fetch_add(1, Ordering::Relaxed) + 1 > self.max {
            self.exceeded.notify_one();
        }
    }
}

/// One client stream: how to answer it and its request body.
pub(crate) struct Stream {
    pub respond: SendResponse<Bytes>,
    /// The request body; taken by the forwarder (`None` once taken or when there is none).
    pub body: Option<RecvStream>,
    /// The request was an extended CONNECT (RFC 8441) for this protocol.
    pub connect_protocol: Option<Bytes>,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub resets: Arc<ResetBudget>,
}

impl Stream {
    /// Sends a complete response the gateway made itself.
    pub(crate) fn send_local(&mut self, resp: &LocalResponse, ctx: &RequestCtx, head_only: bool) -> bool {
        self.send_local_with_id(resp, (&ctx.request_id_header, &ctx.request_id), head_only)
    }

    /// `send_local` with the request-id header given directly (before a context exists).
    pub(crate) fn send_local_with_id(
        &mut self,
        resp: &LocalResponse,
        (id_name, id): (&[u8], &[u8]),
        head_only: bool,
    ) -> bool {
        let mut b = http::Response::builder().status(resp.status);
        for (n, v) in &resp.headers {
            b = b.header(&n[..], &v[..]);
        }
        b = b.header(id_name, id);
        if !resp.body.is_empty() || resp.status >= 200 {
            b = b.header("content-length", resp.body.len());
        }
        let Ok(r) = b.body(()) else { return false };
        let end = resp.body.is_empty() || head_only;
        let Ok(mut send) = self.respond.send_response(r, end) else { return false };
        if !end {
            self.bytes_out += resp.body.len() as u64;
            return send.send_data(resp.body.clone(), true).is_ok();
        }
        true
    }
}
