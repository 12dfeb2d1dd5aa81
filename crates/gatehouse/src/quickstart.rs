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

use std::net::SocketAddr;
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

fn config_yaml(
    listen: &str,
    admin: &str,
    users: [SocketAddr; 2],
    orders: SocketAddr,
    echo: SocketAddr,
    auth: &DemoAuth,
) -> String {
    format!(
        r#"# Gatehouse quickstart (built in): `gatehouse` with no arguments runs this.
listeners:
  - name: public
    address: {listen}
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
    )
}

pub async fn run() -> anyhow::Result<()> {
    let listen = std::env::var("GATEHOUSE_QUICKSTART_LISTEN").unwrap_or_else(|_| "127.0.0.1:8080".into());
    let admin = std::env::var("GATEHOUSE_QUICKSTART_ADMIN").unwrap_or_else(|_| "127.0.0.1:9901".into());
    let users = [demo_service("users", "users-1").await?, demo_service("users", "users-2").await?];
    let orders = demo_service("orders", "orders-1").await?;
    let echo = demo_service("echo", "echo-1").await?;
    let auth = DemoAuth::new()?;
    let yaml = config_yaml(&listen, &admin, users, orders, echo, &auth);
    let config = gatehouse_config::load_str(&yaml, &|_| None).map_err(|errs| {
        anyhow::anyhow!(
            "quickstart config invalid: {}",
            errs.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; ")
        )
    })?;
    let gw = Gateway::start(config, Options { workers: 1, admin: true, ..Default::default() })
        .await
        .map_err(|e| anyhow::anyhow!("{e} (is another program using this port? set GATEHOUSE_QUICKSTART_LISTEN)"))?;
    let g = gw.listen_addrs[0];
    let a = gw.admin_addr.map(|a| a.to_string()).unwrap_or_default();
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

  # Admin: upstream targets and their health, and the running config
  curl -s http://{a}/upstreams
  curl -s http://{a}/config

Press Ctrl-C to stop.
"#,
        u0 = users[0],
        u1 = users[1],
        token = auth.token,
        api_key = auth.api_key,
    );
    crate::serve_until_signal(gw).await
}
