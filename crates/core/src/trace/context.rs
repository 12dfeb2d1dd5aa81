//! W3C Trace Context (Level 1): parsing and formatting of `traceparent`, validation of
//! `tracestate`.
//!
//! Invariants: a `TraceContext` always holds a valid trace id and span id (never all zeros);
//! `parse_traceparent` accepts exactly what the spec allows (version `00` strictly, higher versions
//! by their 55-character prefix, `ff` never) and nothing else; a `tracestate` is either fully valid
//! (normalised: no empty members, no optional whitespace) or dropped, and is only ever attached to
//! a valid `traceparent`. Nothing here allocates except a kept `tracestate`.

use std::sync::Arc;

/// Length of a version-00 `traceparent`: `00-` + 32 hex + `-` + 16 hex + `-` + 2 hex.
pub const TRACEPARENT_LEN: usize = 55;
/// The W3C limit on `tracestate` list members.
pub const TRACESTATE_MAX_MEMBERS: usize = 32;
/// The length we propagate at most (the spec asks vendors to propagate at least 512 characters and
/// allows truncation beyond that, removing members longer than 128 characters first).
pub const TRACESTATE_MAX_LEN: usize = 512;

/// The sampled flag of `trace-flags`.
pub const FLAG_SAMPLED: u8 = 0x01;

/// A span's position in a trace, as carried by `traceparent` and `tracestate`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceContext {
    pub trace_id: [u8; 16],
    /// For an extracted context, the caller's span (our parent); for our spans, our own id.
    pub span_id: [u8; 8],
    pub flags: u8,
    /// Validated and normalised `tracestate`, passed on unchanged (we add no member of our own).
    pub trace_state: Option<Arc<str>>,
}

impl TraceContext {
    pub fn is_sampled(&self) -> bool {
        self.flags & FLAG_SAMPLED != 0
    }

    /// Extracts the context from the request's header values. More than one `traceparent` is
    /// invalid (the spec does not say which to trust), so it yields `None`; several `tracestate`
    /// fields are one comma-separated list, as for any list-valued HTTP header.
    pub fn extract(traceparents: &[&[u8]], tracestates: &[&[u8]]) -> Option<TraceContext> {
        let [tp] = traceparents else { return None };
        let mut ctx = parse_traceparent(tp)?;
        ctx.trace_state = parse_tracestate(tracestates);
        Some(ctx)
    }

    /// This context as a `traceparent` value (always version `00`).
    pub fn traceparent(&self) -> [u8; TRACEPARENT_LEN] {
        format_traceparent(&self.trace_id, &self.span_id, self.flags)
    }

    pub fn trace_id_hex(&self) -> String {
        hex_string(&self.trace_id)
    }

    pub fn span_id_hex(&self) -> String {
        hex_string(&self.span_id)
    }
}

/// Parses a `traceparent` value. Surrounding spaces and tabs (HTTP optional whitespace) are
/// ignored; everything else is per the W3C grammar.
pub fn parse_traceparent(value: &[u8]) -> Option<TraceContext> {
    let v = trim_ows(value);
    if v.len() < TRACEPARENT_LEN {
        return None;
    }
    let version = hex_byte(v[0], v[1])?;
    if version == 0xff || v[2] != b'-' {
        return None;
    }
    if version == 0 {
        // Version 00 is exactly 55 characters: nothing may follow the flags.
        if v.len() != TRACEPARENT_LEN {
            return None;
        }
    } else if v.len() > TRACEPARENT_LEN && v[TRACEPARENT_LEN] != b'-' {
        // A future version may append fields, but only after a dash.
        return None;
    }
    let mut trace_id = [0u8; 16];
    for (i, b) in trace_id.iter_mut().enumerate() {
        *b = hex_byte(v[3 + 2 * i], v[4 + 2 * i])?;
    }
    if v[35] != b'-' {
        return None;
    }
    let mut span_id = [0u8; 8];
    for (i, b) in span_id.iter_mut().enumerate() {
        *b = hex_byte(v[36 + 2 * i], v[37 + 2 * i])?;
    }
    if v[52] != b'-' {
        return None;
    }
    let mut flags = hex_byte(v[53], v[54])?;
    if trace_id == [0; 16] || span_id == [0; 8] {
        return None;
    }
    if version != 0 {
        // Of a future version's flags only the sampled bit has a meaning we know.
        flags &= FLAG_SAMPLED;
    }
    Some(TraceContext { trace_id, span_id, flags, trace_state: None })
}

