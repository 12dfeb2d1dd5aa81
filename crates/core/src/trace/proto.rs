//! Hand-written OTLP protobuf encoding of finished spans (`ExportTraceServiceRequest`) and a small
//! wire-format reader (for the collector's `ExportTraceServiceResponse` and for tests).
//!
//! Field numbers are those of opentelemetry-proto (`trace/v1/trace.proto`,
//! `common/v1/common.proto`, `resource/v1/resource.proto`,
//! `collector/trace/v1/trace_service.proto`), checked against the official Python package's
//! descriptors. Invariants: output is canonical proto3 (minimal varints, default values omitted
//! except where an id must be present); the reader never panics on hostile input.

use std::borrow::Cow;
use std::sync::Arc;

/// An attribute value (the subset of `AnyValue` we emit).
#[derive(Debug, Clone, PartialEq)]
pub enum AttrValue {
    Str(String),
    Bool(bool),
    Int(i64),
    Double(f64),
}

#[derive(Debug, Clone, PartialEq)]
pub struct KeyValue {
    pub key: Cow<'static, str>,
    pub value: AttrValue,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpanKind {
    Server = 2,
    Client = 3,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusCode {
    Unset = 0,
    Ok = 1,
    Error = 2,
}

/// A finished span, as queued for export.
#[derive(Debug, Clone, PartialEq)]
pub struct SpanRecord {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub parent_span_id: Option<[u8; 8]>,
    /// Whether the parent came from another process (a `traceparent` we received).
    pub parent_is_remote: bool,
    pub trace_state: Option<Arc<str>>,
    pub name: String,
    pub kind: SpanKind,
    pub start_unix_nano: u64,
    pub end_unix_nano: u64,
    /// W3C trace flags.
    pub flags: u8,
    pub attributes: Vec<KeyValue>,
    pub status: StatusCode,
    pub status_message: String,
}

// Span.flags bits 8 and 9 (SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK / _IS_REMOTE_MASK).
const HAS_IS_REMOTE: u32 = 0x100;
const IS_REMOTE: u32 = 0x200;

const WT_VARINT: u8 = 0;
const WT_I64: u8 = 1;
const WT_LEN: u8 = 2;
const WT_I32: u8 = 5;

fn put_varint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

fn put_tag(buf: &mut Vec<u8>, field: u32, wire: u8) {
    put_varint(buf, u64::from(field) << 3 | u64::from(wire));
}

fn put_bytes(buf: &mut Vec<u8>, field: u32, bytes: &[u8]) {
    put_tag(buf, field, WT_LEN);
    put_varint(buf, bytes.len() as u64);
    buf.extend_from_slice(bytes);
}

fn put_str(buf: &mut Vec<u8>, field: u32, s: &str) {
    if !s.is_empty() {
        put_bytes(buf, field, s.as_bytes());
    }
}

/// A nested message: encoded into a scratch buffer first because its length prefix comes first.
/// Only the exporter thread encodes, so the copies stay off the request path.
fn put_msg(buf: &mut Vec<u8>, field: u32, f: impl FnOnce(&mut Vec<u8>)) {
    let mut inner = Vec::new();
    f(&mut inner);
    put_bytes(buf, field, &inner);
}

fn put_key_value(buf: &mut Vec<u8>, field: u32, key: &str, value: &AttrValue) {
    put_msg(buf, field, |kv| {
        put_str(kv, 1, key);
        put_msg(kv, 2, |any| match value {
            // Written even when empty: an AnyValue with no field set would mean "no value".
            AttrValue::Str(s) => put_bytes(any, 1, s.as_bytes()),
            AttrValue::Bool(b) => {
                put_tag(any, 2, WT_VARINT);
                put_varint(any, u64::from(*b));
            }
            AttrValue::Int(i) => {
                put_tag(any, 3, WT_VARINT);
                put_varint(any, *i as u64);
            }
            AttrValue::Double(d) => {
                put_tag(any, 4, WT_I64);
                any.extend_from_slice(&d.to_le_bytes());
            }
        });
    });
}

/// The parts of a request that are the same for every batch: `Resource` and
/// `InstrumentationScope`, encoded once.
#[derive(Debug, Clone)]
pub struct Preamble {
    resource: Vec<u8>,
    scope: Vec<u8>,
}

impl Preamble {
    pub fn new(resource: &[(String, String)], scope_name: &str, scope_version: &str) -> Preamble {
        let mut r = Vec::new();
        for (k, v) in resource {
            put_key_value(&mut r, 1, k, &AttrValue::Str(v.clone()));
        }
        let mut s = Vec::new();
        put_str(&mut s, 1, scope_name);
        put_str(&mut s, 2, scope_version);
        Preamble { resource: r, scope: s }
    }
}

/// Encodes one `ExportTraceServiceRequest` carrying `spans`.
pub fn encode_request(pre: &Preamble, spans: &[SpanRecord]) -> Vec<u8> {
    let mut out = Vec::with_capacity(256 + spans.len() * 256);
    put_msg(&mut out, 1, |rs| {
        put_bytes(rs, 1, &pre.resource);
        put_msg(rs, 2, |ss| {
            put_bytes(ss, 1, &pre.scope);
            for span in spans {
                put_msg(ss, 2, |s| encode_span(s, span));
            }
        });
    });
    out
}

fn encode_span(s: &mut Vec<u8>, span: &SpanRecord) {
    put_bytes(s, 1, &span.trace_id);
    put_bytes(s, 2, &span.span_id);
    if let Some(ts) = &span.trace_state {
        put_str(s, 3, ts);
    }
    if let Some(p) = &span.parent_span_id {
        put_bytes(s, 4, p);
    }
    put_str(s, 5, &span.name);
    put_tag(s, 6, WT_VARINT);
    put_varint(s, span.kind as u64);
    put_tag(s, 7, WT_I64);
    s.extend_from_slice(&span.start_unix_nano.to_le_bytes());
    put_tag(s, 8, WT_I64);
    s.extend_from_slice(&span.end_unix_nano.to_le_bytes());
    for kv in &span.attributes {
        put_key_value(s, 9, &kv.key, &kv.value);
    }
    if span.status != StatusCode::Unset || !span.status_message.is_empty() {
        put_msg(s, 15, |st| {
            put_str(st, 2, &span.status_message);
            if span.status != StatusCode::Unset {
                put_tag(st, 3, WT_VARINT);
                put_varint(st, span.status as u64);
            }
        });
    }
    let remote = if span.parent_is_remote { HAS_IS_REMOTE | IS_REMOTE } else { HAS_IS_REMOTE };
    put_tag(s, 16, WT_I32);
    s.extend_from_slice(&(u32::from(span.flags) | remote).to_le_bytes());
}

/// One field of a protobuf message as read off the wire.
#[derive(Debug, Clone, PartialEq)]
pub enum Field<'a> {
    Varint(u64),
    I64(u64),
    Len(&'a [u8]),
    I32(u32),
}

/// Splits one message into `(field number, value)` pairs; `None` on malformed input.
pub fn read_fields(mut b: &[u8]) -> Option<Vec<(u32, Field<'_>)>> {
    fn varint(b: &mut &[u8]) -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let (&byte, rest) = b.split_first()?;
            *b = rest;
            v |= u64::from(byte & 0x7f) << shift;
            if byte < 0x80 {
                return Some(v);
            }
        }
        None
    }
    fn take<'a>(b: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
        if b.len() < n {
            return None;
        }
        let (head, rest) = b.split_at(n);
        *b = rest;
        Some(head)
    }
    let mut out = Vec::new();
    while !b.is_empty() {
        let tag = varint(&mut b)?;
        let field = u32::try_from(tag >> 3).ok().filter(|f| *f != 0)?;
        let value = match (tag & 7) as u8 {
            WT_VARINT => Field::Varint(varint(&mut b)?),
            WT_I64 => Field::I64(u64::from_le_bytes(take(&mut b, 8)?.try_into().ok()?)),
            WT_LEN => {
                let n = usize::try_from(varint(&mut b)?).ok()?;
                Field::Len(take(&mut b, n)?)
            }
            WT_I32 => Field::I32(u32::from_le_bytes(take(&mut b, 4)?.try_into().ok()?)),
            _ => return None,
        };
        out.push((field, value));
    }
    Some(out)
}

