//! Resilience against backends that misbehave on command (`FaultyBackend`): killed, hanging,
//! slow, resetting, answering 503, sending garbage, closing mid-body. For each: what the client
//! sees, how fast (fail fast while a breaker is open), and recovery once the backend heals.
//! Real sockets on 127.0.0.1; times are measured on the wall clock with generous bounds.

use std::time::{Duration, Instant};

use gatehouse_testkit::{
    gateway, get, raw_closes, request, stop, upstreams_view, Cfg, Fault, FaultyBackend, Resp, TestGateway,
};

/// One upstream `backend` with `targets`, upstream settings `up`, and one route `all` with route
/// settings `route`.
fn config(targets: &[&FaultyBackend], up: &str, route: &str) -> String {
    let urls: Vec<String> = targets.iter().map(|b| b.url()).collect();
    Cfg::new().admin().upstream_with("backend", &urls, up).route_with("all", "backend", route).to_yaml()
}

fn code(r: &Resp) -> String {
    r.json()["error"]["code"].as_str().unwrap_or("").to_string()
}

async fn target_view(gw: &TestGateway, url: &str) -> serde_json::Value {
    let v = upstreams_view(gw).await;
    v["upstreams"][0]["targets"]
        .as_array()
        .and_then(|ts| ts.iter().find(|t| t["url"] == url).cloned())
        .unwrap_or_default()
}

const FAST_OUTLIER: &str = "    outlier_detection: {consecutive_failures: 3, base_ejection: 1s, max_ejection: 5s}\n";

#[tokio::test]
async fn killed_backend_is_retried_elsewhere_ejected_and_comes_back() {
    let (a, b) = (FaultyBackend::start("a").await, FaultyBackend::start("b").await);
    let gw = gateway(&config(&[&a, &b], FAST_OUTLIER, "")).await;
    b.kill();
    // Connection refused is retried on the other target by default: the client sees no error.
    for i in 0..10 {
        let r = get(gw.addr, "/").await;
        assert_eq!(r.status, 200, "request {i}: {}", r.text());
        assert_eq!(r.json()["backend"], "a");
    }
    let t = target_view(&gw, &b.url()).await;
    assert_eq!(t["health"], "ejected", "{t}");
    assert_eq!(t["ejection"]["reason"], "consecutive_failures", "{t}");
    assert!(t["ejection"]["remaining_ms"].as_u64().is_some_and(|ms| ms <= 1000), "{t}");
    let v = upstreams_view(&gw).await;
    assert!(v["upstreams"][0]["counters"]["retries"].as_u64().unwrap_or(0) >= 3, "{v}");
    assert_eq!(v["upstreams"][0]["counters"]["ejections"], 1, "{v}");

    // Healed: back in rotation on its own once the ejection ends (1 s).
    b.revive().await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let before = b.hits();
    for _ in 0..10 {
        assert_eq!(get(gw.addr, "/").await.status, 200);
    }
    assert!(b.hits() - before >= 4, "b got {} of 10 after its return", b.hits() - before);
    assert_eq!(target_view(&gw, &b.url()).await["health"], "healthy");
    stop(gw).await;
}

