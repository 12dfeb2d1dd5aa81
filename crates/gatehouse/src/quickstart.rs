//! The built-in quickstart: demo services on loopback, a gateway in front of them, and the curl
//! commands that show what it does.
//!
//! Invariant: the config is real YAML run through the same load/validate/compile path as a user's
//! file, so the quickstart cannot show a feature the config format does not have. The addresses
//! can be moved with `GATEHOUSE_QUICKSTART_LISTEN` / `GATEHOUSE_QUICKSTART_ADMIN` (tests use this);
//! the printed commands always use the addresses actually bound.
//!
//! The protected route's credentials are made at start, never checked in: a random HMAC secret
//! (the token printed is signed with it and valid for an hour) and a random API key (only its
//! SHA-256 goes into the config, as a user's would). A restart makes new ones.
//!
//! HTTPS: a second listener (`GATEHOUSE_QUICKSTART_TLS_LISTEN`, default `127.0.0.1:8443`) serves
//! the same routes over TLS with a self-signed certificate made at start (rcgen, ring: no OpenSSL
//! CLI needed). Its certificate and key are written into a fresh directory of their own (mode
//! 0700, key 0600) that the config names like any user's files and that is removed when the
//! quickstart stops. The certificate names `localhost`, `127.0.0.1` and `::1` (and the listen IP
//! when it is another one), and the printed HTTPS commands use a host it names, so `curl
//! --cacert` verifies it as printed, without `-k`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use gatehouse_core::simple_http::{serve, SimpleRequest};
use gatehouse_core::{Gateway, LocalResponse, Options};
use serde_json::json;
use tokio::net::TcpListener;

/// Starts one demo service; it answers every request with JSON describing what it received.
async fn demo_service(service: &'static str, instance: &'static str) -> anyhow::Result<SocketAddr> {
    let l = TcpListener::bind("127.0.0.1:0").await?;
    let addr = l.local_addr()?;
    let (_tx, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        let _keep = _tx;
        serve(
            l,
            move |req: SimpleRequest| async move {
                let interesting: serde_json::Map<String, serde_json::Value> = req
                    .headers
                    .iter()
                    .filter(|(k, _)| k.starts_with("x-") || k == "host" || k == "forwarded")
                    .map(|(k, v)| (k.clone(), json!(v)))
                    .collect();
                let body = json!({
                    "service": service,
                    "instance": instance,
                    "method": req.method,
                    "path": req.path,
                    "query": req.query,
                    "headers": interesting,
                });
                LocalResponse::json(200, serde_json::to_string_pretty(&body).unwrap_or_default() + "\n")
            },
            rx,
        )
        .await
    });
    Ok(addr)
}

/// Credentials of the demo consumer, made at start.
struct DemoAuth {
    /// HS256 secret (hex) the gateway verifies with.
    secret: String,
    /// The token printed (HS256 with `secret`, `sub: demo`, valid for `TOKEN_LIFETIME`).
    token: String,
    /// The API key printed; the config holds only its SHA-256.
    api_key: String,
}

const TOKEN_LIFETIME: u64 = 3600;
const TOKEN_ISSUER: &str = "gatehouse-quickstart";

fn random_hex(n: usize) -> anyhow::Result<String> {
    let mut b = vec![0u8; n];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut b))
        .map_err(|e| anyhow::anyhow!("cannot read random bytes: {e}"))?;
    Ok(gatehouse_core::auth::keys::hex(&b))
}

impl DemoAuth {
    fn new() -> anyhow::Result<DemoAuth> {
        let secret = random_hex(32)?;
        let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
        let claims = json!({"sub": "demo", "iss": TOKEN_ISSUER, "iat": now, "exp": now + TOKEN_LIFETIME});
        let token = jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
        )?;
        Ok(DemoAuth { secret, token, api_key: format!("qs-{}", random_hex(16)?) })
    }
}

/// The HTTPS listener's self-signed certificate and key, in a directory of their own that is
/// removed on drop (when the quickstart stops, or fails to start).
struct DemoTls {
    dir: PathBuf,
    cert: PathBuf,
    key: PathBuf,
    /// The names in the certificate (DNS name and IP addresses), for the printed text.
    names: Vec<String>,
}

/// How long the certificate is valid. A fresh one is made at every start, so this only has to
/// outlast one run.
const CERT_DAYS: i64 = 90;

