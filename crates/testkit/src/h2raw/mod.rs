//! A raw HTTP/2 client for security tests (RFC 9113, RFC 7541), written by hand so a test can
//! send what no real client would: upper-case or CR/LF/NUL-carrying field names and values,
//! connection-specific fields, pseudo-header errors, `content-length` that disagrees with the
//! DATA frames, and floods (rapid reset, endless CONTINUATION).
//!
//! - Framing: [`H2Conn`] sends the connection preface and SETTINGS, ACKs the server's SETTINGS
//!   and PINGs, replenishes the flow-control windows for every DATA frame it receives, and sends
//!   any frame (`send_frame`, plus HEADERS/CONTINUATION/DATA/RST_STREAM/WINDOW_UPDATE/PING
//!   helpers). It never enforces a rule on what it sends: that is the point.
//! - Encoding: [`encode_block`] emits every field as "literal without indexing, new name, no
//!   Huffman" (RFC 7541 §6.2.2), so any byte string goes out as given and the server's dynamic
//!   table never changes (a skipped header block cannot desynchronise the two sides).
//! - Decoding: [`Decoder`] is a complete HPACK decoder (static and dynamic tables, size
//!   updates, Huffman) so responses can be read, `:status` first. It is checked below against
//!   the examples of RFC 7541 Appendix C.
//! - Reading: [`H2Conn::collect`] reads frames until the given streams ended (END_STREAM or
//!   RST_STREAM), the connection went away (GOAWAY, EOF, reset) or a deadline passed, and
//!   records per stream what happened ([`StreamResult`]) and per connection the GOAWAY and
//!   whether it closed. Every wait is bounded.
//!
//! Invariants: frames larger than the default SETTINGS_MAX_FRAME_SIZE (16,384) are never
//! advertised as acceptable, so a frame the server sends is at most that; send-side flow control
//! is not tracked (tests send small bodies); a write to a closed connection is an `Err`, never a
//! panic, so flood loops can stop when the server hangs up.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// The client connection preface (RFC 9113 §3.4).
pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Frame types (RFC 9113 §6).
pub mod kind {
    pub const DATA: u8 = 0x0;
    pub const HEADERS: u8 = 0x1;
    pub const PRIORITY: u8 = 0x2;
    pub const RST_STREAM: u8 = 0x3;
    pub const SETTINGS: u8 = 0x4;
    pub const PUSH_PROMISE: u8 = 0x5;
    pub const PING: u8 = 0x6;
    pub const GOAWAY: u8 = 0x7;
    pub const WINDOW_UPDATE: u8 = 0x8;
    pub const CONTINUATION: u8 = 0x9;

    /// The frame type's name, for messages.
    pub fn name(k: u8) -> &'static str {
        match k {
            DATA => "DATA",
            HEADERS => "HEADERS",
            PRIORITY => "PRIORITY",
            RST_STREAM => "RST_STREAM",
            SETTINGS => "SETTINGS",
            PUSH_PROMISE => "PUSH_PROMISE",
            PING => "PING",
            GOAWAY => "GOAWAY",
            WINDOW_UPDATE => "WINDOW_UPDATE",
            CONTINUATION => "CONTINUATION",
            _ => "UNKNOWN",
        }
    }
}

/// Frame flags.
pub mod flag {
    pub const END_STREAM: u8 = 0x1;
    pub const ACK: u8 = 0x1;
    pub const END_HEADERS: u8 = 0x4;
    pub const PADDED: u8 = 0x8;
    pub const PRIORITY: u8 = 0x20;
}

/// Error codes (RFC 9113 §7).
pub mod error {
    pub const NO_ERROR: u32 = 0x0;
    pub const PROTOCOL_ERROR: u32 = 0x1;
    pub const INTERNAL_ERROR: u32 = 0x2;
    pub const FLOW_CONTROL_ERROR: u32 = 0x3;
    pub const SETTINGS_TIMEOUT: u32 = 0x4;
    pub const STREAM_CLOSED: u32 = 0x5;
    pub const FRAME_SIZE_ERROR: u32 = 0x6;
    pub const REFUSED_STREAM: u32 = 0x7;
    pub const CANCEL: u32 = 0x8;
    pub const COMPRESSION_ERROR: u32 = 0x9;
    pub const CONNECT_ERROR: u32 = 0xa;
    pub const ENHANCE_YOUR_CALM: u32 = 0xb;
    pub const INADEQUATE_SECURITY: u32 = 0xc;
    pub const HTTP_1_1_REQUIRED: u32 = 0xd;

