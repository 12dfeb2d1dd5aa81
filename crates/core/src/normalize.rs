//! Request-target normalisation: the path that is matched is the path that is forwarded.
//!
//! Rules (documented in docs/configuration.md): percent-escapes of unreserved characters are
//! decoded (`%41` → `A`), other escapes are kept with upper-case hex; `%2F` and `%5C` stay encoded
//! (they are data, not separators); `%00`, malformed escapes, raw `\`, control characters,
//! spaces, `#` and raw non-ASCII bytes are refused (400); repeated slashes are merged; `.` and
//! `..` segments (also when written as `%2E`) are resolved, never above the root; a dot segment
//! carrying path parameters (`..;x`, `.;x`) is refused, since origins disagree on it (Tomcat and
//! Spring resolve `/public/..;/admin` to `/admin`). The query string is kept byte-for-byte.
//! Anything we cannot normalise unambiguously is refused, never guessed.

/// A normalised origin-form target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NormalTarget {
    pub path: String,
    /// The raw query without `?`, if any.
    pub query: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TargetError(pub &'static str);

fn unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Characters allowed raw in a path (RFC 3986 pchar + `/`), besides `%` escapes.
fn path_char(b: u8) -> bool {
    unreserved(b)
        || matches!(b, b'/' | b':' | b'@' | b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b';' | b'=')
}

/// Characters allowed in a query string: every visible ASCII byte but `#`. The query is forwarded
/// byte-for-byte and is not a path (a `\` in it is no separator), and this must agree with the
/// proxy's fast path, which skips normalisation for such queries.
fn query_char(b: u8) -> bool {
    b.is_ascii_graphic() && b != b'#'
}

/// Normalises an origin-form target (`/a/b?x=1`). Absolute-form targets must be reduced to their
/// path first by the caller.
pub fn normalize_target(raw: &[u8]) -> Result<NormalTarget, TargetError> {
    if raw.first() != Some(&b'/') {
        return Err(TargetError("request target must start with `/`"));
    }
    let (path_raw, query) = match raw.iter().position(|&b| b == b'?') {
        Some(q) => (&raw[..q], Some(&raw[q + 1..])),
        None => (raw, None),
    };
    if let Some(q) = query {
        if !q.iter().all(|&b| query_char(b)) {
            return Err(TargetError("invalid character in query string"));
        }
    }
    // 1. Decode unreserved escapes, validate everything else.
    let mut decoded: Vec<u8> = Vec::with_capacity(path_raw.len());
    let mut i = 0;
    while i < path_raw.len() {
        let b = path_raw[i];
        if b == b'%' {
            let (Some(h), Some(l)) =
                (path_raw.get(i + 1).copied().and_then(hex), path_raw.get(i + 2).copied().and_then(hex))
            else {
                return Err(TargetError("malformed percent-escape in path"));
            };
            let v = h * 16 + l;
            if v == 0 {
                return Err(TargetError("encoded NUL in path"));
            }
            if unreserved(v) {
                decoded.push(v);
            } else {
                decoded.push(b'%');
                decoded.push(b"0123456789ABCDEF"[h as usize]);
                decoded.push(b"0123456789ABCDEF"[l as usize]);
            }
            i += 3;
        } else if b == b'\\' {
            return Err(TargetError("backslash in path"));
        } else if path_char(b) {
            decoded.push(b);
            i += 1;
        } else {
            return Err(TargetError("invalid character in path"));
        }
    }
    // 2. Merge slashes and resolve dot segments (RFC 3986 §5.2.4), segment by segment.
    let trailing_slash = decoded.ends_with(b"/");
    let mut out: Vec<&[u8]> = Vec::new();
    let mut last_was_dot = false;
    for seg in decoded.split(|&b| b == b'/') {
        last_was_dot = false;
        match seg {
            b"" => {}
            b"." => last_was_dot = true,
            b".." => {
                out.pop();
                last_was_dot = true;
            }
            s if s.starts_with(b".;") || s.starts_with(b"..;") => {
                return Err(TargetError("dot segment with path parameters"));
            }
            s => out.push(s),
        }
    }
    let mut path = String::with_capacity(decoded.len());
    for s in &out {
        path.push('/');
        // All bytes are ASCII by construction.
        path.push_str(std::str::from_utf8(s).map_err(|_| TargetError("invalid path"))?);
    }
    if path.is_empty() || ((trailing_slash || last_was_dot) && !path.ends_with('/')) {
        path.push('/');
    }
    let query = match query {
        Some(q) => Some(std::str::from_utf8(q).map_err(|_| TargetError("invalid query"))?.to_string()),
        None => None,
    };
    Ok(NormalTarget { path, query })
}

/// Fast path: is this raw path already in normal form (so matching can skip allocation)?
pub fn is_normal_path(p: &[u8]) -> bool {
    if p.first() != Some(&b'/') {
        return false;
    }
    let mut prev_slash = false;
    for (i, &b) in p.iter().enumerate() {
        if b == b'/' {
            if prev_slash {
                return false;
            }
            prev_slash = true;
            // `/.` followed by `/`, `.`, `;` or end is (or may be) a dot segment.
            if p.get(i + 1) == Some(&b'.') {
                match p.get(i + 2) {
                    None | Some(b'/') | Some(b'.') | Some(b';') => return false,
                    _ => {}
                }
            }
        } else {
            prev_slash = false;
            if !(path_char(b)) {
                return false;
            }
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> Result<String, TargetError> {
        normalize_target(s.as_bytes()).map(|t| match t.query {
            Some(q) => format!("{}?{}", t.path, q),
            None => t.path,
        })
    }

    #[test]
    fn table() {
        let ok = [
            ("/", "/"),
            ("/a/b", "/a/b"),
            ("//admin", "/admin"),
            ("/./admin", "/admin"),
            ("/x/../admin", "/admin"),
            ("/%61dmin", "/admin"),
            ("/%2e%2e/admin", "/admin"),
            ("/a/%2E/b", "/a/b"),
            ("/../../etc", "/etc"),
            ("/admin%2f", "/admin%2F"),
            ("/x/..%2fadmin", "/x/..%2Fadmin"),
            ("/a/b/", "/a/b/"),
            ("/a/b/..", "/a/"),
            ("/a?x=1&y=%2F", "/a?x=1&y=%2F"),
            ("/admin;x", "/admin;x"),
            ("/a..;b/c", "/a..;b/c"),
            ("/x/...;/y", "/x/...;/y"),
            ("/%7Euser", "/~user"),
            ("/a%c0%afb", "/a%C0%AFb"),
        ];
        for (i, o) in ok {
            assert_eq!(n(i).as_deref(), Ok(o), "input {i}");
        }
        for bad in [
            "/admin%00",
            "/%zz",
            "/%4",
            "/\\admin",
            "/a b",
            "/a#frag",
            "x",
            "/\u{e9}",
            "/public/..;/admin",
            "/.;/admin",
            "/x/%2e%2e;jsessionid=1/admin",
            "/admin/..;",
        ] {
            assert!(n(bad).is_err(), "accepted {bad}");
        }
    }

    #[test]
    fn query_accepts_every_visible_byte_but_hash() {
        // Same verdict as the proxy's fast path (`is_ascii_graphic() && != '#'`), whatever the path.
        for b in 0u8..=255 {
            let raw = [&b"/x/../a?q="[..], &[b]].concat();
            let expected = b.is_ascii_graphic() && b != b'#';
            assert_eq!(normalize_target(&raw).is_ok(), expected, "query byte {b:#04x}");
        }
        assert_eq!(n("/x/../a?q=a\\b").as_deref(), Ok("/a?q=a\\b"));
    }

    #[test]
    fn fast_path_agrees() {
        for p in ["/", "/a/b", "/a/b/", "/a.b/c", "/.well-known/x", "/a;b=c"] {
            assert!(is_normal_path(p.as_bytes()), "{p}");
            assert_eq!(n(p).unwrap(), p);
        }
        for p in ["//a", "/./a", "/a/..", "/a/.", "/%41", "/a\\b", "/.;/a", "/..;/a"] {
            assert!(!is_normal_path(p.as_bytes()), "{p}");
        }
    }
}
