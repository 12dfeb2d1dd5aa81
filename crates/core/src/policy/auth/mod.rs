//! Identity: consumers, the `auth` policy (JWT, API keys, basic auth, OAuth2 introspection),
//! `authorize`, `external_auth`, and the state that outlives a snapshot (JWKS and introspection
//! caches, decision counters: `state.rs`).
//!
//! Invariants:
//! - Authentication happens once, here; a request that reaches an upstream through an `auth`
//!   policy carries a verified `Identity` in `RequestCtx::identity`.
//! - Credentials never reach the upstream: every place any method of the policy reads a
//!   credential from (the `Authorization` header, configured headers, cookies, query parameters)
//!   is stripped before the upstream request is written, and query parameters are stripped
//!   before the access log sees the query (even when the request is refused).
//! - Client-sent copies of the identity headers are removed before the verified values are set
//!   (and `request::sanitize::drop_on_forward` drops every `X-Consumer-*` header from clients on every route).
//! - The first method whose credential is present decides: an invalid credential is a 401, it
//!   never falls through to a later method or to `anonymous`. Several credentials for one method
//!   (two tokens, a header and a query parameter) are a 401.
//! - Clients learn 401 (missing/invalid/expired, with `WWW-Authenticate`), 403 (identity not
//!   allowed) or 503 (keys or the auth service unavailable: fail closed), never why a signature
//!   check failed. Secrets are never logged.

pub mod authz;
pub mod basic;
pub mod client;
pub mod consumers;
pub mod external;
pub mod introspection;
pub mod jwk;
pub mod jwks;
pub mod jwt;
pub mod keys;
pub mod state;
pub mod token_cache;

pub use crate::identity::{ConsumerRt, Identity};
pub use consumers::Consumers;
pub use state::{AuthCounts, AuthState, AuthStats, Live};
use std::sync::Arc;

use bytes::Bytes;
use gatehouse_config as cfg;
use serde_json::Value;

use crate::ctx::{RequestCtx, RequestInfo};
use crate::error::{CompileError, ErrorKind, GatewayError};
use crate::http1::Headers;
use crate::policy::{CompilePolicy, PolicyEnv, StateId};

pub use authz::AuthorizePolicy;
pub use external::ExternalAuthPolicy;
use introspection::Introspector;
use jwks::JwksSettings;
use jwt::{JwtError, JwtVerifier, KeySource, VerifyKey};

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denial {
    /// No credential (401).
    Missing,
    /// A credential that does not verify (401).
    Invalid,
    /// A token outside its validity period (401).
    Expired,
    /// Several credentials for one method (401).
    Multiple,
    /// A valid identity that is not allowed (403).
    Forbidden,
    /// Keys or the auth service could not be reached (503, fail closed).
    Unavailable,
    /// `external_auth` said no (its own answer is relayed).
    External,
}

impl Denial {
    /// The refusal's `error_kind` (finer than the answer's code: which credential problem).
    pub fn kind(self) -> ErrorKind {
        match self {
            Denial::Missing => ErrorKind::CredentialsMissing,
            Denial::Invalid => ErrorKind::CredentialsInvalid,
            Denial::Expired => ErrorKind::TokenExpired,
            Denial::Multiple => ErrorKind::CredentialsMultiple,
            Denial::Forbidden => ErrorKind::Forbidden,
            Denial::Unavailable => ErrorKind::AuthUnavailable,
            Denial::External => ErrorKind::ExternalAuthDenied,
        }
    }

    /// The kind's name (counters and debug logs).
    pub fn code(self) -> &'static str {
        self.kind().as_str()
    }

    /// The client's response (401s carry `challenge` as `WWW-Authenticate`).
    pub fn error(self, challenge: &Bytes) -> GatewayError {
        let message = match self {
            Denial::Missing => "authentication required: no credentials were sent",
            Denial::Invalid => "authentication failed: the credentials are not valid",
            Denial::Expired => "authentication failed: the token is expired or not yet valid",
            Denial::Multiple => "authentication failed: send exactly one credential",
            Denial::Forbidden => return GatewayError::Forbidden,
            Denial::Unavailable | Denial::External => return GatewayError::AuthUnavailable,
        };
        GatewayError::Unauthorized { message, challenge: challenge.clone() }
    }
}

