//! JWT (JWS compact serialisation) verification: header, key choice, signature, claims.
//!
//! Invariants (RFC 8725 and the attack classes in `../shared/reference/security.md`):
//! - The algorithm comes from the token header but is only *accepted* when it is in the policy's
//!   allow-list and is the algorithm bound to the chosen key. `none` is never accepted; an HMAC
//!   algorithm is never tried with an RSA/EC/EdDSA key (so a public key can never act as an HMAC
//!   secret), and keys from a remote JWKS are never HMAC keys.
//! - Tokens with a `crit` header are refused (we implement no extension).
//! - The signature is verified before any claim is read; claims are checked after: `exp`
//!   (required unless disabled), `nbf`, `iat` not in the future, `iss`, `aud`, maximum lifetime,
//!   required claims, all with the configured clock skew.
//! - Errors say what failed for the gateway's debug log and counters; the client only learns
//!   "invalid" or "expired" (`AuthError`), never which signature check failed.
//! - Everything is bounded: a token over `MAX_TOKEN` bytes is refused before decoding.
//! - Keys are parsed once, when they are loaded (config) or fetched (JWKS), into ready RustCrypto
//!   verifiers (`Prepared`); a request only hashes and runs the signature check. jsonwebtoken is
//!   used for PEM/JWK parsing only: its provider rebuilds the key (DER/bignum/point decoding) on
//!   every call. The primitives and their parameters (PKCS#1 v1.5, PSS with the digest's OID,
//!   fixed-size ECDSA `r||s`, Ed25519) are the ones its provider calls.
//! - A verified token may be remembered (`TokenCache`, keyed by its SHA-256) so a client that
//!   reuses its token pays a hash and a lookup; the claim checks (`exp`, `nbf`, ...) still run on
//!   every request, and an entry is only used while the keys that verified it are unchanged.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::Algorithm;
use serde_json::{Map, Value};

pub use super::jwk::{algorithm, JwtError, VerifyKey};
use super::jwks::JwksCache;
use super::token_cache::{self, TokenCache};

/// Longest token accepted (headers are bounded anyway; this bounds decoding work).
pub const MAX_TOKEN: usize = 16 * 1024;

/// Where a verifier gets its keys.
#[derive(Debug)]
pub enum KeySource {
    Static(Vec<VerifyKey>),
    Jwks(Arc<JwksCache>),
}

/// A compiled `jwt` method: keys and every claim rule.
#[derive(Debug)]
pub struct JwtVerifier {
    pub keys: KeySource,
    /// Allowed algorithms; empty = whatever the keys allow.
    pub algorithms: Vec<Algorithm>,
    pub issuers: Vec<String>,
    pub audiences: Vec<String>,
    pub require_exp: bool,
    pub skew: Duration,
    pub max_lifetime: Option<Duration>,
    pub required_claims: Vec<String>,
    /// Tokens that passed every check (see `token_cache`); capacity 0 turns it off.
    pub cache: TokenCache,
}

/// The decoded parts of a token, before any key is involved.
struct Parts<'a> {
    alg: Algorithm,
    kid: Option<String>,
    message: &'a [u8],
    signature: Vec<u8>,
    payload: &'a str,
}

fn split(token: &str) -> Result<Parts<'_>, JwtError> {
    if token.len() > MAX_TOKEN {
        return Err(JwtError::Malformed);
    }
    let mut it = token.split('.');
    let (Some(h), Some(p), Some(s), None) = (it.next(), it.next(), it.next(), it.next()) else {
        return Err(JwtError::Malformed);
    };
    let header: Value =
        URL_SAFE_NO_PAD.decode(h).ok().and_then(|b| serde_json::from_slice(&b).ok()).ok_or(JwtError::Malformed)?;
    let header = header.as_object().ok_or(JwtError::Malformed)?;
    if header.contains_key("crit") {
        return Err(JwtError::Malformed);
    }
    let alg = header.get("alg").and_then(Value::as_str).and_then(algorithm).ok_or(JwtError::Algorithm)?;
    let kid = match header.get("kid") {
        None => None,
        Some(Value::String(k)) if k.len() <= 256 => Some(k.clone()),
        Some(_) => return Err(JwtError::Malformed),
    };
    let signature = URL_SAFE_NO_PAD.decode(s).map_err(|_| JwtError::Malformed)?;
    Ok(Parts { alg, kid, message: &token.as_bytes()[..h.len() + 1 + p.len()], signature, payload: p })
}

fn now_secs() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

impl JwtVerifier {
    /// Verifies `token` and returns its claims: from the cache when these exact bytes were
    /// verified with the current keys (the claim checks still run), else in full.
    pub async fn verify(&self, token: &str) -> Result<Arc<Map<String, Value>>, JwtError> {
        if token.len() > MAX_TOKEN {
            return Err(JwtError::Malformed);
        }
        let digest = self.cache.enabled().then(|| token_cache::digest(token));
        if let (Some(d), Some(generation)) = (&digest, self.current_generation()) {
            if let Some(claims) = self.cache.get(d, generation) {
                self.check_claims(&claims, now_secs())?;
                return Ok(claims);
            }
        }
        let (claims, generation) = self.verify_full(token).await?;
        let claims = Arc::new(claims);
        if let Some(d) = digest {
            self.cache.insert(d, generation, claims.clone());
        }
        Ok(claims)
    }

