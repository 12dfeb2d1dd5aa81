//! `JwksCache`: a remote JSON Web Key Set, fetched by the gateway and kept across reloads.
//!
//! Behaviour (pinned by `crates/gatehouse/tests/auth_jwks.rs` and `security_jwt.rs`):
//! - The first token fetches the set (the request waits, bounded by `timeout`). A set is fresh
//!   for its `Cache-Control: max-age`, clamped to `[cache_min, cache_max]` (`cache_max` when
//!   absent). The first request after that refreshes it; if the refresh fails, the old set keeps
//!   serving for at most `stale_for` past its expiry, then verification fails closed (503).
//! - A token whose `kid` is not in a fresh set triggers a refetch, at most one per
//!   `refetch_interval` (a flood of random `kid`s costs the IdP one request per interval);
//!   failed fetches are retried no sooner than that either. Key rotation at the IdP is thus
//!   picked up by the first token signed with the new key.
//! - Fetches are single-flight: one task fetches, concurrent requests wait for it and re-read.
//! - Keys are parsed once per fetch; `oct` (symmetric) keys in a published set are ignored, as
//!   are keys for other uses (`use` ≠ `sig`) and unsupported types. At most `MAX_KEYS` are kept.
//! - With `discovery`, the `jwks_uri` of the OIDC document is resolved on the first fetch and
//!   resolved again after a failed fetch.
//!
//! Time: `tokio::time::Instant`, so tests can pause time.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use jsonwebtoken::jwk::{Jwk, PublicKeyUse};
use jsonwebtoken::Algorithm;
use tokio::time::Instant;

use super::client::{self, ServiceUrl};
use super::jwk::{JwtError, VerifyKey};

/// Most keys kept from one set.
pub const MAX_KEYS: usize = 64;
/// Largest JWKS or discovery document read.
pub const MAX_DOCUMENT: usize = 512 * 1024;

static NEXT_GENERATION: AtomicU64 = AtomicU64::new(1);

/// A fetched key set.
#[derive(Debug)]
pub struct KeySet {
    /// Unique per fetched set (from 1; static keys are generation 0): what a cached verified
    /// token is bound to, so a new set means verifying again.
    pub generation: u64,
    pub keys: Vec<VerifyKey>,
    pub fetched_at: Instant,
    pub expires_at: Instant,
}

impl KeySet {
    fn has_kid(&self, kid: &str) -> bool {
        self.keys.iter().any(|k| k.kid.as_deref() == Some(kid))
    }
}

/// Settings of a remote key set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwksSettings {
    pub url: Option<ServiceUrl>,
    pub discovery: Option<ServiceUrl>,
    pub cache_min: Duration,
    pub cache_max: Duration,
    pub refetch_interval: Duration,
    pub stale_for: Duration,
    pub timeout: Duration,
}

/// One remote key set, shared by every policy (and snapshot) with the same settings.
#[derive(Debug)]
pub struct JwksCache {
    settings: JwksSettings,
    current: ArcSwapOption<KeySet>,
    /// The `jwks_uri` found through discovery.
    resolved: Mutex<Option<ServiceUrl>>,
    /// When the last fetch was started (success or not): the refetch rate limit.
    last_attempt: Mutex<Option<Instant>>,
    fetch_lock: tokio::sync::Mutex<()>,
    /// Fetches attempted.
    pub fetches: AtomicU64,
    /// Fetches that failed (connection, status, document).
    pub fetch_errors: AtomicU64,
}

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("{0}")]
    Client(#[from] client::ClientError),
    #[error("status {0}")]
    Status(u16),
    #[error("invalid document: {0}")]
    Document(String),
}

impl JwksCache {
    pub fn new(settings: JwksSettings) -> JwksCache {
        JwksCache {
            settings,
            current: ArcSwapOption::empty(),
            resolved: Mutex::new(None),
            last_attempt: Mutex::new(None),
            fetch_lock: tokio::sync::Mutex::new(()),
            fetches: AtomicU64::new(0),
            fetch_errors: AtomicU64::new(0),
        }
    }