    /// The error code's name, for messages.
    pub fn name(code: u32) -> &'static str {
        match code {
            NO_ERROR => "NO_ERROR",
            PROTOCOL_ERROR => "PROTOCOL_ERROR",
            INTERNAL_ERROR => "INTERNAL_ERROR",
            FLOW_CONTROL_ERROR => "FLOW_CONTROL_ERROR",
            SETTINGS_TIMEOUT => "SETTINGS_TIMEOUT",
            STREAM_CLOSED => "STREAM_CLOSED",
            FRAME_SIZE_ERROR => "FRAME_SIZE_ERROR",
            REFUSED_STREAM => "REFUSED_STREAM",
            CANCEL => "CANCEL",
            COMPRESSION_ERROR => "COMPRESSION_ERROR",
            CONNECT_ERROR => "CONNECT_ERROR",
            ENHANCE_YOUR_CALM => "ENHANCE_YOUR_CALM",
            INADEQUATE_SECURITY => "INADEQUATE_SECURITY",
            HTTP_1_1_REQUIRED => "HTTP_1_1_REQUIRED",
            _ => "UNKNOWN",
        }
    }
}

/// SETTINGS identifiers (RFC 9113 §6.5.2).
pub mod setting {
    pub const HEADER_TABLE_SIZE: u16 = 0x1;
    pub const ENABLE_PUSH: u16 = 0x2;
    pub const MAX_CONCURRENT_STREAMS: u16 = 0x3;
    pub const INITIAL_WINDOW_SIZE: u16 = 0x4;
    pub const MAX_FRAME_SIZE: u16 = 0x5;
    pub const MAX_HEADER_LIST_SIZE: u16 = 0x6;
}

/// The default (and here the only) SETTINGS_MAX_FRAME_SIZE.
pub const MAX_FRAME: usize = 16_384;

/// One frame as received (or to send).
#[derive(Clone, PartialEq, Eq)]
pub struct Frame {
    pub kind: u8,
    pub flags: u8,
    pub stream: u32,
    pub payload: Vec<u8>,
}

impl std::fmt::Debug for Frame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} stream={} flags={:#x} len={}",
            kind::name(self.kind),
            self.stream,
            self.flags,
            self.payload.len()
        )?;
        if let Some(code) = self.error_code() {
            write!(f, " error={}", error::name(code))?;
        }
        Ok(())
    }
}

impl Frame {
    pub fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }

    /// The error code of a RST_STREAM or GOAWAY frame.
    pub fn error_code(&self) -> Option<u32> {
        let at = match self.kind {
            kind::RST_STREAM => 0,
            kind::GOAWAY => 4,
            _ => return None,
        };
        self.payload.get(at..at + 4).map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// The frame on the wire.
    pub fn encode(&self) -> Vec<u8> {
        frame(self.kind, self.flags, self.stream, &self.payload)
    }
}

/// Encodes one frame: 9-byte header (24-bit length, type, flags, 31-bit stream id) and payload.
pub fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    assert!(payload.len() < 1 << 24, "frame payload too large for the 24-bit length");
    let len = (payload.len() as u32).to_be_bytes();
    let mut out = Vec::with_capacity(9 + payload.len());
    out.extend_from_slice(&len[1..]);
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

mod hpack;

pub use hpack::*;

// ---------------------------------------------------------------------------------------------
// The connection
// ---------------------------------------------------------------------------------------------

/// What happened to one stream.
#[derive(Debug, Clone, Default)]
pub struct StreamResult {
    /// The final response's header block (pseudo-fields included), names and values as lossy
    /// UTF-8.
    pub headers: Vec<(String, String)>,
    /// `:status` of the final response.
    pub status: Option<u16>,
    /// A second header block (trailers), if any.
    pub trailers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The server ended the stream (END_STREAM).
    pub end_stream: bool,
    /// The server reset the stream with this error code.
    pub reset: Option<u32>,
}

