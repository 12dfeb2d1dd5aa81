//! CORS origin patterns: parsed once at load, matched per request without allocating.
//!
//! Accepted forms (what `cors.allow_origins` holds):
//! - `*`: any origin (the gateway then answers `Access-Control-Allow-Origin: *`, and validation
//!   refuses it together with credentials);
//! - an exact serialized origin, `scheme://host[:port]` (no path, no trailing slash, no userinfo);
//! - a pattern whose leftmost host label is `*`: `https://*.example.com[:port]`. The `*` stands for
//!   one or more whole labels (`a.example.com`, `a.b.example.com`), never for `example.com` itself
//!   and never for part of a label, and at least two labels must follow it (`https://*.com` is
//!   refused: it would allow every registrant of a TLD).
//!
//! Invariants: no regex; matching is byte comparison with ASCII case folding of scheme and host
//! (browsers send lower case, but a crafted `Origin` must not slip through on case). `null` is
//! never accepted as a configured origin: sandboxed iframes, `file:` pages and redirects send it,
//! so allowing it would allow anyone able to produce such a page.

/// One compiled entry of `allow_origins`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OriginPattern {
    /// `*`
    Any,
    /// An exact origin, lower-cased.
    Exact(String),
    /// `scheme://*.suffix[:port]`: `prefix` is `scheme://`, `suffix` is `.suffix[:port]`
    /// (lower-cased; the port part included only when given).
    Wildcard { prefix: String, suffix: String },
}

impl OriginPattern {
    /// Parses one configured origin or pattern; the error says what is wrong and how to write it.
    pub fn parse(s: &str) -> Result<OriginPattern, String> {
        if s == "*" {
            return Ok(OriginPattern::Any);
        }
        if s.eq_ignore_ascii_case("null") {
            return Err("`null` is sent by sandboxed and file: pages; allowing it would allow anyone who can create such a page".into());
        }
        let Some((scheme, rest)) = s.split_once("://") else {
            return Err(format!("`{s}` is not an origin: expected `https://host[:port]` or `https://*.example.com`"));
        };
        let scheme_ok = scheme.as_bytes().first().is_some_and(u8::is_ascii_alphabetic)
            && scheme.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'));
        if !scheme_ok {
            return Err(format!("`{s}`: invalid scheme `{scheme}`"));
        }
        if rest.contains(['/', '?', '#', '@']) {
            return Err(format!(
                "`{s}`: an origin has no path, query, fragment or user (browsers send `{scheme}://host[:port]`)"
            ));
        }
        let (host, port) = match rest.rsplit_once(':') {
            // `[::1]` alone: the colon belongs to the IPv6 literal.
            Some((h, _)) if h.contains(':') && !h.ends_with(']') => (rest, None),
            Some((h, p)) => (h, Some(p)),
            None => (rest, None),
        };
        if let Some(p) = port {
            if p.is_empty() || p.parse::<u16>().is_err() || p.starts_with('0') {
                return Err(format!("`{s}`: invalid port `{p}`"));
            }
        }
        let (wild, name) = match host.strip_prefix("*.") {
            Some(n) => (true, n),
            None => (false, host),
        };
        if name.contains('*') {
            return Err(format!("`{s}`: `*` may only be the whole leftmost label, as in `https://*.example.com`"));
        }
        let is_ipv6 = name.starts_with('[') && name.ends_with(']');
        if !is_ipv6 && !crate::net::is_dns_name(name) && name.parse::<std::net::Ipv4Addr>().is_err() {
            return Err(format!("`{s}`: `{name}` is not a host name"));
        }
        if wild && name.split('.').count() < 2 {
            return Err(format!(
                "`{s}`: a wildcard needs at least two labels after `*.` (e.g. `https://*.example.com`)"
            ));
        }
        let lower = s.to_ascii_lowercase();
        if wild {
            let prefix = format!("{}://", scheme.to_ascii_lowercase());
            let suffix = lower[prefix.len() + 1..].to_string();
            Ok(OriginPattern::Wildcard { prefix, suffix })
        } else {
            Ok(OriginPattern::Exact(lower))
        }
    }

    /// Does the request's `Origin` value match? `Any` matches every origin but `null`.
    pub fn matches(&self, origin: &[u8]) -> bool {
        match self {
            OriginPattern::Any => !origin.eq_ignore_ascii_case(b"null"),
            OriginPattern::Exact(o) => origin.eq_ignore_ascii_case(o.as_bytes()),
            OriginPattern::Wildcard { prefix, suffix } => {
                let (p, s) = (prefix.as_bytes(), suffix.as_bytes());
                if origin.len() <= p.len() + s.len() {
                    return false;
                }
                let head = &origin[..p.len()];
                let mid = &origin[p.len()..origin.len() - s.len()];
                let tail = &origin[origin.len() - s.len()..];
                // `mid` is the labels the `*` stands for: letters, digits, `-` and inner dots only
                // (no port, no `@`, no second scheme can hide there).
                head.eq_ignore_ascii_case(p)
                    && tail.eq_ignore_ascii_case(s)
                    && !mid.starts_with(b".")
                    && !mid.ends_with(b".")
                    && !mid.windows(2).any(|w| w == b"..")
                    && mid.iter().all(|&b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_match() {
        let w = OriginPattern::parse("https://*.example.com").unwrap();
        assert!(w.matches(b"https://a.example.com"));
        assert!(w.matches(b"https://A.b.Example.com"));
        assert!(!w.matches(b"https://example.com"));
        assert!(!w.matches(b"http://a.example.com"));
        assert!(!w.matches(b"https://a.example.com.evil.com"));
        assert!(!w.matches(b"https://evilexample.com"));
        assert!(!w.matches(b"https://a.example.com:8443"));
        assert!(!w.matches(b"https://x@a.example.com"));
        assert!(!w.matches(b"https://.example.com"));
        let p = OriginPattern::parse("https://*.example.com:8443").unwrap();
        assert!(p.matches(b"https://a.example.com:8443"));
        assert!(!p.matches(b"https://a.example.com"));
        let e = OriginPattern::parse("https://App.example.com").unwrap();
        assert!(e.matches(b"https://app.example.com"));
        assert!(!e.matches(b"https://app.example.com.evil"));
        assert!(OriginPattern::parse("http://localhost:3000").unwrap().matches(b"http://localhost:3000"));
        assert!(!OriginPattern::Any.matches(b"null"));
        for bad in [
            "null",
            "example.com",
            "https://example.com/",
            "https://*example.com",
            "https://*.com",
            "https://a.*.example.com",
            "https://example.com:0",
            "https://example.com:99999",
            "https://u@example.com",
            "1https://example.com",
        ] {
            assert!(OriginPattern::parse(bad).is_err(), "{bad}");
        }
    }
}