/// Formats a version-00 `traceparent`. Only the sampled bit is propagated: the spec asks vendors
/// to zero flags they do not know.
pub fn format_traceparent(trace_id: &[u8; 16], span_id: &[u8; 8], flags: u8) -> [u8; TRACEPARENT_LEN] {
    let mut out = [b'-'; TRACEPARENT_LEN];
    out[0] = b'0';
    out[1] = b'0';
    hex_into(trace_id, &mut out[3..35]);
    hex_into(span_id, &mut out[36..52]);
    hex_into(&[flags & FLAG_SAMPLED], &mut out[53..55]);
    out
}

/// Validates `tracestate` field values (joined as one list). Returns the normalised list, or
/// `None` when absent, empty or invalid: any malformed member, a duplicate key or more than 32
/// members discards the whole header, as the spec requires. Lists longer than
/// `TRACESTATE_MAX_LEN` are truncated the way the spec recommends.
pub fn parse_tracestate(values: &[&[u8]]) -> Option<Arc<str>> {
    let mut members: Vec<&[u8]> = Vec::new();
    for value in values {
        for member in value.split(|&b| b == b',') {
            let m = trim_ows(member);
            if m.is_empty() {
                continue;
            }
            let eq = m.iter().position(|&b| b == b'=')?;
            let (key, val) = (&m[..eq], &m[eq + 1..]);
            if !valid_key(key) || !valid_value(val) {
                return None;
            }
            if members.iter().any(|o| o.starts_with(key) && o.get(key.len()) == Some(&b'=')) {
                return None;
            }
            if members.len() == TRACESTATE_MAX_MEMBERS {
                return None;
            }
            members.push(m);
        }
    }
    let joined_len = |ms: &[&[u8]]| ms.iter().map(|m| m.len()).sum::<usize>() + ms.len().saturating_sub(1);
    if joined_len(&members) > TRACESTATE_MAX_LEN {
        members.retain(|m| m.len() <= 128);
        while joined_len(&members) > TRACESTATE_MAX_LEN {
            members.pop();
        }
    }
    if members.is_empty() {
        return None;
    }
    // Every byte was checked to be printable ASCII, so this cannot fail; stay total anyway.
    let joined = members.join(&b","[..]);
    String::from_utf8(joined).ok().map(Arc::from)
}

fn valid_key(key: &[u8]) -> bool {
    let tail = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'-' | b'*' | b'/');
    match key.iter().position(|&b| b == b'@') {
        None => {
            // simple-key = lcalpha 0*255(...)
            (1..=256).contains(&key.len()) && key[0].is_ascii_lowercase() && key[1..].iter().all(tail)
        }
        Some(at) => {
            // multi-tenant-key = tenant-id "@" system-id
            let (tenant, system) = (&key[..at], &key[at + 1..]);
            (1..=241).contains(&tenant.len())
                && (tenant[0].is_ascii_lowercase() || tenant[0].is_ascii_digit())
                && tenant[1..].iter().all(tail)
                && (1..=14).contains(&system.len())
                && system[0].is_ascii_lowercase()
                && system[1..].iter().all(tail)
        }
    }
}

fn valid_value(val: &[u8]) -> bool {
    // value = 0*255(chr) nblk-chr; chr = %x20 / nblk-chr; nblk-chr = printable except "," and "="
    let nblk = |b: &u8| matches!(b, 0x21..=0x2B | 0x2D..=0x3C | 0x3E..=0x7E);
    match val.split_last() {
        Some((last, rest)) => val.len() <= 256 && nblk(last) && rest.iter().all(|b| *b == b' ' || nblk(b)),
        None => false,
    }
}

