//! External authorization and OAuth2 token introspection (RFC 7662) against real HTTP services
//! on 127.0.0.1: what the service receives, allow with copied headers, denial relayed, timeouts
//! failing closed, and the introspection answer cache.

#[path = "common/auth.rs"]
mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{config, route};
use gatehouse_testkit::{gateway, request, stop, Backend, Received, Reply};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_auth_allows_denies_and_fails_closed() {
    let authz = Backend::start(
        "authz",
        Arc::new(|r: &Received| match r.header("authorization") {
            Some("let-me-in") => Reply::text(200, "").header("x-user", "u-42"),
            Some("slow") => Reply::text(200, "").delay(Duration::from_millis(800)),
            _ => Reply::text(401, "{\"denied\":true}")
                .header("content-type", "application/json")
                .header("www-authenticate", "Custom realm=\"ext\""),
        }),
    )
    .await;
    let backend = Backend::named("b").await;
    let routes = route(
        "ext",
        &format!(
            "      - external_auth:\n          url: \"{}/check\"\n          timeout: 300ms\n          copy_headers: [X-User]\n",
            authz.url()
        ),
    );
    let gw = gateway(&config(&backend.url(), "", &routes)).await;

    let r =
        request(gw.addr, "POST", "/ext/orders?id=7", &[("authorization", "let-me-in"), ("x-user", "forged")], b"body")
            .await;
    assert_eq!(r.status, 200);
    let asked = authz.last().expect("asked");
    assert_eq!((asked.method.as_str(), asked.uri.as_str()), ("POST", "/check/ext/orders?id=7"));
    assert_eq!(asked.header("x-forwarded-for"), Some("127.0.0.1"));
    assert!(asked.body.is_empty(), "the body is not sent to the auth service");
    assert_eq!(backend.last().expect("forwarded").header_all("x-user"), ["u-42"], "copied from the answer");

    let r = request(gw.addr, "GET", "/ext", &[("authorization", "nope")], b"").await;
    assert_eq!(r.status, 401);
    assert_eq!(r.text(), "{\"denied\":true}");
    assert_eq!(r.header("www-authenticate"), Some("Custom realm=\"ext\""));

    let r = request(gw.addr, "GET", "/ext", &[("authorization", "slow")], b"").await;
    assert_eq!(r.status, 503, "timeout: fail closed");
    assert_eq!(backend.count(), 1);
    let c = gw.gw.shared().limiters.auth.stats.counts();
    assert_eq!((c.allowed, c.denied_external, c.denied_unavailable), (1, 1, 1));
    stop(gw).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn introspection_admits_active_tokens_and_caches_answers() {
    let idp = Backend::start(
        "introspect",
        Arc::new(|r: &Received| {
            let body = String::from_utf8_lossy(&r.body).to_string();
            // client credentials gw:s3cret, RFC 7662 §2.1
            let authed = r.header("authorization") == Some("Basic Z3c6czNjcmV0");
            let doc = if authed && body.starts_with("token=opaque-good&") {
                serde_json::json!({"active": true, "sub": "alice", "iss": "https://idp.test", "scope": "orders:read"})
            } else {
                serde_json::json!({"active": false})
            };
            Reply::text(200, &doc.to_string()).header("content-type", "application/json")
        }),
    )
    .await;
    let backend = Backend::named("b").await;
    let routes = route(
        "intro",
        &format!(
            "      - auth:\n          methods:\n            - introspection: {{url: \"{}/introspect\", client_id: gw, client_secret: s3cret, cache_ttl: 10s}}\n      - authorize: {{scopes: [\"orders:read\"]}}\n",
            idp.url()
        ),
    );
    let gw = gateway(&config(&backend.url(), "", &routes)).await;
    for _ in 0..3 {
        let r = request(gw.addr, "GET", "/intro", &[("authorization", "Bearer opaque-good")], b"").await;
        assert_eq!(r.status, 200, "{}", r.text());
    }
    assert_eq!(idp.count(), 1, "answers are cached");
    assert_eq!(backend.last().expect("forwarded").header("x-consumer-name"), Some("alice"));
    assert_eq!(backend.last().expect("forwarded").header("authorization"), None);
    let r = request(gw.addr, "GET", "/intro", &[("authorization", "Bearer opaque-bad")], b"").await;
    assert_eq!(r.status, 401);
    assert_eq!(idp.last().expect("asked").header("content-type"), Some("application/x-www-form-urlencoded"));
    stop(gw).await;
}
