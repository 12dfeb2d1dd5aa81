//! CORS end to end: preflights answered at the gateway (the backend never sees them, even when
//! the route's methods exclude OPTIONS), allowed and disallowed origins on actual requests,
//! patterns, credentials, `cors` before `auth`, and the CORS headers on gateway refusals.

use std::sync::Arc;

use gatehouse_testkit::{request, Backend, Cfg, Reply, Resp, TestGateway};

/// Route `api` on `/api` with a `cors` policy, then `extra_policies`; `top`: top-level sections.
async fn setup(cors: &str, extra_policies: &str, methods: &str, top: &str) -> (Backend, TestGateway) {
    // The backend reflects any origin with credentials: the gateway must not let that through.
    let backend = Backend::start(
        "b",
        Arc::new(|_| {
            Reply::text(200, "ok")
                .header("access-control-allow-origin", "https://evil.test")
                .header("access-control-allow-credentials", "true")
                .header("x-total", "3")
        }),
    )
    .await;
    // Route fields at their place in the file (indented 4), as `cors` and the others are.
    let route = format!(
        "    match:\n      path: {{prefix: /api}}\n{methods}    policies:\n      - cors:\n{cors}{extra_policies}"
    );
    let gw =
        Cfg::new().yaml(top).upstream("backend", &[backend.url()]).route_with("api", "backend", &route).start().await;
    (backend, gw)
}

const CORS: &str = "          allow_origins: [\"https://app.example.com\", \"https://*.example.org\"]\n\
                    \x20         allow_methods: [GET, PUT]\n\
                    \x20         allow_headers: [content-type, x-token]\n\
                    \x20         expose_headers: [x-total]\n\
                    \x20         allow_credentials: true\n\
                    \x20         max_age: 10m\n";

fn all<'a>(r: &'a Resp, name: &str) -> Vec<&'a str> {
    r.headers.iter().filter(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str()).collect()
}

async fn preflight(gw: &TestGateway, origin: &str, method: &str, headers: Option<&str>) -> Resp {
    let mut h = vec![("origin", origin), ("access-control-request-method", method)];
    if let Some(x) = headers {
        h.push(("access-control-request-headers", x));
    }
    request(gw.addr, "OPTIONS", "/api/items", &h, b"").await
}

#[tokio::test]
async fn preflight_answered_at_the_gateway_even_when_options_is_not_a_route_method() {
    let (backend, gw) = setup(CORS, "", "      methods: [GET, PUT]\n", "").await;
    let r = preflight(&gw, "https://app.example.com", "PUT", Some("Content-Type, X-Token")).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.header("access-control-allow-origin"), Some("https://app.example.com"));
    assert_eq!(r.header("access-control-allow-credentials"), Some("true"));
    assert_eq!(r.header("access-control-allow-methods"), Some("GET, PUT"));
    assert_eq!(r.header("access-control-allow-headers"), Some("content-type, x-token"));
    assert_eq!(r.header("access-control-max-age"), Some("600"));
    assert!(r.header("vary").is_some_and(|v| v.contains("Origin")));
    // A pattern match is reflected too.
    let r = preflight(&gw, "https://a.b.example.org", "GET", None).await;
    assert_eq!((r.status, r.header("access-control-allow-origin")), (200, Some("https://a.b.example.org")));
    // Refusals: unknown origin, method not allowed, header not allowed → 403 without allow headers.
    for (origin, method, hdrs) in [
        ("https://evil.test", "GET", None),
        ("https://example.org", "GET", None),
        ("https://app.example.com", "PUT", Some("x-other")),
    ] {
        let r = preflight(&gw, origin, method, hdrs).await;
        assert_eq!(r.status, 403, "{origin} {method} {hdrs:?}: {r:?}");
        assert_eq!(r.json()["error"]["code"], "cors_rejected");
        assert!(r.headers.iter().all(|(k, _)| !k.starts_with("access-control-")), "{r:?}");
    }
    // A preflight for a method the route itself excludes finds no route with `cors` and is
    // routed as OPTIONS: 405, no CORS headers.
    let r = preflight(&gw, "https://app.example.com", "DELETE", None).await;
    assert_eq!(r.status, 405, "{r:?}");
    assert!(r.headers.iter().all(|(k, _)| !k.starts_with("access-control-")), "{r:?}");
    assert_eq!(backend.count(), 0, "a preflight reached the backend: {:?}", backend.last());
    // A plain OPTIONS (no preflight headers) is routed as OPTIONS: 405 on this route.
    let r = request(gw.addr, "OPTIONS", "/api/items", &[("origin", "https://app.example.com")], b"").await;
    assert_eq!(r.status, 405);
}