#[tokio::test]
async fn breaker_opens_on_503s_fails_fast_without_touching_the_upstream_and_recovers() {
    let a = FaultyBackend::start("a").await;
    a.set(Fault::Status(503));
    let up = "    outlier_detection: {enabled: false}\n    circuit_breaker: {min_calls: 5, open_duration: 1s, half_open_probes: 2}\n";
    let gw = gateway(&config(&[&a], up, "")).await;
    // The upstream's own 503s are relayed until the breaker has seen enough.
    for _ in 0..5 {
        let r = get(gw.addr, "/").await;
        assert_eq!((r.status, r.text().as_str()), (503, "sick"));
    }
    assert_eq!(a.hits(), 5);
    // Open: immediate 503 circuit_open with Retry-After, the upstream untouched.
    let t = Instant::now();
    for _ in 0..20 {
        let r = get(gw.addr, "/").await;
        assert_eq!(r.status, 503);
        assert_eq!(code(&r), "circuit_open", "{}", r.text());
        assert_eq!(r.header("retry-after"), Some("1"));
    }
    let took = t.elapsed();
    assert!(took < Duration::from_millis(500), "20 refusals took {took:?}");
    assert_eq!(a.hits(), 5, "an open breaker must not touch the upstream");
    let v = upstreams_view(&gw).await;
    assert_eq!(v["upstreams"][0]["circuit"]["state"], "open", "{v}");
    assert_eq!(v["upstreams"][0]["circuit"]["rejected_total"], 20, "{v}");

    // Healed: after open_duration, two probes go through and close it.
    a.set(Fault::Healthy);
    tokio::time::sleep(Duration::from_millis(1050)).await;
    for _ in 0..5 {
        assert_eq!(get(gw.addr, "/").await.status, 200);
    }
    let v = upstreams_view(&gw).await;
    let c = &v["upstreams"][0]["circuit"];
    assert_eq!(
        (c["state"].as_str(), c["opened_total"].as_u64(), c["closed_total"].as_u64()),
        (Some("closed"), Some(1), Some(1)),
        "{v}"
    );
    stop(gw).await;
}

#[tokio::test]
async fn failed_probe_reopens_the_breaker() {
    let a = FaultyBackend::start("a").await;
    a.set(Fault::Status(500));
    let up = "    outlier_detection: {enabled: false}\n    circuit_breaker: {min_calls: 3, open_duration: 300ms, half_open_probes: 1}\n";
    let gw = gateway(&config(&[&a], up, "")).await;
    for _ in 0..3 {
        assert_eq!(get(gw.addr, "/").await.status, 500);
    }
    assert_eq!(code(&get(gw.addr, "/").await), "circuit_open");
    tokio::time::sleep(Duration::from_millis(350)).await;
    // The probe still fails: open again at once.
    assert_eq!(get(gw.addr, "/").await.status, 500);
    assert_eq!(code(&get(gw.addr, "/").await), "circuit_open");
    assert_eq!(a.hits(), 4);
    stop(gw).await;
}

#[tokio::test]
async fn slow_calls_open_the_breaker() {
    let a = FaultyBackend::start("a").await;
    a.set(Fault::Slow(Duration::from_millis(80)));
    let up = "    circuit_breaker: {min_calls: 4, slow_call_duration: 50ms, slow_call_rate: 75, open_duration: 2s}\n";
    let gw = gateway(&config(&[&a], up, "")).await;
    for _ in 0..4 {
        assert_eq!(get(gw.addr, "/").await.status, 200);
    }
    let r = get(gw.addr, "/").await;
    assert_eq!((r.status, code(&r).as_str()), (503, "circuit_open"));
    assert_eq!(r.header("retry-after"), Some("2"));
    stop(gw).await;
}

#[tokio::test]
async fn hanging_backend_hits_the_deadline_and_the_remaining_time_is_sent_upstream() {
    let a = FaultyBackend::start("a").await;
    a.watch_header("x-request-timeout");
    let route = "    deadline: {timeout: 300ms}\n    retry: {attempts: 3, on: [timeout]}\n";
    let gw = gateway(&config(&[&a], "", route)).await;
    let r = get(gw.addr, "/").await;
    assert_eq!(r.status, 200);
    let sent: u64 = a.seen_header_values()[0].parse().expect("milliseconds");
    assert!(sent > 200 && sent <= 300, "x-request-timeout: {sent}");

    // A hanging backend: the deadline bounds the whole request, retries included.
    a.set(Fault::Hang);
    let t = Instant::now();
    let r = request(gw.addr, "GET", "/", &[("x-request-timeout", "99999")], b"").await;
    let took = t.elapsed();
    assert_eq!((r.status, code(&r).as_str()), (504, "deadline_exceeded"), "{}", r.text());
    assert!(took >= Duration::from_millis(290) && took < Duration::from_millis(800), "took {took:?}");
    // The client's own value was replaced by the gateway's.
    assert!(a.seen_header_values().iter().all(|v| v != "99999"), "{:?}", a.seen_header_values());
    stop(gw).await;
}

