//! Identity headers cannot be forged and credentials do not leak: client-sent `X-Consumer-*`
//! (and configured claim headers) never reach a backend, on routes with and without `auth`;
//! a token in the query string reaches neither the backend nor the access log, even when the
//! request is refused.

#[path = "common/auth.rs"]
mod common;

use std::time::Duration;

use common::{bearer, config, fixture_path, route, token, ALICE_KEY};
use gatehouse_testkit::{free_port, gateway, request, stop, Backend};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_identity_headers_are_removed() {
    let backend = Backend::named("b").await;
    let routes = route(
        "keys",
        "      - auth:\n          upstream_headers:\n            claims: {tenant: X-Tenant}\n          methods:\n            - api_key: {}\n",
    ) + "  - name: open\n    match:\n      path: { prefix: /open }\n    upstream: backend\n";
    let gw = gateway(&config(&backend.url(), "", &routes)).await;
    let forged = [
        ("x-api-key", ALICE_KEY),
        ("x-consumer-name", "root"),
        ("X-Consumer-Groups", "admins, root"),
        ("x-consumer-id", "0"),
        ("x-tenant", "evil"),
    ];
    assert_eq!(request(gw.addr, "GET", "/keys", &forged, b"").await.status, 200);
    let got = backend.last().expect("forwarded");
    assert_eq!(got.header_all("x-consumer-name"), ["alice"]);
    assert_eq!(got.header_all("x-consumer-groups"), ["admins"]);
    assert_eq!(got.header("x-consumer-id"), None);
    assert_eq!(got.header("x-tenant"), None, "an API key has no claims: the forged copy is just removed");

    // A route without auth: the backend must still never see a client's identity headers.
    assert_eq!(request(gw.addr, "GET", "/open", &forged[1..], b"").await.status, 200);
    let got = backend.last().expect("forwarded");
    assert!(got.headers.iter().all(|(n, _)| !n.starts_with("x-consumer-")), "{:?}", got.headers);
    stop(gw).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_in_the_query_string_leaks_to_neither_backend_nor_access_log() {
    let backend = Backend::named("b").await;
    let log = std::env::temp_dir().join(format!("gatehouse-auth-log-{}-{}.log", std::process::id(), free_port()));
    let extra = format!("access_log:\n  enabled: true\n  path: {}\n  include_query: true\n", log.display());
    let routes = route(
        "api",
        &format!(
            "      - auth:\n          methods:\n            - jwt:\n                from: [{{query: access_token}}]\n                keys: [{{kid: rsa-1, alg: RS256, file: \"{}\"}}]\n",
            fixture_path("rsa1.pub.pem")
        ),
    );
    let gw = gateway(&config(&backend.url(), &extra, &routes)).await;
    let good = token("RS256");
    let bad = token("expired");
    assert_eq!(request(gw.addr, "GET", &format!("/api/a?x=1&access_token={good}"), &[], b"").await.status, 200);
    assert_eq!(request(gw.addr, "GET", &format!("/api/b?access_token={bad}&y=2"), &[], b"").await.status, 401);
    assert_eq!(backend.last().expect("forwarded").uri, "/api/a?x=1");

    let mut text = String::new();
    for _ in 0..200 {
        text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.lines().count() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = std::fs::remove_file(&log);
    let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).expect("JSON line")).collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert_eq!(lines[0]["query"], "x=1");
    assert_eq!(lines[1]["query"], "y=2");
    assert_eq!(lines[1]["error_kind"], "token_expired");
    let sig = |t: &str| t.rsplit('.').next().unwrap_or_default().to_string();
    assert!(!text.contains(&sig(&good)) && !text.contains(&sig(&bad)), "a token in the access log: {text}");
    stop(gw).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_of_every_method_are_stripped() {
    let backend = Backend::named("b").await;
    let routes = route(
        "api",
        &format!(
            "      - auth:\n          methods:\n            - jwt:\n                from: [bearer, {{header: X-Token}}, {{cookie: session}}]\n                keys: [{{kid: rsa-1, alg: RS256, file: \"{}\"}}]\n            - api_key: {{}}\n",
            fixture_path("rsa1.pub.pem")
        ),
    );
    let gw = gateway(&config(&backend.url(), "", &routes)).await;
    // Authenticated by the bearer token; the other places are stripped too.
    let headers = [
        ("authorization", bearer("RS256")),
        ("x-api-key", "something".to_string()),
        ("cookie", "session=abc; keep=1".to_string()),
    ];
    let h: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
    let r = request(gw.addr, "GET", "/api", &h, b"").await;
    assert_eq!(r.status, 401, "bearer plus cookie are two tokens for the jwt method");
    let h2 = [("authorization", headers[0].1.as_str()), ("x-api-key", "something"), ("cookie", "keep=1")];
    assert_eq!(request(gw.addr, "GET", "/api", &h2, b"").await.status, 200);
    let got = backend.last().expect("forwarded");
    assert_eq!(got.header("authorization"), None);
    assert_eq!(got.header("x-api-key"), None);
    assert_eq!(got.header("cookie"), Some("keep=1"));
    stop(gw).await;
}
