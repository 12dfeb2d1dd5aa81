//! Load balancing and health checking against real backends on 127.0.0.1.
//!
//! Tolerances are stated next to each assertion; the gateway runs one worker so the balancers'
//! shared counters see every request.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use gatehouse_testkit::{get, load, wait_for, Backend, Cfg, Handler, KeepAliveClient, Received, Reply, TestGateway};

/// One upstream `pool` with `balancer` and weighted targets, one catch-all route, admin on.
fn config(balancer: &str, targets: &[(String, u32)], upstream_extra: &str) -> Cfg {
    let fields = format!("balancer: {balancer}\n{upstream_extra}");
    Cfg::new().admin().upstream_weighted("pool", targets, &fields).route("all", "pool")
}

async fn start(cfg: Cfg) -> TestGateway {
    gatehouse_testkit::gateway(&cfg.to_yaml()).await
}

async fn shutdown(gw: TestGateway) {
    let _ = tokio::time::timeout(Duration::from_secs(5), gw.gw.shutdown()).await;
}

/// Requests that are not health checks.
fn traffic(b: &Backend) -> usize {
    b.requests().iter().filter(|r| r.uri != "/health").count()
}

/// `concurrency` client connections each sending requests back to back for `run`.
async fn load_for(gw: &TestGateway, concurrency: usize, run: Duration) -> usize {
    let deadline = tokio::time::Instant::now() + run;
    let mut lanes = Vec::new();
    for _ in 0..concurrency {
        let addr = gw.addr;
        lanes.push(tokio::spawn(async move {
            let mut c = KeepAliveClient::connect(addr).await;
            let mut n = 0;
            while tokio::time::Instant::now() < deadline {
                let r = c.get("/load").await;
                assert_eq!(r.status, 200, "{}", r.text());
                n += 1;
            }
            n
        }));
    }
    let mut total = 0;
    for l in lanes {
        total += l.await.expect("lane");
    }
    total
}

#[tokio::test]
async fn round_robin_honours_weights() {
    let (a, b) = (Backend::named("a").await, Backend::named("b").await);
    let gw = start(config("round_robin", &[(a.url(), 3), (b.url(), 1)], "")).await;
    let mut c = KeepAliveClient::connect(gw.addr).await;
    for _ in 0..400 {
        assert_eq!(c.get("/").await.status, 200);
    }
    let share_a = a.count() as f64 / 400.0;
    eprintln!("round_robin 3:1: a {} b {} of 400", a.count(), b.count());
    // Tolerance: ±5 percentage points around 75 % (smooth WRR is exact: measured 300/100).
    assert!((0.70..=0.80).contains(&share_a), "a got {} of 400, b got {}", a.count(), b.count());
    assert_eq!(a.count() + b.count(), 400);
    // Smooth: the light target is never starved for long (no more than 3 heavy picks in a row).
    let mut c2 = KeepAliveClient::connect(gw.addr).await;
    let seq: Vec<String> = {
        let mut v = Vec::new();
        for _ in 0..16 {
            v.push(c2.get("/").await.json()["backend"].as_str().unwrap_or("?").to_string());
        }
        v
    };
    let longest_a_run = seq.split(|x| x == "b").map(|run| run.len()).max().unwrap_or(0);
    assert!(longest_a_run <= 3, "{seq:?}");
    shutdown(gw).await;
}

fn slow_backend(name: &str, delay: Duration) -> Handler {
    let n = name.to_string();
    Arc::new(move |_: &Received| Reply::text(200, &format!("{{\"backend\":\"{n}\"}}")).delay(delay))
}

#[tokio::test]
async fn least_request_steers_away_from_a_slow_target() {
    let fast = Backend::named("fast").await;
    let slow = Backend::start("slow", slow_backend("slow", Duration::from_millis(200))).await;
    let gw = start(config("least_request", &[(fast.url(), 1), (slow.url(), 1)], "")).await;
    let total = load_for(&gw, 8, Duration::from_millis(1000)).await;
    let slow_share = slow.count() as f64 / total as f64;
    eprintln!("least_request: slow {} of {total} ({:.1} %)", slow.count(), slow_share * 100.0);
    // Tolerance: the slow target gets under 10 % (round robin would give it 50 %).
    assert!(total >= 50, "only {total} requests completed");
    assert!(slow_share < 0.10, "slow got {} of {total}, fast {}", slow.count(), fast.count());
    assert!(slow.count() >= 1, "P2C still samples the slow target when it is idle");
    shutdown(gw).await;
}

