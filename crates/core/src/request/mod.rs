//! One request, from a parsed head to its logged end, as named steps in the order they run:
//! identify (request id, trace span, log fields), normalise the target, the listener's HTTPS
//! redirect and address filter, route, the body limit, sanitise (`sanitize.rs`: hop-by-hop,
//! forwarding headers, the request id), the request phase of the route's policies, then the
//! route's terminal (today: `forward` to its upstream), and the log phase.
//!
//! Invariants:
//! - Nothing reaches an upstream before the head passed the strict parser, the path was
//!   normalised, a route matched and the request phase said `Continue`. The path that was
//!   matched is the path that is forwarded (after the route's explicit rewrite).
//! - Every request ends in exactly one log phase, errors included.
//! - Every answer the gateway makes itself leaves through `downstream::respond`.

pub mod sanitize;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::ctx::RequestCtx;
use crate::downstream::respond::{finish_error, write_local};
use crate::downstream::{settle_bytes, Client, Conn, Fail};
use crate::error::{ErrorKind, GatewayError, LocalResponse};
use crate::http1::{BodyKind, Known, RequestHead};
use crate::log_phase::on_log;
use crate::normalize::{has_escaped_slash, is_normal_path, normalize_target, unescape_slashes};
use crate::policy::Flow;
use crate::router::{Lookup, RequestView};
use crate::snapshot::Terminal;
use crate::snapshot::{ListenerRt, Snapshot};
use gatehouse_config::{EscapedSlashes, UnderscoreHeaders};
use sanitize::{
    add_forwarding, client_ip, drop_connection_named, host_key, new_request_id, preflight_method, prior_forwarding,
    rewrite_path, sanitize_request, upgrade_request, valid_request_id,
};

