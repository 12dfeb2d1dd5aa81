//! TLS with rustls (ring provider only): listener certificates chosen by SNI, optional client
//! certificates (mTLS), and TLS to `https://` upstream targets.
//!
//! Invariants:
//! - Certificates, keys and CA bundles are read from disk only while compiling a snapshot (start,
//!   reload, or a certificate file change that triggers a reload). The handshake uses the
//!   `ServerConfig` of the snapshot current when the connection was accepted; a reload never
//!   touches open connections, and a bad file fails the reload so the old certificate keeps
//!   serving.
//! - Every problem names its config path (`listeners[0].tls.certificates[1].key: ...`).
//! - Only the ring provider is ever used (`builder_with_provider`), so a second provider
//!   elsewhere in the dependency graph can never make rustls pick a different one.
//! - ALPN: listeners offer `h2` (when `http2.enabled`) then `http/1.1`; a client without ALPN
//!   gets HTTP/1.1. Upstream connections offer exactly the protocol the upstream is configured
//!   for, so the answer can never be a protocol we did not plan to speak.

pub mod x509;

use std::collections::HashMap;
use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use gatehouse_config as cfg;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::RootCertStore;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A TLS config problem at `path`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct TlsError {
    pub path: String,
    pub message: String,
}

fn err(path: impl Into<String>, message: impl Into<String>) -> TlsError {
    TlsError { path: path.into(), message: message.into() }
}

/// The protocols a listener advertises with ALPN, in preference order.
pub const ALPN: &[&[u8]] = &[b"h2", b"http/1.1"];
/// ALPN of a listener with `http2.enabled: false`, and of HTTP/1.1 upstream connections.
pub const ALPN_H1: &[&[u8]] = &[b"http/1.1"];
/// ALPN of HTTP/2 upstream connections.
pub const ALPN_H2: &[&[u8]] = &[b"h2"];

/// The ring provider, built once.
pub fn provider() -> Arc<CryptoProvider> {
    static P: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    P.get_or_init(|| Arc::new(rustls::crypto::ring::default_provider())).clone()
}

/// Seconds since the Unix epoch (wall clock: certificate validity is wall-clock time).
pub fn unix_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

/// What the admin view and `/metrics` show about one served certificate.
#[derive(Debug, Clone, PartialEq)]
pub struct CertInfo {
    /// The SNI names it is served for (configured `names`, else its DNS SANs).
    pub names: Vec<String>,
    pub subject: String,
    /// Unix seconds.
    pub not_after: i64,
    pub default: bool,
    pub cert_file: String,
}

/// A listener's compiled TLS.
#[derive(Debug)]
pub struct ServerTls {
    pub config: Arc<rustls::ServerConfig>,
    pub certs: Vec<CertInfo>,
    /// Files read to build this (certificates, keys, CA): the file watch reloads when one changes.
    pub files: Vec<PathBuf>,
    pub client_auth: bool,
}

/// The certificate for a ClientHello's SNI: exact name, then `*.parent` for one leading label,
/// then the default.
#[derive(Debug)]
struct SniResolver {
    exact: HashMap<String, Arc<CertifiedKey>>,
    wildcard: HashMap<String, Arc<CertifiedKey>>,
    default: Option<Arc<CertifiedKey>>,
}

impl SniResolver {
    fn pick(&self, sni: Option<&str>) -> Option<Arc<CertifiedKey>> {
        if let Some(name) = sni {
            // rustls hands SNI over already lower-cased and validated as a DNS name.
            let name = name.trim_end_matches('.');
            if let Some(k) = self.exact.get(name) {
                return Some(k.clone());
            }
            if let Some((_, parent)) = name.split_once('.') {
                if let Some(k) = self.wildcard.get(parent) {
                    return Some(k.clone());
                }
            }
        }
        self.default.clone()
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.pick(hello.server_name())
    }
}

fn read_certs(file: &str, path: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let iter = CertificateDer::pem_file_iter(file).map_err(|e| err(path, format!("cannot read `{file}`: {e}")))?;
    let certs = iter
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(path, format!("`{file}` is not a valid PEM certificate file: {e}")))?;
    if certs.is_empty() {
        return Err(err(path, format!("`{file}` holds no PEM certificate")));
    }
    Ok(certs)
}

fn read_key(file: &str, path: &str) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(file)
        .map_err(|e| err(path, format!("cannot read a PEM private key from `{file}`: {e}")))
}

