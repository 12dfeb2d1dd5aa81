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

// ---------------------------------------------------------------------------------------------
// HPACK (RFC 7541)
// ---------------------------------------------------------------------------------------------

/// Appends an HPACK integer (§5.1) with an `n`-bit prefix; `first` holds the bits above it.
pub fn put_int(out: &mut Vec<u8>, first: u8, n: u8, value: usize) {
    let max = (1usize << n) - 1;
    if value < max {
        out.push(first | value as u8);
        return;
    }
    out.push(first | max as u8);
    let mut v = value - max;
    while v >= 128 {
        out.push((v % 128) as u8 | 0x80);
        v /= 128;
    }
    out.push(v as u8);
}

/// A header block where every field is "literal without indexing, new name" with raw (not
/// Huffman) strings (RFC 7541 §6.2.2): names and values go out byte for byte, whatever they hold.
pub fn encode_block<N: AsRef<[u8]>, V: AsRef<[u8]>>(fields: &[(N, V)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (n, v) in fields {
        let (n, v) = (n.as_ref(), v.as_ref());
        out.push(0x00);
        put_int(&mut out, 0x00, 7, n.len());
        out.extend_from_slice(n);
        put_int(&mut out, 0x00, 7, v.len());
        out.extend_from_slice(v);
    }
    out
}

/// The HPACK static table (RFC 7541 Appendix A), index 1 first.
const STATIC: [(&str, &str); 61] = [
    (":authority", ""),
    (":method", "GET"),
    (":method", "POST"),
    (":path", "/"),
    (":path", "/index.html"),
    (":scheme", "http"),
    (":scheme", "https"),
    (":status", "200"),
    (":status", "204"),
    (":status", "206"),
    (":status", "304"),
    (":status", "400"),
    (":status", "404"),
    (":status", "500"),
    ("accept-charset", ""),
    ("accept-encoding", "gzip, deflate"),
    ("accept-language", ""),
    ("accept-ranges", ""),
    ("accept", ""),
    ("access-control-allow-origin", ""),
    ("age", ""),
    ("allow", ""),
    ("authorization", ""),
    ("cache-control", ""),
    ("content-disposition", ""),
    ("content-encoding", ""),
    ("content-language", ""),
    ("content-length", ""),
    ("content-location", ""),
    ("content-range", ""),
    ("content-type", ""),
    ("cookie", ""),
    ("date", ""),
    ("etag", ""),
    ("expect", ""),
    ("expires", ""),
    ("from", ""),
    ("host", ""),
    ("if-match", ""),
    ("if-modified-since", ""),
    ("if-none-match", ""),
    ("if-range", ""),
    ("if-unmodified-since", ""),
    ("last-modified", ""),
    ("link", ""),
    ("location", ""),
    ("max-forwards", ""),
    ("proxy-authenticate", ""),
    ("proxy-authorization", ""),
    ("range", ""),
    ("referer", ""),
    ("refresh", ""),
    ("retry-after", ""),
    ("server", ""),
    ("set-cookie", ""),
    ("strict-transport-security", ""),
    ("transfer-encoding", ""),
    ("user-agent", ""),
    ("vary", ""),
    ("via", ""),
    ("www-authenticate", ""),
];

/// The HPACK Huffman code (RFC 7541 Appendix B): (bit length, code) for symbols 0..=256 (EOS).
const HUFFMAN: [(u8, u32); 257] = [
    (13, 0x1ff8),
    (23, 0x7fffd8),
    (28, 0xfffffe2),
    (28, 0xfffffe3),
    (28, 0xfffffe4),
    (28, 0xfffffe5),
    (28, 0xfffffe6),
    (28, 0xfffffe7),
    (28, 0xfffffe8),
    (24, 0xffffea),
    (30, 0x3ffffffc),
    (28, 0xfffffe9),
    (28, 0xfffffea),
    (30, 0x3ffffffd),
    (28, 0xfffffeb),
    (28, 0xfffffec),
    (28, 0xfffffed),
    (28, 0xfffffee),
    (28, 0xfffffef),
    (28, 0xffffff0),
    (28, 0xffffff1),
    (28, 0xffffff2),
    (30, 0x3ffffffe),
    (28, 0xffffff3),
    (28, 0xffffff4),
    (28, 0xffffff5),
    (28, 0xffffff6),
    (28, 0xffffff7),
    (28, 0xffffff8),
    (28, 0xffffff9),
    (28, 0xffffffa),
    (28, 0xffffffb),
    (6, 0x14),
    (10, 0x3f8),
    (10, 0x3f9),
    (12, 0xffa),
    (13, 0x1ff9),
    (6, 0x15),
    (8, 0xf8),
    (11, 0x7fa),
    (10, 0x3fa),
    (10, 0x3fb),
    (8, 0xf9),
    (11, 0x7fb),
    (8, 0xfa),
    (6, 0x16),
    (6, 0x17),
    (6, 0x18),
    (5, 0x0),
    (5, 0x1),
    (5, 0x2),
    (6, 0x19),
    (6, 0x1a),
    (6, 0x1b),
    (6, 0x1c),
    (6, 0x1d),
    (6, 0x1e),
    (6, 0x1f),
    (7, 0x5c),
    (8, 0xfb),
    (15, 0x7ffc),
    (6, 0x20),
    (12, 0xffb),
    (10, 0x3fc),
    (13, 0x1ffa),
    (6, 0x21),
    (7, 0x5d),
    (7, 0x5e),
    (7, 0x5f),
    (7, 0x60),
    (7, 0x61),
    (7, 0x62),
    (7, 0x63),
    (7, 0x64),
    (7, 0x65),
    (7, 0x66),
    (7, 0x67),
    (7, 0x68),
    (7, 0x69),
    (7, 0x6a),
    (7, 0x6b),
    (7, 0x6c),
    (7, 0x6d),
    (7, 0x6e),
    (7, 0x6f),
    (7, 0x70),
    (7, 0x71),
    (7, 0x72),
    (8, 0xfc),
    (7, 0x73),
    (8, 0xfd),
    (13, 0x1ffb),
    (19, 0x7fff0),
    (13, 0x1ffc),
    (14, 0x3ffc),
    (6, 0x22),
    (15, 0x7ffd),
    (5, 0x3),
    (6, 0x23),
    (5, 0x4),
    (6, 0x24),
    (5, 0x5),
    (6, 0x25),
    (6, 0x26),
    (6, 0x27),
    (5, 0x6),
    (7, 0x74),
    (7, 0x75),
    (6, 0x28),
    (6, 0x29),
    (6, 0x2a),
    (5, 0x7),
    (6, 0x2b),
    (7, 0x76),
    (6, 0x2c),
    (5, 0x8),
    (5, 0x9),
    (6, 0x2d),
    (7, 0x77),
    (7, 0x78),
    (7, 0x79),
    (7, 0x7a),
    (7, 0x7b),
    (15, 0x7ffe),
    (11, 0x7fc),
    (14, 0x3ffd),
    (13, 0x1ffd),
    (28, 0xffffffc),
    (20, 0xfffe6),
    (22, 0x3fffd2),
    (20, 0xfffe7),
    (20, 0xfffe8),
    (22, 0x3fffd3),
    (22, 0x3fffd4),
    (22, 0x3fffd5),
    (23, 0x7fffd9),
    (22, 0x3fffd6),
    (23, 0x7fffda),
    (23, 0x7fffdb),
    (23, 0x7fffdc),
    (23, 0x7fffdd),
    (23, 0x7fffde),
    (24, 0xffffeb),
    (23, 0x7fffdf),
    (24, 0xffffec),
    (24, 0xffffed),
    (22, 0x3fffd7),
    (23, 0x7fffe0),
    (24, 0xffffee),
    (23, 0x7fffe1),
    (23, 0x7fffe2),
    (23, 0x7fffe3),
    (23, 0x7fffe4),
    (21, 0x1fffdc),
    (22, 0x3fffd8),
    (23, 0x7fffe5),
    (22, 0x3fffd9),
    (23, 0x7fffe6),
    (23, 0x7fffe7),
    (24, 0xffffef),
    (22, 0x3fffda),
    (21, 0x1fffdd),
    (20, 0xfffe9),
    (22, 0x3fffdb),
    (22, 0x3fffdc),
    (23, 0x7fffe8),
    (23, 0x7fffe9),
    (21, 0x1fffde),
    (23, 0x7fffea),
    (22, 0x3fffdd),
    (22, 0x3fffde),
    (24, 0xfffff0),
    (21, 0x1fffdf),
    (22, 0x3fffdf),
    (23, 0x7fffeb),
    (23, 0x7fffec),
    (21, 0x1fffe0),
    (21, 0x1fffe1),
    (22, 0x3fffe0),
    (21, 0x1fffe2),
    (23, 0x7fffed),
    (22, 0x3fffe1),
    (23, 0x7fffee),
    (23, 0x7fffef),
    (20, 0xfffea),
    (22, 0x3fffe2),
    (22, 0x3fffe3),
    (22, 0x3fffe4),
    (23, 0x7ffff0),
    (22, 0x3fffe5),
    (22, 0x3fffe6),
    (23, 0x7ffff1),
    (26, 0x3ffffe0),
    (26, 0x3ffffe1),
    (20, 0xfffeb),
    (19, 0x7fff1),
    (22, 0x3fffe7),
    (23, 0x7ffff2),
    (22, 0x3fffe8),
    (25, 0x1ffffec),
    (26, 0x3ffffe2),
    (26, 0x3ffffe3),
    (26, 0x3ffffe4),
    (27, 0x7ffffde),
    (27, 0x7ffffdf),
    (26, 0x3ffffe5),
    (24, 0xfffff1),
    (25, 0x1ffffed),
    (19, 0x7fff2),
    (21, 0x1fffe3),
    (26, 0x3ffffe6),
    (27, 0x7ffffe0),
    (27, 0x7ffffe1),
    (26, 0x3ffffe7),
    (27, 0x7ffffe2),
    (24, 0xfffff2),
    (21, 0x1fffe4),
    (21, 0x1fffe5),
    (26, 0x3ffffe8),
    (26, 0x3ffffe9),
    (28, 0xffffffd),
    (27, 0x7ffffe3),
    (27, 0x7ffffe4),
    (27, 0x7ffffe5),
    (20, 0xfffec),
    (24, 0xfffff3),
    (20, 0xfffed),
    (21, 0x1fffe6),
    (22, 0x3fffe9),
    (21, 0x1fffe7),
    (21, 0x1fffe8),
    (23, 0x7ffff3),
    (22, 0x3fffea),
    (22, 0x3fffeb),
    (25, 0x1ffffee),
    (25, 0x1ffffef),
    (24, 0xfffff4),
    (24, 0xfffff5),
    (26, 0x3ffffea),
    (23, 0x7ffff4),
    (26, 0x3ffffeb),
    (27, 0x7ffffe6),
    (26, 0x3ffffec),
    (26, 0x3ffffed),
    (27, 0x7ffffe7),
    (27, 0x7ffffe8),
    (27, 0x7ffffe9),
    (27, 0x7ffffea),
    (27, 0x7ffffeb),
    (28, 0xffffffe),
    (27, 0x7ffffec),
    (27, 0x7ffffed),
    (27, 0x7ffffee),
    (27, 0x7ffffef),
    (27, 0x7fffff0),
    (26, 0x3ffffee),
    (30, 0x3fffffff),
];

/// Decodes a Huffman-coded string (RFC 7541 §5.2): padding must be at most 7 one-bits, EOS
/// never appears.
pub fn huffman_decode(src: &[u8]) -> Result<Vec<u8>, String> {
    static CODES: std::sync::OnceLock<HashMap<(u8, u32), u16>> = std::sync::OnceLock::new();
    let codes =
        CODES.get_or_init(|| HUFFMAN.iter().enumerate().map(|(sym, &(len, code))| ((len, code), sym as u16)).collect());
    let mut out = Vec::with_capacity(src.len() * 8 / 5);
    let (mut code, mut len) = (0u32, 0u8);
    for byte in src {
        for i in (0..8).rev() {
            code = (code << 1) | u32::from((byte >> i) & 1);
            len += 1;
            match codes.get(&(len, code)) {
                Some(256) => return Err("EOS in a Huffman string".into()),
                Some(&sym) => {
                    out.push(sym as u8);
                    (code, len) = (0, 0);
                }
                None if len >= 30 => return Err("invalid Huffman code".into()),
                None => {}
            }
        }
    }
    if len > 7 || code != (1u32 << len) - 1 {
        return Err("invalid Huffman padding".into());
    }
    Ok(out)
}

/// Decoded header fields, (name, value) in order.
pub type FieldList = Vec<(Vec<u8>, Vec<u8>)>;

/// A complete HPACK decoder: static and dynamic table, size updates, Huffman strings.
#[derive(Debug)]
pub struct Decoder {
    /// Newest first.
    table: std::collections::VecDeque<(Vec<u8>, Vec<u8>)>,
    size: usize,
    max: usize,
    /// SETTINGS_HEADER_TABLE_SIZE we announced (the default): the most a size update may ask.
    limit: usize,
}

impl Default for Decoder {
    fn default() -> Decoder {
        Decoder { table: Default::default(), size: 0, max: 4096, limit: 4096 }
    }
}

fn get_int(b: &[u8], pos: &mut usize, n: u8) -> Result<usize, String> {
    let max = (1usize << n) - 1;
    let first = usize::from(*b.get(*pos).ok_or("truncated integer")?) & max;
    *pos += 1;
    if first < max {
        return Ok(first);
    }
    let (mut v, mut shift) = (max, 0u32);
    loop {
        let byte = *b.get(*pos).ok_or("truncated integer")?;
        *pos += 1;
        v += usize::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(v);
        }
        shift += 7;
        if shift > 28 {
            return Err("integer too large".into());
        }
    }
}

