//! Streaming body decoding: `Content-Length`, chunked, and read-until-close bodies.
//!
//! Invariants: the decoder never yields bytes beyond the message's end, so whatever follows
//! stays in the buffer (the next pipelined request, or garbage we refuse). Chunk lines are strict:
//! hex digits only (no sign, no `0x`, no spaces inside, at most 16 digits), CRLF line endings
//! only, extensions without control characters; trailers are validated, bounded, and dropped.

use bytes::{Bytes, BytesMut};

use super::parse::BodyKind;

const MAX_CHUNK_LINE: usize = 4096;
const MAX_TRAILERS: usize = 8192;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    #[error("invalid chunked encoding: {0}")]
    Chunked(&'static str),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Length(u64),
    Size,
    Data(u64),
    DataEnd,
    Trailers(usize),
    UntilClose,
    Done,
}

/// What one decode step produced.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded {
    Data(Bytes),
    NeedMore,
    Done,
}

/// Incremental body decoder over a connection's read buffer.
#[derive(Debug, Clone)]
pub struct BodyDecoder {
    state: State,
}

impl BodyDecoder {
    pub fn new(kind: BodyKind) -> BodyDecoder {
        let state = match kind {
            BodyKind::Empty => State::Done,
            BodyKind::Length(n) => State::Length(n),
            BodyKind::Chunked => State::Size,
            BodyKind::UntilClose => State::UntilClose,
        };
        BodyDecoder { state }
    }

    /// Bytes the peer has already committed to send: the rest of the current chunk (chunked) or
    /// of the body (length). Lets a limit refuse a body as soon as a chunk size line overshoots.
    pub fn declared_remaining(&self) -> u64 {
        match self.state {
            State::Data(n) | State::Length(n) => n,
            _ => 0,
        }
    }

    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Called when the peer closed the connection: completes a read-until-close body, otherwise
    /// the body is truncated (returns false).
    pub fn on_eof(&mut self) -> bool {
        if self.state == State::UntilClose {
            self.state = State::Done;
        }
        self.state == State::Done
    }

    /// Takes the next piece of body data out of `buf`.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Decoded, BodyError> {
        loop {
            match self.state {
                State::Done => return Ok(Decoded::Done),
                State::Length(0) => {
                    self.state = State::Done;
                }
                State::Length(n) => {
                    if buf.is_empty() {
                        return Ok(Decoded::NeedMore);
                    }
                    let take = (n.min(buf.len() as u64)) as usize;
                    self.state = State::Length(n - take as u64);
                    return Ok(Decoded::Data(buf.split_to(take).freeze()));
                }
                State::UntilClose => {
                    if buf.is_empty() {
                        return Ok(Decoded::NeedMore);
                    }
                    return Ok(Decoded::Data(buf.split().freeze()));
                }
                State::Size => {
                    let Some(nl) = buf.iter().position(|&b| b == b'\n') else {
                        if buf.len() > MAX_CHUNK_LINE {
                            return Err(BodyError::Chunked("chunk size line too long"));
                        }
                        return Ok(Decoded::NeedMore);
                    };
                    // The same bound whether the line arrived in one read or several (the check
                    // above only sees lines still waiting for their LF): found by fuzzing.
                    if nl + 1 > MAX_CHUNK_LINE {
                        return Err(BodyError::Chunked("chunk size line too long"));
                    }
                    let line = buf.split_to(nl + 1);
                    let size = parse_size_line(&line)?;
                    self.state = if size == 0 { State::Trailers(0) } else { State::Data(size) };
                }
                State::Data(n) => {
                    if buf.is_empty() {
                        return Ok(Decoded::NeedMore);
                    }
                    let take = (n.min(buf.len() as u64)) as usize;
                    let left = n - take as u64;
                    self.state = if left == 0 { State::DataEnd } else { State::Data(left) };
                    return Ok(Decoded::Data(buf.split_to(take).freeze()));
                }
                State::DataEnd => {
                    if buf.len() < 2 {
                        return Ok(Decoded::NeedMore);
                    }
                    if &buf[..2] != b"\r\n" {
                        return Err(BodyError::Chunked("chunk data not followed by CRLF"));
                    }
                    let _ = buf.split_to(2);
                    self.state = State::Size;
                }
                State::Trailers(seen) => {
                    let Some(nl) = buf.iter().position(|&b| b == b'\n') else {
                        if seen + buf.len() > MAX_TRAILERS {
                            return Err(BodyError::Chunked("trailer section too large"));
                        }
                        return Ok(Decoded::NeedMore);
                    };
                    let line = buf.split_to(nl + 1);
                    if seen + line.len() > MAX_TRAILERS {
                        return Err(BodyError::Chunked("trailer section too large"));
                    }
                    if line.len() < 2 || line[line.len() - 2] != b'\r' {
                        return Err(BodyError::Chunked("bare LF in trailer section"));
                    }
                    if line.len() == 2 {
                        self.state = State::Done;
                        return Ok(Decoded::Done);
                    }
                    validate_trailer(&line[..line.len() - 2])?;
                    self.state = State::Trailers(seen + line.len());
                }
            }
        }
    }
}