    pub fn settings(&self) -> &JwksSettings {
        &self.settings
    }

    /// The generation of the current set while it is fresh (no fetch, no waiting).
    pub fn fresh_generation(&self) -> Option<u64> {
        let cur = self.current.load();
        cur.as_ref().filter(|s| Instant::now() < s.expires_at).map(|s| s.generation)
    }

    /// The key set to verify a token with `kid`, fetching or refreshing it as the module docs say.
    pub async fn keys_for(&self, kid: Option<&str>) -> Result<Arc<KeySet>, JwtError> {
        let now = Instant::now();
        let cur = self.current.load_full();
        match &cur {
            Some(set) if now < set.expires_at => {
                if kid.is_none_or(|k| set.has_kid(k)) {
                    return Ok(set.clone());
                }
                // Unknown kid: maybe the IdP rotated. Refetch if the rate limit allows.
                Ok(self.refresh(cur.as_ref(), now).await.unwrap_or_else(|| set.clone()))
            }
            Some(set) => match self.refresh(cur.as_ref(), now).await {
                Some(fresh) => Ok(fresh),
                None if now < set.expires_at + self.settings.stale_for => Ok(set.clone()),
                None => Err(JwtError::KeysUnavailable),
            },
            None => self.refresh(None, now).await.ok_or(JwtError::KeysUnavailable),
        }
    }

    /// Fetches a new set unless another task just did (then its result is used) or the refetch
    /// interval has not passed since the last attempt. `None`: nothing new.
    async fn refresh(&self, seen: Option<&Arc<KeySet>>, now: Instant) -> Option<Arc<KeySet>> {
        let _guard = self.fetch_lock.lock().await;
        let latest = self.current.load_full();
        let changed = match (&latest, seen) {
            (Some(l), Some(s)) => !Arc::ptr_eq(l, s),
            (Some(_), None) => true,
            _ => false,
        };
        if changed {
            return latest;
        }
        {
            let mut last = self.last_attempt.lock().unwrap_or_else(|p| p.into_inner());
            let waited = last.is_none_or(|t| now >= t + self.settings.refetch_interval);
            // An expired set refreshes at once when nobody tried since it was fetched (its TTL
            // already rate-limits that); an unknown kid or a retry after a failure waits for the
            // interval.
            let first_try_after_expiry =
                seen.is_some_and(|s| now >= s.expires_at && last.is_none_or(|t| t <= s.fetched_at));
            if !(waited || first_try_after_expiry) {
                return None;
            }
            *last = Some(now);
        }
        self.fetches.fetch_add(1, Ordering::Relaxed);
        match self.fetch().await {
            Ok(set) => {
                let set = Arc::new(set);
                self.current.store(Some(set.clone()));
                Some(set)
            }
            Err(e) => {
                self.fetch_errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, "JWKS fetch failed");
                if self.settings.discovery.is_some() {
                    *self.resolved.lock().unwrap_or_else(|p| p.into_inner()) = None;
                }
                None
            }
        }
    }

    async fn jwks_url(&self) -> Result<ServiceUrl, FetchError> {
        if let Some(u) = &self.settings.url {
            return Ok(u.clone());
        }
        if let Some(u) = self.resolved.lock().unwrap_or_else(|p| p.into_inner()).clone() {
            return Ok(u);
        }
        let Some(d) = &self.settings.discovery else {
            return Err(FetchError::Document("no JWKS URL".into()));
        };
        let r = self.get(d, b"application/json").await?;
        let doc: serde_json::Value =
            serde_json::from_slice(&r.body).map_err(|e| FetchError::Document(format!("discovery: {e}")))?;
        let uri = doc
            .get("jwks_uri")
            .and_then(|v| v.as_str())
            .ok_or_else(|| FetchError::Document("discovery document has no jwks_uri".into()))?;
        let url = ServiceUrl::parse(uri).map_err(|e| FetchError::Document(format!("jwks_uri: {e}")))?;
        *self.resolved.lock().unwrap_or_else(|p| p.into_inner()) = Some(url.clone());
        Ok(url)
    }

    /// GETs a JSON document (discovery or key set): anything but 200 is an error.
    async fn get(&self, url: &ServiceUrl, accept: &[u8]) -> Result<client::Reply, FetchError> {
        let r = client::call(url, "GET", &url.path, &[("accept", accept)], b"", self.settings.timeout, MAX_DOCUMENT)
            .await?;
        if r.status != 200 {
            return Err(FetchError::Status(r.status));
        }
        Ok(r)
    }

    async fn fetch(&self) -> Result<KeySet, FetchError> {
        let url = self.jwks_url().await?;
        let r = self.get(&url, b"application/jwk-set+json, application/json").await?;
        let keys = parse_jwks(&r.body).map_err(FetchError::Document)?;
        let ttl = r
            .header("cache-control")
            .and_then(max_age)
            .unwrap_or(self.settings.cache_max)
            .clamp(self.settings.cache_min, self.settings.cache_max);
        let now = Instant::now();
        let generation = NEXT_GENERATION.fetch_add(1, Ordering::Relaxed);
        Ok(KeySet { generation, keys, fetched_at: now, expires_at: now + ttl })
    }
}