impl StreamResult {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// END_STREAM or RST_STREAM received.
    pub fn is_done(&self) -> bool {
        self.end_stream || self.reset.is_some()
    }
}

/// A GOAWAY received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoAway {
    pub last_stream: u32,
    pub code: u32,
    pub debug: Vec<u8>,
}

/// A raw HTTP/2 client connection over any byte stream (TCP for h2c, TLS for h2).
pub struct H2Conn<S = TcpStream> {
    io: S,
    rbuf: Vec<u8>,
    decoder: Decoder,
    next_id: u32,
    /// The server's SETTINGS (id, value), latest value per id.
    pub server_settings: Vec<(u16, u32)>,
    /// The server acknowledged our SETTINGS.
    pub settings_acked: bool,
    /// The first GOAWAY received.
    pub goaway: Option<GoAway>,
    /// The server closed (EOF) or reset the TCP connection.
    pub closed: bool,
    streams: HashMap<u32, StreamResult>,
    /// Header block being assembled: stream, END_STREAM of its HEADERS, fragments so far.
    partial: Option<(u32, bool, Vec<u8>)>,
    trace: Vec<String>,
}

/// Every wait of a single write.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

fn timed_out(what: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::TimedOut, what.to_string())
}

impl H2Conn<TcpStream> {
    /// Connects over plain TCP and speaks h2c with prior knowledge ([`H2Conn::handshake`]).
    pub async fn connect(addr: SocketAddr) -> std::io::Result<H2Conn<TcpStream>> {
        let tcp =
            tokio::time::timeout(WRITE_TIMEOUT, TcpStream::connect(addr)).await.map_err(|_| timed_out("connect"))??;
        tcp.set_nodelay(true)?;
        H2Conn::handshake(tcp).await
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> H2Conn<S> {
    /// Sends the preface and our SETTINGS (push disabled, everything else default), then waits
    /// (up to 5 s) for the server's SETTINGS and acknowledges them.
    pub async fn handshake(io: S) -> std::io::Result<H2Conn<S>> {
        let mut c = H2Conn {
            io,
            rbuf: Vec::new(),
            decoder: Decoder::default(),
            next_id: 1,
            server_settings: Vec::new(),
            settings_acked: false,
            goaway: None,
            closed: false,
            streams: HashMap::new(),
            partial: None,
            trace: Vec::new(),
        };
        let mut hello = PREFACE.to_vec();
        let mut settings = Vec::new();
        settings.extend_from_slice(&setting::ENABLE_PUSH.to_be_bytes());
        settings.extend_from_slice(&0u32.to_be_bytes());
        hello.extend(frame(kind::SETTINGS, 0, 0, &settings));
        c.send_raw(&hello).await?;
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match c.read_one(deadline).await {
                Some(f) if f.kind == kind::SETTINGS && !f.has(flag::ACK) => return Ok(c),
                Some(_) => {}
                None => {
                    return Err(std::io::Error::other(format!(
                        "no SETTINGS from the server (closed: {}); frames: {:?}",
                        c.closed, c.trace
                    )))
                }
            }
        }
    }

    /// The underlying stream (e.g. to read the TLS session's ALPN).
    pub fn io(&self) -> &S {
        &self.io
    }

    /// A value from the server's SETTINGS.
    pub fn setting(&self, id: u16) -> Option<u32> {
        self.server_settings.iter().find(|(k, _)| *k == id).map(|(_, v)| *v)
    }

    /// The next client stream id (1, 3, 5, ...).
    pub fn next_stream(&mut self) -> u32 {
        let id = self.next_id;
        self.next_id += 2;
        id
    }

    /// What happened to `stream` so far.
    pub fn stream(&self, stream: u32) -> StreamResult {
        self.streams.get(&stream).cloned().unwrap_or_default()
    }

    /// The frames and events seen so far (most recent last, at most 500), for failure messages.
    pub fn trace(&self) -> &[String] {
        &self.trace
    }

    fn note(&mut self, s: String) {
        if self.trace.len() < 500 {
            self.trace.push(s);
        }
    }

    /// Writes raw bytes (bounded to 5 s). `Err` once the server has gone.
    pub async fn send_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        tokio::time::timeout(WRITE_TIMEOUT, self.io.write_all(bytes)).await.map_err(|_| timed_out("write"))?
    }

