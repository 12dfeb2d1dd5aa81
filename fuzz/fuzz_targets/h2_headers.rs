//! HTTP/2 request heads from clients: the `h2` crate's RFC 9113 checks and HPACK decoding, then
//! the gateway's own validation (`serve::h2::to_head`: whitespace around values, `host` vs
//! `:authority`, plain CONNECT, field-count and `:path` limits, cookie joining, extended
//! CONNECT), then routing and the route's policies, exactly as a client connection runs them.
//!
//! `to_head` is private and takes an `h2::RecvStream`, so the target drives the public entry
//! point, `serve::h2::serve`, over an in-memory pipe (no socket): the client preface, a
//! SETTINGS frame, then HEADERS (and CONTINUATION, DATA) frames built from the input. The config
//! answers every request at the gateway (404, 405, a CORS preflight, or 403 from an
//! `ip_filter`), so nothing is ever forwarded. Time is tokio's paused clock: timeouts fire at
//! once when the connection has nothing else to do.
//!
//! Input: one flag byte, then fields as (name length, name, value length, value), one byte each
//! length; with the `RAW` flag the rest is the header block itself (HPACK bytes).
//!
//! Properties: never panics (in any task); every stream opened gets an answer (a response or
//! RST_STREAM) or the connection ends (GOAWAY or close); the connection task finishes once the
//! client has gone.

#![no_main]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use gatehouse_core::state::Shared;
use gatehouse_fuzz::{compile_config, Reader};
use libfuzzer_sys::fuzz_target;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const CONFIG: &str = r#"
version: 1
listeners:
  - name: main
    address: 127.0.0.1:0
    limits:
      max_headers: 16
      max_uri_bytes: 256
      max_header_bytes: 4KiB
    timeouts:
      header_read: 2s
      idle: 5s
upstreams:
  - name: never
    targets:
      - url: http://127.0.0.1:9
routes:
  - name: cors
    upstream: never
    match:
      path: { prefix: /cors }
    policies:
      - cors:
          allow_origins: [https://app.example]
          allow_headers: [x-a]
      - ip_filter:
          allow: [192.0.2.1/32]
  - name: admin
    upstream: never
    match:
      hosts: [gatehouse.test]
      path: { exact: /admin }
      methods: [GET, POST]
    policies:
      - ip_filter:
          deny: [0.0.0.0/0, "::/0"]
  - name: ws
    upstream: never
    match:
      path: { prefix: /ws }
    upgrades: [websocket]
    policies:
      - ip_filter:
          allow: [192.0.2.1/32]
  - name: rest
    upstream: never
    match:
      path: { prefix: / }
      methods: [GET, HEAD, POST, PUT, DELETE, OPTIONS]
    policies:
      - ip_filter:
          allow: [192.0.2.1/32]
"#;

struct Env {
    rt: tokio::runtime::Runtime,
    shared: Arc<Shared>,
    _shutdown: tokio::sync::watch::Sender<bool>,
}

fn env() -> &'static Env {
    static ENV: OnceLock<Env> = OnceLock::new();
    ENV.get_or_init(|| {
        let rt =
            tokio::runtime::Builder::new_current_thread().enable_all().start_paused(true).build().expect("runtime");
        let (tx, rx) = tokio::sync::watch::channel(false);
        let shared = Arc::new(Shared {
            snapshot: arc_swap::ArcSwap::from_pointee(compile_config(CONFIG)),
            registry: Default::default(),
            limiters: Default::default(),
            access_logs: Default::default(),
            shutdown: rx,
            stopping: AtomicBool::new(false),
            stop: Arc::new(tokio::sync::Notify::new()),
            connections: AtomicUsize::new(0),
            inflight: AtomicUsize::new(0),
            metrics: gatehouse_core::metrics::Metrics::new(1),
            tracer: Mutex::new(None),
        });
        Env { rt, shared, _shutdown: tx }
    })
}

const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;

fn frame(out: &mut Vec<u8>, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
    let len = payload.len() as u32;
    out.extend_from_slice(&len.to_be_bytes()[1..]);
    out.extend_from_slice(&[kind, flags]);
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
}

/// HPACK integer with an `n`-bit prefix (RFC 7541 §5.1).
fn put_int(out: &mut Vec<u8>, first: u8, n: u8, mut v: usize) {
    let max = (1usize << n) - 1;
    if v < max {
        out.push(first | v as u8);
        return;
    }
    out.push(first | max as u8);
    v -= max;
    while v >= 128 {
        out.push((v % 128) as u8 | 0x80);
        v /= 128;
    }
    out.push(v as u8);
}

/// One literal field with a literal name, no Huffman; indexed into the dynamic table or not.
fn put_field(out: &mut Vec<u8>, name: &[u8], value: &[u8], index: bool) {
    out.push(if index { 0x40 } else { 0x00 });
    put_int(out, 0, 7, name.len());
    out.extend_from_slice(name);
    put_int(out, 0, 7, value.len());
    out.extend_from_slice(value);
}