/// Loads one certificate and key, checks that they match and that the certificate has not
/// expired. `path` is the entry's config path (`listeners[0].tls.certificates[1]`).
fn load_pair(cert: &str, key: &str, path: &str) -> Result<(Arc<CertifiedKey>, x509::CertFields), TlsError> {
    let cert_path = format!("{path}.cert");
    let key_path = format!("{path}.key");
    let chain = read_certs(cert, &cert_path)?;
    let fields =
        x509::parse(&chain[0]).ok_or_else(|| err(&cert_path, format!("cannot read the certificate in `{cert}`")))?;
    if fields.not_after < unix_now() {
        return Err(err(
            &cert_path,
            format!("the certificate in `{cert}` expired on {}", x509::rfc3339(fields.not_after)),
        ));
    }
    let der = read_key(key, &key_path)?;
    let signer = provider()
        .key_provider
        .load_private_key(der)
        .map_err(|e| err(&key_path, format!("unsupported private key in `{key}`: {e}")))?;
    let ck = CertifiedKey::new(chain, signer);
    ck.keys_match().map_err(|e| {
        let why = match e {
            rustls::Error::InconsistentKeys(_) => "does not match the certificate".to_string(),
            other => format!("cannot be checked against the certificate: {other}"),
        };
        err(&key_path, format!("the key in `{key}` {why} in `{cert}`"))
    })?;
    Ok((Arc::new(ck), fields))
}

fn read_roots(file: &str, path: &str) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for c in read_certs(file, path)? {
        roots.add(c).map_err(|e| err(path, format!("`{file}` holds an unusable CA certificate: {e}")))?;
    }
    Ok(roots)
}

/// Builds a listener's TLS from `listeners[index].tls`.
pub fn server(tls: &cfg::ListenerTls, index: usize, http2: bool) -> Result<ServerTls, TlsError> {
    let base = format!("listeners[{index}].tls");
    let mut resolver = SniResolver { exact: HashMap::new(), wildcard: HashMap::new(), default: None };
    let mut certs = Vec::new();
    let mut files = Vec::new();
    for (k, c) in tls.certificates.iter().enumerate() {
        let p = format!("{base}.certificates[{k}]");
        let (ck, fields) = load_pair(&c.cert, &c.key, &p)?;
        files.push(PathBuf::from(&c.cert));
        files.push(PathBuf::from(&c.key));
        let names: Vec<String> = if c.names.is_empty() {
            fields.dns_names.clone()
        } else {
            c.names.iter().map(|n| n.to_ascii_lowercase()).collect()
        };
        for n in &names {
            // The first certificate listing a name wins, as in the order of the file.
            match n.strip_prefix("*.") {
                Some(parent) => resolver.wildcard.entry(parent.to_string()).or_insert_with(|| ck.clone()),
                None => resolver.exact.entry(n.clone()).or_insert_with(|| ck.clone()),
            };
        }
        if c.default || (k == 0 && !tls.certificates.iter().any(|c| c.default)) {
            resolver.default = Some(ck.clone());
        }
        certs.push(CertInfo {
            names,
            subject: fields.subject,
            not_after: fields.not_after,
            default: c.default,
            cert_file: c.cert.clone(),
        });
    }
    if certs.is_empty() {
        return Err(err(format!("{base}.certificates"), "at least one certificate is required"));
    }
    let versions: &[&'static rustls::SupportedProtocolVersion] = if tls.min_version == "1.3" {
        &[&rustls::version::TLS13]
    } else {
        &[&rustls::version::TLS12, &rustls::version::TLS13]
    };
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(versions)
        .map_err(|e| err(format!("{base}.min_version"), e.to_string()))?;
    let builder = match &tls.client_auth {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let p = format!("{base}.client_auth.ca");
            let roots = read_roots(&ca.ca, &p)?;
            files.push(PathBuf::from(&ca.ca));
            let mut v = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider());
            if !ca.required {
                v = v.allow_unauthenticated();
            }
            builder.with_client_cert_verifier(v.build().map_err(|e| err(&p, e.to_string()))?)
        }
    };
    let mut config = builder.with_cert_resolver(Arc::new(resolver));
    config.alpn_protocols = if http2 { ALPN } else { ALPN_H1 }.iter().map(|p| p.to_vec()).collect();
    Ok(ServerTls { config: Arc::new(config), certs, files, client_auth: tls.client_auth.is_some() })
}

/// Every TLS file problem in `config` (listeners and upstreams), for `gatehouse validate`.
pub fn check_files(config: &cfg::Config) -> Vec<TlsError> {
    let mut out = Vec::new();
    for (i, l) in config.listeners.iter().enumerate() {
        if let Some(t) = &l.tls {
            if let Err(e) = server(t, i, l.http2.enabled) {
                out.push(e);
            }
        }
    }
    for (i, u) in config.upstreams.iter().enumerate() {
        if u.tls.is_some() || u.targets.iter().any(|t| t.url.starts_with("https://")) {
            if let Err(e) = client_config(u.tls.as_ref(), &format!("upstreams[{i}].tls"), false) {
                out.push(e);
            }
        }
    }
    out
}

