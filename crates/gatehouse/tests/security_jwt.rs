//! JWT attack classes (RFC 8725; `shared/reference/security.md` §2.5), each pinned by name:
//! `alg: none`, HS256 signed with the RSA public key (key confusion), an algorithm other than
//! the one a JWKS key is bound to, tampered payloads, expired / not-yet-valid / future-issued
//! tokens, wrong issuer and audience, missing `exp`, several tokens in one request, a flood of
//! unknown `kid`s (JWKS refetch is rate-limited), and claim values that try header injection.

#[path = "common/auth.rs"]
mod common;

use common::{bearer, config, route, static_keys, token, JwksServer};
use gatehouse_testkit::{gateway, request, stop, Backend, TestGateway};

fn static_route() -> String {
    route(
        "api",
        &format!(
            "      - auth:\n          methods:\n            - jwt:\n                issuers: [\"https://idp.test\"]\n                audiences: [gatehouse]\n                from: [bearer, {{query: access_token}}]\n                keys:\n{}          upstream_headers:\n            claims: {{tenant: X-Tenant}}\n",
            static_keys()
        ),
    )
}

async fn status(gw: &TestGateway, headers: &[(&str, &str)], path: &str) -> u16 {
    request(gw.addr, "GET", path, headers, b"").await.status
}

async fn refused(gw: &TestGateway, backend: &Backend, name: &str) {
    let r = request(gw.addr, "GET", "/api/x", &[("authorization", &bearer(name))], b"").await;
    assert_eq!(r.status, 401, "{name} must be refused: {}", r.text());
    assert!(r.header("www-authenticate").is_some_and(|c| c.starts_with("Bearer ")), "{name}");
    assert_eq!(backend.count(), 0, "{name} reached the backend");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alg_none_is_refused() {
    let backend = Backend::named("b").await;
    let gw = gateway(&config(&backend.url(), "", &static_route())).await;
    refused(&gw, &backend, "alg_none").await;
    stop(gw).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hs256_signed_with_the_rsa_public_key_is_refused() {
    // The classic key confusion: the verifier must never use an RSA public key as an HMAC
    // secret, even though the route also has HS256 keys (under another kid).
    let backend = Backend::named("b").await;
    let gw = gateway(&config(&backend.url(), "", &static_route())).await;
    refused(&gw, &backend, "hs256_with_rsa_public_key").await;
    stop(gw).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_expired_not_yet_valid_future_iat_wrong_iss_wrong_aud_no_exp_are_refused() {
    let backend = Backend::named("b").await;
    let gw = gateway(&config(&backend.url(), "", &static_route())).await;
    for name in ["tampered", "expired", "not_yet_valid", "iat_future", "wrong_iss", "wrong_aud", "no_exp"] {
        refused(&gw, &backend, name).await;
    }
    let r = request(gw.addr, "GET", "/api/x", &[("authorization", &bearer("expired"))], b"").await;
    assert!(r.json()["error"]["message"].as_str().is_some_and(|m| m.contains("expired")));
    let c = gw.gw.shared().limiters.auth.stats.counts();
    assert_eq!(c.denied_expired, 3, "expired twice and not_yet_valid once: {c:?}");
    // The same claims, validly signed, pass: the refusals above are about the claims.
    assert_eq!(status(&gw, &[("authorization", &bearer("RS256"))], "/api/x").await, 200);
    stop(gw).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_tokens_in_one_request_are_refused() {
    let backend = Backend::named("b").await;
    let gw = gateway(&config(&backend.url(), "", &static_route())).await;
    let (a, b) = (bearer("RS256"), bearer("ES256"));
    assert_eq!(status(&gw, &[("authorization", &a), ("authorization", &b)], "/api/x").await, 401);
    assert_eq!(status(&gw, &[("authorization", &a), ("authorization", &a)], "/api/x").await, 401, "even equal ones");
    let q = format!("/api/x?access_token={}", token("RS256"));
    assert_eq!(status(&gw, &[("authorization", &a)], &q).await, 401, "header and query");
    let qq = format!("/api/x?access_token={0}&access_token={0}", token("RS256"));
    assert_eq!(status(&gw, &[], &qq).await, 401, "two query parameters");
    assert_eq!(backend.count(), 0);
    assert_eq!(gw.gw.shared().limiters.auth.stats.counts().denied_multiple, 4);
    stop(gw).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claim_values_cannot_inject_headers() {
    let backend = Backend::named("b").await;
    let gw = gateway(&config(&backend.url(), "", &static_route())).await;
    let r = request(gw.addr, "GET", "/api/x", &[("authorization", &bearer("header_injection"))], b"").await;
    assert_eq!(r.status, 200, "the token itself is valid");
    let got = backend.last().expect("forwarded");
    assert_eq!(got.header("x-tenant"), None, "a claim with CR/LF is not forwarded");
    assert_eq!(got.header_all("x-consumer-name"), ["alice"]);
    stop(gw).await;
}

fn jwks_route(jwks_url: &str, refetch: &str) -> String {
    route(
        "api",
        &format!(
            "      - auth:\n          methods:\n            - jwt:\n                issuers: [\"https://idp.test\"]\n                jwks: {{url: \"{jwks_url}\", refetch_interval: {refetch}}}\n"
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_kid_flood_refetches_the_jwks_at_most_once_per_interval() {
    let idp = JwksServer::start("jwks-a.json", "max-age=300").await;
    let backend = Backend::named("b").await;
    let gw = gateway(&config(&backend.url(), "", &jwks_route(&idp.url(), "10s"))).await;
    assert_eq!(status(&gw, &[("authorization", &bearer("RS256"))], "/api/x").await, 200);
    assert_eq!(idp.fetches(), 1);
    // 50 tokens with random kids (the header is re-encoded; the signature does not matter:
    // the kid is looked up first).
    let good = token("RS256");
    let mut parts = good.split('.');
    let (_, payload, sig) = (parts.next(), parts.next().unwrap_or_default(), parts.next().unwrap_or_default());
    for i in 0..50u64 {
        let header = format!("{{\"alg\":\"RS256\",\"kid\":\"random-{i}-{}\"}}", i.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let forged = format!("{}.{payload}.{sig}", b64url(header.as_bytes()));
        let s = status(&gw, &[("authorization", &format!("Bearer {forged}"))], "/api/x").await;
        assert_eq!(s, 401);
    }
    assert!(idp.fetches() <= 2, "the flood made {} JWKS fetches", idp.fetches());
    assert_eq!(backend.count(), 1);
    stop(gw).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jwks_key_is_used_only_with_its_own_alg() {
    // jwks-a binds rsa-1 to RS256: a PS256 token under the same kid is refused, however valid
    // its signature.
    let idp = JwksServer::start("jwks-a.json", "max-age=300").await;
    let backend = Backend::named("b").await;
    let gw = gateway(&config(&backend.url(), "", &jwks_route(&idp.url(), "10s"))).await;
    refused(&gw, &backend, "ps256_on_rs256_key").await;
    refused(&gw, &backend, "hs256_with_rsa_public_key").await;
    refused(&gw, &backend, "alg_none").await;
    assert_eq!(status(&gw, &[("authorization", &bearer("RS256"))], "/api/x").await, 200);
    stop(gw).await;
}

fn b64url(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..=chunk.len() {
            out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}