    pub async fn send_frame(&mut self, kind: u8, flags: u8, stream: u32, payload: &[u8]) -> std::io::Result<()> {
        self.send_raw(&frame(kind, flags, stream, payload)).await
    }

    /// The frames of one header block: HEADERS, then CONTINUATIONs when the block is larger than
    /// a frame; END_HEADERS on the last, END_STREAM on the HEADERS when asked.
    pub fn header_frames<N: AsRef<[u8]>, V: AsRef<[u8]>>(stream: u32, fields: &[(N, V)], end_stream: bool) -> Vec<u8> {
        let block = encode_block(fields);
        let chunks: Vec<&[u8]> = if block.is_empty() { vec![&[]] } else { block.chunks(MAX_FRAME).collect() };
        let mut out = Vec::new();
        for (i, c) in chunks.iter().enumerate() {
            let mut flags = if i + 1 == chunks.len() { flag::END_HEADERS } else { 0 };
            if i == 0 && end_stream {
                flags |= flag::END_STREAM;
            }
            out.extend(frame(if i == 0 { kind::HEADERS } else { kind::CONTINUATION }, flags, stream, c));
        }
        out
    }

    /// Sends a header block (see [`H2Conn::header_frames`]) in one write.
    pub async fn headers<N: AsRef<[u8]>, V: AsRef<[u8]>>(
        &mut self,
        stream: u32,
        fields: &[(N, V)],
        end_stream: bool,
    ) -> std::io::Result<()> {
        self.send_raw(&Self::header_frames(stream, fields, end_stream)).await
    }

    /// Sends `data` as DATA frames of at most 16 KiB, END_STREAM on the last when asked.
    pub async fn data(&mut self, stream: u32, data: &[u8], end_stream: bool) -> std::io::Result<()> {
        let chunks: Vec<&[u8]> = if data.is_empty() { vec![&[]] } else { data.chunks(MAX_FRAME).collect() };
        let mut out = Vec::new();
        for (i, c) in chunks.iter().enumerate() {
            let flags = if end_stream && i + 1 == chunks.len() { flag::END_STREAM } else { 0 };
            out.extend(frame(kind::DATA, flags, stream, c));
        }
        self.send_raw(&out).await
    }

    pub async fn rst(&mut self, stream: u32, code: u32) -> std::io::Result<()> {
        self.send_frame(kind::RST_STREAM, 0, stream, &code.to_be_bytes()).await
    }

    pub async fn window_update(&mut self, stream: u32, increment: u32) -> std::io::Result<()> {
        self.send_frame(kind::WINDOW_UPDATE, 0, stream, &increment.to_be_bytes()).await
    }

    pub async fn ping(&mut self, data: [u8; 8]) -> std::io::Result<()> {
        self.send_frame(kind::PING, 0, 0, &data).await
    }

    /// A request on a new stream: the header block, then `body` (END_STREAM on the HEADERS when
    /// the body is empty). Returns the stream id.
    pub async fn request<N: AsRef<[u8]>, V: AsRef<[u8]>>(
        &mut self,
        fields: &[(N, V)],
        body: &[u8],
    ) -> std::io::Result<u32> {
        let id = self.next_stream();
        let mut out = Self::header_frames(id, fields, body.is_empty());
        if !body.is_empty() {
            for (i, c) in body.chunks(MAX_FRAME).enumerate() {
                let last = (i + 1) * MAX_FRAME >= body.len();
                out.extend(frame(kind::DATA, if last { flag::END_STREAM } else { 0 }, id, c));
            }
        }
        self.send_raw(&out).await?;
        Ok(id)
    }

    /// Reads until `stream` is done (see [`H2Conn::collect`]) and returns what happened to it.
    pub async fn response(&mut self, stream: u32, timeout: Duration) -> StreamResult {
        self.collect(&[stream], timeout).await;
        self.stream(stream)
    }

