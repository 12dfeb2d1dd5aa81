//! `call`: a request a route terminal sends upstream through the one forwarder, with its answer
//! captured in memory (see the module documentation of `terminal`).

use bytes::Bytes;

use crate::ctx::RequestCtx;
use crate::downstream::{Captured, Client, Conn, Fail};
use crate::error::GatewayError;
use crate::http1::{BodyKind, Headers, RequestHead};
use crate::snapshot::{ListenerRt, Route};

/// One request a terminal sends upstream.
pub struct Call<'a> {
    /// Supplies the upstream, retries, timeouts and response phase of the call.
    pub route: &'a Route,
    pub method: Bytes,
    /// The path as sent (already built by the terminal; not rewritten again).
    pub path: &'a str,
    pub query: Option<&'a str>,
    /// Request headers (lower-case names); `host` is the target's unless set here.
    pub headers: Headers,
    pub body: Bytes,
    /// The most response body bytes taken.
    pub limit: usize,
}

/// Sends `call` through the forwarder and returns the answer (status, headers after the route's
/// response phase, body, trailers). `ctx` is the call's own context (`RequestCtx::for_call`):
/// it collects the call's attempts, target and upstream status.
pub async fn call(c: &Conn, l: &ListenerRt, ctx: &mut RequestCtx, call: Call<'_>) -> Result<Captured, GatewayError> {
    let Call { route, method, path, query, headers, body, limit } = call;
    let mut head = RequestHead {
        method,
        target: Bytes::copy_from_slice(path.as_bytes()),
        minor: 1,
        headers,
        body: if body.is_empty() { BodyKind::Empty } else { BodyKind::Length(body.len() as u64) },
        keep_alive: true,
        expect_continue: false,
        authority: None,
    };
    let mut captured = Captured { request_body: body, limit, ..Captured::default() };
    let mut conn = c.for_call();
    let mut client = Client::<tokio::net::TcpStream>::Capture(&mut captured);
    let out =
        crate::forward::Outgoing { head: &mut head, route, path, query, listener: l, limit: u64::MAX, upgrade: None };
    let mut body_done = true;
    match crate::forward::forward(&mut client, &mut conn, out, ctx, &mut body_done).await {
        Ok(_) => Ok(captured),
        Err(Fail::Before(e)) => Err(e),
        // A capture never "started" toward a client; a cut answer is an upstream failure.
        Err(Fail::After) => {
            Err(GatewayError::UpstreamProtocol { upstream: route.upstream.name.clone(), detail: "answer cut short" })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A backend on 127.0.0.1 that answers every request with the request line it got.
    async fn echo_backend() -> std::net::SocketAddr {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = l.local_addr().expect("addr");
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    loop {
                        let n = s.read(&mut chunk).await.unwrap_or(0);
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else { continue };
                        let head = String::from_utf8_lossy(&buf[..end]).to_string();
                        let line = head.lines().next().unwrap_or("").to_string();
                        let cl: usize = head
                            .lines()
                            .find_map(|h| h.to_ascii_lowercase().strip_prefix("content-length: ").map(str::to_string))
                            .and_then(|v| v.trim().parse().ok())
                            .unwrap_or(0);
                        while buf.len() < end + 4 + cl {
                            let n = s.read(&mut chunk).await.unwrap_or(0);
                            if n == 0 {
                                return;
                            }
                            buf.extend_from_slice(&chunk[..n]);
                        }
                        let body = format!("{line}|{}", String::from_utf8_lossy(&buf[end + 4..end + 4 + cl]));
                        let resp = format!(
                            "HTTP/1.1 201 Created\r\ncontent-type: text/plain\r\nx-up: 1\r\ncontent-length: {}\r\n\r\n{body}",
                            body.len()
                        );
                        buf.drain(..end + 4 + cl);
                        if s.write_all(resp.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        addr
    }

    fn config(target: std::net::SocketAddr) -> gatehouse_config::Config {
        let yaml = format!(
            "listeners:\n  - address: 127.0.0.1:0\nupstreams:\n  - name: backend\n    targets:\n      - url: http://{target}\nroutes:\n  - name: all\n    upstream: backend\n    response_headers:\n      set:\n        x-phase: ran\n"
        );
        gatehouse_config::load_str(&yaml, &|_| None).expect("valid config")
    }

    #[tokio::test]
    async fn a_call_goes_through_the_forwarder_and_its_response_phase() {
        let backend = echo_backend().await;
        let gw = crate::Gateway::start(config(backend), crate::Options { workers: 1, ..Default::default() })
            .await
            .expect("gateway starts");
        let shared = gw.shared().clone();
        let snap = shared.snapshot.load_full();
        let peer: std::net::SocketAddr = "127.0.0.1:9".parse().expect("addr");
        let c = Conn::new(peer, shared.clone(), false, None);
        let mut parent = RequestCtx::new(
            Bytes::from_static(b"rid"),
            (Bytes::from_static(b"x-request-id"), crate::http1::Known::XRequestId),
            peer.ip(),
        );
        let route = &snap.routes[0];
        for (i, body) in ["", "hello"].into_iter().enumerate() {
            let mut ctx = parent.for_call();
            let call = Call {
                route,
                method: Bytes::from_static(b"POST"),
                path: "/items",
                query: Some("a=1"),
                headers: Headers::new(),
                body: Bytes::from(body),
                limit: 1024,
            };
            let got = super::call(&c, &snap.listeners[0], &mut ctx, call).await.expect("the call answers");
            assert_eq!(got.status, 201, "call {i}");
            assert_eq!(String::from_utf8_lossy(&got.body), format!("POST /items?a=1 HTTP/1.1|{body}"));
            // The route's response phase ran on the captured answer.
            assert_eq!(got.headers.get("x-phase"), Some(&b"ran"[..]));
            assert_eq!(got.headers.get("x-up"), Some(&b"1"[..]));
            assert_eq!(ctx.attempts, 1);
            assert_eq!(ctx.upstream_status, Some(201));
        }
        // An answer over the call's limit fails the call instead of growing.
        let mut ctx = parent.for_call();
        let call = Call {
            route,
            method: Bytes::from_static(b"GET"),
            path: "/big",
            query: None,
            headers: Headers::new(),
            body: Bytes::new(),
            limit: 4,
        };
        let err = super::call(&c, &snap.listeners[0], &mut ctx, call).await.expect_err("too large");
        assert_eq!(err.code(), "upstream_response_too_large");
        parent.attempts = 0;
        gw.shutdown().await;
    }
}
