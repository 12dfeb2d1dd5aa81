//! A small buffered HTTP/1.1 server for the admin API and the quickstart's demo services.
//!
//! Invariants: it reuses the strict request parser of the data plane; request bodies are read
//! whole up to `MAX_BODY` (anything larger gets 413); every response is produced by the handler
//! as a `LocalResponse`. Not for traffic: it buffers bodies and has no routing of its own.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::error::{GatewayError, LocalResponse};
use crate::http1::{parse_request, BodyDecoder, Decoded, HeadLimits};

const MAX_BODY: u64 = 16 * 1024 * 1024;
const IDLE: Duration = Duration::from_secs(30);

/// A fully read request.
#[derive(Debug, Clone)]
pub struct SimpleRequest {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    /// Names lower-cased.
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
    pub peer: SocketAddr,
}

impl SimpleRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// Serves `listener` until `shutdown` turns true.
pub async fn serve<F, Fut>(listener: TcpListener, handler: F, mut shutdown: watch::Receiver<bool>)
where
    F: Fn(SimpleRequest) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = LocalResponse> + Send,
{
    loop {
        tokio::select! {
            r = listener.accept() => {
                let Ok((stream, peer)) = r else { continue };
                let h = handler.clone();
                tokio::spawn(async move {
                    let _ = serve_conn(stream, peer, h).await;
                });
            }
            _ = shutdown.changed() => return,
        }
    }
}

async fn serve_conn<F, Fut>(mut stream: TcpStream, peer: SocketAddr, handler: F) -> std::io::Result<()>
where
    F: Fn(SimpleRequest) -> Fut,
    Fut: Future<Output = LocalResponse>,
{
    let _ = stream.set_nodelay(true);
    let limits = HeadLimits { max_head: 64 * 1024, max_headers: 100, max_uri: 8192 };
    let mut buf = BytesMut::with_capacity(4096);
    let mut out = Vec::new();
    loop {
        let head = loop {
            match parse_request(&mut buf, limits) {
                Ok(Some(h)) => break h,
                Ok(None) => {}
                Err(e) => {
                    out.clear();
                    GatewayError::from(e).to_response("-").write_to(&mut out, &[], false);
                    stream.write_all(&out).await?;
                    return Ok(());
                }
            }
            match tokio::time::timeout(IDLE, stream.read_buf(&mut buf)).await {
                Ok(Ok(0)) | Err(_) => return Ok(()),
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Err(e),
            }
        };
        if let crate::http1::BodyKind::Length(n) = head.body {
            if n > MAX_BODY {
                out.clear();
                GatewayError::BodyTooLarge { limit: MAX_BODY }.to_response("-").write_to(&mut out, &[], false);
                stream.write_all(&out).await?;
                return Ok(());
            }
        }
        let mut dec = BodyDecoder::new(head.body);
        let mut body = Vec::new();
        loop {
            match dec.decode(&mut buf) {
                Ok(Decoded::Data(d)) => {
                    body.extend_from_slice(&d);
                    if body.len() as u64 > MAX_BODY {
                        return Ok(());
                    }
                }
                Ok(Decoded::Done) => break,
                Ok(Decoded::NeedMore) => match tokio::time::timeout(IDLE, stream.read_buf(&mut buf)).await {
                    Ok(Ok(0)) | Err(_) => return Ok(()),
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => return Err(e),
                },
                Err(_) => return Ok(()),
            }
        }
        let target = String::from_utf8_lossy(&head.target).into_owned();
        let (path, query) = match target.split_once('?') {
            Some((p, q)) => (p.to_string(), Some(q.to_string())),
            None => (target, None),
        };
        let req = SimpleRequest {
            method: String::from_utf8_lossy(&head.method).into_owned(),
            path,
            query,
            headers: head
                .headers
                .iter()
                .map(|(k, v)| {
                    (String::from_utf8_lossy(k).to_ascii_lowercase(), String::from_utf8_lossy(v).into_owned())
                })
                .collect(),
            body: Bytes::from(body),
            peer,
        };
        let is_head = req.method == "HEAD";
        let mut resp = handler(req).await;
        if !head.keep_alive {
            resp.close = true;
        }
        out.clear();
        resp.write_to(&mut out, &[], is_head);
        stream.write_all(&out).await?;
        if resp.close {
            return Ok(());
        }
    }
}