/// Runs one request to completion. Returns whether the connection may serve another.
pub(crate) async fn handle_request<S>(
    io: &mut Client<'_, S>,
    c: &mut Conn,
    mut head: RequestHead,
    snap: &Snapshot,
    l: &ListenerRt,
) -> bool
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let request_id = match head.headers.get_named(snap.request_id_known, &snap.request_id_header) {
        Some(v) if snap.trust_request_id && valid_request_id(v) => head.headers.slice_of(v),
        _ => new_request_id(),
    };
    let client_ip = client_ip(c.peer.ip(), &head.headers, &l.trusted_proxies);
    let mut ctx = RequestCtx::new(request_id, (snap.request_id_header.clone(), snap.request_id_known), client_ip);
    ctx.client_cert_subject = c.client_subject.clone();
    ctx.grpc = head.headers.get_known(Known::ContentType).and_then(crate::grpc::classify);
    if let Some(t) = &snap.tracer {
        // The SERVER span starts with the request; the caller's trace context (if valid) is its
        // parent. With propagation on, the client's headers are replaced per upstream attempt.
        let parents: Vec<&[u8]> = head.headers.get_all("traceparent").collect();
        let states: Vec<&[u8]> = head.headers.get_all("tracestate").collect();
        let incoming = t.extract(&parents, &states);
        ctx.span = Some(t.start_server(incoming));
        if t.propagates() {
            head.headers.remove("traceparent");
            head.headers.remove("tracestate");
        }
    }
    if snap.access_log.is_some() {
        let host = head.authority.as_deref().map(|a| String::from_utf8_lossy(a).into_owned()).unwrap_or_default();
        let protocol = match io {
            Client::H2(_) => "HTTP/2",
            Client::H1(_) if head.minor == 0 => "HTTP/1.0",
            Client::H1(_) => "HTTP/1.1",
            Client::Capture(_) => "internal",
        };
        ctx.log = Some(crate::ctx::LogFields { host, protocol, query: None });
    }
    let is_head = &head.method[..] == b"HEAD";
    let body_pending = head.body != BodyKind::Empty;
    let keep_alive = head.keep_alive;
    let method = head.method.clone();
    // Set by `forward` once the client's body was read completely (keep-alive stays possible).
    let mut body_done = !body_pending;

    // Normalise the target; the fast path borrows, the slow path allocates once.
    let target = head.target.clone();
    let origin: &[u8] = if target.first() == Some(&b'/') {
        &target
    } else if target.as_ref() == b"*" {
        b"*"
    } else {
        // absolute-form: keep path and query
        let after_scheme = target.iter().position(|&b| b == b':').map_or(0, |p| p + 3);
        match target[after_scheme.min(target.len())..].iter().position(|&b| b == b'/' || b == b'?') {
            Some(p) if target[after_scheme + p] == b'/' => &target[after_scheme + p..],
            _ => b"/",
        }
    };
    let (path_raw, query_raw) = match origin.iter().position(|&b| b == b'?') {
        Some(q) => (&origin[..q], Some(&origin[q + 1..])),
        None => (origin, None),
    };
    let normal;
    let (path, query): (&str, Option<&str>) =
        if is_normal_path(path_raw) && query_raw.is_none_or(|q| q.iter().all(|&b| b.is_ascii_graphic() && b != b'#')) {
            (std::str::from_utf8(path_raw).unwrap_or("/"), query_raw.map(|q| std::str::from_utf8(q).unwrap_or("")))
        } else {
            match normalize_target(origin) {
                Ok(t) => {
                    normal = t;
                    (normal.path.as_str(), normal.query.as_deref())
                }
                Err(e) => {
                    let err = GatewayError::BadRequest(e.0.to_string());
                    return finish_error(io, c, snap, &mut ctx, err, is_head, &method, "", true, keep_alive).await;
                }
            }
        };
    // Encoded separators: a backend that decodes `%2F`/`%5C` would serve a path the gateway did
    // not route by, skipping that route's policies (listeners[].escaped_slashes).
    let unescaped;
    let path: &str = match (has_escaped_slash(path), l.escaped_slashes) {
        (false, _) | (true, EscapedSlashes::Keep) => path,
        (true, EscapedSlashes::Reject) => {
            let err = GatewayError::BadRequest(
                "the path contains an encoded `/` or `\\` (%2F, %5C); see listeners[].escaped_slashes".into(),
            );
            return finish_error(io, c, snap, &mut ctx, err, is_head, &method, path, body_pending, keep_alive).await;
        }
        (true, mode) => match unescape_slashes(path) {
            Err(e) => {
                let err = GatewayError::BadRequest(e.0.to_string());
                return finish_error(io, c, snap, &mut ctx, err, is_head, &method, path, body_pending, keep_alive)
                    .await;
            }
            Ok(p) if mode == EscapedSlashes::UnescapeAndRedirect => {
                return redirect_unescaped(io, c, snap, &mut ctx, &p, query, &method, body_pending, keep_alive).await;
            }
            Ok(p) => {
                unescaped = p;
                &unescaped
            }
        },
    };
    // Header names with `_`: dropped (or refused) before anything reads the request, so a
    // `X_Forwarded_For` cannot stand in for the forwarding headers the gateway replaces.
    if l.underscores != UnderscoreHeaders::Allow && head.headers.iter().any(|(n, _)| n.contains(&b'_')) {
        if l.underscores == UnderscoreHeaders::Reject {
            let err =
                GatewayError::BadRequest("a header name contains `_`; see listeners[].headers_with_underscores".into());
            return finish_error(io, c, snap, &mut ctx, err, is_head, &method, path, body_pending, keep_alive).await;
        }
        head.headers.remove_where(|n| n.contains(&b'_'));
    }

    let authority = head.authority.clone();
    let host = authority.as_deref().map(host_key).unwrap_or_default();
    if let Some((status, port)) = l.redirect_https {
        return redirect_https(
            io,
            c,
            snap,
            &mut ctx,
            (status, port),
            &host,
            path,
            query,
            &method,
            body_pending,
            keep_alive,
        )
        .await;
    }
    if let Some(span) = ctx.span.as_mut().filter(|s| s.is_sampled()) {
        let (client, peer) = (ctx.client_ip.to_string(), c.peer.ip().to_string());
        let m = std::str::from_utf8(&method).unwrap_or("_OTHER");
        span.set_request(m, path, Some(&host), Some(&client), Some(&peer));
    }
    if let Some(f) = ctx.log.as_mut() {
        if snap.config.access_log.include_query {
            f.query = query.map(str::to_string);
        }
    }
    // The listener's address filter runs before routing: a refused client learns nothing about
    // the routes.
    if l.ip_filter.as_ref().is_some_and(|f| !f.admits(ctx.client_ip)) {
        c.shared.limiters.ip_denied.count_listener();
        let err = GatewayError::IpDenied;
        // Closed after the 403: a refused client gets no connection to keep sending on.
        return finish_error(io, c, snap, &mut ctx, err, is_head, &method, path, body_pending, false).await;
    }
    // A CORS preflight is routed by the method it asks about (`Access-Control-Request-Method`),
    // so it reaches the `cors` policy of the route the actual request would take even when that
    // route's methods exclude OPTIONS. If that route has no `cors` policy, the preflight is
    // routed as the plain OPTIONS request it is.
    let asked = preflight_method(&head.method, &head.headers);
    let view = RequestView { host: &host, path, method: asked.unwrap_or(&head.method), headers: &head.headers, query };
    let mut lookup = snap.router.lookup(&view);
    if asked.is_some() && !matches!(&lookup, Lookup::Found { route, .. } if snap.routes[*route].stack.cors.is_some()) {
        lookup = snap.router.lookup(&RequestView { method: &head.method, ..view });
    }
    let (route_idx, params) = match lookup {
        Lookup::Found { route, params } => (route, params),
        Lookup::NotFound => {
            return finish_error(
                io,
                c,
                snap,
                &mut ctx,
                GatewayError::RouteNotFound,
                is_head,
                &method,
                path,
                body_pending,
                keep_alive,
            )
            .await
        }
        Lookup::MethodNotAllowed { allow } => {
            let err = GatewayError::MethodNotAllowed { allow: allow.join(", ") };
            return finish_error(io, c, snap, &mut ctx, err, is_head, &method, path, body_pending, keep_alive).await;
        }
    };
    let route = &snap.routes[route_idx];
    ctx.route = Some(route_idx);
    if let Some(span) = ctx.span.as_mut() {
        span.set_route(&route.http_route);
    }
    ctx.params = params;

    let limit = route.max_body.unwrap_or(l.max_body);
    if let BodyKind::Length(n) = head.body {
        if n > limit {
            let err = GatewayError::BodyTooLarge { limit };
            return finish_error(io, c, snap, &mut ctx, err, is_head, &method, path, true, keep_alive).await;
        }
    }

    // Sanitise in one pass: hop-by-hop (and what `Connection` names), expectations, the client's
    // Host and request id (we send our own), and forwarding headers from untrusted peers.
    let zero_length = head.body == BodyKind::Empty && head.headers.contains_known(Known::ContentLength);
    let peer_trusted = c.peer_trusted(&l.trusted_proxies);
    let fwd_prior = if peer_trusted { prior_forwarding(&head.headers) } else { (Vec::new(), Vec::new()) };
    let upgrade = upgrade_request(&head, route);
    let connection_named = sanitize_request(&mut head.headers, peer_trusted);
    if let Some(u) = &upgrade {
        // `Connection`/`Upgrade` are hop-by-hop: this hop asks the upstream for the same switch.
        head.headers.append(Bytes::from_static(b"connection"), Bytes::from_static(b"upgrade"));
        head.headers.append(Bytes::from_static(b"upgrade"), u.clone());
    }
    add_forwarding(&mut head, c, peer_trusted, fwd_prior, l.forwarded_header);
    if let Some(s) = &c.client_subject {
        head.headers.append(Bytes::from_static(b"x-client-cert-subject"), s.clone());
    }
    if zero_length {
        // An explicit empty body stays explicit (origins may answer 411 to a bodiless POST).
        head.headers.append(Bytes::from_static(b"content-length"), Bytes::from_static(b"0"));
    }
    // The client's copy goes (ours replaces it); `x-request-id` always went with the sanitising.
    if &snap.request_id_header[..] != b"x-request-id" {
        head.headers.remove(std::str::from_utf8(&snap.request_id_header).unwrap_or("x-request-id"));
    }
    head.headers.append_named(ctx.request_id_known, ctx.request_id_header.clone(), ctx.request_id.clone());

    let info = crate::ctx::RequestInfo { method: &method, path, query };
    let flow = route.stack.on_request(&mut ctx, &mut head.headers, &info).await;
    // A policy that removed credential parameters changes the query that is forwarded and logged.
    let forward_query = ctx.forward_query.take();
    let query = match &forward_query {
        Some(q) => Some(q.as_str()).filter(|q| !q.is_empty()),
        None => query,
    };
    if forward_query.is_some() {
        if let Some(f) = ctx.log.as_mut().filter(|f| f.query.is_some()) {
            f.query = query.map(str::to_string);
        }
    }
    // An upgrade request that is answered here did not switch: close (see `forward`).
    let keep_alive = keep_alive && upgrade.is_none();
    match flow {
        // The policies have read what they consume; what the client named in `Connection` does
        // not go further.
        Flow::Continue => drop_connection_named(&mut head.headers, &connection_named),
        Flow::Respond(mut resp) => {
            route.stack.local_headers(&ctx, |n, v| resp.headers.push((n, v)));
            ctx.status = resp.status;
            let keep = !resp.close && !body_pending && keep_alive;
            resp.close = !keep;
            let ok = write_local(io, c, &resp, &ctx, is_head).await;
            settle_bytes(io, c, &mut ctx);
            on_log(&mut ctx, snap, &method, path);
            return ok && keep;
        }
        Flow::Fail(err) => {
            return refuse(io, c, snap, route, &mut ctx, err, &method, path, body_pending, keep_alive).await;
        }
    }

    let out_path = rewrite_path(route, path, &ctx.params);
    let out = crate::forward::Outgoing {
        head: &mut head,
        route,
        path: &out_path,
        query,
        listener: l,
        limit,
        upgrade: upgrade.as_ref(),
    };
    let forwarded = match route.terminal {
        Terminal::Proxy => crate::forward::forward(io, c, out, &mut ctx, &mut body_done).await,
    };
    match forwarded {
        Ok(keep) => {
            settle_bytes(io, c, &mut ctx);
            on_log(&mut ctx, snap, &method, path);
            keep
        }
        Err(Fail::Before(err)) => {
            // A failed upgrade closes the client connection like a refused one: bytes the client
            // sent for the new protocol must never be read as HTTP.
            refuse(io, c, snap, route, &mut ctx, err, &method, path, !body_done, keep_alive).await
        }
        Err(Fail::After) => {
            ctx.error_kind.get_or_insert(ErrorKind::ResponseAborted);
            settle_bytes(io, c, &mut ctx);
            on_log(&mut ctx, snap, &method, path);
            false
        }
    }
}

