//! Request paths as the config sees them: the normalisation contract (the same rules the data
//! plane applies to every request before matching), and path templates (`/users/{id}`,
//! `/files/{*rest}`) with their rewrite targets.
//!
//! Invariants: a path matcher in the config is accepted only if it is already in normal form,
//! because requests are normalised before matching and a non-normal matcher could never match.
//! The rules mirror `gatehouse-core`'s request normaliser: unreserved escapes decoded, other
//! escapes kept with upper-case hex (`%2F`, `%5C` stay encoded), `%00`, malformed escapes, `\`,
//! spaces, controls, `#` and non-ASCII refused, repeated slashes merged, dot segments resolved.

// Defined with the crate's other error types; re-exported here, where it is produced.
pub use crate::error::PathError;

fn unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Characters allowed raw in a path: RFC 3986 `pchar` and `/` (besides `%` escapes).
pub fn path_char(b: u8) -> bool {
    unreserved(b)
        || matches!(b, b'/' | b':' | b'@' | b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b';' | b'=')
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Normalises a request path (no query). See the module documentation for the rules.
pub fn normalize_path(raw: &str) -> Result<String, PathError> {
    let bytes = raw.as_bytes();
    if bytes.first() != Some(&b'/') {
        return Err(PathError::NotAbsolute);
    }
    let mut decoded: Vec<u8> = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let (Some(h), Some(l)) = (bytes.get(i + 1).copied().and_then(hex), bytes.get(i + 2).copied().and_then(hex))
            else {
                return Err(PathError::MalformedEscape);
            };
            let v = h * 16 + l;
            if v == 0 {
                return Err(PathError::EncodedNul);
            }
            if unreserved(v) {
                decoded.push(v);
            } else {
                decoded.push(b'%');
                decoded.push(b"0123456789ABCDEF"[usize::from(h)]);
                decoded.push(b"0123456789ABCDEF"[usize::from(l)]);
            }
            i += 3;
        } else if b == b'\\' {
            return Err(PathError::Backslash);
        } else if path_char(b) {
            decoded.push(b);
            i += 1;
        } else {
            let c = raw[i..].chars().next().unwrap_or('\u{fffd}');
            return Err(PathError::InvalidChar(c));
        }
    }
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
            // Tomcat and Spring resolve `/public/..;/admin` to `/admin`: refuse, never guess.
            s if s.starts_with(b".;") || s.starts_with(b"..;") => return Err(PathError::DotSegmentParams),
            // `/;/admin` and `/;x/admin` too: the parameters go, then the empty segment.
            s if s.starts_with(b";") => return Err(PathError::EmptySegmentParams),
            s => out.push(s),
        }
    }
    let mut path = String::with_capacity(decoded.len());
    for s in &out {
        path.push('/');
        // Only ASCII bytes were pushed above.
        path.push_str(&String::from_utf8_lossy(s));
    }
    if path.is_empty() || ((trailing_slash || last_was_dot) && !path.ends_with('/')) {
        path.push('/');
    }
    Ok(path)
}

/// Checks a path written in the config for an `exact` or `prefix` matcher: it must be in
/// normal form. The message says what to write instead.
pub fn check_config_path(p: &str) -> Result<(), String> {
    if p.is_empty() {
        return Err("path must not be empty; use `/` for the root".to_string());
    }
    if !p.starts_with('/') {
        return Err(format!("path must start with `/`: write `/{p}`"));
    }
    if let Some(c) = p.chars().find(|c| *c == '?' || *c == '#') {
        return Err(format!(
            "path must not contain `{c}`: query strings are matched with `match.query`, and fragments are never sent"
        ));
    }
    match normalize_path(p) {
        Err(e) => Err(format!("path {e}; such a request is rejected before routing, so this could never match")),
        Ok(n) if n != p => Err(format!(
            "path is not in normal form (requests are normalised before matching, so this could never match): write `{n}`"
        )),
        Ok(_) => Ok(()),
    }
}

/// A parsed path template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    /// Parameter names in order, catch-all included (without `*`).
    pub params: Vec<String>,
    /// The catch-all parameter's name, if the template ends with `{*name}`.
    pub catch_all: Option<String>,
}

