//! A header list that borrows the raw head bytes and records edits on the side.
//!
//! Invariants: original fields are spans into one immutable `Bytes` buffer (no per-header
//! allocation on parse); removals only flag a field; additions are appended in order. Names are
//! compared ASCII-case-insensitively. Everything here was already validated by the parser, and
//! additions come from compiled config (validated tokens/values) or from the gateway itself.

use bytes::Bytes;

#[derive(Clone, Copy, Debug)]
pub(crate) struct Span {
    pub start: u32,
    pub end: u32,
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct RawField {
    name: Span,
    value: Span,
    removed: bool,
}

impl RawField {
    pub(crate) fn new(name: Span, value: Span) -> RawField {
        RawField { name, value, removed: false }
    }
}

/// Header fields of one message.
#[derive(Debug, Default)]
pub struct Headers {
    buf: Bytes,
    raw: Vec<RawField>,
    added: Vec<(Bytes, Bytes)>,
}

impl Headers {
    pub(crate) fn from_raw(buf: Bytes, raw: Vec<RawField>) -> Headers {
        Headers { buf, raw, added: Vec::new() }
    }

    /// A zero-copy `Bytes` for a value slice borrowed from this header list's buffer (copies if
    /// the slice is not from the buffer, e.g. an added field).
    pub fn slice_of(&self, v: &[u8]) -> Bytes {
        if self.buf.as_ptr_range().contains(&v.as_ptr()) {
            self.buf.slice_ref(v)
        } else {
            Bytes::copy_from_slice(v)
        }
    }

    pub fn new() -> Headers {
        Headers::default()
    }

    fn slice(&self, s: Span) -> &[u8] {
        &self.buf[s.start as usize..s.end as usize]
    }

    /// The first value of `name`.
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.iter().find(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes())).map(|(_, v)| v)
    }

    /// Every value of `name`, in order.
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.iter().filter(move |(n, _)| n.eq_ignore_ascii_case(name.as_bytes())).map(|(_, v)| v)
    }

    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// Every live field, originals first then additions.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.raw
            .iter()
            .filter(|f| !f.removed)
            .map(|f| (self.slice(f.name), self.slice(f.value)))
            .chain(self.added.iter().map(|(n, v)| (&n[..], &v[..])))
    }

    /// Removes every field called `name`; returns how many were removed.
    /// Removes the fields named `name` that came with the message (not those added since).
    pub fn remove_received(&mut self, name: &[u8]) {
        for i in 0..self.raw.len() {
            let f = self.raw[i];
            if !f.removed && self.slice(f.name).eq_ignore_ascii_case(name) {
                self.raw[i].removed = true;
            }
        }
    }

    pub fn remove(&mut self, name: &str) -> usize {
        let mut n = 0;
        for i in 0..self.raw.len() {
            let f = self.raw[i];
            if !f.removed && self.slice(f.name).eq_ignore_ascii_case(name.as_bytes()) {
                self.raw[i].removed = true;
                n += 1;
            }
        }
        let before = self.added.len();
        self.added.retain(|(k, _)| !k.eq_ignore_ascii_case(name.as_bytes()));
        n + before - self.added.len()
    }

    /// Removes fields whose name satisfies `pred`.
    pub fn remove_where(&mut self, mut pred: impl FnMut(&[u8]) -> bool) {
        for i in 0..self.raw.len() {
            let f = self.raw[i];
            if !f.removed && pred(self.slice(f.name)) {
                self.raw[i].removed = true;
            }
        }
        self.added.retain(|(k, _)| !pred(k));
    }

    /// Appends a field, keeping existing ones.
    pub fn append(&mut self, name: impl Into<Bytes>, value: impl Into<Bytes>) {
        self.added.push((name.into(), value.into()));
    }

    /// Replaces every field called `name` with one field.
    pub fn set(&mut self, name: impl Into<Bytes>, value: impl Into<Bytes>) {
        let name = name.into();
        if let Ok(s) = std::str::from_utf8(&name) {
            self.remove(s);
        }
        self.added.push((name, value.into()));
    }

    pub fn len(&self) -> usize {
        self.iter().count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Writes `name: value\r\n` for each live field.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        for (n, v) in self.iter() {
            out.extend_from_slice(n);
            out.extend_from_slice(b": ");
            out.extend_from_slice(v);
            out.extend_from_slice(b"\r\n");
        }
    }
}

/// Does a comma-separated header value contain `token` (case-insensitive)?
pub fn has_token(value: &[u8], token: &str) -> bool {
    value.split(|&b| b == b',').any(|t| trim(t).eq_ignore_ascii_case(token.as_bytes()))
}

/// Trims optional whitespace (SP / HTAB) on both ends.
pub fn trim(mut v: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = v {
        v = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = v {
        v = rest;
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Headers {
        let buf = Bytes::from_static(b"Host: a\r\nX-A: 1\r\nx-a: 2\r\n");
        let spans = [((0, 4), (6, 7)), ((9, 12), (14, 15)), ((17, 20), (22, 23))];
        Headers::from_raw(
            buf,
            spans
                .iter()
                .map(|&((a, b), (c, d))| RawField::new(Span { start: a, end: b }, Span { start: c, end: d }))
                .collect(),
        )
    }

    #[test]
    fn get_remove_set() {
        let mut h = sample();
        assert_eq!(h.get("host"), Some(&b"a"[..]));
        assert_eq!(h.get_all("X-A").count(), 2);
        h.append("x-b", "3");
        assert_eq!(h.remove("x-a"), 2);
        assert_eq!(h.get("x-a"), None);
        h.set("X-B", "4");
        assert_eq!(h.get_all("x-b").collect::<Vec<_>>(), vec![&b"4"[..]]);
        let mut out = Vec::new();
        h.write_to(&mut out);
        assert_eq!(out, b"Host: a\r\nX-B: 4\r\n");
    }

    #[test]
    fn tokens() {
        assert!(has_token(b"keep-alive, Close", "close"));
        assert!(!has_token(b"closed", "close"));
        assert_eq!(trim(b" \tx y\t "), b"x y");
    }
}
