//! Cluster-mode rate limits (`mode: cluster`) against a real `redis-server` that each test starts
//! on an ephemeral port (`RedisServer`; the tests fail, never skip, when the binary is missing).
//!
//! - The single-gateway tests run the real pipeline in process, like `rate_limit.rs`.
//! - The accuracy test runs three real `gatehouse` processes sharing one Redis, with clients
//!   spread round-robin over them, then stops Redis under them and restarts it.
//!
//! Timing: real time, generous margins. Limits refill in 20 s or more per request (or 3 s in the
//! accuracy test, whose bound allows for it), so the test's own duration never admits an extra
//! request; the Redis timeouts are far above what a loaded CI machine needs; every wait for
//! recovery is bounded.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use gatehouse_core::policy::RoutePolicy;
use gatehouse_testkit::{
    assert_three_per_minute, free_port, gateway, load, policy_route as route, request, statuses as codes,
    stop as shutdown, wait_for, Backend, Cfg, GatewayProcess, RedisServer, Resp, TestGateway,
};

const BIN: &str = env!("CARGO_BIN_EXE_gatehouse");

/// One listener, one upstream `backend` at `target`, a `cluster.redis` at `redis`, and `routes`.
fn config(target: &str, redis: &str, routes: &str) -> Cfg {
    cluster_config(target, redis, "", routes)
}

/// As [`config`], with extra `cluster.redis` fields (`tls: ...`, indented 4).
fn cluster_config(target: &str, redis: &str, redis_extra: &str, routes: &str) -> Cfg {
    let cluster =
        format!("cluster:\n  redis:\n    url: {redis}\n    timeout: 1s\n    key_prefix: \"test:\"\n{redis_extra}");
    Cfg::new().admin().upstream("backend", &[target]).yaml(&cluster).routes_yaml(routes)
}

async fn get_n(addr: SocketAddr, path: &str, n: usize) -> Vec<Resp> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(request(addr, "GET", path, &[], b"").await);
    }
    out
}

