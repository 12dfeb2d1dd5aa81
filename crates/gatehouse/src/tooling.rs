//! Config tooling: `gatehouse explain` (which route a request takes, and why the others do not)
//! and `gatehouse diff` (what changes between two configs).
//!
//! Invariants: both run the real loader and validation first (an invalid config is reported like
//! `gatehouse validate` does) and the real compiled route table, so what `explain` says is what the
//! data plane does; neither binds nor contacts anything.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use gatehouse_config::Config;
use gatehouse_core::http1::Headers;
use gatehouse_core::normalize::normalize_target;
use gatehouse_core::router::{Lookup, PathSpec, RequestView, Verdict};
use gatehouse_core::snapshot::Snapshot;
use serde_json::Value;

/// A request given on the command line.
pub struct ExplainRequest {
    pub method: String,
    /// `http://host[:port]/path?query` or `/path?query`.
    pub url: String,
    /// `Name: value` pairs.
    pub headers: Vec<String>,
}

fn one_line(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Object(m) => m.iter().map(|(k, v)| format!("{k}={}", one_line(v))).collect::<Vec<_>>().join(" "),
        other => other.to_string(),
    }
}

fn path_text(p: &PathSpec) -> String {
    match p {
        PathSpec::Exact(s) => format!("exact {s}"),
        PathSpec::Prefix(s) => format!("prefix {s}"),
        PathSpec::Template(s) => format!("template {s}"),
        PathSpec::Regex(s) => format!("regex {s}"),
    }
}

