//! Remote JWKS end to end, against a real JWKS server on 127.0.0.1: key rotation mid-test,
//! OIDC discovery, serving stale keys while the IdP is down, then failing closed.

#[path = "common/auth.rs"]
mod common;

use std::time::Duration;

use common::{bearer, config, route, JwksServer};
use gatehouse_testkit::{gateway, request, stop, Backend, TestGateway};

fn jwks_route(source: &str) -> String {
    route(
        "api",
        &format!("      - auth:\n          methods:\n            - jwt:\n                jwks: {{{source}}}\n"),
    )
}

async fn status(gw: &TestGateway, token: &str) -> u16 {
    request(gw.addr, "GET", "/api/x", &[("authorization", &bearer(token))], b"").await.status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_at_the_idp_is_picked_up_by_the_first_token_with_the_new_kid() {
    let idp = JwksServer::start("jwks-a.json", "public, max-age=300").await;
    let backend = Backend::named("b").await;
    let source = format!("url: \"{}\", refetch_interval: 200ms", idp.url());
    let gw = gateway(&config(&backend.url(), "", &jwks_route(&source))).await;

    assert_eq!(status(&gw, "RS256").await, 200);
    assert_eq!(status(&gw, "ES256").await, 200, "same set, no refetch");
    assert_eq!(idp.fetches(), 1, "cached per max-age");

    idp.serve("jwks-b.json");
    // Signed with the new key: unknown kid → one refetch (the interval has passed) → admitted.
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(status(&gw, "rotated").await, 200);
    assert_eq!(idp.fetches(), 2);
    // The old key is gone from the set.
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(status(&gw, "RS256").await, 401);
    assert_eq!(backend.count(), 3);
    stop(gw).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidc_discovery_finds_the_jwks() {
    let idp = JwksServer::start("jwks-a.json", "max-age=300").await;
    let backend = Backend::named("b").await;
    let source = format!("discovery: \"{}/.well-known/openid-configuration\"", idp.backend.url());
    let gw = gateway(&config(&backend.url(), "", &jwks_route(&source))).await;
    assert_eq!(status(&gw, "EdDSA").await, 200);
    assert_eq!(idp.fetches(), 1);
    stop(gw).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_keys_serve_while_the_idp_is_down_then_fail_closed() {
    let idp = JwksServer::start("jwks-a.json", "max-age=0").await;
    let backend = Backend::named("b").await;
    // Fresh for 300 ms (max-age 0 is raised to cache_min), then stale for 700 ms more.
    let source = format!("url: \"{}\", cache_min: 300ms, stale_for: 700ms, refetch_interval: 100ms", idp.url());
    let gw = gateway(&config(&backend.url(), "", &jwks_route(&source))).await;
    assert_eq!(status(&gw, "RS256").await, 200);

    idp.fail();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(status(&gw, "RS256").await, 200, "expired, IdP down: stale keys still serve");
    assert!(idp.fetches() >= 2, "a refresh was attempted");
    tokio::time::sleep(Duration::from_millis(800)).await;
    let r = request(gw.addr, "GET", "/api/x", &[("authorization", &bearer("RS256"))], b"").await;
    assert_eq!(r.status, 503, "past stale_for: fail closed");
    assert_eq!(r.json()["error"]["code"], "auth_unavailable");

    idp.serve("jwks-a.json");
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(status(&gw, "RS256").await, 200, "recovers once the IdP is back");
    stop(gw).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_idp_fails_closed() {
    let dead = format!("http://127.0.0.1:{}/jwks.json", gatehouse_testkit::free_port());
    let backend = Backend::named("b").await;
    let gw = gateway(&config(&backend.url(), "", &jwks_route(&format!("url: \"{dead}\", timeout: 500ms")))).await;
    assert_eq!(status(&gw, "RS256").await, 503);
    assert_eq!(backend.count(), 0);
    assert_eq!(gw.gw.shared().limiters.auth.stats.counts().denied_unavailable, 1);
    stop(gw).await;
}
