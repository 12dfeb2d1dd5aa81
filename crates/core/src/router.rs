//! The route table: host → path → method/header/query predicates, built once per snapshot.
//!
//! Precedence (documented in docs/configuration.md and pinned by tests): routes listing the exact
//! request host, then wildcard-host routes (longest suffix first), then host-less routes. Inside
//! each host group: exact path, then template, then longest segment-aware prefix, then regex; ties
//! go to config order. A route is chosen only if its method, header and query predicates hold. If
//! some route's path matched and only the method did not, the answer is 405 with `Allow`.
//!
//! Invariants: lookups allocate nothing unless a template captured parameters; predicates were
//! compiled (regexes built, names lower-cased) when the table was built.

// FxHash: the maps are built from config and only looked up per request (no inserts from the
// network, so no collision flooding); SipHash cost ~160 instructions per request here (callgrind).
use rustc_hash::FxHashMap as HashMap;

use regex::{Regex, RegexSet};

use crate::http1::Headers;

/// A compiled predicate on a header or query value.
#[derive(Debug, Clone)]
pub struct ValuePred {
    pub name: String,
    pub kind: PredKind,
    pub invert: bool,
}

#[derive(Debug, Clone)]
pub enum PredKind {
    Exact(String),
    Regex(Regex),
    Present(bool),
}

impl ValuePred {
    fn test(&self, value: Option<&[u8]>) -> bool {
        let r = match (&self.kind, value) {
            (PredKind::Present(want), v) => v.is_some() == *want,
            (_, None) => false,
            (PredKind::Exact(e), Some(v)) => v == e.as_bytes(),
            (PredKind::Regex(re), Some(v)) => std::str::from_utf8(v).is_ok_and(|s| re.is_match(s)),
        };
        r != self.invert
    }
}

/// Path matcher of one route.
#[derive(Debug, Clone)]
pub enum PathSpec {
    Exact(String),
    Prefix(String),
    Template(String),
    Regex(String),
}

/// What the router needs to know about one route.
#[derive(Debug, Clone)]
pub struct RouteSpec {
    /// Lower-case hosts; `*.example.com` for wildcards; empty = any host.
    pub hosts: Vec<String>,
    pub path: PathSpec,
    /// Upper-case methods; empty = any.
    pub methods: Vec<String>,
    pub headers: Vec<ValuePred>,
    pub query: Vec<ValuePred>,
}

/// The request as the router sees it.
pub struct RequestView<'a> {
    /// Lower-case host without port.
    pub host: &'a str,
    pub path: &'a str,
    pub method: &'a [u8],
    pub headers: &'a Headers,
    pub query: Option<&'a str>,
}

/// Result of a lookup.
#[derive(Debug, PartialEq, Eq)]
pub enum Lookup {
    Found { route: usize, params: Vec<(String, String)> },
    MethodNotAllowed { allow: Vec<String> },
    NotFound,
}

#[derive(Default)]
struct Bucket {
    exact: HashMap<String, Vec<usize>>,
    templates: Option<matchit::Router<Vec<usize>>>,
    prefixes: HashMap<String, Vec<usize>>,
    regex: Option<(RegexSet, Vec<usize>)>,
}

pub struct RouteTable {
    specs: Vec<RouteSpec>,
    exact_hosts: HashMap<String, Bucket>,
    /// (suffix including the dot, bucket), longest suffix first.
    wildcard_hosts: Vec<(String, Bucket)>,
    any_host: Bucket,
    /// `explain`'s per-route matchers, built on its first call (never by traffic).
    own_paths: std::sync::OnceLock<Vec<OwnPath>>,
}

/// A route table could not be built (validation should have caught this first).
#[derive(Debug, thiserror::Error)]
#[error("route {route}: {message}")]
pub struct BuildError {
    pub route: usize,
    pub message: String,
}