#[tokio::test]
async fn peak_ewma_steers_away_from_a_slow_target() {
    let fast = Backend::named("fast").await;
    let slow = Backend::start("slow", slow_backend("slow", Duration::from_millis(200))).await;
    let gw = start(config("peak_ewma", &[(fast.url(), 1), (slow.url(), 1)], "")).await;
    // Warm-up: until both targets have a latency estimate (an unmeasured target is tried first).
    let mut c = KeepAliveClient::connect(gw.addr).await;
    for _ in 0..10 {
        assert_eq!(c.get("/warm").await.status, 200);
    }
    assert!(slow.count() >= 1 && fast.count() >= 1, "warm-up sampled both targets");
    let slow_before = slow.count();
    let total = load_for(&gw, 4, Duration::from_millis(800)).await;
    let slow_after = slow.count() - slow_before;
    eprintln!("peak_ewma: slow {slow_after} of {total} after warm-up ({} during warm-up)", slow_before);
    // Tolerance: after warm-up the slow target (200 ms vs ~1 ms) gets under 5 %.
    assert!(total >= 50, "only {total} requests completed");
    assert!((slow_after as f64) < 0.05 * total as f64, "slow got {slow_after} of {total} after warm-up");
    shutdown(gw).await;
}

async fn backend_for_key(c: &mut KeepAliveClient, key: &str) -> String {
    let r = c.send("GET", "/item", &[("x-user", key)], b"").await;
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["backend"].as_str().expect("backend name").to_string()
}

#[tokio::test]
async fn consistent_hash_is_stable_and_moves_about_one_nth() {
    const KEYS: usize = 500;
    let mut backends = Vec::new();
    for i in 0..5 {
        backends.push(Backend::named(&format!("b{i}")).await);
    }
    let targets: Vec<(String, u32)> = backends.iter().map(|b| (b.url(), 1)).collect();
    let balancer = "{consistent_hash: {header: x-user}}";
    let gw = start(config(balancer, &targets, "")).await;
    let mut c = KeepAliveClient::connect(gw.addr).await;

    let mut before = Vec::with_capacity(KEYS);
    for k in 0..KEYS {
        before.push(backend_for_key(&mut c, &format!("user-{k}")).await);
    }
    // Same key, same backend, every time.
    for k in (0..KEYS).step_by(5) {
        for _ in 0..2 {
            assert_eq!(backend_for_key(&mut c, &format!("user-{k}")).await, before[k], "key user-{k} moved");
        }
    }
    // Every backend owns a fair part of the keys (ketama, 160 points each: expect ~100 ± 50).
    let mut per: HashMap<&str, usize> = HashMap::new();
    before.iter().for_each(|b| *per.entry(b.as_str()).or_default() += 1);
    assert_eq!(per.len(), 5, "{per:?}");
    assert!(per.values().all(|&n| (50..=170).contains(&n)), "{per:?}");

    // Remove b2 by reloading the config.
    let remaining: Vec<(String, u32)> =
        targets.iter().enumerate().filter(|(i, _)| *i != 2).map(|(_, t)| t.clone()).collect();
    gw.gw.reload(load(&config(balancer, &remaining, "").to_yaml())).expect("reload");
    // Same client connection: the reload applies to its next request.
    let mut after = Vec::with_capacity(KEYS);
    for k in 0..KEYS {
        after.push(backend_for_key(&mut c, &format!("user-{k}")).await);
    }
    let moved: Vec<usize> = (0..KEYS).filter(|&k| before[k] != after[k]).collect();
    // Only keys that lived on the removed target move, and all of them do.
    assert!(moved.iter().all(|&k| before[k] == "b2"), "a key not on b2 moved");
    assert_eq!(moved.len(), per["b2"], "every key of b2 moved");
    assert!(after.iter().all(|b| b != "b2"));
    // Tolerance: about 1/5 of the keys move; accept 10-30 %.
    let share = moved.len() as f64 / KEYS as f64;
    assert!((0.10..=0.30).contains(&share), "{} of {KEYS} keys moved", moved.len());
    eprintln!("consistent hash: {} of {KEYS} keys moved ({:.1} %), per target {per:?}", moved.len(), share * 100.0);
    shutdown(gw).await;
}