/// `redis_errors` of the first policy of route `idx`.
fn redis_errors(gw: &TestGateway, idx: usize) -> u64 {
    match &gw.gw.snapshot().routes[idx].stack.policies[0] {
        RoutePolicy::RateLimit(rl) => rl.limiter.redis_errors.load(Ordering::Relaxed),
        other => panic!("not a rate limit: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_mode_refuses_after_the_burst_with_429_retry_after_and_draft_headers() {
    let redis = RedisServer::start();
    let backend = Backend::named("b").await;
    // 3/min: T = 20 s; burst 2 → 3 at once. fail_closed: a Redis problem would show as 503.
    let routes =
        route("limited", "      - rate_limit: {limit: 3/min, burst: 2, mode: cluster, on_redis_error: fail_closed}\n");
    let gw = config(&backend.url(), &redis.url(), &routes).start().await;

    let rs = get_n(gw.addr, "/limited", 5).await;
    // Exactly what local mode answers (rate_limit.rs).
    assert_three_per_minute(&rs);
    assert_eq!(backend.count(), 3, "the backend got exactly the admitted requests");
    assert_eq!(redis_errors(&gw, 0), 0);

    // A second gateway on the same Redis shares the limit: it has nothing left either.
    let gw2 = config(&backend.url(), &redis.url(), &routes).start().await;
    assert_eq!(codes(&get_n(gw2.addr, "/limited", 1).await), [429]);
    shutdown(gw2).await;
    shutdown(gw).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_requests_refund_the_cluster_limit_and_reloads_keep_the_state() {
    let redis = RedisServer::start();
    let backend = Backend::named("b").await;
    let cluster = "      - rate_limit: {limit: 2/min, burst: 1, key: route, mode: cluster}\n";
    // A local 1/min limit after the cluster one refuses the second request: the cluster limit
    // must be refunded.
    let both = route("r", &format!("{cluster}      - rate_limit: {{limit: 1/min, key: route}}\n"));
    let gw = config(&backend.url(), &redis.url(), &both).start().await;
    assert_eq!(codes(&get_n(gw.addr, "/r", 3).await), [200, 429, 429]);
    // Without the local limit (same cluster policy: same Redis key): one unit is still left.
    gw.gw.reload(load(&config(&backend.url(), &redis.url(), &route("r", cluster)).to_yaml())).expect("reload");
    assert_eq!(codes(&get_n(gw.addr, "/r", 2).await), [200, 429]);
    shutdown(gw).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_applies_each_failure_mode_then_recovers_without_restart() {
    let mut redis = RedisServer::start();
    let backend = Backend::named("b").await;
    let limit = "limit: 2/min, burst: 1, key: route, mode: cluster";
    let routes = route("open", &format!("      - rate_limit: {{{limit}, on_redis_error: fail_open}}\n"))
        + &route("closed", &format!("      - rate_limit: {{{limit}, on_redis_error: fail_closed}}\n"))
        + &route("local", &format!("      - rate_limit: {{{limit}, on_redis_error: local}}\n"));
    let gw = config(&backend.url(), &redis.url(), &routes).start().await;

    // Redis up: the cluster limit applies.
    assert_eq!(codes(&get_n(gw.addr, "/open", 3).await), [200, 200, 429]);

    redis.stop();
    // fail_open: admitted, without rate-limit headers (nothing is known about the limit).
    let rs = get_n(gw.addr, "/open", 5).await;
    assert_eq!(codes(&rs), [200; 5]);
    assert_eq!(rs[0].header("ratelimit"), None, "{:?}", rs[0].headers);
    // fail_closed: 503 rate_limit_unavailable with Retry-After.
    let rs = get_n(gw.addr, "/closed", 3).await;
    assert_eq!(codes(&rs), [503; 3]);
    assert_eq!(rs[0].json()["error"]["code"], "rate_limit_unavailable");
    assert_eq!(rs[0].header("retry-after"), Some("1"));
    assert_eq!(rs[0].header("ratelimit"), None);
    // local: this gateway's own limiter with the same limit and burst.
    let rs = get_n(gw.addr, "/local", 3).await;
    assert_eq!(codes(&rs), [200, 200, 429]);
    assert_eq!(rs[0].header("ratelimit"), Some("\"local\";r=1;t=30"));
    assert_eq!(redis_errors(&gw, 0), 5);
    assert_eq!(redis_errors(&gw, 1), 3);
    assert_eq!(redis_errors(&gw, 2), 3);

    // Redis back on the same port (empty): the cluster limit resumes without a restart.
    redis.restart();
    let back =
        wait_for(Duration::from_secs(10), || async { get_n(gw.addr, "/closed", 1).await[0].status == 200 }).await;
    assert!(back, "cluster limiting did not resume within 10 s of Redis coming back");
    assert_eq!(codes(&get_n(gw.addr, "/closed", 2).await), [200, 429]);
    // The local fallback is exhausted, so a 200 here comes from the (fresh) Redis state.
    assert_eq!(codes(&get_n(gw.addr, "/local", 1).await), [200]);
    shutdown(gw).await;
}

/// Three `gatehouse` processes with route `/shared` (policy `policy`) in front of `backend`,
/// sharing `redis`.
async fn spawn_fleet(backend: &Backend, redis: &RedisServer, policy: &str) -> (Vec<GatewayProcess>, Vec<SocketAddr>) {
    let mut procs = Vec::new();
    let mut addrs = Vec::new();
    for _ in 0..3 {
        let (port, admin) = (free_port(), free_port());
        let yaml = config(&backend.url(), &redis.url(), &route("shared", policy))
            .listen(&format!("127.0.0.1:{port}"))
            .admin_with(&format!("127.0.0.1:{admin}"), "")
            .to_yaml();
        let admin_addr: SocketAddr = ([127, 0, 0, 1], admin).into();
        let p = tokio::task::spawn_blocking(move || GatewayProcess::spawn(BIN, &yaml, admin_addr)).await.expect("join");
        procs.push(p);
        addrs.push(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    (procs, addrs)
}

/// `total` requests to `/shared` from 30 concurrent clients, request i to gateway i mod 3:
/// (gateway index, status) per request.
async fn hammer(addrs: &[SocketAddr], total: usize) -> Vec<(usize, u16)> {
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..30 {
        let (next, addrs) = (next.clone(), addrs.to_vec());
        tasks.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    return seen;
                }
                seen.push((i % 3, request(addrs[i % 3], "GET", "/shared", &[], b"").await.status));
            }
        }));
    }
    let mut results = Vec::new();
    for t in tasks {
        results.extend(t.await.expect("client task"));
    }
    results
}

/// Script calls (EVALSHA and EVAL) the Redis server has run, from `INFO commandstats`.
fn script_calls(redis: &RedisServer) -> u64 {
    let out = std::process::Command::new("redis-cli")
        .args(["-p", &redis.port.to_string(), "info", "commandstats"])
        .output()
        .expect("redis-cli runs (it comes with redis-server)");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with("cmdstat_evalsha:") || l.starts_with("cmdstat_eval:"))
        .filter_map(|l| l.split("calls=").nth(1)?.split(',').next()?.parse::<u64>().ok())
        .sum()
}

