//! TLS test helpers: a throwaway PKI made with the `openssl` CLI (a CA, server and client
//! certificates, expired ones), a rustls acceptor for `https://` test backends, a rustls client
//! that reports which certificate the server chose, and `curl` as an independent real client.
//!
//! Invariants: everything lives in a per-test temp directory; keys are P-256 (fast to make);
//! every client call is bounded in time.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::net::TcpStream;

use crate::Resp;

pub use rustls;

fn openssl(args: &[&str], dir: &Path) {
    let out = Command::new("openssl").args(args).current_dir(dir).output().expect("run openssl");
    assert!(out.status.success(), "openssl {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
}

/// A test CA in a temp directory, issuing certificates on demand.
pub struct Pki {
    pub dir: PathBuf,
    serial: std::sync::atomic::AtomicU32,
}

/// A certificate and key (PEM files).
#[derive(Debug, Clone)]
pub struct Issued {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Pki {
    /// A new CA (`ca.pem`, `ca.key`) named `CN=<name>`.
    pub fn new(name: &str) -> Pki {
        let dir =
            std::env::temp_dir().join(format!("gatehouse-pki-{}-{}-{name}", std::process::id(), crate::free_port()));
        std::fs::create_dir_all(&dir).expect("pki dir");
        openssl(
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-days",
                "30",
                "-subj",
                &format!("/CN={name}"),
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ],
            &dir,
        );
        Pki { dir, serial: std::sync::atomic::AtomicU32::new(100) }
    }

    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// Issues `<file>.pem`/`<file>.key` with subject `subj` (e.g. `/CN=a/O=Test`), DNS and IP
    /// SANs from `sans` (`a.test`, `127.0.0.1`), valid for `days` (negative: already expired).
    pub fn issue(&self, file: &str, subj: &str, sans: &[&str], days: i32) -> Issued {
        let san: Vec<String> = sans
            .iter()
            .map(|s| if s.parse::<std::net::IpAddr>().is_ok() { format!("IP:{s}") } else { format!("DNS:{s}") })
            .collect();
        let mut ext = String::from(
            "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\n",
        );
        if !san.is_empty() {
            ext.push_str(&format!("subjectAltName={}\n", san.join(",")));
        }
        let ext_file = format!("{file}.ext");
        std::fs::write(self.dir.join(&ext_file), ext).expect("ext file");
        let (key, csr, pem) = (format!("{file}.key"), format!("{file}.csr"), format!("{file}.pem"));
        openssl(
            &[
                "req",
                "-new",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-keyout",
                &key,
                "-out",
                &csr,
                "-subj",
                subj,
            ],
            &self.dir,
        );
        let serial = self.serial.fetch_add(1, std::sync::atomic::Ordering::Relaxed).to_string();
        openssl(
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-set_serial",
                &serial,
                "-out",
                &pem,
                "-days",
                &days.to_string(),
                "-extfile",
                &ext_file,
            ],
            &self.dir,
        );
        Issued { cert: self.dir.join(pem), key: self.dir.join(key) }
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn certs(path: &Path) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_file_iter(path).expect("read certs").collect::<Result<_, _>>().expect("parse certs")
}

fn key(path: &Path) -> PrivateKeyDer<'static> {
    PrivateKeyDer::from_pem_file(path).expect("read key")
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A rustls acceptor for a test backend (optionally requiring client certificates from `ca`).
pub fn acceptor(cert: &Path, key_file: &Path, client_ca: Option<&Path>) -> tokio_rustls::TlsAcceptor {
    let b = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("versions");
    let b = match client_ca {
        None => b.with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in certs(ca) {
                roots.add(c).expect("ca");
            }
            let v = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                .build()
                .expect("verifier");
            b.with_client_cert_verifier(v)
        }
    };
    let config = b.with_single_cert(certs(cert), key(key_file)).expect("server config");
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}

/// An acceptor for `cert`/`key` that offers these ALPN protocols.
pub fn acceptor_alpn(cert: &Path, key_file: &Path, alpn: &[&[u8]]) -> tokio_rustls::TlsAcceptor {
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(certs(cert), key(key_file))
        .expect("server config");
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}