#[tokio::test]
async fn consistent_hash_without_the_key_still_answers() {
    let (a, b) = (Backend::named("a").await, Backend::named("b").await);
    let gw = start(config("{consistent_hash: {header: x-user}}", &[(a.url(), 1), (b.url(), 1)], "")).await;
    let mut c = KeepAliveClient::connect(gw.addr).await;
    for _ in 0..10 {
        assert_eq!(c.get("/no-key").await.status, 200);
    }
    assert_eq!(a.count() + b.count(), 10);
    shutdown(gw).await;
}

/// A backend whose `/health` answers 500 while `failing` is set; it counts the probes it answered.
struct Toggle {
    failing: Arc<AtomicBool>,
    fails: Arc<AtomicUsize>,
    oks: Arc<AtomicUsize>,
}

fn toggling(name: &'static str) -> (Toggle, Handler) {
    let t = Toggle {
        failing: Arc::new(AtomicBool::new(false)),
        fails: Arc::new(AtomicUsize::new(0)),
        oks: Arc::new(AtomicUsize::new(0)),
    };
    let (failing, fails, oks) = (t.failing.clone(), t.fails.clone(), t.oks.clone());
    let h = Arc::new(move |r: &Received| {
        if r.uri == "/health" {
            if failing.load(Ordering::SeqCst) {
                fails.fetch_add(1, Ordering::SeqCst);
                return Reply::text(500, "sick");
            }
            oks.fetch_add(1, Ordering::SeqCst);
            return Reply::text(200, "fine");
        }
        Reply::text(200, &format!("{{\"backend\":\"{name}\"}}"))
    });
    (t, h)
}

const HEALTH: &str =
    "health_check: {path: /health, interval: 100ms, timeout: 80ms, healthy_threshold: 2, unhealthy_threshold: 3}";

async fn upstreams_json(gw: &TestGateway) -> serde_json::Value {
    let r = get(gw.admin.expect("admin"), "/upstreams").await;
    assert_eq!(r.status, 200);
    r.json()
}

async fn health_of(gw: &TestGateway, url: &str) -> String {
    let v = upstreams_json(gw).await;
    let targets = v["upstreams"][0]["targets"].as_array().cloned().unwrap_or_default();
    targets.iter().find(|t| t["url"] == url).and_then(|t| t["health"].as_str()).unwrap_or("missing").to_string()
}

#[tokio::test]
async fn active_health_checks_take_targets_out_and_back() {
    let steady = Backend::named("steady").await;
    let (toggle, handler) = toggling("flaky");
    let flaky = Backend::start("flaky", handler).await;
    let gw = start(config("round_robin", &[(steady.url(), 1), (flaky.url(), 1)], HEALTH)).await;

    // Checks run and both targets serve.
    assert!(wait_for(Duration::from_secs(2), || async { toggle.oks.load(Ordering::SeqCst) >= 1 }).await);
    let mut c = KeepAliveClient::connect(gw.addr).await;
    for _ in 0..10 {
        assert_eq!(c.get("/").await.status, 200);
    }
    assert_eq!((traffic(&steady), traffic(&flaky)), (5, 5));

    // Failing health checks: out of rotation after `unhealthy_threshold` (3) failures.
    toggle.fails.store(0, Ordering::SeqCst);
    toggle.failing.store(true, Ordering::SeqCst);
    let url = flaky.url();
    assert!(
        wait_for(Duration::from_secs(3), || async { health_of(&gw, &url).await == "unhealthy" }).await,
        "target never marked unhealthy"
    );
    let fails = toggle.fails.load(Ordering::SeqCst);
    assert!(fails >= 3, "marked unhealthy after only {fails} failed checks");
    let v = upstreams_json(&gw).await;
    assert_eq!(v["upstreams"][0]["healthy_targets"], 1, "{v}");
    let t =
        v["upstreams"][0]["targets"].as_array().and_then(|ts| ts.iter().find(|t| t["url"] == url.as_str())).cloned();
    assert_eq!(t.as_ref().map(|t| t["last_check"].clone()), Some(serde_json::json!("status 500")), "{v}");
    assert_eq!(t.as_ref().map(|t| t["active_checks"].clone()), Some(serde_json::json!(true)), "{v}");

    let flaky_before = traffic(&flaky);
    for _ in 0..20 {
        assert_eq!(c.get("/").await.status, 200);
    }
    assert_eq!(traffic(&flaky), flaky_before, "an unhealthy target gets no traffic");

    // Healthy again after `healthy_threshold` (2) successes.
    toggle.oks.store(0, Ordering::SeqCst);
    toggle.failing.store(false, Ordering::SeqCst);
    assert!(
        wait_for(Duration::from_secs(3), || async { health_of(&gw, &url).await == "healthy" }).await,
        "target never came back"
    );
    let oks = toggle.oks.load(Ordering::SeqCst);
    assert!(oks >= 2, "back after only {oks} successful checks");
    let before = traffic(&flaky);
    for _ in 0..20 {
        assert_eq!(c.get("/").await.status, 200);
    }
    let got = traffic(&flaky) - before;
    assert!((8..=12).contains(&got), "the recovered target is back in rotation: {got} of 20");
    shutdown(gw).await;
}

