//! gRPC through the real gateway binary, against a real gRPC service and client: the official
//! Python `grpcio` (`crates/testkit/grpc_server.py`, `grpc_client.py`), an implementation of
//! HTTP/2 and gRPC independent of ours. The gateway listens in plain text (h2c with prior
//! knowledge, which is what an insecure gRPC channel speaks) and reaches the service over
//! `h2c://`. Covered: every call shape (unary, server, client and bidirectional streaming, with a
//! ping-pong that deadlocks unless both directions stream), metadata and trailers (binary ones
//! included), a service's own error status, errors the gateway makes answered as gRPC statuses
//! (no route, upstream down, rate limited, unauthenticated, forbidden, timeout, deadline),
//! gRPC-Web (binary and text over HTTP/1.1, binary over HTTP/2), and a call through a TLS
//! listener that must negotiate `h2` by ALPN. curl (nghttp2) shows the wire where grpcio would
//! hide it: trailers-only errors, trailers after the message.

use std::net::SocketAddr;
use std::time::Duration;

use gatehouse_testkit::tls::Pki;
use gatehouse_testkit::{free_port, grpc_call, request, Cfg, GatewayProcess, GrpcServer, Resp};
use serde_json::Value;

/// API keys: alice `grpc-key`, mallory `mallory-key`.
const CONSUMERS: &str = "consumers:
  - name: alice
    credentials: {api_keys: [{sha256: 3f144fa299246bf69344b3b7a7b519a4866ec69a48fd83898761888511cc4cfd}]}
  - name: mallory
    credentials: {api_keys: [{sha256: a2c6db64998e297b1413b0033e66c5ac0e0a810cac887f9c6b4636f6df389ad9}]}
";

/// The routes every test runs against. Routes told apart by an `x-route` header come first
/// (same prefix: the first whose conditions hold wins).
const ROUTES: &str = "  - name: limited
    upstream: grpc
    match: {path: {prefix: /test.Echo}, headers: [{name: x-route, exact: limited}]}
    policies:
      - rate_limit: {limit: 1/min}
  - name: slow
    upstream: grpc
    timeout: 300ms
    match: {path: {prefix: /test.Echo}, headers: [{name: x-route, exact: slow}]}
  - name: deadline
    upstream: grpc
    deadline: {timeout: 300ms, format: grpc}
    match: {path: {prefix: /test.Echo}, headers: [{name: x-route, exact: deadline}]}
  - name: auth
    upstream: grpc
    match: {path: {prefix: /test.Echo}, headers: [{name: x-route, exact: auth}]}
    policies:
      - auth: {methods: [{api_key: {}}]}
      - authorize: {consumers: [alice]}
  - name: echo
    upstream: grpc
    match: {path: {prefix: /test.Echo}}
  - name: dead
    upstream: dead
    match: {path: {prefix: /dead.Echo}}
";

/// A gRPC service and the real gateway in front of it.
struct Env {
    addr: SocketAddr,
    _gw: GatewayProcess,
    _server: GrpcServer,
}

impl Env {
    /// The gateway on a plain listener (plus `listener_extra` under it, e.g. a `tls:` block).
    fn start_with(listener_extra: &str) -> Env {
        let server = GrpcServer::start();
        let (listen, admin, closed) = (free_port(), free_port(), free_port());
        let yaml = Cfg::new()
            .listen(&format!("127.0.0.1:{listen}"))
            .listener(listener_extra)
            .admin_with(&format!("127.0.0.1:{admin}"), "")
            .yaml(CONSUMERS)
            .upstream("grpc", &[server.h2c_url()])
            .upstream("dead", &[format!("h2c://127.0.0.1:{closed}")])
            .routes_yaml(ROUTES)
            .to_yaml();
        let bin = env!("CARGO_BIN_EXE_gatehouse");
        // A refused config is reported with the validator's words, not as a gateway that never
        // became ready.
        let file = std::env::temp_dir().join(format!("gatehouse-grpc-{}-{listen}.yaml", std::process::id()));
        std::fs::write(&file, &yaml).expect("write config");
        let v = std::process::Command::new(bin).arg("validate").arg(&file).output().expect("run validate");
        let _ = std::fs::remove_file(&file);
        assert!(
            v.status.success(),
            "the config is refused:\n{}{}\n{yaml}",
            String::from_utf8_lossy(&v.stdout),
            String::from_utf8_lossy(&v.stderr)
        );
        let gw = GatewayProcess::spawn(bin, &yaml, ([127, 0, 0, 1], admin).into());
        Env { addr: ([127, 0, 0, 1], listen).into(), _gw: gw, _server: server }
    }