/// Explains how `snapshot` routes `req`. Returns the text to print, or an error for bad input.
pub fn explain(snapshot: &Snapshot, req: &ExplainRequest) -> Result<String, String> {
    let (authority, target) = match req.url.split_once("://") {
        Some((_, rest)) => match rest.find(['/', '?']) {
            Some(i) if rest.as_bytes()[i] == b'/' => (Some(rest[..i].to_string()), rest[i..].to_string()),
            Some(i) => (Some(rest[..i].to_string()), format!("/{}", &rest[i..])),
            None => (Some(rest.to_string()), "/".to_string()),
        },
        None => (None, req.url.clone()),
    };
    let mut header_lines = String::new();
    for h in &req.headers {
        let (k, v) = h.split_once(':').ok_or_else(|| format!("header `{h}` must be `Name: value`"))?;
        // Host is written once below (from the URL, else from this header).
        if !k.trim().eq_ignore_ascii_case("host") {
            let _ = write!(header_lines, "{}: {}\r\n", k.trim(), v.trim());
        }
    }
    let host_header = req
        .headers
        .iter()
        .filter_map(|h| h.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("host"))
        .map(|(_, v)| v.trim().to_string());
    let host_full = authority.or(host_header).unwrap_or_else(|| "localhost".to_string());
    let host = host_full.rsplit_once(':').filter(|(h, _)| !h.ends_with(']') || h.starts_with('[')).map_or(
        host_full.as_str(),
        |(h, p)| if p.chars().all(|c| c.is_ascii_digit()) { h } else { host_full.as_str() },
    );
    let host = host.to_ascii_lowercase();
    let normal = normalize_target(target.as_bytes()).map_err(|e| format!("the request would get 400: {e}"))?;
    // Parse the headers with the real parser, so predicates see what the gateway would see.
    let raw = format!("{} / HTTP/1.1\r\nhost: {host_full}\r\n{header_lines}\r\n", req.method);
    let mut buf = bytes::BytesMut::from(raw.as_bytes());
    let limits = gatehouse_core::http1::HeadLimits { max_head: 1 << 20, max_headers: 256, max_uri: 1 << 16 };
    let headers: Headers = match gatehouse_core::http1::parse_request(&mut buf, limits) {
        Ok(Some(h)) => h.headers,
        Ok(None) => return Err("incomplete request".into()),
        Err(e) => return Err(format!("the request would get 400: {e}")),
    };
    let view = RequestView {
        host: &host,
        path: &normal.path,
        method: req.method.as_bytes(),
        headers: &headers,
        query: normal.query.as_deref(),
    };
    let (lookup, verdicts) = snapshot.router.explain(&view);
    let cfg = &snapshot.config;
    let mut out = String::new();
    let _ = writeln!(out, "Request:   {} {}  (host {host})", req.method, target);
    let _ = writeln!(
        out,
        "Path:      {} (normalised{})",
        normal.path,
        if normal.path == target.split('?').next().unwrap_or("") { ", unchanged" } else { "" }
    );
    let _ = writeln!(out);
    match &lookup {
        Lookup::Found { route, params } => {
            let r = &cfg.routes[*route];
            let spec = &snapshot.router.specs()[*route];
            let compiled = &snapshot.routes[*route];
            let _ = writeln!(out, "Matched:   {} (routes[{route}])", r.name);
            let hosts = if spec.hosts.is_empty() { "any".to_string() } else { spec.hosts.join(", ") };
            let methods = if spec.methods.is_empty() { "any".to_string() } else { spec.methods.join(", ") };
            let _ = writeln!(out, "  match:     {}; hosts {hosts}; methods {methods}", path_text(&spec.path));
            if !params.is_empty() {
                let p: Vec<String> = params.iter().map(|(k, v)| format!("{k}={v}")).collect();
                let _ = writeln!(out, "  params:    {}", p.join(", "));
            }
            let mut phases: Vec<String> = Vec::new();
            for p in &r.policies {
                phases.push(shown(&serde_json::to_value(p).unwrap_or(Value::Null)));
            }
            if !r.request_headers.set.is_empty()
                || !r.request_headers.add.is_empty()
                || !r.request_headers.remove.is_empty()
            {
                phases.push("request_headers (set/add/remove)".into());
            }
            if !r.response_headers.set.is_empty()
                || !r.response_headers.add.is_empty()
                || !r.response_headers.remove.is_empty()
            {
                phases.push("response_headers (set/add/remove)".into());
            }
            if phases.is_empty() {
                let _ = writeln!(out, "  policies:  none");
            } else {
                let _ = writeln!(out, "  policies:  (in order)");
                for (i, p) in phases.iter().enumerate() {
                    let _ = writeln!(out, "    {}. {p}", i + 1);
                }
            }
            let u = &compiled.upstream;
            let targets: Vec<String> = u
                .targets
                .iter()
                .map(|t| {
                    format!("{} (weight {}{})", t.url, t.weight, if t.state.is_healthy() { "" } else { ", unhealthy" })
                })
                .collect();
            let _ = writeln!(out, "  upstream:  {} via {}: {}", u.name, u.balancer.name(), targets.join(", "));
            let forwarded = gatehouse_core::request::sanitize::rewrite_path(compiled, &normal.path, params);
            let q = normal.query.as_deref().map(|q| format!("?{q}")).unwrap_or_default();
            let _ = writeln!(out, "  forwards:  {} {forwarded}{q}", req.method);
        }
        Lookup::MethodNotAllowed { allow } => {
            let _ = writeln!(out, "No route:  405 method_not_allowed (Allow: {})", allow.join(", "));
        }
        Lookup::NotFound => {
            let _ = writeln!(out, "No route:  404 route_not_found");
        }
    }
    let others: Vec<String> = verdicts
        .iter()
        .enumerate()
        .filter(|(_, v)| **v != Verdict::Chosen)
        .map(|(i, v)| {
            let spec = &snapshot.router.specs()[i];
            let why = match v {
                Verdict::Chosen => String::new(),
                Verdict::Shadowed => "matches too, but the chosen route takes precedence".to_string(),
                Verdict::Host => format!("host {host} is not in [{}]", spec.hosts.join(", ")),
                Verdict::Path => format!("path: {} does not match {}", path_text(&spec.path), normal.path),
                Verdict::Header(n) => format!("header predicate on `{n}` fails"),
                Verdict::Query(n) => format!("query predicate on `{n}` fails"),
                Verdict::Method => format!("method {} not in [{}]", req.method, spec.methods.join(", ")),
            };
            format!("  routes[{i}] {}: {why}", cfg.routes[i].name)
        })
        .collect();
    if !others.is_empty() {
        let _ = writeln!(out, "\nOther routes:");
        for o in others {
            let _ = writeln!(out, "{o}");
        }
    }
    Ok(out)
}