impl From<JwtError> for Denial {
    fn from(e: JwtError) -> Denial {
        match e {
            JwtError::Expired | JwtError::NotYetValid => Denial::Expired,
            JwtError::KeysUnavailable => Denial::Unavailable,
            _ => Denial::Invalid,
        }
    }
}

/// Where a compiled method reads its credential.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Source {
    Bearer,
    Basic,
    /// Lower-cased name.
    Header(String),
    Cookie(String),
    Query(String),
}

fn sources(from: &[cfg::CredentialSource]) -> Vec<Source> {
    from.iter()
        .map(|s| match s {
            cfg::CredentialSource::Bearer => Source::Bearer,
            cfg::CredentialSource::Header(h) => Source::Header(h.to_ascii_lowercase()),
            cfg::CredentialSource::Cookie(c) => Source::Cookie(c.clone()),
            cfg::CredentialSource::Query(q) => Source::Query(q.clone()),
        })
        .collect()
}

pub(crate) fn trim(v: &[u8]) -> &[u8] {
    crate::http1::headers::trim(v)
}

/// `Scheme value` of an `Authorization` field, when the scheme matches (case-insensitively).
fn scheme_value<'a>(v: &'a [u8], scheme: &str) -> Option<&'a [u8]> {
    let v = trim(v);
    let n = scheme.len();
    (v.len() > n && v[..n].eq_ignore_ascii_case(scheme.as_bytes()) && v[n] == b' ').then(|| trim(&v[n + 1..]))
}

fn cookies(v: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    v.split(|&b| b == b';').filter_map(|c| {
        let c = trim(c);
        let eq = c.iter().position(|&b| b == b'=')?;
        Some((trim(&c[..eq]), trim(&c[eq + 1..])))
    })
}

/// `(decoded name, decoded value)` of each `name=value` pair of a query string.
fn query_pairs(q: &str) -> impl Iterator<Item = (Vec<u8>, Vec<u8>, &str)> {
    q.split('&').filter(|p| !p.is_empty()).map(|p| {
        let (n, v) = p.split_once('=').unwrap_or((p, ""));
        (crate::http1::percent_decode(n.as_bytes()), crate::http1::percent_decode(v.as_bytes()), p)
    })
}

/// The credential a method found.
enum Found {
    None,
    One(Vec<u8>),
    Many,
}

fn find(from: &[Source], headers: &Headers, query: Option<&str>) -> Found {
    let mut found: Option<Vec<u8>> = None;
    let mut count = 0usize;
    let mut take = |v: &[u8]| {
        count += 1;
        if found.is_none() {
            found = Some(v.to_vec());
        }
    };
    for s in from {
        match s {
            Source::Bearer => {
                headers.get_all("authorization").filter_map(|v| scheme_value(v, "Bearer")).for_each(&mut take)
            }
            Source::Basic => {
                headers.get_all("authorization").filter_map(|v| scheme_value(v, "Basic")).for_each(&mut take)
            }
            Source::Header(h) => headers.get_all(h).map(trim).for_each(&mut take),
            Source::Cookie(c) => headers
                .get_all("cookie")
                .flat_map(cookies)
                .filter(|(n, _)| *n == c.as_bytes())
                .for_each(|(_, v)| take(v)),
            Source::Query(q) => {
                if let Some(query) = query {
                    query_pairs(query).filter(|(n, _, _)| n == q.as_bytes()).for_each(|(_, v, _)| take(&v));
                }
            }
        }
    }
    match (count, found) {
        (0, _) | (_, None) => Found::None,
        (1, Some(v)) if !v.is_empty() => Found::One(v),
        (1, Some(_)) => Found::None,
        _ => Found::Many,
    }
}

/// What the policy removes from every request before it goes upstream.
#[derive(Debug, Default)]
struct Strip {
    authorization: bool,
    headers: Vec<String>,
    cookies: Vec<String>,
    query: Vec<String>,
}

