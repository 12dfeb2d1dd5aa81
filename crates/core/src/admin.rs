//! The admin API, on its own listener (default 127.0.0.1:9901), never on traffic listeners.
//!
//! Read endpoints (open): `GET /healthz` (process alive), `GET /readyz` (config loaded and
//! listeners bound, 503 while draining), `GET /config` (running config as JSON, secrets
//! redacted), `GET /config/history` (applied configs: id, hash, time, source),
//! `GET /config/history/{id}` (one of them, redacted), `GET /upstreams` (targets with health,
//! passive-health ejection and load; each upstream's circuit breaker and resilience counters;
//! routes' own breakers), `GET /metrics` (Prometheus text format).
//!
//! Write endpoints (need `Authorization: Bearer <admin.token>`; 403 when no token is configured):
//! `PUT /config` (a YAML or JSON config body), `POST /reload` (re-read the config file),
//! `POST /config/rollback/{id}`. All three go through `Gateway`'s one validate → compile → swap
//! path; a refused config answers 400 with every problem and its path, and the running config
//! stays in place.
//!
//! Invariant: read handlers only read the snapshot and registries; nothing here runs on a worker.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};

use serde_json::{json, Value};

use crate::control::{Applied, Control, ReloadError};
use crate::error::LocalResponse;
use crate::metrics::{names, Exposition};
use crate::policy::RoutePolicy;
use crate::simple_http::SimpleRequest;
use crate::state::Shared;

#[derive(Clone)]
pub struct AdminState {
    pub shared: Arc<Shared>,
    pub ready: Arc<AtomicBool>,
    /// Weak: the gateway owns the admin task.
    pub gateway: Weak<dyn Control>,
}

fn error(status: u16, code: &str, message: &str) -> LocalResponse {
    LocalResponse::json(status, json!({"error": {"status": status, "code": code, "message": message}}).to_string())
}

/// Compares in time independent of where the first difference is.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn applied_json(a: &Applied) -> Value {
    json!({
        "id": a.id,
        "hash": a.hash,
        "applied_at": crate::access_log::rfc3339_at(a.applied_at_ms),
        "source": a.source,
        "took_ms": a.took_us as f64 / 1000.0,
        "routes": a.config.routes.len(),
        "upstreams": a.config.upstreams.len(),
    })
}

fn reload_result(r: Result<Applied, ReloadError>) -> LocalResponse {
    match r {
        Ok(a) => {
            let mut v = applied_json(&a);
            v["status"] = json!("applied");
            LocalResponse::json(200, v.to_string())
        }
        Err(ReloadError::Config(errors)) => {
            let problems: Vec<Value> = errors
                .iter()
                .map(|e| json!({"path": e.path, "line": e.line, "column": e.column, "message": e.message}))
                .collect();
            let body = json!({"error": {
                "status": 400,
                "code": "invalid_config",
                "message": format!("{} problem(s); the running config is unchanged", problems.len()),
                "problems": problems,
            }});
            LocalResponse::json(400, body.to_string())
        }
        Err(e @ ReloadError::ListenersChanged(_)) => error(409, "restart_required", &e.to_string()),
        Err(e @ ReloadError::UnknownVersion(_)) => error(404, "unknown_version", &e.to_string()),
        Err(e @ ReloadError::NoFile) => error(409, "no_config_file", &e.to_string()),
        Err(e @ ReloadError::Invalid(_)) => error(400, "invalid_config", &e.to_string()),
    }
}

const REDACTED: &str = "<redacted>";

/// Header names whose configured values are credentials.
fn secret_header(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    n == "authorization"
        || n == "proxy-authorization"
        || n == "cookie"
        || n.contains("api-key")
        || n.contains("token")
        || n.contains("secret")
}

/// Keys whose values are secrets wherever they appear.
fn secret_key(k: &str) -> bool {
    let k = k.to_ascii_lowercase();
    k.contains("secret")
        || k.contains("password")
        || k.contains("token")
        || k == "key"
        || k.ends_with("_key")
        || k == "credentials"
        // API key digests and password hashes are secret-equivalent (offline guessing), and a
        // JWK's `k` is an HMAC key.
        || k == "sha256"
        || k == "k"
        || k == "client_secret"
}