impl RouteTable {
    pub fn build(specs: Vec<RouteSpec>) -> Result<RouteTable, BuildError> {
        let mut exact_hosts: HashMap<String, Vec<usize>> = HashMap::default();
        let mut wildcard: HashMap<String, Vec<usize>> = HashMap::default();
        let mut any = Vec::new();
        for (i, s) in specs.iter().enumerate() {
            if s.hosts.is_empty() {
                any.push(i);
            }
            for h in &s.hosts {
                if let Some(suffix) = h.strip_prefix('*') {
                    wildcard.entry(suffix.to_string()).or_default().push(i);
                } else {
                    exact_hosts.entry(h.clone()).or_default().push(i);
                }
            }
        }
        let mut t = RouteTable {
            exact_hosts: HashMap::default(),
            wildcard_hosts: Vec::new(),
            any_host: Bucket::default(),
            specs: Vec::new(),
            own_paths: std::sync::OnceLock::new(),
        };
        for (h, ids) in exact_hosts {
            t.exact_hosts.insert(h, Bucket::build(&specs, &ids)?);
        }
        let mut wl: Vec<(String, Bucket)> = Vec::new();
        for (suffix, ids) in wildcard {
            wl.push((suffix, Bucket::build(&specs, &ids)?));
        }
        wl.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then(a.0.cmp(&b.0)));
        t.wildcard_hosts = wl;
        t.any_host = Bucket::build(&specs, &any)?;
        t.specs = specs;
        Ok(t)
    }

    pub fn len(&self) -> usize {
        self.specs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.specs.is_empty()
    }

    pub fn lookup(&self, req: &RequestView<'_>) -> Lookup {
        let mut allow: Vec<String> = Vec::new();
        if !self.exact_hosts.is_empty() {
            if let Some(b) = self.exact_hosts.get(req.host) {
                if let Some(found) = b.lookup(&self.specs, req, &mut allow) {
                    return found;
                }
            }
        }
        for (suffix, b) in &self.wildcard_hosts {
            // `*.example.com` matches `a.example.com` and `a.b.example.com`, not `example.com`.
            if req.host.len() > suffix.len() && req.host.ends_with(suffix.as_str()) {
                if let Some(found) = b.lookup(&self.specs, req, &mut allow) {
                    return found;
                }
            }
        }
        if let Some(found) = self.any_host.lookup(&self.specs, req, &mut allow) {
            return found;
        }
        if allow.is_empty() {
            Lookup::NotFound
        } else {
            allow.sort();
            allow.dedup();
            Lookup::MethodNotAllowed { allow }
        }
    }
}

impl Bucket {
    fn build(specs: &[RouteSpec], ids: &[usize]) -> Result<Bucket, BuildError> {
        let mut b = Bucket::default();
        let mut templates: HashMap<String, Vec<usize>> = HashMap::default();
        let mut regexes: Vec<(usize, String)> = Vec::new();
        for &i in ids {
            match &specs[i].path {
                PathSpec::Exact(p) => b.exact.entry(p.clone()).or_default().push(i),
                PathSpec::Prefix(p) => b.prefixes.entry(p.clone()).or_default().push(i),
                PathSpec::Template(p) => templates.entry(p.clone()).or_default().push(i),
                PathSpec::Regex(r) => regexes.push((i, format!("^(?:{r})$"))),
            }
        }
        if !templates.is_empty() {
            // Sorted insertion: matchit's conflict detection depends on order (matchit #96).
            let mut keys: Vec<_> = templates.into_iter().collect();
            keys.sort_by(|a, b| a.0.cmp(&b.0));
            let mut r = matchit::Router::new();
            for (tpl, ids) in keys {
                let first = ids[0];
                r.insert(tpl, ids).map_err(|e| BuildError { route: first, message: e.to_string() })?;
            }
            b.templates = Some(r);
        }
        if !regexes.is_empty() {
            let set = RegexSet::new(regexes.iter().map(|(_, r)| r.as_str()))
                .map_err(|e| BuildError { route: regexes[0].0, message: e.to_string() })?;
            b.regex = Some((set, regexes.into_iter().map(|(i, _)| i).collect()));
        }
        Ok(b)
    }