    /// Reads frames until every stream in `ids` is done (END_STREAM or RST_STREAM), or will never
    /// be (a GOAWAY whose last stream id is below it, or the connection closed), or `timeout`
    /// passes.
    pub async fn collect(&mut self, ids: &[u32], timeout: Duration) -> HashMap<u32, StreamResult> {
        let deadline = Instant::now() + timeout;
        loop {
            let pending = ids.iter().any(|id| {
                let done = self.streams.get(id).is_some_and(|s| s.is_done());
                let abandoned = self.goaway.as_ref().is_some_and(|g| g.last_stream < *id);
                !done && !abandoned
            });
            if !pending || self.closed || self.read_one(deadline).await.is_none() {
                break;
            }
        }
        ids.iter().map(|id| (*id, self.stream(*id))).collect()
    }

    /// The next frame (already processed: SETTINGS and PING acknowledged, stream results
    /// recorded), or `None` when the connection closed or `timeout` passed.
    pub async fn read_frame(&mut self, timeout: Duration) -> Option<Frame> {
        self.read_one(Instant::now() + timeout).await
    }

    /// Processes every frame that can be read without waiting (for flood loops).
    pub async fn poll_now(&mut self) {
        while self.read_one(Instant::now()).await.is_some() {}
    }

    /// Reads (and processes) frames until the server closes the connection or `timeout` passes;
    /// returns whether it closed.
    pub async fn wait_closed(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while !self.closed && self.read_one(deadline).await.is_some() {}
        self.closed
    }

    async fn read_one(&mut self, deadline: Instant) -> Option<Frame> {
        loop {
            if let Some(f) = self.parse_buffered() {
                self.process(&f).await;
                return Some(f);
            }
            if self.closed {
                return None;
            }
            let mut tmp = [0u8; 32 * 1024];
            // `read` is cancel-safe: nothing is lost when the deadline wins.
            match tokio::time::timeout_at(deadline, self.io.read(&mut tmp)).await {
                Err(_) => return None,
                Ok(Ok(0)) => {
                    self.closed = true;
                    self.note("EOF".into());
                }
                Ok(Err(e)) => {
                    self.closed = true;
                    self.note(format!("read error: {e}"));
                }
                Ok(Ok(n)) => self.rbuf.extend_from_slice(&tmp[..n]),
            }
        }
    }

    fn parse_buffered(&mut self) -> Option<Frame> {
        if self.rbuf.len() < 9 {
            return None;
        }
        let len = u32::from_be_bytes([0, self.rbuf[0], self.rbuf[1], self.rbuf[2]]) as usize;
        if self.rbuf.len() < 9 + len {
            return None;
        }
        let h = &self.rbuf[..9];
        let f = Frame {
            kind: h[3],
            flags: h[4],
            stream: u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff,
            payload: self.rbuf[9..9 + len].to_vec(),
        };
        self.rbuf.drain(..9 + len);
        Some(f)
    }