#[tokio::test]
async fn grpc_timeout_format() {
    let a = FaultyBackend::start("a").await;
    a.watch_header("grpc-timeout");
    let gw = gateway(&config(&[&a], "", "    deadline: {timeout: 2s, format: grpc}\n")).await;
    assert_eq!(get(gw.addr, "/").await.status, 200);
    let v = a.seen_header_values();
    let ms: u64 = v[0].strip_suffix('m').and_then(|n| n.parse().ok()).expect("grpc-timeout in ms");
    assert!((1900..=2000).contains(&ms), "{v:?}");
    stop(gw).await;
}

#[tokio::test]
async fn resets_are_retried_for_get_but_never_for_post() {
    let a = FaultyBackend::start("a").await;
    a.set(Fault::Reset);
    let gw = gateway(&config(&[&a], "    outlier_detection: {enabled: false}\n", "    retry: {attempts: 3}\n")).await;
    let r = get(gw.addr, "/").await;
    assert_eq!((r.status, code(&r).as_str()), (502, "upstream_reset"));
    assert_eq!(a.hits(), 3, "GET: three attempts");
    let r = request(gw.addr, "POST", "/", &[("content-type", "text/plain")], b"charge me once").await;
    assert_eq!((r.status, code(&r).as_str()), (502, "upstream_reset"));
    assert_eq!(a.hits(), 4, "POST: never sent twice");
    // Healed: answers again.
    a.set(Fault::Healthy);
    assert_eq!(get(gw.addr, "/").await.status, 200);
    stop(gw).await;
}

#[tokio::test]
async fn post_is_retried_only_with_the_explicit_opt_in() {
    let a = FaultyBackend::start("a").await;
    a.set(Fault::Status(503));
    let route = "    retry: {attempts: 2, on: [503], non_idempotent: true, backoff: {base: 1ms, max: 1ms}}\n";
    let gw = gateway(&config(&[&a], "    outlier_detection: {enabled: false}\n", route)).await;
    let r = request(gw.addr, "POST", "/", &[], b"{\"idempotency_key\":\"k1\"}").await;
    assert_eq!(r.status, 503);
    assert_eq!(a.hits(), 2);
    stop(gw).await;
}

#[tokio::test]
async fn retry_on_503_goes_to_the_other_target() {
    let (a, b) = (FaultyBackend::start("a").await, FaultyBackend::start("b").await);
    a.set(Fault::Status(503));
    let route = "    retry: {attempts: 2, on: [503]}\n";
    let gw = gateway(&config(&[&a, &b], "    outlier_detection: {enabled: false}\n", route)).await;
    for _ in 0..20 {
        let r = get(gw.addr, "/").await;
        assert_eq!(r.status, 200);
        assert_eq!(r.json()["backend"], "b");
    }
    // Round robin sends half of the first attempts to a; each is retried once, on b.
    assert_eq!(a.hits(), 10);
    assert_eq!(b.hits(), 20);
    stop(gw).await;
}

#[tokio::test]
async fn garbage_and_mid_body_closes_are_502_and_recover() {
    let a = FaultyBackend::start("a").await;
    let gw = gateway(&config(&[&a], "", "")).await;
    a.set(Fault::Garbage);
    let r = get(gw.addr, "/").await;
    assert_eq!((r.status, code(&r).as_str()), (502, "upstream_invalid_response"));
    // Closing mid-body after the head and the first bytes were relayed: the client connection
    // is closed short of the announced length, so the truncation cannot look complete.
    a.set(Fault::CloseMidBody);
    let (raw, closed) = raw_closes(gw.addr, b"GET / HTTP/1.1\r\nhost: x\r\n\r\n").await;
    assert!(closed, "{raw}");
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    assert!(head.starts_with("HTTP/1.1 200") && head.contains("content-length: 1000"), "{raw}");
    assert!(body.len() < 1000, "{raw}");
    a.set(Fault::Healthy);
    assert_eq!(get(gw.addr, "/").await.status, 200);
    stop(gw).await;
}