/// The issue's accuracy test: three gateway processes, one Redis, clients spread round-robin.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_gateways_share_one_limit_exactly_and_survive_redis_going_away() {
    const N: usize = 200;
    let mut redis = RedisServer::start();
    let backend = Backend::named("b").await;
    // N per 10 min with burst N − 1: N at once, then one per 3 s, so the test's own duration adds
    // at most one or two admissions (accounted for in the bound below).
    let policy = format!(
        "      - rate_limit: {{limit: {N}/10min, burst: {}, key: route, mode: cluster, on_redis_error: fail_closed}}\n",
        N - 1
    );
    let (mut procs, addrs) = spawn_fleet(&backend, &redis, &policy).await;
    let started = std::time::Instant::now();
    let results = hammer(&addrs, 3 * N).await;
    let elapsed = started.elapsed();
    let admitted = results.iter().filter(|(_, s)| *s == 200).count();
    let refused = results.iter().filter(|(_, s)| *s == 429).count();
    let per_gateway: Vec<usize> =
        (0..3).map(|g| results.iter().filter(|(x, s)| *x == g && *s == 200).count()).collect();
    eprintln!(
        "accuracy: 3 gateways, limit {N}/10min burst {}, {} requests in {elapsed:?}: admitted {admitted} \
         ({:+.2}% vs N), refused {refused}, admitted per gateway {per_gateway:?}",
        N - 1,
        3 * N,
        (admitted as f64 - N as f64) * 100.0 / N as f64
    );
    assert_eq!(admitted + refused, 3 * N, "only 200 and 429 expected: {results:?}");
    // One extra admission per 3 s of test time is the limit itself, not an error.
    let refill = (elapsed.as_secs_f64() / 3.0).floor() as usize;
    assert!(admitted >= N && admitted <= N + refill, "admitted {admitted}, expected {N}..={}", N + refill);
    let tolerance = N / 50; // ±2 %
    assert!(admitted.abs_diff(N) <= tolerance, "admitted {admitted} is not within N ± 2 %");
    assert!(per_gateway.iter().all(|&n| n > 0), "every gateway admitted some: {per_gateway:?}");
    assert_eq!(backend.count(), admitted);

    // Redis goes away: every gateway refuses with 503 (fail_closed), none crashes.
    redis.stop();
    for &a in &addrs {
        let r = request(a, "GET", "/shared", &[], b"").await;
        assert_eq!(r.status, 503, "{:?}", r.headers);
        assert_eq!(r.json()["error"]["code"], "rate_limit_unavailable");
    }
    for p in &mut procs {
        assert!(matches!(p.child.try_wait(), Ok(None)), "a gateway exited while Redis was down");
    }
    // Redis comes back (empty): every gateway decides in Redis again, without a restart.
    redis.restart();
    for &a in &addrs {
        let ok =
            wait_for(
                Duration::from_secs(10),
                || async move { request(a, "GET", "/shared", &[], b"").await.status == 200 },
            )
            .await;
        assert!(ok, "gateway {a} did not resume within 10 s of Redis coming back");
    }
}

