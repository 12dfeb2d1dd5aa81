//! Security regression: CORS never reflects an arbitrary origin together with credentials.
//!
//! - Origins that are not listed (look-alikes, suffix tricks, other schemes or ports, `null`,
//!   several `Origin` fields) get no `Access-Control-Allow-*` header at all, on actual requests
//!   and preflights, whatever the backend itself sends.
//! - `allow_origins: ["*"]` with `allow_credentials: true` is refused by validation; `*` without
//!   credentials answers the literal `*`, never the origin, and never with credentials.
//! - Every response on a CORS route carries `Vary: Origin`, so a shared cache cannot hand one
//!   origin's answer to another.

use std::sync::Arc;

use gatehouse_testkit::{raw, request, Backend, Cfg, Reply, Resp, TestGateway};

async fn setup(cors: &str) -> (Backend, TestGateway) {
    // A backend that reflects whatever origin it is sent, with credentials: the classic bug.
    let backend = Backend::start(
        "b",
        Arc::new(|r| {
            let origin = r.header("origin").unwrap_or("null").to_string();
            Reply::text(200, "secret")
                .header("access-control-allow-origin", &origin)
                .header("access-control-allow-credentials", "true")
        }),
    )
    .await;
    // Route fields at their place in the file (indented 4), as `cors` is.
    let route = format!("    policies:\n      - cors:\n{cors}");
    let gw = Cfg::new().upstream("backend", &[backend.url()]).route_with("api", "backend", &route).start().await;
    (backend, gw)
}

const CREDENTIALED: &str = "          allow_origins: [\"https://app.example.com\", \"https://*.example.com\"]\n\
                           \x20         allow_credentials: true\n";

fn no_cors_headers(r: &Resp) -> bool {
    r.headers.iter().all(|(k, _)| !k.to_ascii_lowercase().starts_with("access-control-"))
}

fn varies_on_origin(r: &Resp) -> bool {
    r.headers.iter().any(|(k, v)| k.eq_ignore_ascii_case("vary") && v.to_ascii_lowercase().contains("origin"))
}

const HOSTILE: &[&str] = &[
    "https://evil.test",
    "null",
    "https://app.example.com.evil.test",
    "https://evilexample.com",
    "https://example.com",
    "http://app.example.com",
    "https://app.example.com:8443",
    "https://app.example.com/",
    "https://x@app.example.com",
    "https://a.example.com\tx",
    "HTTPS://EVIL.TEST",
    "*",
];

#[tokio::test]
async fn arbitrary_origins_are_never_reflected_with_credentials() {
    let (_b, gw) = setup(CREDENTIALED).await;
    for origin in HOSTILE {
        let r = request(gw.addr, "GET", "/data", &[("origin", origin)], b"").await;
        assert!(no_cors_headers(&r), "{origin:?} got CORS headers: {r:?}");
        assert!(varies_on_origin(&r), "{origin:?}: no Vary: Origin");
        let r =
            request(gw.addr, "OPTIONS", "/data", &[("origin", origin), ("access-control-request-method", "GET")], b"")
                .await;
        assert_eq!(r.status, 403, "{origin:?}: {r:?}");
        assert!(no_cors_headers(&r), "{origin:?} preflight got CORS headers: {r:?}");
    }
    // Allowed ones are reflected exactly, with credentials and Vary.
    for origin in ["https://app.example.com", "https://deep.sub.example.com"] {
        let r = request(gw.addr, "GET", "/data", &[("origin", origin)], b"").await;
        assert_eq!(r.header("access-control-allow-origin"), Some(origin));
        assert_eq!(r.header("access-control-allow-credentials"), Some("true"));
        assert!(varies_on_origin(&r));
        assert_eq!(r.headers.iter().filter(|(k, _)| k == "access-control-allow-origin").count(), 1);
    }
}

#[tokio::test]
async fn two_origin_fields_grant_nothing() {
    let (_b, gw) = setup(CREDENTIALED).await;
    let resp = raw(
        gw.addr,
        b"GET /data HTTP/1.1\r\nHost: x\r\nOrigin: https://app.example.com\r\nOrigin: https://evil.test\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(!resp.to_ascii_lowercase().contains("access-control-"), "{resp}");
}

#[tokio::test]
async fn star_never_carries_credentials_or_reflects() {
    let (_b, gw) = setup("          allow_origins: [\"*\"]\n").await;
    for origin in ["https://evil.test", "https://app.example.com"] {
        let r = request(gw.addr, "GET", "/data", &[("origin", origin)], b"").await;
        assert_eq!(r.header("access-control-allow-origin"), Some("*"), "{origin}");
        assert_eq!(r.header("access-control-allow-credentials"), None);
    }
    // `null` is not "any origin".
    let r = request(gw.addr, "GET", "/data", &[("origin", "null")], b"").await;
    assert!(no_cors_headers(&r), "{r:?}");
}

#[test]
fn star_with_credentials_and_null_are_refused_by_validation() {
    let cfg = |cors: &str| {
        format!(
            "listeners:\n  - address: 127.0.0.1:0\nupstreams:\n  - name: b\n    targets:\n      - url: http://127.0.0.1:9\n\
             routes:\n  - name: api\n    upstream: b\n    policies:\n      - cors:\n{cors}"
        )
    };
    let errs = |cors: &str| match gatehouse_config::load_str(&cfg(cors), &|_| None) {
        Ok(_) => Vec::new(),
        Err(e) => e.iter().map(|e| e.to_string()).collect::<Vec<_>>(),
    };
    let e = errs("          allow_origins: [\"https://a.example.com\", \"*\"]\n          allow_credentials: true\n");
    assert!(e.iter().any(|m| m.contains("routes[0].policies[0].cors.allow_origins[1]")), "{e:?}");
    let e = errs("          allow_origins: [\"null\"]\n");
    assert!(e.iter().any(|m| m.contains("routes[0].policies[0].cors.allow_origins[0]")), "{e:?}");
    let e = errs("          allow_origins: [\"https://*.com\", \"https://*example.com\"]\n");
    assert_eq!(e.len(), 2, "{e:?}");
    assert!(
        errs("          allow_origins: [\"https://*.example.com\"]\n          allow_credentials: true\n").is_empty()
    );
}
