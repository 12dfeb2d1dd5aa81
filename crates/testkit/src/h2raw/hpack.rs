//! HPACK (RFC 7541) for the raw HTTP/2 client: an encoder that writes every field as a literal
//! without indexing and without Huffman (so any byte string goes out as given), and a complete
//! decoder (static and dynamic tables, size updates, Huffman), checked against the examples of
//! RFC 7541 Appendix C.

use std::collections::HashMap;

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::h2raw::{flag, kind, H2Conn, MAX_FRAME};
    use tokio::net::TcpStream;

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