    fn start() -> Env {
        Env::start_with("")
    }

    fn target(&self) -> String {
        self.addr.to_string()
    }

    /// One call through the gateway with the grpcio client.
    fn call(&self, method: &str, args: &[&str]) -> Value {
        grpc_call(&self.target(), method, args)
    }
}

fn strs(v: &Value) -> Vec<&str> {
    v.as_array().unwrap_or_else(|| panic!("not an array: {v}")).iter().map(|m| m.as_str().expect("string")).collect()
}

/// The status came from a `grpc-status` the client received, not from grpcio's mapping of a
/// non-200 HTTP status (whose details read "Received http2 header with status: N").
fn assert_grpc_status(r: &Value, code: &str) {
    assert_eq!(r["code"], code, "{r}");
    let details = r["details"].as_str().unwrap_or("");
    assert!(!details.contains("http2 header with status"), "a plain HTTP error, not a gRPC status: {r}");
}

/// The control: the same client and service without the gateway (a failure here is in the test
/// kit or grpcio, not in the gateway).
#[test]
fn the_client_and_service_agree_without_the_gateway() {
    let server = GrpcServer::start();
    let target = server.addr.to_string();
    let r = grpc_call(&target, "Unary", &["direct", "--metadata", "x-test-color=green"]);
    assert_eq!(r["code"], "OK", "{r}");
    assert_eq!(strs(&r["messages"]), ["direct"]);
    assert_eq!(r["initial_metadata"]["x-echo-color"], "green", "{r}");
    assert_eq!(r["trailing_metadata"]["x-trailer"], "yes", "{r}");
    assert_eq!(r["trailing_metadata"]["x-trailer-bin"], "0001feff", "{r}");
    let r = grpc_call(&target, "ServerStream", &["3"]);
    assert_eq!(strs(&r["messages"]), ["msg-0", "msg-1", "msg-2"], "{r}");
    let r = grpc_call(&target, "Bidi", &["a", "b", "--pingpong"]);
    assert_eq!(strs(&r["messages"]), ["a", "b"], "{r}");
    let r = grpc_call(&target, "Fail", &["x"]);
    assert_eq!((r["code"].as_str(), r["details"].as_str()), (Some("NOT_FOUND"), Some("no such thing")), "{r}");
    let r = grpc_call(&target, "Slow", &["5000", "--timeout", "0.2"]);
    assert_eq!(r["code"], "DEADLINE_EXCEEDED", "{r}");

    // The wire as curl sees it: a trailers-only error, and trailers after the message.
    let (head, trailers, body) = curl_h2c(server.addr, "/test.Echo/Fail", b"x");
    assert!(head.iter().any(|h| h.trim() == "grpc-status: 5"), "{head:?}");
    assert!(trailers.is_empty() && body.is_empty(), "{trailers:?} {body:?}");
    let (head, trailers, body) = curl_h2c(server.addr, "/test.Echo/Unary", b"wire");
    assert_eq!(head.first().map(|l| l.trim()), Some("HTTP/2 200"), "{head:?}");
    assert_eq!(body, frame(0, b"wire"));
    assert!(trailers.iter().any(|t| t.trim() == "grpc-status: 0"), "{trailers:?}");

    // And the test's own base64 (gRPC-Web text) against known encodings.
    assert_eq!(b64_encode(b"hello"), "aGVsbG8=");
    assert_eq!(b64_encode(b"\x00\x01\xfe\xff"), "AAH+/w==");
    for n in 0..7 {
        let data: Vec<u8> = (0..n).map(|i| (i * 37 + 200) as u8).collect();
        assert_eq!(b64_decode(b64_encode(&data).as_bytes()), data);
    }
    assert_eq!(b64_decode(b"aGk=aGVsbG8="), b"hihello", "separately padded chunks");
}

