//! A header list that borrows the raw head bytes and records edits on the side.
//!
//! Invariants: original fields are spans into one immutable `Bytes` buffer (no per-header
//! allocation on parse); removals only flag a field; additions are appended in order. Names are
//! compared ASCII-case-insensitively. Everything here was already validated by the parser, and
//! additions come from compiled config (validated tokens/values) or from the gateway itself.
//!
//! Every field carries its `Known` name, recognised once when it is parsed or added: the
//! framing, hop-by-hop and forwarding checks that run on every message then compare one byte
//! per field instead of a name (the head of a proxied request is read about ten times).

use bytes::Bytes;

/// The header names the gateway reads or removes on every message. Anything else is `Other`
/// and compared by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Known {
    Other,
    Host,
    ContentLength,
    TransferEncoding,
    ContentType,
    Connection,
    KeepAlive,
    Te,
    Trailer,
    Upgrade,
    ProxyConnection,
    ProxyAuthenticate,
    ProxyAuthorization,
    Expect,
    Forwarded,
    XRealIp,
    XRequestId,
    XForwardedFor,
    XForwardedHost,
    XForwardedPort,
    XForwardedProto,
    XClientCertSubject,
}

impl Known {
    /// One length-bucketed match (at most three comparisons of that length, eight bytes at a
    /// time). `n` must be a field-name token (RFC 9110 §5.1: what the parsers and config
    /// validation admit): see `token_eq`.
    pub fn of(n: &[u8]) -> Known {
        let eq = |s: &[u8]| token_eq(n, s);
        match n.len() {
            2 if eq(b"te") => Known::Te,
            4 if eq(b"host") => Known::Host,
            6 if eq(b"expect") => Known::Expect,
            7 if eq(b"trailer") => Known::Trailer,
            7 if eq(b"upgrade") => Known::Upgrade,
            9 if eq(b"forwarded") => Known::Forwarded,
            9 if eq(b"x-real-ip") => Known::XRealIp,
            10 if eq(b"connection") => Known::Connection,
            10 if eq(b"keep-alive") => Known::KeepAlive,
            12 if eq(b"content-type") => Known::ContentType,
            12 if eq(b"x-request-id") => Known::XRequestId,
            14 if eq(b"content-length") => Known::ContentLength,
            15 if eq(b"x-forwarded-for") => Known::XForwardedFor,
            16 if eq(b"proxy-connection") => Known::ProxyConnection,
            16 if eq(b"x-forwarded-host") => Known::XForwardedHost,
            16 if eq(b"x-forwarded-port") => Known::XForwardedPort,
            17 if eq(b"transfer-encoding") => Known::TransferEncoding,
            17 if eq(b"x-forwarded-proto") => Known::XForwardedProto,
            18 if eq(b"proxy-authenticate") => Known::ProxyAuthenticate,
            19 if eq(b"proxy-authorization") => Known::ProxyAuthorization,
            21 if eq(b"x-client-cert-subject") => Known::XClientCertSubject,
            _ => Known::Other,
        }
    }

    /// A hop-by-hop field (RFC 9110 §7.6.1) or a framing field the proxy re-creates itself.
    pub fn is_hop_by_hop(self) -> bool {
        matches!(
            self,
            Known::Te
                | Known::Trailer
                | Known::Upgrade
                | Known::Connection
                | Known::KeepAlive
                | Known::ContentLength
                | Known::ProxyConnection
                | Known::TransferEncoding
                | Known::ProxyAuthenticate
                | Known::ProxyAuthorization
        )
    }
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct Span {
    pub start: u32,
    pub end: u32,
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct RawField {
    name: Span,
    value: Span,
    known: Known,
    removed: bool,
}

impl RawField {
    /// `name` is the field name's bytes (the span's content), classified here once.
    pub(crate) fn new(name: Span, value: Span, name_bytes: &[u8]) -> RawField {
        RawField { name, value, known: Known::of(name_bytes), removed: false }
    }
}

/// `n` equals the lower-case `lit` (same length), ignoring ASCII case, compared eight bytes at a
/// time by setting bit 0x20 of every byte of `n`. That folds upper- onto lower-case letters and
/// leaves `-` and digits alone; the only other byte it maps into `lit`'s alphabet (letters, `-`)
/// is CR (0x0D → `-`), which no token contains.
fn token_eq(n: &[u8], lit: &[u8]) -> bool {
    debug_assert_eq!(n.len(), lit.len());
    const FOLD: u64 = 0x2020_2020_2020_2020;
    let (mut a, mut b) = (n.chunks_exact(8), lit.chunks_exact(8));
    for (x, y) in a.by_ref().zip(b.by_ref()) {
        let (x, y) = (word(x), word(y));
        if x | FOLD != y {
            return false;
        }
    }
    a.remainder().iter().zip(b.remainder()).all(|(&x, &y)| x | 0x20 == y)
}

fn word(b: &[u8]) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(b);
    u64::from_le_bytes(w)
}

/// A field the gateway added: its name, recognised once, and value.
#[derive(Debug, Clone)]
struct Added {
    known: Known,
    name: Bytes,
    value: Bytes,
}

/// Header fields of one message.
#[derive(Debug, Default)]
pub struct Headers {
    buf: Bytes,
    raw: Vec<RawField>,
    added: Vec<Added>,
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
        self.get_named(Known::of(name.as_bytes()), name.as_bytes())
    }