impl Strip {
    fn add(&mut self, from: &[Source]) {
        for s in from {
            match s {
                Source::Bearer | Source::Basic => self.authorization = true,
                Source::Header(h) => self.headers.push(h.clone()),
                Source::Cookie(c) => self.cookies.push(c.clone()),
                Source::Query(q) => self.query.push(q.clone()),
            }
        }
    }

    fn headers(&self, h: &mut Headers) {
        if self.authorization {
            h.remove("authorization");
        }
        for n in &self.headers {
            h.remove(n);
        }
        if !self.cookies.is_empty() && h.contains("cookie") {
            let kept: Vec<Vec<u8>> = h
                .get_all("cookie")
                .flat_map(|v| v.split(|&b| b == b';'))
                .map(trim)
                .filter(|c| !c.is_empty())
                .filter(|c| {
                    let name = trim(c.split(|&b| b == b'=').next().unwrap_or_default());
                    !self.cookies.iter().any(|n| n.as_bytes() == name)
                })
                .map(<[u8]>::to_vec)
                .collect();
            h.remove("cookie");
            if !kept.is_empty() {
                h.append(Bytes::from_static(b"cookie"), Bytes::from(kept.join(&b"; "[..])));
            }
        }
    }

    /// The query without the credential parameters (`None` when nothing was removed).
    fn query(&self, q: Option<&str>) -> Option<String> {
        let q = q?;
        if self.query.is_empty() {
            return None;
        }
        let mut removed = false;
        let kept: Vec<&str> = query_pairs(q)
            .filter(|(n, _, _)| {
                let hit = self.query.iter().any(|x| x.as_bytes() == n.as_slice());
                removed |= hit;
                !hit
            })
            .map(|(_, _, raw)| raw)
            .collect();
        removed.then(|| kept.join("&"))
    }
}

/// A compiled authentication method.
#[derive(Debug)]
enum Method {
    Jwt(Box<JwtVerifier>, Vec<Source>),
    ApiKey(Vec<Source>),
    Basic,
    Introspection(Box<Introspector>, Vec<Source>),
    /// The TLS client certificate's subject (`RequestCtx::client_cert_subject`); `true`:
    /// unmapped subjects are refused.
    Mtls(bool),
}

impl Method {
    fn sources(&self) -> &[Source] {
        match self {
            Method::Jwt(_, s) | Method::ApiKey(s) | Method::Introspection(_, s) => s,
            Method::Basic => std::slice::from_ref(&Source::Basic),
            // Not in the request: nothing to find or strip.
            Method::Mtls(_) => &[],
        }
    }
}

/// Headers that carry the identity upstream (lower-cased names).
#[derive(Debug)]
struct IdentityHeaders {
    consumer: Bytes,
    groups: Bytes,
    claims: Vec<(String, Bytes)>,
}

/// A value safe to put in a header (visible ASCII, spaces, tabs; bounded).
fn header_safe(v: &str) -> bool {
    v.len() <= 4096 && v.bytes().all(|b| b == b'\t' || (b' '..=b'~').contains(&b))
}

fn claim_header_value(v: &Value) -> Option<String> {
    let s = match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Array(a) => a
            .iter()
            .filter_map(|x| x.as_str().map(str::to_string).or_else(|| x.as_number().map(|n| n.to_string())))
            .collect::<Vec<_>>()
            .join(","),
        _ => return None,
    };
    header_safe(&s).then_some(s)
}

/// A compiled `auth` policy.
#[derive(Debug)]
pub struct AuthPolicy {
    methods: Vec<Method>,
    anonymous: Option<Arc<ConsumerRt>>,
    consumers: Arc<Consumers>,
    state: Arc<AuthState>,
    strip: Strip,
    identity_headers: IdentityHeaders,
    challenge: Bytes,
    challenge_invalid: Bytes,
}