/// Options of [`TlsClient::connect`].
#[derive(Default)]
pub struct ClientOpts<'a> {
    /// Name verified (and sent as SNI unless `no_sni`).
    pub server_name: &'a str,
    pub ca: Option<&'a Path>,
    pub no_sni: bool,
    pub client_cert: Option<&'a Issued>,
    /// Only TLS 1.2 (else 1.2 and 1.3).
    pub tls12_only: bool,
}

/// A keep-alive HTTP/1.1 client over rustls.
pub struct TlsClient {
    sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    /// Subject of the certificate the server presented.
    pub server_subject: String,
    pub protocol: Option<rustls::ProtocolVersion>,
    pub alpn: Option<Vec<u8>>,
}

impl TlsClient {
    /// Connects and handshakes (verifying the server against `opts.ca`).
    pub async fn connect(addr: SocketAddr, opts: ClientOpts<'_>) -> std::io::Result<TlsClient> {
        let mut roots = rustls::RootCertStore::empty();
        if let Some(ca) = opts.ca {
            for c in certs(ca) {
                roots.add(c).expect("ca");
            }
        }
        let versions: &[&'static rustls::SupportedProtocolVersion] = if opts.tls12_only {
            &[&rustls::version::TLS12]
        } else {
            &[&rustls::version::TLS12, &rustls::version::TLS13]
        };
        let b = rustls::ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(versions)
            .expect("versions")
            .with_root_certificates(roots);
        let mut config = match opts.client_cert {
            None => b.with_no_client_auth(),
            Some(c) => b.with_client_auth_cert(certs(&c.cert), key(&c.key)).expect("client cert"),
        };
        config.enable_sni = !opts.no_sni;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let name = ServerName::try_from(opts.server_name.to_string()).expect("server name");
        let tcp = TcpStream::connect(addr).await?;
        let tls = tokio::time::timeout(Duration::from_secs(5), connector.connect(name, tcp))
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "handshake timeout"))??;
        let conn = tls.get_ref().1;
        let server_subject = conn
            .peer_certificates()
            .and_then(|c| c.first())
            .and_then(|c| gatehouse_core::tls::x509::parse(c))
            .map(|f| f.subject)
            .unwrap_or_default();
        let protocol = conn.protocol_version();
        let alpn = conn.alpn_protocol().map(|a| a.to_vec());
        let (sender, c) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        tokio::spawn(c);
        Ok(TlsClient { sender, server_subject, protocol, alpn })
    }

    /// A request on this connection; `Err` when the connection is gone.
    pub async fn try_send(&mut self, path: &str, host: &str, headers: &[(&str, &str)]) -> Result<Resp, String> {
        let mut b = hyper::Request::builder().method("GET").uri(path).header("host", host);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let req = b.body(Full::new(Bytes::new())).map_err(|e| e.to_string())?;
        if self.sender.is_closed() {
            return Err("connection closed".into());
        }
        let resp = tokio::time::timeout(Duration::from_secs(10), self.sender.send_request(req))
            .await
            .map_err(|_| "no response in time".to_string())?
            .map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        let headers = resp
            .headers()
            .iter()
            .map(|(k, v)| (k.as_str().to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
            .collect();
        let body =
            http_body_util::BodyExt::collect(resp.into_body()).await.map_err(|e| e.to_string())?.to_bytes().to_vec();
        Ok(Resp { status, headers, body })
    }

    pub async fn get(&mut self, path: &str, host: &str) -> Resp {
        self.try_send(path, host, &[]).await.expect("request")
    }

    pub fn is_closed(&self) -> bool {
        self.sender.is_closed()
    }
}

/// Output of one `curl` run.
#[derive(Debug)]
pub struct Curl {
    pub ok: bool,
    /// `%{http_code}` then the body.
    pub stdout: String,
    pub stderr: String,
}

impl Curl {
    pub fn status(&self) -> u16 {
        self.stdout.get(..3).and_then(|s| s.parse().ok()).unwrap_or(0)
    }
}

/// Runs the real `curl` (bounded to 10 s) with `args`, printing the status code first. Runs on
/// a blocking thread: the test's own runtime must keep serving its backends meanwhile.
pub async fn curl(args: &[&str]) -> Curl {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    tokio::task::spawn_blocking(move || curl_blocking(&args)).await.expect("curl thread")
}

fn curl_blocking(args: &[String]) -> Curl {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10", "-w", "%{http_code}", "-o", "/dev/null"])
        .args(args)
        .output()
        .expect("run curl (installed by .ci/run)");
    Curl {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}
