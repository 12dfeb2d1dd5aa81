//! The admin API, on its own listener (default 127.0.0.1:9901), never on traffic listeners.
//!
//! Endpoints: `GET /healthz` (process alive), `GET /readyz` (config loaded and listeners bound,
//! 503 while draining), `GET /config` (running config as JSON, secrets redacted), `GET /upstreams`
//! (targets with health, passive-health ejection, load; each upstream's circuit breaker and
//! resilience counters; routes' own breakers). Invariant: handlers only read the snapshot and registries.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use serde_json::{json, Value};

use crate::error::LocalResponse;
use crate::proxy::Shared;
use crate::simple_http::SimpleRequest;

#[derive(Clone)]
pub struct AdminState {
    pub shared: Arc<Shared>,
    pub ready: Arc<AtomicBool>,
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
}

/// Replaces secret values in a config rendered as JSON.
pub fn redact(v: &mut Value) {
    match v {
        Value::Object(map) => {
            for (k, val) in map.iter_mut() {
                if secret_key(k) && !val.is_object() && !val.is_array() {
                    *val = Value::String(REDACTED.into());
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
    pub fn handle(&self, req: SimpleRequest) -> LocalResponse {
        if req.method != "GET" && req.method != "HEAD" {
            return LocalResponse::json(
                405,
                r#"{"error":{"status":405,"code":"method_not_allowed","message":"admin endpoints are read-only"}}"#,
            )
            .header("allow", "GET, HEAD");
        }
        match req.path.as_str() {
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
            _ => LocalResponse::json(
                404,
                r#"{"error":{"status":404,"code":"not_found","message":"admin endpoints: /healthz /readyz /config /upstreams"}}"#,
            ),
        }
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
    }
}