/// What a TLS client connection showed in its handshake.
#[derive(Debug, Clone, Default)]
pub struct ConnTls {
    /// The verified client certificate's subject (RFC 4514), when mTLS is on and one was sent.
    pub client_subject: Option<bytes::Bytes>,
}

/// The OS trust store, read once (on the first `https://` target without a `ca`).
fn system_roots() -> Result<Arc<RootCertStore>, String> {
    static ROOTS: OnceLock<Result<Arc<RootCertStore>, String>> = OnceLock::new();
    ROOTS
        .get_or_init(|| {
            let found = rustls_native_certs::load_native_certs();
            let mut roots = RootCertStore::empty();
            let (added, _) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                let why = found.errors.first().map(|e| e.to_string()).unwrap_or_else(|| "none found".into());
                return Err(format!("no usable CA certificate in the system trust store ({why}); set `ca`"));
            }
            Ok(Arc::new(roots))
        })
        .clone()
}

/// The rustls client config for an upstream's `https://` targets.
pub fn client_config(
    tls: Option<&cfg::UpstreamTls>,
    base: &str,
    http2: bool,
) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let roots = match tls.and_then(|t| t.ca.as_deref()) {
        Some(ca) => Arc::new(read_roots(ca, &format!("{base}.ca"))?),
        None => system_roots().map_err(|e| err(base, e))?,
    };
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| err(base, e.to_string()))?
        .with_root_certificates(roots);
    let mut config = match tls.and_then(|t| t.client_cert.as_ref()) {
        None => builder.with_no_client_auth(),
        Some(cc) => {
            let p = format!("{base}.client_cert");
            let (ck, _) = load_pair(&cc.cert, &cc.key, &p)?;
            let key = read_key(&cc.key, &format!("{p}.key"))?;
            builder.with_client_auth_cert(ck.cert.clone(), key).map_err(|e| err(format!("{p}.key"), e.to_string()))?
        }
    };
    config.alpn_protocols = if http2 { ALPN_H2 } else { ALPN_H1 }.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

/// TLS settings of one `https://` target.
#[derive(Clone)]
pub struct TargetTls {
    pub connector: tokio_rustls::TlsConnector,
    /// SNI sent and the name the certificate must carry.
    pub server_name: ServerName<'static>,
}

impl std::fmt::Debug for TargetTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TargetTls").field("server_name", &self.server_name).finish()
    }
}

impl TargetTls {
    pub fn new(config: Arc<rustls::ClientConfig>, name: &str, path: &str) -> Result<TargetTls, TlsError> {
        let server_name = ServerName::try_from(name.to_string())
            .map_err(|e| err(path, format!("`{name}` cannot be used as a TLS server name: {e}")))?;
        Ok(TargetTls { connector: tokio_rustls::TlsConnector::from(config), server_name })
    }
}

/// A TLS stream that pushes out what rustls buffered after every write and before every read.
///
/// The proxy was written for TCP, where a completed `write_all` means the bytes are in the
/// kernel and `flush` is a no-op, so it never flushes. tokio-rustls may keep encrypted bytes
/// buffered when the socket is full; without this wrapper a response tail could sit there while
/// we wait for the peer's next request, which would never come.
pub struct Flushing<S>(pub S);

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for Flushing<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        // Pending registers for writability; errors surface on the read below.
        let _ = Pin::new(&mut self.0).poll_flush(cx);
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Flushing<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.0).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(_))) {
            let _ = Pin::new(&mut self.0).poll_flush(cx);
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sni_resolution_order() {
        // No real key is needed to test the lookup: it compares pointers.
        let mk = || Arc::new(CertifiedKey::new(Vec::new(), Arc::new(NoKey)));
        let (a, w, d) = (mk(), mk(), mk());
        let r = SniResolver {
            exact: HashMap::from([("a.example.com".to_string(), a.clone())]),
            wildcard: HashMap::from([("example.com".to_string(), w.clone())]),
            default: Some(d.clone()),
        };
        assert!(Arc::ptr_eq(&r.pick(Some("a.example.com")).unwrap(), &a));
        assert!(Arc::ptr_eq(&r.pick(Some("b.example.com")).unwrap(), &w));
        // A wildcard covers exactly one label.
        assert!(Arc::ptr_eq(&r.pick(Some("x.b.example.com")).unwrap(), &d));
        assert!(Arc::ptr_eq(&r.pick(Some("example.com")).unwrap(), &d));
        assert!(Arc::ptr_eq(&r.pick(None).unwrap(), &d));
    }

    #[derive(Debug)]
    struct NoKey;
    impl rustls::sign::SigningKey for NoKey {
        fn choose_scheme(&self, _: &[rustls::SignatureScheme]) -> Option<Box<dyn rustls::sign::Signer>> {
            None
        }
        fn algorithm(&self) -> rustls::SignatureAlgorithm {
            rustls::SignatureAlgorithm::ED25519
        }
    }
}