impl DemoTls {
    /// Makes the key pair and certificate (names `localhost`, `127.0.0.1`, `::1`, and `extra_ip`)
    /// and writes both as PEM into a new directory under the system temp dir.
    fn new(extra_ip: Option<IpAddr>) -> anyhow::Result<DemoTls> {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};

        let mut names = vec!["localhost".to_string(), "127.0.0.1".to_string(), "::1".to_string()];
        if let Some(ip) = extra_ip.filter(|ip| !names.contains(&ip.to_string())) {
            names.push(ip.to_string());
        }
        let mut params = rcgen::CertificateParams::new(names.clone())?;
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(rcgen::DnType::CommonName, "Gatehouse quickstart (self-signed)");
        // Valid from yesterday: a client whose clock is a little behind still accepts it.
        let today = (SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs() / 86_400) as i64;
        let ((y0, m0, d0), (y1, m1, d1)) = (ymd(today - 1)?, ymd(today + CERT_DAYS)?);
        params.not_before = rcgen::date_time_ymd(y0, m0, d0);
        params.not_after = rcgen::date_time_ymd(y1, m1, d1);
        params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        // ECDSA P-256: what rustls (ring) serves fastest, and every client accepts.
        let key_pair = rcgen::KeyPair::generate()?;
        let cert = params.self_signed(&key_pair)?;

        // A new directory, never an existing one: `create` fails rather than follow a path another
        // user of /tmp prepared. 0700, so the key's directory is private as well as the key.
        let dir = std::env::temp_dir().join(format!("gatehouse-quickstart-{}", random_hex(6)?));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", dir.display()))?;
        let tls = DemoTls { cert: dir.join("quickstart-cert.pem"), key: dir.join("quickstart-key.pem"), dir, names };
        write_new(&tls.cert, cert.pem().as_bytes(), 0o644)?;
        write_new(&tls.key, key_pair.serialize_pem().as_bytes(), 0o600)?;
        // The mode given at creation is reduced by the umask; set it exactly (never wider than
        // 0600 at any moment, since it was created with at most that).
        std::fs::set_permissions(&tls.key, std::fs::Permissions::from_mode(0o600))?;
        Ok(tls)
    }
}

impl Drop for DemoTls {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// (year, month, day) of a day counted from 1970-01-01, as `rcgen::date_time_ymd` takes them.
fn ymd(days: i64) -> anyhow::Result<(i32, u8, u8)> {
    let (y, m, d) = gatehouse_core::access_log::civil_from_days(days);
    Ok((i32::try_from(y)?, u8::try_from(m)?, u8::try_from(d)?))
}

/// Creates `path` (it must not exist) with `mode` and writes `bytes` into it.
fn write_new(path: &Path, bytes: &[u8], mode: u32) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .and_then(|mut f| f.write_all(bytes))
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))
}