/// Batching: the same fleet with `batch: 10`. Admissions stay within the documented bound (never
/// more than the limit plus `batch`; at most `3 × (batch − 1)` early refusals), with far fewer
/// Redis round trips than requests.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn batching_cuts_redis_round_trips_within_the_documented_error() {
    const N: usize = 200;
    const B: usize = 10;
    let redis = RedisServer::start();
    let backend = Backend::named("b").await;
    let policy = format!(
        "      - rate_limit: {{limit: {N}/10min, burst: {}, key: route, mode: cluster, batch: {B}, on_redis_error: fail_closed}}\n",
        N - 1
    );
    let (_procs, addrs) = spawn_fleet(&backend, &redis, &policy).await;
    let before = script_calls(&redis);
    let started = std::time::Instant::now();
    let results = hammer(&addrs, 3 * N).await;
    let elapsed = started.elapsed();
    let calls = script_calls(&redis) - before;
    let admitted = results.iter().filter(|(_, s)| *s == 200).count();
    let refused = results.iter().filter(|(_, s)| *s == 429).count();
    eprintln!(
        "batching: 3 gateways, limit {N}/10min burst {}, batch {B}, {} requests in {elapsed:?}: admitted {admitted} \
         ({:+.2}% vs N), refused {refused}, Redis script calls {calls}",
        N - 1,
        3 * N,
        (admitted as f64 - N as f64) * 100.0 / N as f64
    );
    assert_eq!(admitted + refused, 3 * N, "only 200 and 429 expected");
    let refill = (elapsed.as_secs_f64() / 3.0).floor() as usize;
    assert!(admitted <= N + B + refill, "over-admission beyond the bound: {admitted}");
    assert!(admitted + 3 * (2 * B - 1) >= N, "under-admission beyond the bound: {admitted}");
    assert_eq!(backend.count(), admitted);
    // Without batching every request is one script call (600). With it: about one per batch
    // while admitting (plus single calls while a batch is in flight), refusals repeated locally.
    assert!(calls < (3 * N / 3) as u64, "{calls} script calls for {admitted} admissions and {refused} refusals");
}

/// TLS to Redis (`rediss://`): the shared limit works over TLS with the test CA; with a CA that
/// did not sign the server's certificate the connection is refused and `fail_closed` answers 503.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rediss_with_a_configured_ca_and_a_refused_certificate() {
    let redis = RedisServer::start_tls();
    let backend = Backend::named("b").await;
    let tls = |ca: &std::path::Path| format!("    tls:\n      ca_file: {}\n", ca.display());
    let policy =
        "      - rate_limit: {limit: 3/min, burst: 2, key: route, mode: cluster, on_redis_error: fail_closed}\n";
    let yaml =
        cluster_config(&backend.url(), &redis.url(), &tls(&redis.ca_file()), &route("limited", policy)).to_yaml();
    let gw = gateway(&yaml).await;
    assert_three_per_minute(&get_n(gw.addr, "/limited", 5).await);
    assert_eq!(redis_errors(&gw, 0), 0, "every decision came from Redis over TLS");
    shutdown(gw).await;

    // Another CA: the server's certificate does not verify, nothing is decided in Redis.
    let other = RedisServer::start_tls();
    let yaml =
        cluster_config(&backend.url(), &redis.url(), &tls(&other.ca_file()), &route("limited", policy)).to_yaml();
    let gw = gateway(&yaml).await;
    let r = get_n(gw.addr, "/limited", 1).await;
    assert_eq!(codes(&r), [503]);
    assert_eq!(r[0].json()["error"]["code"], "rate_limit_unavailable");
    assert!(redis_errors(&gw, 0) >= 1);
    shutdown(gw).await;
}