    fn lookup(&self, specs: &[RouteSpec], req: &RequestView<'_>, allow: &mut Vec<String>) -> Option<Lookup> {
        if !self.exact.is_empty() {
            if let Some(ids) = self.exact.get(req.path) {
                if let Some(i) = pick(specs, ids, req, allow) {
                    return Some(Lookup::Found { route: i, params: Vec::new() });
                }
            }
        }
        if let Some(t) = &self.templates {
            if let Ok(m) = t.at(req.path) {
                if let Some(i) = pick(specs, m.value, req, allow) {
                    let params = m.params.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
                    return Some(Lookup::Found { route: i, params });
                }
            }
        }
        if !self.prefixes.is_empty() {
            // Candidate prefixes from the longest to the shortest, at segment boundaries.
            let path = req.path;
            let p = path.as_bytes();
            let try_prefix = |cand: &str, allow: &mut Vec<String>| {
                self.prefixes.get(cand).and_then(|ids| pick(specs, ids, req, allow))
            };
            if let Some(i) = try_prefix(path, allow) {
                return Some(Lookup::Found { route: i, params: Vec::new() });
            }
            let mut end = p.len();
            while let Some(pos) = p[..end].iter().rposition(|&b| b == b'/' || b == b';') {
                if pos == 0 {
                    break;
                }
                if p[pos] == b'/' && pos + 1 < p.len() {
                    if let Some(i) = try_prefix(&path[..pos + 1], allow) {
                        return Some(Lookup::Found { route: i, params: Vec::new() });
                    }
                }
                if let Some(i) = try_prefix(&path[..pos], allow) {
                    return Some(Lookup::Found { route: i, params: Vec::new() });
                }
                end = pos;
            }
            if path != "/" {
                if let Some(i) = try_prefix("/", allow) {
                    return Some(Lookup::Found { route: i, params: Vec::new() });
                }
            }
        }
        if let Some((set, ids)) = &self.regex {
            let matches = set.matches(req.path);
            if matches.matched_any() {
                let cands: Vec<usize> = matches.iter().map(|k| ids[k]).collect();
                if let Some(i) = pick(specs, &cands, req, allow) {
                    return Some(Lookup::Found { route: i, params: Vec::new() });
                }
            }
        }
        None
    }
}

/// Why one route did or did not match a request (`gatehouse explain`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// This route was chosen.
    Chosen,
    /// Everything matched, but a route with higher precedence was chosen.
    Shadowed,
    /// The request's host is not among the route's hosts.
    Host,
    /// The path matcher does not match the normalised path.
    Path,
    /// A header predicate failed (the header's name).
    Header(String),
    /// A query predicate failed (the parameter's name).
    Query(String),
    /// Host, path and predicates matched, but not the method.
    Method,
}

impl PathSpec {
    /// Does this matcher alone match `path`? (The table answers the same through its indexes.)
    /// Compiles the matcher on every call; `explain` keeps its compiled matchers.
    pub fn matches(&self, path: &str) -> bool {
        OwnPath::compile(self).matches(self, path)
    }
}

/// One route's path matcher compiled on its own, apart from the table's shared indexes (a
/// template in a router of its own, a regex of its own): what `explain` evaluates each route by.
enum OwnPath {
    Plain,
    Template(Option<matchit::Router<()>>),
    Regex(Option<Regex>),
}

impl OwnPath {
    fn compile(spec: &PathSpec) -> OwnPath {
        match spec {
            PathSpec::Exact(_) | PathSpec::Prefix(_) => OwnPath::Plain,
            PathSpec::Template(t) => {
                let mut r = matchit::Router::new();
                OwnPath::Template(r.insert(t.as_str(), ()).is_ok().then_some(r))
            }
            PathSpec::Regex(re) => OwnPath::Regex(Regex::new(&format!("^(?:{re})$")).ok()),
        }
    }

    fn matches(&self, spec: &PathSpec, path: &str) -> bool {
        match (spec, self) {
            (PathSpec::Exact(p), _) => path == p,
            (PathSpec::Prefix(p), _) => {
                p == "/"
                    || path == p
                    || (p.ends_with('/') && path.starts_with(p.as_str()))
                    || (path.starts_with(p.as_str()) && matches!(path.as_bytes().get(p.len()), Some(b'/' | b';')))
            }
            (_, OwnPath::Template(r)) => r.as_ref().is_some_and(|r| r.at(path).is_ok()),
            (_, OwnPath::Regex(r)) => r.as_ref().is_some_and(|r| r.is_match(path)),
            (_, OwnPath::Plain) => false,
        }
    }
}

fn host_matches(hosts: &[String], host: &str) -> bool {
    hosts.is_empty()
        || hosts.iter().any(|h| match h.strip_prefix('*') {
            Some(suffix) => host.len() > suffix.len() && host.ends_with(suffix),
            None => h == host,
        })
}