#[test]
fn unary_call_keeps_message_metadata_and_trailers() {
    let env = Env::start();
    let r = env.call("Unary", &["hello gateway", "--metadata", "x-test-color=blue"]);
    assert_eq!(r["code"], "OK", "{r}");
    assert_eq!(strs(&r["messages"]), ["hello gateway"]);
    let initial = &r["initial_metadata"];
    assert_eq!(initial["x-echo-color"], "blue", "request metadata reached the service: {r}");
    assert_eq!(r["trailing_metadata"]["x-trailer"], "yes", "{r}");
    assert_eq!(r["trailing_metadata"]["x-trailer-bin"], "0001feff", "a binary trailer, byte for byte: {r}");

    // A message far larger than HTTP/2's initial 64 KiB windows, both ways.
    let big = env.call("Unary", &["--size", "1048576"]);
    assert_eq!(big["code"], "OK", "{big}");
    assert_eq!(big["message_lengths"], serde_json::json!([1048576]));
    assert_eq!(big["sha256"][0], big["sent_sha256"], "{big}");
    assert_eq!(big["trailing_metadata"]["x-trailer"], "yes", "{big}");
}

#[test]
fn streaming_calls_of_every_shape() {
    let env = Env::start();

    let server = env.call("ServerStream", &["50"]);
    assert_eq!(server["code"], "OK", "{server}");
    let want: Vec<String> = (0..50).map(|i| format!("msg-{i}")).collect();
    assert_eq!(strs(&server["messages"]), want);

    let client = env.call("ClientStream", &["ab", "cd", "ef", "gh"]);
    assert_eq!(client["code"], "OK", "{client}");
    assert_eq!(strs(&client["messages"]), ["abcdefgh"]);

    let bidi = env.call("Bidi", &["one", "two", "three"]);
    assert_eq!(bidi["code"], "OK", "{bidi}");
    assert_eq!(strs(&bidi["messages"]), ["one", "two", "three"]);
}

#[test]
fn bidi_ping_pong_streams_both_ways() {
    let env = Env::start();
    // Each message leaves only once the previous echo is back: a proxy that holds either
    // direction (or the call itself) until a stream ends deadlocks here (the client gives up
    // after 5 s).
    let sent: Vec<String> = (0..20).map(|i| format!("ping-{i}")).collect();
    let mut args: Vec<&str> = sent.iter().map(String::as_str).collect();
    args.extend(["--pingpong", "--timeout", "5"]);
    let pingpong = env.call("Bidi", &args);
    assert_eq!(pingpong["code"], "OK", "{pingpong}");
    assert_eq!(strs(&pingpong["messages"]), sent);
}

#[test]
fn a_service_error_reaches_the_client_unchanged() {
    let env = Env::start();
    let r = env.call("Fail", &["x"]);
    assert_eq!(r["code"], "NOT_FOUND", "{r}");
    assert_eq!(r["details"], "no such thing", "{r}");
    assert_eq!(r["trailing_metadata"]["x-fail"], "yes", "{r}");
    assert_eq!(r["messages"], serde_json::json!([]));

    // The service's own UNIMPLEMENTED (an unknown method on a routed service) passes too.
    let r = env.call("Nope", &["x"]);
    assert_eq!(r["code"], "UNIMPLEMENTED", "{r}");
}