fn valid_param_name(n: &str) -> bool {
    let mut chars = n.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

enum Piece<'a> {
    Lit(&'a str),
    Param { name: &'a str, catch_all: bool },
}

/// Splits `s` into literal text and `{...}` placeholders.
fn pieces(s: &str) -> Result<Vec<Piece<'_>>, String> {
    let mut out = Vec::new();
    let mut rest = s;
    while !rest.is_empty() {
        match rest.find(['{', '}']) {
            None => {
                out.push(Piece::Lit(rest));
                break;
            }
            Some(i) => {
                if rest.as_bytes()[i] == b'}' {
                    return Err("unmatched `}`: parameters are written `{name}`".to_string());
                }
                if i > 0 {
                    out.push(Piece::Lit(&rest[..i]));
                }
                let after = &rest[i + 1..];
                let Some(end) = after.find(['{', '}']).filter(|&e| after.as_bytes()[e] == b'}') else {
                    return Err("unclosed `{`: parameters are written `{name}`".to_string());
                };
                let inner = &after[..end];
                let (name, catch_all) = match inner.strip_prefix('*') {
                    Some(n) => (n, true),
                    None => (inner, false),
                };
                if !valid_param_name(name) {
                    return Err(format!(
                        "invalid parameter name `{inner}`: names are letters, digits and `_`, not starting with a digit"
                    ));
                }
                out.push(Piece::Param { name, catch_all });
                rest = &after[end + 1..];
            }
        }
    }
    Ok(out)
}

/// Parses and checks a route template: starts with `/`; `{name}` parameters (at most one per
/// segment, possibly with literal text around it), unique names, `{*rest}` only as the whole last
/// segment; the literal parts in normal form.
pub fn parse_template(t: &str) -> Result<Template, String> {
    if !t.starts_with('/') {
        return Err(format!("template must start with `/`: write `/{t}`"));
    }
    if let Some(c) = t.chars().find(|c| *c == '?' || *c == '#') {
        return Err(format!("template must not contain `{c}`: query strings are matched with `match.query`"));
    }
    let pieces = pieces(t)?;
    let mut params: Vec<String> = Vec::new();
    let mut catch_all = None;
    // Literal skeleton with each parameter replaced by `p`, to check normal form.
    let mut skeleton = String::new();
    for (idx, piece) in pieces.iter().enumerate() {
        match piece {
            Piece::Lit(l) => skeleton.push_str(l),
            Piece::Param { name, catch_all: star } => {
                if params.iter().any(|p| p == name) {
                    return Err(format!("parameter `{name}` appears twice"));
                }
                if *star {
                    let last = idx == pieces.len() - 1;
                    if !last || !skeleton.ends_with('/') {
                        return Err(format!(
                            "the catch-all `{{*{name}}}` must be the whole last segment, e.g. `/files/{{*{name}}}`"
                        ));
                    }
                    catch_all = Some(name.to_string());
                }
                params.push(name.to_string());
                skeleton.push('p');
            }
        }
    }
    // At most one parameter per segment.
    let mut in_segment = 0;
    for piece in &pieces {
        match piece {
            Piece::Lit(l) => {
                if l.contains('/') {
                    in_segment = 0;
                }
            }
            Piece::Param { name, .. } => {
                in_segment += 1;
                if in_segment > 1 {
                    return Err(format!("only one parameter per path segment is allowed (at `{{{name}}}`)"));
                }
            }
        }
    }
    match normalize_path(&skeleton) {
        Err(e) => return Err(format!("template {e}")),
        Ok(n) if n != skeleton => {
            return Err("template is not in normal form: remove `//`, `.` and `..` segments and decode escaped \
                 letters, digits and `-._~`"
                .to_string())
        }
        Ok(_) => {}
    }
    Ok(Template { params, catch_all })
}

/// Checks a `rewrite.path` against the template it rewrites: starts with `/`, uses only
/// parameters the template captures (`{name}`, or `{*name}` for the catch-all).
pub fn check_rewrite(rewrite: &str, template: &Template) -> Result<(), String> {
    if !rewrite.starts_with('/') {
        return Err(format!("rewrite path must start with `/`: write `/{rewrite}`"));
    }
    if let Some(c) = rewrite.chars().find(|c| *c == '?' || *c == '#') {
        return Err(format!("rewrite path must not contain `{c}`"));
    }
    let mut skeleton = String::new();
    for piece in pieces(rewrite)? {
        match piece {
            Piece::Lit(l) => skeleton.push_str(l),
            Piece::Param { name, catch_all } => {
                if !template.params.iter().any(|p| p == name) {
                    let known = if template.params.is_empty() {
                        "the template captures none".to_string()
                    } else {
                        format!(
                            "captured: {}",
                            template.params.iter().map(|p| format!("`{p}`")).collect::<Vec<_>>().join(", ")
                        )
                    };
                    return Err(format!("rewrite uses `{name}`, which the template does not capture ({known})"));
                }
                if catch_all && template.catch_all.as_deref() != Some(name) {
                    return Err(format!(
                        "`{{*{name}}}` names a catch-all, but `{name}` is a plain parameter: write `{{{name}}}`"
                    ));
                }
                skeleton.push('p');
            }
        }
    }
    if let Err(e) = normalize_path(&skeleton) {
        return Err(format!("rewrite path {e}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalisation_rules() {
        let ok = [
            ("/", "/"),
            ("//admin", "/admin"),
            ("/./admin", "/admin"),
            ("/x/../admin", "/admin"),
            ("/%61dmin", "/admin"),
            ("/%2e%2e/admin", "/admin"),
            ("/admin%2f", "/admin%2F"),
            ("/a/b/..", "/a/"),
            ("/a/b/", "/a/b/"),
            ("/../../etc", "/etc"),
            ("/%7Euser", "/~user"),
            ("/a;v=1", "/a;v=1"),
        ];
        for (i, o) in ok {
            assert_eq!(normalize_path(i).as_deref(), Ok(o), "{i}");
        }
        assert_eq!(normalize_path("/a%00"), Err(PathError::EncodedNul));
        assert_eq!(normalize_path("/%zz"), Err(PathError::MalformedEscape));
        assert_eq!(normalize_path("/%4"), Err(PathError::MalformedEscape));
        assert_eq!(normalize_path("/\\a"), Err(PathError::Backslash));
        assert_eq!(normalize_path("/a b"), Err(PathError::InvalidChar(' ')));
        assert_eq!(normalize_path("/\u{e9}"), Err(PathError::InvalidChar('\u{e9}')));
        assert_eq!(normalize_path("a"), Err(PathError::NotAbsolute));
    }

    #[test]
    fn config_paths() {
        assert!(check_config_path("/api").is_ok());
        assert!(check_config_path("/api/").is_ok());
        assert!(check_config_path("/a%2Fb").is_ok());
        let e = check_config_path("/api//v1").unwrap_err();
        assert!(e.contains("write `/api/v1`"), "{e}");
        assert!(check_config_path("/a/./b").unwrap_err().contains("`/a/b`"));
        assert!(check_config_path("/a/../b").unwrap_err().contains("`/b`"));
        assert!(check_config_path("/%61pi").unwrap_err().contains("`/api`"));
        assert!(check_config_path("/a%2fb").unwrap_err().contains("`/a%2Fb`"));
        assert!(check_config_path("/a?x=1").unwrap_err().contains("match.query"));
        assert!(check_config_path("/a#x").is_err());
        assert!(check_config_path("api").unwrap_err().contains("`/api`"));
        assert!(check_config_path("/a b").unwrap_err().contains("%20"));
        assert!(check_config_path("").is_err());
    }

    #[test]
    fn templates() {
        let t = parse_template("/users/{id}/posts/{post_id}").unwrap();
        assert_eq!(t.params, vec!["id", "post_id"]);
        assert_eq!(t.catch_all, None);
        let t = parse_template("/files/{*rest}").unwrap();
        assert_eq!(t.catch_all.as_deref(), Some("rest"));
        assert!(parse_template("/files/{name}.json").is_ok());
        for (bad, needle) in [
            ("users/{id}", "start with `/`"),
            ("/users/{id}/{id}", "twice"),
            ("/users/{1d}", "invalid parameter name"),
            ("/users/{}", "invalid parameter name"),
            ("/files/{*rest}/x", "whole last segment"),
            ("/files/x{*rest}", "whole last segment"),
            ("/users/{id", "unclosed"),
            ("/users/id}", "unmatched"),
            ("/a/{x}-{y}", "one parameter per path segment"),
            ("/a//{x}", "normal form"),
            ("/a/../{x}", "normal form"),
            ("/a/{x}?q", "match.query"),
        ] {
            let e = parse_template(bad).unwrap_err();
            assert!(e.contains(needle), "{bad}: {e}");
        }
    }

    #[test]
    fn rewrites() {
        let t = parse_template("/users/{id}/{*rest}").unwrap();
        assert!(check_rewrite("/v2/u/{id}/{rest}", &t).is_ok());
        assert!(check_rewrite("/v2/u/{id}/{*rest}", &t).is_ok());
        assert!(check_rewrite("/static", &t).is_ok());
        assert!(check_rewrite("/v2/{name}", &t).unwrap_err().contains("does not capture"));
        assert!(check_rewrite("/v2/{*id}", &t).unwrap_err().contains("plain parameter"));
        assert!(check_rewrite("v2/{id}", &t).unwrap_err().contains("start with `/`"));
        assert!(check_rewrite("/v2/{id", &t).is_err());
    }
}
