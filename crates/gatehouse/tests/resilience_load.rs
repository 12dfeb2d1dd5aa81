//! Resilience under load: one of three backends killed mid-run, and the retry budget when every
//! backend fails. Both bounded to a few seconds; figures are printed (`--nocapture`) and
//! asserted against the targets.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gatehouse_testkit::{gateway, stop, upstreams_view, Cfg, Fault, FaultyBackend, KeepAliveClient};

fn config(targets: &[&FaultyBackend], up: &str, route: &str) -> String {
    let urls: Vec<String> = targets.iter().map(|b| b.url()).collect();
    Cfg::new().admin().upstream_with("backend", &urls, up).route_with("all", "backend", route).to_yaml()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_one_of_three_backends_fails_no_idempotent_request() {
    let bs = [FaultyBackend::start("a").await, FaultyBackend::start("b").await, FaultyBackend::start("c").await];
    // Production defaults: retries on connect failure and reset, outlier detection on.
    let gw = gateway(&config(&[&bs[0], &bs[1], &bs[2]], "", "")).await;
    let addr = gw.addr;
    let (ok, failed, running) =
        (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)), Arc::new(AtomicBool::new(true)));
    let mut clients = Vec::new();
    for _ in 0..8 {
        let (ok, failed, running) = (ok.clone(), failed.clone(), running.clone());
        clients.push(tokio::spawn(async move {
            let mut c = KeepAliveClient::connect(addr).await;
            while running.load(Ordering::Relaxed) {
                if c.is_closed() {
                    c = KeepAliveClient::connect(addr).await;
                }
                let r = c.get("/").await;
                if r.status == 200 {
                    ok.fetch_add(1, Ordering::Relaxed);
                } else {
                    failed.fetch_add(1, Ordering::Relaxed);
                    eprintln!("failed request: {} {}", r.status, r.text());
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    let before_kill = ok.load(Ordering::Relaxed);
    bs[1].kill();
    let killed_at = Instant::now();
    // Traffic is fully on the healthy targets once the dead one is ejected (no more attempts).
    let dead = bs[1].url();
    let mut ejected_after = None;
    while killed_at.elapsed() < Duration::from_secs(3) {
        let v = upstreams_view(&gw).await;
        let t = v["upstreams"][0]["targets"].as_array().and_then(|ts| ts.iter().find(|t| t["url"] == dead).cloned());
        if t.is_some_and(|t| t["health"] == "ejected") {
            ejected_after = Some(killed_at.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(Duration::from_millis(800)).await;
    running.store(false, Ordering::Relaxed);
    for c in clients {
        let _ = tokio::time::timeout(Duration::from_secs(5), c).await;
    }
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    let v = upstreams_view(&gw).await;
    let retries = v["upstreams"][0]["counters"]["retries"].as_u64().unwrap_or(0);
    eprintln!(
        "kill one of three: {ok} ok ({before_kill} before the kill), {failed} failed, {retries} retries, dead target ejected after {ejected_after:?}"
    );
    assert_eq!(failed, 0, "idempotent requests must not fail when one of three backends dies");
    let ejected_after = ejected_after.expect("the dead target was never ejected");
    assert!(ejected_after < Duration::from_secs(1), "ejection took {ejected_after:?}");
    assert!(ok > before_kill + 100, "traffic kept flowing after the kill: {ok} vs {before_kill}");
    stop(gw).await;
}

/// Every backend answers 503; the route retries 503 up to 5 attempts. The budget (20 % of
/// requests + 1/s) caps what reaches the upstream; with a budget that allows everything, the
/// same run multiplies the load by 5.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_budget_caps_upstream_load_when_everything_fails() {
    async fn run(budget: &str) -> (usize, usize, u64) {
        let bs = [FaultyBackend::start("a").await, FaultyBackend::start("b").await, FaultyBackend::start("c").await];
        for b in &bs {
            b.set(Fault::Status(503));
        }
        let up = format!(
            "    outlier_detection: {{enabled: false}}\n    circuit_breaker: {{enabled: false}}\n    retry_budget: {budget}\n"
        );
        let route = "    retry: {attempts: 5, on: [503], backoff: {base: 1ms, max: 2ms}}\n";
        let gw = gateway(&config(&[&bs[0], &bs[1], &bs[2]], &up, route)).await;
        let addr = gw.addr;
        const CLIENTS: usize = 4;
        const PER_CLIENT: usize = 50;
        let mut tasks = Vec::new();
        for _ in 0..CLIENTS {
            tasks.push(tokio::spawn(async move {
                let mut c = KeepAliveClient::connect(addr).await;
                let mut n503 = 0;
                for _ in 0..PER_CLIENT {
                    if c.get("/").await.status == 503 {
                        n503 += 1;
                    }
                }
                n503
            }));
        }
        let mut answered = 0;
        for t in tasks {
            answered += tokio::time::timeout(Duration::from_secs(10), t).await.expect("bounded").expect("join");
        }
        let hits: usize = bs.iter().map(|b| b.hits()).sum();
        let v = upstreams_view(&gw).await;
        let exhausted = v["upstreams"][0]["counters"]["retries_budget_exhausted"].as_u64().unwrap_or(0);
        stop(gw).await;
        assert_eq!(answered, CLIENTS * PER_CLIENT, "every client gets the upstream's 503");
        (CLIENTS * PER_CLIENT, hits, exhausted)
    }
    let (requests, hits, exhausted) = run("{percent: 20, min_per_second: 1}").await;
    let (_, unbounded, _) = run("{percent: 1000, min_per_second: 1000}").await;
    eprintln!(
        "retry budget: {requests} requests -> {hits} upstream attempts with the budget ({exhausted} retries refused), {unbounded} without"
    );
    // 20 % of 200 requests + 10 (1/s over the 10 s window), + a few for concurrent checks.
    assert!(hits <= requests + requests / 5 + 10 + 4, "{hits} attempts for {requests} requests");
    assert!(hits >= requests + requests / 5, "the budget allows 20 %: {hits}");
    assert_eq!(unbounded, requests * 5, "without a budget every request makes 5 attempts");
}
