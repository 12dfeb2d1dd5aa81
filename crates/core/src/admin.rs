//! The admin API, on its own listener (default 127.0.0.1:9901), never on traffic listeners.
//!
//! Endpoints: `GET /healthz` (process alive), `GET /readyz` (config loaded and listeners bound,
//! 503 while draining), `GET /config` (running config as JSON, secrets redacted), `GET /upstreams`
//! (targets with health and load). Invariant: handlers only read the snapshot and registries.

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
        // API key digests and password hashes are secret-equivalent (offline guessing), and a
        // JWK's `k` is an HMAC key.
        || k == "sha256"
        || k == "k"
        || k == "client_secret"
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
                let ups: Vec<Value> = snap
                    .upstreams
                    .iter()
                    .map(|u| {
                        let targets: Vec<Value> = u
                            .targets
                            .iter()
                            .map(|t| {
                                let s = &t.state;
                                json!({
                                    "url": t.url,
                                    "weight": t.weight,
                                    "health": if s.is_healthy() { "healthy" } else { "unhealthy" },
                                    "active_checks": u.health_check.is_some(),
                                    "last_check": s.last_check.lock().ok().and_then(|l| l.clone()),
                                    "inflight": s.inflight.load(Ordering::Relaxed),
                                    "latency_ewma_ms": s.ewma_ns.load(Ordering::Relaxed) as f64 / 1e6,
                                })
                            })
                            .collect();
                        json!({
                            "name": u.name,
                            "balancer": u.balancer.name(),
                            "healthy_targets": u.targets.iter().filter(|t| t.state.is_healthy()).count(),
                            "targets": targets,
                        })
                    })
                    .collect();
                LocalResponse::json(200, serde_json::to_string_pretty(&json!({ "upstreams": ups })).unwrap_or_default())
            }
            _ => LocalResponse::json(
                404,
                r#"{"error":{"status":404,"code":"not_found","message":"admin endpoints: /healthz /readyz /config /upstreams"}}"#,
            ),
        }
    }
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