/// `scheme://user:password@host/...` with the password (or a lone user, often a token)
/// replaced, for URLs whose credentials came from `${ENV}`.
fn redact_url_credentials(s: &str) -> Option<String> {
    let (scheme, rest) = s.split_once("://")?;
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let at = rest[..authority_end].rfind('@')?;
    let userinfo = &rest[..at];
    let shown = match userinfo.split_once(':') {
        Some((user, _)) => format!("{user}:{REDACTED}"),
        None => REDACTED.to_string(),
    };
    Some(format!("{scheme}://{shown}{}", &rest[at..]))
}

/// Replaces secret values in a config rendered as JSON.
pub fn redact(v: &mut Value) {
    match v {
        Value::String(s) => {
            if let Some(r) = redact_url_credentials(s) {
                *s = r;
            }
        }
        Value::Object(map) => {
            for (k, val) in map.iter_mut() {
                if secret_key(k) && !val.is_object() && !val.is_array() {
                    *val = Value::String(REDACTED.into());
                } else if k == "headers" && val.is_object() {
                    // Headers sent to a third party (an OTLP collector's API key): all values.
                    if let Value::Object(h) = val {
                        for hv in h.values_mut().filter(|v| v.is_string()) {
                            *hv = Value::String(REDACTED.into());
                        }
                    }
                } else if k == "set" || k == "add" {
                    if let Value::Object(h) = val {
                        for (hn, hv) in h.iter_mut() {
                            if secret_header(hn) {
                                *hv = Value::String(REDACTED.into());
                            }
                        }
                    }
                } else {
                    redact(val);
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(redact),
        _ => {}
    }
}

impl AdminState {
    /// Checks the bearer token of a write request; `Err` is the response to send.
    fn authorize(&self, req: &SimpleRequest) -> Result<(), LocalResponse> {
        let snap = self.shared.snapshot.load();
        let Some(token) = snap.config.admin.as_ref().and_then(|a| a.token.as_deref()) else {
            return Err(error(
                403,
                "admin_writes_disabled",
                "set admin.token to enable config changes over the admin API",
            ));
        };
        // The scheme name is case-insensitive (RFC 9110 §11.1).
        let given = req
            .header("authorization")
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map_or("", |(_, t)| t.trim());
        if constant_time_eq(given.as_bytes(), token.as_bytes()) {
            Ok(())
        } else {
            Err(error(401, "unauthorized", "missing or wrong admin token").header("www-authenticate", "Bearer"))
        }
    }

    /// The `Allow` value of an endpoint that accepts writes, `None` for read-only ones.
    fn write_allow(path: &str) -> Option<&'static str> {
        match path {
            "/config" => Some("GET, HEAD, PUT"),
            "/reload" => Some("POST"),
            p if p.starts_with("/config/rollback/") => Some("POST"),
            _ => None,
        }
    }

    fn write(&self, req: &SimpleRequest, allow: &'static str) -> LocalResponse {
        let path = req.path.as_str();
        let wanted = if path == "/config" { "PUT" } else { "POST" };
        if req.method != wanted {
            return error(405, "method_not_allowed", &format!("{path} accepts {allow}")).header("allow", allow);
        }
        if let Err(resp) = self.authorize(req) {
            return resp;
        }
        let Some(gw) = self.gateway.upgrade() else {
            return error(503, "stopping", "the gateway is stopping");
        };
        match path {
            "/config" => match std::str::from_utf8(&req.body) {
                Ok(text) => reload_result(gw.apply_text(text, "admin")),
                Err(_) => error(400, "invalid_config", "the body is not UTF-8"),
            },
            "/reload" => reload_result(gw.reload_file("admin")),
            p => match p["/config/rollback/".len()..].parse::<u64>() {
                Ok(id) => reload_result(gw.rollback(id)),
                Err(_) => error(404, "unknown_version", "rollback needs a numeric history id"),
            },
        }
    }

    pub async fn handle(&self, req: SimpleRequest) -> LocalResponse {
        if req.method != "GET" && req.method != "HEAD" {
            // Loading and compiling a large config takes a while: off the control runtime, so
            // health checks, signals and other admin requests keep being served meanwhile.
            if let Some(allow) = AdminState::write_allow(&req.path) {
                let state = self.clone();
                return tokio::task::spawn_blocking(move || state.write(&req, allow))
                    .await
                    .unwrap_or_else(|_| error(500, "internal", "the config change did not complete"));
            }
            return error(405, "method_not_allowed", "this admin endpoint is read-only").header("allow", "GET, HEAD");
        }
        if let Some(id) = req.path.strip_prefix("/config/history/") {
            let gw = self.gateway.upgrade();
            let entry = id.parse::<u64>().ok().and_then(|id| gw?.history().into_iter().find(|a| a.id == id));
            return match entry {
                Some(a) => {
                    let mut config = serde_json::to_value(&*a.config).unwrap_or(Value::Null);
                    redact(&mut config);
                    let mut v = applied_json(&a);
                    v["config"] = config;
                    LocalResponse::json(200, serde_json::to_string_pretty(&v).unwrap_or_default())
                }
                None => error(404, "unknown_version", "no config with that id in the history"),
            };
        }
        match req.path.as_str() {
            "/metrics" => LocalResponse::new(200, "text/plain; version=0.0.4; charset=utf-8", self.metrics_text()),
            "/config/history" => {
                let list: Vec<Value> =
                    self.gateway.upgrade().map(|g| g.history()).unwrap_or_default().iter().map(applied_json).collect();
                LocalResponse::json(200, serde_json::to_string_pretty(&json!({ "history": list })).unwrap_or_default())
            }
            "/healthz" => LocalResponse::json(200, r#"{"status":"ok"}"#),
            "/readyz" => {
                if self.ready.load(Ordering::Relaxed) && !self.shared.stopping.load(Ordering::Relaxed) {
                    LocalResponse::json(200, r#"{"status":"ready"}"#)
                } else {
                    LocalResponse::json(503, r#"{"status":"draining"}"#)
                }
            }
            "/config" => {
                let snap = self.shared.snapshot.load();
                let mut v = serde_json::to_value(&*snap.config).unwrap_or(Value::Null);
                redact(&mut v);
                LocalResponse::json(200, serde_json::to_string_pretty(&v).unwrap_or_default())
            }
            "/tls" => {
                // Served certificates per TLS listener, as loaded by the running snapshot.
                let snap = self.shared.snapshot.load();
                let now = crate::tls::unix_now();
                let listeners: Vec<Value> = snap
                    .listeners
                    .iter()
                    .filter_map(|l| l.tls.as_ref().map(|t| (l, t)))
                    .map(|(l, t)| {
                        let certs: Vec<Value> = t
                            .certs
                            .iter()
                            .map(|c| {
                                serde_json::json!({
                                    "names": c.names,
                                    "subject": c.subject,
                                    "not_after": crate::tls::x509::rfc3339(c.not_after),
                                    "not_after_seconds": c.not_after,
                                    "expires_in_days": (c.not_after - now).div_euclid(86_400),
                                    "default": c.default,
                                    "cert_file": c.cert_file,
                                })
                            })
                            .collect();
                        serde_json::json!({
                            "listener": l.name,
                            "address": l.address.to_string(),
                            "client_auth": t.client_auth,
                            "alpn": t.config.alpn_protocols.iter().map(|p| String::from_utf8_lossy(p)).collect::<Vec<_>>(),
                            "certificates": certs,
                        })
                    })
                    .collect();
                let body = serde_json::json!({ "listeners": listeners });
                LocalResponse::json(200, serde_json::to_string_pretty(&body).unwrap_or_default())
            }
            "/upstreams" => {
                let snap = self.shared.snapshot.load();
                let now = crate::upstream::mono_ns();
                let ups: Vec<Value> = snap
                    .upstreams
                    .iter()
                    .map(|u| {
                        let targets: Vec<Value> = u
                            .targets
                            .iter()
                            .map(|t| {
                                let s = &t.state;
                                let ejected = s.outlier.is_ejected(now);
                                let health = if !s.actively_healthy() {
                                    "unhealthy"
                                } else if ejected {
                                    "ejected"
                                } else {
                                    "healthy"
                                };
                                let ejection = ejected.then(|| {
                                    let left = s.outlier.ejected_until().saturating_sub(now);
                                    json!({
                                        "reason": s.outlier.reason().map(|r| r.as_str()),
                                        "remaining_ms": left / 1_000_000,
                                        "until": crate::access_log::rfc3339(
                                            std::time::SystemTime::now() + std::time::Duration::from_nanos(left)
                                        ),
                                    })
                                });
                                json!({
                                    "url": t.url,
                                    "weight": t.weight,
                                    "protocol": if t.http2 { "http2" } else { "http1" },
                                    "health": health,
                                    "active_checks": u.health_check.is_some(),
                                    "last_check": s.last_check.lock().ok().and_then(|l| l.clone()),
                                    "ejection": ejection,
                                    "ejections_total": s.outlier.ejections_total(),
                                    "consecutive_failures": s.outlier.consecutive_failures(),
                                    "inflight": s.inflight.load(Ordering::Relaxed),
                                    "latency_ewma_ms": s.ewma_ns.load(Ordering::Relaxed) as f64 / 1e6,
                                })
                            })
                            .collect();
                        let st = &u.state;
                        json!({
                            "name": u.name,
                            "balancer": u.balancer.name(),
                            "healthy_targets": u.targets.iter().filter(|t| t.state.is_healthy_at(now)).count(),
                            "circuit": st.breaker.as_ref().map(|b| breaker_json(b, now)),
                            "requests_in_flight": st.requests_in_flight(),
                            "pending_connects": st.pending_connects(),
                            "counters": {
                                "retries": st.retries_total(),
                                "retries_budget_exhausted": st.retries_exhausted_total(),
                                "hedges": st.hedges_total(),
                                "ejections": st.ejections_total(),
                                "overloaded": st.overloaded_total(),
                            },
                            "targets": targets,
                        })
                    })
                    .collect();
                let routes: Vec<Value> = snap
                    .routes
                    .iter()
                    .filter_map(|r| {
                        r.breaker.as_ref().map(|b| json!({"route": r.name, "circuit": breaker_json(b, now)}))
                    })
                    .collect();
                LocalResponse::json(
                    200,
                    serde_json::to_string_pretty(&json!({ "upstreams": ups, "route_breakers": routes }))
                        .unwrap_or_default(),
                )
            }
            _ => error(
                404,
                "not_found",
                "admin endpoints: /healthz /readyz /metrics /config /config/history /upstreams /tls /reload",
            ),
        }
    }

    /// The Prometheus exposition of everything the gateway counts.
    pub fn metrics_text(&self) -> String {
        let shared = &self.shared;
        let snap = shared.snapshot.load();
        let m = &shared.metrics;
        let mut x = Exposition::new();
        let mut cells: Vec<&crate::metrics::RouteMetrics> = snap.metrics.routes.iter().map(|c| &**c).collect();
        if let Some(u) = &snap.metrics.unmatched {
            cells.push(u);
        }
        crate::metrics::render_routes(&mut x, &cells);
        crate::metrics::render_consumers(&mut x, &snap.metrics.consumers);

        x.family(names::OPEN_CONNECTIONS, "gauge", "Open client connections on traffic listeners.");
        x.sample(names::OPEN_CONNECTIONS, &[], shared.connections.load(Ordering::Relaxed) as f64);
        x.family(names::REQUESTS_IN_FLIGHT, "gauge", "Requests being processed.");
        x.sample(names::REQUESTS_IN_FLIGHT, &[], shared.inflight.load(Ordering::Relaxed) as f64);

        let now = crate::upstream::mono_ns();
        x.family(
            names::TARGET_HEALTH,
            "gauge",
            "1 for the target's current state: healthy, unhealthy (active checks) or ejected (passive health).",
        );
        for u in &snap.upstreams {
            for t in &u.targets {
                let current = if !t.state.actively_healthy() {
                    "unhealthy"
                } else if t.state.outlier.is_ejected(now) {
                    "ejected"
                } else {
                    "healthy"
                };
                for state in ["healthy", "unhealthy", "ejected"] {
                    let on = (state == current) as u8 as f64;
                    x.sample(names::TARGET_HEALTH, &[("upstream", &u.name), ("target", &t.url), ("state", state)], on);
                }
            }
        }
        x.family(names::TARGET_EJECTIONS, "counter", "Passive-health ejections of each target.");
        for u in &snap.upstreams {
            for t in &u.targets {
                let n = t.state.outlier.ejections_total();
                x.sample(names::TARGET_EJECTIONS, &[("upstream", &u.name), ("target", &t.url)], n as f64);
            }
        }
        type Get = fn(&crate::upstream::UpstreamState) -> u64;
        let upstream_counters: [(&str, &str, &str, Get); 7] = [
            (names::RETRIES, "counter", "Retries sent (each a further attempt of a request).", |s| s.retries_total()),
            (names::RETRIES_EXHAUSTED, "counter", "Retries the retry budget refused.", |s| s.retries_exhausted_total()),
            (names::HEDGES, "counter", "Hedged (second, parallel) attempts sent.", |s| s.hedges_total()),
            (names::OVERLOADED, "counter", "Requests refused by the upstream's max_requests or max_pending.", |s| {
                s.overloaded_total()
            }),
            (names::EJECTIONS, "counter", "Passive-health ejections in the upstream.", |s| s.ejections_total()),
            (names::UPSTREAM_IN_FLIGHT, "gauge", "Requests in flight to the upstream.", |s| {
                s.requests_in_flight() as u64
            }),
            (names::PENDING_CONNECTS, "gauge", "Connection attempts in progress to the upstream.", |s| {
                s.pending_connects() as u64
            }),
        ];
        for (name, kind, help, get) in upstream_counters {
            x.family(name, kind, help);
            for u in &snap.upstreams {
                x.sample(name, &[("upstream", &u.name)], get(&u.state) as f64);
            }
        }
        // Circuit breakers: the upstreams' own (route label empty), then routes' own.
        use crate::upstream::breaker::{BreakerState, CircuitBreaker};
        let breakers: Vec<(&str, &str, &CircuitBreaker)> = snap
            .upstreams
            .iter()
            .filter_map(|u| u.state.breaker.as_ref().map(|b| (u.name.as_str(), "", b)))
            .chain(
                snap.routes
                    .iter()
                    .filter_map(|r| r.breaker.as_deref().map(|b| (r.upstream.name.as_str(), r.name.as_str(), b))),
            )
            .collect();
        x.family(names::BREAKER_STATE, "gauge", "1 for the circuit breaker's current state.");
        for (u, r, b) in &breakers {
            let current = match b.state(now) {
                BreakerState::Closed => "closed",
                BreakerState::Open { .. } => "open",
                BreakerState::HalfOpen => "half_open",
            };
            for state in ["closed", "open", "half_open"] {
                let on = (state == current) as u8 as f64;
                x.sample(names::BREAKER_STATE, &[("upstream", u), ("route", r), ("state", state)], on);
            }
        }
        x.family(names::BREAKER_TRANSITIONS, "counter", "Circuit-breaker transitions, by the state entered.");
        for (u, r, b) in &breakers {
            for (to, n) in
                [("open", b.opened_total()), ("half_open", b.half_opened_total()), ("closed", b.closed_total())]
            {
                x.sample(names::BREAKER_TRANSITIONS, &[("upstream", u), ("route", r), ("to", to)], n as f64);
            }
        }
        x.family(names::BREAKER_REJECTED, "counter", "Requests answered 503 at once because the circuit was open.");
        for (u, r, b) in &breakers {
            x.sample(names::BREAKER_REJECTED, &[("upstream", u), ("route", r)], b.rejected_total() as f64);
        }
        x.family(names::TARGET_IN_FLIGHT, "gauge", "Requests in flight to each target.");
        for u in &snap.upstreams {
            for t in &u.targets {
                let n = t.state.inflight.load(Ordering::Relaxed);
                x.sample(names::TARGET_IN_FLIGHT, &[("upstream", &u.name), ("target", &t.url)], n as f64);
            }
        }
        x.family(names::HEALTHY_TARGETS, "gauge", "Healthy targets per upstream.");
        for u in &snap.upstreams {
            let n = u.targets.iter().filter(|t| t.state.is_healthy()).count();
            x.sample(names::HEALTHY_TARGETS, &[("upstream", &u.name)], n as f64);
        }

        let mut rl_lines = Vec::new();
        let mut cl_lines = Vec::new();
        for r in &snap.routes {
            for (i, p) in r.stack.policies.iter().enumerate() {
                let idx = i.to_string();
                match p {
                    RoutePolicy::RateLimit(rl) => {
                        let l = &rl.limiter;
                        for (d, n) in [
                            ("allowed", l.allowed.load(Ordering::Relaxed)),
                            ("limited", l.limited.load(Ordering::Relaxed)),
                            ("overflow", l.overflowed.load(Ordering::Relaxed)),
                            ("redis_error", l.redis_errors.load(Ordering::Relaxed)),
                            ("unavailable", l.unavailable.load(Ordering::Relaxed)),
                            ("refunded", l.refunded.load(Ordering::Relaxed)),
                        ] {
                            rl_lines.push((r.name.clone(), idx.clone(), rl.name().to_string(), d, n));
                        }
                    }
                    RoutePolicy::ConcurrencyLimit(cl) => {
                        let l = &cl.limiter;
                        for (d, n) in [
                            ("allowed", l.allowed.load(Ordering::Relaxed)),
                            ("limited", l.limited.load(Ordering::Relaxed)),
                            ("queued", l.queued.load(Ordering::Relaxed)),
                        ] {
                            cl_lines.push((r.name.clone(), idx.clone(), d, n));
                        }
                    }
                    _ => {}
                }
            }
        }
        x.family(names::RATELIMIT, "counter", "Rate-limit decisions by route, policy and decision.");
        for (route, idx, name, d, n) in &rl_lines {
            x.sample(
                names::RATELIMIT,
                &[("route", route), ("policy", idx), ("name", name), ("decision", d)],
                *n as f64,
            );
        }
        x.family(names::CONCURRENCY, "counter", "Concurrency-limit decisions by route, policy and decision.");
        for (route, idx, d, n) in &cl_lines {
            x.sample(names::CONCURRENCY, &[("route", route), ("policy", idx), ("decision", d)], *n as f64);
        }

        x.family(
            names::TLS_CERT_NOT_AFTER,
            "gauge",
            "Unix time after which a served certificate expires, per listener and SNI names.",
        );
        for l in &snap.listeners {
            for c in l.tls.iter().flat_map(|t| &t.certs) {
                let names = c.names.join(",");
                x.sample(names::TLS_CERT_NOT_AFTER, &[("listener", &l.name), ("names", &names)], c.not_after as f64);
            }
        }
        x.family(names::TLS_HANDSHAKE_FAILURES, "counter", "Client TLS handshakes that failed or timed out.");
        x.sample(names::TLS_HANDSHAKE_FAILURES, &[], m.tls_handshake_failures.load(Ordering::Relaxed) as f64);

        x.family(names::RELOADS, "counter", "Config reloads by result (the initial load is not counted).");
        x.sample(names::RELOADS, &[("result", "success")], m.reloads_ok.load(Ordering::Relaxed) as f64);
        x.sample(names::RELOADS, &[("result", "failure")], m.reloads_failed.load(Ordering::Relaxed) as f64);
        x.family(names::RELOAD_SUCCESS_TS, "gauge", "Unix time of the last successful config load.");
        x.sample(names::RELOAD_SUCCESS_TS, &[], m.last_success_ms.load(Ordering::Relaxed) as f64 / 1000.0);
        x.family(
            names::RELOAD_DURATION,
            "gauge",
            "Seconds the last successful config load took (validate, compile, swap).",
        );
        x.sample(names::RELOAD_DURATION, &[], m.last_reload_us.load(Ordering::Relaxed) as f64 / 1e6);
        x.family(names::CONFIG_INFO, "gauge", "The running config's hash (value always 1).");
        x.sample(names::CONFIG_INFO, &[("hash", &m.config_hash())], 1.0);
        x.family(names::ACCESS_LOG_DROPPED, "counter", "Access-log lines dropped because the writer fell behind.");
        let dropped = snap.access_log.as_ref().map_or(0, |l| l.dropped.load(Ordering::Relaxed));
        x.sample(names::ACCESS_LOG_DROPPED, &[], dropped as f64);
        x.family(names::IP_DENIED, "counter", "Requests refused by an ip_filter, by where it is configured.");
        let denied = &shared.limiters.ip_denied;
        for (scope, n) in [("listener", &denied.listener), ("route", &denied.route)] {
            x.sample(names::IP_DENIED, &[("scope", scope)], n.load(Ordering::Relaxed) as f64);
        }
        x.family(
            names::UNREADABLE,
            "counter",
            "Requests refused before their head could be read (400, 408, 414, 431).",
        );
        x.sample(names::UNREADABLE, &[], m.unreadable.load(Ordering::Relaxed) as f64);
        x.family(
            names::H2_CALM,
            "counter",
            "HTTP/2 connections ended with GOAWAY ENHANCE_YOUR_CALM: more stream resets than http2.max_resets allows (rapid reset).",
        );
        x.sample(names::H2_CALM, &[], m.h2_calm.load(Ordering::Relaxed) as f64);
        let a = shared.limiters.auth.stats.counts();
        x.family(names::AUTH, "counter", "Authentication and authorization decisions, denials by reason.");
        for (decision, reason, n) in [
            ("allowed", "", a.allowed),
            ("anonymous", "", a.anonymous),
            ("denied", "missing", a.denied_missing),
            ("denied", "invalid", a.denied_invalid),
            ("denied", "expired", a.denied_expired),
            ("denied", "multiple", a.denied_multiple),
            ("denied", "forbidden", a.denied_forbidden),
            ("denied", "unavailable", a.denied_unavailable),
            ("denied", "external", a.denied_external),
        ] {
            x.sample(names::AUTH, &[("decision", decision), ("reason", reason)], n as f64);
        }
        if let Some(t) = &snap.tracer {
            let c = t.counters();
            x.family(names::TRACING_SPANS, "counter", "Spans by export outcome (dropped: queue full or shutdown).");
            for (result, n) in
                [("exported", c.spans_exported()), ("dropped", c.spans_dropped()), ("failed", c.spans_failed())]
            {
                x.sample(names::TRACING_SPANS, &[("result", result)], n as f64);
            }
            x.family(names::TRACING_EXPORT_FAILURES, "counter", "OTLP export requests that failed (after retries).");
            x.sample(names::TRACING_EXPORT_FAILURES, &[], c.export_failures() as f64);
        }
        x.family(names::BUILD_INFO, "gauge", "Gatehouse version (value always 1).");
        x.sample(names::BUILD_INFO, &[("version", env!("CARGO_PKG_VERSION"))], 1.0);
        x.family(names::START_TIME, "gauge", "Unix time the gateway started.");
        x.sample(names::START_TIME, &[], m.started_ms() as f64 / 1000.0);
        x.finish()
    }
}

/// A circuit breaker's state and transition counters.
fn breaker_json(b: &crate::upstream::breaker::CircuitBreaker, now: u64) -> Value {
    use crate::upstream::breaker::BreakerState;
    let (state, retry_after) = match b.state(now) {
        BreakerState::Closed => ("closed", None),
        BreakerState::Open { remaining_ns } => ("open", Some(crate::upstream::breaker::secs_ceil(remaining_ns))),
        BreakerState::HalfOpen => ("half_open", None),
    };
    json!({
        "state": state,
        "retry_after_s": retry_after,
        "opened_total": b.opened_total(),
        "half_opened_total": b.half_opened_total(),
        "closed_total": b.closed_total(),
        "rejected_total": b.rejected_total(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_secrets() {
        let mut v = json!({
            "routes": [{"request_headers": {"set": {"Authorization": "Bearer abc", "X-Env": "prod"}}}],
            "cluster": {"redis": {"password": "hunter2", "url": "redis://x"}},
        });
        redact(&mut v);
        let s = v.to_string();
        assert!(!s.contains("abc") && !s.contains("hunter2"));
        assert!(s.contains("prod") && s.contains("redis://x"));

        let mut v = json!({
            "cluster": {"redis": {"url": "redis://app:s3cr3t@10.0.0.1:6379/0"}},
            "tracing": {"headers": {"x-api-key": "k-123", "x-tenant": "t"}},
            "upstreams": [{"targets": [{"url": "http://tok@backend:80/x@y"}]}],
        });
        redact(&mut v);
        let s = v.to_string();
        assert!(!s.contains("s3cr3t") && !s.contains("k-123") && !s.contains("tok@"), "{s}");
        assert!(s.contains("redis://app:<redacted>@10.0.0.1:6379/0"), "{s}");
        assert!(s.contains("http://<redacted>@backend:80/x@y"), "{s}");
    }

    #[test]
    fn redacts_consumer_credentials_and_jwt_secrets() {
        let mut v = json!({
            "consumers": [{"name": "alice", "credentials": {
                "api_keys": [{"sha256": "4e738ca5563c06cf"}],
                "basic": [{"username": "alice", "password_hash": "$argon2id$v=19$xyz"}]}}],
            "routes": [{"policies": [{"auth": {"methods": [
                {"jwt": {"keys": [{"secret": "s3cr3t-hmac", "alg": "HS256"}, {"jwk": {"kty": "oct", "k": "a2V5a2V5"}}]}},
                {"introspection": {"url": "http://idp:1", "client_id": "gw", "client_secret": "cs-123"}}
            ]}}]}],
        });
        redact(&mut v);
        let s = v.to_string();
        for secret in ["4e738ca5563c06cf", "$argon2id$v=19$xyz", "s3cr3t-hmac", "a2V5a2V5", "cs-123"] {
            assert!(!s.contains(secret), "{secret} leaked: {s}");
        }
        assert!(s.contains("alice") && s.contains("HS256") && s.contains("http://idp:1"));
    }
}