impl AuthPolicy {
    /// Authenticates the request: sets `ctx.identity`, strips credentials and forged identity
    /// headers, sets the identity headers. On refusal returns the error for the client.
    pub async fn authenticate(
        &self,
        ctx: &mut RequestCtx,
        headers: &mut Headers,
        req: &RequestInfo<'_>,
    ) -> Result<(), GatewayError> {
        // Query credentials leave the query before anything else can see it (access log included).
        if let Some(q) = self.strip.query(ctx.forward_query.as_deref().or(req.query)) {
            ctx.forward_query = Some(q);
        }
        let mut chosen = None;
        for (i, m) in self.methods.iter().enumerate() {
            if let Method::Mtls(_) = m {
                // Verified during the handshake; absent on plain connections or without a cert.
                if let Some(subject) = &ctx.client_cert_subject {
                    chosen = Some((i, subject.to_vec()));
                    break;
                }
                continue;
            }
            match find(m.sources(), headers, req.query) {
                Found::None => continue,
                Found::One(v) => {
                    chosen = Some((i, v));
                    break;
                }
                Found::Many => {
                    self.strip.headers(headers);
                    return Err(self.deny(ctx, Denial::Multiple));
                }
            }
        }
        self.strip.headers(headers);
        let identity = match chosen {
            None => match &self.anonymous {
                Some(c) => Identity::of_consumer(c.clone(), "anonymous"),
                None => return Err(self.deny(ctx, Denial::Missing)),
            },
            Some((i, credential)) => match self.verify(&self.methods[i], &credential).await {
                Ok(id) => id,
                Err(d) => return Err(self.deny(ctx, d)),
            },
        };
        self.set_identity_headers(headers, &identity);
        self.state.stats.allow(identity.anonymous);
        ctx.identity = Some(Box::new(identity));
        Ok(())
    }

    fn deny(&self, ctx: &mut RequestCtx, d: Denial) -> GatewayError {
        self.state.stats.deny(d);
        ctx.error_kind = Some(d.kind());
        tracing::debug!(request_id = %ctx.request_id_str(), reason = d.code(), "authentication refused");
        let challenge = if d == Denial::Missing { &self.challenge } else { &self.challenge_invalid };
        d.error(challenge)
    }

    async fn verify(&self, m: &Method, credential: &[u8]) -> Result<Identity, Denial> {
        match m {
            Method::Jwt(v, _) => {
                let token = std::str::from_utf8(credential).map_err(|_| Denial::Invalid)?;
                match v.verify(token).await {
                    Ok(claims) => Ok(Identity::from_claims(&self.consumers, claims, "jwt")),
                    Err(e) => {
                        tracing::debug!(reason = %e, "JWT refused");
                        Err(e.into())
                    }
                }
            }
            Method::ApiKey(_) => match self.consumers.api_keys.lookup(credential) {
                Some(i) => Ok(Identity::of_consumer(self.consumers.list[i].clone(), "api_key")),
                None => Err(Denial::Invalid),
            },
            Method::Basic => {
                let (user, pw) = basic::decode(credential).ok_or(Denial::Invalid)?;
                match self.consumers.basic.check(&self.state.basic_cache, &user, &pw).await {
                    Some(i) => Ok(Identity::of_consumer(self.consumers.list[i].clone(), "basic")),
                    None => Err(Denial::Invalid),
                }
            }
            Method::Introspection(intro, _) => {
                let token = std::str::from_utf8(credential).map_err(|_| Denial::Invalid)?;
                let claims = intro.introspect(token).await?;
                Ok(Identity::from_claims(&self.consumers, claims, "introspection"))
            }
            Method::Mtls(require_consumer) => {
                let subject = std::str::from_utf8(credential).map_err(|_| Denial::Invalid)?;
                match self.consumers.mtls.get(subject) {
                    Some(&i) => Ok(Identity::of_consumer(self.consumers.list[i].clone(), "mtls")),
                    None if *require_consumer => Err(Denial::Forbidden),
                    None => Ok(Identity {
                        name: subject.to_string(),
                        consumer: None,
                        groups: Vec::new(),
                        claims: None,
                        anonymous: false,
                        method: "mtls",
                    }),
                }
            }
        }
    }

    fn remove_identity_headers(&self, h: &mut Headers) {
        let ih = &self.identity_headers;
        for n in [&ih.consumer, &ih.groups].into_iter().chain(ih.claims.iter().map(|(_, h)| h)) {
            if let Ok(s) = std::str::from_utf8(n) {
                h.remove(s);
            }
        }
    }