impl RouteTable {
    /// The lookup result, plus a verdict for every route in config order. Slow (it evaluates each
    /// route on its own); for tooling, never for traffic.
    pub fn explain(&self, req: &RequestView<'_>) -> (Lookup, Vec<Verdict>) {
        let lookup = self.lookup(req);
        let chosen = match &lookup {
            Lookup::Found { route, .. } => Some(*route),
            _ => None,
        };
        // Each route's own matcher, compiled on the first call (a regex compiles in tens of
        // microseconds: per call, that was most of an explain).
        let own = self.own_paths.get_or_init(|| self.specs.iter().map(|s| OwnPath::compile(&s.path)).collect());
        let verdicts = self
            .specs
            .iter()
            .enumerate()
            .map(|(i, s)| {
                if !host_matches(&s.hosts, req.host) {
                    return Verdict::Host;
                }
                if !own[i].matches(&s.path, req.path) {
                    return Verdict::Path;
                }
                if let Some(p) = s.headers.iter().find(|p| !p.test(req.headers.get(&p.name))) {
                    return Verdict::Header(p.name.clone());
                }
                if let Some(p) = s.query.iter().find(|p| !p.test(query_value(req.query, &p.name).as_deref())) {
                    return Verdict::Query(p.name.clone());
                }
                if !(s.methods.is_empty() || s.methods.iter().any(|m| m.as_bytes() == req.method)) {
                    return Verdict::Method;
                }
                if chosen == Some(i) {
                    Verdict::Chosen
                } else {
                    Verdict::Shadowed
                }
            })
            .collect();
        (lookup, verdicts)
    }

    /// The route specs, in config order.
    pub fn specs(&self) -> &[RouteSpec] {
        &self.specs
    }
}

/// The first route (config order) whose predicates hold; records methods that would have matched.
fn pick(specs: &[RouteSpec], ids: &[usize], req: &RequestView<'_>, allow: &mut Vec<String>) -> Option<usize> {
    for &i in ids {
        let s = &specs[i];
        if !s.headers.iter().all(|p| p.test(req.headers.get(&p.name))) {
            continue;
        }
        if !s.query.iter().all(|p| p.test(query_value(req.query, &p.name).as_deref())) {
            continue;
        }
        if s.methods.is_empty() || s.methods.iter().any(|m| m.as_bytes() == req.method) {
            return Some(i);
        }
        allow.extend(s.methods.iter().cloned());
    }
    None
}

