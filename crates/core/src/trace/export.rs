//! The OTLP/HTTP span exporter: a bounded queue drained by one dedicated thread that batches spans,
//! encodes them as protobuf and POSTs them to `{endpoint}` over a small blocking HTTP/1.1 client.
//!
//! Invariants: `enqueue` never blocks and never allocates beyond the queue slot: when the queue is
//! full the span is dropped and counted. Only the exporter thread does I/O, so no worker's reactor
//! ever waits on the collector. Retries (429/502/503/504 and transport errors, as the OTLP spec
//! lists) are bounded in number and backoff; `flush` and `shutdown` are bounded in time. Plain
//! `http://` only: `https://` is refused at construction until the TLS work lands.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::proto::{encode_request, read_partial_success, Preamble, SpanRecord};

#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    #[error(
        "OTLP endpoint `{0}`: https is not supported yet (the exporter has no TLS); use an http:// collector, e.g. a local agent"
    )]
    HttpsUnsupported(String),
    #[error("OTLP endpoint `{url}` is invalid: {reason}")]
    InvalidEndpoint { url: String, reason: &'static str },
    #[error("cannot start the span exporter thread: {0}")]
    Spawn(#[source] std::io::Error),
}

/// Where export requests go: parsed once from the endpoint URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub url: String,
    /// `host:port` to connect to (resolved on every connect, so DNS changes are followed).
    pub authority: String,
    /// The `Host` header value.
    pub host_header: String,
    pub path: String,
}

impl Endpoint {
    pub fn parse(url: &str) -> Result<Endpoint, TraceError> {
        let invalid = |reason| TraceError::InvalidEndpoint { url: url.to_string(), reason };
        let lower = url.to_ascii_lowercase();
        if lower.starts_with("https://") {
            return Err(TraceError::HttpsUnsupported(url.to_string()));
        }
        if !lower.starts_with("http://") {
            return Err(invalid("the scheme must be http://"));
        }
        let rest = &url["http://".len()..];
        let (auth, path) = match rest.find(['/', '?']) {
            Some(i) if rest.as_bytes()[i] == b'/' => (&rest[..i], &rest[i..]),
            Some(i) => (&rest[..i], "/"),
            None => (rest, "/"),
        };
        let path = path.split('#').next().unwrap_or("/");
        if auth.contains('@') {
            return Err(invalid("credentials in the URL are not supported; use OTEL_EXPORTER_OTLP_HEADERS"));
        }
        let (host, port) = if let Some(v6) = auth.strip_prefix('[') {
            let (h, after) = v6.split_once(']').ok_or_else(|| invalid("unterminated IPv6 literal"))?;
            match after.strip_prefix(':') {
                Some(p) => (format!("[{h}]"), p),
                None if after.is_empty() => (format!("[{h}]"), ""),
                None => return Err(invalid("junk after the IPv6 literal")),
            }
        } else {
            match auth.rsplit_once(':') {
                Some((h, p)) => (h.to_string(), p),
                None => (auth.to_string(), ""),
            }
        };
        if host.is_empty() || host == "[]" {
            return Err(invalid("no host"));
        }
        if path.bytes().any(|b| b <= b' ' || b == 0x7f) || host.bytes().any(|b| b <= b' ' || b == 0x7f) {
            return Err(invalid("whitespace or control characters"));
        }
        let port: u16 = if port.is_empty() { 80 } else { port.parse().map_err(|_| invalid("bad port"))? };
        let host_header = if port == 80 { host.clone() } else { format!("{host}:{port}") };
        Ok(Endpoint { url: url.to_string(), authority: format!("{host}:{port}"), host_header, path: path.into() })
    }
}

/// Export statistics, for the metrics endpoint. All counts are of spans unless named otherwise.
#[derive(Debug, Default)]
pub struct ExportCounters {
    exported: AtomicU64,
    dropped: AtomicU64,
    failed: AtomicU64,
    export_failures: AtomicU64,
    retries: AtomicU64,
}

