//! Security regressions: path normalisation versus route matching (Envoy CVE-2019-9901,
//! CVE-2021-29492, Istio CVE-2021-31920 class).
//!
//! Config: a prefix route `/admin` to upstream `admin` and a catch-all route to upstream `public`,
//! each with its own recording backend. For every probe we check which backend received it and
//! that the path it received is exactly the gateway's normalised path (what is matched is what is
//! forwarded), or that the gateway answered 400 and forwarded nothing.
//!
//! Documented normalisation (crates/core/src/normalize.rs): unreserved escapes are decoded, other
//! escapes kept with upper-case hex, `//` is
//! merged, `.`/`..` (also `%2E`) are resolved never above the root; `%00`, malformed escapes, raw
//! `\`, raw `#`, control characters, raw non-ASCII and dot segments with path parameters
//! (`..;x`) and empty segments with path parameters (`/;x/`) are refused; `%2F`/`%5C` are refused by
//! default (`listeners[].escaped_slashes`). Matching is case-sensitive.

use std::time::Duration;

use gatehouse_testkit::{raw_closes, status_of, Backend, Cfg, TestGateway};

struct Env {
    admin: Backend,
    public: Backend,
    gw: TestGateway,
}

async fn setup() -> Env {
    setup_with("").await
}

/// The same two routes behind a listener with `listener` fields (e.g. `escaped_slashes: keep`).
async fn setup_with(listener: &str) -> Env {
    let admin = Backend::named("admin").await;
    let public = Backend::named("public").await;
    let gw = Cfg::new()
        .listener(listener)
        .upstream("admin", &[admin.url()])
        .upstream("public", &[public.url()])
        .route_with("admin", "admin", "match: {path: {prefix: /admin}}")
        .route("public", "public")
        .start()
        .await;
    Env { admin, public, gw }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// Routed to this backend, which received exactly this path (and query).
    Admin(&'static str),
    Public(&'static str),
    /// 400 from the gateway, nothing forwarded.
    Refused,
}

/// Sends `GET {target}` (raw, so the target is not touched by a client library) and checks the
/// outcome.
async fn probe(env: &Env, target: &str, expect: Expect) {
    probe_raw(env, format!("GET {target} HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\n\r\n").as_bytes(), expect)
        .await
}

async fn probe_raw(env: &Env, req: &[u8], expect: Expect) {
    let shown = String::from_utf8_lossy(req.split(|&b| b == b'\r').next().unwrap_or_default()).into_owned();
    let (a0, p0) = (env.admin.count(), env.public.count());
    let (resp, closed) = raw_closes(env.gw.addr, req).await;
    assert!(closed, "{shown}: connection not closed");
    match expect {
        Expect::Refused => {
            assert_eq!(status_of(&resp), 400, "{shown}: {resp:?}");
            assert!(resp.contains("\"code\":\"bad_request\""), "{shown}: {resp:?}");
            tokio::time::sleep(Duration::from_millis(30)).await;
            assert_eq!((env.admin.count(), env.public.count()), (a0, p0), "{shown}: something was forwarded");
        }
        Expect::Admin(path) | Expect::Public(path) => {
            assert_eq!(status_of(&resp), 200, "{shown}: {resp:?}");
            let (hit, miss, name) = match expect {
                Expect::Admin(_) => (&env.admin, &env.public, "admin"),
                _ => (&env.public, &env.admin, "public"),
            };
            assert_eq!(miss.count(), if name == "admin" { p0 } else { a0 }, "{shown}: reached the wrong backend");
            let before = if name == "admin" { a0 } else { p0 };
            assert_eq!(hit.count(), before + 1, "{shown}: expected at the {name} backend");
            let got = hit.last().expect("recorded");
            assert_eq!(got.uri, path, "{shown}: the {name} backend received a different path than was matched");
            assert!(resp.contains(&format!("\"backend\":\"{name}\"")), "{shown}: {resp:?}");
        }
    }
}

#[tokio::test]
async fn dot_segments_slashes_and_escapes_resolve_before_matching() {
    let env = setup().await;
    let cases: &[(&str, Expect)] = &[
        ("/admin", Expect::Admin("/admin")),
        ("/admin/users", Expect::Admin("/admin/users")),
        ("//admin", Expect::Admin("/admin")),
        ("///admin//users", Expect::Admin("/admin/users")),
        ("/./admin", Expect::Admin("/admin")),
        ("/x/../admin", Expect::Admin("/admin")),
        ("/x/y/../../admin", Expect::Admin("/admin")),
        ("/../../admin", Expect::Admin("/admin")),
        ("/%61dmin", Expect::Admin("/admin")),
        ("/%61%64%6D%69%6e", Expect::Admin("/admin")),
        ("/%2e%2e/admin", Expect::Admin("/admin")),
        ("/%2E/admin", Expect::Admin("/admin")),
        ("/.%2e/admin", Expect::Admin("/admin")),
        ("/x/%2e%2e/admin", Expect::Admin("/admin")),
        ("/admin/.", Expect::Admin("/admin/")),
        ("/admin/./x/", Expect::Admin("/admin/x/")),
        ("/admin;x", Expect::Admin("/admin;x")),
        ("/admin;jsessionid=1/x", Expect::Admin("/admin;jsessionid=1/x")),
        ("/admin?next=/../x&y=%2F", Expect::Admin("/admin?next=/../x&y=%2F")),
        ("//admin?q=1", Expect::Admin("/admin?q=1")),
        // Leaving the prefix with dot segments lands on the catch-all, with the resolved path.
        ("/admin/../public", Expect::Public("/public")),
        ("/admin/..", Expect::Public("/")),
        ("/admin/%2e%2e/x", Expect::Public("/x")),
        // Segment-aware prefix: `/adminx` is not under `/admin`.
        ("/adminx", Expect::Public("/adminx")),
    ];
    for (target, expect) in cases {
        probe(&env, target, *expect).await;
    }
}

/// The cases of the encoded-separator class: `%2F`/`%5C` that a decoding backend (WSGI turns
/// `%2F` into `/`) would read as separators, some of which it would map under `/admin`.
const ESCAPED: &[&str] = &[
    "/admin%2f",
    "/admin%2Fusers",
    "/%2fadmin",
    "/x/..%2fadmin",
    "/x%2f..%2fadmin",
    "/%5cadmin",
    "/admin%5c",
    "/admin/%2f",
];

/// Default (`escaped_slashes: reject`): every spelling with an encoded separator is a 400 and
/// reaches no backend, so no decoding backend can be walked under `/admin`'s policies.
#[tokio::test]
async fn encoded_separators_are_refused_by_default() {
    let env = setup().await;
    for target in ESCAPED {
        probe(&env, target, Expect::Refused).await;
    }
    // Escapes that are not separators are data as before; overlong UTF-8 for `/` is never
    // decoded to a separator.
    probe(&env, "/x%c0%af..%c0%afadmin", Expect::Public("/x%C0%AF..%C0%AFadmin")).await;
    probe(&env, "/admin%20", Expect::Public("/admin%20")).await;
}

/// `unescape_and_forward`: the path is decoded, normalised again, then routed and forwarded as
/// the backend would read it, so what decodes under `/admin` goes to the admin route.
#[tokio::test]
async fn encoded_separators_unescaped_are_routed_as_decoded() {
    let env = setup_with("escaped_slashes: unescape_and_forward").await;
    let cases: &[(&str, Expect)] = &[
        ("/admin%2f", Expect::Admin("/admin/")),
        ("/admin%2Fusers", Expect::Admin("/admin/users")),
        ("/%2fadmin", Expect::Admin("/admin")),
        ("/x/..%2fadmin", Expect::Admin("/admin")),
        ("/x%2f..%2fadmin", Expect::Admin("/admin")),
        ("/%5cadmin", Expect::Admin("/admin")),
        ("/admin%5c", Expect::Admin("/admin/")),
        ("/admin/%2f", Expect::Admin("/admin/")),
    ];
    for (target, expect) in cases {
        probe(&env, target, *expect).await;
    }
}

/// `unescape_and_redirect`: a 308 to the decoded, normalised path; nothing is forwarded.
#[tokio::test]
async fn encoded_separators_redirect_to_the_decoded_path() {
    let env = setup_with("escaped_slashes: unescape_and_redirect").await;
    for (target, location) in [("/%2fadmin?x=1", "/admin?x=1"), ("/a%5c..%5cadmin", "/admin")] {
        let (a0, p0) = (env.admin.count(), env.public.count());
        let req = format!("GET {target} HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\n\r\n");
        let (resp, _) = raw_closes(env.gw.addr, req.as_bytes()).await;
        assert_eq!(status_of(&resp), 308, "{target}: {resp}");
        assert!(resp.to_ascii_lowercase().contains(&format!("location: {location}\r\n")), "{target}: {resp}");
        assert_eq!((env.admin.count(), env.public.count()), (a0, p0), "{target}: forwarded");
    }
}

/// `keep`: the old behaviour, for backends that never decode separators: data, not
/// separators, so `admin%2F` is one segment different from `admin` (the catch-all).
#[tokio::test]
async fn encoded_separators_kept_when_configured() {
    let env = setup_with("escaped_slashes: keep").await;
    let cases: &[(&str, Expect)] = &[
        ("/admin%2f", Expect::Public("/admin%2F")),
        ("/%2fadmin", Expect::Public("/%2Fadmin")),
        ("/%5cadmin", Expect::Public("/%5Cadmin")),
        ("/admin/%2f", Expect::Admin("/admin/%2F")),
    ];
    for (target, expect) in cases {
        probe(&env, target, *expect).await;
    }
}

/// Path parameters on an empty segment (`/;/admin`, `/;x/admin`): Tomcat and Spring drop the
/// parameters and the empty segment and serve `/admin`, so the gateway refuses them (400), as
/// it does `/..;/`.
#[tokio::test]
async fn path_parameters_on_an_empty_segment_are_refused() {
    let env = setup().await;
    for target in ["/;/admin", "/;x/admin", "/;jsessionid=1/admin/x", "/public/;/admin", "/%3b/admin"] {
        let expect = if target == "/%3b/admin" { Expect::Public("/%3B/admin") } else { Expect::Refused };
        probe(&env, target, expect).await;
    }
    // Parameters on a named segment stay data (matched and forwarded as sent).
    probe(&env, "/admin;x", Expect::Admin("/admin;x")).await;
}

/// Route matching is case-sensitive and the path is forwarded verbatim, so `/ADMIN` is simply a
/// different (public) path: a case-insensitive origin would have to protect it itself.
#[tokio::test]
async fn matching_is_case_sensitive_and_forwarded_verbatim() {
    let env = setup().await;
    probe(&env, "/ADMIN", Expect::Public("/ADMIN")).await;
    probe(&env, "/Admin/x", Expect::Public("/Admin/x")).await;
    // An escape of an upper-case letter decodes to the same verbatim path.
    probe(&env, "/%41DMIN", Expect::Public("/ADMIN")).await;
}

#[tokio::test]
async fn unnormalisable_targets_are_refused() {
    let env = setup().await;
    for target in [
        "/admin%00",
        "/%00/admin",
        "/%zz",
        "/admin%2",
        "/admin%",
        "/%u0061dmin",
        "/\\admin",
        "/x\\..\\admin",
        "/admin#frag",
        "/adm\"in",
        "/adm<in>",
        "admin",
        "*",
        // Dot segments with path parameters: Tomcat/Spring resolve `/public/..;/admin` to `/admin`.
        "/public/..;/admin",
        "/x/..;jsessionid=1/admin",
        "/.;/admin",
        "/%2e%2e;/admin",
        "/admin/..;/public",
    ] {
        probe(&env, target, Expect::Refused).await;
    }
    // Raw non-ASCII and control bytes in the target.
    for req in [
        &b"GET /adm\xc3\xa9in HTTP/1.1\r\nHost: gw.test\r\n\r\n"[..],
        b"GET /admin\x01 HTTP/1.1\r\nHost: gw.test\r\n\r\n",
        b"GET /admin\x7f HTTP/1.1\r\nHost: gw.test\r\n\r\n",
        // Authority-form is for CONNECT only, which a gateway does not tunnel.
        b"CONNECT gw.test:443 HTTP/1.1\r\nHost: gw.test:443\r\n\r\n",
        b"CONNECT admin HTTP/1.1\r\nHost: gw.test\r\n\r\n",
    ] {
        probe_raw(&env, req, Expect::Refused).await;
    }
}

/// Absolute-form (RFC 9112 §3.2.2): the target's path is normalised and matched exactly like an
/// origin-form path; the authority replaces Host but never changes which path is forwarded.
#[tokio::test]
async fn absolute_form_targets_are_matched_on_their_normalised_path() {
    let env = setup().await;
    probe(&env, "http://other/admin", Expect::Admin("/admin")).await;
    probe(&env, "http://other:8080/admin/x", Expect::Admin("/admin/x")).await;
    probe(&env, "HTTP://other//x/../admin", Expect::Admin("/admin")).await;
    probe(&env, "http://other/%2e%2e/%61dmin?q=1", Expect::Admin("/admin?q=1")).await;
    probe(&env, "http://other/admin%2f", Expect::Refused).await;
    probe(&env, "http://other/public", Expect::Public("/public")).await;
    probe(&env, "http://other", Expect::Public("/")).await;
    probe(&env, "http://other/admin%00", Expect::Refused).await;
    // Userinfo in the authority is refused, not silently dropped.
    probe(&env, "http://user@other/admin", Expect::Refused).await;
    probe(&env, "ftp://other/admin", Expect::Refused).await;
    let got = env.admin.requests();
    assert!(got.iter().all(|r| !r.uri.starts_with("http")), "absolute-form leaked upstream: {got:#?}");
}

/// The same query string gets the same verdict whether or not the path needed normalising.
#[tokio::test]
async fn query_verdict_does_not_depend_on_the_path_form() {
    let env = setup().await;
    for q in ["a=%2F&b=/../", "x=[1]|{2}", "q=a\\b", "q=^`"] {
        let plain = format!("/admin?{q}");
        let dotted = format!("/x/../admin?{q}");
        let (r1, _) = raw_closes(
            env.gw.addr,
            format!("GET {plain} HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await;
        let (r2, _) = raw_closes(
            env.gw.addr,
            format!("GET {dotted} HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await;
        assert_eq!(status_of(&r1), status_of(&r2), "query {q:?}: {r1:?} vs {r2:?}");
        if status_of(&r1) == 200 {
            let reqs = env.admin.requests();
            let last_two: Vec<&str> = reqs.iter().rev().take(2).map(|r| r.uri.as_str()).collect();
            assert_eq!(last_two, [plain.as_str(), plain.as_str()], "query {q:?} forwarded differently");
        }
    }
}