#[test]
fn gateway_errors_are_grpc_statuses() {
    let env = Env::start();

    // No route for the service.
    let r = env.call("/other.Service/Method", &["x"]);
    assert_grpc_status(&r, "UNIMPLEMENTED");

    // The route's upstream refuses connections.
    let r = env.call("/dead.Echo/Unary", &["x"]);
    assert_grpc_status(&r, "UNAVAILABLE");

    // Rate limited: 1 per minute, the second call is refused.
    let first = env.call("Unary", &["a", "--metadata", "x-route=limited"]);
    assert_eq!(first["code"], "OK", "{first}");
    let second = env.call("Unary", &["b", "--metadata", "x-route=limited"]);
    assert_grpc_status(&second, "RESOURCE_EXHAUSTED");

    // Identity: no key is 401, a consumer the route does not allow is 403.
    let r = env.call("Unary", &["x", "--metadata", "x-route=auth"]);
    assert_grpc_status(&r, "UNAUTHENTICATED");
    let r = env.call("Unary", &["x", "--metadata", "x-route=auth", "--metadata", "x-api-key=mallory-key"]);
    assert_grpc_status(&r, "PERMISSION_DENIED");
    let r = env.call("Unary", &["x", "--metadata", "x-route=auth", "--metadata", "x-api-key=grpc-key"]);
    assert_eq!(r["code"], "OK", "{r}");
    let seen = r["initial_metadata"]["x-seen-keys"].as_str().unwrap_or("");
    assert!(seen.split(',').any(|k| k == "x-consumer-name"), "the identity went upstream: {r}");
    assert!(!seen.split(',').any(|k| k == "x-api-key"), "the credential did not: {r}");
}

#[test]
fn timeouts_and_deadlines_are_deadline_exceeded() {
    let env = Env::start();

    // The route's 300 ms response timeout ends a 5 s call; the client's own deadline (10 s) is
    // far away, so the status is the gateway's.
    let r = env.call("Slow", &["5000", "--metadata", "x-route=slow"]);
    assert_grpc_status(&r, "DEADLINE_EXCEEDED");
    assert!(r["elapsed_ms"].as_u64().expect("elapsed") < 3000, "answered at the route timeout: {r}");

    let r = env.call("Slow", &["5000", "--metadata", "x-route=deadline"]);
    assert_grpc_status(&r, "DEADLINE_EXCEEDED");
    assert!(r["elapsed_ms"].as_u64().expect("elapsed") < 3000, "answered at the route deadline: {r}");

    // The route's deadline goes upstream as `grpc-timeout`, replacing the client's 10 s.
    let r = env.call("Unary", &["x", "--metadata", "x-route=deadline"]);
    assert_eq!(r["code"], "OK", "{r}");
    let left: u64 = r["initial_metadata"]["x-time-remaining-ms"]
        .as_str()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("the service saw a deadline: {r}"));
    assert!(left <= 300, "the service saw the gateway's deadline, not the client's: {left} ms");
}

/// A gRPC call with curl over h2c (prior knowledge; nghttp2, another HTTP/2 implementation),
/// to see the wire: the status line and header block, the trailer block (empty when the response
/// is trailers-only) and the body bytes.
fn curl_h2c(addr: SocketAddr, path: &str, message: &[u8]) -> (Vec<String>, Vec<String>, Vec<u8>) {
    curl_h2c_as(addr, path, "application/grpc", message)
}

/// [`curl_h2c`] with another content type (gRPC-Web over HTTP/2).
fn curl_h2c_as(
    addr: SocketAddr,
    path: &str,
    content_type: &str,
    message: &[u8],
) -> (Vec<String>, Vec<String>, Vec<u8>) {
    let dir = std::env::temp_dir().join(format!("gatehouse-grpc-curl-{}-{}", std::process::id(), free_port()));
    std::fs::create_dir_all(&dir).expect("dir");
    let (req, resp) = (dir.join("req"), dir.join("resp"));
    std::fs::write(&req, frame(0, message)).expect("write request");
    let mut cmd = std::process::Command::new("curl");
    cmd.args(["-sS", "--http2-prior-knowledge", "--max-time", "10", "-D", "-", "-o"]).arg(&resp).args([
        "-H",
        &format!("content-type: {content_type}"),
        "-H",
        "te: trailers",
    ]);
    if message.is_empty() {
        // No DATA at all: the request ends with its HEADERS frame.
        cmd.args(["-X", "POST"]);
    } else {
        cmd.arg("--data-binary").arg(format!("@{}", req.display()));
    }
    let out = cmd.arg(format!("http://{addr}{path}")).output().expect("curl runs");
    let body = std::fs::read(&resp).unwrap_or_default();
    let _ = std::fs::remove_dir_all(&dir);
    let text = String::from_utf8_lossy(&out.stdout).replace("\r\n", "\n");
    assert!(out.status.success(), "curl failed: {}{text}", String::from_utf8_lossy(&out.stderr));
    let mut blocks = text.split("\n\n").map(|b| b.lines().map(str::to_string).collect::<Vec<_>>());
    let head = blocks.next().unwrap_or_default();
    let trailers = blocks.next().unwrap_or_default();
    (head, trailers, body)
}

