//! Validation of `routes[]`: names and upstream references, the match (hosts, path matchers,
//! methods, header and query predicates), rewrites, header operations, limits, retry, deadline,
//! hedging, and conflicts between routes (exact duplicates, template conflicts).
//!
//! Invariants: the same rules as the rest of `validate/` (every problem collected with its
//! path, nothing stops early). Paths and templates are checked with the same `crate::path` rules
//! the router applies, regexes are compiled as the router compiles them, and templates are
//! inserted into a `matchit` router per host bucket, as the router does, so a route that passes
//! can always be compiled. A route whose match failed to parse takes no part in the shadowing
//! check.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use super::{Items, Validator, HOP_BY_HOP_HEADERS};
use crate::net::{is_dns_name, is_token};
use crate::path::{check_config_path, check_rewrite, parse_template, Template};
use crate::types::{Config, DeadlineFormat, HeaderOps, PathMatch, Retry, RetryOn, Route, RouteMatch, ValueMatch};
use crate::yaml::{join_index, join_key};

/// Most attempts a route may make for one request (the first included).
pub const MAX_RETRY_ATTEMPTS: u32 = 10;

/// Compiles a regex as the data plane will (as written, and anchored for whole-path matching).
pub fn compile_regex(re: &str) -> Result<regex::Regex, String> {
    let describe = |e: regex::Error| {
        let text = e.to_string();
        let detail = text
            .lines()
            .find_map(|l| l.trim().strip_prefix("error: "))
            .map(str::to_string)
            .unwrap_or_else(|| text.lines().last().unwrap_or("").trim().to_string());
        format!("invalid regex: {detail}")
    };
    regex::Regex::new(re).map_err(describe)?;
    regex::Regex::new(&format!("^(?:{re})$")).map_err(describe)
}

/// Checks a route host: a DNS name or IP (case-insensitive), or `*.` followed by a DNS name.
pub fn check_host(h: &str) -> Result<(), String> {
    if h.is_empty() {
        return Err("host must not be empty".to_string());
    }
    if h == "*" {
        return Err("`*` is not a host: leave `hosts` out to match any host".to_string());
    }
    if let Some(v6) = h.strip_prefix('[') {
        return match v6.split_once(']') {
            Some((ip, "")) if ip.parse::<std::net::Ipv6Addr>().is_ok() => Ok(()),
            Some((ip, rest)) if rest.starts_with(':') => {
                Err(format!("ports are not part of host matching: write `[{ip}]`"))
            }
            _ => Err(format!("`{h}` is not a valid IPv6 host: write it as `[::1]`")),
        };
    }
    if h.parse::<std::net::Ipv6Addr>().is_ok() {
        return Err(format!("IPv6 hosts are written in brackets: `[{h}]`"));
    }
    if let Some((name, port)) = h.rsplit_once(':') {
        if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("ports are not part of host matching: write `{name}`"));
        }
        return Err(format!("`{h}` is not a valid host"));
    }
    if let Some(stripped) = h.strip_suffix('.') {
        return Err(format!("remove the trailing dot: write `{stripped}`"));
    }
    let (wild, rest) = match h.strip_prefix("*.") {
        Some(rest) => (true, rest),
        None => (false, h),
    };
    if rest.contains('*') {
        return Err(format!("`{h}`: a wildcard is only allowed as the whole first label, as in `*.example.com`"));
    }
    if !wild && rest.parse::<std::net::Ipv4Addr>().is_ok() {
        return Ok(());
    }
    if is_dns_name(rest) {
        Ok(())
    } else {
        Err(format!("`{h}` is not a valid host: expected a DNS name, an IP address or `*.example.com`"))
    }
}

