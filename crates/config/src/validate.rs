//! Semantic validation: everything serde cannot check (references, ranges, formats, conflicts
//! between routes), collected as a list of [`ConfigError`]s, each with its path.
//!
//! Invariants:
//! - Validation never stops early and never panics; it reports every problem it finds.
//! - A config that passes can be compiled by the data plane without any further failure:
//!   every address, URL, CIDR, regex and template here is parsed exactly as the data plane will
//!   parse it (the parsers live in [`crate::net`] and [`crate::path`] so both sides share them),
//!   and templates are inserted into a `matchit` router per host bucket, as the router does.
//! - Paths name the original list indices (`routes[3]`) even when some items failed to parse.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::SocketAddr;

use crate::load::ConfigError;
use crate::net::{is_dns_name, is_token, parse_socket_addr, parse_target_url, Cidr};
use crate::path::{check_config_path, check_rewrite, parse_template, Template};
use crate::types::{
    Balancer, Config, HashOn, HeaderOps, HealthCheck, Listener, PathMatch, Route, RouteMatch, Upstream,
    ValueMatch,
};
use crate::yaml::{join_index, join_key, line_col, Node, YValue};

/// Headers the gateway manages itself; routes may not set, add or remove them.
pub const HOP_BY_HOP_HEADERS: &[&str] =
    &["connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "content-length", "proxy-connection"];

/// Largest allowed target weight.
pub const MAX_WEIGHT: u32 = 10_000;
/// Largest allowed `pool.max_idle_per_target`.
pub const MAX_IDLE_PER_TARGET: usize = 100_000;

/// Where each path of the document is in the text: `routes[2].upstream` → (line, column) of the value.
#[derive(Debug, Clone, Default)]
pub struct SourceMap {
    locations: HashMap<String, (u64, u64)>,
}

impl SourceMap {
    /// Records the location of every node of the tree under its path.
    pub fn from_tree(root: &Node) -> SourceMap {
        let mut map = SourceMap::default();
        map.walk(root, "");
        map
    }

    fn walk(&mut self, node: &Node, path: &str) {
        if let (Some(l), Some(c)) = line_col(&node.referenced) {
            self.locations.insert(path.to_string(), (l, c));
        }
        match &node.value {
            YValue::Seq(items) => {
                for (i, item) in items.iter().enumerate() {
                    self.walk(item, &join_index(path, i));
                }
            }
            YValue::Map(entries) => {
                for (k, v) in entries {
                    self.walk(v, &join_key(path, &k.value));
                }
            }
            _ => {}
        }
    }

    /// The location of `path`, or of its nearest ancestor that is written in the document
    /// (a defaulted field points at the map that omits it). The root itself is not used.
    pub fn locate(&self, path: &str) -> (Option<u64>, Option<u64>) {
        let mut p = path;
        while !p.is_empty() {
            if let Some(&(l, c)) = self.locations.get(p) {
                return (Some(l), Some(c));
            }
            p = match (p.rfind('.'), p.ends_with(']')) {
                (_, true) => p.rfind('[').map_or("", |i| &p[..i]),
                (Some(i), false) => &p[..i],
                (None, false) => "",
            };
        }
        (None, None)
    }
}

/// Which items of a partially parsed document the `Config` holds (their original indices).
#[derive(Debug, Clone, Default)]
pub(crate) struct Items {
    /// How many listener items the document has (parsed or not).
    pub listener_items: usize,
    pub listener_ix: Vec<usize>,
    pub upstream_ix: Vec<usize>,
    pub route_ix: Vec<usize>,
    /// Every upstream name written in the document, in order, including items that failed to
    /// parse (so routes naming them are not also flagged).
    pub upstream_names: Vec<String>,
    /// Original indices of routes that had deserialization errors (their match may be partial,
    /// so they take no part in the shadowing check).
    pub tainted_routes: HashSet<usize>,
}

/// Validates a complete `Config` (e.g. one built in code); errors carry paths but no locations.
pub fn validate(cfg: &Config) -> Vec<ConfigError> {
    validate_with_locations(cfg, &SourceMap::default())
}

/// Validates a complete `Config` parsed from the document described by `map`.
pub fn validate_with_locations(cfg: &Config, map: &SourceMap) -> Vec<ConfigError> {
    let items = Items {
        listener_items: cfg.listeners.len(),
        listener_ix: (0..cfg.listeners.len()).collect(),
        upstream_ix: (0..cfg.upstreams.len()).collect(),
        route_ix: (0..cfg.routes.len()).collect(),
        upstream_names: cfg.upstreams.iter().map(|u| u.name.clone()).collect(),
        tainted_routes: HashSet::new(),
    };
    validate_items(cfg, &items, map)
}

pub(crate) fn validate_items(cfg: &Config, partial: &Items, map: &SourceMap) -> Vec<ConfigError> {
    let mut v = Validator { errors: Vec::new(), map };
    v.version(cfg);
    let listener_addrs = v.listeners(cfg, partial);
    v.admin(cfg, &listener_addrs);
    v.reserved(cfg);
    v.upstreams(cfg, partial);
    v.routes(cfg, partial);
    v.errors
}

/// The name a listener is known by: its `name`, or `listener-N` for the N-th listener.
pub fn listener_name(listener: &Listener, index: usize) -> String {
    listener.name.clone().unwrap_or_else(|| format!("listener-{index}"))
}

/// Whether `s` is a valid name for a listener, upstream or route: `[A-Za-z0-9_.-]+`.
pub fn is_valid_name(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

struct Validator<'a> {
    errors: Vec<ConfigError>,
    map: &'a SourceMap,
}

impl Validator<'_> {
    fn err(&mut self, path: impl Into<String>, message: impl Into<String>) {
        let path = path.into();
        let (line, column) = self.map.locate(&path);
        self.errors.push(ConfigError { path, line, column, message: message.into() });
    }

    fn name(&mut self, path: &str, kind: &str, name: &str) {
        if name.is_empty() {
            self.err(path, format!("{kind} name must not be empty"));
        } else if !is_valid_name(name) {
            self.err(
                path,
                format!("invalid {kind} name {name:?}: use letters, digits, `_`, `.` and `-` only"),
            );
        }
    }

    fn positive_dur(&mut self, path: String, d: &crate::units::Dur) {
        if d.0.is_zero() {
            self.err(path, "must be greater than 0");
        }
    }

    fn version(&mut self, cfg: &Config) {
        if let Some(v) = cfg.version {
            if v != 1 {
                self.err("version", format!("unsupported version {v}: this release understands version 1"));
            }
        }
    }

    fn listeners(&mut self, cfg: &Config, partial: &Items) -> Vec<(SocketAddr, String)> {
        if cfg.listeners.is_empty() && partial.listener_items == 0 {
            self.err("listeners", "at least one listener is required");
        }
        let mut names: HashMap<String, String> = HashMap::new();
        let mut addrs: Vec<(SocketAddr, String)> = Vec::new();
        for (pos, l) in cfg.listeners.iter().enumerate() {
            let i = partial.listener_ix.get(pos).copied().unwrap_or(pos);
            let p = join_index("listeners", i);
            if let Some(n) = &l.name {
                self.name(&join_key(&p, "name"), "listener", n);
            }
            let name = listener_name(l, i);
            if let Some(first) = names.get(&name) {
                let how = if l.name.is_none() { " (an unnamed listener defaults to `listener-N`)" } else { "" };
                self.err(join_key(&p, "name"), format!("duplicate listener name `{name}` (also {first}){how}"));
            } else {
                names.insert(name, p.clone());
            }
            match parse_socket_addr(&l.address) {
                Err(e) => self.err(join_key(&p, "address"), e),
                Ok(addr) => {
                    if let Some(other) = clash(&addrs, addr) {
                        self.err(join_key(&p, "address"), other);
                    }
                    addrs.push((addr, p.clone()));
                }
            }
            for (k, c) in l.trusted_proxies.iter().enumerate() {
                if let Err(e) = Cidr::parse(c) {
                    self.err(join_index(&join_key(&p, "trusted_proxies"), k), e);
                }
            }
            let lim = &l.limits;
            let lp = join_key(&p, "limits");
            for (field, value) in [
                ("max_header_bytes", lim.max_header_bytes.0),
                ("max_headers", lim.max_headers as u64),
                ("max_uri_bytes", lim.max_uri_bytes.0),
                ("max_body_bytes", lim.max_body_bytes.0),
            ] {
                if value == 0 {
                    self.err(join_key(&lp, field), "must be greater than 0");
                }
            }
            if lim.max_uri_bytes.0 > lim.max_header_bytes.0 {
                self.err(
                    join_key(&lp, "max_uri_bytes"),
                    format!(
                        "max_uri_bytes ({}) cannot exceed max_header_bytes ({}): the request line is part of the head",
                        lim.max_uri_bytes, lim.max_header_bytes
                    ),
                );
            }
            let tp = join_key(&p, "timeouts");
            self.positive_dur(join_key(&tp, "header_read"), &l.timeouts.header_read);
            self.positive_dur(join_key(&tp, "body_read"), &l.timeouts.body_read);
            self.positive_dur(join_key(&tp, "idle"), &l.timeouts.idle);
        }
        addrs
    }

    fn admin(&mut self, cfg: &Config, listeners: &[(SocketAddr, String)]) {
        let Some(admin) = &cfg.admin else { return };
        match parse_socket_addr(&admin.address) {
            Err(e) => self.err("admin.address", e),
            Ok(addr) => {
                if let Some(msg) = clash(listeners, addr) {
                    self.err("admin.address", msg);
                }
            }
        }
    }

    fn reserved(&mut self, cfg: &Config) {
        for (key, value) in [("consumers", &cfg.consumers), ("policies", &cfg.policies), ("cluster", &cfg.cluster)] {
            let empty = match value {
                None | Some(serde_json::Value::Null) => true,
                Some(serde_json::Value::Object(m)) => m.is_empty(),
                Some(serde_json::Value::Array(a)) => a.is_empty(),
                Some(serde_json::Value::String(s)) => s.is_empty(),
                Some(_) => false,
            };
            if !empty {
                self.err(key, format!("`{key}` is reserved for a later release; remove it or leave it empty"));
            }
        }
    }

    fn upstreams(&mut self, cfg: &Config, partial: &Items) {
        let mut names: HashMap<&str, String> = HashMap::new();
        for (pos, u) in cfg.upstreams.iter().enumerate() {
            let i = partial.upstream_ix.get(pos).copied().unwrap_or(pos);
            let p = join_index("upstreams", i);
            self.name(&join_key(&p, "name"), "upstream", &u.name);
            if let Some(first) = names.get(u.name.as_str()) {
                self.err(join_key(&p, "name"), format!("duplicate upstream name `{}` (also {first})", u.name));
            } else {
                names.insert(&u.name, p.clone());
            }
            self.upstream(u, &p);
        }
    }

    fn upstream(&mut self, u: &Upstream, p: &str) {
        let tp = join_key(p, "targets");
        if u.targets.is_empty() {
            self.err(&tp, "an upstream needs at least one target");
        }
        let mut seen: HashMap<String, usize> = HashMap::new();
        for (j, t) in u.targets.iter().enumerate() {
            let jp = join_index(&tp, j);
            match parse_target_url(&t.url) {
                Err(e) => self.err(join_key(&jp, "url"), e),
                Ok(url) => {
                    let authority = url.authority();
                    if let Some(first) = seen.get(&authority) {
                        self.err(
                            join_key(&jp, "url"),
                            format!("duplicate target `{authority}` (same as targets[{first}]); raise its `weight` instead"),
                        );
                    } else {
                        seen.insert(authority, j);
                    }
                }
            }
            if !(1..=MAX_WEIGHT).contains(&t.weight) {
                self.err(join_key(&jp, "weight"), format!("weight must be between 1 and {MAX_WEIGHT}, got {}", t.weight));
            }
        }
        if let Balancer::ConsistentHash(on) = &u.balancer {
            let bp = join_key(&join_key(p, "balancer"), "consistent_hash");
            match on {
                HashOn::Header(h) if !is_token(h) => {
                    self.err(join_key(&bp, "header"), format!("invalid header name {h:?}"));
                }
                HashOn::Cookie(c) if !is_token(c) => {
                    self.err(join_key(&bp, "cookie"), format!("invalid cookie name {c:?}"));
                }
                _ => {}
            }
        }
        let pp = join_key(p, "pool");
        if u.pool.max_idle_per_target > MAX_IDLE_PER_TARGET {
            self.err(
                join_key(&pp, "max_idle_per_target"),
                format!("must be at most {MAX_IDLE_PER_TARGET}, got {}", u.pool.max_idle_per_target),
            );
        }
        self.positive_dur(join_key(&pp, "idle_timeout"), &u.pool.idle_timeout);
        let top = join_key(p, "timeouts");
        self.positive_dur(join_key(&top, "connect"), &u.timeouts.connect);
        self.positive_dur(join_key(&top, "response_header"), &u.timeouts.response_header);
        if let Some(hc) = &u.health_check {
            self.health_check(hc, &join_key(p, "health_check"));
        }
    }

    fn health_check(&mut self, hc: &HealthCheck, p: &str) {
        if !hc.path.starts_with('/') {
            self.err(join_key(p, "path"), format!("health check path must start with `/`: write `/{}`", hc.path));
        } else if hc.path.bytes().any(|b| b.is_ascii_control() || b == b' ' || b >= 0x80) {
            self.err(join_key(p, "path"), "health check path must not contain spaces, control or non-ASCII characters");
        }
        self.positive_dur(join_key(p, "interval"), &hc.interval);
        if hc.timeout.0.is_zero() {
            self.err(join_key(p, "timeout"), "must be greater than 0");
        } else if hc.timeout.0 > hc.interval.0 && !hc.interval.0.is_zero() {
            self.err(
                join_key(p, "timeout"),
                format!("timeout ({}) must not exceed interval ({})", hc.timeout, hc.interval),
            );
        }
        if hc.healthy_threshold == 0 {
            self.err(join_key(p, "healthy_threshold"), "must be at least 1");
        }
        if hc.unhealthy_threshold == 0 {
            self.err(join_key(p, "unhealthy_threshold"), "must be at least 1");
        }
        let sp = join_key(p, "expected_status");
        let s = hc.expected_status;
        for (field, v) in [("min", s.min), ("max", s.max)] {
            if !(100..=599).contains(&v) {
                self.err(join_key(&sp, field), format!("status must be between 100 and 599, got {v}"));
            }
        }
        if s.min > s.max {
            self.err(&sp, format!("min ({}) must not be greater than max ({})", s.min, s.max));
        }
    }

    fn routes(&mut self, cfg: &Config, partial: &Items) {
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
                let list = if known.is_empty() { "none are defined".to_string() } else { format!("known: {}", known.join(", ")) };
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
            if !r.policies.is_empty() {
                self.err(
                    join_key(&p, "policies"),
                    "route policies arrive with the identity/rate-limit issues; none are supported yet",
                );
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
                format!("invalid query parameter name {:?}: it must be non-empty without spaces, `&`, `=` or `#`", vm.name),
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
        if vm.present == Some(false) {
            self.err(
                join_key(p, "present"),
                "`present: false` is not supported: write `present: true` with `invert: true` to require absence",
            );
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
                    self.err(path, format!("header value contains a control character ({which}), which is not allowed"));
                }
            }
        }
        for (k, name) in ops.remove.iter().enumerate() {
            let path = join_index(&join_key(p, "remove"), k);
            check_name(self, name, &path, "removed");
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
        return Err(format!(
            "`{h}`: a wildcard is only allowed as the whole first label, as in `*.example.com`"
        ));
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

/// Describes where `addr` collides with an already used address, if it does.
fn clash(used: &[(SocketAddr, String)], addr: SocketAddr) -> Option<String> {
    if addr.port() == 0 {
        return None;
    }
    for (other, path) in used {
        if other.port() != addr.port() {
            continue;
        }
        if *other == addr {
            return Some(format!("address `{addr}` is already used by {path}"));
        }
        let same_family = other.is_ipv4() == addr.is_ipv4();
        if same_family && (other.ip().is_unspecified() || addr.ip().is_unspecified()) {
            return Some(format!("address `{addr}` overlaps with `{other}` of {path} (same port, one binds every address)"));
        }
    }
    None
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
                format!("{name:?} {:?} {:?} {:?} {}", p.exact, p.regex, p.present, p.invert)
            })
            .collect()
    };
    format!("{hosts:?}|{path:?}|{methods:?}|{:?}|{:?}", preds(&m.headers, true), preds(&m.query, false))
}