// Flag bits of the first input byte.
const F_END_STREAM: u8 = 0x01;
const F_PSEUDO: u8 = 0x02;
const F_DATA: u8 = 0x04;
const F_CONTINUATION: u8 = 0x08;
const F_RAW: u8 = 0x10;
const F_INDEX: u8 = 0x20;
const F_SECOND: u8 = 0x40;

/// The frames of the request(s) an input describes, and the streams opened.
fn client_frames(data: &[u8]) -> (Vec<u8>, Vec<u32>) {
    let mut r = Reader::new(data);
    let flags = r.u8();
    let block = if flags & F_RAW != 0 {
        r.rest().to_vec()
    } else {
        let mut b = Vec::new();
        if flags & F_PSEUDO != 0 {
            for (n, v) in [(":method", "GET"), (":scheme", "http"), (":authority", "gatehouse.test"), (":path", "/")] {
                put_field(&mut b, n.as_bytes(), v.as_bytes(), false);
            }
        }
        while !r.is_empty() {
            let name = r.chunk();
            let value = r.chunk();
            put_field(&mut b, name, value, flags & F_INDEX != 0);
        }
        b
    };
    let mut out = Vec::new();
    let mut streams = Vec::new();
    let copies = if flags & F_SECOND != 0 { 2 } else { 1 };
    for i in 0..copies {
        let stream = 1 + 2 * i;
        streams.push(stream);
        let end = if flags & F_END_STREAM != 0 { END_STREAM } else { 0 };
        if flags & F_CONTINUATION != 0 && block.len() > 1 {
            let (a, b) = block.split_at(block.len() / 2);
            frame(&mut out, 0x1, end, stream, a);
            frame(&mut out, 0x9, END_HEADERS, stream, b);
        } else {
            frame(&mut out, 0x1, end | END_HEADERS, stream, &block);
        }
        if flags & F_END_STREAM == 0 && flags & F_DATA != 0 {
            frame(&mut out, 0x0, END_STREAM, stream, b"hello");
        }
    }
    (out, streams)
}

/// `H2_FUZZ_TRACE=1` prints the frames the gateway answers with (to check the harness, e.g.
/// `H2_FUZZ_TRACE=1 cargo fuzz run h2_headers seeds/h2_headers/seed-get`).
fn trace() -> bool {
    static T: OnceLock<bool> = OnceLock::new();
    *T.get_or_init(|| std::env::var_os("H2_FUZZ_TRACE").is_some())
}

/// Writes the request and reads frames until every stream is answered or the connection ends.
async fn client(mut io: tokio::io::DuplexStream, frames: Vec<u8>, streams: Vec<u32>) {
    let mut hello = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    frame(&mut hello, 0x4, 0, 0, &[]);
    if io.write_all(&hello).await.is_err() || io.write_all(&frames).await.is_err() {
        return;
    }
    let mut open = streams;
    let mut head = [0u8; 9];
    let mut payload = vec![0u8; 1 << 14];
    while !open.is_empty() {
        if io.read_exact(&mut head).await.is_err() {
            return; // closed: an answer too
        }
        let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
        let (kind, flags) = (head[3], head[4]);
        let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
        if len > payload.len() {
            payload.resize(len, 0);
        }
        if io.read_exact(&mut payload[..len]).await.is_err() {
            return;
        }
        if trace() {
            eprintln!(
                "h2_headers: frame type {kind:#x} flags {flags:#x} stream {stream} len {len}: {:?}",
                &payload[..len.min(64)]
            );
        }
        match kind {
            0x4 if flags & 0x1 == 0 => {
                let mut ack = Vec::new();
                frame(&mut ack, 0x4, 0x1, 0, &[]);
                if io.write_all(&ack).await.is_err() {
                    return;
                }
            }
            0x1 | 0x3 => open.retain(|&s| s != stream),
            0x7 => return, // GOAWAY
            _ => {}
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let env = env();
    let (frames, streams) = client_frames(data);
    env.rt.block_on(async {
        let (client_io, server_io) = tokio::io::duplex(1 << 16);
        let peer: SocketAddr = "127.0.0.1:50000".parse().expect("addr");
        let server = tokio::spawn(gatehouse_core::serve::h2::serve(server_io, peer, 0, env.shared.clone(), None));
        // Virtual time: an unanswered stream shows up as this deadline, not as a slow test.
        if tokio::time::timeout(Duration::from_secs(600), client(client_io, frames, streams)).await.is_err() {
            panic!("a stream got no answer and the connection stayed open for 600 s (virtual)");
        }
        match tokio::time::timeout(Duration::from_secs(600), server).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => panic!("connection task failed: {e}"),
            Err(_) => panic!("connection task still running 600 s (virtual) after the client left"),
        }
    });
});
