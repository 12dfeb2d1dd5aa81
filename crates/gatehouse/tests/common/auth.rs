//! Shared pieces of the identity tests: the PyJWT-made fixtures (see
//! `fixtures/jwt/make_fixtures.py`), consumers with independently made hashes, a real JWKS
//! server that can rotate keys, and a config builder.
#![allow(dead_code)]

use std::sync::{Arc, Mutex};

use gatehouse_testkit::{Backend, Cfg, Received, Reply};

pub fn fixture_path(name: &str) -> String {
    format!("{}/tests/fixtures/jwt/{name}", env!("CARGO_MANIFEST_DIR"))
}

pub fn fixture(name: &str) -> String {
    std::fs::read_to_string(fixture_path(name)).expect("fixture")
}

/// A token from `tokens.json` by name (`RS256`, `expired`, `alg_none`, ...).
pub fn token(name: &str) -> String {
    let all: serde_json::Value = serde_json::from_str(&fixture("tokens.json")).expect("tokens.json");
    all[name].as_str().unwrap_or_else(|| panic!("no fixture token {name}")).to_string()
}

pub fn bearer(name: &str) -> String {
    format!("Bearer {}", token(name))
}

/// API keys in clear (the config holds their SHA-256, computed by `printf %s KEY | sha256sum`).
pub const ALICE_KEY: &str = "alice-key-0001";
pub const BOB_KEY: &str = "bob-key-0002";

/// Consumers: alice (admins; JWT subject alice at https://idp.test; API key; basic with an
/// argon2id hash made by argon2-cffi), bob (users; API key; basic with a bcrypt hash made by
/// the Python `bcrypt` package), guest (no credentials, the anonymous consumer).
pub const CONSUMERS: &str = r#"consumers:
  - name: alice
    groups: [admins]
    metadata: {tier: gold}
    credentials:
      jwt: [{subject: alice, issuer: "https://idp.test"}]
      api_keys: [{sha256: 0264b8205526ceea6fff4c7d3d3b6cf383d579553a931736819eb39ec6dd9a04}]
      basic: [{username: alice, password_hash: "$argon2id$v=19$m=8192,t=1,p=1$4ewooaNQ8X7Pl+Kovod4Pg$eFO4ACZoxSQDu+OYqc1jcTpVHTKhEzmpPYP5D7qUVVo"}]
  - name: bob
    groups: [users]
    credentials:
      api_keys: [{sha256: d54508c124109e1bbf7d7dffd3aa872b9364dc9f0232ca9b32d74a42b570cd7d}]
      basic: [{username: bob, password_hash: "$2b$04$sTDVCoz5RBu3ggFue2h9wu3RlAiEPyFGXow.pkkcBmjUYVVWuyJTq"}]
  - name: guest
"#;

/// One listener, admin, one upstream `backend` at `target`, the consumers, `extra` top-level
/// YAML, and `routes`.
pub fn config(target: &str, extra: &str, routes: &str) -> String {
    Cfg::new().admin().upstream("backend", &[target]).yaml(CONSUMERS).yaml(extra).routes_yaml(routes).to_yaml()
}

/// A route at `/{name}` with `policies` (YAML list items indented by 6).
pub fn route(name: &str, policies: &str) -> String {
    format!("  - name: {name}\n    match:\n      path: {{ prefix: /{name} }}\n    upstream: backend\n    policies:\n{policies}")
}

/// The static keys of every fixture algorithm, each bound to its one algorithm.
pub fn static_keys() -> String {
    let mut k = String::new();
    for alg in ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512"] {
        k += &format!("                  - {{kid: rsa-1, alg: {alg}, file: \"{}\"}}\n", fixture_path("rsa1.pub.pem"));
    }
    k += &format!("                  - {{kid: ec-1, alg: ES256, file: \"{}\"}}\n", fixture_path("ec256.pub.pem"));
    k += &format!("                  - {{kid: ec384-1, alg: ES384, file: \"{}\"}}\n", fixture_path("ec384.pub.pem"));
    k += &format!(
        "                  - {{kid: ed-1, alg: EdDSA, pem: \"{}\"}}\n",
        fixture("ed25519.pub.pem").replace('\n', "\\n")
    );
    for alg in ["HS256", "HS384", "HS512"] {
        k += &format!("                  - {{kid: hs-1, alg: {alg}, secret: \"{}\"}}\n", fixture("hmac.secret"));
    }
    k
}

/// A real JWKS server on 127.0.0.1 whose document can be swapped (key rotation) and which
/// counts the fetches.
pub struct JwksServer {
    pub backend: Backend,
    doc: Arc<Mutex<(u16, String)>>,
}

impl JwksServer {
    pub async fn start(initial: &str, cache_control: &'static str) -> JwksServer {
        let doc = Arc::new(Mutex::new((200u16, fixture(initial))));
        let d = doc.clone();
        let backend = Backend::start(
            "jwks",
            Arc::new(move |r: &Received| {
                let (status, body) = d.lock().expect("lock").clone();
                if r.uri.ends_with("/.well-known/openid-configuration") {
                    // Discovery points at this same server's JWKS path.
                    let host = r.header("host").unwrap_or_default().to_string();
                    let doc = serde_json::json!({"issuer": "https://idp.test", "jwks_uri": format!("http://{host}/jwks.json")});
                    return Reply::text(200, &doc.to_string()).header("content-type", "application/json");
                }
                Reply::text(status, &body).header("content-type", "application/json").header("cache-control", cache_control)
            }),
        )
        .await;
        JwksServer { backend, doc }
    }

    pub fn url(&self) -> String {
        format!("{}/jwks.json", self.backend.url())
    }

    /// Serves another fixture from now on (rotation).
    pub fn serve(&self, fixture_name: &str) {
        *self.doc.lock().expect("lock") = (200, fixture(fixture_name));
    }

    /// Answers 503 from now on (the IdP is down).
    pub fn fail(&self) {
        self.doc.lock().expect("lock").0 = 503;
    }

    /// JWKS documents served so far (discovery documents not counted).
    pub fn fetches(&self) -> usize {
        self.backend.requests().iter().filter(|r| r.uri.ends_with("jwks.json")).count()
    }
}
