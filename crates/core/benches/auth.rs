//! JWT verification per algorithm (static keys, PyJWT-made tokens from the e2e fixtures) and
//! API-key lookup. `cargo bench -p gatehouse-core --bench auth`.
//!
//! `jwt_verify/<alg>` is the full path (verified-token cache off): parse, signature with the key
//! prepared at load, claims. `jwt_verify_cached/<alg>` is a client reusing its token: digest,
//! lookup, claim checks.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use gatehouse_core::auth::jwt::{algorithm, JwtVerifier, KeySource, VerifyKey};
use gatehouse_core::auth::keys::{hash_key, ApiKeyTable};
use gatehouse_core::auth::token_cache::TokenCache;

fn fixture(name: &str) -> String {
    let p = format!("{}/../gatehouse/tests/fixtures/jwt/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{p}: {e}"))
}

fn verifier(alg: &str, cache: usize) -> JwtVerifier {
    let a = algorithm(alg).expect("algorithm");
    let key = match alg {
        "ES256" => VerifyKey::from_pem(Some("ec-1".into()), a, fixture("ec256.pub.pem").as_bytes()),
        "EdDSA" => VerifyKey::from_pem(Some("ed-1".into()), a, fixture("ed25519.pub.pem").as_bytes()),
        "HS256" => VerifyKey::from_secret(Some("hs-1".into()), a, fixture("hmac.secret").as_bytes()),
        _ => VerifyKey::from_pem(Some("rsa-1".into()), a, fixture("rsa1.pub.pem").as_bytes()),
    }
    .expect("key");
    JwtVerifier {
        keys: KeySource::Static(vec![key]),
        algorithms: vec![],
        issuers: vec!["https://idp.test".into()],
        audiences: vec!["gatehouse".into()],
        require_exp: true,
        skew: Duration::from_secs(60),
        max_lifetime: None,
        required_claims: vec![],
        cache: TokenCache::new(cache),
    }
}

fn jwt(c: &mut Criterion) {
    let tokens: serde_json::Value = serde_json::from_str(&fixture("tokens.json")).expect("tokens");
    let rt = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
    let mut g = c.benchmark_group("jwt_verify");
    for alg in ["RS256", "PS256", "ES256", "EdDSA", "HS256"] {
        let v = verifier(alg, 0);
        let token = tokens[alg].as_str().expect("token").to_string();
        assert!(rt.block_on(v.verify(&token)).is_ok(), "{alg} fixture verifies");
        g.bench_function(alg, |b| b.iter(|| rt.block_on(v.verify(black_box(&token))).is_ok()));
    }
    g.finish();
    let mut g = c.benchmark_group("jwt_verify_cached");
    for alg in ["RS256", "ES256", "HS256"] {
        let v = verifier(alg, 4096);
        let token = tokens[alg].as_str().expect("token").to_string();
        assert!(rt.block_on(v.verify(&token)).is_ok(), "{alg} fixture verifies");
        g.bench_function(alg, |b| b.iter(|| rt.block_on(v.verify(black_box(&token))).is_ok()));
        assert!(v.cache.stats().0 > 0, "{alg}: the cache was hit");
    }
    g.finish();
}

fn api_keys(c: &mut Criterion) {
    let mut t = ApiKeyTable::default();
    for i in 0..10_000 {
        t.insert(&hash_key(&format!("key-{i}")), i);
    }
    c.bench_function("api_key_lookup_10k", |b| b.iter(|| t.lookup(black_box(b"key-5000"))));
}

criterion_group!(benches, jwt, api_keys);
criterion_main!(benches);
