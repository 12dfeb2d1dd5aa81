//! A minimal HTTP/1.1 client for the services identity depends on: JWKS and OIDC discovery
//! documents, OAuth2 introspection, external authorization.
//!
//! Invariants: one connection per call (`Connection: close`), the whole call (connect, write,
//! read) bounded by one deadline, the response parsed by the data plane's strict parser and its
//! body capped at `max_body`. `https://` services are verified against the system's trust store
//! (which honours `SSL_CERT_FILE`/`SSL_CERT_DIR`) with the service host as SNI and name; the
//! certificate must name the host. Nothing here logs request or response bodies or headers
//! (they carry tokens and client secrets).

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::http1::{parse_response, BodyDecoder, Decoded};

/// A parsed `http://host:port/path?query` of a service the gateway calls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceUrl {
    pub host: String,
    pub port: u16,
    /// `host:port` as sent in `Host`.
    pub authority: String,
    /// Path and query, starting with `/`.
    pub path: String,
    /// `https://`.
    pub tls: bool,
}

impl ServiceUrl {
    /// Parses with the config crate's rules (validation used the same function).
    pub fn parse(s: &str) -> Result<ServiceUrl, String> {
        let (t, path) = gatehouse_config::validate::parse_service_url(s)?;
        Ok(ServiceUrl { authority: t.authority(), tls: t.tls, host: t.host, port: t.port, path })
    }
}

/// A service's answer.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    /// Names lower-cased.
    pub headers: Vec<(String, Bytes)>,
    pub body: Bytes,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| &v[..])
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("connection failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("invalid response: {0}")]
    Protocol(String),
    #[error("response body larger than {0} bytes")]
    TooLarge(usize),
    #[error("TLS: {0}")]
    Tls(String),
}

/// The client config for `https://` services: system roots, ring, built once per process.
fn tls_config() -> Result<std::sync::Arc<rustls::ClientConfig>, ClientError> {
    static CONFIG: std::sync::OnceLock<Result<std::sync::Arc<rustls::ClientConfig>, String>> =
        std::sync::OnceLock::new();
    CONFIG
        .get_or_init(|| crate::tls::client_config(None, "auth", false).map_err(|e| e.to_string()))
        .clone()
        .map_err(ClientError::Tls)
}

/// Sends one request and reads the whole response, all within `timeout`.
pub async fn call(
    url: &ServiceUrl,
    method: &str,
    path_and_query: &str,
    headers: &[(&str, &[u8])],
    body: &[u8],
    timeout: Duration,
    max_body: usize,
) -> Result<Reply, ClientError> {
    match tokio::time::timeout(timeout, exchange(url, method, path_and_query, headers, body, max_body)).await {
        Ok(r) => r,
        Err(_) => Err(ClientError::Timeout(timeout)),
    }
}

async fn exchange(
    url: &ServiceUrl,
    method: &str,
    path_and_query: &str,
    headers: &[(&str, &[u8])],
    body: &[u8],
    max_body: usize,
) -> Result<Reply, ClientError> {
    let tcp = TcpStream::connect((url.host.as_str(), url.port)).await?;
    let _ = tcp.set_nodelay(true);
    if !url.tls {
        return exchange_on(tcp, url, method, path_and_query, headers, body, max_body).await;
    }
    let name =
        rustls::pki_types::ServerName::try_from(url.host.clone()).map_err(|e| ClientError::Tls(e.to_string()))?;
    let tls = tokio_rustls::TlsConnector::from(tls_config()?)
        .connect(name, tcp)
        .await
        .map_err(|e| ClientError::Tls(e.to_string()))?;
    exchange_on(crate::tls::Flushing(tls), url, method, path_and_query, headers, body, max_body).await
}

#[allow(clippy::too_many_arguments)]
async fn exchange_on<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    mut stream: S,
    url: &ServiceUrl,
    method: &str,
    path_and_query: &str,
    headers: &[(&str, &[u8])],
    body: &[u8],
    max_body: usize,
) -> Result<Reply, ClientError> {
    let mut out = Vec::with_capacity(256 + body.len());
    out.extend_from_slice(method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(path_and_query.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\nhost: ");
    out.extend_from_slice(url.authority.as_bytes());
    out.extend_from_slice(b"\r\nconnection: close\r\nuser-agent: gatehouse\r\n");
    for (n, v) in headers {
        out.extend_from_slice(n.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(v);
        out.extend_from_slice(b"\r\n");
    }
    if !body.is_empty() || method != "GET" {
        out.extend_from_slice(b"content-length: ");
        out.extend_from_slice(body.len().to_string().as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    stream.write_all(&out).await?;

    let mut buf = BytesMut::with_capacity(8192);
    let head = loop {
        match parse_response(&mut buf, 64 * 1024, method == "HEAD") {
            Ok(Some(h)) if h.status < 200 => continue,
            Ok(Some(h)) => break h,
            Ok(None) => {}
            Err(e) => return Err(ClientError::Protocol(format!("{e:?}"))),
        }
        if stream.read_buf(&mut buf).await? == 0 {
            return Err(ClientError::Protocol("connection closed before the response head".into()));
        }
    };
    let headers = head
        .headers
        .iter()
        .map(|(k, v)| (String::from_utf8_lossy(k).to_ascii_lowercase(), Bytes::copy_from_slice(v)))
        .collect();
    let mut dec = BodyDecoder::new(head.body);
    let mut body = Vec::new();
    loop {
        match dec.decode(&mut buf) {
            Ok(Decoded::Data(d)) => {
                body.extend_from_slice(&d);
                if body.len() > max_body {
                    return Err(ClientError::TooLarge(max_body));
                }
            }
            Ok(Decoded::Done) => break,
            Ok(Decoded::NeedMore) => {
                if stream.read_buf(&mut buf).await? == 0 {
                    if dec.on_eof() {
                        break;
                    }
                    return Err(ClientError::Protocol("connection closed inside the body".into()));
                }
            }
            Err(e) => return Err(ClientError::Protocol(format!("{e:?}"))),
        }
    }
    Ok(Reply { status: head.status, headers, body: Bytes::from(body) })
}