#[test]
fn the_wire_seen_by_curl_over_h2c() {
    let env = Env::start();
    // Answers the gateway makes itself, to requests without a body: curl 7.88 mishandles a
    // complete response that arrives while it is still uploading (it reports "Stream error in
    // the HTTP/2 framing layer" or waits for its own timeout; curl/curl#986, #22984), a race the
    // gateway wins when it answers without waiting for the body, as it should.
    for (path, status) in [("/other.Service/Method", "12"), ("/dead.Echo/Unary", "14")] {
        let (head, trailers, body) = curl_h2c(env.addr, path, b"");
        let show = format!("{path}: head {head:?} trailers {trailers:?} body {body:?}");
        assert_eq!(head.first().map(|l| l.trim()), Some("HTTP/2 200"), "{show}");
        let has = |l: &str| head.iter().any(|h| h.trim().eq_ignore_ascii_case(l));
        assert!(has("content-type: application/grpc"), "{show}");
        assert!(has(&format!("grpc-status: {status}")), "grpc-status in the only header block: {show}");
        assert!(head.iter().any(|h| h.to_ascii_lowercase().starts_with("grpc-message:")), "{show}");
        assert!(trailers.is_empty() && body.is_empty(), "a trailers-only response: {show}");
    }
    // A proxied call: the service's trailers stay trailers, after the message.
    let (head, trailers, body) = curl_h2c(env.addr, "/test.Echo/Unary", b"wire");
    let show = format!("head {head:?} trailers {trailers:?} body {body:?}");
    assert_eq!(head.first().map(|l| l.trim()), Some("HTTP/2 200"), "{show}");
    assert_eq!(body, frame(0, b"wire"), "{show}");
    let t: Vec<&str> = trailers.iter().map(|l| l.trim()).collect();
    assert!(t.contains(&"grpc-status: 0") && t.contains(&"x-trailer: yes"), "{show}");
    assert!(!head.iter().any(|h| h.to_ascii_lowercase().starts_with("grpc-status")), "{show}");

    // gRPC-Web from an HTTP/2 client: the trailers come as the last frame of the body.
    let (head, trailers, body) = curl_h2c_as(env.addr, "/test.Echo/Unary", "application/grpc-web+proto", b"web/h2");
    let f = frames(&body);
    let show = format!("head {head:?} trailers {trailers:?} body {body:?}");
    assert_eq!(head.first().map(|l| l.trim()), Some("HTTP/2 200"), "{show}");
    assert!(head.iter().any(|h| h.trim().eq_ignore_ascii_case("content-type: application/grpc-web+proto")), "{show}");
    assert_eq!(f.len(), 2, "{show}");
    assert_eq!(f[0], (0u8, b"web/h2".to_vec()), "{show}");
    assert_eq!(f[1].0, 0x80, "{show}");
    assert!(trailer_lines(&f[1].1).contains(&("grpc-status".into(), "0".into())), "{show}");
}

// ---------------------------------------------------------------------------------------------
// gRPC-Web, hand-built over HTTP/1.1.
// ---------------------------------------------------------------------------------------------

