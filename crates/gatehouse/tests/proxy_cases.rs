//! Table-driven proxy cases: client request → what the backend received → what the client got.
//!
//! Every case runs against a fresh in-process gateway (the real pipeline) in front of its own real
//! hyper backend on 127.0.0.1. The tests after the table cover what does not fit a single
//! request/response row: raw upstream framing, HTTP/1.0 clients, large bodies and keep-alive.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use gatehouse_testkit::{
    checksum, gateway, pattern, raw_closes, request, request_chunked, simple_config, Backend, KeepAliveClient,
    RawBackend, Received, Reply, Resp, TestGateway,
};

/// How the client sends its body.
#[derive(Clone, Copy)]
enum Body {
    None,
    /// With `Content-Length`.
    Length(&'static [u8]),
    /// With `Transfer-Encoding: chunked`, one chunk per slice.
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
    headers: &'static [(&'static str, &'static str)],
    body: Body,
}

const GET_ROOT: Req = Req { method: "GET", path: "/", headers: &[], body: Body::None };

/// What the backend must have received (exactly one request).
#[derive(Clone, Copy)]
struct Up {
    method: &'static str,
    /// Path and query as on the upstream request line.
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
}

const OK_REPLY: UpReply = UpReply { status: 200, headers: &[("content-type", "text/plain")], body: b"upstream-ok" };

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

/// Everything a cross-check may look at.
struct Ctx {
    backend: SocketAddr,
    received: Option<Received>,
    resp: Resp,
}

type Check = fn(&Ctx) -> Result<(), String>;

struct Case {
    name: &'static str,
    /// Route list items for `simple_config` (upstream `backend`); empty = one catch-all route.
    routes: &'static str,
    req: Req,
    /// `None`: the request must not reach the backend at all.
    up: Option<Up>,
    reply: UpReply,
    client: Client,
    /// Extra assertions that relate values (request ids, the backend's address).
    check: Option<Check>,
}

fn is_hex32(s: &str) -> bool {
    s.len() == 32 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn check_headers(what: &str, all: &dyn Fn(&str) -> Vec<String>, exp: &[H]) -> Vec<String> {
    let mut errs = Vec::new();
    for h in exp {
        let ok = match *h {
            H::Present(n) => !all(n).is_empty(),
            H::Absent(n) => all(n).is_empty(),
            H::Eq(n, v) => all(n).first().map(String::as_str) == Some(v),
            H::All(n, vs) => all(n) == vs.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        };
        if !ok {
            let name = match *h {
                H::Present(n) | H::Absent(n) | H::Eq(n, _) | H::All(n, _) => n,
            };
            errs.push(format!("{what}: expected {h:?}, got {name}: {:?}", all(name)));
        }
    }
    errs
}

async fn run_case(c: &Case) -> Vec<String> {
    let r = c.reply;
    let reply = Reply {
        status: r.status,
        headers: r.headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        body: r.body.to_vec(),
        delay: None,
        trailers: Vec::new(),
    };
    let backend = Backend::start(c.name, Arc::new(move |_: &Received| reply.clone())).await;
    let gw = gateway(&simple_config(&[backend.url()], c.routes)).await;
    let q = c.req;
    let resp = match q.body {
        Body::None => request(gw.addr, q.method, q.path, q.headers, b"").await,
        Body::Length(b) => request(gw.addr, q.method, q.path, q.headers, b).await,
        Body::Chunked(chunks) => request_chunked(gw.addr, q.method, q.path, q.headers, chunks).await,
    };
    let got = backend.requests();
    let mut errs = Vec::new();
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
            let before = errs.len();
            errs.extend(check_headers("upstream header", &all, up.headers));
            if errs.len() > before {
                errs.push(format!("upstream request was: {} {} {:?}", r.method, r.uri, r.headers));
            }
            if r.body != up.body {
                errs.push(format!(
                    "upstream body: expected {:?}, got {:?}",
                    String::from_utf8_lossy(up.body),
                    String::from_utf8_lossy(&r.body)
                ));
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
    errs.extend(check_headers("client header", &all, c.client.headers));
    match c.client.body {
        BodyExp::Any => {}
        BodyExp::Exact(b) if resp.body == b => {}
        BodyExp::Contains(s) if resp.text().contains(s) => {}
        other => {
            let want = match other {
                BodyExp::Exact(b) => format!("exactly {:?}", String::from_utf8_lossy(b)),
                BodyExp::Contains(s) => format!("containing {s:?}"),
                BodyExp::Any => unreachable!(),
            };
            errs.push(format!("client body: expected {want}, got {:?}", resp.text()));
        }
    }
    if let Some(check) = c.check {
        let ctx = Ctx { backend: backend.addr, received: got.first().cloned(), resp };
        if let Err(e) = check(&ctx) {
            errs.push(format!("check: {e}"));
        }
    }
    shutdown(gw).await;
    errs.into_iter().map(|e| format!("[{}] {e}", c.name)).collect()
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

/// Shorthand for a case that only checks which route answered.
fn routed(name: &'static str, routes: &'static str, req: Req, uri: &'static str, route: &'static str) -> Case {
    Case {
        name,
        routes,
        req,
        up: Some(Up { method: req.method, uri, headers: &[], body: b"" }),
        reply: OK_REPLY,
        client: Client { status: 200, headers: route_header(route), body: BodyExp::Exact(b"upstream-ok") },
        check: None,
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
        check: None,
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
            check: None,
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
            reply: UpReply { status: 201, headers: &[("location", "/submit/1")], body: b"created" },
            client: Client {
                status: 201,
                headers: &[H::Eq("location", "/submit/1")],
                body: BodyExp::Exact(b"created"),
            },
            check: None,
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
            // Re-framing is the gateway's choice (a small chunked body may go up with a length),
            // but exactly one framing header, matching the body.
            check: Some(|c| {
                let r = c.received.as_ref().ok_or("no request")?;
                match (r.header_all("content-length").as_slice(), r.header_all("transfer-encoding").as_slice()) {
                    (["19"], []) | ([], ["chunked"]) => Ok(()),
                    other => Err(format!("framing headers {other:?}")),
                }
            }),
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
            check: None,
        },
        Case {
            name: "upstream error status and body pass through unchanged",
            routes: "",
            req: get("/flaky"),
            up: Some(Up { method: "GET", uri: "/flaky", headers: &[], body: b"" }),
            reply: UpReply { status: 503, headers: &[("retry-after", "7")], body: b"upstream says down" },
            client: Client {
                status: 503,
                headers: &[H::Eq("retry-after", "7")],
                body: BodyExp::Exact(b"upstream says down"),
            },
            check: None,
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
            check: None,
        },
        // --- Path routing and rewrites ---
        Case {
            name: "prefix route with strip_prefix keeps the query",
            routes: PREFIX_STRIP,
            req: get("/api/v1/items?sort=desc"),
            up: Some(Up { method: "GET", uri: "/v1/items?sort=desc", headers: &[], body: b"" }),
            reply: OK_REPLY,
            client: Client { status: 200, headers: &[], body: BodyExp::Any },
            check: None,
        },
        Case {
            name: "strip_prefix of the whole path forwards /",
            routes: PREFIX_STRIP,
            req: get("/api"),
            up: Some(Up { method: "GET", uri: "/", headers: &[], body: b"" }),
            reply: OK_REPLY,
            client: Client { status: 200, headers: &[], body: BodyExp::Any },
            check: None,
        },
        not_found("prefix is segment-aware (/apix is not under /api)", PREFIX_STRIP, get("/apix")),
        Case {
            name: "template param rewritten into the upstream path",
            routes: TEMPLATES,
            req: get("/users/42?full=1"),
            up: Some(Up { method: "GET", uri: "/v2/u/42?full=1", headers: &[], body: b"" }),
            reply: OK_REPLY,
            client: Client { status: 200, headers: &[], body: BodyExp::Any },
            check: None,
        },
        not_found("template param does not span segments", TEMPLATES, get("/users/42/extra")),
        Case {
            name: "catch-all {*rest} captures several segments",
            routes: TEMPLATES,
            req: get("/files/a/b/c.txt"),
            up: Some(Up { method: "GET", uri: "/store/a/b/c.txt", headers: &[], body: b"" }),
            reply: OK_REPLY,
            client: Client { status: 200, headers: &[], body: BodyExp::Any },
            check: None,
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
            check: None,
        },
        Case {
            name: "hop-by-hop headers and those named in Connection are not forwarded",
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
            check: None,
        },
        Case {
            name: "hop-by-hop response headers and those named in Connection are not relayed",
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
            },
            client: Client {
                status: 200,
                headers: &[H::Absent("x-up-hop"), H::Absent("keep-alive"), H::Eq("x-after", "ok")],
                body: BodyExp::Exact(b"hop"),
            },
            check: None,
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
        },
        Case {
            name: "preserve_host sends the client's Host",
            routes: PRESERVE_HOST,
            req: get_h("/", &[("host", "Client.Example:8443")]),
            up: Some(Up { method: "GET", uri: "/", headers: &[H::All("host", &["Client.Example:8443"])], body: b"" }),
            reply: OK_REPLY,
            client: Client { status: 200, headers: &[], body: BodyExp::Any },
            check: None,
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
            check: None,
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
            check: None,
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
            check: None,
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
        },
        // --- Bodiless responses ---
        Case {
            name: "HEAD relays no body but keeps content-length",
            routes: "",
            req: Req { method: "HEAD", path: "/doc", headers: &[], body: Body::None },
            up: Some(Up { method: "HEAD", uri: "/doc", headers: &[], body: b"" }),
            reply: UpReply { status: 200, headers: &[("content-type", "text/plain")], body: b"0123456789" },
            client: Client { status: 200, headers: &[H::Eq("content-length", "10")], body: BodyExp::Exact(b"") },
            check: None,
        },
        Case {
            name: "204 without body or framing headers",
            routes: "",
            req: Req { method: "DELETE", path: "/item/1", headers: &[], body: Body::None },
            up: Some(Up { method: "DELETE", uri: "/item/1", headers: &[], body: b"" }),
            reply: UpReply { status: 204, headers: &[("x-deleted", "1")], body: b"" },
            client: Client {
                status: 204,
                headers: &[H::Eq("x-deleted", "1"), H::Absent("content-length"), H::Absent("transfer-encoding")],
                body: BodyExp::Exact(b""),
            },
            check: None,
        },
        Case {
            name: "304 without body",
            routes: "",
            req: get_h("/cached", &[("If-None-Match", "\"v1\"")]),
            up: Some(Up { method: "GET", uri: "/cached", headers: &[H::Eq("if-none-match", "\"v1\"")], body: b"" }),
            reply: UpReply { status: 304, headers: &[("etag", "\"v1\"")], body: b"" },
            client: Client {
                status: 304,
                headers: &[H::Eq("etag", "\"v1\""), H::Absent("transfer-encoding")],
                body: BodyExp::Exact(b""),
            },
            check: None,
        },
    ]
}

#[tokio::test]
async fn proxy_cases() {
    let cases = cases();
    let mut failures = Vec::new();
    for c in &cases {
        eprintln!("case: {}", c.name);
        failures.extend(run_case(c).await);
    }
    assert!(failures.is_empty(), "{} of {} cases failed:\n{}", failures.len(), cases.len(), failures.join("\n"));
}

/// Case names are unique, so a failure message points at one row.
#[test]
fn case_names_are_unique() {
    let cases = cases();
    let mut names: Vec<_> = cases.iter().map(|c| c.name).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), cases.len());
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