#[tokio::test]
async fn no_healthy_target_is_503_naming_the_upstream() {
    let (toggle, handler) = toggling("only");
    toggle.failing.store(true, Ordering::SeqCst);
    let only = Backend::start("only", handler).await;
    let gw = start(config("round_robin", &[(only.url(), 1)], HEALTH)).await;
    let url = only.url();
    assert!(wait_for(Duration::from_secs(3), || async { health_of(&gw, &url).await == "unhealthy" }).await);
    let r = get(gw.addr, "/").await;
    assert_eq!(r.status, 503, "{}", r.text());
    let v = r.json();
    assert_eq!(v["error"]["code"], "no_healthy_upstream");
    assert!(v["error"]["message"].as_str().unwrap_or("").contains("`pool`"), "{v}");
    assert_eq!(traffic(&only), 0);
    shutdown(gw).await;
}

#[tokio::test]
async fn health_check_timeout_counts_as_a_failure() {
    let hanging = Backend::start(
        "hanging",
        Arc::new(|r: &Received| {
            let reply = Reply::text(200, "ok");
            if r.uri == "/health" {
                reply.delay(Duration::from_millis(500))
            } else {
                reply
            }
        }),
    )
    .await;
    let gw = start(config("round_robin", &[(hanging.url(), 1)], HEALTH)).await;
    let url = hanging.url();
    assert!(wait_for(Duration::from_secs(3), || async { health_of(&gw, &url).await == "unhealthy" }).await);
    let v = upstreams_json(&gw).await;
    assert_eq!(v["upstreams"][0]["targets"][0]["last_check"], "timeout", "{v}");
    shutdown(gw).await;
}

#[tokio::test]
async fn health_checks_notice_a_dead_target_and_its_return() {
    let steady = Backend::named("steady").await;
    let mortal = Backend::named("mortal").await;
    let (addr, url) = (mortal.addr, mortal.url());
    let gw = start(config("round_robin", &[(steady.url(), 1), (url.clone(), 1)], HEALTH)).await;
    assert!(wait_for(Duration::from_secs(2), || async { mortal.count() >= 1 }).await, "checks reach the target");

    drop(mortal); // stops accepting: connections are refused
    assert!(wait_for(Duration::from_secs(3), || async { health_of(&gw, &url).await == "unhealthy" }).await);
    let v = upstreams_json(&gw).await;
    let last = v["upstreams"][0]["targets"][1]["last_check"].as_str().unwrap_or("").to_string();
    assert!(last.starts_with("connect"), "{v}");
    for _ in 0..10 {
        assert_eq!(get(gw.addr, "/").await.status, 200, "no request fails while the target is down");
    }

    let back =
        Backend::start_at(addr, "back", Arc::new(|_: &Received| Reply::text(200, "{\"backend\":\"back\"}"))).await;
    assert!(wait_for(Duration::from_secs(3), || async { health_of(&gw, &url).await == "healthy" }).await);
    let mut c = KeepAliveClient::connect(gw.addr).await;
    for _ in 0..10 {
        assert_eq!(c.get("/").await.status, 200);
    }
    assert_eq!(traffic(&back), 5, "the returned target is back in rotation");
    shutdown(gw).await;
}