/// One gRPC(-Web) length-prefixed frame.
fn frame(flag: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![flag];
    f.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// Splits a gRPC-Web body into (flag, payload) frames; panics on trailing garbage.
fn frames(body: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut out = Vec::new();
    let mut rest = body;
    while !rest.is_empty() {
        assert!(rest.len() >= 5, "a truncated frame header at the end of {body:?}");
        let len = u32::from_be_bytes([rest[1], rest[2], rest[3], rest[4]]) as usize;
        assert!(rest.len() >= 5 + len, "a truncated frame in {body:?}");
        out.push((rest[0], rest[5..5 + len].to_vec()));
        rest = &rest[5 + len..];
    }
    out
}

/// A trailer frame's payload (`name: value\r\n` lines), names lower-cased.
fn trailer_lines(payload: &[u8]) -> Vec<(String, String)> {
    String::from_utf8_lossy(payload)
        .split("\r\n")
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (k, v) = l.split_once(':').unwrap_or_else(|| panic!("not a header line: {l:?}"));
            (k.trim().to_ascii_lowercase(), v.trim().to_string())
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Some(v) = std::str::from_utf8(&b[i + 1..i + 3]).ok().and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn b64_encode(data: &[u8]) -> String {
    let mut out = String::new();
    for c in data.chunks(3) {
        let n = (c[0] as u32) << 16 | (*c.get(1).unwrap_or(&0) as u32) << 8 | *c.get(2).unwrap_or(&0) as u32;
        for i in 0..4 {
            if i <= c.len() {
                out.push(B64[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Decodes base64 made of padded 4-character quanta; padded segments may follow one another
/// (gRPC-Web text lets each chunk be encoded on its own).
fn b64_decode(text: &[u8]) -> Vec<u8> {
    let clean: Vec<u8> = text.iter().copied().filter(|c| !c.is_ascii_whitespace()).collect();
    assert!(
        clean.len().is_multiple_of(4),
        "base64 of a length that is not a multiple of 4: {:?}",
        String::from_utf8_lossy(text)
    );
    let mut out = Vec::new();
    for q in clean.chunks(4) {
        let mut n = 0u32;
        let mut pad = 0;
        for &c in q {
            let v = if c == b'=' {
                pad += 1;
                0
            } else {
                B64.iter().position(|&x| x == c).unwrap_or_else(|| panic!("not base64: {c:?}")) as u32
            };
            n = n << 6 | v;
        }
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&bytes[..3 - pad]);
    }
    out
}

/// A gRPC-Web call: POST `/test.Echo/<method>` over HTTP/1.1 with `content_type`; the body is
/// the request frames (base64 in text mode). Returns the response and its decoded frames.
async fn grpc_web(
    addr: SocketAddr,
    method: &str,
    content_type: &str,
    messages: &[&[u8]],
    extra: &[(&str, &str)],
) -> (Resp, Vec<(u8, Vec<u8>)>) {
    let text = content_type.starts_with("application/grpc-web-text");
    let mut body: Vec<u8> = messages.iter().flat_map(|m| frame(0, m)).collect();
    if text {
        body = b64_encode(&body).into_bytes();
    }
    let mut headers = vec![("content-type", content_type), ("x-grpc-web", "1"), ("accept", content_type)];
    headers.extend_from_slice(extra);
    let r = request(addr, "POST", &format!("/test.Echo/{method}"), &headers, &body).await;
    let raw = if text { b64_decode(&r.body) } else { r.body.clone() };
    let f = frames(&raw);
    (r, f)
}

/// Describes a gRPC-Web response for assertion messages.
fn show(r: &Resp, f: &[(u8, Vec<u8>)]) -> String {
    format!("status {} headers {:?} body {:?} frames {:?}", r.status, r.headers, String::from_utf8_lossy(&r.body), f)
}

/// The grpc-status and grpc-message of a gRPC-Web response: from the headers (trailers-only) or
/// from its trailer frame (flag 0x80), which must then be the last frame.
fn web_status(r: &Resp, f: &[(u8, Vec<u8>)]) -> (String, String) {
    if let Some(s) = r.header("grpc-status") {
        return (s.to_string(), percent_decode(r.header("grpc-message").unwrap_or("")));
    }
    let (flag, payload) = f.last().unwrap_or_else(|| panic!("no trailer frame: {}", show(r, f)));
    assert_eq!(*flag, 0x80, "the last frame is the trailer frame: {}", show(r, f));
    let t = trailer_lines(payload);
    let get = |k: &str| t.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    (
        get("grpc-status").unwrap_or_else(|| panic!("no grpc-status: {}", show(r, f))),
        percent_decode(&get("grpc-message").unwrap_or_default()),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_web_binary_over_http1() {
    let env = tokio::task::spawn_blocking(Env::start).await.expect("join");

    let (r, f) =
        grpc_web(env.addr, "Unary", "application/grpc-web+proto", &[b"hello web"], &[("x-test-color", "red")]).await;
    assert_eq!(r.status, 200, "{}", show(&r, &f));
    assert_eq!(r.header("content-type"), Some("application/grpc-web+proto"), "{}", show(&r, &f));
    assert_eq!(r.header("x-echo-color"), Some("red"), "initial metadata as headers: {}", show(&r, &f));
    assert_eq!(f.len(), 2, "one message, one trailer frame: {}", show(&r, &f));
    assert_eq!(f[0], (0u8, b"hello web".to_vec()), "{}", show(&r, &f));
    assert_eq!(f[1].0, 0x80, "{}", show(&r, &f));
    let t = trailer_lines(&f[1].1);
    assert!(t.contains(&("grpc-status".into(), "0".into())), "{t:?}");
    assert!(t.contains(&("x-trailer".into(), "yes".into())), "custom trailers in the trailer frame: {t:?}");

    let (r, f) = grpc_web(env.addr, "Fail", "application/grpc-web+proto", &[b"x"], &[]).await;
    assert_eq!(r.status, 200, "{}", show(&r, &f));
    assert_eq!(web_status(&r, &f), ("5".to_string(), "no such thing".to_string()), "{}", show(&r, &f));

    // Without a route, the gateway's own error is a gRPC-Web status too.
    let rr = request(
        env.addr,
        "POST",
        "/other.Service/Method",
        &[("content-type", "application/grpc-web+proto"), ("x-grpc-web", "1")],
        &frame(0, b"x"),
    )
    .await;
    let f = frames(&rr.body);
    assert_eq!(rr.status, 200, "{}", show(&rr, &f));
    assert_eq!(web_status(&rr, &f).0, "12", "{}", show(&rr, &f));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_web_text_over_http1() {
    let env = tokio::task::spawn_blocking(Env::start).await.expect("join");

    let (r, f) = grpc_web(env.addr, "Unary", "application/grpc-web-text", &[b"hello text"], &[]).await;
    assert_eq!(r.status, 200, "{}", show(&r, &f));
    let ct = r.header("content-type").unwrap_or("");
    assert!(ct.starts_with("application/grpc-web-text"), "{}", show(&r, &f));
    assert_eq!(f.len(), 2, "one message, one trailer frame: {}", show(&r, &f));
    assert_eq!(f[0], (0u8, b"hello text".to_vec()), "{}", show(&r, &f));
    assert_eq!(web_status(&r, &f).0, "0", "{}", show(&r, &f));

    // Several response messages, each frame in the base64 stream.
    let (r, f) = grpc_web(env.addr, "ServerStream", "application/grpc-web-text+proto", &[b"3"], &[]).await;
    assert_eq!(r.status, 200, "{}", show(&r, &f));
    let msgs: Vec<&[u8]> = f.iter().filter(|(flag, _)| *flag == 0).map(|(_, p)| p.as_slice()).collect();
    assert_eq!(msgs, [&b"msg-0"[..], b"msg-1", b"msg-2"], "{}", show(&r, &f));
    assert_eq!(web_status(&r, &f).0, "0", "{}", show(&r, &f));

    let (r, f) = grpc_web(env.addr, "Fail", "application/grpc-web-text", &[b"x"], &[]).await;
    assert_eq!(r.status, 200, "{}", show(&r, &f));
    assert_eq!(web_status(&r, &f), ("5".to_string(), "no such thing".to_string()), "{}", show(&r, &f));
}

#[test]
fn unary_call_through_a_tls_listener_negotiates_h2() {
    let pki = Pki::new("grpc-ca");
    let cert = pki.issue("gw", "/CN=grpc.gatehouse.test", &["grpc.gatehouse.test", "127.0.0.1"], 30);
    let tls = format!(
        "    tls:\n      certificates:\n        - cert: {}\n          key: {}\n",
        cert.cert.display(),
        cert.key.display()
    );
    let env = Env::start_with(&tls);
    // grpcio refuses a TLS connection without ALPN `h2`: a successful call proves it.
    let ca = pki.ca().display().to_string();
    let r = env.call("Unary", &["over tls", "--ca", &ca, "--server-name", "grpc.gatehouse.test"]);
    assert_eq!(r["code"], "OK", "{r}");
    assert_eq!(strs(&r["messages"]), ["over tls"]);
    assert_eq!(r["trailing_metadata"]["x-trailer"], "yes", "{r}");
}

/// gRPC-Web server streaming over HTTP/1.1 streams: each message reaches the client when the
/// service sends it (three messages 300 ms apart), not all at the end of the stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_web_server_stream_over_http1_is_not_buffered() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let env = tokio::task::spawn_blocking(Env::start).await.expect("join");
    let body = frame(0, b"3");
    let head = format!(
        "POST /test.Echo/SlowStream HTTP/1.1\r\nHost: gw.test\r\ncontent-type: application/grpc-web+proto\r\nx-grpc-web: 1\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    let mut s = tokio::net::TcpStream::connect(env.addr).await.expect("connect");
    s.write_all(head.as_bytes()).await.expect("write head");
    s.write_all(&body).await.expect("write body");
    let start = std::time::Instant::now();
    let (mut got, mut buf) = (Vec::new(), [0u8; 4096]);
    let mut first_at = None;
    loop {
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf)).await.expect("in time").expect("read");
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
        if first_at.is_none() && got.windows(5).any(|w| w == b"msg-0") {
            first_at = Some(start.elapsed());
        }
    }
    let end = start.elapsed();
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    for m in ["msg-0", "msg-1", "msg-2"] {
        assert!(text.contains(m), "{m} missing: {text}");
    }
    let first = first_at.expect("first message seen");
    // The stream takes 600 ms at the service; buffered, the first message would arrive with the
    // last one.
    assert!(end.saturating_sub(first) >= Duration::from_millis(450), "first message at {first:?}, end at {end:?}");
}

/// An answer the gateway makes before the client finished sending (here: the upstream is down,
/// the gRPC body is still coming): the answer is complete, then the client's END_STREAM closes
/// the stream. The body is drained, not reset: before, the failed attempt dropped it and the
/// answer was followed by RST_STREAM, which curl reports as "Stream error in the HTTP/2
/// framing layer" although the answer had arrived.
#[test]
fn an_early_answer_leaves_the_stream_to_the_clients_end_stream() {
    use gatehouse_testkit::h2raw::H2Conn;
    let env = Env::start();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    rt.block_on(async {
        let mut conn = H2Conn::connect(env.addr).await.expect("h2c");
        let authority = env.addr.to_string();
        let fields = |path: &str| {
            vec![
                (":method".to_string(), "POST".to_string()),
                (":scheme".to_string(), "http".to_string()),
                (":path".to_string(), path.to_string()),
                (":authority".to_string(), authority.clone()),
                ("content-type".to_string(), "application/grpc".to_string()),
                ("te".to_string(), "trailers".to_string()),
            ]
        };
        for path in ["/dead.Echo/Unary", "/other.Service/Method"] {
            let id = conn.next_stream();
            conn.headers(id, &fields(path), false).await.expect("headers");
            let r = conn.response(id, Duration::from_secs(5)).await;
            assert!(r.end_stream, "{path}: a complete answer before the body: {r:?}\n{}", conn.trace().join("\n"));
            assert!(r.header("grpc-status").is_some(), "{path}: {r:?}");
            conn.data(id, &frame(0, b"late"), true).await.expect("the body after the answer");
            // A later stream's answer: everything the gateway sent for `id` was read by then.
            let probe = conn.next_stream();
            conn.headers(probe, &fields("/other.Service/Method"), true).await.expect("probe");
            let p = conn.response(probe, Duration::from_secs(5)).await;
            assert!(p.end_stream, "probe: {p:?}");
            assert_eq!(
                conn.stream(id).reset,
                None,
                "{path}: the stream was reset after its answer\n{}",
                conn.trace().join("\n")
            );
        }
    });
}
