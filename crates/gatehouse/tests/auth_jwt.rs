//! JWT authentication end to end: tokens signed by PyJWT (fixtures), every supported
//! algorithm with static keys, identity and claim headers upstream, token sources, authorize
//! (401 vs 403), maximum lifetime, and per-consumer rate limits.

#[path = "common/auth.rs"]
mod common;

use common::{bearer, config, route, static_keys, token};
use gatehouse_testkit::{gateway, request, stop, Backend};

fn jwt_policy(extra_jwt: &str, extra_auth: &str) -> String {
    format!(
        "      - auth:\n          methods:\n            - jwt:\n                issuers: [\"https://idp.test\"]\n                audiences: [gatehouse]\n                from: [bearer, {{query: access_token}}, {{cookie: session}}]\n{extra_jwt}                keys:\n{}{extra_auth}",
        static_keys()
    )
}

const CLAIM_HEADERS: &str =
    "          upstream_headers:\n            claims: {tenant: X-Tenant, sub: X-User-Id, roles: X-Roles}\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_algorithm_verifies_with_its_bound_static_key() {
    let backend = Backend::named("b").await;
    let gw = gateway(&config(&backend.url(), "", &route("api", &jwt_policy("", "")))).await;
    for alg in
        ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA", "HS256", "HS384", "HS512"]
    {
        let r = request(gw.addr, "GET", "/api/x", &[("authorization", &bearer(alg))], b"").await;
        assert_eq!(r.status, 200, "{alg}: {}", r.text());
    }
    assert_eq!(backend.count(), 12);
    stop(gw).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_reaches_the_upstream_and_the_token_does_not() {
    let backend = Backend::named("b").await;
    let gw = gateway(&config(&backend.url(), "", &route("api", &jwt_policy("", CLAIM_HEADERS)))).await;

    let r = request(gw.addr, "GET", "/api/orders", &[("authorization", &bearer("RS256"))], b"").await;
    assert_eq!(r.status, 200, "{}", r.text());
    let got = backend.last().expect("forwarded");
    assert_eq!(got.header("authorization"), None, "the token is stripped");
    // sub alice at https://idp.test maps to the consumer alice.
    assert_eq!(got.header("x-consumer-name"), Some("alice"));
    assert_eq!(got.header("x-consumer-groups"), Some("admins"));
    assert_eq!(got.header("x-tenant"), Some("acme"));
    assert_eq!(got.header("x-user-id"), Some("alice"));
    assert_eq!(got.header("x-roles"), Some("admin,user"));

    // A subject that maps to no consumer is named by its `sub`, without groups.
    let r = request(gw.addr, "GET", "/api/orders", &[("authorization", &bearer("bob"))], b"").await;
    assert_eq!(r.status, 200);
    let got = backend.last().expect("forwarded");
    assert_eq!(got.header("x-consumer-name"), Some("bob"));
    assert_eq!(got.header("x-consumer-groups"), None);
    stop(gw).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_from_query_and_cookie_are_removed_before_forwarding() {
    let backend = Backend::named("b").await;
    let gw = gateway(&config(&backend.url(), "", &route("api", &jwt_policy("", "")))).await;

    let path = format!("/api/x?a=1&access_token={}&b=2", token("ES256"));
    let r = request(gw.addr, "GET", &path, &[], b"").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(backend.last().expect("forwarded").uri, "/api/x?a=1&b=2");

    let path = format!("/api/x?access_token={}", token("ES256"));
    assert_eq!(request(gw.addr, "GET", &path, &[], b"").await.status, 200);
    assert_eq!(backend.last().expect("forwarded").uri, "/api/x", "an emptied query is dropped");

    let cookie = format!("theme=dark; session={}; lang=en", token("EdDSA"));
    let r = request(gw.addr, "GET", "/api/x", &[("cookie", &cookie)], b"").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(backend.last().expect("forwarded").header("cookie"), Some("theme=dark; lang=en"));
    stop(gw).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_token_is_401_with_a_challenge_and_a_json_body() {
    let backend = Backend::named("b").await;
    let gw = gateway(&config(&backend.url(), "", &route("api", &jwt_policy("", "")))).await;
    let r = request(gw.addr, "GET", "/api/x", &[], b"").await;
    assert_eq!(r.status, 401);
    assert_eq!(r.header("www-authenticate"), Some("Bearer realm=\"gatehouse\""));
    assert_eq!(r.json()["error"]["code"], "unauthorized");
    let r = request(gw.addr, "GET", "/api/x", &[("authorization", &bearer("tampered"))], b"").await;
    assert_eq!(r.status, 401);
    assert_eq!(r.header("www-authenticate"), Some("Bearer realm=\"gatehouse\", error=\"invalid_token\""));
    let msg = r.json()["error"]["message"].as_str().unwrap_or_default().to_string();
    assert!(msg.contains("not valid") && !msg.contains("signature"), "says which, not why: {msg}");
    assert_eq!(backend.count(), 0);
    let counts = gw.gw.shared().limiters.auth.stats.counts();
    assert_eq!((counts.denied_missing, counts.denied_invalid, counts.allowed), (1, 1, 0));
    stop(gw).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorize_gives_403_to_valid_identities_that_are_not_allowed() {
    let backend = Backend::named("b").await;
    let authz = |rules: &str| format!("{}      - authorize: {{{rules}}}\n", jwt_policy("", ""));
    let routes = route("admins", &authz("groups: [admins]"))
        + &route("scoped", &authz("scopes: [\"orders:read\"]"))
        + &route("claims", &authz("claims: [{claim: tenant, equals: acme}, {claim: roles, contains: admin}]"))
        + &route("named", &authz("consumers: [bob]"));
    let gw = gateway(&config(&backend.url(), "", &routes)).await;
    let call = |path: &'static str, tok: &'static str| {
        let addr = gw.addr;
        async move { request(addr, "GET", path, &[("authorization", &bearer(tok))], b"").await.status }
    };
    assert_eq!(call("/admins", "RS256").await, 200);
    assert_eq!(call("/admins", "bob").await, 403);
    assert_eq!(call("/scoped", "RS256").await, 200);
    assert_eq!(call("/scoped", "bob").await, 403);
    assert_eq!(call("/claims", "RS256").await, 200);
    assert_eq!(call("/claims", "bob").await, 403);
    assert_eq!(call("/named", "bob").await, 200);
    assert_eq!(call("/named", "RS256").await, 403);
    let r = request(gw.addr, "GET", "/admins", &[("authorization", &bearer("bob"))], b"").await;
    assert_eq!(r.json()["error"]["code"], "forbidden");
    assert_eq!(r.header("www-authenticate"), None, "403 carries no challenge");
    // No identity at all is still a 401.
    assert_eq!(request(gw.addr, "GET", "/admins", &[], b"").await.status, 401);
    assert_eq!(gw.gw.shared().limiters.auth.stats.counts().denied_forbidden, 5);
    stop(gw).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_lifetime_and_required_claims() {
    let backend = Backend::named("b").await;
    let routes = route("short", &jwt_policy("                max_lifetime: 1h\n", ""))
        + &route("claims", &jwt_policy("                required_claims: [email]\n", ""))
        + &route("lax", &jwt_policy("                require_exp: false\n", ""));
    let gw = gateway(&config(&backend.url(), "", &routes)).await;
    let call = |path: &'static str, tok: &'static str| {
        let addr = gw.addr;
        async move { request(addr, "GET", path, &[("authorization", &bearer(tok))], b"").await.status }
    };
    // The fixtures live until 2100: far longer than an hour.
    assert_eq!(call("/short", "RS256").await, 401);
    assert_eq!(call("/claims", "RS256").await, 401);
    assert_eq!(call("/lax", "no_exp").await, 200);
    assert_eq!(call("/lax", "RS256").await, 200);
    stop(gw).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_count_per_consumer_and_per_claim() {
    let backend = Backend::named("b").await;
    let routes =
        route("per-consumer", &format!("{}      - rate_limit: {{limit: 1/min, key: consumer}}\n", jwt_policy("", "")))
            + &route(
                "per-tenant",
                &format!("{}      - rate_limit: {{limit: 1/min, key: {{claim: tenant}}}}\n", jwt_policy("", "")),
            );
    let gw = gateway(&config(&backend.url(), "", &routes)).await;
    let call = |path: &'static str, tok: &'static str| {
        let addr = gw.addr;
        async move { request(addr, "GET", path, &[("authorization", &bearer(tok))], b"").await.status }
    };
    // alice and bob each get their own minute quota, from the same client address.
    assert_eq!(call("/per-consumer", "RS256").await, 200);
    assert_eq!(call("/per-consumer", "ES256").await, 429, "alice again (another algorithm, same consumer)");
    assert_eq!(call("/per-consumer", "bob").await, 200);
    assert_eq!(call("/per-tenant", "RS256").await, 200);
    assert_eq!(call("/per-tenant", "PS256").await, 429, "tenant acme again");
    assert_eq!(call("/per-tenant", "bob").await, 200, "tenant other");
    stop(gw).await;
}