/// `ExportTraceServiceResponse.partial_success`: (rejected_spans, error_message). A body that is
/// empty or has no partial success means everything was accepted.
pub fn read_partial_success(body: &[u8]) -> Option<(u64, String)> {
    let fields = read_fields(body)?;
    let (_, Field::Len(ps)) = fields.iter().find(|(n, f)| *n == 1 && matches!(f, Field::Len(_)))? else {
        return None;
    };
    let mut rejected = 0;
    let mut message = String::new();
    for (n, f) in read_fields(ps)? {
        match (n, f) {
            (1, Field::Varint(v)) => rejected = v,
            (2, Field::Len(m)) => message = String::from_utf8_lossy(m).into_owned(),
            _ => {}
        }
    }
    Some((rejected, message))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_span() -> SpanRecord {
        SpanRecord {
            trace_id: [0xab; 16],
            span_id: [0x01; 8],
            parent_span_id: Some([0x02; 8]),
            parent_is_remote: true,
            trace_state: Some(Arc::from("a=1")),
            name: "GET /users/{id}".into(),
            kind: SpanKind::Server,
            start_unix_nano: 1_700_000_000_000_000_000,
            end_unix_nano: 1_700_000_000_001_000_000,
            flags: 1,
            attributes: vec![
                KeyValue { key: "http.request.method".into(), value: AttrValue::Str("GET".into()) },
                KeyValue { key: "http.response.status_code".into(), value: AttrValue::Int(503) },
                KeyValue { key: "b".into(), value: AttrValue::Bool(true) },
                KeyValue { key: "d".into(), value: AttrValue::Double(1.5) },
                KeyValue { key: "neg".into(), value: AttrValue::Int(-3) },
            ],
            status: StatusCode::Error,
            status_message: "boom".into(),
        }
    }

    fn one<'a>(fields: &[(u32, Field<'a>)], n: u32) -> Field<'a> {
        let hits: Vec<_> = fields.iter().filter(|(f, _)| *f == n).collect();
        assert_eq!(hits.len(), 1, "field {n}: {fields:?}");
        hits[0].1.clone()
    }

    fn bytes<'a>(f: Field<'a>) -> &'a [u8] {
        match f {
            Field::Len(b) => b,
            other => panic!("not length-delimited: {other:?}"),
        }
    }

    #[test]
    fn round_trip_through_the_wire_reader() {
        let pre = Preamble::new(&[("service.name".into(), "gw".into())], "gatehouse", "0.1.0");
        let body = encode_request(&pre, &[sample_span()]);
        let req = read_fields(&body).expect("request");
        let rs = read_fields(bytes(one(&req, 1))).expect("resource spans");
        let resource = read_fields(bytes(one(&rs, 1))).expect("resource");
        let kv = read_fields(bytes(one(&resource, 1))).expect("kv");
        assert_eq!(bytes(one(&kv, 1)), b"service.name");
        assert_eq!(read_fields(bytes(one(&kv, 2))).expect("any"), vec![(1, Field::Len(b"gw"))]);
        let ss = read_fields(bytes(one(&rs, 2))).expect("scope spans");
        let scope = read_fields(bytes(one(&ss, 1))).expect("scope");
        assert_eq!(scope, vec![(1, Field::Len(b"gatehouse")), (2, Field::Len(b"0.1.0"))]);
        let span = read_fields(bytes(one(&ss, 2))).expect("span");
        assert_eq!(bytes(one(&span, 1)), &[0xab; 16]);
        assert_eq!(bytes(one(&span, 2)), &[0x01; 8]);
        assert_eq!(bytes(one(&span, 3)), b"a=1");
        assert_eq!(bytes(one(&span, 4)), &[0x02; 8]);
        assert_eq!(bytes(one(&span, 5)), b"GET /users/{id}");
        assert_eq!(one(&span, 6), Field::Varint(2));
        assert_eq!(one(&span, 7), Field::I64(1_700_000_000_000_000_000));
        assert_eq!(one(&span, 8), Field::I64(1_700_000_000_001_000_000));
        assert_eq!(one(&span, 16), Field::I32(0x301));
        let attrs: Vec<_> = span.iter().filter(|(n, _)| *n == 9).collect();
        assert_eq!(attrs.len(), 5);
        let any_of = |i: usize| {
            let kv = read_fields(bytes(attrs[i].1.clone())).expect("kv");
            read_fields(bytes(one(&kv, 2))).expect("any")
        };
        assert_eq!(any_of(1), vec![(3, Field::Varint(503))]);
        assert_eq!(any_of(2), vec![(2, Field::Varint(1))]);
        assert_eq!(any_of(3), vec![(4, Field::I64(1.5f64.to_bits()))]);
        assert_eq!(any_of(4), vec![(3, Field::Varint(-3i64 as u64))]);
        let status = read_fields(bytes(one(&span, 15))).expect("status");
        assert_eq!(status, vec![(2, Field::Len(b"boom")), (3, Field::Varint(2))]);
    }

    #[test]
    fn root_span_omits_parent_and_state() {
        let mut s = sample_span();
        s.parent_span_id = None;
        s.parent_is_remote = false;
        s.trace_state = None;
        s.status = StatusCode::Unset;
        s.status_message.clear();
        let mut buf = Vec::new();
        encode_span(&mut buf, &s);
        let f = read_fields(&buf).expect("span");
        assert!(f.iter().all(|(n, _)| ![3, 4, 15].contains(n)), "{f:?}");
        assert_eq!(one(&f, 16), Field::I32(0x101));
    }

    #[test]
    fn reader_survives_garbage_and_reads_partial_success() {
        assert!(read_fields(&[0x0a, 0x05, 1]).is_none());
        assert!(read_fields(&[0xff; 11]).is_none());
        assert!(read_fields(&[0x00]).is_none());
        assert_eq!(read_partial_success(&[]), None);
        // partial_success { rejected_spans: 3, error_message: "no" }
        let body = [0x0a, 0x06, 0x08, 0x03, 0x12, 0x02, b'n', b'o'];
        assert_eq!(read_partial_success(&body), Some((3, "no".into())));
    }
}