impl ExportCounters {
    /// Spans the collector accepted.
    pub fn spans_exported(&self) -> u64 {
        self.exported.load(Ordering::Relaxed)
    }
    /// Spans dropped before export: queue full, or still queued when shutdown ran out of time.
    pub fn spans_dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
    /// Spans lost in failed exports (after the last retry) or rejected by the collector.
    pub fn spans_failed(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }
    /// Export requests (batches) that failed after the last retry.
    pub fn export_failures(&self) -> u64 {
        self.export_failures.load(Ordering::Relaxed)
    }
    /// Retried export attempts.
    pub fn export_retries(&self) -> u64 {
        self.retries.load(Ordering::Relaxed)
    }
}

/// Everything the exporter thread needs, taken from `TracingConfig` by the `Tracer`.
#[derive(Debug, Clone)]
pub struct ExporterSettings {
    pub endpoint: Endpoint,
    pub headers: Vec<(String, String)>,
    pub preamble: Preamble,
    pub max_batch: usize,
    pub max_queue: usize,
    pub schedule_delay: Duration,
    pub export_timeout: Duration,
    pub max_retries: u32,
    pub initial_backoff: Duration,
}

const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// A collector's `Retry-After` is honoured up to this.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(30);

#[derive(Debug, Default)]
struct Queue {
    spans: VecDeque<SpanRecord>,
    /// Spans ever queued, and spans whose export has finished (either way): flushes wait on these.
    pushed: u64,
    settled: u64,
    /// Highest `pushed` value a flush is waiting for.
    flush_target: u64,
    shutdown_deadline: Option<Instant>,
    /// Spans still queued when the shutdown deadline passed.
    shutdown_dropped: u64,
    stopped: bool,
}