    /// `get` for a name already recognised as `k` (`Known::of(n) == k`, done once at compile).
    pub fn get_named(&self, k: Known, n: &[u8]) -> Option<&[u8]> {
        self.fields()
            .find(|&(fk, fname, _)| fk == k && (k != Known::Other || fname.eq_ignore_ascii_case(n)))
            .map(|f| f.2)
    }

    /// Every value of `name`, in order (originals first, then additions).
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        let (k, n) = (Known::of(name.as_bytes()), name.as_bytes());
        self.fields()
            .filter(move |&(fk, fname, _)| fk == k && (k != Known::Other || fname.eq_ignore_ascii_case(n)))
            .map(|f| f.2)
    }

    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// The first value of a recognised field (`k` is not `Other`).
    pub fn get_known(&self, k: Known) -> Option<&[u8]> {
        self.fields().find(|f| f.0 == k).map(|f| f.2)
    }

    /// Every value of a recognised field, in order.
    pub fn get_all_known(&self, k: Known) -> impl Iterator<Item = &[u8]> {
        self.fields().filter(move |f| f.0 == k).map(|f| f.2)
    }

    pub fn contains_known(&self, k: Known) -> bool {
        self.get_known(k).is_some()
    }

    /// Every live field with its recognised name, originals first then additions.
    pub fn fields(&self) -> impl Iterator<Item = (Known, &[u8], &[u8])> {
        self.raw
            .iter()
            .filter(|f| !f.removed)
            .map(|f| (f.known, self.slice(f.name), self.slice(f.value)))
            .chain(self.added.iter().map(|a| (a.known, &a.name[..], &a.value[..])))
    }

    /// Every live field, originals first then additions.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.fields().map(|(_, n, v)| (n, v))
    }

    /// Removes the fields named `name` that came with the message (not those added since).
    pub fn remove_received(&mut self, name: &[u8]) {
        let k = Known::of(name);
        for i in 0..self.raw.len() {
            let f = self.raw[i];
            if !f.removed && f.known == k && (k != Known::Other || self.slice(f.name).eq_ignore_ascii_case(name)) {
                self.raw[i].removed = true;
            }
        }
    }

    /// Removes every field called `name`; returns how many were removed.
    pub fn remove(&mut self, name: &str) -> usize {
        let (k, n) = (Known::of(name.as_bytes()), name.as_bytes());
        self.remove_fields(|fk, fname| fk == k && (k != Known::Other || fname.eq_ignore_ascii_case(n)))
    }

    /// Removes fields whose name satisfies `pred`.
    pub fn remove_where(&mut self, mut pred: impl FnMut(&[u8]) -> bool) {
        self.remove_fields(|_, n| pred(n));
    }

    /// Removes the hop-by-hop fields when `Connection` names nothing else (only `keep-alive` or
    /// `close`, the usual case); returns false, removing nothing, when it names other fields.
    /// One pass over the received fields.
    pub fn strip_plain_hop_by_hop(&mut self) -> bool {
        let names_others = |v: &[u8]| connection_options(v).next().is_some();
        for f in &self.raw {
            if f.known == Known::Connection && !f.removed && names_others(self.slice(f.value)) {
                return false;
            }
        }
        if self.added.iter().any(|a| a.known == Known::Connection && names_others(&a.value)) {
            return false;
        }
        for f in &mut self.raw {
            if f.known.is_hop_by_hop() {
                f.removed = true;
            }
        }
        self.added.retain(|a| !a.known.is_hop_by_hop());
        true
    }

    /// Removes fields for which `pred(known, name)` holds; returns how many were removed.
    pub fn remove_fields(&mut self, mut pred: impl FnMut(Known, &[u8]) -> bool) -> usize {
        let mut n = 0;
        for i in 0..self.raw.len() {
            let f = self.raw[i];
            if !f.removed && pred(f.known, self.slice(f.name)) {
                self.raw[i].removed = true;
                n += 1;
            }
        }
        let before = self.added.len();
        self.added.retain(|a| !pred(a.known, &a.name));
        n + before - self.added.len()
    }

    /// Appends a field whose name is known to be `k` (`Known::of(&name) == k`), keeping
    /// existing ones: the gateway's own fields skip the classification.
    pub fn append_known(&mut self, k: Known, name: &'static [u8], value: impl Into<Bytes>) {
        debug_assert_eq!(Known::of(name), k);
        self.added.push(Added { known: k, name: Bytes::from_static(name), value: value.into() });
    }

    /// Appends a field whose name was recognised as `k` already, keeping existing ones.
    pub fn append_named(&mut self, k: Known, name: Bytes, value: impl Into<Bytes>) {
        debug_assert_eq!(Known::of(&name), k);
        self.added.push(Added { known: k, name, value: value.into() });
    }

    /// Appends a field, keeping existing ones.
    pub fn append(&mut self, name: impl Into<Bytes>, value: impl Into<Bytes>) {
        let name = name.into();
        self.added.push(Added { known: Known::of(&name), name, value: value.into() });
    }

    /// Replaces every field called `name` with one field.
    pub fn set(&mut self, name: impl Into<Bytes>, value: impl Into<Bytes>) {
        let name = name.into();
        let k = Known::of(&name);
        self.remove_fields(|fk, n| fk == k && (k != Known::Other || n.eq_ignore_ascii_case(&name)));
        self.added.push(Added { known: k, name, value: value.into() });
    }

    pub fn len(&self) -> usize {
        self.iter().count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Writes `name: value\r\n` for each live field.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        self.write_except(out, Known::Other);
    }

    /// `write_to`, leaving out the fields recognised as `skip` (`Other` skips nothing). A
    /// received field goes out as the one span `name:[OWS]value` it was parsed from (the parser
    /// admitted nothing else between them), then CRLF: two copies instead of four.
    pub fn write_except(&self, out: &mut Vec<u8>, skip: Known) {
        for f in &self.raw {
            if f.removed || (f.known == skip && skip != Known::Other) {
                continue;
            }
            if f.value.end > f.name.end {
                out.extend_from_slice(&self.buf[f.name.start as usize..f.value.end as usize]);
            } else {
                out.extend_from_slice(self.slice(f.name));
                out.extend_from_slice(b": ");
            }
            out.extend_from_slice(b"\r\n");
        }
        for a in &self.added {
            if a.known == skip && skip != Known::Other {
                continue;
            }
            out.extend_from_slice(&a.name);
            out.extend_from_slice(b": ");
            out.extend_from_slice(&a.value);
            out.extend_from_slice(b"\r\n");
        }
    }
}

