//! Identity: `consumers` (who may call the gateway, with hashed credentials) and the identity
//! policies `auth` (its methods: JWT, API key, basic, introspection, mTLS), `authorize` and
//! `external_auth`.
//!
//! Invariants: plain data with `deny_unknown_fields`; secrets appear only in hashed form
//! (API key digests, password hashes) or as given by the operator (HMAC secrets, client
//! secrets; meant for `${ENV}`). Checked in `validate/identity.rs`; keys needing cryptography are
//! parsed by the data plane.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use super::defaults;
use crate::units::Dur;

/// A consumer: someone (a person, a service) the gateway can identify.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Consumer {
    pub name: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    /// Free-form labels (not sent anywhere unless a route asks for them).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
    #[serde(default)]
    pub credentials: Credentials,
}

/// A consumer's credentials; secrets only in hashed form.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    /// API keys as SHA-256 digests (`gatehouse hash-key`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub api_keys: Vec<ApiKeyCredential>,
    /// Basic-auth users with an argon2 or bcrypt password hash (`gatehouse hash-password`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub basic: Vec<BasicCredential>,
    /// JWTs that identify this consumer: `sub` (and optionally `iss`) equal to these.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub jwt: Vec<JwtCredential>,
    /// Client certificates that identify this consumer, by subject as the gateway renders it
    /// (RFC 4514, e.g. `CN=billing,O=Example`; the same text as `X-Client-Cert-Subject`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mtls: Vec<MtlsCredential>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MtlsCredential {
    pub subject: String,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyCredential {
    /// Lower-case hex SHA-256 of the key (64 characters).
    pub sha256: String,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BasicCredential {
    pub username: String,
    /// A PHC argon2 string (`$argon2id$...`) or a bcrypt hash (`$2b$...`).
    pub password_hash: String,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct JwtCredential {
    pub subject: String,
    /// When set, the token's `iss` must equal it too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
}

/// `auth`: authenticate with the first method whose credential the request carries.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Auth {
    /// Tried in order; the first one whose credential is present decides.
    pub methods: Vec<AuthMethod>,
    /// A consumer to use when the request carries no credential at all (instead of 401).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anonymous: Option<String>,
    /// The realm in `WWW-Authenticate` challenges.
    #[serde(default = "defaults::realm")]
    pub realm: String,
    /// Headers that carry the verified identity to the upstream.
    #[serde(default)]
    pub upstream_headers: IdentityHeaders,
}

/// One authentication method of an `auth` policy.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum AuthMethod {
    Jwt(Box<Jwt>),
    ApiKey(ApiKeyAuth),
    Basic(BasicAuth),
    Introspection(Introspection),
    /// The client certificate verified by the listener's `tls.client_auth`.
    Mtls(MtlsAuth),
}

/// `mtls`: the identity is the subject of the client certificate the TLS listener verified
/// (`listeners[].tls.client_auth`); it maps to the consumer whose `credentials.mtls` names it.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MtlsAuth {
    /// Refuse certificates whose subject maps to no consumer (default: admit them, named by the
    /// subject, like a token whose `sub` maps to no consumer).
    #[serde(default)]
    pub require_consumer: bool,
}

/// Where a credential is read from.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum CredentialSource {
    /// `Authorization: Bearer <token>`.
    Bearer,
    Header(String),
    Cookie(String),
    Query(String),
}

/// `jwt`: a signed JSON Web Token.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Jwt {
    /// Static keys (inline PEM/JWK, file, or HMAC secret).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keys: Vec<JwtKey>,
    /// Keys fetched by the gateway from a JWKS URL (or found through OIDC discovery).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks: Option<JwksSource>,
    /// Allowed `alg` values; empty = every algorithm the keys allow (never `none`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub algorithms: Vec<String>,
    /// Accepted `iss` values; empty = not checked.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub issuers: Vec<String>,
    /// The token's `aud` must contain one of these; empty = not checked.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub audiences: Vec<String>,
    /// Refuse tokens without `exp`.
    #[serde(default = "defaults::yes")]
    pub require_exp: bool,
    /// Tolerance for `exp`, `nbf` and `iat` against this gateway's clock.
    #[serde(default = "defaults::clock_skew")]
    pub clock_skew: Dur,
    /// Refuse tokens whose `exp − iat` (or `exp − now` without `iat`) exceeds this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_lifetime: Option<Dur>,
    /// Claims that must be present.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub required_claims: Vec<String>,
    /// Where the token is read; default `[bearer]`.
    #[serde(default = "defaults::bearer")]
    pub from: Vec<CredentialSource>,
}