#[derive(Debug)]
struct Shared {
    q: Mutex<Queue>,
    /// Wakes the exporter thread (batch full, flush, shutdown).
    wake: Condvar,
    /// Wakes flushers (progress made, or stopped).
    progress: Condvar,
    counters: ExportCounters,
    max_batch: usize,
    max_queue: usize,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        // A panic elsewhere while holding the lock leaves plain data behind: keep using it.
        self.q.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The queue and its exporter thread. Dropping it shuts down with a short flush.
#[derive(Debug)]
pub struct Exporter {
    shared: Arc<Shared>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Exporter {
    pub fn start(settings: ExporterSettings) -> Result<Exporter, TraceError> {
        let shared = Arc::new(Shared {
            q: Mutex::new(Queue::default()),
            wake: Condvar::new(),
            progress: Condvar::new(),
            counters: ExportCounters::default(),
            max_batch: settings.max_batch.max(1),
            max_queue: settings.max_queue.max(1),
        });
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name("gatehouse-otlp".into())
            .spawn(move || run(s, settings))
            .map_err(TraceError::Spawn)?;
        Ok(Exporter { shared, thread: Mutex::new(Some(thread)) })
    }

    /// Queues a finished span. Never blocks on I/O; drops (and counts) when the queue is full.
    pub fn enqueue(&self, span: SpanRecord) {
        let sh = &self.shared;
        let mut q = sh.lock();
        if q.spans.len() >= sh.max_queue || q.shutdown_deadline.is_some() {
            drop(q);
            sh.counters.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        q.spans.push_back(span);
        q.pushed += 1;
        // Wake the thread only when a batch is ready: one notify per batch, not per span.
        let full = q.spans.len() == sh.max_batch;
        drop(q);
        if full {
            sh.wake.notify_one();
        }
    }

    pub fn counters(&self) -> &ExportCounters {
        &self.shared.counters
    }

    /// Spans waiting in the queue.
    pub fn queued(&self) -> usize {
        self.shared.lock().spans.len()
    }

    /// Exports everything queued before this call; returns whether that finished within `timeout`
    /// (spans not sent in time stay queued and go out later).
    pub fn flush(&self, timeout: Duration) -> bool {
        let sh = &self.shared;
        let deadline = Instant::now() + timeout;
        let mut q = sh.lock();
        let target = q.pushed;
        q.flush_target = q.flush_target.max(target);
        sh.wake.notify_one();
        while q.settled < target && !q.stopped {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            q = sh.progress.wait_timeout(q, deadline - now).unwrap_or_else(|p| p.into_inner()).0;
        }
        q.settled >= target
    }

    /// Stops accepting spans, exports what is queued within `timeout` (dropping the rest, counted)
    /// and stops the thread. Returns whether everything queued was sent (or failed for good) in
    /// time, rather than dropped at the deadline. Idempotent.
    pub fn shutdown(&self, timeout: Duration) -> bool {
        let sh = &self.shared;
        let deadline = Instant::now() + timeout;
        {
            let mut q = sh.lock();
            if q.shutdown_deadline.is_none() {
                q.shutdown_deadline = Some(deadline);
            }
            sh.wake.notify_one();
            while !q.stopped {
                let now = Instant::now();
                // A little grace past the deadline: the thread stops itself at it.
                if now >= deadline + Duration::from_millis(200) {
                    return false;
                }
                q = sh
                    .progress
                    .wait_timeout(q, deadline + Duration::from_millis(200) - now)
                    .unwrap_or_else(|p| p.into_inner())
                    .0;
            }
        }
        if let Some(t) = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = t.join();
        }
        let q = sh.lock();
        q.settled == q.pushed && q.shutdown_dropped == 0
    }
}

impl Exporter {
    /// Starts a shutdown with `timeout` and returns at once: the thread exports what is queued
    /// (until the deadline) and exits by itself. For places that must not block.
    pub fn shutdown_in_background(&self, timeout: Duration) {
        let mut q = self.shared.lock();
        if q.shutdown_deadline.is_none() {
            q.shutdown_deadline = Some(Instant::now() + timeout);
        }
        drop(q);
        self.shared.wake.notify_one();
    }
}

impl Drop for Exporter {
    /// Never blocks: the last owner may be a worker thread finishing a span.
    fn drop(&mut self) {
        self.shutdown_in_background(DROP_FLUSH);
    }
}

/// How long a dropped exporter's thread keeps sending what was queued.
const DROP_FLUSH: Duration = Duration::from_secs(5);

fn run(sh: Arc<Shared>, settings: ExporterSettings) {
    let mut client = Client::new(&settings);
    let mut next_send = Instant::now() + settings.schedule_delay;
    loop {
        let (batch, shutdown_deadline) = {
            let mut q = sh.lock();
            loop {
                let ready = q.spans.len() >= sh.max_batch
                    || q.flush_target > q.settled
                    || q.shutdown_deadline.is_some()
                    || Instant::now() >= next_send;
                if ready {
                    break;
                }
                let wait = next_send.saturating_duration_since(Instant::now());
                q = sh.wake.wait_timeout(q, wait).unwrap_or_else(|p| p.into_inner()).0;
            }
            if let Some(d) = q.shutdown_deadline {
                if q.spans.is_empty() || Instant::now() >= d {
                    let left = q.spans.len() as u64;
                    q.spans.clear();
                    q.settled += left;
                    q.shutdown_dropped = left;
                    q.stopped = true;
                    drop(q);
                    sh.counters.dropped.fetch_add(left, Ordering::Relaxed);
                    sh.progress.notify_all();
                    return;
                }
            }
            let n = q.spans.len().min(sh.max_batch);
            let batch: Vec<SpanRecord> = q.spans.drain(..n).collect();
            (batch, q.shutdown_deadline)
        };
        if !batch.is_empty() {
            client.export(&batch, &sh.counters, shutdown_deadline);
        }
        next_send = Instant::now() + settings.schedule_delay;
        sh.lock().settled += batch.len() as u64;
        sh.progress.notify_all();
    }
}

/// The result of one POST.
enum Outcome {
    Accepted { rejected: u64 },
    Retry { after: Option<Duration>, why: String },
    Fail(String),
}

struct Client {
    endpoint: Endpoint,
    head_tail: String,
    preamble: Preamble,
    timeout: Duration,
    max_retries: u32,
    initial_backoff: Duration,
    conn: Option<TcpStream>,
}

impl Client {
    fn new(s: &ExporterSettings) -> Client {
        // Everything after the request line and Host except Content-Length, built once.
        let mut head_tail =
            format!("Content-Type: application/x-protobuf\r\nUser-Agent: gatehouse/{}\r\n", env!("CARGO_PKG_VERSION"));
        for (k, v) in &s.headers {
            head_tail.push_str(&format!("{k}: {v}\r\n"));
        }
        Client {
            endpoint: s.endpoint.clone(),
            head_tail,
            preamble: s.preamble.clone(),
            timeout: s.export_timeout,
            max_retries: s.max_retries,
            initial_backoff: s.initial_backoff,
            conn: None,
        }
    }