    /// The generation of the keys a token would be verified with right now without fetching:
    /// 0 for static keys, the current set's for a JWKS while it is fresh. `None` (no set yet, or
    /// it needs a refresh) sends every token down the full path, which fetches.
    fn current_generation(&self) -> Option<u64> {
        match &self.keys {
            KeySource::Static(_) => Some(0),
            KeySource::Jwks(cache) => cache.fresh_generation(),
        }
    }

    /// Verifies `token` without the cache; also returns the generation of the keys used.
    async fn verify_full(&self, token: &str) -> Result<(Map<String, Value>, u64), JwtError> {
        let parts = split(token)?;
        if !self.algorithms.is_empty() && !self.algorithms.contains(&parts.alg) {
            return Err(JwtError::Algorithm);
        }
        let generation = match &self.keys {
            KeySource::Static(keys) => {
                self.try_keys(keys, &parts)?;
                0
            }
            KeySource::Jwks(cache) => {
                let set = cache.keys_for(parts.kid.as_deref()).await?;
                self.try_keys(&set.keys, &parts)?;
                set.generation
            }
        };
        let claims = URL_SAFE_NO_PAD
            .decode(parts.payload)
            .ok()
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
            .and_then(|v| match v {
                Value::Object(m) => Some(m),
                _ => None,
            })
            .ok_or(JwtError::Malformed)?;
        self.check_claims(&claims, now_secs())?;
        Ok((claims, generation))
    }

    /// Tries the keys that match the token's `kid` (all keys when it has none, and keys without
    /// a `kid` always) and that are bound to its algorithm.
    fn try_keys(&self, keys: &[VerifyKey], p: &Parts<'_>) -> Result<(), JwtError> {
        let mut candidates = keys
            .iter()
            .filter(|k| match (&p.kid, &k.kid) {
                (Some(t), Some(k)) => t == k,
                _ => true,
            })
            .peekable();
        if candidates.peek().is_none() {
            return Err(JwtError::UnknownKey);
        }
        let mut bound = false;
        for k in candidates {
            if !k.algs.contains(&p.alg) {
                continue;
            }
            bound = true;
            if k.verify(p.alg, p.message, &p.signature) {
                return Ok(());
            }
        }
        Err(if bound { JwtError::Signature } else { JwtError::Algorithm })
    }

