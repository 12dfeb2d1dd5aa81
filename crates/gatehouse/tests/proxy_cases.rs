//! Table-driven proxy cases: client request → what the backend received → what the client got,
//! run for every protocol pair the gateway forwards between.
//!
//! Clients: HTTP/1.1 and HTTP/2 (h2c, prior knowledge on the plain listener). Upstreams: HTTP/1.1
//! (`http://`), HTTP/2 cleartext (`h2c://`), HTTP/1.1 over TLS (`https://`) and HTTP/2 over TLS
//! (`https://` + `protocol: http2`). Each pair is one `matrix_*` test with one real hyper backend
//! and one in-process gateway per route table, so a leg that drifts from the others fails by name:
//! `[h2c -> https] row 'X-Forwarded-* are added': ...`.
//!
//! A row runs on every pair unless its `applies` says otherwise, with the protocol reason. What
//! legitimately differs per protocol is handled here, once, not per row:
//! - on an HTTP/2 upstream, `:authority` plays Host and the target is `:scheme://:authority:path`
//!   (hyper's server shows it as an absolute URI): the row's `uri` is compared with its path and
//!   query, `host` with `:authority`;
//! - an HTTP/2 leg never carries connection-specific fields (RFC 9113 §8.2.2): checked on every
//!   row, whatever it expects;
//! - on an HTTP/2 leg END_STREAM delimits a body, so an expected `content-length` that frames the
//!   message's own body may be absent (if present it must still be the expected value); on HEAD
//!   responses and 304s it describes the representation and is compared as on HTTP/1.1.
//!
//! The tests after the table cover what does not fit a single request/response row: raw upstream
//! framing, HTTP/1.0 clients, large bodies and keep-alive.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gatehouse_testkit::tls::Pki;
use gatehouse_testkit::{
    checksum, gateway, pattern, raw_closes, request, request_chunked, request_h2, request_h2_chunked, simple_config,
    Backend, Cfg, KeepAliveClient, RawBackend, Received, Reply, Resp, TestGateway,
};

/// How the client sends its body.
#[derive(Clone, Copy)]
enum Body {
    None,
    /// With `Content-Length`.
    Length(&'static [u8]),
    /// HTTP/1.1: `Transfer-Encoding: chunked`, one chunk per slice. HTTP/2: one DATA frame per
    /// slice and no `content-length` (the length is known only at END_STREAM).
    Chunked(&'static [&'static [u8]]),
}

/// A header expectation (names are case-insensitive).
#[derive(Clone, Copy, Debug)]
enum H {
    Present(&'static str),
    Absent(&'static str),
    /// The first value equals.
    Eq(&'static str, &'static str),
    /// Every value, in order.
    All(&'static str, &'static [&'static str]),
}

#[derive(Clone, Copy)]
struct Req {
    method: &'static str,
    path: &'static str,
    /// A `host` header is the `:authority` of an HTTP/2 client.
    headers: &'static [(&'static str, &'static str)],
    body: Body,
}

const GET_ROOT: Req = Req { method: "GET", path: "/", headers: &[], body: Body::None };

/// What the backend must have received (exactly one request).
#[derive(Clone, Copy)]
struct Up {
    method: &'static str,
    /// Path and query as on the upstream request line (`:path` on HTTP/2).
    uri: &'static str,
    headers: &'static [H],
    body: &'static [u8],
}

/// What the backend answers.
#[derive(Clone, Copy)]
struct UpReply {
    status: u16,
    headers: &'static [(&'static str, &'static str)],
    body: &'static [u8],
    /// Before the response head.
    delay: Option<Duration>,
}

const OK_REPLY: UpReply =
    UpReply { status: 200, headers: &[("content-type", "text/plain")], body: b"upstream-ok", delay: None };

#[derive(Clone, Copy)]
enum BodyExp {
    Any,
    Exact(&'static [u8]),
    Contains(&'static str),
}

/// What the client must get.
#[derive(Clone, Copy)]
struct Client {
    status: u16,
    headers: &'static [H],
    body: BodyExp,
}

// ------------------------------------------------------------------------------------------------
// Protocol pairs.
// ------------------------------------------------------------------------------------------------

/// What the client speaks to the gateway.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ClientProto {
    H1,
    /// HTTP/2 with prior knowledge on the plain listener.
    H2c,
}

/// What the gateway speaks to the upstream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum UpProto {
    /// `http://`
    Http,
    /// `h2c://`
    H2c,
    /// `https://` (HTTP/1.1 over TLS)
    Https,
    /// `https://` + `protocol: http2` (ALPN h2)
    HttpsH2,
}

const CLIENTS: [ClientProto; 2] = [ClientProto::H1, ClientProto::H2c];
const UPSTREAMS: [UpProto; 4] = [UpProto::Http, UpProto::H2c, UpProto::Https, UpProto::HttpsH2];
const H2_UPSTREAMS: [UpProto; 2] = [UpProto::H2c, UpProto::HttpsH2];

impl ClientProto {
    fn label(self) -> &'static str {
        match self {
            ClientProto::H1 => "h1",
            ClientProto::H2c => "h2c",
        }
    }
}

impl UpProto {
    fn label(self) -> &'static str {
        match self {
            UpProto::Http => "http",
            UpProto::H2c => "h2c",
            UpProto::Https => "https",
            UpProto::HttpsH2 => "https+h2",
        }
    }
    fn is_h2(self) -> bool {
        H2_UPSTREAMS.contains(&self)
    }
}

#[derive(Clone, Copy, Debug)]
struct Pair {
    client: ClientProto,
    up: UpProto,
}

impl std::fmt::Display for Pair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "[{} -> {}]", self.client.label(), self.up.label())
    }
}

/// Which pairs a row runs on. The default (`EVERY_PAIR`) is all of them; leaving any out takes
/// a reason from the protocols themselves.
#[derive(Clone, Copy)]
struct Applies {
    clients: &'static [ClientProto],
    upstreams: &'static [UpProto],
    why: &'static str,
}

const EVERY_PAIR: Applies = Applies { clients: &CLIENTS, upstreams: &UPSTREAMS, why: "" };

impl Applies {
    const fn clients(clients: &'static [ClientProto], why: &'static str) -> Applies {
        Applies { clients, upstreams: &UPSTREAMS, why }
    }
    const fn upstreams(upstreams: &'static [UpProto], why: &'static str) -> Applies {
        Applies { clients: &CLIENTS, upstreams, why }
    }
    fn covers(&self, p: Pair) -> bool {
        self.clients.contains(&p.client) && self.upstreams.contains(&p.up)
    }
}

/// Fields HTTP/2 forbids (RFC 9113 §8.2.2); `te` is allowed only as `trailers`.
const CONNECTION_SPECIFIC: [&str; 5] = ["connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade"];

// ------------------------------------------------------------------------------------------------
// Rows.
// ------------------------------------------------------------------------------------------------

/// Everything a cross-check may look at.
struct Ctx {
    pair: Pair,
    backend: SocketAddr,
    /// As the harness compares it (on HTTP/2: `uri` is `:path`, `host` is `:authority`).
    received: Option<Received>,
    resp: Resp,
}

type Check = fn(&Ctx) -> Result<(), String>;

struct Case {
    name: &'static str,
    /// Route list items for the config (upstream `backend`); empty = one catch-all route.
    routes: &'static str,
    req: Req,
    /// `None`: the request must not reach the backend at all.
    up: Option<Up>,
    reply: UpReply,
    client: Client,
    /// Extra assertions that relate values (request ids, the backend's address).
    check: Option<Check>,
    applies: Applies,
}

/// What a row does not say: no extra check, every pair.
const ROW: Case = Case {
    name: "",
    routes: "",
    req: GET_ROOT,
    up: None,
    reply: OK_REPLY,
    client: Client { status: 200, headers: &[], body: BodyExp::Any },
    check: None,
    applies: EVERY_PAIR,
};

fn is_hex32(s: &str) -> bool {
    s.len() == 32 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// One message leg as the harness compares it.
struct Leg<'a> {
    what: &'a str,
    h2: bool,
    /// Whether `content-length` frames this message's own body (not a HEAD response, not a 304).
    length_frames_body: bool,
    all: &'a dyn Fn(&str) -> Vec<String>,
}