    fn export(&mut self, spans: &[SpanRecord], c: &ExportCounters, deadline: Option<Instant>) {
        let body = encode_request(&self.preamble, spans);
        let n = spans.len() as u64;
        let mut attempt = 0u32;
        loop {
            let (after, why) = match self.post(&body) {
                Outcome::Accepted { rejected } => {
                    let rejected = rejected.min(n);
                    c.exported.fetch_add(n - rejected, Ordering::Relaxed);
                    if rejected > 0 {
                        c.failed.fetch_add(rejected, Ordering::Relaxed);
                        tracing::warn!(rejected, endpoint = %self.endpoint.url, "collector rejected some spans");
                    }
                    return;
                }
                Outcome::Fail(why) => {
                    self.fail(c, n, &why);
                    return;
                }
                Outcome::Retry { after, why } => (after, why),
            };
            let backoff = after.map(|a| a.min(MAX_RETRY_AFTER)).unwrap_or_else(|| self.backoff(attempt));
            let in_time = deadline.is_none_or(|d| Instant::now() + backoff < d);
            if attempt >= self.max_retries || !in_time {
                self.fail(c, n, &why);
                return;
            }
            attempt += 1;
            c.retries.fetch_add(1, Ordering::Relaxed);
            std::thread::sleep(backoff);
        }
    }

    fn fail(&self, c: &ExportCounters, n: u64, why: &str) {
        c.export_failures.fetch_add(1, Ordering::Relaxed);
        c.failed.fetch_add(n, Ordering::Relaxed);
        tracing::warn!(spans = n, endpoint = %self.endpoint.url, error = why, "span export failed");
    }

    /// Exponential backoff with jitter (50–100 % of the step), so many gateways do not retry in step.
    fn backoff(&self, attempt: u32) -> Duration {
        let step = self.initial_backoff.saturating_mul(1u32 << attempt.min(16)).min(MAX_BACKOFF);
        let jitter = (super::sampler::new_span_id()[0] as u32 * 50 / 255) + 50;
        step * jitter / 100
    }

    fn post(&mut self, body: &[u8]) -> Outcome {
        let mut head = format!(
            "POST {} HTTP/1.1\r\nHost: {}\r\n{}Content-Length: {}\r\n\r\n",
            self.endpoint.path,
            self.endpoint.host_header,
            self.head_tail,
            body.len()
        );
        head.reserve(body.len());
        let mut req = head.into_bytes();
        req.extend_from_slice(body);
        // A kept-alive connection may have been closed by the collector while idle: one fresh
        // attempt before the failure counts (the request cannot have been processed if the read
        // found the connection closed before any answer).
        let reused = self.conn.is_some();
        let mut result = self.round_trip(&req);
        if reused && matches!(&result, Err(RtError::Stale)) {
            result = self.round_trip(&req);
        }
        match result {
            Ok(r) => classify(r),
            Err(e) => {
                self.conn = None;
                Outcome::Retry { after: None, why: e.to_string() }
            }
        }
    }

    fn round_trip(&mut self, req: &[u8]) -> Result<Response, RtError> {
        let mut stream = match self.conn.take() {
            Some(s) => s,
            None => self.connect()?,
        };
        stream.write_all(req).map_err(RtError::Io)?;
        let resp = read_response(&mut stream)?;
        if resp.keep_alive {
            self.conn = Some(stream);
        }
        Ok(resp)
    }