fn trim_ows(mut v: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = v {
        v = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = v {
        v = rest;
    }
    v
}

/// One byte from two lowercase hex digits (uppercase is invalid in `traceparent`).
fn hex_byte(hi: u8, lo: u8) -> Option<u8> {
    fn nib(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            _ => None,
        }
    }
    Some(nib(hi)? << 4 | nib(lo)?)
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Lowercase hex of `bytes` into `out` (which is exactly twice as long).
pub(crate) fn hex_into(bytes: &[u8], out: &mut [u8]) {
    for (i, b) in bytes.iter().enumerate() {
        out[2 * i] = HEX[usize::from(b >> 4)];
        out[2 * i + 1] = HEX[usize::from(b & 0x0f)];
    }
}

/// Lowercase hex of `bytes`, for the access log.
pub fn hex_string(bytes: &[u8]) -> String {
    let mut out = vec![0u8; bytes.len() * 2];
    hex_into(bytes, &mut out);
    // Only ASCII hex digits were written.
    out.into_iter().map(char::from).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn parses_the_spec_example() {
        let c = parse_traceparent(VALID.as_bytes()).expect("valid");
        assert_eq!(c.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(c.span_id_hex(), "00f067aa0ba902b7");
        assert!(c.is_sampled());
        assert_eq!(&c.traceparent()[..], VALID.as_bytes());
        let unsampled = parse_traceparent(b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00").expect("valid");
        assert!(!unsampled.is_sampled());
        // HTTP optional whitespace around the value is not part of it.
        assert!(parse_traceparent(format!(" {VALID}\t").as_bytes()).is_some());
    }

    #[test]
    fn rejects_invalid_vectors() {
        let bad = [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0", // short
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-", // v00 with trailing data
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", // uppercase
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00F067AA0BA902B7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0A",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01", // zero trace id
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", // zero span id
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", // forbidden version
            "0g-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7_01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-600f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-.1",
            "000-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ];
        for b in bad {
            assert!(parse_traceparent(b.as_bytes()).is_none(), "{b:?} must be rejected");
        }
    }

    #[test]
    fn future_versions_use_the_known_prefix() {
        let c = parse_traceparent(b"cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-09-whatever").expect("v cc");
        assert_eq!(c.flags, FLAG_SAMPLED, "unknown flag bits of a future version are dropped");
        assert!(parse_traceparent(b"cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").is_some());
        assert!(parse_traceparent(b"cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x").is_none());
        assert!(parse_traceparent(b"cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7").is_none());
        // Our output is always version 00 with unknown flags zeroed.
        assert_eq!(
            &format_traceparent(&c.trace_id, &c.span_id, 0xff)[..],
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        );
    }

    #[test]
    fn extract_rejects_duplicates_and_keeps_tracestate() {
        let ts: &[&[u8]] = &[b"rojo=00f067aa0ba902b7", b" congo=t61rcWkgMzE ,"];
        let c = TraceContext::extract(&[VALID.as_bytes()], ts).expect("valid");
        assert_eq!(c.trace_state.as_deref(), Some("rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"));
        assert!(TraceContext::extract(&[VALID.as_bytes(), VALID.as_bytes()], ts).is_none());
        assert!(TraceContext::extract(&[], ts).is_none());
        // An invalid tracestate is dropped; the traceparent still counts.
        let c = TraceContext::extract(&[VALID.as_bytes()], &[b"Bad=1"]).expect("valid");
        assert_eq!(c.trace_state, None);
    }

    #[test]
    fn tracestate_rules() {
        let ok = |s: &str| parse_tracestate(&[s.as_bytes()]).map(|a| a.to_string());
        assert_eq!(ok("a=1"), Some("a=1".into()));
        assert_eq!(ok("tenant@sys=v a l"), Some("tenant@sys=v a l".into()));
        assert_eq!(ok("1tenant@sys=v"), Some("1tenant@sys=v".into()));
        assert_eq!(ok(" , ,"), None);
        for bad in [
            "A=1",
            "1a=1",
            "a=",
            "a=x\ty",
            "a==1",
            "a=1=2",
            "a",
            "a=1,a=2",
            "t@=1",
            "@s=1",
            "t@S=1",
            "t@abcdefghijklmno=1",
            "a=\u{7f}",
        ] {
            assert_eq!(ok(bad), None, "{bad:?}");
        }
        let thirty_two: Vec<String> = (0..32).map(|i| format!("k{i}=v")).collect();
        assert!(ok(&thirty_two.join(",")).is_some());
        let thirty_three: Vec<String> = (0..33).map(|i| format!("k{i}=v")).collect();
        assert_eq!(ok(&thirty_three.join(",")), None, "more than 32 members discards the header");
        // Over 512 characters: long members go first, then members from the end.
        let long = format!("big={}", "x".repeat(200));
        let many: Vec<String> = (0..20).map(|i| format!("key{i:02}={}", "y".repeat(20))).collect();
        let s = format!("{},{long},{}", many[..10].join(","), many[10..].join(","));
        let out = ok(&s).expect("truncated, not dropped");
        assert!(out.len() <= TRACESTATE_MAX_LEN && !out.contains("big="), "{out}");
        assert!(out.starts_with("key00=") && !out.contains("key19="), "{out}");
    }
}