fn get_str(b: &[u8], pos: &mut usize) -> Result<Vec<u8>, String> {
    let huffman = b.get(*pos).ok_or("truncated string")? & 0x80 != 0;
    let len = get_int(b, pos, 7)?;
    let raw = b.get(*pos..*pos + len).ok_or("truncated string")?;
    *pos += len;
    if huffman {
        huffman_decode(raw)
    } else {
        Ok(raw.to_vec())
    }
}

impl Decoder {
    /// Decodes one complete header block into (name, value) pairs, updating the dynamic table.
    pub fn decode(&mut self, b: &[u8]) -> Result<FieldList, String> {
        let mut out = Vec::new();
        let mut pos = 0;
        while pos < b.len() {
            let c = b[pos];
            if c & 0x80 != 0 {
                let idx = get_int(b, &mut pos, 7)?;
                out.push(self.entry(idx)?);
            } else if c & 0x40 != 0 {
                let idx = get_int(b, &mut pos, 6)?;
                let name = if idx == 0 { get_str(b, &mut pos)? } else { self.entry(idx)?.0 };
                let value = get_str(b, &mut pos)?;
                self.insert(name.clone(), value.clone());
                out.push((name, value));
            } else if c & 0x20 != 0 {
                let size = get_int(b, &mut pos, 5)?;
                if size > self.limit {
                    return Err(format!("table size update {size} over {}", self.limit));
                }
                self.max = size;
                self.evict(0);
            } else {
                // Literal without indexing (0000) or never indexed (0001).
                let idx = get_int(b, &mut pos, 4)?;
                let name = if idx == 0 { get_str(b, &mut pos)? } else { self.entry(idx)?.0 };
                let value = get_str(b, &mut pos)?;
                out.push((name, value));
            }
        }
        Ok(out)
    }