    fn set_identity_headers(&self, h: &mut Headers, id: &Identity) {
        self.remove_identity_headers(h);
        let ih = &self.identity_headers;
        if !id.name.is_empty() && header_safe(&id.name) {
            h.append(ih.consumer.clone(), Bytes::from(id.name.clone()));
        }
        if !id.groups.is_empty() {
            h.append(ih.groups.clone(), Bytes::from(id.groups.join(", ")));
        }
        for (claim, header) in &ih.claims {
            if let Some(v) = id.claim(claim).and_then(claim_header_value) {
                h.append(header.clone(), Bytes::from(v));
            }
        }
    }
}

/// Settings of a remote JWKS source.
fn jwks_settings(s: &cfg::JwksSource) -> Result<JwksSettings, String> {
    let parse = |u: &Option<String>| u.as_deref().map(client::ServiceUrl::parse).transpose();
    Ok(JwksSettings {
        url: parse(&s.url)?,
        discovery: parse(&s.discovery)?,
        cache_min: s.cache_min.0,
        cache_max: s.cache_max.0,
        refetch_interval: s.refetch_interval.0,
        stale_for: s.stale_for.0,
        timeout: s.timeout.0,
    })
}

fn alg_of(name: &str) -> Result<jsonwebtoken::Algorithm, String> {
    jwt::algorithm(name).ok_or_else(|| format!("unknown algorithm {name:?}"))
}

/// Builds the verification keys of a static `keys` entry (a file may hold a JWK set).
pub fn static_keys(k: &cfg::JwtKey) -> Result<Vec<VerifyKey>, String> {
    let alg = k.alg.as_deref().map(alg_of).transpose()?;
    if let Some(secret) = &k.secret {
        let alg = alg.ok_or("a secret needs `alg`")?;
        return Ok(vec![VerifyKey::from_secret(k.kid.clone(), alg, secret.as_bytes())?]);
    }
    let from_json = |v: &Value| -> Result<Vec<VerifyKey>, String> {
        let list: Vec<Value> = match v.get("keys").and_then(Value::as_array) {
            Some(keys) => keys.clone(),
            None => vec![v.clone()],
        };
        let mut out = Vec::new();
        for item in list {
            let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(item).map_err(|e| format!("invalid JWK: {e}"))?;
            let mut vk = VerifyKey::from_jwk(&jwk, alg, true)?;
            if k.kid.is_some() {
                vk.kid = k.kid.clone();
            }
            out.push(vk);
        }
        Ok(out)
    };
    if let Some(jwk) = &k.jwk {
        return from_json(jwk);
    }
    let pem_key = |text: &[u8]| -> Result<Vec<VerifyKey>, String> {
        let alg = alg.ok_or("a PEM key needs `alg`")?;
        Ok(vec![VerifyKey::from_pem(k.kid.clone(), alg, text)?])
    };
    if let Some(p) = &k.pem {
        return pem_key(p.as_bytes());
    }
    if let Some(f) = &k.file {
        let text = std::fs::read(f).map_err(|e| format!("cannot read {f}: {e}"))?;
        if text.trim_ascii_start().starts_with(b"{") {
            let v: Value = serde_json::from_slice(&text).map_err(|e| format!("{f}: invalid JSON: {e}"))?;
            return from_json(&v);
        }
        return pem_key(&text);
    }
    Err("no key material".into())
}

/// Tries every static key of every `jwt` method (what validation cannot check without crypto):
/// `(path, message)` per problem. `gatehouse validate` reports these.
pub fn check_keys(config: &cfg::Config) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (r, route) in config.routes.iter().enumerate() {
        for (p, policy) in route.policies.iter().enumerate() {
            let cfg::Policy::Auth(a) = policy else { continue };
            for (m, method) in a.methods.iter().enumerate() {
                let cfg::AuthMethod::Jwt(j) = method else { continue };
                for (k, key) in j.keys.iter().enumerate() {
                    if let Err(e) = static_keys(key) {
                        out.push((format!("routes[{r}].policies[{p}].auth.methods[{m}].jwt.keys[{k}]"), e));
                    }
                }
            }
        }
    }
    out
}