/// Answers a routed request with a gateway error, carrying the headers the route's policies
/// want on it (the CORS grant, the reported rate limit, a refusing policy's own fields).
#[allow(clippy::too_many_arguments)]
async fn refuse<S: AsyncWrite + Unpin>(
    io: &mut Client<'_, S>,
    c: &mut Conn,
    snap: &Snapshot,
    route: &crate::snapshot::Route,
    ctx: &mut RequestCtx,
    err: GatewayError,
    method: &[u8],
    path: &str,
    body_pending: bool,
    keep_alive: bool,
) -> bool {
    let mut extra = std::mem::take(&mut ctx.local_headers);
    route.stack.local_headers(ctx, |n, v| extra.push((n, v)));
    ctx.local_headers = extra;
    let is_head = method == b"HEAD";
    finish_error(io, c, snap, ctx, err, is_head, method, path, body_pending, keep_alive).await
}

/// The answer of a listener with `escaped_slashes: unescape_and_redirect`: 308 to the same
/// path with `%2F`/`%5C` decoded and normalised (relative to this host and scheme).
#[allow(clippy::too_many_arguments)]
async fn redirect_unescaped<S: AsyncWrite + Unpin>(
    io: &mut Client<'_, S>,
    c: &mut Conn,
    snap: &Snapshot,
    ctx: &mut RequestCtx,
    path: &str,
    query: Option<&str>,
    method: &[u8],
    body_pending: bool,
    keep_alive: bool,
) -> bool {
    let answer = (308, with_query(path.to_string(), query), ErrorKind::RedirectUnescaped);
    redirect(io, c, snap, ctx, answer, method, path, body_pending, keep_alive).await
}

