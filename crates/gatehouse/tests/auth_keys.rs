//! API keys, basic auth (argon2id and bcrypt hashes made by Python's argon2-cffi and bcrypt),
//! several methods per route tried in order, the anonymous consumer, and secrets redacted from
//! the admin `/config` view.

#[path = "common/auth.rs"]
mod common;

use common::{bearer, config, route, ALICE_KEY, BOB_KEY};
use gatehouse_testkit::{gateway, get, request, stop, Backend, TestGateway};

fn basic(user: &str, pw: &str) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let data = format!("{user}:{pw}").into_bytes();
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            out.push(if i <= chunk.len() { A[((n >> (18 - 6 * i)) & 63) as usize] as char } else { '=' });
        }
    }
    format!("Basic {out}")
}

async fn call(gw: &TestGateway, path: &str, headers: &[(&str, &str)]) -> u16 {
    request(gw.addr, "GET", path, headers, b"").await.status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_keys_from_header_or_query_identify_the_consumer() {
    let backend = Backend::named("b").await;
    let routes = route(
        "keys",
        "      - auth:\n          methods:\n            - api_key: {from: [{header: X-API-Key}, {query: apikey}]}\n",
    );
    let gw = gateway(&config(&backend.url(), "", &routes)).await;
    assert_eq!(call(&gw, "/keys", &[("x-api-key", ALICE_KEY)]).await, 200);
    let got = backend.last().expect("forwarded");
    assert_eq!(got.header("x-consumer-name"), Some("alice"));
    assert_eq!(got.header("x-api-key"), None, "the key is stripped");
    assert_eq!(call(&gw, &format!("/keys?apikey={BOB_KEY}&x=1"), &[]).await, 200);
    let got = backend.last().expect("forwarded");
    assert_eq!((got.header("x-consumer-name"), got.uri.as_str()), (Some("bob"), "/keys?x=1"));
    assert_eq!(call(&gw, "/keys", &[("x-api-key", "alice-key-0002")]).await, 401);
    assert_eq!(call(&gw, "/keys", &[]).await, 401);
    assert_eq!(call(&gw, &format!("/keys?apikey={BOB_KEY}"), &[("x-api-key", ALICE_KEY)]).await, 401, "two keys");
    let r = request(gw.addr, "GET", "/keys", &[], b"").await;
    assert_eq!(r.header("www-authenticate"), Some("ApiKey realm=\"gatehouse\""));
    assert_eq!(backend.count(), 2);
    stop(gw).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_auth_with_argon2_and_bcrypt_hashes() {
    let backend = Backend::named("b").await;
    let routes = route("basic", "      - auth:\n          realm: staff\n          methods:\n            - basic: {}\n");
    let gw = gateway(&config(&backend.url(), "", &routes)).await;
    assert_eq!(call(&gw, "/basic", &[("authorization", &basic("alice", "correct horse"))]).await, 200);
    assert_eq!(backend.last().expect("forwarded").header("authorization"), None);
    // Cached now: the same answer again.
    assert_eq!(call(&gw, "/basic", &[("authorization", &basic("alice", "correct horse"))]).await, 200);
    assert_eq!(call(&gw, "/basic", &[("authorization", &basic("bob", "open sesame"))]).await, 200);
    assert_eq!(backend.last().expect("forwarded").header("x-consumer-name"), Some("bob"));
    assert_eq!(call(&gw, "/basic", &[("authorization", &basic("alice", "correct horsE"))]).await, 401);
    assert_eq!(call(&gw, "/basic", &[("authorization", &basic("mallory", "correct horse"))]).await, 401);
    assert_eq!(call(&gw, "/basic", &[("authorization", "Basic !!!")]).await, 401);
    let r = request(gw.addr, "GET", "/basic", &[], b"").await;
    assert_eq!((r.status, r.header("www-authenticate")), (401, Some("Basic realm=\"staff\"")));
    stop(gw).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn methods_are_tried_in_order_and_anonymous_applies_only_without_credentials() {
    let backend = Backend::named("b").await;
    let keys = format!(
        "                keys: [{{kid: rsa-1, alg: RS256, file: \"{}\"}}]\n",
        common::fixture_path("rsa1.pub.pem")
    );
    let routes = route(
        "multi",
        &format!(
            "      - auth:\n          anonymous: guest\n          methods:\n            - jwt:\n{keys}            - api_key: {{}}\n            - basic: {{}}\n"
        ),
    );
    let gw = gateway(&config(&backend.url(), "", &routes)).await;
    let who = |b: &Backend| b.last().and_then(|r| r.header("x-consumer-name").map(str::to_string));
    assert_eq!(call(&gw, "/multi", &[("authorization", &bearer("RS256"))]).await, 200);
    assert_eq!(who(&backend).as_deref(), Some("alice"));
    assert_eq!(call(&gw, "/multi", &[("x-api-key", BOB_KEY)]).await, 200);
    assert_eq!(who(&backend).as_deref(), Some("bob"));
    assert_eq!(call(&gw, "/multi", &[("authorization", &basic("bob", "open sesame"))]).await, 200);
    assert_eq!(call(&gw, "/multi", &[]).await, 200);
    assert_eq!(who(&backend).as_deref(), Some("guest"));
    // An invalid credential is refused; it never falls back to anonymous.
    assert_eq!(call(&gw, "/multi", &[("x-api-key", "wrong")]).await, 401);
    assert_eq!(call(&gw, "/multi", &[("authorization", &bearer("expired"))]).await, 401);
    let r = request(gw.addr, "GET", "/multi", &[("x-api-key", "wrong")], b"").await;
    assert_eq!(
        r.header("www-authenticate"),
        Some("Bearer realm=\"gatehouse\", error=\"invalid_token\", ApiKey realm=\"gatehouse\", Basic realm=\"gatehouse\"")
    );
    let c = gw.gw.shared().limiters.auth.stats.counts();
    assert_eq!((c.allowed, c.anonymous, c.denied_invalid, c.denied_expired), (3, 1, 2, 1), "{c:?}");
    stop(gw).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_config_view_redacts_consumer_secrets() {
    let backend = Backend::named("b").await;
    let routes = route("keys", "      - auth:\n          methods:\n            - api_key: {}\n");
    let gw = gateway(&config(&backend.url(), "", &routes)).await;
    let r = get(gw.admin.expect("admin"), "/config").await;
    assert_eq!(r.status, 200);
    let text = r.text();
    assert!(text.contains("alice") && text.contains("admins"), "{text}");
    for secret in ["0264b8205526ceea", "$argon2id$", "$2b$04$"] {
        assert!(!text.contains(secret), "{secret} in /config: {text}");
    }
    stop(gw).await;
}

/// Hop-by-hop removal applies to what is forwarded, not to what the gateway consumes: a client
/// that names `Authorization` in `Connection` is still authenticated by it, and neither the
/// credential nor any other field it named reaches the backend.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_named_in_connection_are_still_read() {
    let backend = Backend::named("b").await;
    let routes = route("basic", "      - auth:\n          realm: staff\n          methods:\n            - basic: {}\n");
    let gw = gateway(&config(&backend.url(), "", &routes)).await;
    let req = format!(
        "GET /basic HTTP/1.1\r\nHost: gw.test\r\nConnection: close, Authorization, X-Extra\r\nAuthorization: {}\r\nX-Extra: 1\r\n\r\n",
        basic("alice", "correct horse")
    );
    let (resp, _) = gatehouse_testkit::raw_closes(gw.addr, req.as_bytes()).await;
    assert_eq!(gatehouse_testkit::status_of(&resp), 200, "{resp}");
    let got = backend.last().expect("forwarded");
    assert_eq!(got.header("x-consumer-name"), Some("alice"));
    assert_eq!(got.header("authorization"), None, "the credential is stripped");
    assert_eq!(got.header("x-extra"), None, "a field named in Connection is not forwarded");
    stop(gw).await;
}