/// Compiles an `auth` policy.
pub fn compile_auth(
    a: &cfg::Auth,
    consumers: &Arc<Consumers>,
    state: &Arc<AuthState>,
    live: &mut Live,
) -> Result<AuthPolicy, String> {
    let mut methods = Vec::new();
    let mut strip = Strip::default();
    let mut challenges: Vec<&str> = Vec::new();
    for m in &a.methods {
        let method = match m {
            cfg::AuthMethod::Jwt(j) => {
                let keys = match &j.jwks {
                    Some(src) => {
                        let cache = state.jwks(jwks_settings(src)?);
                        live.jwks.push(cache.clone());
                        KeySource::Jwks(cache)
                    }
                    None => {
                        let mut keys = Vec::new();
                        for k in &j.keys {
                            keys.extend(static_keys(k)?);
                        }
                        KeySource::Static(keys)
                    }
                };
                let algorithms = match (j.algorithms.is_empty(), &keys) {
                    (false, _) => j.algorithms.iter().map(|n| alg_of(n)).collect::<Result<_, _>>()?,
                    (true, KeySource::Jwks(_)) => jwks::default_remote_algs(),
                    (true, KeySource::Static(_)) => Vec::new(),
                };
                challenges.push("Bearer");
                Method::Jwt(
                    Box::new(JwtVerifier {
                        keys,
                        algorithms,
                        issuers: j.issuers.clone(),
                        audiences: j.audiences.clone(),
                        require_exp: j.require_exp,
                        skew: j.clock_skew.0,
                        max_lifetime: j.max_lifetime.map(|d| d.0),
                        required_claims: j.required_claims.clone(),
                        cache: token_cache::TokenCache::default(),
                    }),
                    sources(&j.from),
                )
            }
            cfg::AuthMethod::ApiKey(k) => {
                challenges.push("ApiKey");
                Method::ApiKey(sources(&k.from))
            }
            cfg::AuthMethod::Basic(_) => {
                challenges.push("Basic");
                Method::Basic
            }
            cfg::AuthMethod::Mtls(m) => Method::Mtls(m.require_consumer),
            cfg::AuthMethod::Introspection(i) => {
                let id = format!("{} {} {:?}", i.url, i.client_id, i.cache_ttl);
                let cache = state.introspection(id);
                live.introspection.push(cache.clone());
                challenges.push("Bearer");
                Method::Introspection(Box::new(Introspector::new(i, cache)?), sources(&i.from))
            }
        };
        strip.add(method.sources());
        methods.push(method);
    }
    challenges.dedup();
    let mut seen = Vec::new();
    challenges.retain(|c| {
        if seen.contains(c) {
            false
        } else {
            seen.push(*c);
            true
        }
    });
    let realm = &a.realm;
    let missing: Vec<String> = challenges.iter().map(|c| format!("{c} realm=\"{realm}\"")).collect();
    let invalid: Vec<String> = challenges
        .iter()
        .map(|c| {
            if *c == "Bearer" {
                format!("Bearer realm=\"{realm}\", error=\"invalid_token\"")
            } else {
                format!("{c} realm=\"{realm}\"")
            }
        })
        .collect();
    let anonymous = match &a.anonymous {
        Some(n) => Some(consumers.by_name(n).ok_or_else(|| format!("unknown anonymous consumer `{n}`"))?),
        None => None,
    };
    let lower = |s: &str| Bytes::from(s.to_ascii_lowercase());
    Ok(AuthPolicy {
        methods,
        anonymous,
        consumers: consumers.clone(),
        state: state.clone(),
        strip,
        identity_headers: IdentityHeaders {
            consumer: lower(&a.upstream_headers.consumer),
            groups: lower(&a.upstream_headers.groups),
            claims: a.upstream_headers.claims.iter().map(|(c, h)| (c.clone(), lower(h))).collect(),
        },
        challenge: Bytes::from(missing.join(", ")),
        challenge_invalid: Bytes::from(invalid.join(", ")),
    })
}

/// An `auth` compiles with the snapshot's consumers; its long-lived state (key sets, caches) lives
/// in `AuthState`, keyed by its settings, and what it uses is recorded in `live_auth`.
impl CompilePolicy for cfg::Auth {
    type Runtime = Box<AuthPolicy>;