/// The field names a `Connection` value lists: its tokens other than the `keep-alive` and
/// `close` options, trimmed, empty ones skipped.
pub fn connection_options(v: &[u8]) -> impl Iterator<Item = &[u8]> {
    v.split(|&b| b == b',')
        .map(trim)
        .filter(|t| !t.is_empty() && !t.eq_ignore_ascii_case(b"keep-alive") && !t.eq_ignore_ascii_case(b"close"))
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
            buf.clone(),
            spans
                .iter()
                .map(|&((a, b), (c, d))| {
                    RawField::new(Span { start: a, end: b }, Span { start: c, end: d }, &buf[a as usize..b as usize])
                })
                .collect(),
        )
    }

    #[test]
    fn known_names_are_recognised_in_any_case_and_nothing_else_is() {
        let names: &[(&str, Known)] = &[
            ("te", Known::Te),
            ("host", Known::Host),
            ("expect", Known::Expect),
            ("trailer", Known::Trailer),
            ("upgrade", Known::Upgrade),
            ("forwarded", Known::Forwarded),
            ("x-real-ip", Known::XRealIp),
            ("connection", Known::Connection),
            ("keep-alive", Known::KeepAlive),
            ("content-type", Known::ContentType),
            ("x-request-id", Known::XRequestId),
            ("content-length", Known::ContentLength),
            ("x-forwarded-for", Known::XForwardedFor),
            ("proxy-connection", Known::ProxyConnection),
            ("x-forwarded-host", Known::XForwardedHost),
            ("x-forwarded-port", Known::XForwardedPort),
            ("transfer-encoding", Known::TransferEncoding),
            ("x-forwarded-proto", Known::XForwardedProto),
            ("proxy-authenticate", Known::ProxyAuthenticate),
            ("proxy-authorization", Known::ProxyAuthorization),
            ("x-client-cert-subject", Known::XClientCertSubject),
        ];
        for &(n, k) in names {
            assert_eq!(Known::of(n.as_bytes()), k, "{n}");
            assert_eq!(Known::of(n.to_ascii_uppercase().as_bytes()), k, "{n}");
            // Every single-byte change of a known name is another name (or not a token).
            for i in 0..n.len() {
                for b in [b'_', b'x', b'0', b'.', b'^', b'~', b'-'] {
                    let mut m = n.as_bytes().to_vec();
                    if m[i].eq_ignore_ascii_case(&b) {
                        continue;
                    }
                    m[i] = b;
                    assert_eq!(Known::of(&m), Known::Other, "{}", String::from_utf8_lossy(&m));
                }
            }
        }
        assert_eq!(Known::of(b"x-forwarded-fox"), Known::Other);
        assert_eq!(Known::of(b""), Known::Other);
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
        out.clear();
        h.write_except(&mut out, Known::Host);
        assert_eq!(out, b"X-B: 4\r\n");
    }

    #[test]
    fn tokens() {
        assert!(has_token(b"keep-alive, Close", "close"));
        assert!(!has_token(b"closed", "close"));
        assert_eq!(trim(b" \tx y\t "), b"x y");
    }
}
