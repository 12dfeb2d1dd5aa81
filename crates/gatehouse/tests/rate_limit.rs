//! Rate and concurrency limits end to end: the real gateway (one worker) in front of real
//! backends on 127.0.0.1.
//!
//! Timing: every rate used here refills in 20 s or more per request, so the few milliseconds a
//! test takes never admit an extra request; concurrency tests wait for the backend to have seen
//! the in-flight requests (bounded waits) instead of sleeping.

use std::sync::Arc;
use std::time::Duration;

use gatehouse_testkit::{
    assert_three_per_minute, free_port, gateway, get, load, policy_route as route, request, statuses as codes,
    stop as shutdown, wait_for, Backend, Cfg, Reply, Resp, TestGateway,
};

/// One listener (with `listener_extra`), one upstream `backend` at `target`, and `routes`.
fn config(target: &str, listener_extra: &str, routes: &str) -> String {
    Cfg::new().listener(listener_extra).admin().upstream("backend", &[target]).routes_yaml(routes).to_yaml()
}

async fn get_n(gw: &TestGateway, path: &str, headers: &[(&str, &str)], n: usize) -> Vec<Resp> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(request(gw.addr, "GET", path, headers, b"").await);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_after_the_burst_with_429_retry_after_and_draft_headers() {
    let backend = Backend::named("b").await;
    // 3/min: T = 20 s; burst 2 → 3 at once.
    let routes = route("limited", "      - rate_limit: {limit: 3/min, burst: 2}\n");
    let gw = gateway(&config(&backend.url(), "", &routes)).await;

    let rs = get_n(&gw, "/limited", &[], 5).await;
    assert_three_per_minute(&rs);
    assert_eq!(backend.count(), 3, "the backend got exactly the admitted requests");
    shutdown(gw).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_and_no_headers() {
    let backend = Backend::named("b").await;
    let routes = route("legacy", "      - rate_limit: {limit: 2/min, burst: 1, headers: legacy}\n")
        + &route("quiet", "      - rate_limit: {limit: 1/min, headers: none}\n");
    let gw = gateway(&config(&backend.url(), "", &routes)).await;

    let rs = get_n(&gw, "/legacy", &[], 3).await;
    assert_eq!(codes(&rs), [200, 200, 429]);
    assert_eq!(rs[0].header("x-ratelimit-limit"), Some("2"));
    assert_eq!(rs[0].header("x-ratelimit-remaining"), Some("1"));
    assert_eq!(rs[0].header("x-ratelimit-reset"), Some("30"));
    assert_eq!(rs[2].header("x-ratelimit-remaining"), Some("0"));
    assert_eq!(rs[2].header("retry-after"), Some("30"));
    assert!(rs.iter().all(|r| r.header("ratelimit").is_none() && r.header("ratelimit-policy").is_none()));

    let rs = get_n(&gw, "/quiet", &[], 2).await;
    assert_eq!(codes(&rs), [200, 429]);
    for r in &rs {
        let names: Vec<&str> = r.headers.iter().map(|(k, _)| k.as_str()).collect();
        assert!(!names.iter().any(|n| n.contains("ratelimit")), "{names:?}");
    }
    assert_eq!(rs[1].header("retry-after"), Some("60"), "429 always carries Retry-After");
    shutdown(gw).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyed_by_header_and_absent_header_shares_one_key() {
    let backend = Backend::named("b").await;
    let routes = route("keyed", "      - rate_limit: {limit: 1/min, key: {header: X-Api-Key}}\n");
    let gw = gateway(&config(&backend.url(), "", &routes)).await;
    let a = [("x-api-key", "a")];
    let b = [("X-Api-Key", "b")];
    assert_eq!(codes(&get_n(&gw, "/keyed", &a, 2).await), [200, 429]);
    assert_eq!(codes(&get_n(&gw, "/keyed", &b, 2).await), [200, 429]);
    assert_eq!(codes(&get_n(&gw, "/keyed", &[], 2).await), [200, 429], "no header: one shared key");
    assert_eq!(backend.count(), 3);
    shutdown(gw).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyed_by_client_ip_after_trusted_proxies() {
    let backend = Backend::named("b").await;
    let routes = route("ip", "      - rate_limit: {limit: 1/min, key: client_ip}\n");
    // The test client (127.0.0.1) is a trusted proxy: X-Forwarded-For names the client.
    let gw = gateway(&config(&backend.url(), "    trusted_proxies: [127.0.0.1/32]\n", &routes)).await;
    let one = [("x-forwarded-for", "203.0.113.7")];
    let two = [("x-forwarded-for", "198.51.100.1, 203.0.113.8")];
    assert_eq!(codes(&get_n(&gw, "/ip", &one, 2).await), [200, 429]);
    assert_eq!(codes(&get_n(&gw, "/ip", &two, 2).await), [200, 429], "the rightmost untrusted hop counts");
    assert_eq!(codes(&get_n(&gw, "/ip", &[], 2).await), [200, 429], "no XFF: the peer itself");
    shutdown(gw).await;

    // Untrusted peer: X-Forwarded-For is ignored, so changing it does not escape the limit.
    let gw = gateway(&config(&backend.url(), "", &routes)).await;
    assert_eq!(codes(&get_n(&gw, "/ip", &one, 1).await), [200]);
    assert_eq!(codes(&get_n(&gw, "/ip", &two, 1).await), [429]);
    shutdown(gw).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_limits_report_the_tightest_and_refund_on_refusal() {
    let backend = Backend::named("b").await;
    // A: 10 per minute for the whole route (10 at once). B: 1 per minute per user.
    let routes = route(
        "multi",
        "      - rate_limit: {limit: 10/min, burst: 9, key: route, name: route-wide}\n      - rate_limit: {limit: 1/min, key: {header: x-user}, name: per-user}\n",
    );
    let gw = gateway(&config(&backend.url(), "", &routes)).await;
    let first = request(gw.addr, "GET", "/multi", &[("x-user", "u0")], b"").await;
    assert_eq!(first.status, 200);
    assert_eq!(first.header("ratelimit"), Some("\"per-user\";r=0;t=60"), "the tighter limit is reported");
    let refused = request(gw.addr, "GET", "/multi", &[("x-user", "u0")], b"").await;
    assert_eq!(refused.status, 429);
    assert_eq!(refused.header("ratelimit-policy"), Some("\"per-user\";q=1;w=60"));
    // The refused request gave its route-wide unit back: 9 more users fit, the 11th does not.
    for i in 1..=9 {
        let user = format!("u{i}");
        let r = request(gw.addr, "GET", "/multi", &[("x-user", &user)], b"").await;
        assert_eq!(r.status, 200, "user {user}");
    }
    let r = request(gw.addr, "GET", "/multi", &[("x-user", "u10")], b"").await;
    assert_eq!(r.status, 429);
    assert_eq!(r.header("ratelimit-policy"), Some("\"route-wide\";q=10;w=60"));
    assert_eq!(backend.count(), 10);
    shutdown(gw).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_errors_after_the_limit_carry_the_headers() {
    // Nothing listens on the target: 502 after the rate limit admitted the request.
    let target = format!("http://127.0.0.1:{}", free_port());
    let routes = route("down", "      - rate_limit: {limit: 2/min, burst: 1}\n");
    let gw = gateway(&config(&target, "", &routes)).await;
    let r = get(gw.addr, "/down").await;
    assert_eq!(r.status, 502);
    assert_eq!(r.header("ratelimit"), Some("\"down\";r=1;t=30"), "{:?}", r.headers);
    shutdown(gw).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_survive_a_reload_unless_the_limit_changes() {
    let backend = Backend::named("b").await;
    let yaml = config(&backend.url(), "", &route("r", "      - rate_limit: {limit: 2/min, burst: 1}\n"));
    let gw = gateway(&yaml).await;
    assert_eq!(codes(&get_n(&gw, "/r", &[], 3).await), [200, 200, 429]);

    gw.gw.reload(load(&yaml)).expect("reload");
    assert_eq!(codes(&get_n(&gw, "/r", &[], 1).await), [429], "same limit: the counter is kept");

    // Another route added before it, and a header change: the limit's state is the same.
    let same = config(
        &backend.url(),
        "",
        &(route("other", "      - concurrency_limit: {max: 5}\n")
            + &route("r", "      - rate_limit: {limit: 2/min, burst: 1, headers: legacy}\n")),
    );
    gw.gw.reload(load(&same)).expect("reload");
    assert_eq!(codes(&get_n(&gw, "/r", &[], 1).await), [429]);

    let changed = config(&backend.url(), "", &route("r", "      - rate_limit: {limit: 3/min, burst: 1}\n"));
    gw.gw.reload(load(&changed)).expect("reload");
    assert_eq!(codes(&get_n(&gw, "/r", &[], 3).await), [200, 200, 429], "a new limit starts fresh");
    shutdown(gw).await;
}

fn slow(ms: u64) -> gatehouse_testkit::Handler {
    Arc::new(move |_| Reply::text(200, "slow").delay(Duration::from_millis(ms)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrency_limit_refuses_over_max_and_frees_slots() {
    let backend = Backend::start("slow", slow(600)).await;
    let routes = route("c", "      - concurrency_limit: {max: 2}\n");
    let gw = gateway(&config(&backend.url(), "", &routes)).await;
    let addr = gw.addr;
    let held: Vec<_> = (0..2).map(|_| tokio::spawn(async move { get(addr, "/c").await })).collect();
    assert!(wait_for(Duration::from_secs(5), || async { backend.count() == 2 }).await, "two requests in flight");

    let r = get(addr, "/c").await;
    assert_eq!(r.status, 503);
    assert_eq!(r.json()["error"]["code"], "concurrency_limited");
    for h in held {
        assert_eq!(h.await.expect("join").status, 200);
    }
    assert_eq!(backend.count(), 2, "the refused request never reached the backend");
    // Slots are free again once the responses are done.
    assert_eq!(get(addr, "/c").await.status, 200);
    shutdown(gw).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrency_queue_waits_then_times_out() {
    let backend = Backend::start("slow", slow(400)).await;
    let routes = route("q", "      - concurrency_limit: {max: 1, queue: 1, queue_timeout: 3s}\n")
        + &route("t", "      - concurrency_limit: {max: 1, queue: 1, queue_timeout: 100ms}\n");
    let gw = gateway(&config(&backend.url(), "", &routes)).await;
    let addr = gw.addr;

    // max 1, queue 1: the second waits for the first and is served; the third is refused.
    let first = tokio::spawn(async move { get(addr, "/q").await });
    assert!(wait_for(Duration::from_secs(5), || async { backend.count() == 1 }).await);
    let second = tokio::spawn(async move { get(addr, "/q").await });
    // Give the second time to queue (it cannot reach the backend while the first is in flight).
    tokio::time::sleep(Duration::from_millis(100)).await;
    let third = get(addr, "/q").await;
    assert_eq!(third.status, 503, "queue full");
    assert_eq!(first.await.expect("join").status, 200);
    assert_eq!(second.await.expect("join").status, 200, "the queued request got the slot");
    assert_eq!(backend.count(), 2);

    // A queued request that waits longer than queue_timeout gets 503.
    let held = tokio::spawn(async move { get(addr, "/t").await });
    assert!(wait_for(Duration::from_secs(5), || async { backend.count() == 3 }).await);
    let started = std::time::Instant::now();
    let late = get(addr, "/t").await;
    assert_eq!(late.status, 503);
    assert!(started.elapsed() >= Duration::from_millis(100), "it waited for the timeout");
    assert_eq!(held.await.expect("join").status, 200);
    shutdown(gw).await;
}