    fn connect(&self) -> Result<TcpStream, RtError> {
        let addrs = self.endpoint.authority.to_socket_addrs().map_err(RtError::Resolve)?;
        let mut last = None;
        for addr in addrs {
            match TcpStream::connect_timeout(&addr, self.timeout) {
                Ok(s) => {
                    let _ = s.set_nodelay(true);
                    s.set_read_timeout(Some(self.timeout)).map_err(RtError::Io)?;
                    s.set_write_timeout(Some(self.timeout)).map_err(RtError::Io)?;
                    return Ok(s);
                }
                Err(e) => last = Some(e),
            }
        }
        Err(RtError::Connect(last.unwrap_or_else(|| std::io::Error::other("no address"))))
    }
}

fn classify(r: Response) -> Outcome {
    match r.status {
        200..=299 => Outcome::Accepted { rejected: read_partial_success(&r.body).map_or(0, |(rejected, _)| rejected) },
        429 | 502 | 503 | 504 => Outcome::Retry { after: r.retry_after, why: format!("HTTP {}", r.status) },
        s => Outcome::Fail(format!("HTTP {s}: {}", String::from_utf8_lossy(&r.body[..r.body.len().min(200)]))),
    }
}

#[derive(Debug, thiserror::Error)]
enum RtError {
    #[error("cannot resolve the collector: {0}")]
    Resolve(#[source] std::io::Error),
    #[error("cannot connect to the collector: {0}")]
    Connect(#[source] std::io::Error),
    #[error("collector connection closed before an answer")]
    Stale,
    #[error("I/O with the collector: {0}")]
    Io(#[source] std::io::Error),
    #[error("malformed answer from the collector: {0}")]
    Malformed(&'static str),
}

#[derive(Debug)]
struct Response {
    status: u16,
    retry_after: Option<Duration>,
    body: Vec<u8>,
    keep_alive: bool,
}

const MAX_HEAD: usize = 16 * 1024;
const MAX_BODY: usize = 1024 * 1024;

fn read_response(s: &mut TcpStream) -> Result<Response, RtError> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    let mut read_more = |s: &mut TcpStream, buf: &mut Vec<u8>| -> Result<usize, RtError> {
        let n = s.read(&mut chunk).map_err(RtError::Io)?;
        buf.extend_from_slice(&chunk[..n]);
        Ok(n)
    };
    loop {
        let (head_len, status, length, chunked, close, retry_after) = {
            let mut headers = [httparse::EMPTY_HEADER; 64];
            let mut r = httparse::Response::new(&mut headers);
            match r.parse(&buf) {
                Ok(httparse::Status::Complete(len)) => {
                    let status = r.code.unwrap_or(0);
                    let mut length = None;
                    let (mut chunked, mut close, mut retry_after) = (false, r.version == Some(0), None);
                    for h in r.headers.iter() {
                        let v = String::from_utf8_lossy(h.value);
                        let v = v.trim();
                        if h.name.eq_ignore_ascii_case("content-length") {
                            length = Some(v.parse::<usize>().map_err(|_| RtError::Malformed("content-length"))?);
                        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                            chunked = v.to_ascii_lowercase().contains("chunked");
                        } else if h.name.eq_ignore_ascii_case("connection") {
                            close = v.eq_ignore_ascii_case("close");
                        } else if h.name.eq_ignore_ascii_case("retry-after") {
                            retry_after = v.parse::<u64>().ok().map(Duration::from_secs);
                        }
                    }
                    (len, status, length, chunked, close, retry_after)
                }
                Ok(httparse::Status::Partial) => {
                    if buf.len() > MAX_HEAD {
                        return Err(RtError::Malformed("header too large"));
                    }
                    let empty = buf.is_empty();
                    if read_more(s, &mut buf)? == 0 {
                        return Err(if empty { RtError::Stale } else { RtError::Malformed("truncated header") });
                    }
                    continue;
                }
                Err(_) => return Err(RtError::Malformed("status line or header")),
            }
        };
        if (100..200).contains(&status) {
            // An interim answer (e.g. 100 Continue): skip it and read the final one.
            buf.drain(..head_len);
            continue;
        }
        let mut body_buf = buf.split_off(head_len);
        let (body, keep_alive) = if status == 204 || status == 304 {
            (Vec::new(), !close)
        } else if chunked {
            loop {
                if let Some(body) = decode_chunked(&body_buf)? {
                    break (body, !close);
                }
                if body_buf.len() > MAX_BODY || read_more(s, &mut body_buf)? == 0 {
                    return Err(RtError::Malformed("truncated chunked body"));
                }
            }
        } else if let Some(len) = length {
            if len > MAX_BODY {
                return Err(RtError::Malformed("body too large"));
            }
            while body_buf.len() < len {
                if read_more(s, &mut body_buf)? == 0 {
                    return Err(RtError::Malformed("truncated body"));
                }
            }
            body_buf.truncate(len);
            (body_buf, !close)
        } else {
            // Delimited by close.
            while read_more(s, &mut body_buf)? != 0 {
                if body_buf.len() > MAX_BODY {
                    return Err(RtError::Malformed("body too large"));
                }
            }
            (body_buf, false)
        };
        return Ok(Response { status, retry_after, body, keep_alive });
    }
}

/// The body of a complete chunked message, or `None` if more bytes are needed.
fn decode_chunked(mut b: &[u8]) -> Result<Option<Vec<u8>>, RtError> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = b.windows(2).position(|w| w == b"\r\n") else { return Ok(None) };
        let line = std::str::from_utf8(&b[..eol]).map_err(|_| RtError::Malformed("chunk size"))?;
        let size_hex = line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_hex, 16).map_err(|_| RtError::Malformed("chunk size"))?;
        b = &b[eol + 2..];
        if size == 0 {
            // Trailers end with an empty line.
            return Ok(b.windows(2).position(|w| w == b"\r\n").map(|_| out));
        }
        if size > MAX_BODY || b.len() < size + 2 {
            return if size > MAX_BODY { Err(RtError::Malformed("chunk too large")) } else { Ok(None) };
        }
        out.extend_from_slice(&b[..size]);
        b = &b[size + 2..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() {
        let e = Endpoint::parse("http://collector:4318/v1/traces").expect("ok");
        assert_eq!(
            (e.authority.as_str(), e.host_header.as_str(), e.path.as_str()),
            ("collector:4318", "collector:4318", "/v1/traces")
        );
        let e = Endpoint::parse("http://[::1]:9/x?y").expect("ok");
        assert_eq!((e.authority.as_str(), e.path.as_str()), ("[::1]:9", "/x?y"));
        let e = Endpoint::parse("HTTP://h").expect("ok");
        assert_eq!((e.authority.as_str(), e.host_header.as_str(), e.path.as_str()), ("h:80", "h", "/"));
        assert!(matches!(Endpoint::parse("https://h:4318/v1/traces"), Err(TraceError::HttpsUnsupported(_))));
        for bad in ["ftp://h", "http://", "http://h:x/", "http://u:p@h/", "http://h/a b", "http://[::1/"] {
            assert!(matches!(Endpoint::parse(bad), Err(TraceError::InvalidEndpoint { .. })), "{bad}");
        }
    }

    #[test]
    fn chunked_bodies() {
        assert_eq!(decode_chunked(b"3\r\nabc\r\n0\r\n\r\n").expect("ok"), Some(b"abc".to_vec()));
        assert_eq!(decode_chunked(b"3\r\nabc\r\n0\r\n").expect("ok"), None);
        assert_eq!(decode_chunked(b"3\r\nab").expect("ok"), None);
        assert!(decode_chunked(b"zz\r\n").is_err());
    }

    #[test]
    fn full_queue_drops_and_counts_without_blocking() {
        // Nothing listens on the endpoint and the schedule is long: spans only pile up.
        let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("port").port();
        let ex = Exporter::start(ExporterSettings {
            endpoint: Endpoint::parse(&format!("http://127.0.0.1:{port}/v1/traces")).expect("ok"),
            headers: vec![],
            preamble: Preamble::new(&[], "t", "0"),
            max_batch: 100,
            max_queue: 4,
            schedule_delay: Duration::from_secs(60),
            export_timeout: Duration::from_millis(200),
            max_retries: 0,
            initial_backoff: Duration::from_millis(1),
        })
        .expect("starts");
        let started = Instant::now();
        for _ in 0..10 {
            ex.enqueue(crate::trace::tests_support::span());
        }
        assert!(started.elapsed() < Duration::from_millis(100));
        assert_eq!(ex.queued(), 4);
        assert_eq!(ex.counters().spans_dropped(), 6);
        assert!(ex.flush(Duration::from_secs(5)), "a flush settles (here: by failing) what was queued");
        assert_eq!((ex.counters().export_failures(), ex.counters().spans_failed()), (1, 4));
        assert!(ex.shutdown(Duration::from_secs(1)));
        ex.enqueue(crate::trace::tests_support::span());
        assert_eq!(ex.counters().spans_dropped(), 7, "spans after shutdown are dropped");
    }
}