/// The IP a listen address (as the config accepts it) names, if it is a specific one the
/// certificate must also name: not the wildcard, which `localhost` reaches.
fn specific_ip(listen: &str) -> Option<IpAddr> {
    let ip = match listen.strip_prefix("localhost:") {
        Some(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
        None => listen.parse::<SocketAddr>().ok()?.ip(),
    };
    (!ip.is_unspecified()).then_some(ip)
}

/// The host for the printed `https://` URLs: `localhost` when it reaches the listener (curl tries
/// both ::1 and 127.0.0.1), else the listener's own IP. Either is a name in the certificate.
fn https_host(bound: SocketAddr) -> String {
    match bound.ip() {
        ip if ip.is_unspecified() || ip == IpAddr::V4(Ipv4Addr::LOCALHOST) || ip == IpAddr::V6(Ipv6Addr::LOCALHOST) => {
            "localhost".to_string()
        }
        IpAddr::V6(ip) => format!("[{ip}]"),
        IpAddr::V4(ip) => ip.to_string(),
    }
}

/// `p` as one shell word: as it is when it needs no quoting (the usual temp dir), else in single
/// quotes. The printed commands must work when pasted.
fn shell_word(p: &Path) -> String {
    let s = p.display().to_string();
    if s.chars().all(|c| c.is_ascii_alphanumeric() || "/._-+:,@".contains(c)) {
        s
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// `p` as a YAML double-quoted scalar (JSON string syntax is valid YAML), whatever it contains.
fn yaml_str(p: &Path) -> String {
    serde_json::to_string(&p.display().to_string()).unwrap_or_default()
}

#[allow(clippy::too_many_arguments)]
fn config_yaml(
    listen: &str,
    tls_listen: &str,
    admin: &str,
    users: [SocketAddr; 2],
    orders: SocketAddr,
    echo: SocketAddr,
    auth: &DemoAuth,
    tls: &DemoTls,
) -> String {
    format!(
        r#"# Gatehouse quickstart (built in): `gatehouse` with no arguments runs this.
listeners:
  - name: public
    address: {listen}
  # HTTPS with the self-signed certificate made at start. Routes apply to every listener, so all
  # the routes below are served here too.
  - name: public-tls
    address: {tls_listen}
    tls:
      certificates:
        - cert: {cert}
          key: {key}
admin:
  address: {admin}
upstreams:
  - name: users
    balancer: round_robin
    targets:
      - url: http://{u0}
      - url: http://{u1}
    health_check:
      path: /healthz
      interval: 2s
      timeout: 500ms
  - name: orders
    targets:
      - url: http://{orders}
  - name: echo
    targets:
      - url: http://{echo}
consumers:
  - name: demo
    groups: [demo]
    credentials:
      jwt:
        - {{subject: demo, issuer: {issuer}}}
      api_keys:
        - sha256: {key_sha256}
routes:
  - name: user-by-id
    match:
      path: {{ template: "/users/{{id}}" }}
      methods: [GET]
    upstream: users
    rewrite:
      path: "/v1/profiles/{{id}}"
  - name: users
    match:
      path: {{ prefix: /users }}
    upstream: users
  - name: orders
    match:
      path: {{ prefix: /orders }}
    upstream: orders
    rewrite:
      strip_prefix: true
  - name: echo
    match:
      path: {{ exact: /echo }}
    upstream: echo
    request_headers:
      set: {{ X-Gatehouse-Demo: "added by the gateway" }}
      remove: [X-Internal-Secret]
    response_headers:
      set: {{ X-Powered-By: gatehouse }}
    # Strict-Transport-Security, sent over TLS only (RFC 6797): the plain listener's /echo has
    # none. Short, because HSTS binds a host on every port: a browser that trusted this
    # certificate would otherwise insist on https for all of localhost for a year.
    hsts: {{ max_age: 5m }}
  - name: limited
    match:
      path: {{ exact: /limited }}
    upstream: echo
    policies:
      # 5 requests per minute per client IP, all 5 at once (burst 4), then one every 12 s.
      - rate_limit:
          limit: 5/min
          burst: 4
          key: client_ip
          headers: draft
  - name: secure
    match:
      path: {{ exact: /secure }}
    upstream: echo
    policies:
      # A JWT (HS256, secret made at start) or an API key; the echo service sees who called,
      # never the credential.
      - auth:
          methods:
            - jwt:
                keys: [{{ secret: "{secret}", alg: HS256 }}]
                issuers: [{issuer}]
                max_lifetime: 1h
            - api_key: {{ from: [{{ header: X-API-Key }}] }}
          upstream_headers:
            claims: {{ sub: X-User-Id }}
"#,
        u0 = users[0],
        u1 = users[1],
        issuer = TOKEN_ISSUER,
        secret = auth.secret,
        key_sha256 = gatehouse_core::auth::keys::hash_key(&auth.api_key),
        cert = yaml_str(&tls.cert),
        key = yaml_str(&tls.key),
    )
}

/// Which variable moves the address a bind failed on (the error names it as parsed:
/// `localhost:P` as `127.0.0.1:P`).
fn env_var_for(addr: &str, tls_listen: &str, admin: &str) -> &'static str {
    let parsed = |a: &str| match a.strip_prefix("localhost:") {
        Some(port) => format!("127.0.0.1:{port}"),
        None => a.to_string(),
    };
    if parsed(tls_listen) == addr {
        "GATEHOUSE_QUICKSTART_TLS_LISTEN"
    } else if parsed(admin) == addr {
        "GATEHOUSE_QUICKSTART_ADMIN"
    } else {
        "GATEHOUSE_QUICKSTART_LISTEN"
    }
}

pub async fn run() -> anyhow::Result<()> {
    let listen = std::env::var("GATEHOUSE_QUICKSTART_LISTEN").unwrap_or_else(|_| "127.0.0.1:8080".into());
    let tls_listen = std::env::var("GATEHOUSE_QUICKSTART_TLS_LISTEN").unwrap_or_else(|_| "127.0.0.1:8443".into());
    let admin = std::env::var("GATEHOUSE_QUICKSTART_ADMIN").unwrap_or_else(|_| "127.0.0.1:9901".into());
    let users = [demo_service("users", "users-1").await?, demo_service("users", "users-2").await?];
    let orders = demo_service("orders", "orders-1").await?;
    let echo = demo_service("echo", "echo-1").await?;
    let auth = DemoAuth::new()?;
    // Lives until `run` returns: the directory goes when the quickstart stops.
    let tls = DemoTls::new(specific_ip(&tls_listen))?;
    let yaml = config_yaml(&listen, &tls_listen, &admin, users, orders, echo, &auth, &tls);
    let config = gatehouse_config::load_str(&yaml, &|_| None).map_err(|errs| {
        anyhow::anyhow!(
            "quickstart config invalid: {}",
            errs.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; ")
        )
    })?;
    let gw =
        Gateway::start(config, Options { workers: 1, admin: true, ..Default::default() }).await.map_err(
            |e| match &e {
                gatehouse_core::StartError::Bind { addr, .. } => anyhow::anyhow!(
                    "{e} (is another program using this port? set {})",
                    env_var_for(addr, &tls_listen, &admin)
                ),
                _ => anyhow::anyhow!("{e}"),
            },
        )?;
    let g = gw.listen_addrs[0];
    let (Some(tls_bound), Some(a)) = (gw.listen_addrs.get(1), gw.admin_addr) else {
        anyhow::bail!("quickstart: the gateway did not report its HTTPS and admin addresses");
    };
    let h = format!("{}:{}", https_host(*tls_bound), tls_bound.port());
    let cacert = shell_word(&tls.cert);
    println!(
        r#"
Gatehouse quickstart is running: gateway on http://{g}, admin on http://{a}
Demo services: users (2 instances) on {u0} and {u1}, orders on {orders}, echo on {echo}.

Try these:

  # Path routing + round-robin load balancing: run it twice, "instance" alternates users-1 / users-2
  curl -s http://{g}/users

  # A path parameter, rewritten upstream to /v1/profiles/{{id}}
  curl -s http://{g}/users/42

  # Prefix routing with strip_prefix: the orders service sees /7
  curl -s http://{g}/orders/7

  # Header rewrite: X-Gatehouse-Demo added, X-Internal-Secret removed, X-Powered-By on the response
  curl -si http://{g}/echo -H 'X-Internal-Secret: hunter2'

  # Rate limit (5/min per client IP): the RateLimit-Policy and RateLimit headers show the quota
  curl -s -o /dev/null -D - http://{g}/limited

  # ...and once the quota is used up, 429 (with Retry-After) until it refills (one every 12 s)
  for i in 1 2 3 4 5 6; do curl -s -o /dev/null -w '%{{http_code}} ' http://{g}/limited; done; echo

  # Authentication: /secure wants a JWT or an API key; without one, 401 with WWW-Authenticate
  curl -si http://{g}/secure

  # ...with a token signed at start (HS256, valid 1 hour): echo sees X-Consumer-Name: demo
  curl -s http://{g}/secure -H 'Authorization: Bearer {token}'

  # ...or with the demo API key (the gateway keeps only its SHA-256; the key is not forwarded)
  curl -s http://{g}/secure -H 'X-API-Key: {api_key}'

  # No route: a JSON error with a request id
  curl -s http://{g}/nope

  # Admin: upstream targets and their health, the running config, the served certificates
  curl -s http://{a}/upstreams
  curl -s http://{a}/config
  curl -s http://{a}/tls

HTTPS on https://{h} serves the same routes over TLS, with a certificate made at start for
{names} (self-signed, valid {days} days). It and its key are in
{dir}
(removed when the quickstart stops). curl verifies the certificate against that file: no -k.

  # Over TLS: the echo service sees X-Forwarded-Proto: https, and the response carries
  # Strict-Transport-Security (this route's hsts; only over TLS, never on http://)
  curl -si --cacert {cacert} https://{h}/echo

  # HTTP/2 when the gateway offers it by ALPN, else HTTP/1.1: the last line says which was used
  curl -s --http2 --cacert {cacert} -w 'HTTP/%{{http_version}}\n' https://{h}/users/42

Press Ctrl-C to stop.
"#,
        u0 = users[0],
        u1 = users[1],
        token = auth.token,
        api_key = auth.api_key,
        days = CERT_DAYS,
        names = tls.names.join(", "),
        dir = tls.dir.display(),
    );
    let served = crate::serve_until_signal(gw).await;
    drop(tls);
    served
}