    fn fingerprint(&self) -> String {
        "auth".into()
    }

    fn compile(&self, env: &mut PolicyEnv<'_>, r: &cfg::Route, _: &StateId) -> Result<Box<AuthPolicy>, CompileError> {
        compile_auth(self, &env.consumers, &env.limiters.auth, &mut env.live_auth)
            .map(Box::new)
            .map_err(|e| CompileError(format!("route `{}`: {e}", r.name)))
    }
}

/// Authentication's side of the policy contract: the verified identity goes into the context
/// (and its `X-Consumer-*` headers upstream), or the request is refused (401, or 503 when keys or
/// the introspection endpoint cannot be reached); the refusal's `error_kind` says which
/// credential problem it was (`credentials_missing`, `token_expired`, ...).
impl crate::policy::Policy for AuthPolicy {
    async fn on_request(
        &self,
        ctx: &mut RequestCtx,
        _: usize,
        headers: &mut Headers,
        req: &RequestInfo<'_>,
    ) -> crate::policy::Flow {
        match self.authenticate(ctx, headers, req).await {
            Ok(()) => crate::policy::Flow::Continue,
            Err(e) => crate::policy::Flow::Fail(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(list: &[(&'static str, &'static str)]) -> Headers {
        let mut h = Headers::new();
        for (n, v) in list {
            h.append(Bytes::from_static(n.as_bytes()), Bytes::from_static(v.as_bytes()));
        }
        h
    }

    #[test]
    fn finds_one_credential_or_refuses_several() {
        let bearer = [Source::Bearer, Source::Query("access_token".into())];
        let h = headers(&[("authorization", "Bearer abc")]);
        assert!(matches!(find(&bearer, &h, None), Found::One(v) if v == b"abc"));
        assert!(matches!(find(&bearer, &h, Some("access_token=xyz")), Found::Many));
        let two = headers(&[("authorization", "Bearer a"), ("authorization", "Bearer b")]);
        assert!(matches!(find(&bearer, &two, None), Found::Many));
        assert!(matches!(find(&bearer, &headers(&[("authorization", "Basic abc")]), None), Found::None));
        assert!(matches!(find(&bearer, &Headers::new(), Some("a=1&access%5Ftoken=t%2B")), Found::One(v) if v == b"t+"));
        let cookie = [Source::Cookie("session".into())];
        let h = headers(&[("cookie", "a=1; session=tok; b=2")]);
        assert!(matches!(find(&cookie, &h, None), Found::One(v) if v == b"tok"));
    }

    #[test]
    fn strips_every_credential_place() {
        let mut s = Strip::default();
        s.add(&[
            Source::Bearer,
            Source::Header("x-api-key".into()),
            Source::Cookie("session".into()),
            Source::Query("k".into()),
        ]);
        let mut h = headers(&[
            ("authorization", "Bearer t"),
            ("x-api-key", "k"),
            ("cookie", "a=1; session=tok"),
            ("accept", "*/*"),
        ]);
        s.headers(&mut h);
        assert_eq!(h.get("authorization"), None);
        assert_eq!(h.get("x-api-key"), None);
        assert_eq!(h.get("cookie"), Some(&b"a=1"[..]));
        assert_eq!(h.get("accept"), Some(&b"*/*"[..]));
        assert_eq!(s.query(Some("a=1&k=secret&b=2")), Some("a=1&b=2".to_string()));
        assert_eq!(s.query(Some("a=1")), None);
        assert_eq!(s.query(Some("%6b=secret")), Some(String::new()), "encoded names are credentials too");
    }

    #[test]
    fn claim_values_for_headers() {
        assert_eq!(claim_header_value(&serde_json::json!("a")), Some("a".into()));
        assert_eq!(claim_header_value(&serde_json::json!(["a", "b", 3])), Some("a,b,3".into()));
        assert_eq!(claim_header_value(&serde_json::json!("a\r\nx-evil: 1")), None, "no header injection");
        assert_eq!(claim_header_value(&serde_json::json!({"a": 1})), None);
    }
}
