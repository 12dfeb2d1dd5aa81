//! Validation of identity config: `consumers`, and the `auth`, `authorize` and `external_auth`
//! route policies (their `ValidatePolicy` impls, with their order rules).
//!
//! Invariants: the same rules as the rest of `validate/` (every problem collected with its
//! path, nothing stops early). What needs cryptography (parsing PEM/JWK keys) is checked by the
//! data plane's `auth::check_keys`, which `gatehouse validate` runs too; everything else that
//! compilation relies on (URLs, names, algorithms, exactly-one-of choices) is refused here.

use std::collections::HashMap;

use super::policy::{PolicyScope, ValidatePolicy};
use super::Validator;
use crate::net::{is_token, parse_target_url, TargetUrl};
use crate::types::{
    Auth, AuthMethod, Authorize, ClaimCondition, Config, CredentialSource, ExternalAuth, IdentityHeaders, JwksSource,
    Jwt, JwtKey,
};
use crate::yaml::{join_index, join_key};

/// JWS algorithms the gateway verifies. `none` is never among them.
pub const JWT_ALGORITHMS: &[&str] =
    &["HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA"];

/// A URL of a service the gateway calls (JWKS, discovery, introspection, external auth):
/// `http://host:port[/path][?query]`. Returns the host:port part and the path with query.
pub fn parse_service_url(s: &str) -> Result<(TargetUrl, String), String> {
    let Some((scheme, rest)) = s.split_once("://") else {
        return Err(format!("`{s}` is not a URL: expected `http://host:port/path`"));
    };
    let tls = match scheme {
        "http" => false,
        "https" => true,
        _ => return Err(format!("unsupported scheme `{scheme}`: expected `http://` or `https://host:port/path`")),
    };
    if rest.contains('#') {
        return Err(format!("`{s}` has a fragment"));
    }
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(end);
    // Identity providers publish `https://` URLs without a port (`https://idp.example/jwks`): 443.
    let has_port = authority.rsplit_once(':').is_some_and(|(_, p)| !p.contains(']'));
    let authority = if tls && !has_port { format!("{authority}:443") } else { authority.to_string() };
    let target = parse_target_url(&format!("{scheme}://{authority}"))?;
    debug_assert_eq!(target.tls, tls);
    let path = if path.is_empty() {
        "/".to_string()
    } else if path.starts_with('?') {
        format!("/{path}")
    } else {
        path.to_string()
    };
    if path.bytes().any(|b| !(b.is_ascii_graphic())) {
        return Err(format!("`{s}`: the path must be printable ASCII without spaces"));
    }
    Ok((target, path))
}