#[tokio::test]
async fn consistent_hash_on_a_cookie_is_sticky() {
    let (a, b) = (Backend::named("a").await, Backend::named("b").await);
    let gw = start(config("{consistent_hash: {cookie: session}}", &[(a.url(), 1), (b.url(), 1)], "")).await;
    let mut c = KeepAliveClient::connect(gw.addr).await;
    let mut seen = std::collections::HashSet::new();
    for k in 0..40 {
        let cookie = format!("theme=dark; session=s{k}; lang=en");
        let first = c.send("GET", "/", &[("cookie", &cookie)], b"").await.json()["backend"].clone();
        for _ in 0..2 {
            assert_eq!(c.send("GET", "/", &[("cookie", &cookie)], b"").await.json()["backend"], first, "session s{k}");
        }
        seen.insert(first.to_string());
    }
    assert_eq!(seen.len(), 2, "40 sessions spread over both targets");
    shutdown(gw).await;
}

/// Consistent hashing on the client IP uses the address after trusted proxies, and ignores
/// `X-Forwarded-For` from untrusted peers.
#[tokio::test]
async fn consistent_hash_on_client_ip_behind_a_trusted_proxy() {
    let mut backends = Vec::new();
    for i in 0..3 {
        backends.push(Backend::named(&format!("c{i}")).await);
    }
    let targets: Vec<(String, u32)> = backends.iter().map(|b| (b.url(), 1)).collect();
    let base = config("{consistent_hash: client_ip}", &targets, "");
    let trusted = base.clone().listener("trusted_proxies: [127.0.0.1/32]");
    for (cfg, trusts) in [(trusted, true), (base, false)] {
        let gw = start(cfg).await;
        let mut c = KeepAliveClient::connect(gw.addr).await;
        let mut owners = std::collections::HashSet::new();
        for k in 0..30 {
            let xff = format!("10.0.{k}.7");
            let first = c.send("GET", "/", &[("x-forwarded-for", &xff)], b"").await.json()["backend"].clone();
            let again = c.send("GET", "/", &[("x-forwarded-for", &xff)], b"").await.json()["backend"].clone();
            assert_eq!(first, again, "client {xff}");
            owners.insert(first.to_string());
        }
        if trusts {
            assert!(owners.len() >= 2, "30 client IPs behind the proxy spread over the targets: {owners:?}");
        } else {
            assert_eq!(owners.len(), 1, "an untrusted X-Forwarded-For must not steer hashing: {owners:?}");
        }
        shutdown(gw).await;
    }
}

#[tokio::test]
async fn consistent_hash_on_the_path_is_sticky() {
    let (a, b) = (Backend::named("a").await, Backend::named("b").await);
    let gw = start(config("{consistent_hash: path}", &[(a.url(), 1), (b.url(), 1)], "")).await;
    let mut c = KeepAliveClient::connect(gw.addr).await;
    let mut owners = std::collections::HashSet::new();
    for k in 0..30 {
        let path = format!("/items/{k}");
        let first = c.get(&format!("{path}?v=1")).await.json()["backend"].clone();
        // The query is not part of the key.
        assert_eq!(c.get(&format!("{path}?v=2")).await.json()["backend"], first, "{path}");
        owners.insert(first.to_string());
    }
    assert_eq!(owners.len(), 2);
    shutdown(gw).await;
}

/// Weights skew least_request's picks; they must not starve the lighter target when the upstream
/// is idle (every request then sees zero in-flight requests). (peak_ewma follows measured latency
/// first, by design: its weighting is pinned by a unit test with equal latencies in balancer.rs.)
#[tokio::test]
async fn least_request_with_weights_does_not_starve_the_lighter_target() {
    for balancer in ["least_request"] {
        let (a, b) = (Backend::named("a").await, Backend::named("b").await);
        let gw = start(config(balancer, &[(a.url(), 3), (b.url(), 1)], "")).await;
        let mut c = KeepAliveClient::connect(gw.addr).await;
        for _ in 0..200 {
            assert_eq!(c.get("/").await.status, 200);
        }
        shutdown(gw).await;
        // Tolerance: the weight-1 target gets 10-40 % (3:1 weights would give it 25 %).
        let share_b = b.count() as f64 / 200.0;
        assert!((0.10..=0.40).contains(&share_b), "{balancer}: a {} b {} of 200", a.count(), b.count());
    }
}