    /// Bytes the dynamic table holds (RFC 7541 §4.1).
    pub fn table_size(&self) -> usize {
        self.size
    }

    fn entry(&self, idx: usize) -> Result<(Vec<u8>, Vec<u8>), String> {
        match idx {
            0 => Err("index 0".into()),
            1..=61 => {
                let (n, v) = STATIC[idx - 1];
                Ok((n.as_bytes().to_vec(), v.as_bytes().to_vec()))
            }
            _ => self.table.get(idx - 62).cloned().ok_or_else(|| format!("index {idx} out of the table")),
        }
    }

    fn evict(&mut self, room: usize) {
        while self.size + room > self.max {
            let Some((n, v)) = self.table.pop_back() else { break };
            self.size -= 32 + n.len() + v.len();
        }
    }

    fn insert(&mut self, name: Vec<u8>, value: Vec<u8>) {
        let size = 32 + name.len() + value.len();
        if size > self.max {
            self.table.clear();
            self.size = 0;
            return;
        }
        self.evict(size);
        self.size += size;
        self.table.push_front((name, value));
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex")).collect()
    }

    fn strs(fields: Vec<(Vec<u8>, Vec<u8>)>) -> Vec<(String, String)> {
        fields.into_iter().map(|(n, v)| (String::from_utf8(n).unwrap(), String::from_utf8(v).unwrap())).collect()
    }

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect()
    }

    #[test]
    fn integers_match_rfc7541_c1() {
        let mut out = Vec::new();
        put_int(&mut out, 0, 5, 10);
        put_int(&mut out, 0, 5, 1337);
        put_int(&mut out, 0, 8, 42);
        assert_eq!(out, [0x0a, 0x1f, 0x9a, 0x0a, 0x2a]);
        let mut pos = 0;
        assert_eq!(get_int(&out, &mut pos, 5), Ok(10));
        assert_eq!(get_int(&out, &mut pos, 5), Ok(1337));
        assert_eq!(get_int(&out, &mut pos, 8), Ok(42));
    }

    #[test]
    fn literal_with_indexing_matches_rfc7541_c2_1() {
        let mut d = Decoder::default();
        let got = d.decode(&hex("400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572")).unwrap();
        assert_eq!(strs(got), pairs(&[("custom-key", "custom-header")]));
        assert_eq!(d.table_size(), 55);
    }

    #[test]
    fn huffman_requests_match_rfc7541_c4() {
        let mut d = Decoder::default();
        let c41 = d.decode(&hex("8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff")).unwrap();
        assert_eq!(
            strs(c41),
            pairs(&[(":method", "GET"), (":scheme", "http"), (":path", "/"), (":authority", "www.example.com")])
        );
        let c42 = d.decode(&hex("8286 84be 5886 a8eb 1064 9cbf")).unwrap();
        assert_eq!(
            strs(c42),
            pairs(&[
                (":method", "GET"),
                (":scheme", "http"),
                (":path", "/"),
                (":authority", "www.example.com"),
                ("cache-control", "no-cache"),
            ])
        );
        let c43 = d.decode(&hex("8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf")).unwrap();
        assert_eq!(
            strs(c43),
            pairs(&[
                (":method", "GET"),
                (":scheme", "https"),
                (":path", "/index.html"),
                (":authority", "www.example.com"),
                ("custom-key", "custom-value"),
            ])
        );
        assert_eq!(d.table_size(), 164);
    }

    #[test]
    fn huffman_response_matches_rfc7541_c6_1() {
        let mut d = Decoder::default();
        let got = d
            .decode(&hex(
                "4882 6402 5885 aec3 771a 4b61 96d0 7abe 9410 54d4 44a8 2005 9504 0b81 66e0 82a6 2d1b ff6e 919d 29ad \
                 1718 63c7 8f0b 97c8 e9ae 82ae 43d3",
            ))
            .unwrap();
        assert_eq!(
            strs(got),
            pairs(&[
                (":status", "302"),
                ("cache-control", "private"),
                ("date", "Mon, 21 Oct 2013 20:13:21 GMT"),
                ("location", "https://www.example.com"),
            ])
        );
        assert_eq!(d.table_size(), 222);
    }

    #[test]
    fn huffman_round_trips_every_byte_and_refuses_bad_padding() {
        // Encode with the table directly (code bits, then one-bits up to a byte boundary).
        let input: Vec<u8> = (0..=255u8).chain(b"hello, world".iter().copied()).collect();
        let (mut bits, mut acc, mut n) = (Vec::new(), 0u64, 0u32);
        for &b in &input {
            let (len, code) = HUFFMAN[usize::from(b)];
            acc = (acc << len) | u64::from(code);
            n += u32::from(len);
            while n >= 8 {
                bits.push((acc >> (n - 8)) as u8);
                n -= 8;
            }
        }
        if n > 0 {
            bits.push(((acc << (8 - n)) as u8) | ((1u8 << (8 - n)) - 1));
        }
        assert_eq!(huffman_decode(&bits).unwrap(), input);
        // "a" is 00011 (5 bits): padded with zeros instead of ones is invalid.
        assert!(huffman_decode(&[0b0001_1000]).is_err());
        assert_eq!(huffman_decode(&[0b0001_1111]).unwrap(), b"a");
    }

    #[test]
    fn our_literal_blocks_decode_to_exactly_what_was_given() {
        let fields: Vec<(Vec<u8>, Vec<u8>)> = vec![
            (b":path".to_vec(), b"/a b\r\nX: y".to_vec()),
            (b"X-Upper".to_vec(), b"\0nul".to_vec()),
            (vec![b'n'; 200], vec![b'v'; 70_000]),
        ];
        let block = encode_block(&fields);
        let mut d = Decoder::default();
        assert_eq!(d.decode(&block).unwrap(), fields);
        assert_eq!(d.table_size(), 0, "literal without indexing never touches the table");
        // A block over one frame is split into HEADERS + CONTINUATION(s).
        let frames = H2Conn::<TcpStream>::header_frames(1, &fields, true);
        assert_eq!(frames[3], kind::HEADERS);
        assert_eq!(frames[4], flag::END_STREAM);
        assert_eq!(frames.len(), block.len() + 9 * block.len().div_ceil(MAX_FRAME));
    }

    #[test]
    fn dynamic_table_evicts_oldest_first() {
        let mut d = Decoder::default();
        // Size update to 60 bytes: room for one 55-byte entry.
        let mut block = vec![0x3f, 0x1d]; // 001 11111, 60 - 31 = 29
        block.extend(hex("400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572"));
        block.extend(hex("be"));
        assert_eq!(strs(d.decode(&block).unwrap()).len(), 2);
        // A second entry evicts the first; index 63 is now out of the table.
        let mut second = hex("4003 6162 6303 7879 7a");
        second.push(0xbf);
        assert!(d.decode(&second).is_err());
    }
}