/// A static JWT verification key: exactly one of `pem`, `file`, `jwk`, `secret`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct JwtKey {
    /// Matches the token header's `kid`; a key without `kid` matches any token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
    /// The one algorithm this key verifies (RFC 8725: a key is used with one algorithm).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alg: Option<String>,
    /// A PEM public key (RSA, EC or Ed25519).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pem: Option<String>,
    /// A file holding a PEM public key or a JWK / JWK set (JSON).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// An inline JWK.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwk: Option<serde_json::Value>,
    /// An HMAC secret (HS256/384/512), as given (use `${ENV}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

/// Keys the gateway fetches: from `url`, or from the `jwks_uri` of an OIDC `discovery` document.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct JwksSource {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// `.../.well-known/openid-configuration`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discovery: Option<String>,
    /// Lower bound on the cache time taken from `Cache-Control: max-age`.
    #[serde(default = "defaults::jwks_cache_min")]
    pub cache_min: Dur,
    /// Upper bound on the cache time (also used when the response has no `max-age`).
    #[serde(default = "defaults::jwks_cache_max")]
    pub cache_max: Dur,
    /// At most one refetch per this interval when a token names an unknown `kid` (or after a
    /// failed fetch).
    #[serde(default = "defaults::jwks_refetch_interval")]
    pub refetch_interval: Dur,
    /// How long an expired key set is still used while the JWKS URL fails; then fail closed.
    #[serde(default = "defaults::jwks_stale_for")]
    pub stale_for: Dur,
    /// Bound on one fetch.
    #[serde(default = "defaults::auth_call_timeout")]
    pub timeout: Dur,
}

/// `api_key`: a key compared (as SHA-256) with the consumers' `api_keys`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyAuth {
    /// Where the key is read; default `[{header: X-API-Key}]`.
    #[serde(default = "defaults::api_key_from")]
    pub from: Vec<CredentialSource>,
}

/// `basic`: `Authorization: Basic`, checked against the consumers' `basic` users.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BasicAuth {}

/// `introspection`: OAuth2 token introspection (RFC 7662) of an opaque bearer token.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Introspection {
    /// The introspection endpoint (`http://` only until the TLS issue lands).
    pub url: String,
    pub client_id: String,
    pub client_secret: String,
    /// How long an answer is reused (never past the token's `exp`).
    #[serde(default = "defaults::introspection_cache")]
    pub cache_ttl: Dur,
    #[serde(default = "defaults::auth_call_timeout")]
    pub timeout: Dur,
    #[serde(default = "defaults::bearer")]
    pub from: Vec<CredentialSource>,
}

/// Upstream headers that carry the identity; client-sent copies are always removed.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct IdentityHeaders {
    #[serde(default = "defaults::consumer_header")]
    pub consumer: String,
    #[serde(default = "defaults::groups_header")]
    pub groups: String,
    /// Claim name → header name, e.g. `{sub: X-User-Id}`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub claims: BTreeMap<String, String>,
}

impl Default for IdentityHeaders {
    fn default() -> Self {
        IdentityHeaders {
            consumer: defaults::consumer_header(),
            groups: defaults::groups_header(),
            claims: BTreeMap::new(),
        }
    }
}

/// `authorize`: who may pass, once `auth` established an identity.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Authorize {
    /// Allowed consumer names (or token subjects); with `groups`, either list admits.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub consumers: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    /// Every one of these must be in the token's `scope` (space-separated) or `scp` claim.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<String>,
    /// Every condition must hold.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub claims: Vec<ClaimCondition>,
}

/// A condition on a claim: exactly one of `equals`, `one_of`, `contains`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ClaimCondition {
    /// A claim name; dots reach into objects (`realm_access.roles`).
    pub claim: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub equals: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub one_of: Option<Vec<serde_json::Value>>,
    /// The claim (an array, or a space-separated string) contains this value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contains: Option<serde_json::Value>,
}

/// `external_auth`: an HTTP service decides.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ExternalAuth {
    /// `http://host:port/prefix`; the request's path and query are appended.
    pub url: String,
    /// Request headers sent along (the method and path always are).
    #[serde(default = "defaults::external_headers")]
    pub headers: Vec<String>,
    /// Headers of the service's 2xx answer copied onto the upstream request.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub copy_headers: Vec<String>,
    /// No answer in this time: 503 (fail closed).
    #[serde(default = "defaults::auth_call_timeout")]
    pub timeout: Dur,
}