#[tokio::test]
async fn max_requests_overflow_is_an_immediate_503() {
    let a = FaultyBackend::start("a").await;
    a.set(Fault::Slow(Duration::from_millis(400)));
    let gw = gateway(&config(&[&a], "    limits: {max_requests: 2}\n", "")).await;
    let addr = gw.addr;
    let slow: Vec<_> = (0..2).map(|_| tokio::spawn(async move { get(addr, "/").await.status })).collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let t = Instant::now();
    for _ in 0..3 {
        let r = get(addr, "/").await;
        assert_eq!((r.status, code(&r).as_str()), (503, "upstream_overloaded"), "{}", r.text());
        assert_eq!(r.header("retry-after"), Some("1"));
    }
    assert!(t.elapsed() < Duration::from_millis(250), "overflow took {:?}", t.elapsed());
    for h in slow {
        assert_eq!(h.await.expect("join"), 200);
    }
    assert_eq!(a.hits(), 2);
    assert_eq!(upstreams_view(&gw).await["upstreams"][0]["counters"]["overloaded"], 3);
    stop(gw).await;
}

#[tokio::test]
async fn hedging_takes_the_first_answer() {
    let (slow, fast) = (FaultyBackend::start("slow").await, FaultyBackend::start("fast").await);
    slow.set(Fault::Slow(Duration::from_millis(1500)));
    let gw = gateway(&config(&[&slow, &fast], "", "    hedge: {delay: 50ms}\n")).await;
    let t = Instant::now();
    for _ in 0..6 {
        let r = get(gw.addr, "/").await;
        assert_eq!((r.status, r.json()["backend"].as_str()), (200, Some("fast")));
    }
    // Half of the first attempts went to the slow target; each was hedged after 50 ms.
    assert!(t.elapsed() < Duration::from_millis(1200), "took {:?}", t.elapsed());
    let v = upstreams_view(&gw).await;
    assert_eq!(v["upstreams"][0]["counters"]["hedges"], 3, "{v}");
    stop(gw).await;
}

#[tokio::test]
async fn reload_keeps_an_open_breaker_when_its_settings_are_unchanged() {
    let a = FaultyBackend::start("a").await;
    a.set(Fault::Status(503));
    let up = "    outlier_detection: {enabled: false}\n    circuit_breaker: {min_calls: 3, open_duration: 30s}\n";
    let gw = gateway(&config(&[&a], up, "")).await;
    for _ in 0..3 {
        get(gw.addr, "/").await;
    }
    assert_eq!(code(&get(gw.addr, "/").await), "circuit_open");
    // A reload that changes a route but not the upstream keeps the breaker open.
    let changed = config(&[&a], up, "    preserve_host: true\n");
    gw.gw.reload(gatehouse_testkit::load(&changed)).expect("reload");
    assert_eq!(code(&get(gw.addr, "/").await), "circuit_open");
    // Changing the breaker's settings starts a fresh one.
    let fresh = config(
        &[&a],
        "    outlier_detection: {enabled: false}\n    circuit_breaker: {min_calls: 4, open_duration: 30s}\n",
        "",
    );
    gw.gw.reload(gatehouse_testkit::load(&fresh)).expect("reload");
    assert_eq!(get(gw.addr, "/").await.status, 503);
    assert_eq!(a.hits(), 4);
    stop(gw).await;
}

#[tokio::test]
async fn route_breaker_is_separate_from_the_upstream_one() {
    let a = FaultyBackend::start("a").await;
    a.set(Fault::Status(503));
    let yaml = Cfg::new()
        .admin()
        .upstream_with("backend", &[a.url()], "outlier_detection: {enabled: false}")
        .route_with(
            "fragile",
            "backend",
            "match: {path: {prefix: /fragile}}\ncircuit_breaker: {min_calls: 2, open_duration: 30s}",
        )
        .route("other", "backend")
        .to_yaml();
    let gw = gateway(&yaml).await;
    for _ in 0..2 {
        get(gw.addr, "/fragile").await;
    }
    assert_eq!(code(&get(gw.addr, "/fragile").await), "circuit_open");
    // The other route still reaches the upstream (its breaker needs 20 calls).
    assert_eq!(get(gw.addr, "/other").await.status, 503);
    assert_eq!(a.hits(), 3);
    let v = upstreams_view(&gw).await;
    assert_eq!(v["route_breakers"][0]["route"], "fragile");
    assert_eq!(v["route_breakers"][0]["circuit"]["state"], "open");
    stop(gw).await;
}
