//! Prometheus `/metrics` end to end: the real gateway in front of a real backend, known traffic,
//! then a scrape parsed by the reference Prometheus parser (Python `prometheus_client`).

use gatehouse_testkit::prom::{self, value};
use gatehouse_testkit::{gateway, get, policy_route, raw, request, simple_config, stop, Backend, Cfg};

const REQ: &str = "gatehouse_http_requests_total";

fn config(target: &str) -> String {
    Cfg::new()
        .admin()
        .upstream("backend", &[target])
        .route_with("users", "backend", "match: {path: {prefix: /users}}")
        .routes_yaml(&policy_route("limited", "      - rate_limit: {limit: 2/min, burst: 1}\n"))
        .to_yaml()
}

/// Scrapes once every request has been counted: the log phase runs just after the response is
/// written, so a client can read its response a moment before the request is counted.
async fn scrape(admin: std::net::SocketAddr, requests: f64) -> (String, Vec<prom::Sample>) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    loop {
        let (text, samples) = scrape_now(admin).await;
        let total: f64 = samples.iter().filter(|s| s.name == REQ).map(|s| s.value).sum();
        if total >= requests || std::time::Instant::now() > deadline {
            assert_eq!(total, requests, "{text}");
            return (text, samples);
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

async fn scrape_now(admin: std::net::SocketAddr) -> (String, Vec<prom::Sample>) {
    let r = get(admin, "/metrics").await;
    assert_eq!(r.status, 200);
    assert!(r.header("content-type").is_some_and(|c| c.starts_with("text/plain; version=0.0.4")));
    let text = r.text();
    let samples = prom::parse(&text);
    (text, samples)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_requests_by_route_method_and_class_with_histograms_bytes_and_limits() {
    let backend = Backend::named("b").await;
    let gw = gateway(&config(&backend.url())).await;
    let admin = gw.admin.expect("admin");

    for _ in 0..3 {
        assert_eq!(get(gw.addr, "/users/1").await.status, 200);
    }
    assert_eq!(request(gw.addr, "POST", "/users", &[], b"hello").await.status, 200);
    assert_eq!(get(gw.addr, "/nope").await.status, 404);
    let limited: Vec<u16> = {
        let mut v = Vec::new();
        for _ in 0..3 {
            v.push(get(gw.addr, "/limited").await.status);
        }
        v
    };
    assert_eq!(limited, [200, 200, 429]);
    // One exchange whose exact byte counts we know: the raw request and the raw response.
    let req = b"GET /users/exact HTTP/1.1\r\nHost: gatehouse.test\r\nConnection: close\r\n\r\n";
    let resp = raw(gw.addr, req).await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");

    let (text, s) = scrape(admin, 9.0).await;
    let users = [("route", "users"), ("upstream", "backend")];
    let with = |extra: &[(&'static str, &'static str)]| -> Vec<(&'static str, &'static str)> {
        users.iter().chain(extra).copied().collect()
    };
    assert_eq!(value(&s, REQ, &with(&[("method", "GET"), ("status_class", "2xx")])), 4.0, "{text}");
    assert_eq!(value(&s, REQ, &with(&[("method", "POST"), ("status_class", "2xx")])), 1.0);
    assert_eq!(
        value(&s, REQ, &[("route", "_unmatched"), ("method", "GET"), ("status_class", "4xx")]),
        1.0,
        "a 404 is counted without a route label from the path"
    );
    let limited = [("route", "limited"), ("upstream", "backend"), ("method", "GET")];
    assert_eq!(value(&s, REQ, &[limited.as_slice(), &[("status_class", "2xx")]].concat()), 2.0);
    assert_eq!(value(&s, REQ, &[limited.as_slice(), &[("status_class", "4xx")]].concat()), 1.0);
    assert!(!text.contains("/users/1") && !text.contains("/nope"), "raw paths never become labels");

    // Histograms: every request observed once; the upstream one only for answered exchanges.
    let dur = "gatehouse_http_request_duration_seconds";
    assert_eq!(value(&s, &format!("{dur}_count"), &users), 5.0);
    assert_eq!(value(&s, &format!("{dur}_bucket"), &with(&[("le", "+Inf")])), 5.0);
    assert!(value(&s, &format!("{dur}_sum"), &users) > 0.0);
    assert_eq!(value(&s, "gatehouse_upstream_duration_seconds_count", &users), 5.0);
    assert_eq!(
        value(&s, "gatehouse_upstream_duration_seconds_count", &[("route", "limited")]),
        2.0,
        "the refused request never went upstream"
    );

    // Bytes: at least the exact exchange, and the POST body.
    let bw = "gatehouse_bandwidth_bytes_total";
    let bytes_in = value(&s, bw, &with(&[("direction", "in")]));
    let bytes_out = value(&s, bw, &with(&[("direction", "out")]));
    assert!(bytes_in >= (req.len() + 5) as f64, "in={bytes_in}");
    assert!(bytes_out >= resp.len() as f64, "out={bytes_out}");

    // Rate-limit decisions and target health.
    let rl = "gatehouse_ratelimit_decisions_total";
    assert_eq!(value(&s, rl, &[("route", "limited"), ("decision", "allowed")]), 2.0);
    assert_eq!(value(&s, rl, &[("route", "limited"), ("decision", "limited")]), 1.0);
    let target = backend.url();
    let health = [("upstream", "backend"), ("target", target.as_str())];
    assert_eq!(
        value(&s, "gatehouse_upstream_target_health", &[health.as_slice(), &[("state", "healthy")]].concat()),
        1.0
    );
    assert_eq!(
        value(&s, "gatehouse_upstream_target_health", &[health.as_slice(), &[("state", "unhealthy")]].concat()),
        0.0
    );
    assert_eq!(value(&s, "gatehouse_upstream_healthy_targets", &[("upstream", "backend")]), 1.0);
    assert!(value(&s, "process_start_time_seconds", &[]) > 1.7e9);
    stop(gw).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn byte_counts_are_exact_per_request_and_in_the_access_log() {
    let backend = Backend::named("b").await;
    let dir = std::env::temp_dir().join(format!("gh-bytes-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let log = dir.join("access.log");
    let yaml = format!("{}access_log:\n  enabled: true\n  path: {}\n", config(&backend.url()), log.display());
    let gw = gateway(&yaml).await;
    let req = b"POST /users/x HTTP/1.1\r\nHost: gatehouse.test\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello";
    let resp = raw(gw.addr, req).await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");

    let (_, s) = scrape(gw.admin.expect("admin"), 1.0).await;
    let bw = "gatehouse_bandwidth_bytes_total";
    assert_eq!(value(&s, bw, &[("route", "users"), ("direction", "in")]), req.len() as f64);
    assert_eq!(value(&s, bw, &[("route", "users"), ("direction", "out")]), resp.len() as f64);
    let found = gatehouse_testkit::wait_for(std::time::Duration::from_secs(3), || async {
        std::fs::read_to_string(&log).is_ok_and(|t| t.lines().count() == 1)
    })
    .await;
    assert!(found, "one access-log line");
    let line: serde_json::Value =
        serde_json::from_str(std::fs::read_to_string(&log).expect("log").trim()).expect("JSON line");
    assert_eq!(line["bytes_received"], req.len() as u64);
    assert_eq!(line["bytes_sent"], resp.len() as u64);
    stop(gw).await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloads_are_counted_and_route_counters_survive_them() {
    let backend = Backend::named("b").await;
    let gw = gateway(&config(&backend.url())).await;
    let admin = gw.admin.expect("admin");
    for _ in 0..2 {
        assert_eq!(get(gw.addr, "/users").await.status, 200);
    }
    let (_, before) = scrape(admin, 2.0).await;
    let hash_before =
        before.iter().find(|s| s.name == "gatehouse_config_info").expect("config_info").labels["hash"].clone();
    assert_eq!(value(&before, "gatehouse_config_reloads_total", &[("result", "success")]), 0.0);

    // A changed config (one more route): `users` keeps its counters.
    let more = format!(
        "{}  - name: extra\n    upstream: backend\n    match: {{path: {{prefix: /extra}}}}\n",
        config(&backend.url())
    );
    gw.gw.reload(gatehouse_testkit::load(&more)).expect("reload");
    // A refused one is counted too.
    assert!(gw.gw.apply_text("routes: 3\n", "api").is_err());
    assert_eq!(get(gw.addr, "/users").await.status, 200);

    let (_, after) = scrape(admin, 3.0).await;
    assert_eq!(value(&after, REQ, &[("route", "users"), ("method", "GET"), ("status_class", "2xx")]), 3.0);
    assert_eq!(value(&after, "gatehouse_config_reloads_total", &[("result", "success")]), 1.0);
    assert_eq!(value(&after, "gatehouse_config_reloads_total", &[("result", "failure")]), 1.0);
    let hash_after =
        after.iter().find(|s| s.name == "gatehouse_config_info").expect("config_info").labels["hash"].clone();
    assert_ne!(hash_before, hash_after);
    assert!(value(&after, "gatehouse_config_last_reload_success_timestamp_seconds", &[]) > 1.7e9);
    stop(gw).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_ejections_and_breaker_state_are_exported() {
    let backend = Backend::named("b").await;
    // A second target where nothing listens: connect failures, retried on the live target,
    // until passive health ejects it.
    let dead = format!("http://127.0.0.1:{}", gatehouse_testkit::free_port());
    let gw = gateway(&simple_config(&[backend.url(), dead.clone()], "")).await;
    for _ in 0..20 {
        assert_eq!(get(gw.addr, "/x").await.status, 200, "connect failures are retried on the live target");
    }
    let (text, s) = scrape(gw.admin.expect("admin"), 20.0).await;
    let up = [("upstream", "backend")];
    assert!(value(&s, "gatehouse_upstream_retries_total", &up) >= 5.0, "{text}");
    assert_eq!(value(&s, "gatehouse_upstream_ejections_total", &up), 1.0, "{text}");
    let dead_target = [("upstream", "backend"), ("target", dead.as_str())];
    assert_eq!(
        value(&s, "gatehouse_upstream_target_health", &[dead_target.as_slice(), &[("state", "ejected")]].concat()),
        1.0
    );
    assert_eq!(value(&s, "gatehouse_upstream_target_ejections_total", &dead_target), 1.0);
    let breaker = [("upstream", "backend"), ("route", ""), ("state", "closed")];
    assert_eq!(value(&s, "gatehouse_circuit_breaker_state", &breaker), 1.0, "{text}");
    stop(gw).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_decisions_and_the_opt_in_consumer_label() {
    let backend = Backend::named("b").await;
    // printf %s alice-key-0001 | gatehouse hash-key
    let dir = std::env::temp_dir().join(format!("gh-consumer-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let log = dir.join("access.log");
    let yaml = Cfg::new()
        .admin()
        .yaml("metrics:\n  consumer_label: true")
        .yaml(
            "consumers:\n  - name: alice\n    credentials:\n      api_keys:\n        \
             - sha256: 0264b8205526ceea6fff4c7d3d3b6cf383d579553a931736819eb39ec6dd9a04",
        )
        .yaml(&format!("access_log:\n  enabled: true\n  path: {}", log.display()))
        .upstream("backend", &[backend.url()])
        .routes_yaml(&policy_route("keys", "      - auth:\n          methods:\n            - api_key: {}\n"))
        .to_yaml();
    let gw = gateway(&yaml).await;
    for _ in 0..2 {
        assert_eq!(request(gw.addr, "GET", "/keys", &[("x-api-key", "alice-key-0001")], b"").await.status, 200);
    }
    assert_eq!(get(gw.addr, "/keys").await.status, 401);
    assert_eq!(request(gw.addr, "GET", "/keys", &[("x-api-key", "wrong")], b"").await.status, 401);

    let (text, s) = scrape(gw.admin.expect("admin"), 4.0).await;
    let auth = "gatehouse_auth_decisions_total";
    assert_eq!(value(&s, auth, &[("decision", "allowed")]), 2.0, "{text}");
    assert_eq!(value(&s, auth, &[("decision", "denied"), ("reason", "missing")]), 1.0);
    assert_eq!(value(&s, auth, &[("decision", "denied"), ("reason", "invalid")]), 1.0);
    let consumer = "gatehouse_consumer_requests_total";
    assert_eq!(value(&s, consumer, &[("consumer", "alice"), ("status_class", "2xx")]), 2.0, "{text}");
    assert!(!text.contains("alice-key"), "no credential in the metrics");
    // The access log names the consumer (and never the key).
    let logged = gatehouse_testkit::wait_for(std::time::Duration::from_secs(3), || async {
        std::fs::read_to_string(&log).is_ok_and(|t| t.lines().count() == 4)
    })
    .await;
    assert!(logged);
    let text = std::fs::read_to_string(&log).expect("log");
    let first: serde_json::Value = serde_json::from_str(text.lines().next().expect("line")).expect("JSON");
    assert_eq!(first["consumer"], "alice");
    assert!(!text.contains("alice-key"));
    stop(gw).await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreadable_heads_and_ip_refusals_are_counted() {
    let backend = Backend::named("b").await;
    let yaml = format!(
        "{}{}",
        config(&backend.url()),
        policy_route("office", "      - ip_filter:\n          allow: [192.168.0.0/16]\n")
    );
    let gw = gateway(&yaml).await;
    // Two Content-Length fields: refused before any route is known.
    let resp = raw(gw.addr, b"GET /users HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n").await;
    assert!(resp.starts_with("HTTP/1.1 400"), "{resp}");
    assert!(resp.to_ascii_lowercase().contains("\r\nx-request-id: "), "the refusal carries a request id: {resp}");
    assert_eq!(get(gw.addr, "/office").await.status, 403);

    let (text, s) = scrape(gw.admin.expect("admin"), 1.0).await;
    assert_eq!(value(&s, "gatehouse_http_unreadable_requests_total", &[]), 1.0, "{text}");
    assert_eq!(value(&s, "gatehouse_ip_denied_total", &[("scope", "route")]), 1.0);
    assert_eq!(value(&s, "gatehouse_ip_denied_total", &[("scope", "listener")]), 0.0);
    stop(gw).await;
}