fn by_name(list: &Value) -> BTreeMap<String, Value> {
    list.as_array()
        .map(|a| {
            a.iter()
                .enumerate()
                .map(|(i, v)| {
                    let name = v
                        .get("name")
                        .and_then(Value::as_str)
                        .map(str::to_string)
                        .or_else(|| v.get("address").and_then(Value::as_str).map(str::to_string))
                        .unwrap_or_else(|| format!("#{i}"));
                    (name, v.clone())
                })
                .collect()
        })
        .unwrap_or_default()
}

fn changed_fields(a: &Value, b: &Value) -> Vec<String> {
    let (Some(a), Some(b)) = (a.as_object(), b.as_object()) else { return vec!["value".into()] };
    let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter().filter(|k| a.get(*k) != b.get(*k)).map(|k| k.to_string()).collect()
}

/// A config value as one line, with secrets redacted the way `GET /config` redacts them
/// (secret-named fields, credentials in URLs, secret headers): `diff` and `explain` print to
/// terminals and CI logs.
fn shown(v: &Value) -> String {
    let mut v = v.clone();
    gatehouse_core::admin::redact(&mut v);
    one_line(&v)
}

/// Lists what differs between two configs: listeners, upstreams (and their targets) and routes
/// (and their policies) added, removed and changed, matched by name.
pub fn diff(old: &Config, new: &Config) -> String {
    let (a, b) = (serde_json::to_value(old).unwrap_or(Value::Null), serde_json::to_value(new).unwrap_or(Value::Null));
    let mut out = String::new();
    for section in ["listeners", "upstreams", "routes", "consumers"] {
        let (oa, ob) = (by_name(&a[section]), by_name(&b[section]));
        for name in ob.keys().filter(|n| !oa.contains_key(*n)) {
            let _ = writeln!(out, "+ {section}: {name} added");
        }
        for name in oa.keys().filter(|n| !ob.contains_key(*n)) {
            let _ = writeln!(out, "- {section}: {name} removed");
        }
        for (name, va) in &oa {
            let Some(vb) = ob.get(name) else { continue };
            if va == vb {
                continue;
            }
            let _ = writeln!(out, "~ {section}: {name} changed: {}", changed_fields(va, vb).join(", "));
            if section == "upstreams" {
                let urls = |v: &Value| -> Vec<String> {
                    v["targets"]
                        .as_array()
                        .map_or(vec![], |t| t.iter().filter_map(|x| x["url"].as_str().map(str::to_string)).collect())
                };
                let (ua, ub) = (urls(va), urls(vb));
                for u in ub.iter().filter(|u| !ua.contains(u)) {
                    let _ = writeln!(out, "    + target {}", shown(&Value::String(u.clone())));
                }
                for u in ua.iter().filter(|u| !ub.contains(u)) {
                    let _ = writeln!(out, "    - target {}", shown(&Value::String(u.clone())));
                }
            }
            if section == "routes" && va.get("policies") != vb.get("policies") {
                let pols = |v: &Value| v.get("policies").and_then(Value::as_array).cloned().unwrap_or_default();
                let (pa, pb) = (pols(va), pols(vb));
                for p in pb.iter().filter(|p| !pa.contains(p)) {
                    let _ = writeln!(out, "    + policy {}", shown(p));
                }
                for p in pa.iter().filter(|p| !pb.contains(p)) {
                    let _ = writeln!(out, "    - policy {}", shown(p));
                }
            }
        }
    }
    // Whole sections: only whether they changed (their values may hold secrets).
    for section in ["admin", "server", "cluster", "access_log", "tracing", "metrics"] {
        if a.get(section) != b.get(section) {
            let _ = writeln!(out, "~ {section} changed");
        }
    }
    if out.is_empty() {
        out.push_str("no changes\n");
    }
    out
}
