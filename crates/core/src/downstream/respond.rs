//! The one exit for answers the gateway makes itself (errors, refusals, redirects, preflights):
//! whatever made the answer, it leaves through `write_local` (which turns it into a
//! trailers-only gRPC status for a gRPC request) and `finish_error` (which maps a `GatewayError`
//! to its response, records the `error_kind` as the error's code, and runs the log phase).
//!
//! Invariants: the answer carries the request id; an unread request body, a client that asked
//! to close, or a drain closes the connection after it (an unread body would be parsed as the
//! next request).

use tokio::io::{AsyncWrite, AsyncWriteExt};

use super::{settle_bytes, Client, Conn};
use crate::ctx::RequestCtx;
use crate::error::{GatewayError, LocalResponse};
use crate::log_phase::on_log;
use crate::snapshot::Snapshot;

/// Sends a response the gateway made itself. For a gRPC request it becomes a trailers-only
/// gRPC answer (`grpc::local_response`); the log keeps the HTTP status and error code.
pub(crate) async fn write_local<S: AsyncWrite + Unpin>(
    io: &mut Client<'_, S>,
    c: &mut Conn,
    resp: &LocalResponse,
    ctx: &RequestCtx,
    head_only: bool,
) -> bool {
    let converted;
    let resp = match ctx.grpc {
        Some(kind) if resp.status >= 300 => {
            converted = crate::grpc::local_response(resp, kind, ctx.error_kind);
            &converted
        }
        _ => resp,
    };
    match io {
        Client::H1(io) => {
            c.wbuf.clear();
            let name = std::str::from_utf8(&ctx.request_id_header).unwrap_or("x-request-id");
            resp.write_to(&mut c.wbuf, &[(name, &ctx.request_id)], head_only);
            io.write_all(&c.wbuf).await.is_ok()
        }
        Client::H2(s) => s.send_local(resp, ctx, head_only),
        Client::Capture(k) => {
            k.status = resp.status;
            k.headers = crate::http1::Headers::new();
            for (n, v) in &resp.headers {
                k.headers.append(n.clone(), v.clone());
            }
            k.body = resp.body.to_vec();
            true
        }
    }
}

#[allow(clippy::too_many_arguments)]
pub(crate) async fn finish_error<S: AsyncWrite + Unpin>(
    io: &mut Client<'_, S>,
    c: &mut Conn,
    snap: &Snapshot,
    ctx: &mut RequestCtx,
    err: GatewayError,
    is_head: bool,
    method: &[u8],
    path: &str,
    body_pending: bool,
    client_keep_alive: bool,
) -> bool {
    let mut resp = err.to_response(ctx.request_id_str());
    resp.headers.append(&mut ctx.local_headers);
    // An unread request body would be parsed as the next request: close instead. And honour a
    // client that asked to close (or an HTTP/1.0 client without keep-alive).
    if body_pending || !client_keep_alive || c.stopping() {
        resp.close = true;
    }
    ctx.status = resp.status;
    // A policy may have named the refusal more precisely (auth: which credential problem).
    ctx.error_kind.get_or_insert(err.kind());
    let ok = write_local(io, c, &resp, ctx, is_head).await;
    settle_bytes(io, c, ctx);
    on_log(ctx, snap, method, path);
    ok && !resp.close
}