fn check_headers(leg: &Leg, exp: &[H]) -> Vec<String> {
    let all = leg.all;
    let mut errs = Vec::new();
    for h in exp {
        let ok = match *h {
            // HTTP/2: END_STREAM delimits the body, a framing `content-length` is optional.
            H::Eq(n, _) | H::All(n, _)
                if leg.h2
                    && leg.length_frames_body
                    && n.eq_ignore_ascii_case("content-length")
                    && all(n).is_empty() =>
            {
                true
            }
            H::Present(n) => !all(n).is_empty(),
            H::Absent(n) => all(n).is_empty(),
            H::Eq(n, v) => all(n).first().map(String::as_str) == Some(v),
            H::All(n, vs) => all(n) == vs.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        };
        if !ok {
            let name = match *h {
                H::Present(n) | H::Absent(n) | H::Eq(n, _) | H::All(n, _) => n,
            };
            errs.push(format!("{}: expected {h:?}, got {name}: {:?}", leg.what, all(name)));
        }
    }
    if leg.h2 {
        for n in CONNECTION_SPECIFIC {
            if !all(n).is_empty() {
                errs.push(format!("{}: connection-specific {n}: {:?} on an HTTP/2 leg", leg.what, all(n)));
            }
        }
    }
    errs
}

/// A body for a failure message: the text, or its length and checksum when large.
fn show(b: &[u8]) -> String {
    if b.len() <= 512 {
        format!("{:?}", String::from_utf8_lossy(b))
    } else {
        format!("{} bytes (checksum {})", b.len(), checksum(b))
    }
}

/// The upstream request as a row states it. HTTP/1.1: as received. HTTP/2: the version checked,
/// `uri` reduced to `:path` (scheme and authority checked), `host` taken from `:authority`.
fn normalize(mut r: Received, up: UpProto) -> Result<Received, String> {
    let version = if up.is_h2() { "HTTP/2.0" } else { "HTTP/1.1" };
    if r.version != version {
        return Err(format!("upstream spoke {}, expected {version}", r.version));
    }
    if !up.is_h2() {
        return Ok(r);
    }
    let uri: http::Uri = r.uri.parse().map_err(|e| format!("upstream :path {:?}: {e}", r.uri))?;
    let scheme = if up == UpProto::HttpsH2 { "https" } else { "http" };
    if uri.scheme_str() != Some(scheme) {
        return Err(format!("upstream :scheme: expected {scheme}, got {:?}", uri.scheme_str()));
    }
    let authority = uri.authority().map(|a| a.as_str().to_string()).ok_or("no upstream :authority")?;
    let hosts = r.header_all("host");
    if hosts.is_empty() {
        r.headers.push(("host".into(), authority));
    } else if hosts.iter().any(|h| !h.eq_ignore_ascii_case(&authority)) {
        return Err(format!("upstream host {hosts:?} differs from :authority {authority:?}"));
    }
    r.uri = uri.path_and_query().map(|p| p.as_str().to_string()).unwrap_or_else(|| "/".into());
    Ok(r)
}

/// One backend and one gateway per route table, for one pair. Every config also has an upstream
/// `dead` of the same protocol on a closed port (1).
struct Rig {
    pair: Pair,
    backend: Backend,
    reply: Arc<Mutex<Reply>>,
    url: String,
    dead_url: String,
    upstream_fields: String,
    gateways: HashMap<&'static str, TestGateway>,
    _pki: Option<Pki>,
}

impl Rig {
    async fn start(pair: Pair) -> Rig {
        let reply = Arc::new(Mutex::new(Reply::text(200, "")));
        let r = reply.clone();
        let handler: gatehouse_testkit::Handler = Arc::new(move |_: &Received| r.lock().expect("reply").clone());
        let name = pair.to_string();
        let (backend, pki) = match pair.up {
            UpProto::Http => (Backend::start(&name, handler).await, None),
            UpProto::H2c => (Backend::start_h2c(&name, handler).await, None),
            UpProto::Https | UpProto::HttpsH2 => {
                let pki = Pki::new("matrix");
                let leaf = pki.issue("up", "/CN=up", &["127.0.0.1"], 10);
                let b = if pair.up == UpProto::Https {
                    Backend::start_tls(&name, handler, &leaf.cert, &leaf.key).await
                } else {
                    Backend::start_h2_tls(&name, handler, &leaf.cert, &leaf.key).await
                };
                (b, Some(pki))
            }
        };
        let scheme = match pair.up {
            UpProto::Http => "http",
            UpProto::H2c => "h2c",
            UpProto::Https | UpProto::HttpsH2 => "https",
        };
        let upstream_fields = match (pair.up, &pki) {
            (UpProto::Https, Some(pki)) => format!("tls: {{ca: {}}}", pki.ca().display()),
            (UpProto::HttpsH2, Some(pki)) => format!("protocol: http2\ntls: {{ca: {}}}", pki.ca().display()),
            _ => String::new(),
        };
        let url = format!("{scheme}://{}", backend.addr);
        // Port 1 (tcpmux) is closed on any test machine; a free_port() could be taken meanwhile by
        // another test's listener.
        let dead_url = format!("{scheme}://127.0.0.1:1");
        Rig { pair, backend, reply, url, dead_url, upstream_fields, gateways: HashMap::new(), _pki: pki }
    }

    /// The gateway for a route table (started on first use).
    async fn gateway(&mut self, routes: &'static str) -> SocketAddr {
        if !self.gateways.contains_key(routes) {
            let cfg = Cfg::new().upstream_with("backend", &[&self.url], &self.upstream_fields).upstream_with(
                "dead",
                &[&self.dead_url],
                &self.upstream_fields,
            );
            let cfg = if routes.is_empty() { cfg.route("all", "backend") } else { cfg.routes_yaml(routes) };
            self.gateways.insert(routes, gateway(&cfg.to_yaml()).await);
        }
        self.gateways[routes].addr
    }

    async fn send(&mut self, c: &Case) -> Resp {
        let addr = self.gateway(c.routes).await;
        let q = c.req;
        match (self.pair.client, q.body) {
            (ClientProto::H1, Body::None) => request(addr, q.method, q.path, q.headers, b"").await,
            (ClientProto::H1, Body::Length(b)) => request(addr, q.method, q.path, q.headers, b).await,
            (ClientProto::H1, Body::Chunked(chunks)) => {
                request_chunked(addr, q.method, q.path, q.headers, chunks).await
            }
            (ClientProto::H2c, Body::None) => request_h2(addr, q.method, q.path, q.headers, b"").await,
            (ClientProto::H2c, Body::Length(b)) => request_h2(addr, q.method, q.path, q.headers, b).await,
            (ClientProto::H2c, Body::Chunked(chunks)) => {
                request_h2_chunked(addr, q.method, q.path, q.headers, chunks).await
            }
        }
    }

    async fn shutdown(self) {
        for (_, gw) in self.gateways {
            shutdown(gw).await;
        }
    }
}

/// Runs one row on the rig's pair; every problem is `[pair] row 'name': ...`.
async fn run_case(rig: &mut Rig, c: &Case) -> Vec<String> {
    let r = c.reply;
    *rig.reply.lock().expect("reply") = Reply {
        status: r.status,
        headers: r.headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        body: r.body.to_vec(),
        delay: r.delay,
        trailers: Vec::new(),
    };
    let before = rig.backend.count();
    let resp = rig.send(c).await;
    let (pair, up_h2, client_h2) = (rig.pair, rig.pair.up.is_h2(), rig.pair.client == ClientProto::H2c);
    let mut errs = Vec::new();
    let mut got = Vec::new();
    for r in rig.backend.requests().into_iter().skip(before) {
        match normalize(r, pair.up) {
            Ok(r) => got.push(r),
            Err(e) => errs.push(e),
        }
    }
    match (&c.up, got.as_slice()) {
        (None, []) => {}
        (None, more) => errs.push(format!("backend must not be reached, got {:?}", more[0].uri)),
        (Some(_), []) => errs.push("backend received nothing".to_string()),
        (Some(up), [r]) => {
            if r.method != up.method {
                errs.push(format!("upstream method: expected {}, got {}", up.method, r.method));
            }
            if r.uri != up.uri {
                errs.push(format!("upstream uri: expected {:?}, got {:?}", up.uri, r.uri));
            }
            let all = |n: &str| r.header_all(n).into_iter().map(str::to_string).collect();
            let leg = Leg { what: "upstream header", h2: up_h2, length_frames_body: true, all: &all };
            let before = errs.len();
            errs.extend(check_headers(&leg, up.headers));
            if errs.len() > before {
                errs.push(format!("upstream request was: {} {} {:?}", r.method, r.uri, r.headers));
            }
            if r.body != up.body {
                errs.push(format!("upstream body: expected {}, got {}", show(up.body), show(&r.body)));
            }
        }
        (Some(_), more) => errs.push(format!("backend received {} requests", more.len())),
    }
    if resp.status != c.client.status {
        errs.push(format!("client status: expected {}, got {} (body {:?})", c.client.status, resp.status, resp.text()));
    }
    let all = |n: &str| {
        resp.headers.iter().filter(|(k, _)| k.eq_ignore_ascii_case(n)).map(|(_, v)| v.clone()).collect::<Vec<_>>()
    };
    let length_frames_body = c.req.method != "HEAD" && resp.status != 304;
    let leg = Leg { what: "client header", h2: client_h2, length_frames_body, all: &all };
    errs.extend(check_headers(&leg, c.client.headers));
    match c.client.body {
        BodyExp::Any => {}
        BodyExp::Exact(b) if resp.body == b => {}
        BodyExp::Contains(s) if resp.text().contains(s) => {}
        other => {
            let want = match other {
                BodyExp::Exact(b) => format!("exactly {}", show(b)),
                BodyExp::Contains(s) => format!("containing {s:?}"),
                BodyExp::Any => unreachable!(),
            };
            errs.push(format!("client body: expected {want}, got {}", show(&resp.body)));
        }
    }
    if let Some(check) = c.check {
        let ctx = Ctx { pair, backend: rig.backend.addr, received: got.first().cloned(), resp };
        if let Err(e) = check(&ctx) {
            errs.push(format!("check: {e}"));
        }
    }
    errs.into_iter().map(|e| format!("{pair} row '{}': {e}", c.name)).collect()
}

