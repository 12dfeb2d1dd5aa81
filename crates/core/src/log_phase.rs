//! The log phase: once per request, errors included, after the response was written (or the
//! connection cut): the request's metrics, the SERVER span's end, a debug event, and the access
//! log line. It reads what the steps and policies left in the `RequestCtx`.
//!
//! Invariants: no lock and no allocation unless the access log is on (metrics are atomic adds
//! into the worker's shard of the route's cell, resolved at reload); the access-log line is handed
//! to its writer thread through a bounded channel that never blocks the worker.

use crate::ctx::RequestCtx;
use crate::error::ErrorKind;

/// The log phase: runs for every request, errors included, after the response was written.
/// Records the request's metrics, and writes the access-log line when the access log is on.
pub fn on_log(ctx: &mut RequestCtx, snap: &crate::snapshot::Snapshot, method: &[u8], path: &str) {
    let duration_us = ctx.started.elapsed().as_micros() as u64;
    if let Some(m) = snap.metrics.for_route(ctx.route) {
        m.observe(&crate::metrics::Observation {
            method,
            status: ctx.status,
            duration_us,
            upstream_us: ctx.upstream_us,
            bytes_in: ctx.bytes_in,
            bytes_out: ctx.bytes_out,
        });
    }
    if !snap.metrics.consumers.is_empty() {
        if let Some(id) = &ctx.identity {
            let name = id.consumer.as_ref().map_or(crate::metrics::UNMAPPED, |c| c.name.as_str());
            let cell =
                snap.metrics.consumers.get(name).or_else(|| snap.metrics.consumers.get(crate::metrics::UNMAPPED));
            if let Some(c) = cell {
                c.observe(ctx.status);
            }
        }
    }
    tracing::debug!(
        request_id = %ctx.request_id_str(),
        client_ip = %ctx.client_ip,
        method = %String::from_utf8_lossy(method),
        path,
        status = ctx.status,
        upstream_status = ctx.upstream_status,
        error_kind = ctx.error_kind.map(ErrorKind::as_str),
        "request"
    );
    // The trace ids join the log line to the trace (also for unsampled requests).
    let ids = ctx.span.as_ref().filter(|_| snap.access_log.is_some()).map(|s| (s.trace_id_hex(), s.span_id_hex()));
    if let Some(span) = ctx.span.take() {
        // Only a response the gateway produced itself has an error kind worth a span status.
        let status = (ctx.status != 0).then_some(ctx.status);
        span.finish(status, ctx.error_kind.map(ErrorKind::as_str));
    }
    let (Some(log), Some(f)) = (&snap.access_log, &ctx.log) else { return };
    let route = ctx.route.and_then(|i| snap.routes.get(i));
    let target = ctx.target.and_then(|t| route.and_then(|r| r.upstream.targets.get(t)));
    let mut line = serde_json::json!({
        "timestamp": crate::access_log::rfc3339_now(),
        "request_id": ctx.request_id_str(),
        "client_ip": ctx.client_ip.to_string(),
        "method": String::from_utf8_lossy(method),
        "protocol": f.protocol,
        "host": f.host,
        "path": path,
        "route": route.map(|r| r.name.as_str()),
        "upstream": route.map(|r| r.upstream.name.as_str()),
        "target": target.map(|t| t.url.as_str()),
        "consumer": ctx.identity.as_ref().map(|i| i.name.as_str()),
        "status": ctx.status,
        "upstream_status": ctx.upstream_status,
        "bytes_received": ctx.bytes_in,
        "bytes_sent": ctx.bytes_out,
        "duration_ms": duration_us as f64 / 1000.0,
        "upstream_ms": ctx.upstream_us.map(|us| us as f64 / 1000.0),
        "attempts": ctx.attempts,
        "error_kind": ctx.error_kind.map(ErrorKind::as_str),
    });
    if let Some(obj) = line.as_object_mut() {
        if ctx.grpc.is_some() {
            // The upstream's own status, else the one the gateway answered with (its errors are
            // trailers-only gRPC answers), else what a gRPC client makes of a non-2xx HTTP status.
            let derived = (ctx.status >= 300).then(|| crate::grpc::status_code(ctx.status, ctx.error_kind));
            let status = ctx.grpc_status.or(derived);
            obj.insert("grpc_status".into(), status.map_or(serde_json::Value::Null, |s| s.into()));
        }
        if let Some(q) = &f.query {
            obj.insert("query".into(), serde_json::Value::String(q.clone()));
        }
        if let Some((trace_id, span_id)) = ids {
            obj.insert("trace_id".into(), serde_json::Value::String(trace_id));
            obj.insert("span_id".into(), serde_json::Value::String(span_id));
        }
    }
    log.write(serde_json::to_vec(&line).unwrap_or_default());
}