/// The answer of a `redirect_https` listener: the same host and path on `https://`. Without a
/// Host there is nothing to redirect to (400).
#[allow(clippy::too_many_arguments)]
async fn redirect_https<S: AsyncWrite + Unpin>(
    io: &mut Client<'_, S>,
    c: &mut Conn,
    snap: &Snapshot,
    ctx: &mut RequestCtx,
    (status, port): (u16, Option<u16>),
    host: &str,
    path: &str,
    query: Option<&str>,
    method: &[u8],
    body_pending: bool,
    keep_alive: bool,
) -> bool {
    let is_head = method == b"HEAD";
    if host.is_empty() {
        let err = GatewayError::BadRequest("no Host to redirect to".into());
        return finish_error(io, c, snap, ctx, err, is_head, method, path, body_pending, keep_alive).await;
    }
    let mut location = format!("https://{host}");
    if let Some(p) = port.filter(|&p| p != 443) {
        location.push_str(&format!(":{p}"));
    }
    location.push_str(path);
    let answer = (status, with_query(location, query), ErrorKind::RedirectHttps);
    redirect(io, c, snap, ctx, answer, method, path, body_pending, keep_alive).await
}

/// `location` followed by `?query` when there is one.
fn with_query(mut location: String, query: Option<&str>) -> String {
    if let Some(q) = query {
        location.push('?');
        location.push_str(q);
    }
    location
}

/// A redirect the gateway answers itself: `status` with `Location`, the request's end logged
/// with `kind`. An unread request body would be taken for the next request: close instead.
#[allow(clippy::too_many_arguments)]
async fn redirect<S: AsyncWrite + Unpin>(
    io: &mut Client<'_, S>,
    c: &mut Conn,
    snap: &Snapshot,
    ctx: &mut RequestCtx,
    (status, location, kind): (u16, String, ErrorKind),
    method: &[u8],
    path: &str,
    body_pending: bool,
    keep_alive: bool,
) -> bool {
    let mut resp = LocalResponse::new(status, "text/plain; charset=utf-8", Bytes::new());
    resp.headers.push((Bytes::from_static(b"location"), Bytes::from(location)));
    let keep = keep_alive && !body_pending && !c.stopping();
    resp.close = !keep;
    ctx.status = status;
    ctx.error_kind = Some(kind);
    let ok = write_local(io, c, &resp, ctx, method == b"HEAD").await;
    settle_bytes(io, c, ctx);
    on_log(ctx, snap, method, path);
    ok && keep
}