impl Validator<'_> {
    pub(super) fn routes(&mut self, cfg: &Config, partial: &Items) {
        let mut known: Vec<&str> = Vec::new();
        for n in &partial.upstream_names {
            if !known.contains(&n.as_str()) {
                known.push(n);
            }
        }
        let mut names: HashMap<&str, String> = HashMap::new();
        let mut seen_matches: HashMap<String, (String, &str)> = HashMap::new();
        // Parsed templates: (route path, route name, hosts, template text).
        let mut templates: Vec<(String, &str, &[String], &str)> = Vec::new();

        for (pos, r) in cfg.routes.iter().enumerate() {
            let i = partial.route_ix.get(pos).copied().unwrap_or(pos);
            let p = join_index("routes", i);
            self.name(&join_key(&p, "name"), "route", &r.name);
            if let Some(first) = names.get(r.name.as_str()) {
                self.err(join_key(&p, "name"), format!("duplicate route name `{}` (also {first})", r.name));
            } else {
                names.insert(&r.name, p.clone());
            }
            if !known.contains(&r.upstream.as_str()) {
                let list = if known.is_empty() {
                    "none are defined".to_string()
                } else {
                    format!("known: {}", known.join(", "))
                };
                self.err(join_key(&p, "upstream"), format!("unknown upstream {:?} ({list})", r.upstream));
            }
            let template = self.route_match(&r.matches, &join_key(&p, "match"));
            if let (Some(_), Some(PathMatch::Template(t))) = (&template, &r.matches.path) {
                templates.push((p.clone(), r.name.as_str(), r.matches.hosts.as_slice(), t.as_str()));
            }
            self.rewrite(r, template.as_ref(), &p);
            self.header_ops(&r.request_headers, &join_key(&p, "request_headers"), true);
            self.header_ops(&r.response_headers, &join_key(&p, "response_headers"), false);
            if r.max_body_bytes.is_some_and(|b| b.0 == 0) {
                self.err(join_key(&p, "max_body_bytes"), "must be greater than 0");
            }
            if r.timeout.is_some_and(|t| t.0.is_zero()) {
                self.err(join_key(&p, "timeout"), "must be greater than 0");
            }
            self.policies(&r.policies, cfg, &join_key(&p, "policies"));
            self.upgrades(r, &p);
            self.retry(&r.retry, &join_key(&p, "retry"));
            if let Some(d) = &r.deadline {
                let dp = join_key(&p, "deadline");
                self.positive_dur(join_key(&dp, "timeout"), &d.timeout);
                if let Some(h) = &d.header {
                    if !is_token(h) {
                        self.err(join_key(&dp, "header"), format!("invalid header name {h:?}"));
                    } else if HOP_BY_HOP_HEADERS.contains(&h.to_ascii_lowercase().as_str()) {
                        self.err(join_key(&dp, "header"), format!("`{h}` is managed by the gateway"));
                    }
                }
                if d.format == DeadlineFormat::Grpc && d.timeout.0.as_millis() > 99_999_999 {
                    self.err(join_key(&dp, "timeout"), "too long for the grpc-timeout format (8 digits of ms)");
                }
            }
            if let Some(h) = &r.hedge {
                self.positive_dur(join_key(&join_key(&p, "hedge"), "delay"), &h.delay);
            }
            if let Some(cb) = &r.circuit_breaker {
                self.circuit_breaker(cb, &join_key(&p, "circuit_breaker"));
            }
            let key = match_key(&r.matches);
            if partial.tainted_routes.contains(&i) {
                // Its match may lack parts that failed to parse; comparing it would mislead.
            } else if let Some((first, first_name)) = seen_matches.get(&key) {
                self.err(
                    join_key(&p, "match"),
                    format!(
                        "shadowed by {first} ({first_name:?}): it has exactly the same match, so this route can never be chosen"
                    ),
                );
            } else {
                seen_matches.insert(key, (p.clone(), r.name.as_str()));
            }
        }
        self.template_conflicts(&templates);
    }

    /// Checks a route's match; returns the parsed template when the path is a valid template.
    fn route_match(&mut self, m: &RouteMatch, p: &str) -> Option<Template> {
        let hp = join_key(p, "hosts");
        let mut hosts: HashMap<String, usize> = HashMap::new();
        for (k, h) in m.hosts.iter().enumerate() {
            let kp = join_index(&hp, k);
            if let Err(e) = check_host(h) {
                self.err(&kp, e);
            }
            let lower = h.to_ascii_lowercase();
            if let Some(first) = hosts.get(&lower) {
                self.err(&kp, format!("duplicate host `{h}` (also hosts[{first}]; hosts are case-insensitive)"));
            } else {
                hosts.insert(lower, k);
            }
        }
        let pp = join_key(p, "path");
        let mut template = None;
        match &m.path {
            None => {}
            Some(PathMatch::Exact(s)) => {
                if let Err(e) = check_config_path(s) {
                    self.err(join_key(&pp, "exact"), e);
                }
            }
            Some(PathMatch::Prefix(s)) => {
                if let Err(e) = check_config_path(s) {
                    self.err(join_key(&pp, "prefix"), e);
                }
            }
            Some(PathMatch::Template(s)) => match parse_template(s) {
                Ok(t) => template = Some(t),
                Err(e) => self.err(join_key(&pp, "template"), e),
            },
            Some(PathMatch::Regex(s)) => {
                if let Err(e) = compile_regex(s) {
                    self.err(join_key(&pp, "regex"), e);
                }
            }
        }
        let mp = join_key(p, "methods");
        let mut methods: HashSet<&str> = HashSet::new();
        for (k, method) in m.methods.iter().enumerate() {
            let kp = join_index(&mp, k);
            if !is_token(method) {
                self.err(&kp, format!("invalid method {method:?}: methods are tokens such as `GET` or `PURGE`"));
            } else if method.bytes().any(|b| b.is_ascii_lowercase()) {
                self.err(
                    &kp,
                    format!("methods are case-sensitive and upper-case: write `{}`", method.to_ascii_uppercase()),
                );
            }
            if !methods.insert(method) {
                self.err(&kp, format!("duplicate method `{method}`"));
            }
        }
        for (k, vm) in m.headers.iter().enumerate() {
            self.value_match(vm, &join_index(&join_key(p, "headers"), k), true);
        }
        for (k, vm) in m.query.iter().enumerate() {
            self.value_match(vm, &join_index(&join_key(p, "query"), k), false);
        }
        template
    }

    fn value_match(&mut self, vm: &ValueMatch, p: &str, header: bool) {
        if header {
            if !is_token(&vm.name) {
                self.err(join_key(p, "name"), format!("invalid header name {:?}", vm.name));
            }
        } else if vm.name.is_empty()
            || vm.name.chars().any(|c| c.is_control() || c.is_whitespace() || matches!(c, '&' | '=' | '#'))
        {
            self.err(
                join_key(p, "name"),
                format!(
                    "invalid query parameter name {:?}: it must be non-empty without spaces, `&`, `=` or `#`",
                    vm.name
                ),
            );
        }
        let set = usize::from(vm.exact.is_some()) + usize::from(vm.regex.is_some()) + usize::from(vm.present.is_some());
        if set != 1 {
            let what = if set == 0 { "set one of" } else { "set only one of" };
            self.err(p, format!("{what} `exact`, `regex` or `present`"));
        }
        if let Some(re) = &vm.regex {
            if let Err(e) = compile_regex(re) {
                self.err(join_key(p, "regex"), e);
            }
        }
    }

    fn rewrite(&mut self, r: &Route, template: Option<&Template>, p: &str) {
        let Some(rw) = &r.rewrite else { return };
        let rp = join_key(p, "rewrite");
        if rw.strip_prefix && rw.path.is_some() {
            self.err(&rp, "use either `strip_prefix` or `path`, not both");
        }
        if rw.strip_prefix && !matches!(r.matches.path, Some(PathMatch::Prefix(_))) {
            self.err(join_key(&rp, "strip_prefix"), "`strip_prefix` needs a `prefix` path matcher on this route");
        }
        if let Some(path) = &rw.path {
            let pp = join_key(&rp, "path");
            match (&r.matches.path, template) {
                (Some(PathMatch::Template(_)), Some(t)) => {
                    if let Err(e) = check_rewrite(path, t) {
                        self.err(pp, e);
                    }
                }
                // The template itself is invalid: already reported.
                (Some(PathMatch::Template(_)), None) => {}
                _ => self.err(pp, "`rewrite.path` needs a `template` path matcher on this route"),
            }
        }
    }

    fn header_ops(&mut self, ops: &HeaderOps, p: &str, request: bool) {
        // Lower-cased name → where it was first seen.
        let mut seen: HashMap<String, String> = HashMap::new();
        let mut check_name = |v: &mut Self, name: &str, path: &str, op: &str| {
            let lower = name.to_ascii_lowercase();
            if !is_token(name) {
                v.err(path, format!("invalid header name {name:?}"));
            } else if HOP_BY_HOP_HEADERS.contains(&lower.as_str()) {
                v.err(
                    path,
                    format!("`{lower}` is a hop-by-hop or framing header managed by the gateway; it cannot be {op}"),
                );
            } else if request && lower == "host" && op != "set" {
                v.err(path, format!("`host` cannot be {op} (every request needs exactly one); use `set` to change it"));
            }
            if let Some(first) = seen.get(&lower) {
                v.err(path, format!("header `{name}` is also changed at {first} (header names are case-insensitive)"));
            } else {
                seen.insert(lower, path.to_string());
            }
        };
        for (op, map) in [("set", &ops.set), ("added", &ops.add)] {
            let key = if op == "set" { "set" } else { "add" };
            for (name, value) in map.iter() {
                let path = join_key(&join_key(p, key), name);
                check_name(self, name, &path, op);
                if let Some(bad) = value.chars().find(|c| c.is_control() && *c != '\t') {
                    let which = match bad {
                        '\r' => "CR".to_string(),
                        '\n' => "LF".to_string(),
                        '\0' => "NUL".to_string(),
                        c => format!("U+{:04X}", u32::from(c)),
                    };
                    self.err(
                        path,
                        format!("header value contains a control character ({which}), which is not allowed"),
                    );
                }
            }
        }
        for (k, name) in ops.remove.iter().enumerate() {
            let path = join_index(&join_key(p, "remove"), k);
            check_name(self, name, &path, "removed");
        }
    }

    fn retry(&mut self, r: &Retry, p: &str) {
        if !(1..=MAX_RETRY_ATTEMPTS).contains(&r.attempts) {
            self.err(
                join_key(p, "attempts"),
                format!("must be between 1 (no retries) and {MAX_RETRY_ATTEMPTS}, got {}", r.attempts),
            );
        }
        let op = join_key(p, "on");
        let mut seen = Vec::new();
        for (k, on) in r.on.iter().enumerate() {
            let kp = join_index(&op, k);
            if let RetryOn::Status(s) = on {
                if !(400..=599).contains(s) {
                    self.err(&kp, format!("only 4xx and 5xx statuses can be retried, got {s}"));
                }
            }
            if seen.contains(on) {
                self.err(&kp, "listed twice");
            }
            seen.push(*on);
        }
        let bp = join_key(p, "backoff");
        self.positive_dur(join_key(&bp, "base"), &r.backoff.base);
        if r.backoff.max.0 < r.backoff.base.0 {
            self.err(
                join_key(&bp, "max"),
                format!("max ({}) must not be shorter than base ({})", r.backoff.max, r.backoff.base),
            );
        }
    }

    fn template_conflicts(&mut self, templates: &[(String, &str, &[String], &str)]) {
        // Host bucket → template text → first route (config order) using it.
        let mut buckets: BTreeMap<String, BTreeMap<&str, usize>> = BTreeMap::new();
        for (idx, (_, _, hosts, t)) in templates.iter().enumerate() {
            let keys: Vec<String> = if hosts.is_empty() {
                vec![String::new()]
            } else {
                hosts.iter().map(|h| h.to_ascii_lowercase()).collect::<BTreeSet<_>>().into_iter().collect()
            };
            for key in keys {
                buckets.entry(key).or_default().entry(t).or_insert(idx);
            }
        }
        let mut reported: HashSet<(usize, usize)> = HashSet::new();
        for (host, by_template) in &buckets {
            let mut router = matchit::Router::new();
            for (t, &idx) in by_template {
                let Err(e) = router.insert(*t, ()) else { continue };
                let host_text =
                    if host.is_empty() { "routes without hosts".to_string() } else { format!("host `{host}`") };
                match e {
                    matchit::InsertError::Conflict { with } => {
                        let other = by_template.get(with.as_str()).copied();
                        let (later, earlier) = match other {
                            Some(o) if o < idx => (idx, Some(o)),
                            Some(o) => (o, Some(idx)),
                            None => (idx, None),
                        };
                        if !reported.insert((later, earlier.unwrap_or(usize::MAX))) {
                            continue;
                        }
                        let later_t = templates[later].3;
                        let message = match earlier {
                            Some(e) => format!(
                                "template `{later_t}` conflicts with `{}` of {} ({:?}) for {host_text}: a request path could match both",
                                templates[e].3, templates[e].0, templates[e].1
                            ),
                            None => format!(
                                "template `{later_t}` conflicts with `{with}` for {host_text}: a request path could match both"
                            ),
                        };
                        self.err(join_key(&templates[later].0, "match.path.template"), message);
                    }
                    other => {
                        if reported.insert((idx, usize::MAX)) {
                            self.err(
                                join_key(&templates[idx].0, "match.path.template"),
                                format!("template `{t}` is not accepted by the router: {other}"),
                            );
                        }
                    }
                }
            }
        }
    }
}

/// A canonical text form of a match: routes with equal keys match exactly the same requests.
fn match_key(m: &RouteMatch) -> String {
    let hosts: BTreeSet<String> = m.hosts.iter().map(|h| h.to_ascii_lowercase()).collect();
    let path = match &m.path {
        None => PathMatch::Prefix("/".to_string()),
        Some(p) => p.clone(),
    };
    let methods: BTreeSet<&str> = m.methods.iter().map(String::as_str).collect();
    let preds = |v: &[ValueMatch], fold: bool| -> BTreeSet<String> {
        v.iter()
            .map(|p| {
                let name = if fold { p.name.to_ascii_lowercase() } else { p.name.clone() };
                // `present: false` is `present: true` inverted.
                let (present, invert) = match p.present {
                    Some(want) => (Some(want != p.invert), false),
                    None => (None, p.invert),
                };
                format!("{name:?} {:?} {:?} {present:?} {invert}", p.exact, p.regex)
            })
            .collect()
    };
    format!("{hosts:?}|{path:?}|{methods:?}|{:?}|{:?}", preds(&m.headers, true), preds(&m.query, false))
}