    /// Checks the registered claims at time `now` (seconds since the epoch).
    pub fn check_claims(&self, c: &Map<String, Value>, now: f64) -> Result<(), JwtError> {
        let skew = self.skew.as_secs_f64();
        let num = |name: &str| -> Result<Option<f64>, JwtError> {
            match c.get(name) {
                None => Ok(None),
                Some(v) => v.as_f64().map(Some).ok_or(JwtError::Malformed),
            }
        };
        let exp = num("exp")?;
        let nbf = num("nbf")?;
        let iat = num("iat")?;
        match exp {
            None if self.require_exp => return Err(JwtError::MissingExp),
            Some(e) if now >= e + skew => return Err(JwtError::Expired),
            _ => {}
        }
        if nbf.is_some_and(|n| now + skew < n) {
            return Err(JwtError::NotYetValid);
        }
        if iat.is_some_and(|i| i > now + skew) {
            return Err(JwtError::IssuedInFuture);
        }
        if let (Some(max), Some(e)) = (self.max_lifetime, exp) {
            let from = iat.or(nbf).unwrap_or(now);
            if e - from > max.as_secs_f64() + skew {
                return Err(JwtError::Lifetime);
            }
        }
        if !self.issuers.is_empty() {
            let iss = c.get("iss").and_then(Value::as_str).ok_or(JwtError::Issuer)?;
            if !self.issuers.iter().any(|i| i == iss) {
                return Err(JwtError::Issuer);
            }
        }
        if !self.audiences.is_empty() {
            let ok = match c.get("aud") {
                Some(Value::String(a)) => self.audiences.contains(a),
                Some(Value::Array(list)) => {
                    list.iter().filter_map(Value::as_str).any(|a| self.audiences.iter().any(|x| x == a))
                }
                _ => false,
            };
            if !ok {
                return Err(JwtError::Audience);
            }
        }
        if self.required_claims.iter().any(|r| !c.contains_key(r)) {
            return Err(JwtError::MissingClaim);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::jwk::Jwk;

    fn verifier() -> JwtVerifier {
        JwtVerifier {
            keys: KeySource::Static(vec![]),
            algorithms: vec![],
            issuers: vec!["https://idp".into()],
            audiences: vec!["api".into()],
            require_exp: true,
            skew: Duration::from_secs(60),
            max_lifetime: Some(Duration::from_secs(3600)),
            required_claims: vec!["sub".into()],
            cache: TokenCache::default(),
        }
    }

    fn claims(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn claim_rules() {
        let v = verifier();
        let now = 1_000_000.0;
        let ok =
            serde_json::json!({"sub": "a", "iss": "https://idp", "aud": ["x", "api"], "exp": now + 600.0, "iat": now});
        assert_eq!(v.check_claims(&claims(ok.clone()), now), Ok(()));
        let with = |k: &str, val: Value| {
            let mut c = claims(ok.clone());
            c.insert(k.into(), val);
            v.check_claims(&c, now)
        };
        assert_eq!(with("exp", (now - 61.0).into()), Err(JwtError::Expired));
        assert_eq!(with("exp", (now - 30.0).into()), Ok(()), "within the skew");
        assert_eq!(with("exp", "soon".into()), Err(JwtError::Malformed));
        assert_eq!(with("nbf", (now + 120.0).into()), Err(JwtError::NotYetValid));
        assert_eq!(with("iat", (now + 120.0).into()), Err(JwtError::IssuedInFuture));
        assert_eq!(with("iss", "https://evil".into()), Err(JwtError::Issuer));
        assert_eq!(with("aud", "other".into()), Err(JwtError::Audience));
        assert_eq!(with("aud", "api".into()), Ok(()));
        assert_eq!(with("exp", (now + 7200.0).into()), Err(JwtError::Lifetime));
        let mut c = claims(ok.clone());
        c.remove("exp");
        assert_eq!(v.check_claims(&c, now), Err(JwtError::MissingExp));
        let mut c = claims(ok);
        c.remove("sub");
        assert_eq!(v.check_claims(&c, now), Err(JwtError::MissingClaim));
    }

    #[test]
    fn header_rules() {
        let enc = |v: &str| URL_SAFE_NO_PAD.encode(v);
        let none = format!("{}.{}.", enc(r#"{"alg":"none"}"#), enc(r#"{"sub":"a"}"#));
        assert_eq!(split(&none).err(), Some(JwtError::Algorithm));
        let crit = format!("{}.{}.c2ln", enc(r#"{"alg":"HS256","crit":["x"]}"#), enc("{}"));
        assert_eq!(split(&crit).err(), Some(JwtError::Malformed));
        assert_eq!(split("a.b").err(), Some(JwtError::Malformed));
        assert_eq!(split("a.b.c.d").err(), Some(JwtError::Malformed));
    }

    fn hs256(claims: &Value) -> String {
        let key = jsonwebtoken::EncodingKey::from_secret(b"0123456789abcdef0123456789abcdef");
        jsonwebtoken::encode(&jsonwebtoken::Header::new(Algorithm::HS256), claims, &key).unwrap()
    }

    #[tokio::test]
    async fn cached_tokens_still_expire_and_only_exact_bytes_hit() {
        let secret = b"0123456789abcdef0123456789abcdef";
        let v = JwtVerifier {
            keys: KeySource::Static(vec![VerifyKey::from_secret(None, Algorithm::HS256, secret).unwrap()]),
            algorithms: vec![],
            issuers: vec![],
            audiences: vec![],
            require_exp: true,
            skew: Duration::ZERO,
            max_lifetime: None,
            required_claims: vec![],
            cache: TokenCache::new(16),
        };
        let now = now_secs().ceil();
        // Two seconds of validity: enough for the first uses even on a loaded machine.
        let token = hs256(&serde_json::json!({"sub": "a", "exp": now + 2.0}));
        assert!(v.verify(&token).await.is_ok());
        assert!(v.verify(&token).await.is_ok());
        assert_eq!(v.cache.stats().0, 1, "the second use is a hit");
        let mut tampered = token.clone();
        tampered.push('A');
        assert_eq!(v.verify(&tampered).await, Err(JwtError::Signature));
        let forged = format!("{}.{}", &token[..token.rfind('.').unwrap()], "c2lnbmF0dXJl");
        assert_eq!(v.verify(&forged).await, Err(JwtError::Signature));
        assert_eq!(v.cache.len(), 1, "refused tokens are never cached");
        tokio::time::sleep(Duration::from_secs_f64((now + 2.05 - now_secs()).max(0.0))).await;
        let hits = v.cache.stats().0;
        assert_eq!(v.verify(&token).await, Err(JwtError::Expired), "exp is checked on a hit");
        assert_eq!(v.cache.stats().0, hits + 1);
    }

    #[test]
    fn hmac_never_with_a_public_key_and_oct_never_from_jwks() {
        let jwk: Jwk = serde_json::from_str(
            r#"{"kty":"oct","k":"c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0","alg":"HS256"}"#,
        )
        .unwrap();
        assert!(VerifyKey::from_jwk(&jwk, None, false).is_err());
        assert!(VerifyKey::from_jwk(&jwk, None, true).is_ok());
        assert!(VerifyKey::from_pem(None, Algorithm::HS256, b"-----BEGIN PUBLIC KEY-----").is_err());
        assert!(VerifyKey::from_secret(None, Algorithm::RS256, b"x").is_err());
    }
}