/// The first value of query parameter `name`, percent-decoded (`+` is kept as is).
pub fn query_value(query: Option<&str>, name: &str) -> Option<Vec<u8>> {
    let q = query?;
    for pair in q.split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if k == name {
            return Some(crate::http1::percent_decode(v.as_bytes()));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(hosts: &[&str], path: PathSpec, methods: &[&str]) -> RouteSpec {
        RouteSpec {
            hosts: hosts.iter().map(|s| s.to_string()).collect(),
            path,
            methods: methods.iter().map(|s| s.to_string()).collect(),
            headers: vec![],
            query: vec![],
        }
    }

    fn look(t: &RouteTable, host: &str, path: &str, method: &str) -> Lookup {
        let h = Headers::new();
        t.lookup(&RequestView { host, path, method: method.as_bytes(), headers: &h, query: None })
    }

    fn found(l: Lookup) -> usize {
        match l {
            Lookup::Found { route, .. } => route,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn precedence() {
        let t = RouteTable::build(vec![
            spec(&[], PathSpec::Prefix("/".into()), &[]),                   // 0
            spec(&[], PathSpec::Prefix("/api".into()), &[]),                // 1
            spec(&[], PathSpec::Template("/api/users/{id}".into()), &[]),   // 2
            spec(&[], PathSpec::Exact("/api/users/me".into()), &[]),        // 3
            spec(&[], PathSpec::Regex("/api/v[0-9]+/.*".into()), &[]),      // 4
            spec(&["a.example.com"], PathSpec::Prefix("/".into()), &[]),    // 5
            spec(&["*.example.com"], PathSpec::Prefix("/api".into()), &[]), // 6
            spec(&[], PathSpec::Prefix("/api/users".into()), &["POST"]),    // 7
        ])
        .unwrap();
        assert_eq!(found(look(&t, "x", "/api/users/me", "GET")), 3);
        assert_eq!(found(look(&t, "x", "/api/users/42", "GET")), 2);
        assert_eq!(found(look(&t, "x", "/api/orders", "GET")), 1);
        assert_eq!(found(look(&t, "x", "/api/v2/x", "GET")), 1); // prefix before regex
        assert_eq!(found(look(&t, "x", "/apix", "GET")), 0); // segment-aware
        assert_eq!(found(look(&t, "x", "/api;v=1", "GET")), 1);
        assert_eq!(found(look(&t, "a.example.com", "/api/users/42", "GET")), 5); // exact host first
        assert_eq!(found(look(&t, "b.example.com", "/api/x", "GET")), 6);
        assert_eq!(found(look(&t, "b.example.com", "/other", "GET")), 0); // falls through
        assert_eq!(found(look(&t, "x", "/api/users", "POST")), 7);
        assert_eq!(found(look(&t, "x", "/api/users", "GET")), 1);
    }

    #[test]
    fn method_not_allowed() {
        let t = RouteTable::build(vec![
            spec(&[], PathSpec::Exact("/a".into()), &["GET", "HEAD"]),
            spec(&[], PathSpec::Exact("/a".into()), &["POST"]),
        ])
        .unwrap();
        assert_eq!(found(look(&t, "x", "/a", "POST")), 1);
        assert_eq!(
            look(&t, "x", "/a", "DELETE"),
            Lookup::MethodNotAllowed { allow: vec!["GET".into(), "HEAD".into(), "POST".into()] }
        );
        assert_eq!(look(&t, "x", "/b", "GET"), Lookup::NotFound);
    }

    #[test]
    fn regex_is_anchored_and_params_captured() {
        let t = RouteTable::build(vec![
            spec(&[], PathSpec::Regex("/v[0-9]+".into()), &[]),
            spec(&[], PathSpec::Template("/files/{*rest}".into()), &[]),
        ])
        .unwrap();
        assert_eq!(found(look(&t, "x", "/v1", "GET")), 0);
        assert_eq!(look(&t, "x", "/v1/x", "GET"), Lookup::NotFound);
        match look(&t, "x", "/files/a/b", "GET") {
            Lookup::Found { route: 1, params } => assert_eq!(params, vec![("rest".into(), "a/b".into())]),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn explain_agrees_with_lookup() {
        let t = RouteTable::build(vec![
            spec(&[], PathSpec::Prefix("/".into()), &[]),
            spec(&[], PathSpec::Template("/u/{id}".into()), &["GET"]),
            spec(&["a.example.com"], PathSpec::Exact("/x".into()), &[]),
            spec(&[], PathSpec::Prefix("/api".into()), &["POST"]),
        ])
        .unwrap();
        let h = Headers::new();
        let req = RequestView { host: "b.example.com", path: "/u/7", method: b"GET", headers: &h, query: None };
        let (l, v) = t.explain(&req);
        assert!(matches!(l, Lookup::Found { route: 1, .. }));
        assert_eq!(v, vec![Verdict::Shadowed, Verdict::Chosen, Verdict::Host, Verdict::Path]);
        let req = RequestView { host: "b.example.com", path: "/api;v=2", method: b"GET", headers: &h, query: None };
        assert_eq!(t.explain(&req).1[3], Verdict::Method);
    }

    #[test]
    fn explain_keeps_its_own_matchers() {
        // The per-route matchers are compiled on the first explain and reused: later calls
        // answer as the first did, and as each matcher compiled alone does.
        let t = RouteTable::build(vec![
            spec(&[], PathSpec::Template("/u/{id}".into()), &[]),
            spec(&[], PathSpec::Regex("/r/v[0-9]+/.*".into()), &[]),
            spec(&[], PathSpec::Prefix("/p".into()), &[]),
        ])
        .unwrap();
        let h = Headers::new();
        for _ in 0..2 {
            for path in ["/u/7", "/u/7/x", "/r/v2/a", "/r/vx/a", "/p;a", "/px"] {
                let req = RequestView { host: "h", path, method: b"GET", headers: &h, query: None };
                let (_, v) = t.explain(&req);
                for (i, s) in t.specs().iter().enumerate() {
                    assert_eq!(v[i] != Verdict::Path, s.path.matches(path), "{path} route {i}");
                }
            }
        }
    }

    #[test]
    fn query_values() {
        assert_eq!(query_value(Some("a=1&b=x%20y"), "b"), Some(b"x y".to_vec()));
        assert_eq!(query_value(Some("a"), "a"), Some(vec![]));
        assert_eq!(query_value(Some("a=1"), "c"), None);
    }
}
