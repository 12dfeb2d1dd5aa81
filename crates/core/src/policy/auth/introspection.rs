//! OAuth2 token introspection (RFC 7662) for opaque bearer tokens.
//!
//! Invariants: the gateway authenticates to the endpoint with HTTP Basic (client id and
//! secret, RFC 7662 §2.1) and POSTs `token=...`. `"active": true` admits (the answer's fields
//! become the identity's claims: `sub`, `username`, `scope`, ...); anything else is an invalid
//! token. Answers are cached for `cache_ttl`, never past the token's own `exp`, keyed by the
//! SHA-256 of the token (no token is kept in memory); at most `CACHE_MAX` entries. An endpoint
//! that fails or times out refuses the request with 503 (fail closed) and is not cached.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use bytes::Bytes;
use gatehouse_config as cfg;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use tokio::time::Instant;

use super::client::{self, ServiceUrl};
use super::Denial;

pub const CACHE_MAX: usize = 10_000;

type Answer = Option<Arc<Map<String, Value>>>;

/// Cached answers, shared by the snapshots that use the same endpoint and client.
#[derive(Debug, Default)]
pub struct IntrospectionCache {
    map: Mutex<HashMap<[u8; 32], (Instant, Answer)>>,
    /// Calls made to the endpoint.
    pub calls: std::sync::atomic::AtomicU64,
}

/// A compiled `introspection` method.
#[derive(Debug)]
pub struct Introspector {
    url: ServiceUrl,
    authorization: Bytes,
    ttl: Duration,
    timeout: Duration,
    cache: Arc<IntrospectionCache>,
}

fn form_encode(s: &str) -> String {
    crate::http1::percent_encode(s.as_bytes(), |b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

impl Introspector {
    pub fn new(i: &cfg::Introspection, cache: Arc<IntrospectionCache>) -> Result<Introspector, String> {
        let creds = format!("{}:{}", form_encode(&i.client_id), form_encode(&i.client_secret));
        Ok(Introspector {
            url: ServiceUrl::parse(&i.url)?,
            authorization: Bytes::from(format!("Basic {}", STANDARD.encode(creds))),
            ttl: i.cache_ttl.0,
            timeout: i.timeout.0,
            cache,
        })
    }

    /// The token's claims when it is active.
    pub async fn introspect(&self, token: &str) -> Result<Arc<Map<String, Value>>, Denial> {
        let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let now = Instant::now();
        if let Some((until, answer)) = self.cache.map.lock().unwrap_or_else(|p| p.into_inner()).get(&key) {
            if now < *until {
                return answer.clone().ok_or(Denial::Invalid);
            }
        }
        self.cache.calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let body = format!("token={}&token_type_hint=access_token", form_encode(token));
        let reply = client::call(
            &self.url,
            "POST",
            &self.url.path,
            &[
                ("authorization", &self.authorization),
                ("content-type", b"application/x-www-form-urlencoded"),
                ("accept", b"application/json"),
            ],
            body.as_bytes(),
            self.timeout,
            64 * 1024,
        )
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, "token introspection failed");
            Denial::Unavailable
        })?;
        if reply.status != 200 {
            tracing::warn!(status = reply.status, "token introspection answered with an error");
            return Err(Denial::Unavailable);
        }
        let doc: Map<String, Value> = serde_json::from_slice(&reply.body).map_err(|_| Denial::Unavailable)?;
        let active = doc.get("active") == Some(&Value::Bool(true));
        let mut ttl = self.ttl;
        if let Some(exp) = doc.get("exp").and_then(Value::as_f64) {
            let now_s = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0);
            if exp <= now_s {
                return Err(Denial::Expired);
            }
            ttl = ttl.min(Duration::from_secs_f64(exp - now_s));
        }
        let answer = active.then(|| Arc::new(doc));
        let mut map = self.cache.map.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= CACHE_MAX {
            map.retain(|_, (t, _)| now < *t);
            if map.len() >= CACHE_MAX {
                map.clear();
            }
        }
        map.insert(key, (now + ttl, answer.clone()));
        answer.ok_or(Denial::Invalid)
    }
}