/// `max-age=N` of a `Cache-Control` value (`no-store`/`no-cache` mean 0: the minimum applies).
pub fn max_age(v: &[u8]) -> Option<Duration> {
    let v = std::str::from_utf8(v).ok()?;
    for d in v.split(',') {
        let d = d.trim();
        if d.eq_ignore_ascii_case("no-store") || d.eq_ignore_ascii_case("no-cache") {
            return Some(Duration::ZERO);
        }
        if let Some((k, n)) = d.split_once('=') {
            if k.trim().eq_ignore_ascii_case("max-age") {
                return n.trim().trim_matches('"').parse::<u64>().ok().map(Duration::from_secs);
            }
        }
    }
    None
}

/// The usable signing keys of a JWK set document (see the module docs for what is skipped).
pub fn parse_jwks(body: &[u8]) -> Result<Vec<VerifyKey>, String> {
    let doc: serde_json::Value = serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
    let list = doc.get("keys").and_then(|k| k.as_array()).ok_or("no `keys` array")?;
    let mut keys = Vec::new();
    for k in list {
        if keys.len() == MAX_KEYS {
            break;
        }
        // One odd key must not hide the others: skip what does not parse.
        let Ok(jwk) = serde_json::from_value::<Jwk>(k.clone()) else { continue };
        if matches!(&jwk.common.public_key_use, Some(u) if *u != PublicKeyUse::Signature) {
            continue;
        }
        if let Ok(vk) = VerifyKey::from_jwk(&jwk, None, false) {
            keys.push(vk);
        }
    }
    Ok(keys)
}

/// Algorithms a remote key may be bound to when the policy names none (never HMAC).
pub fn default_remote_algs() -> Vec<Algorithm> {
    vec![
        Algorithm::RS256,
        Algorithm::RS384,
        Algorithm::RS512,
        Algorithm::PS256,
        Algorithm::PS384,
        Algorithm::PS512,
        Algorithm::ES256,
        Algorithm::ES384,
        Algorithm::EdDSA,
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_control() {
        assert_eq!(max_age(b"public, max-age=300"), Some(Duration::from_secs(300)));
        assert_eq!(max_age(b"no-store"), Some(Duration::ZERO));
        assert_eq!(max_age(b"public"), None);
        assert_eq!(max_age(b"max-age=abc"), None);
    }

    #[test]
    fn jwks_skips_oct_and_encryption_keys() {
        let doc = br#"{"keys":[
            {"kty":"oct","k":"c2VjcmV0","kid":"h"},
            {"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","kid":"e","use":"enc"},
            {"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","kid":"s"},
            {"kty":"weird"}
        ]}"#;
        let keys = parse_jwks(doc).unwrap();
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].kid.as_deref(), Some("s"));
        assert_eq!(keys[0].algs, vec![Algorithm::EdDSA]);
        assert!(parse_jwks(b"[]").is_err());
    }
}