/// Runs every row that applies to `pair`; fails listing each problem.
async fn matrix(client: ClientProto, up: UpProto) {
    let pair = Pair { client, up };
    let cases = cases();
    let mut rig = Rig::start(pair).await;
    let (mut failures, mut ran) = (Vec::new(), 0);
    for c in cases.iter().filter(|c| c.applies.covers(pair)) {
        let _named = NameOnPanic(format!("{pair} row '{}'", c.name));
        failures.extend(run_case(&mut rig, c).await);
        ran += 1;
    }
    rig.shutdown().await;
    assert!(failures.is_empty(), "{pair}: {} problems in {ran} rows:\n{}", failures.len(), failures.join("\n"));
}

/// Names the row when a client helper panics in it (no answer in time, connection refused).
struct NameOnPanic(String);

impl Drop for NameOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("panicked in {}", self.0);
        }
    }
}

async fn shutdown(gw: TestGateway) {
    let _ = tokio::time::timeout(Duration::from_secs(5), gw.gw.shutdown()).await;
}

// Route tables shared by several cases. Each route names itself in `x-route` on the response.
const PREFIX_STRIP: &str =
    "  - {name: api, upstream: backend, match: {path: {prefix: /api}}, rewrite: {strip_prefix: true}}\n";

const TEMPLATES: &str =
    "  - {name: user, upstream: backend, match: {path: {template: \"/users/{id}\"}}, rewrite: {path: \"/v2/u/{id}\"}}
  - {name: files, upstream: backend, match: {path: {template: \"/files/{*rest}\"}}, rewrite: {path: \"/store/{rest}\"}}
";

// Listed in the reverse of their precedence so config order cannot explain the result.
const PRECEDENCE: &str = "  - {name: regex, upstream: backend, match: {path: {regex: \"/p/.*\"}}, response_headers: {set: {x-route: regex}}}
  - {name: prefix, upstream: backend, match: {path: {prefix: /p/users}}, response_headers: {set: {x-route: prefix}}}
  - {name: template, upstream: backend, match: {path: {template: \"/p/users/{id}\"}}, response_headers: {set: {x-route: template}}}
  - {name: exact, upstream: backend, match: {path: {exact: /p/users/me}}, response_headers: {set: {x-route: exact}}}
  - {name: regex-first, upstream: backend, match: {path: {regex: \"/r/.*\"}}, response_headers: {set: {x-route: regex-first}}}
  - {name: regex-second, upstream: backend, match: {path: {regex: \"/r/a.*\"}}, response_headers: {set: {x-route: regex-second}}}
";

const HOSTS: &str = "  - {name: fallback, upstream: backend, response_headers: {set: {x-route: fallback}}}
  - {name: wildcard, upstream: backend, match: {hosts: [\"*.example.com\"]}, response_headers: {set: {x-route: wildcard}}}
  - {name: exact-host, upstream: backend, match: {hosts: [api.example.com]}, response_headers: {set: {x-route: exact-host}}}
";

const METHODS: &str = "  - {name: read, upstream: backend, match: {path: {exact: /m}, methods: [GET, HEAD]}, response_headers: {set: {x-route: read}}}
  - {name: write, upstream: backend, match: {path: {exact: /m}, methods: [POST]}, response_headers: {set: {x-route: write}}}
";

const HEADER_PREDICATES: &str = "  - {name: h-exact, upstream: backend, match: {path: {prefix: /h}, headers: [{name: X-Env, exact: canary}]}, response_headers: {set: {x-route: h-exact}}}
  - {name: h-regex, upstream: backend, match: {path: {prefix: /h}, headers: [{name: X-Version, regex: \"v[0-9]+\"}]}, response_headers: {set: {x-route: h-regex}}}
  - {name: h-present, upstream: backend, match: {path: {prefix: /h}, headers: [{name: X-Debug, present: true}]}, response_headers: {set: {x-route: h-present}}}
  - {name: h-invert, upstream: backend, match: {path: {prefix: /h}, headers: [{name: X-Tier, exact: free, invert: true}]}, response_headers: {set: {x-route: h-invert}}}
";

const QUERY_PREDICATES: &str = "  - {name: q-exact, upstream: backend, match: {path: {exact: /q}, query: [{name: version, exact: \"2\"}]}, response_headers: {set: {x-route: q-exact}}}
  - {name: q-regex, upstream: backend, match: {path: {exact: /q}, query: [{name: id, regex: \"[0-9]+\"}]}, response_headers: {set: {x-route: q-regex}}}
  - {name: q-present, upstream: backend, match: {path: {exact: /q}, query: [{name: debug, present: true}]}, response_headers: {set: {x-route: q-present}}}
  - {name: q-absent, upstream: backend, match: {path: {exact: /q}, query: [{name: deny, present: true, invert: true}, {name: mode, exact: strict}]}, response_headers: {set: {x-route: q-absent}}}
";

const HEADER_EDITS: &str = "  - name: edits
    upstream: backend
    request_headers:
      set: {X-Set: new}
      add: {X-Add: added}
      remove: [X-Remove]
    response_headers:
      set: {X-Resp-Set: \"yes\"}
      add: {X-Resp-Add: added}
      remove: [X-Upstream-Internal]
";

const PRESERVE_HOST: &str = "  - {name: ph, upstream: backend, preserve_host: true}\n";

const FAILING: &str = "  - {name: dead, upstream: dead, match: {path: {prefix: /dead}}}
  - {name: slow, upstream: backend, match: {path: {prefix: /slow}}, timeout: 200ms}
";

/// Large bodies: past the gateway's buffers (an HTTP/2 client's body streams after 64 KiB).
const LARGE: usize = 300 * 1024;
const LARGE_LEN: &str = "307200";

fn large_up() -> &'static [u8] {
    static B: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    B.get_or_init(|| pattern(LARGE, 1))
}

fn large_down() -> &'static [u8] {
    static B: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    B.get_or_init(|| pattern(LARGE, 2))
}

/// `large_up()` in 64 KiB chunks.
fn large_chunks() -> &'static [&'static [u8]] {
    static C: std::sync::OnceLock<Vec<&'static [u8]>> = std::sync::OnceLock::new();
    C.get_or_init(|| large_up().chunks(64 * 1024).collect())
}

/// The upstream request's framing, for a body whose framing is the gateway's choice: on HTTP/1.1
/// exactly one framing header, matching the body; on HTTP/2 a `content-length`, if any, matching.
fn upstream_framing(c: &Ctx, len: usize) -> Result<(), String> {
    let r = c.received.as_ref().ok_or("no request")?;
    let len = len.to_string();
    match (r.header_all("content-length").as_slice(), r.header_all("transfer-encoding").as_slice()) {
        ([n], []) if *n == len => Ok(()),
        ([], ["chunked"]) if !c.pair.up.is_h2() => Ok(()),
        ([], []) if c.pair.up.is_h2() => Ok(()),
        other => Err(format!("framing headers {other:?} for a {len}-byte body")),
    }
}

/// The gateway's JSON error: `code`, a message naming `names`, and the response's request id.
fn gateway_error(c: &Ctx, code: &str, names: &str) -> Result<(), String> {
    let v = c.resp.json();
    let e = &v["error"];
    let id = c.resp.header("x-request-id").unwrap_or("-");
    let named = e["message"].as_str().is_some_and(|m| m.contains(names));
    (e["code"] == code && e["status"] == c.resp.status && named && e["request_id"] == id)
        .then_some(())
        .ok_or(format!("body {v}, x-request-id {id}"))
}

/// Shorthand for a case that only checks which route answered.
fn routed(name: &'static str, routes: &'static str, req: Req, uri: &'static str, route: &'static str) -> Case {
    Case {
        name,
        routes,
        req,
        up: Some(Up { method: req.method, uri, headers: &[], body: b"" }),
        reply: OK_REPLY,
        client: Client { status: 200, headers: route_header(route), body: BodyExp::Exact(b"upstream-ok") },
        ..ROW
    }
}

/// A case where no route matches: 404 and the backend untouched.
fn not_found(name: &'static str, routes: &'static str, req: Req) -> Case {
    Case {
        name,
        routes,
        req,
        up: None,
        reply: OK_REPLY,
        client: Client { status: 404, headers: &[], body: BodyExp::Contains("route_not_found") },
        ..ROW
    }
}

/// `x-route: <route>` on the response (leaked: the table lives for the whole test).
fn route_header(route: &'static str) -> &'static [H] {
    Box::leak(vec![H::Eq("x-route", route)].into_boxed_slice())
}

const fn get(path: &'static str) -> Req {
    Req { method: "GET", path, headers: &[], body: Body::None }
}

const fn get_h(path: &'static str, headers: &'static [(&'static str, &'static str)]) -> Req {
    Req { method: "GET", path, headers, body: Body::None }
}

fn cases() -> Vec<Case> {
    vec![
        // --- Plain forwarding and bodies ---
        Case {
            name: "get is forwarded with its headers",
            routes: "",
            req: get_h("/hello", &[("X-Custom", "v1"), ("Accept", "text/plain")]),
            up: Some(Up {
                method: "GET",
                uri: "/hello",
                headers: &[H::Eq("x-custom", "v1"), H::Eq("accept", "text/plain"), H::Absent("transfer-encoding")],
                body: b"",
            }),
            reply: OK_REPLY,
            client: Client {
                status: 200,
                headers: &[H::Eq("content-type", "text/plain"), H::Eq("content-length", "11")],
                body: BodyExp::Exact(b"upstream-ok"),
            },
            ..ROW
        },
        Case {
            name: "post with content-length body",
            routes: "",
            req: Req {
                method: "POST",
                path: "/submit",
                headers: &[("content-type", "application/json")],
                body: Body::Length(br#"{"a":1,"b":[true,null]}"#),
            },
            up: Some(Up {
                method: "POST",
                uri: "/submit",
                headers: &[
                    H::Eq("content-length", "23"),
                    H::Eq("content-type", "application/json"),
                    H::Absent("transfer-encoding"),
                ],
                body: br#"{"a":1,"b":[true,null]}"#,
            }),
            reply: UpReply { status: 201, headers: &[("location", "/submit/1")], body: b"created", delay: None },
            client: Client {
                status: 201,
                headers: &[H::Eq("location", "/submit/1")],
                body: BodyExp::Exact(b"created"),
            },
            ..ROW
        },
        Case {
            name: "put with a chunked body",
            routes: "",
            req: Req {
                method: "PUT",
                path: "/upload",
                headers: &[],
                body: Body::Chunked(&[b"hello ", b"chunked ", b"", b"world"]),
            },
            up: Some(Up { method: "PUT", uri: "/upload", headers: &[], body: b"hello chunked world" }),
            reply: OK_REPLY,
            client: Client { status: 200, headers: &[], body: BodyExp::Exact(b"upstream-ok") },
            // Re-framing is the gateway's choice (a small chunked body may go up with a length).
            check: Some(|c| upstream_framing(c, 19)),
            ..ROW
        },
        Case {
            name: "post with an empty body keeps content-length: 0 (RFC 9110 §8.6)",
            routes: "",
            req: Req { method: "POST", path: "/empty", headers: &[("content-length", "0")], body: Body::None },
            up: Some(Up {
                method: "POST",
                uri: "/empty",
                headers: &[H::All("content-length", &["0"]), H::Absent("transfer-encoding")],
                body: b"",
            }),
            reply: OK_REPLY,
            client: Client { status: 200, headers: &[], body: BodyExp::Any },
            ..ROW
        },
        Case {
            name: "upstream error status and body pass through unchanged",
            routes: "",
            req: get("/flaky"),
            up: Some(Up { method: "GET", uri: "/flaky", headers: &[], body: b"" }),
            reply: UpReply { status: 503, headers: &[("retry-after", "7")], body: b"upstream says down", delay: None },
            client: Client {
                status: 503,
                headers: &[H::Eq("retry-after", "7")],
                body: BodyExp::Exact(b"upstream says down"),
            },
            ..ROW
        },
        Case {
            name: "query string preserved byte for byte",
            routes: "",
            req: get("/search?q=a%20b&x=1&x=2&empty=&plus=a+b&enc=%2F%3F%26&utf=%E2%82%AC&flag&a=b=c&path=/x/../y"),
            up: Some(Up {
                method: "GET",
                uri: "/search?q=a%20b&x=1&x=2&empty=&plus=a+b&enc=%2F%3F%26&utf=%E2%82%AC&flag&a=b=c&path=/x/../y",
                headers: &[],
                body: b"",
            }),
            reply: OK_REPLY,
            client: Client { status: 200, headers: &[], body: BodyExp::Any },
            ..ROW
        },
        // --- Path routing and rewrites ---
        Case {
            name: "prefix route with strip_prefix keeps the query",
            routes: PREFIX_STRIP,
            req: get("/api/v1/items?sort=desc"),
            up: Some(Up { method: "GET", uri: "/v1/items?sort=desc", headers: &[], body: b"" }),
            reply: OK_REPLY,
            client: Client { status: 200, headers: &[], body: BodyExp::Any },
            ..ROW
        },
        Case {
            name: "strip_prefix of the whole path forwards /",
            routes: PREFIX_STRIP,
            req: get("/api"),
            up: Some(Up { method: "GET", uri: "/", headers: &[], body: b"" }),
            reply: OK_REPLY,
            client: Client { status: 200, headers: &[], body: BodyExp::Any },
            ..ROW
        },
        not_found("prefix is segment-aware (/apix is not under /api)", PREFIX_STRIP, get("/apix")),
        Case {
            name: "template param rewritten into the upstream path",
            routes: TEMPLATES,
            req: get("/users/42?full=1"),
            up: Some(Up { method: "GET", uri: "/v2/u/42?full=1", headers: &[], body: b"" }),
            reply: OK_REPLY,
            client: Client { status: 200, headers: &[], body: BodyExp::Any },
            ..ROW
        },
        not_found("template param does not span segments", TEMPLATES, get("/users/42/extra")),
        Case {
            name: "catch-all {*rest} captures several segments",
            routes: TEMPLATES,
            req: get("/files/a/b/c.txt"),
            up: Some(Up { method: "GET", uri: "/store/a/b/c.txt", headers: &[], body: b"" }),
            reply: OK_REPLY,
            client: Client { status: 200, headers: &[], body: BodyExp::Any },
            ..ROW
        },
        routed("exact beats template, prefix and regex", PRECEDENCE, get("/p/users/me"), "/p/users/me", "exact"),
        routed("template beats prefix and regex", PRECEDENCE, get("/p/users/42"), "/p/users/42", "template"),
        routed("prefix beats regex", PRECEDENCE, get("/p/users/42/orders"), "/p/users/42/orders", "prefix"),
        routed("regex when nothing else matches", PRECEDENCE, get("/p/other"), "/p/other", "regex"),
        routed("config order breaks ties between regexes", PRECEDENCE, get("/r/abc"), "/r/abc", "regex-first"),
        not_found("regex is anchored", PRECEDENCE, get("/x/p/other")),
        // --- Host routing ---
        routed("exact host", HOSTS, get_h("/", &[("host", "api.example.com")]), "/", "exact-host"),
        routed(
            "exact host ignores port and case",
            HOSTS,
            get_h("/a", &[("host", "API.Example.COM:8080")]),
            "/a",
            "exact-host",
        ),
        routed("wildcard host", HOSTS, get_h("/", &[("host", "www.example.com")]), "/", "wildcard"),
        routed("wildcard host, deeper label", HOSTS, get_h("/", &[("host", "a.b.example.com")]), "/", "wildcard"),
        routed(
            "wildcard host with port and case",
            HOSTS,
            get_h("/", &[("host", "WWW.example.com:81")]),
            "/",
            "wildcard",
        ),
        routed(
            "wildcard does not match the bare domain",
            HOSTS,
            get_h("/", &[("host", "example.com")]),
            "/",
            "fallback",
        ),
        routed("host-less fallback", HOSTS, get_h("/", &[("host", "other.test")]), "/", "fallback"),
        // --- Methods ---
        routed("method routing: GET", METHODS, get("/m"), "/m", "read"),
        routed(
            "method routing: POST",
            METHODS,
            Req { method: "POST", path: "/m", headers: &[], body: Body::None },
            "/m",
            "write",
        ),
        Case {
            name: "405 with Allow listing every allowed method",
            routes: METHODS,
            req: Req { method: "DELETE", path: "/m", headers: &[], body: Body::None },
            up: None,
            reply: OK_REPLY,
            client: Client {
                status: 405,
                headers: &[H::Eq("allow", "GET, HEAD, POST"), H::Eq("content-type", "application/json")],
                body: BodyExp::Contains("\"method_not_allowed\""),
            },
            check: Some(|c| {
                let v = c.resp.json();
                (v["error"]["status"] == 405).then_some(()).ok_or(format!("body {v}"))
            }),
            ..ROW
        },
        // --- Header and query predicates ---
        routed("header exact", HEADER_PREDICATES, get_h("/h", &[("X-Env", "canary")]), "/h", "h-exact"),
        routed(
            "header exact is case-sensitive; regex matches",
            HEADER_PREDICATES,
            get_h("/h/x", &[("X-Env", "CANARY"), ("X-Version", "v12")]),
            "/h/x",
            "h-regex",
        ),
        routed(
            "header regex is anchored; present matches",
            HEADER_PREDICATES,
            get_h("/h", &[("X-Version", "v12x"), ("X-Debug", "")]),
            "/h",
            "h-present",
        ),
        routed(
            "inverted predicate holds for another value",
            HEADER_PREDICATES,
            get_h("/h", &[("X-Tier", "paid")]),
            "/h",
            "h-invert",
        ),
        routed("inverted predicate holds when absent", HEADER_PREDICATES, get("/h"), "/h", "h-invert"),
        not_found("inverted predicate fails on the value", HEADER_PREDICATES, get_h("/h", &[("X-Tier", "free")])),
        routed("query exact", QUERY_PREDICATES, get("/q?version=2"), "/q?version=2", "q-exact"),
        routed(
            "query value is percent-decoded for matching",
            QUERY_PREDICATES,
            get("/q?version=%32"),
            "/q?version=%32",
            "q-exact",
        ),
        routed("query regex", QUERY_PREDICATES, get("/q?version=3&id=77"), "/q?version=3&id=77", "q-regex"),
        routed("query present without value", QUERY_PREDICATES, get("/q?id=7a&debug"), "/q?id=7a&debug", "q-present"),
        routed(
            "query absent and exact together",
            QUERY_PREDICATES,
            get("/q?mode=strict"),
            "/q?mode=strict",
            "q-absent",
        ),
        not_found("inverted query presence refuses", QUERY_PREDICATES, get("/q?mode=strict&deny=1")),
        // --- Errors ---
        Case {
            name: "404 JSON body shape with request_id",
            routes: PREFIX_STRIP,
            req: get("/nowhere"),
            up: None,
            reply: OK_REPLY,
            client: Client {
                status: 404,
                headers: &[H::Eq("content-type", "application/json"), H::Present("x-request-id")],
                body: BodyExp::Any,
            },
            check: Some(|c| {
                let v = c.resp.json();
                let e = &v["error"];
                let id = c.resp.header("x-request-id").unwrap_or("");
                if e["status"] != 404 || e["code"] != "route_not_found" || !e["message"].is_string() {
                    return Err(format!("body {v}"));
                }
                if e["request_id"] != id || !is_hex32(id) {
                    return Err(format!("request_id {} vs header {id}", e["request_id"]));
                }
                let keys: Vec<_> = e.as_object().map(|o| o.keys().cloned().collect()).unwrap_or_default();
                (keys == ["code", "message", "request_id", "status"]).then_some(()).ok_or(format!("keys {keys:?}"))
            }),
            ..ROW
        },
        // --- Header edits ---
        Case {
            name: "request and response header set/add/remove",
            routes: HEADER_EDITS,
            req: get_h(
                "/edit",
                &[("X-Set", "old"), ("X-Add", "orig"), ("X-Remove", "gone"), ("x-remove", "gone2"), ("X-Keep", "k")],
            ),
            up: Some(Up {
                method: "GET",
                uri: "/edit",
                headers: &[
                    H::All("x-set", &["new"]),
                    H::All("x-add", &["orig", "added"]),
                    H::Absent("x-remove"),
                    H::Eq("x-keep", "k"),
                ],
                body: b"",
            }),
            reply: UpReply {
                status: 200,
                headers: &[
                    ("x-upstream-internal", "secret"),
                    ("x-upstream-public", "p"),
                    ("x-resp-set", "from-upstream"),
                    ("x-resp-add", "a"),
                ],
                body: b"edited",
                delay: None,
            },
            client: Client {
                status: 200,
                headers: &[
                    H::All("x-resp-set", &["yes"]),
                    H::All("x-resp-add", &["a", "added"]),
                    H::Absent("x-upstream-internal"),
                    H::Eq("x-upstream-public", "p"),
                ],
                body: BodyExp::Exact(b"edited"),
            },
            ..ROW
        },
        Case {
            name: "hop-by-hop headers and those named in Connection are not forwarded",
            applies: Applies::clients(
                &[ClientProto::H1],
                "HTTP/2 has no Connection field: a request carrying one is malformed (RFC 9113 §8.2.2)",
            ),
            routes: "",
            req: get_h("/hop", &[("Connection", "X-Hop-Secret"), ("X-Hop-Secret", "1"), ("Keep-Alive", "timeout=5")]),
            up: Some(Up {
                method: "GET",
                uri: "/hop",
                headers: &[H::Absent("x-hop-secret"), H::Absent("keep-alive")],
                body: b"",
            }),
            reply: OK_REPLY,
            client: Client { status: 200, headers: &[], body: BodyExp::Any },
            ..ROW
        },
        Case {
            name: "hop-by-hop response headers and those named in Connection are not relayed",
            applies: Applies::upstreams(
                &[UpProto::Http, UpProto::Https],
                "an HTTP/2 upstream cannot send Connection (RFC 9113 §8.2.2): hyper's server drops it and the \
                 fields it names before they leave, so the row would pass without the gateway doing anything",
            ),
            routes: "",
            req: get("/hop-down"),
            up: Some(Up { method: "GET", uri: "/hop-down", headers: &[], body: b"" }),
            reply: UpReply {
                status: 200,
                headers: &[
                    ("connection", "x-up-hop"),
                    ("x-up-hop", "1"),
                    ("keep-alive", "timeout=5"),
                    ("x-after", "ok"),
                ],
                body: b"hop",
                delay: None,
            },
            client: Client {
                status: 200,
                headers: &[H::Absent("x-up-hop"), H::Absent("keep-alive"), H::Eq("x-after", "ok")],
                body: BodyExp::Exact(b"hop"),
            },
            ..ROW
        },
        // --- Host and forwarding headers ---
        Case {
            name: "default upstream Host is the target authority",
            routes: "",
            req: get_h("/", &[("host", "client.example:8443")]),
            up: Some(Up {
                method: "GET",
                uri: "/",
                headers: &[H::Eq("x-forwarded-host", "client.example:8443")],
                body: b"",
            }),
            reply: OK_REPLY,
            client: Client { status: 200, headers: &[], body: BodyExp::Any },
            check: Some(|c| {
                let r = c.received.as_ref().ok_or("no request")?;
                let want = c.backend.to_string();
                (r.header_all("host") == [want.as_str()])
                    .then_some(())
                    .ok_or(format!("host {:?}", r.header_all("host")))
            }),
            ..ROW
        },
        Case {
            name: "preserve_host sends the client's Host",
            routes: PRESERVE_HOST,
            req: get_h("/", &[("host", "Client.Example:8443")]),
            up: Some(Up { method: "GET", uri: "/", headers: &[H::All("host", &["Client.Example:8443"])], body: b"" }),
            reply: OK_REPLY,
            client: Client { status: 200, headers: &[], body: BodyExp::Any },
            ..ROW
        },
        Case {
            name: "X-Forwarded-* are added",
            routes: "",
            req: get_h("/fwd", &[("host", "shop.example")]),
            up: Some(Up {
                method: "GET",
                uri: "/fwd",
                headers: &[
                    H::All("x-forwarded-for", &["127.0.0.1"]),
                    H::All("x-forwarded-proto", &["http"]),
                    H::All("x-forwarded-host", &["shop.example"]),
                    // RFC 7239 `Forwarded` is opt-in (`forwarded_header`), see security_headers.rs.
                    H::Absent("forwarded"),
                ],
                body: b"",
            }),
            reply: OK_REPLY,
            client: Client { status: 200, headers: &[], body: BodyExp::Any },
            ..ROW
        },
        Case {
            name: "forwarding headers from an untrusted client are replaced",
            routes: "",
            req: get_h(
                "/fwd",
                &[
                    ("host", "shop.example"),
                    ("X-Forwarded-For", "1.2.3.4"),
                    ("X-Forwarded-Host", "evil.example"),
                    ("X-Forwarded-Proto", "https"),
                    ("Forwarded", "for=1.2.3.4;proto=https"),
                ],
            ),
            up: Some(Up {
                method: "GET",
                uri: "/fwd",
                headers: &[
                    H::All("x-forwarded-for", &["127.0.0.1"]),
                    H::All("x-forwarded-proto", &["http"]),
                    H::All("x-forwarded-host", &["shop.example"]),
                    // RFC 7239 `Forwarded` is opt-in (`forwarded_header`), see security_headers.rs.
                    H::Absent("forwarded"),
                ],
                body: b"",
            }),
            reply: OK_REPLY,
            client: Client { status: 200, headers: &[], body: BodyExp::Any },
            ..ROW
        },
        // --- Request ids ---
        Case {
            name: "x-request-id generated when absent, forwarded and returned",
            routes: "",
            req: GET_ROOT,
            up: Some(Up { method: "GET", uri: "/", headers: &[H::Present("x-request-id")], body: b"" }),
            reply: OK_REPLY,
            client: Client { status: 200, headers: &[H::Present("x-request-id")], body: BodyExp::Any },
            check: Some(|c| {
                let up = c.received.as_ref().and_then(|r| r.header("x-request-id")).unwrap_or("");
                let down = c.resp.header("x-request-id").unwrap_or("");
                (is_hex32(up) && up == down).then_some(()).ok_or(format!("upstream {up:?}, client {down:?}"))
            }),
            ..ROW
        },
        Case {
            name: "valid x-request-id is kept",
            routes: "",
            req: get_h("/", &[("X-Request-Id", "req-ABC_123.x:y")]),
            up: Some(Up {
                method: "GET",
                uri: "/",
                headers: &[H::All("x-request-id", &["req-ABC_123.x:y"])],
                body: b"",
            }),
            reply: OK_REPLY,
            client: Client {
                status: 200,
                headers: &[H::All("x-request-id", &["req-ABC_123.x:y"])],
                body: BodyExp::Any,
            },
            ..ROW
        },
        Case {
            name: "invalid x-request-id is replaced",
            routes: "",
            req: get_h("/", &[("X-Request-Id", "has space <script>")]),
            up: Some(Up { method: "GET", uri: "/", headers: &[], body: b"" }),
            reply: OK_REPLY,
            client: Client { status: 200, headers: &[], body: BodyExp::Any },
            check: Some(|c| {
                let up = c.received.as_ref().map(|r| r.header_all("x-request-id")).unwrap_or_default();
                let down = c.resp.header("x-request-id").unwrap_or("");
                (up.len() == 1 && is_hex32(up[0]) && up[0] == down)
                    .then_some(())
                    .ok_or(format!("upstream {up:?}, client {down:?}"))
            }),
            ..ROW
        },
        // --- Bodiless responses ---
        Case {
            name: "HEAD relays no body but keeps content-length",
            routes: "",
            req: Req { method: "HEAD", path: "/doc", headers: &[], body: Body::None },
            up: Some(Up { method: "HEAD", uri: "/doc", headers: &[], body: b"" }),
            reply: UpReply {
                status: 200,
                headers: &[("content-type", "text/plain")],
                body: b"0123456789",
                delay: None,
            },
            client: Client { status: 200, headers: &[H::Eq("content-length", "10")], body: BodyExp::Exact(b"") },
            ..ROW
        },
        Case {
            name: "204 without body or framing headers",
            routes: "",
            req: Req { method: "DELETE", path: "/item/1", headers: &[], body: Body::None },
            up: Some(Up { method: "DELETE", uri: "/item/1", headers: &[], body: b"" }),
            reply: UpReply { status: 204, headers: &[("x-deleted", "1")], body: b"", delay: None },
            client: Client {
                status: 204,
                headers: &[H::Eq("x-deleted", "1"), H::Absent("content-length"), H::Absent("transfer-encoding")],
                body: BodyExp::Exact(b""),
            },
            ..ROW
        },
        Case {
            name: "304 without body",
            routes: "",
            req: get_h("/cached", &[("If-None-Match", "\"v1\"")]),
            up: Some(Up { method: "GET", uri: "/cached", headers: &[H::Eq("if-none-match", "\"v1\"")], body: b"" }),
            reply: UpReply { status: 304, headers: &[("etag", "\"v1\"")], body: b"", delay: None },
            client: Client {
                status: 304,
                headers: &[H::Eq("etag", "\"v1\""), H::Absent("transfer-encoding")],
                body: BodyExp::Exact(b""),
            },
            ..ROW
        },
        // --- Large bodies ---
        Case {
            name: "large bodies with a length stream intact both ways",
            req: Req { method: "POST", path: "/large", headers: &[], body: Body::Length(large_up()) },
            up: Some(Up {
                method: "POST",
                uri: "/large",
                headers: &[H::Eq("content-length", LARGE_LEN)],
                body: large_up(),
            }),
            reply: UpReply { status: 200, headers: &[], body: large_down(), delay: None },
            client: Client {
                status: 200,
                headers: &[H::Eq("content-length", LARGE_LEN)],
                body: BodyExp::Exact(large_down()),
            },
            ..ROW
        },
        Case {
            name: "large request body of unknown length streams intact",
            req: Req { method: "PUT", path: "/large", headers: &[], body: Body::Chunked(large_chunks()) },
            up: Some(Up { method: "PUT", uri: "/large", headers: &[], body: large_up() }),
            client: Client { status: 200, headers: &[], body: BodyExp::Exact(b"upstream-ok") },
            check: Some(|c| upstream_framing(c, LARGE)),
            ..ROW
        },
        // --- Upstream failures ---
        Case {
            name: "unreachable upstream is 502 naming it",
            routes: FAILING,
            req: get("/dead"),
            client: Client {
                status: 502,
                headers: &[H::Eq("content-type", "application/json")],
                body: BodyExp::Contains("upstream_connect_failed"),
            },
            check: Some(|c| gateway_error(c, "upstream_connect_failed", "`dead`")),
            ..ROW
        },
        Case {
            name: "slow upstream is 504 after the route timeout",
            routes: FAILING,
            req: get("/slow/x"),
            up: Some(Up { method: "GET", uri: "/slow/x", headers: &[], body: b"" }),
            reply: UpReply { delay: Some(Duration::from_secs(1)), ..OK_REPLY },
            client: Client {
                status: 504,
                headers: &[H::Eq("content-type", "application/json")],
                body: BodyExp::Contains("upstream_timeout"),
            },
            check: Some(|c| gateway_error(c, "upstream_timeout", "")),
            ..ROW
        },
    ]
}

// One test per pair, so a drifting leg shows in the test list.

#[tokio::test]
async fn matrix_h1_to_http() {
    matrix(ClientProto::H1, UpProto::Http).await;
}

#[tokio::test]
async fn matrix_h1_to_h2c() {
    matrix(ClientProto::H1, UpProto::H2c).await;
}

#[tokio::test]
async fn matrix_h1_to_https() {
    matrix(ClientProto::H1, UpProto::Https).await;
}

#[tokio::test]
async fn matrix_h1_to_https_h2() {
    matrix(ClientProto::H1, UpProto::HttpsH2).await;
}

#[tokio::test]
async fn matrix_h2c_to_http() {
    matrix(ClientProto::H2c, UpProto::Http).await;
}

#[tokio::test]
async fn matrix_h2c_to_h2c() {
    matrix(ClientProto::H2c, UpProto::H2c).await;
}

#[tokio::test]
async fn matrix_h2c_to_https() {
    matrix(ClientProto::H2c, UpProto::Https).await;
}

#[tokio::test]
async fn matrix_h2c_to_https_h2() {
    matrix(ClientProto::H2c, UpProto::HttpsH2).await;
}

/// The harness fails on every pair: wrong expectations on either leg are reported with the pair
/// and the row (guards against a normalisation that would compare nothing).
#[tokio::test]
async fn matrix_reports_a_wrong_row_on_every_pair() {
    let wrong = Case {
        name: "deliberately wrong",
        req: get_h("/wrong", &[("X-Custom", "v1")]),
        up: Some(Up { method: "GET", uri: "/wrong", headers: &[H::Eq("x-custom", "v2")], body: b"" }),
        client: Client { status: 200, headers: &[H::Eq("content-type", "text/html")], body: BodyExp::Any },
        ..ROW
    };
    for client in CLIENTS {
        for up in UPSTREAMS {
            let pair = Pair { client, up };
            let mut rig = Rig::start(pair).await;
            let errs = run_case(&mut rig, &wrong).await;
            rig.shutdown().await;
            for leg in ["upstream header", "client header"] {
                let want = format!("{pair} row 'deliberately wrong': {leg}: expected");
                assert!(errs.iter().any(|e| e.starts_with(&want)), "{pair}: no {leg} failure in {errs:#?}");
            }
        }
    }
}

/// Case names are unique, so a failure message points at one row; a row that leaves pairs out
/// says why, and one that reaches HTTP/2 clients sends nothing HTTP/2 cannot carry.
#[test]
fn rows_are_well_formed() {
    let cases = cases();
    let mut names: Vec<_> = cases.iter().map(|c| c.name).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), cases.len(), "duplicate row names");
    assert_eq!(LARGE.to_string(), LARGE_LEN);
    for c in &cases {
        let every = c.applies.clients.len() == CLIENTS.len() && c.applies.upstreams.len() == UPSTREAMS.len();
        assert_eq!(every, c.applies.why.is_empty(), "row '{}': a reason exactly when pairs are left out", c.name);
        assert!(!c.applies.clients.is_empty() && !c.applies.upstreams.is_empty(), "row '{}' runs nowhere", c.name);
        if c.applies.clients.contains(&ClientProto::H2c) {
            for (k, _) in c.req.headers {
                let bad = CONNECTION_SPECIFIC.iter().any(|n| k.eq_ignore_ascii_case(n));
                assert!(!bad, "row '{}' sends {k}, which an HTTP/2 client cannot: limit it to h1 clients", c.name);
            }
        }
    }
}

// ------------------------------------------------------------------------------------------------
// Beyond one row of the table.
// ------------------------------------------------------------------------------------------------

/// Splits a raw HTTP/1.x response into (head, body).
fn split_raw(raw: &str) -> (String, String) {
    match raw.split_once("\r\n\r\n") {
        Some((h, b)) => (h.to_ascii_lowercase(), b.to_string()),
        None => (raw.to_ascii_lowercase(), String::new()),
    }
}

const CHUNKED_RESPONSE: &[u8] =
    b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ntransfer-encoding: chunked\r\n\r\n7\r\nchunked\r\n1;ext=1\r\n \r\nB\r\nresponse ok\r\n0\r\n\r\n";

#[tokio::test]
async fn chunked_upstream_response_relayed_to_http11_client() {
    let up = RawBackend::start(CHUNKED_RESPONSE, false).await;
    let gw = gateway(&simple_config(&[up.url()], "")).await;
    for _ in 0..2 {
        let r = request(gw.addr, "GET", "/", &[], b"").await;
        assert_eq!(r.status, 200);
        assert_eq!(r.text(), "chunked response ok");
    }
    // The raw wire: re-chunked for an HTTP/1.1 client, nothing else delimits it.
    let raw = gatehouse_testkit::raw(gw.addr, b"GET / HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n").await;
    let (head, _) = split_raw(&raw);
    assert!(head.contains("transfer-encoding: chunked") || head.contains("content-length: 19"), "{raw}");
    shutdown(gw).await;
}

#[tokio::test]
async fn http10_client_gets_length_or_close_delimited_response() {
    // Upstream with Content-Length: relayed with a length, then the connection closes.
    let fixed = Backend::start("fixed", Arc::new(|_: &Received| Reply::text(200, "fixed body"))).await;
    let gw = gateway(&simple_config(&[fixed.url()], "")).await;
    let (raw, closed) = raw_closes(gw.addr, b"GET /ten HTTP/1.0\r\n\r\n").await;
    let (head, body) = split_raw(&raw);
    assert!(head.starts_with("http/1.") && head.contains(" 200"), "{raw}");
    assert!(!head.contains("transfer-encoding"), "{raw}");
    assert!(head.contains("content-length: 10"), "{raw}");
    assert_eq!(body, "fixed body");
    assert!(closed, "HTTP/1.0 without keep-alive must be closed after the response");
    assert_eq!(fixed.last().map(|r| r.uri), Some("/ten".to_string()));
    shutdown(gw).await;

    // Chunked upstream: an HTTP/1.0 client cannot parse chunks, so the body is close-delimited.
    let chunked = RawBackend::start(CHUNKED_RESPONSE, false).await;
    let gw = gateway(&simple_config(&[chunked.url()], "")).await;
    let (raw, closed) = raw_closes(gw.addr, b"GET / HTTP/1.0\r\nhost: a\r\n\r\n").await;
    let (head, body) = split_raw(&raw);
    assert!(head.contains(" 200"), "{raw}");
    assert!(!head.contains("transfer-encoding"), "{raw}");
    assert_eq!(body, "chunked response ok", "{raw}");
    assert!(closed, "a close-delimited body must end with the connection");
    shutdown(gw).await;
}

#[tokio::test]
async fn large_bodies_stream_intact() {
    const SIZE: usize = 5 * 1024 * 1024;
    let down = Arc::new(pattern(SIZE, 2));
    let d = down.clone();
    let backend = Backend::start(
        "big",
        Arc::new(move |_: &Received| Reply {
            status: 200,
            headers: vec![],
            body: d.to_vec(),
            delay: None,
            trailers: Vec::new(),
        }),
    )
    .await;
    let gw = gateway(&simple_config(&[backend.url()], "")).await;

    // 5 MiB up with Content-Length, 5 MiB down.
    let up = pattern(SIZE, 1);
    let r = request(gw.addr, "POST", "/big", &[], &up).await;
    assert_eq!(r.status, 200);
    let got = backend.last().expect("backend got the request").body;
    assert_eq!((got.len(), checksum(&got)), (up.len(), checksum(&up)), "request body changed");
    assert_eq!((r.body.len(), checksum(&r.body)), (down.len(), checksum(&down)), "response body changed");

    // 5 MiB up chunked (64 KiB chunks).
    let chunks: Vec<&[u8]> = up.chunks(64 * 1024).collect();
    let r = request_chunked(gw.addr, "POST", "/big-chunked", &[], &chunks).await;
    assert_eq!(r.status, 200);
    let got = backend.last().expect("backend got the request").body;
    assert_eq!((got.len(), checksum(&got)), (up.len(), checksum(&up)), "chunked request body changed");
    assert_eq!(checksum(&r.body), checksum(&down));
    shutdown(gw).await;
}

#[tokio::test]
async fn keep_alive_reuses_one_upstream_connection() {
    let backend = Backend::named("ka").await;
    let gw = gateway(&simple_config(&[backend.url()], "")).await;
    let mut client = KeepAliveClient::connect(gw.addr).await;
    for i in 0..6 {
        let r = if i % 2 == 0 {
            client.get(&format!("/ka/{i}")).await
        } else {
            client.send("POST", &format!("/ka/{i}"), &[("content-type", "text/plain")], b"some body").await
        };
        assert_eq!(r.status, 200, "request {i}");
        assert_eq!(r.json()["path"], format!("/ka/{i}"));
    }
    assert!(!client.is_closed(), "the client connection stays open");
    assert_eq!(backend.count(), 6);
    assert_eq!(backend.connections(), 1, "every request must reuse the pooled upstream connection");
    shutdown(gw).await;
}

#[tokio::test]
async fn bodiless_responses_keep_the_connection_in_sync() {
    // HEAD, 204 and 304 carry no body: the next response on the same connection must be intact.
    let backend = Backend::start(
        "bodiless",
        Arc::new(|r: &Received| match r.uri.as_str() {
            "/204" => Reply { status: 204, headers: vec![], body: vec![], delay: None, trailers: Vec::new() },
            "/304" => Reply {
                status: 304,
                headers: vec![("etag".into(), "\"x\"".into())],
                body: vec![],
                delay: None,
                trailers: Vec::new(),
            },
            _ => Reply::text(200, "0123456789"),
        }),
    )
    .await;
    let gw = gateway(&simple_config(&[backend.url()], "")).await;
    let mut client = KeepAliveClient::connect(gw.addr).await;
    let r = client.send("HEAD", "/head", &[], b"").await;
    assert_eq!((r.status, r.header("content-length"), r.body.len()), (200, Some("10"), 0));
    let r = client.get("/204").await;
    assert_eq!((r.status, r.body.len()), (204, 0));
    let r = client.get("/304").await;
    assert_eq!((r.status, r.body.len()), (304, 0));
    let r = client.get("/after").await;
    assert_eq!((r.status, r.text()), (200, "0123456789".to_string()));
    assert_eq!(backend.connections(), 1);
    shutdown(gw).await;
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order() {
    let backend = Backend::named("pipe").await;
    let gw = gateway(&simple_config(&[backend.url()], "")).await;
    let raw = gatehouse_testkit::raw(
        gw.addr,
        b"GET /one HTTP/1.1\r\nhost: a\r\n\r\nPOST /two HTTP/1.1\r\nhost: a\r\ncontent-length: 5\r\n\r\nhelloGET /three HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n",
    )
    .await;
    let statuses = raw.matches("HTTP/1.1 200").count();
    assert_eq!(statuses, 3, "{raw}");
    let (one, two, three) = (raw.find("\"/one\""), raw.find("\"/two\""), raw.find("\"/three\""));
    assert!(one < two && two < three && one.is_some(), "{raw}");
    let got: Vec<_> = backend.requests().into_iter().map(|r| (r.uri, r.body)).collect();
    assert_eq!(
        got,
        vec![("/one".into(), vec![]), ("/two".into(), b"hello".to_vec()), ("/three".into(), vec![])],
        "backend saw the pipelined requests in order, bodies intact"
    );
    shutdown(gw).await;
}

#[tokio::test]
async fn upstream_connection_close_is_honoured() {
    // The upstream says `connection: close` and closes: the gateway must not reuse the connection.
    let up = RawBackend::start(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok", true).await;
    let gw = gateway(&simple_config(&[up.url()], "")).await;
    let mut client = KeepAliveClient::connect(gw.addr).await;
    for i in 0..3 {
        let r = client.send("POST", "/x", &[], b"payload").await;
        assert_eq!((r.status, r.text()), (200, "ok".to_string()), "request {i}");
    }
    shutdown(gw).await;
}

#[tokio::test]
async fn idempotent_request_survives_an_upstream_closing_idle_connections() {
    // The upstream closes every connection after one response without saying so (like a server
    // whose keep-alive timeout passed): a GET on the stale pooled connection is retried.
    let up = RawBackend::start(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok", true).await;
    let gw = gateway(&simple_config(&[up.url()], "")).await;
    let mut client = KeepAliveClient::connect(gw.addr).await;
    for i in 0..3 {
        let r = client.get("/x").await;
        assert_eq!((r.status, r.text()), (200, "ok".to_string()), "request {i}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    shutdown(gw).await;
}

/// Regression: the pool handed out idle connections the upstream had already closed; a POST
/// (not retryable once sent) on one got 502 `upstream_reset`.
#[tokio::test]
async fn post_after_upstream_closed_idle_connection_is_not_a_502() {
    let up = RawBackend::start(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok", true).await;
    let gw = gateway(&simple_config(&[up.url()], "")).await;
    let mut client = KeepAliveClient::connect(gw.addr).await;
    for i in 0..3 {
        let r = client.send("POST", "/x", &[], b"payload").await;
        assert_eq!((r.status, r.text()), (200, "ok".to_string()), "request {i}");
        // Give the upstream's FIN time to arrive before the next request.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    shutdown(gw).await;
}

#[tokio::test]
async fn unreachable_upstream_is_502_naming_it() {
    let dead = format!("http://127.0.0.1:{}", gatehouse_testkit::free_port());
    let gw = gateway(&simple_config(&[dead], "")).await;
    let r = request(gw.addr, "GET", "/", &[], b"").await;
    assert_eq!(r.status, 502, "{}", r.text());
    let v = r.json();
    assert_eq!(v["error"]["code"], "upstream_connect_failed");
    assert!(v["error"]["message"].as_str().unwrap_or("").contains("`backend`"), "{v}");
    assert_eq!(v["error"]["request_id"], r.header("x-request-id").unwrap_or("-"));
    shutdown(gw).await;
}

#[tokio::test]
async fn slow_upstream_is_504_after_the_route_timeout() {
    let slow =
        Backend::start("slow", Arc::new(|_: &Received| Reply::text(200, "late").delay(Duration::from_secs(2)))).await;
    let routes = "  - {name: t, upstream: backend, timeout: 200ms}\n";
    let gw = gateway(&simple_config(&[slow.url()], routes)).await;
    let started = std::time::Instant::now();
    let r = request(gw.addr, "GET", "/", &[], b"").await;
    let took = started.elapsed();
    assert_eq!(r.status, 504, "{}", r.text());
    assert_eq!(r.json()["error"]["code"], "upstream_timeout");
    assert!(took >= Duration::from_millis(180) && took < Duration::from_millis(1500), "took {took:?}");
    shutdown(gw).await;
}

/// Regression: responses the gateway made itself (404, 405, 5xx) ignored the client's
/// `Connection: close` and HTTP/1.0 semantics and left the connection open.
#[tokio::test]
async fn client_connection_close_is_honoured_on_error_responses() {
    let backend = Backend::named("b").await;
    let gw = gateway(&simple_config(&[backend.url()], PREFIX_STRIP)).await;
    let (raw, closed) = raw_closes(gw.addr, b"GET /nope HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n").await;
    assert!(raw.starts_with("HTTP/1.1 404"), "{raw}");
    let http11_closed = closed && raw.to_ascii_lowercase().contains("connection: close");
    let (raw, closed) = raw_closes(gw.addr, b"GET /nope HTTP/1.0\r\n\r\n").await;
    assert!(raw.contains(" 404 "), "{raw}");
    assert!(http11_closed, "HTTP/1.1 `connection: close` not honoured after a 404");
    assert!(closed, "HTTP/1.0 connection not closed after a 404");
    shutdown(gw).await;
}

#[tokio::test]
async fn client_connection_close_is_honoured_on_proxied_responses() {
    let backend = Backend::named("b").await;
    let gw = gateway(&simple_config(&[backend.url()], "")).await;
    let (raw, closed) = raw_closes(gw.addr, b"GET /x HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n").await;
    assert!(raw.starts_with("HTTP/1.1 200"), "{raw}");
    assert!(raw.to_ascii_lowercase().contains("connection: close"), "{raw}");
    assert!(closed);
    shutdown(gw).await;
}

#[tokio::test]
async fn expect_100_continue_is_answered_and_not_forwarded() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let backend = Backend::named("expect").await;
    let gw = gateway(&simple_config(&[backend.url()], "")).await;
    let mut s = tokio::net::TcpStream::connect(gw.addr).await.expect("connect");
    s.write_all(b"POST /upload HTTP/1.1\r\nhost: a\r\ncontent-length: 5\r\nexpect: 100-continue\r\n\r\n")
        .await
        .expect("write head");
    let mut buf = vec![0u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf)).await.expect("100 in time").expect("read");
    let interim = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(interim.starts_with("HTTP/1.1 100"), "{interim}");
    s.write_all(b"hello").await.expect("write body");
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    while !String::from_utf8_lossy(&out).contains("\"/upload\"") && tokio::time::Instant::now() < deadline {
        if let Ok(Ok(n)) = tokio::time::timeout(Duration::from_millis(200), s.read(&mut buf)).await {
            out.extend_from_slice(&buf[..n]);
        }
    }
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    let r = backend.last().expect("forwarded");
    assert_eq!(r.body, b"hello");
    assert_eq!(r.header("expect"), None, "Expect is hop-by-hop for the gateway");
    shutdown(gw).await;
}

#[tokio::test]
async fn http10_keep_alive_client_gets_a_reusable_connection() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let backend = Backend::start("ten", Arc::new(|r: &Received| Reply::text(200, &r.uri))).await;
    let gw = gateway(&simple_config(&[backend.url()], "")).await;
    let mut s = tokio::net::TcpStream::connect(gw.addr).await.expect("connect");
    let mut buf = vec![0u8; 4096];
    for path in ["/first", "/second"] {
        let req = format!("GET {path} HTTP/1.0\r\nconnection: keep-alive\r\n\r\n");
        s.write_all(req.as_bytes()).await.expect("write");
        let mut got = String::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        while !got.ends_with(path) && tokio::time::Instant::now() < deadline {
            match tokio::time::timeout(Duration::from_millis(500), s.read(&mut buf)).await {
                Ok(Ok(0)) => break,
                Ok(Ok(n)) => got.push_str(&String::from_utf8_lossy(&buf[..n])),
                _ => {}
            }
        }
        let (head, body) = split_raw(&got);
        assert!(head.contains(" 200"), "{got}");
        assert!(head.contains("connection: keep-alive"), "HTTP/1.0 keep-alive must be confirmed: {got}");
        assert!(head.contains(&format!("content-length: {}", path.len())), "{got}");
        assert_eq!(body, path);
    }
    shutdown(gw).await;
}

#[tokio::test]
async fn absolute_form_target_routes_on_its_authority() {
    let backend = Backend::named("abs").await;
    let gw = gateway(&simple_config(&[backend.url()], HOSTS)).await;
    let raw = gatehouse_testkit::raw(
        gw.addr,
        b"GET http://API.example.com:8080/abs?q=1 HTTP/1.1\r\nhost: other.test\r\nconnection: close\r\n\r\n",
    )
    .await;
    let (head, _) = split_raw(&raw);
    assert!(head.starts_with("http/1.1 200"), "{raw}");
    assert!(head.contains("x-route: exact-host"), "the target's authority wins over Host: {raw}");
    let r = backend.last().expect("forwarded");
    assert_eq!(r.uri, "/abs?q=1", "forwarded in origin-form");
    assert_eq!(r.header_all("host"), [backend.addr.to_string().as_str()]);
    shutdown(gw).await;
}