fn is_hex64(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The password hash formats the data plane verifies.
fn password_hash_ok(h: &str) -> bool {
    let argon = ["$argon2id$", "$argon2i$", "$argon2d$"].iter().any(|p| h.starts_with(p)) && h.split('$').count() >= 6;
    let bcrypt = ["$2a$", "$2b$", "$2y$", "$2x$"].iter().any(|p| h.starts_with(p)) && h.len() == 60;
    argon || bcrypt
}

fn header_value_ok(s: &str) -> bool {
    s.bytes().all(|b| b == b'\t' || (b' '..=b'~').contains(&b))
}

impl ValidatePolicy for Auth {
    const AUTHENTICATES: bool = true;
    const CHECKS_IDENTITY: bool = true;

    fn validate(&self, v: &mut Validator<'_>, scope: &PolicyScope<'_>, p: &str) {
        if scope.authenticated() {
            v.err(p, "a route has at most one `auth` policy (list several methods in it)");
        }
        v.auth(self, scope.cfg, p);
    }
}

impl ValidatePolicy for Authorize {
    const CHECKS_IDENTITY: bool = true;

    fn validate(&self, v: &mut Validator<'_>, scope: &PolicyScope<'_>, p: &str) {
        v.needs_identity(scope, "`authorize`", p.to_string());
        v.authorize(self, p);
    }
}

impl ValidatePolicy for ExternalAuth {
    const CHECKS_IDENTITY: bool = true;

    fn validate(&self, v: &mut Validator<'_>, _: &PolicyScope<'_>, p: &str) {
        v.external_auth(self, p);
    }
}

impl Validator<'_> {
    pub(super) fn consumers(&mut self, cfg: &Config) {
        let mut names: HashMap<&str, String> = HashMap::new();
        let mut keys: HashMap<String, String> = HashMap::new();
        let mut users: HashMap<&str, String> = HashMap::new();
        let mut subjects: HashMap<(Option<&str>, &str), String> = HashMap::new();
        for (i, c) in cfg.consumers.iter().enumerate() {
            let p = join_index("consumers", i);
            self.name(&join_key(&p, "name"), "consumer", &c.name);
            match names.get(c.name.as_str()) {
                Some(first) => {
                    self.err(join_key(&p, "name"), format!("duplicate consumer name `{}` (also {first})", c.name))
                }
                None => {
                    names.insert(&c.name, p.clone());
                }
            }
            for (g, group) in c.groups.iter().enumerate() {
                self.name(&join_index(&join_key(&p, "groups"), g), "group", group);
            }
            let cp = join_key(&p, "credentials");
            for (k, key) in c.credentials.api_keys.iter().enumerate() {
                let kp = join_key(&join_index(&join_key(&cp, "api_keys"), k), "sha256");
                if !is_hex64(&key.sha256) {
                    self.err(
                        &kp,
                        "expected the 64 hex digits of the key's SHA-256 (print it with `gatehouse hash-key`)",
                    );
                } else if let Some(first) = keys.insert(key.sha256.to_ascii_lowercase(), kp.clone()) {
                    self.err(&kp, format!("the same API key is also given at {first}"));
                }
            }
            for (k, b) in c.credentials.basic.iter().enumerate() {
                let bp = join_index(&join_key(&cp, "basic"), k);
                if b.username.is_empty() || b.username.contains(':') || !header_value_ok(&b.username) {
                    self.err(join_key(&bp, "username"), "must be non-empty printable text without `:`");
                } else if let Some(first) = users.insert(&b.username, bp.clone()) {
                    self.err(
                        join_key(&bp, "username"),
                        format!("duplicate basic-auth user `{}` (also {first})", b.username),
                    );
                }
                if !password_hash_ok(&b.password_hash) {
                    self.err(
                        join_key(&bp, "password_hash"),
                        "expected an argon2 PHC string (`$argon2id$...`) or a bcrypt hash (`$2b$...`); print one with `gatehouse hash-password`",
                    );
                }
            }
            for (k, j) in c.credentials.jwt.iter().enumerate() {
                let jp = join_index(&join_key(&cp, "jwt"), k);
                if j.subject.is_empty() {
                    self.err(join_key(&jp, "subject"), "must not be empty");
                } else if let Some(first) = subjects.insert((j.issuer.as_deref(), &j.subject), jp.clone()) {
                    self.err(&jp, format!("the same subject (and issuer) is also mapped at {first}"));
                }
            }
        }
    }

    fn auth(&mut self, a: &Auth, cfg: &Config, p: &str) {
        if a.methods.is_empty() {
            self.err(join_key(p, "methods"), "list at least one method: `jwt`, `api_key`, `basic` or `introspection`");
        }
        if let Some(anon) = &a.anonymous {
            if !cfg.consumers.iter().any(|c| &c.name == anon) {
                self.err(join_key(p, "anonymous"), format!("unknown consumer `{anon}` (define it under `consumers`)"));
            }
        }
        if a.realm.is_empty() || a.realm.contains(['"', '\\']) || !header_value_ok(&a.realm) {
            self.err(join_key(p, "realm"), "must be non-empty printable text without `\"` or `\\`");
        }
        self.identity_headers(&a.upstream_headers, &join_key(p, "upstream_headers"));
        let mut basic = 0;
        for (k, m) in a.methods.iter().enumerate() {
            let mp = join_index(&join_key(p, "methods"), k);
            match m {
                AuthMethod::Jwt(j) => self.jwt(j, &join_key(&mp, "jwt")),
                AuthMethod::ApiKey(k) => {
                    let kp = join_key(&mp, "api_key");
                    self.sources(&k.from, &join_key(&kp, "from"));
                    if !cfg.consumers.iter().any(|c| !c.credentials.api_keys.is_empty()) {
                        self.err(kp, "no consumer has `credentials.api_keys`: every key would be refused");
                    }
                }
                AuthMethod::Basic(_) => {
                    basic += 1;
                    if basic > 1 {
                        self.err(join_key(&mp, "basic"), "`basic` is listed twice");
                    }
                    if !cfg.consumers.iter().any(|c| !c.credentials.basic.is_empty()) {
                        self.err(
                            join_key(&mp, "basic"),
                            "no consumer has `credentials.basic`: every user would be refused",
                        );
                    }
                }
                AuthMethod::Mtls(_) => {
                    if !cfg.listeners.iter().any(|l| l.tls.as_ref().is_some_and(|t| t.client_auth.is_some())) {
                        self.err(
                            join_key(&mp, "mtls"),
                            "no listener verifies client certificates (`listeners[].tls.client_auth`): no request could carry one",
                        );
                    }
                }
                AuthMethod::Introspection(i) => {
                    let ip = join_key(&mp, "introspection");
                    if let Err(e) = parse_service_url(&i.url) {
                        self.err(join_key(&ip, "url"), e);
                    }
                    if i.client_id.is_empty() || i.client_id.contains(':') {
                        self.err(join_key(&ip, "client_id"), "must be non-empty and without `:`");
                    }
                    self.positive_dur(join_key(&ip, "cache_ttl"), &i.cache_ttl);
                    self.positive_dur(join_key(&ip, "timeout"), &i.timeout);
                    self.sources(&i.from, &join_key(&ip, "from"));
                }
            }
        }
    }

    fn identity_headers(&mut self, h: &IdentityHeaders, p: &str) {
        let check = |v: &mut Self, name: &str, path: String| {
            if !is_token(name) {
                v.err(path, format!("invalid header name {name:?}"));
            } else if super::HOP_BY_HOP_HEADERS.contains(&name.to_ascii_lowercase().as_str())
                || ["host", "authorization", "cookie"].contains(&name.to_ascii_lowercase().as_str())
            {
                v.err(path, format!("`{name}` cannot carry the identity"));
            }
        };
        check(self, &h.consumer, join_key(p, "consumer"));
        check(self, &h.groups, join_key(p, "groups"));
        for (claim, header) in &h.claims {
            let cp = join_key(&join_key(p, "claims"), claim);
            if claim.is_empty() {
                self.err(&cp, "claim name must not be empty");
            }
            check(self, header, cp);
        }
    }

    fn sources(&mut self, from: &[CredentialSource], p: &str) {
        if from.is_empty() {
            self.err(p, "list at least one place to read the credential from");
        }
        for (k, s) in from.iter().enumerate() {
            let sp = join_index(p, k);
            match s {
                CredentialSource::Bearer => {}
                CredentialSource::Header(h) => {
                    if !is_token(h) || super::HOP_BY_HOP_HEADERS.contains(&h.to_ascii_lowercase().as_str()) {
                        self.err(join_key(&sp, "header"), format!("invalid header name {h:?}"));
                    }
                }
                CredentialSource::Cookie(c) => {
                    if !is_token(c) {
                        self.err(join_key(&sp, "cookie"), format!("invalid cookie name {c:?}"));
                    }
                }
                CredentialSource::Query(q) => {
                    if q.is_empty() || q.contains(['&', '=', '#', ' ']) {
                        self.err(join_key(&sp, "query"), format!("invalid query parameter name {q:?}"));
                    }
                }
            }
        }
    }

    fn jwt(&mut self, j: &Jwt, p: &str) {
        match (j.keys.is_empty(), &j.jwks) {
            (true, None) => self.err(p, "give the verification keys: `keys` (static) or `jwks` (fetched)"),
            (false, Some(_)) => self.err(p, "give either `keys` or `jwks`, not both"),
            (true, Some(src)) => self.jwks(src, &join_key(p, "jwks")),
            (false, None) => {}
        }
        for (k, alg) in j.algorithms.iter().enumerate() {
            self.algorithm(alg, &join_index(&join_key(p, "algorithms"), k));
        }
        for (k, key) in j.keys.iter().enumerate() {
            self.jwt_key(key, &join_index(&join_key(p, "keys"), k));
        }
        if j.clock_skew.0.as_secs() > 600 {
            self.err(join_key(p, "clock_skew"), "at most 10m (a larger skew makes expired tokens usable)");
        }
        if let Some(m) = &j.max_lifetime {
            self.positive_dur(join_key(p, "max_lifetime"), m);
        }
        for (k, c) in j.required_claims.iter().enumerate() {
            if c.is_empty() {
                self.err(join_index(&join_key(p, "required_claims"), k), "claim name must not be empty");
            }
        }
        self.sources(&j.from, &join_key(p, "from"));
    }

    fn algorithm(&mut self, alg: &str, p: &str) -> Option<&'static str> {
        if alg.eq_ignore_ascii_case("none") {
            self.err(p, "`none` (unsigned tokens) is never accepted");
            return None;
        }
        match JWT_ALGORITHMS.iter().find(|a| **a == alg) {
            Some(a) => Some(a),
            None => {
                self.err(p, format!("unknown algorithm {alg:?}: expected one of {}", JWT_ALGORITHMS.join(", ")));
                None
            }
        }
    }

    fn jwt_key(&mut self, key: &JwtKey, p: &str) {
        let given = [key.pem.is_some(), key.file.is_some(), key.jwk.is_some(), key.secret.is_some()];
        if given.iter().filter(|g| **g).count() != 1 {
            self.err(p, "give exactly one of `pem`, `file`, `jwk` or `secret`");
            return;
        }
        let alg = match &key.alg {
            Some(a) => self.algorithm(a, &join_key(p, "alg")),
            // A JWK may carry its own `alg`; a file may hold a JWK set with `alg`s.
            None if key.jwk.is_some() || key.file.is_some() => return,
            None => {
                self.err(join_key(p, "alg"), "required: the one algorithm this key verifies (e.g. RS256)");
                return;
            }
        };
        let Some(alg) = alg else { return };
        let hmac = alg.starts_with("HS");
        if key.secret.is_some() && !hmac {
            self.err(join_key(p, "alg"), format!("a `secret` is an HMAC key: use HS256, HS384 or HS512, not {alg}"));
        }
        if key.pem.is_some() && hmac {
            self.err(
                join_key(p, "alg"),
                format!("a PEM public key cannot verify {alg} (HMAC): that is the key-confusion attack"),
            );
        }
        if let Some(s) = &key.secret {
            if s.len() < 32 {
                self.err(join_key(p, "secret"), "an HMAC secret needs at least 32 bytes (RFC 7518 §3.2)");
            }
        }
    }

    fn jwks(&mut self, s: &JwksSource, p: &str) {
        match (&s.url, &s.discovery) {
            (Some(u), None) => {
                if let Err(e) = parse_service_url(u) {
                    self.err(join_key(p, "url"), e);
                }
            }
            (None, Some(d)) => {
                if let Err(e) = parse_service_url(d) {
                    self.err(join_key(p, "discovery"), e);
                }
            }
            _ => self.err(p, "give exactly one of `url` or `discovery`"),
        }
        for (name, d) in
            [("cache_max", &s.cache_max), ("refetch_interval", &s.refetch_interval), ("timeout", &s.timeout)]
        {
            self.positive_dur(join_key(p, name), d);
        }
        if s.cache_min.0 > s.cache_max.0 {
            self.err(join_key(p, "cache_min"), "must not be longer than `cache_max`");
        }
    }

    fn authorize(&mut self, a: &Authorize, p: &str) {
        if a.consumers.is_empty() && a.groups.is_empty() && a.scopes.is_empty() && a.claims.is_empty() {
            self.err(p, "give at least one of `consumers`, `groups`, `scopes` or `claims`");
        }
        for (k, g) in a.groups.iter().enumerate() {
            self.name(&join_index(&join_key(p, "groups"), k), "group", g);
        }
        for (k, s) in a.scopes.iter().enumerate() {
            if s.is_empty() || s.contains(' ') {
                self.err(join_index(&join_key(p, "scopes"), k), "a scope is non-empty and has no spaces");
            }
        }
        for (k, c) in a.claims.iter().enumerate() {
            self.claim_condition(c, &join_index(&join_key(p, "claims"), k));
        }
    }

    fn claim_condition(&mut self, c: &ClaimCondition, p: &str) {
        if c.claim.is_empty() || c.claim.split('.').any(str::is_empty) {
            self.err(join_key(p, "claim"), "a claim name (dots reach into objects: `realm_access.roles`)");
        }
        let ops = [c.equals.is_some(), c.one_of.is_some(), c.contains.is_some()];
        if ops.iter().filter(|o| **o).count() != 1 {
            self.err(p, "give exactly one of `equals`, `one_of` or `contains`");
        }
        if c.one_of.as_ref().is_some_and(Vec::is_empty) {
            self.err(join_key(p, "one_of"), "list at least one value");
        }
    }

    fn external_auth(&mut self, e: &ExternalAuth, p: &str) {
        if let Err(m) = parse_service_url(&e.url) {
            self.err(join_key(p, "url"), m);
        }
        self.positive_dur(join_key(p, "timeout"), &e.timeout);
        for (list, names) in [("headers", &e.headers), ("copy_headers", &e.copy_headers)] {
            for (k, h) in names.iter().enumerate() {
                let lower = h.to_ascii_lowercase();
                if !is_token(h) || super::HOP_BY_HOP_HEADERS.contains(&lower.as_str()) || lower == "host" {
                    self.err(join_index(&join_key(p, list), k), format!("invalid header name {h:?}"));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_urls() {
        let (t, p) = parse_service_url("http://127.0.0.1:8080/.well-known/jwks.json").unwrap();
        assert_eq!((t.authority(), p.as_str()), ("127.0.0.1:8080".to_string(), "/.well-known/jwks.json"));
        assert_eq!(parse_service_url("http://idp:80").unwrap().1, "/");
        assert_eq!(parse_service_url("http://idp:80?x=1").unwrap().1, "/?x=1");
        let (t, p) = parse_service_url("https://idp.example:8443/jwks").unwrap();
        assert!(t.tls && t.port == 8443 && p == "/jwks");
        let (t, _) = parse_service_url("https://idp.example/.well-known/jwks.json").unwrap();
        assert_eq!((t.port, t.authority()), (443, "idp.example:443".to_string()));
        assert_eq!(parse_service_url("https://[::1]/k").unwrap().0.port, 443);
        assert!(parse_service_url("ftp://idp:21/x").is_err());
        assert!(parse_service_url("http://idp/jwks").is_err(), "port required");
    }

    #[test]
    fn password_hashes() {
        assert!(password_hash_ok("$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA"));
        assert!(password_hash_ok("$2b$04$abcdefghijklmnopqrstuuABCDEFGHIJKLMNOPQRSTUVWXYZ01234"));
        assert!(!password_hash_ok("hunter2"));
    }
}