fn parse_size_line(line: &[u8]) -> Result<u64, BodyError> {
    if line.len() < 2 || line[line.len() - 2] != b'\r' {
        return Err(BodyError::Chunked("chunk size line must end with CRLF"));
    }
    let line = &line[..line.len() - 2];
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 {
        return Err(BodyError::Chunked("missing chunk size"));
    }
    if digits > 16 {
        return Err(BodyError::Chunked("chunk size overflows"));
    }
    let rest = &line[digits..];
    // Only BWS then `;extension` may follow the size.
    let after_ws = rest.iter().skip_while(|&&b| b == b' ' || b == b'\t').copied().collect::<Vec<u8>>();
    if !after_ws.is_empty() {
        if after_ws[0] != b';' {
            return Err(BodyError::Chunked("invalid character after chunk size"));
        }
        if after_ws.iter().any(|&b| b < 0x20 && b != b'\t' || b == 0x7f) {
            return Err(BodyError::Chunked("control character in chunk extension"));
        }
    } else if !rest.is_empty() {
        return Err(BodyError::Chunked("trailing whitespace after chunk size"));
    }
    let s = std::str::from_utf8(&line[..digits]).map_err(|_| BodyError::Chunked("bad chunk size"))?;
    u64::from_str_radix(s, 16).map_err(|_| BodyError::Chunked("chunk size overflows"))
}

fn validate_trailer(line: &[u8]) -> Result<(), BodyError> {
    let colon = line.iter().position(|&b| b == b':').ok_or(BodyError::Chunked("trailer without colon"))?;
    let name = &line[..colon];
    if name.is_empty() || !name.iter().all(|&b| is_tchar(b)) {
        return Err(BodyError::Chunked("invalid trailer field name"));
    }
    if line[colon + 1..].iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f) {
        return Err(BodyError::Chunked("control character in trailer value"));
    }
    Ok(())
}

/// RFC 9110 token character.
pub fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A chunk-size line over the limit is refused whether it arrives in one read or two.
    #[test]
    fn long_size_line_refused_however_it_is_split() {
        let mut body = b"5;".to_vec();
        body.extend(std::iter::repeat_n(b'a', 5000));
        body.extend_from_slice(b"\r\nhello\r\n0\r\n\r\n");
        let whole = {
            let mut d = BodyDecoder::new(BodyKind::Chunked);
            let mut b = BytesMut::from(&body[..]);
            d.decode(&mut b).map(|_| ())
        };
        let split = {
            let mut d = BodyDecoder::new(BodyKind::Chunked);
            let mut b = BytesMut::from(&body[..4917]);
            d.decode(&mut b).map(|_| ())
        };
        assert!(whole.is_err(), "one read: {whole:?}");
        assert!(split.is_err(), "two reads: {split:?}");
    }

    fn decode_all(kind: BodyKind, input: &[u8]) -> Result<(Vec<u8>, Vec<u8>, bool), BodyError> {
        let mut d = BodyDecoder::new(kind);
        let mut buf = BytesMut::from(input);
        let mut out = Vec::new();
        loop {
            match d.decode(&mut buf)? {
                Decoded::Data(b) => out.extend_from_slice(&b),
                Decoded::NeedMore => return Ok((out, buf.to_vec(), false)),
                Decoded::Done => return Ok((out, buf.to_vec(), true)),
            }
        }
    }

    #[test]
    fn length_stops_at_end() {
        let (out, rest, done) = decode_all(BodyKind::Length(3), b"abcGET").unwrap();
        assert_eq!(out, b"abc");
        assert_eq!(rest, b"GET");
        assert!(done);
    }

    #[test]
    fn chunked_ok() {
        let (out, rest, done) =
            decode_all(BodyKind::Chunked, b"3;ext=1\r\nabc\r\nA\r\n0123456789\r\n0\r\nX-T: 1\r\n\r\nNEXT").unwrap();
        assert_eq!(out, b"abc0123456789");
        assert_eq!(rest, b"NEXT");
        assert!(done);
    }

    #[test]
    fn chunked_incremental() {
        let mut d = BodyDecoder::new(BodyKind::Chunked);
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for &b in b"5\r\nhello\r\n0\r\n\r\n" {
            buf.extend_from_slice(&[b]);
            while let Decoded::Data(x) = d.decode(&mut buf).unwrap() {
                out.extend_from_slice(&x);
            }
        }
        assert_eq!(out, b"hello");
        assert!(d.is_done());
    }

    #[test]
    fn chunked_rejects() {
        let bad: &[&[u8]] = &[
            b"0x5\r\nhello\r\n0\r\n\r\n",
            b"+5\r\nhello\r\n0\r\n\r\n",
            b"-0\r\n\r\n",
            b" 5\r\nhello\r\n0\r\n\r\n",
            b"5 \r\nhello\r\n0\r\n\r\n",
            b"1_0\r\n",
            b"5\nhello\r\n0\r\n\r\n",
            b"5\r\nhelloXX0\r\n\r\n",
            b"11111111111111111\r\n",
            b"\r\n",
            b"5;a\rb\r\nhello\r\n0\r\n\r\n",
            b"0\r\nbad trailer\r\n\r\n",
        ];
        for b in bad {
            assert!(decode_all(BodyKind::Chunked, b).is_err(), "accepted {:?}", String::from_utf8_lossy(b));
        }
    }
}