#[tokio::test]
async fn actual_requests_get_headers_only_for_allowed_origins() {
    let (backend, gw) = setup(CORS, "", "", "").await;
    // Any method reaches this route: a preflight for a method `cors` does not allow is refused.
    let r = preflight(&gw, "https://app.example.com", "DELETE", None).await;
    assert_eq!(r.status, 403, "{r:?}");
    let r = request(gw.addr, "GET", "/api/items", &[("origin", "https://x.example.org")], b"").await;
    assert_eq!(r.status, 200);
    assert_eq!(all(&r, "access-control-allow-origin"), vec!["https://x.example.org"]);
    assert_eq!(r.header("access-control-allow-credentials"), Some("true"));
    assert_eq!(r.header("access-control-expose-headers"), Some("x-total"));
    assert!(all(&r, "vary").iter().any(|v| v.contains("Origin")));
    // Disallowed origin: forwarded (the browser enforces), but no CORS header, not even the
    // backend's own reflection.
    let r = request(gw.addr, "GET", "/api/items", &[("origin", "https://evil.test")], b"").await;
    assert_eq!(r.status, 200);
    assert!(r.headers.iter().all(|(k, _)| !k.starts_with("access-control-")), "{r:?}");
    assert!(all(&r, "vary").iter().any(|v| v.contains("Origin")));
    // No Origin: not a CORS request; still `Vary: Origin` for caches.
    let r = request(gw.addr, "GET", "/api/items", &[], b"").await;
    assert!(r.headers.iter().all(|(k, _)| !k.starts_with("access-control-")), "{r:?}");
    assert!(all(&r, "vary").iter().any(|v| v.contains("Origin")));
    assert_eq!(backend.count(), 3);
}

#[tokio::test]
async fn wildcard_without_credentials_answers_star() {
    let cors = "          allow_origins: [\"*\"]\n";
    let (_backend, gw) = setup(cors, "", "", "").await;
    let r = request(gw.addr, "GET", "/api/x", &[("origin", "https://anyone.test")], b"").await;
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    assert_eq!(r.header("access-control-allow-credentials"), None);
    let r = preflight(&gw, "https://anyone.test", "POST", None).await;
    assert_eq!((r.status, r.header("access-control-allow-origin")), (200, Some("*")));
    assert_eq!(r.header("access-control-allow-credentials"), None);
}

#[tokio::test]
async fn cors_before_auth_answers_the_preflight_and_decorates_the_401() {
    let auth = "      - auth:\n          methods:\n            - api_key: {}\n";
    let consumers = format!(
        "consumers:\n  - name: c\n    credentials:\n      api_keys:\n        - sha256: \"{}\"",
        "ab".repeat(32)
    );
    let (backend, gw) = setup(CORS, auth, "", &consumers).await;
    let r = preflight(&gw, "https://app.example.com", "GET", Some("x-token")).await;
    assert_eq!(r.status, 200, "{r:?}");
    // The actual request without a key: 401 from `auth`, readable by the page.
    let r = request(gw.addr, "GET", "/api/items", &[("origin", "https://app.example.com")], b"").await;
    assert_eq!(r.status, 401, "{r:?}");
    assert_eq!(r.header("access-control-allow-origin"), Some("https://app.example.com"));
    assert_eq!(backend.count(), 0);
}
