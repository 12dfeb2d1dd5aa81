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

use gatehouse_config::path::path_char;

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
    // The path rules live in the config crate, so a matcher the validator accepts is exactly
    // what a request normalises to.
    use gatehouse_config::path::{normalize_path, PathError};
    let path_str = std::str::from_utf8(path_raw).map_err(|_| TargetError("invalid character in path"))?;
    let path = normalize_path(path_str).map_err(|e| {
        TargetError(match e {
            PathError::NotAbsolute => "request target must start with `/`",
            PathError::MalformedEscape => "malformed percent-escape in path",
            PathError::EncodedNul => "encoded NUL in path",
            PathError::Backslash => "backslash in path",
            PathError::InvalidChar(_) => "invalid character in path",
            PathError::DotSegmentParams => "dot segment with path parameters",
            PathError::EmptySegmentParams => "empty path segment with path parameters",
        })
    })?;
    let query = match query {
        Some(q) => Some(std::str::from_utf8(q).map_err(|_| TargetError("invalid query"))?.to_string()),
        None => None,
    };
    Ok(NormalTarget { path, query })
}

/// Whether a (normalised) path holds an encoded `/` or `\` (`%2F`, `%5C`, any case).
pub fn has_escaped_slash(path: &str) -> bool {
    path.as_bytes().windows(3).any(|w| matches!(w, [b'%', b'2', b'f' | b'F'] | [b'%', b'5', b'c' | b'C']))
}

/// The path with `%2F` and `%5C` decoded to `/`, then normalised again (merged slashes, dot
/// segments): what a decoding backend would make of it, so it can be routed as such.
pub fn unescape_slashes(path: &str) -> Result<String, TargetError> {
    let mut out = String::with_capacity(path.len());
    let b = path.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let two = (b.get(i + 1).copied(), b.get(i + 2).copied());
        if b[i] == b'%' && matches!(two, (Some(b'2'), Some(b'f' | b'F')) | (Some(b'5'), Some(b'c' | b'C'))) {
            out.push('/');
            i += 3;
        } else {
            out.push(char::from(b[i]));
            i += 1;
        }
    }
    normalize_target(out.as_bytes()).map(|t| t.path)
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
            // A segment that starts with `;` (parameters on an empty segment) needs the slow path.
            if p.get(i + 1) == Some(&b';') {
                return false;
            }
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
