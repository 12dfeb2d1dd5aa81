//! Helpers shared by the fuzz targets in `fuzz_targets/`: the gateway's default limits, a small
//! fixed config compiled into a real `Snapshot` (for routing), the request path exactly as the
//! pipeline routes it, and a byte reader that turns fuzz input into structured choices.

use std::sync::OnceLock;

use gatehouse_core::http1::HeadLimits;
use gatehouse_core::normalize::{is_normal_path, normalize_target};
use gatehouse_core::policy::Limiters;
use gatehouse_core::snapshot::{compile, Snapshot};
use gatehouse_core::upstream::Registry;

/// The request-head limits of a listener that sets none (`listeners[].limits` defaults), as
/// `snapshot::compile` turns them into `HeadLimits`.
pub fn default_limits() -> HeadLimits {
    let l = gatehouse_config::ListenerLimits::default();
    HeadLimits {
        max_head: l.max_header_bytes.0 as usize,
        max_headers: l.max_headers.min(gatehouse_core::http1::parse::MAX_HEADER_SLOTS),
        max_uri: l.max_uri_bytes.0 as usize,
    }
}

/// A small config with one route of every path-matcher kind (exact, segment-aware prefix,
/// template, catch-all template, regex), host-bound routes and method lists. Nothing in it is
/// ever contacted: the upstream is only named.
pub const ROUTER_CONFIG: &str = r#"
version: 1
listeners:
  - name: main
    address: 127.0.0.1:0
upstreams:
  - name: app
    targets:
      - url: http://127.0.0.1:9
routes:
  - name: admin-exact
    upstream: app
    match:
      path: { exact: /admin }
  - name: admin
    upstream: app
    match:
      path: { prefix: /admin }
      methods: [GET, POST]
  - name: admin-slash
    upstream: app
    match:
      path: { prefix: /admin/x/ }
  - name: users
    upstream: app
    match:
      path: { template: "/users/{id}" }
  - name: user-posts
    upstream: app
    match:
      path: { template: "/users/{id}/posts/{post}" }
      methods: [GET]
  - name: files
    upstream: app
    match:
      path: { template: "/files/{*rest}" }
  - name: reports
    upstream: app
    match:
      path: { regex: "/reports/v[0-9]+/.*" }
  - name: api-exact-host
    upstream: app
    match:
      hosts: [api.example.com]
      path: { prefix: /api }
  - name: api-wildcard-host
    upstream: app
    match:
      hosts: ["*.example.com"]
      path: { prefix: /api/v1 }
  - name: encoded
    upstream: app
    match:
      path: { prefix: /x%2Fy }
  - name: params
    upstream: app
    match:
      path: { prefix: "/p;v=1" }
  - name: tilde
    upstream: app
    match:
      path: { exact: /~user/ }
  - name: root
    upstream: app
    match:
      path: { prefix: / }
      methods: [GET, HEAD]
"#;

/// `ROUTER_CONFIG` loaded and compiled once, as the gateway does on start.
pub fn router_snapshot() -> &'static Snapshot {
    static SNAP: OnceLock<Snapshot> = OnceLock::new();
    SNAP.get_or_init(|| compile_config(ROUTER_CONFIG))
}

/// Loads and compiles `text` (panics if the fixed config itself is wrong: a harness bug).
pub fn compile_config(text: &str) -> Snapshot {
    let config = gatehouse_config::load_str(text, &|_| None).unwrap_or_else(|e| panic!("fixed config refused: {e:?}"));
    compile(config, &Registry::new(), &Limiters::new()).unwrap_or_else(|e| panic!("fixed config does not compile: {e}"))
}

/// The path and query the pipeline routes an origin-form target by: the allocation-free fast
/// path when the raw path is already normal (and the query is plain), else the full normaliser.
/// A copy of the selection in `gatehouse_core::request::handle_request` (not public), so that
/// the differential property covers both paths a request can take.
pub fn routing_target(origin: &[u8]) -> Result<(String, Option<String>), String> {
    let (path_raw, query_raw) = match origin.iter().position(|&b| b == b'?') {
        Some(q) => (&origin[..q], Some(&origin[q + 1..])),
        None => (origin, None),
    };
    if is_normal_path(path_raw) && query_raw.is_none_or(|q| q.iter().all(|&b| b.is_ascii_graphic() && b != b'#')) {
        let path = std::str::from_utf8(path_raw).unwrap_or("/").to_string();
        let query = query_raw.map(|q| std::str::from_utf8(q).unwrap_or("").to_string());
        return Ok((path, query));
    }
    normalize_target(origin).map(|t| (t.path, t.query)).map_err(|e| e.0.to_string())
}

/// Reads structured choices off the front of a fuzz input; past the end it yields zeros, so
/// every input is usable and short inputs make the simplest choices.
pub struct Reader<'a> {
    data: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Reader { data }
    }

    pub fn u8(&mut self) -> u8 {
        match self.data.split_first() {
            Some((&b, rest)) => {
                self.data = rest;
                b
            }
            None => 0,
        }
    }

    pub fn u16(&mut self) -> u16 {
        u16::from(self.u8()) << 8 | u16::from(self.u8())
    }

    /// Up to `n` bytes (fewer at the end of the input).
    pub fn bytes(&mut self, n: usize) -> &'a [u8] {
        let n = n.min(self.data.len());
        let (head, rest) = self.data.split_at(n);
        self.data = rest;
        head
    }

    /// A length-prefixed (one byte) slice.
    pub fn chunk(&mut self) -> &'a [u8] {
        let n = usize::from(self.u8());
        self.bytes(n)
    }

    pub fn rest(&mut self) -> &'a [u8] {
        self.bytes(self.data.len())
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
}