    async fn process(&mut self, f: &Frame) {
        self.note(format!("{f:?}"));
        match f.kind {
            kind::SETTINGS if f.has(flag::ACK) => self.settings_acked = true,
            kind::SETTINGS => {
                for e in f.payload.chunks_exact(6) {
                    let id = u16::from_be_bytes([e[0], e[1]]);
                    let v = u32::from_be_bytes([e[2], e[3], e[4], e[5]]);
                    self.server_settings.retain(|(k, _)| *k != id);
                    self.server_settings.push((id, v));
                }
                let _ = self.send_frame(kind::SETTINGS, flag::ACK, 0, &[]).await;
            }
            kind::PING if !f.has(flag::ACK) => {
                let _ = self.send_frame(kind::PING, flag::ACK, 0, &f.payload).await;
            }
            kind::GOAWAY if f.payload.len() >= 8 && self.goaway.is_none() => {
                let p = &f.payload;
                self.goaway = Some(GoAway {
                    last_stream: u32::from_be_bytes([p[0], p[1], p[2], p[3]]) & 0x7fff_ffff,
                    code: f.error_code().unwrap_or(0),
                    debug: p[8..].to_vec(),
                });
            }
            kind::RST_STREAM => {
                self.streams.entry(f.stream).or_default().reset = f.error_code();
            }
            kind::HEADERS => {
                let Some(mut frag) = strip_padding(f) else { return };
                if f.has(flag::PRIORITY) {
                    frag = frag.get(5..).unwrap_or_default();
                }
                let block = frag.to_vec();
                if f.has(flag::END_HEADERS) {
                    self.header_block(f.stream, f.has(flag::END_STREAM), &block);
                } else {
                    self.partial = Some((f.stream, f.has(flag::END_STREAM), block));
                }
            }
            kind::CONTINUATION => {
                if let Some((_, _, block)) = self.partial.as_mut() {
                    block.extend_from_slice(&f.payload);
                }
                if f.has(flag::END_HEADERS) {
                    if let Some((stream, end, block)) = self.partial.take() {
                        self.header_block(stream, end, &block);
                    }
                }
            }
            kind::DATA => {
                let Some(data) = strip_padding(f) else { return };
                let s = self.streams.entry(f.stream).or_default();
                s.body.extend_from_slice(data);
                s.end_stream |= f.has(flag::END_STREAM);
                // Give back what the whole frame used (padding included) on the connection, and
                // on the stream while it is still open.
                let used = f.payload.len() as u32;
                if used > 0 {
                    let _ = self.window_update(0, used).await;
                    if !f.has(flag::END_STREAM) {
                        let _ = self.window_update(f.stream, used).await;
                    }
                }
            }
            _ => {}
        }
    }

    fn header_block(&mut self, stream: u32, end_stream: bool, block: &[u8]) {
        let fields: Vec<(String, String)> = match self.decoder.decode(block) {
            Ok(fields) => fields
                .into_iter()
                .map(|(n, v)| (String::from_utf8_lossy(&n).into_owned(), String::from_utf8_lossy(&v).into_owned()))
                .collect(),
            Err(e) => {
                self.note(format!("HPACK decoding failed on stream {stream}: {e}"));
                vec![("x-h2raw-decode-error".into(), e)]
            }
        };
        let status = fields.iter().find(|(k, _)| k == ":status").and_then(|(_, v)| v.parse::<u16>().ok());
        self.note(format!("  stream {stream} header block: {fields:?}"));
        let s = self.streams.entry(stream).or_default();
        if s.status.is_none_or(|st| (100..200).contains(&st)) {
            s.headers = fields;
            s.status = status;
        } else {
            s.trailers = fields;
        }
        s.end_stream |= end_stream;
    }
}

/// The payload of a DATA or HEADERS frame without its padding (`None` if the padding is invalid).
fn strip_padding(f: &Frame) -> Option<&[u8]> {
    if !f.has(flag::PADDED) {
        return Some(&f.payload);
    }
    let pad = usize::from(*f.payload.first()?);
    f.payload.len().checked_sub(1 + pad).map(|end| &f.payload[1..1 + end])
}

/// Connects with TLS, offering `alpn` (e.g. `[b"h2", b"http/1.1"]`) and verifying the server
/// as `server_name` against the PEM CA bundle `ca`. The caller reads the negotiated protocol
/// (`stream.get_ref().1.alpn_protocol()`) and then calls [`H2Conn::handshake`].
pub async fn tls_connect(
    addr: SocketAddr,
    server_name: &str,
    ca: &Path,
    alpn: &[&[u8]],
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, ServerName};
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).map_err(std::io::Error::other)? {
        roots.add(c.map_err(std::io::Error::other)?).map_err(std::io::Error::other)?;
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(std::io::Error::other)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let name = ServerName::try_from(server_name.to_string()).map_err(std::io::Error::other)?;
    let tcp =
        tokio::time::timeout(WRITE_TIMEOUT, TcpStream::connect(addr)).await.map_err(|_| timed_out("connect"))??;
    tcp.set_nodelay(true)?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    tokio::time::timeout(WRITE_TIMEOUT, connector.connect(name, tcp)).await.map_err(|_| timed_out("TLS handshake"))?
}
