//! `ip_filter` end to end: per route (a policy) and per listener (before routing), on the
//! trusted-proxy client address: `X-Forwarded-For` counts only from a trusted peer. Refusals are
//! 403 `ip_denied`, never forwarded, and counted.

use gatehouse_testkit::{raw_closes, request, status_of, Backend, Cfg, TestGateway};

async fn setup(listener_extra: &str, route_policies: &str) -> (Backend, TestGateway) {
    let backend = Backend::named("b").await;
    // `route_policies` is written at its place in the file (indented 4).
    let closed = format!("    match:\n      path: {{prefix: /closed}}\n{route_policies}");
    let gw = Cfg::new()
        .listener(listener_extra)
        .upstream("backend", &[backend.url()])
        .route_with("open", "backend", "match: {path: {prefix: /open}}")
        .route_with("closed", "backend", &closed)
        .start()
        .await;
    (backend, gw)
}

async fn status(gw: &TestGateway, path: &str, xff: Option<&str>) -> (u16, String) {
    let h: Vec<(&str, &str)> = xff.map(|v| vec![("x-forwarded-for", v)]).unwrap_or_default();
    let r = request(gw.addr, "GET", path, &h, b"").await;
    (r.status, r.json()["error"]["code"].as_str().unwrap_or("").to_string())
}

#[tokio::test]
async fn route_policy_denies_and_allows() {
    let (backend, gw) = setup("", "    policies:\n      - ip_filter:\n          deny: [127.0.0.0/8]\n").await;
    assert_eq!(status(&gw, "/open", None).await.0, 200);
    assert_eq!(status(&gw, "/closed", None).await, (403, "ip_denied".into()));
    // An untrusted peer cannot claim another address.
    assert_eq!(status(&gw, "/closed", Some("203.0.113.9")).await, (403, "ip_denied".into()));
    assert_eq!(backend.count(), 1);
    assert_eq!(gw.gw.ip_denied(), (0, 2));
}

#[tokio::test]
async fn route_policy_uses_forwarded_address_from_trusted_proxies_only() {
    let trusted = "    trusted_proxies: [127.0.0.1]\n";
    let policy = "    policies:\n      - ip_filter:\n          allow: [10.0.0.0/8]\n          deny: [10.9.0.0/16]\n";
    let (backend, gw) = setup(trusted, policy).await;
    assert_eq!(status(&gw, "/closed", Some("10.1.2.3")).await.0, 200);
    assert_eq!(status(&gw, "/closed", Some("10.9.2.3")).await.0, 403);
    assert_eq!(status(&gw, "/closed", Some("192.0.2.1")).await.0, 403);
    // Through a chain: the rightmost untrusted hop is the client.
    assert_eq!(status(&gw, "/closed", Some("10.1.2.3, 192.0.2.1")).await.0, 403);
    assert_eq!(status(&gw, "/closed", None).await.0, 403);
    assert_eq!(backend.count(), 1);
}

#[tokio::test]
async fn listener_filter_runs_before_routing() {
    let l = "    trusted_proxies: [127.0.0.1]\n    ip_filter:\n      allow: [198.51.100.0/24]\n";
    let (backend, gw) = setup(l, "").await;
    assert_eq!(status(&gw, "/open", Some("198.51.100.7")).await.0, 200);
    assert_eq!(status(&gw, "/open", Some("198.51.101.7")).await, (403, "ip_denied".into()));
    // Refused before routing: an unknown path is a 403, not a 404.
    assert_eq!(status(&gw, "/nowhere", None).await, (403, "ip_denied".into()));
    assert_eq!(backend.count(), 1);
    assert_eq!(gw.gw.ip_denied(), (2, 0));
    // The connection of a refused client is closed after the 403.
    let (resp, closed) = raw_closes(gw.addr, b"GET /open HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!(status_of(&resp), 403, "{resp}");
    assert!(closed, "{resp}");
}

#[tokio::test]
async fn listener_filter_ignores_forwarded_for_from_untrusted_peers() {
    let l = "    ip_filter:\n      allow: [198.51.100.0/24]\n";
    let (backend, gw) = setup(l, "").await;
    assert_eq!(status(&gw, "/open", Some("198.51.100.7")).await.0, 403);
    let (_b2, gw2) = setup("    ip_filter:\n      deny: [127.0.0.1]\n", "").await;
    assert_eq!(status(&gw2, "/open", Some("198.51.100.7")).await.0, 403);
    assert_eq!(backend.count(), 0);
}

#[test]
fn invalid_filters_are_refused_with_their_path() {
    let yaml = "listeners:\n  - address: 127.0.0.1:0\n    ip_filter:\n      allow: [10.0.0.1/8]\n\
                upstreams:\n  - name: b\n    targets:\n      - url: http://127.0.0.1:9\n\
                routes:\n  - name: r\n    upstream: b\n    policies:\n      - ip_filter: {}\n      - ip_filter:\n          deny: [nope]\n";
    let errs: Vec<String> = match gatehouse_config::load_str(yaml, &|_| None) {
        Ok(_) => Vec::new(),
        Err(e) => e.iter().map(|e| e.to_string()).collect(),
    };
    for path in [
        "listeners[0].ip_filter.allow[0]",
        "routes[0].policies[0].ip_filter",
        "routes[0].policies[1].ip_filter.deny[0]",
    ] {
        assert!(errs.iter().any(|e| e.starts_with(path)), "{path}: {errs:?}");
    }
}
