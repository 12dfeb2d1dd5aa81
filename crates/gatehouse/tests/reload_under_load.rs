//! Reloads while traffic flows (issue 7, "Done means"): 20 admin reloads under a steady load lose
//! no request and reset neither the counters nor the upstream pools of the unchanged route; a
//! 10,000-route config is swapped in while requests to an unchanged route keep flowing, and the
//! latency of those requests before and during the swap is reported.
//!
//! Figures are printed (run with `--nocapture` to see them), not asserted: timings on a shared
//! machine are not test verdicts. What is asserted is exact: zero failures, counters equal to
//! what was sent, and no new upstream connection for the unchanged route.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gatehouse_testkit::prom::{self, value};
use gatehouse_testkit::{gateway, get, request, stop, Backend, Cfg, KeepAliveClient};

const TOKEN: &str = "reload-test-token-0123456789";

/// `stable` goes to `target`, `churn` (changed by every version) to `other`, so the stable
/// route's upstream connections are exactly those its own load opened.
fn config(target: &str, other: &str, version: usize, extra_routes: usize) -> String {
    let churn =
        format!("match: {{path: {{prefix: /churn}}}}\nresponse_headers: {{set: {{x-version: \"v{version}\"}}}}");
    let cfg = Cfg::new()
        .admin_with("127.0.0.1:0", &format!("token: {TOKEN}"))
        .upstream("backend", &[target])
        .upstream("other", &[other])
        .route_with("stable", "backend", "match: {path: {prefix: /stable}}")
        .route_with("churn", "other", &churn);
    let extra = |cfg: Cfg, i: usize| {
        let m = match i % 3 {
            0 => format!("prefix: /svc{i}"),
            1 => format!("exact: /exact/{i}"),
            _ => format!("template: \"/t{i}/{{id}}\""),
        };
        cfg.route_with(&format!("r{i}"), "backend", &format!("match:\n  path:\n    {m}"))
    };
    (0..extra_routes).fold(cfg, extra).to_yaml()
}

async fn put(admin: std::net::SocketAddr, body: &str) -> gatehouse_testkit::Resp {
    let auth = format!("Bearer {TOKEN}");
    request(admin, "PUT", "/config", &[("authorization", &auth)], body.as_bytes()).await
}

/// A load client's task: (start time and latency of each answered request, failures).
type Client = tokio::task::JoinHandle<(Vec<(Instant, Duration)>, usize)>;

/// Keep-alive clients sending GET `path` in a loop until `stop`; each returns (latencies, failures).
fn start_load(addr: std::net::SocketAddr, path: &'static str, clients: usize, stop: Arc<AtomicBool>) -> Vec<Client> {
    (0..clients)
        .map(|_| {
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut c = KeepAliveClient::connect(addr).await;
                let (mut lat, mut failed) = (Vec::new(), 0);
                // Bounded in time whatever happens to `stop`.
                let hard_stop = Instant::now() + Duration::from_secs(60);
                while !stop.load(Ordering::Relaxed) && Instant::now() < hard_stop {
                    let t = Instant::now();
                    let r = c.send("GET", path, &[], b"").await;
                    if r.status == 200 {
                        lat.push((t, t.elapsed()));
                    } else {
                        failed += 1;
                    }
                }
                (lat, failed)
            })
        })
        .collect()
}

async fn finish(load: Vec<Client>) -> (Vec<(Instant, Duration)>, usize) {
    let (mut all, mut failed) = (Vec::new(), 0);
    for h in load {
        match h.await {
            Ok((lat, f)) => {
                all.extend(lat);
                failed += f;
            }
            // A client whose connection broke panicked: that is a failed request.
            Err(_) => failed += 1,
        }
    }
    (all, failed)
}

fn p99(mut v: Vec<Duration>) -> Duration {
    if v.is_empty() {
        return Duration::ZERO;
    }
    v.sort();
    v[(v.len() * 99 / 100).min(v.len() - 1)]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_reloads_under_load_lose_nothing_and_keep_counters_and_pools() {
    let (backend, other) = (Backend::named("b").await, Backend::named("o").await);
    let gw = gateway(&config(&backend.url(), &other.url(), 0, 0)).await;
    let admin = gw.admin.expect("admin");
    let stop_flag = Arc::new(AtomicBool::new(false));
    let load = start_load(gw.addr, "/stable", 4, stop_flag.clone());
    // Let the pool fill before counting upstream connections.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let conns_before = backend.connections();

    for v in 1..=20 {
        let r = put(admin, &config(&backend.url(), &other.url(), v, 0)).await;
        assert_eq!(r.status, 200, "reload {v}: {}", r.text());
        assert_eq!(get(gw.addr, "/churn").await.header("x-version"), Some(format!("v{v}").as_str()));
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    stop_flag.store(true, Ordering::Relaxed);
    let (lat, failed) = finish(load).await;
    assert_eq!(failed, 0, "requests failed during reloads");
    assert!(lat.len() > 100, "the load ran ({} requests)", lat.len());

    // Counters of the unchanged route were not reset: they hold every request sent to it.
    // A request is counted in its log phase, just after its answer was written: the last
    // answers' counts may land a moment after the client has them.
    let mut s = prom::parse(&get(admin, "/metrics").await.text());
    for _ in 0..40 {
        let stable = value(&s, "gatehouse_http_requests_total", &[("route", "stable"), ("status_class", "2xx")]);
        if stable >= lat.len() as f64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        s = prom::parse(&get(admin, "/metrics").await.text());
    }
    let stable = value(&s, "gatehouse_http_requests_total", &[("route", "stable"), ("status_class", "2xx")]);
    assert_eq!(stable, lat.len() as f64, "the stable route's counter lost requests across reloads");
    assert_eq!(value(&s, "gatehouse_config_reloads_total", &[("result", "success")]), 20.0);
    // Pools were not reset: no new upstream connection beyond the 4 concurrent clients'.
    let conns_after = backend.connections();
    assert!(conns_before <= 4, "pool warm-up opened {conns_before} connections");
    assert_eq!(conns_after, conns_before, "reloads opened new upstream connections (pools reset)");
    println!(
        "20 reloads under load: {} requests, 0 failed, p99 {:?}, upstream connections {conns_before} -> {conns_after}",
        lat.len(),
        p99(lat.iter().map(|l| l.1).collect())
    );
    stop(gw).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ten_thousand_route_swap_does_not_stall_unchanged_routes() {
    let backend = Backend::named("b").await;
    let gw = gateway(&config(&backend.url(), &backend.url(), 0, 10)).await;
    let admin = gw.admin.expect("admin");
    let big = config(&backend.url(), &backend.url(), 1, 10_000);
    let stop_flag = Arc::new(AtomicBool::new(false));
    let load = start_load(gw.addr, "/stable", 2, stop_flag.clone());
    tokio::time::sleep(Duration::from_millis(500)).await;

    // A debug build parses 10,000 routes slowly on a busy machine: a raw PUT with a long idle
    // timeout instead of the test client's 10 s.
    let t0 = Instant::now();
    let head = format!(
        "PUT /config HTTP/1.1\r\nHost: admin\r\nAuthorization: Bearer {TOKEN}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        big.len()
    );
    let raw =
        gatehouse_testkit::raw_timeout(admin, &[head.as_bytes(), big.as_bytes()].concat(), Duration::from_secs(60))
            .await;
    let t1 = Instant::now();
    assert!(raw.starts_with("HTTP/1.1 200"), "{raw}");
    let body: serde_json::Value =
        serde_json::from_str(raw.split("\r\n\r\n").nth(1).unwrap_or("")).expect("JSON answer");
    let took_ms = body["took_ms"].as_f64().unwrap_or(f64::NAN);
    assert_eq!(get(gw.addr, "/svc9999/x").await.status, 200, "the new routes are live");
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop_flag.store(true, Ordering::Relaxed);
    let (lat, failed) = finish(load).await;
    assert_eq!(failed, 0);
    assert_eq!(gw.gw.snapshot().routes.len(), 10_002);

    let before: Vec<Duration> = lat.iter().filter(|(t, _)| *t < t0).map(|l| l.1).collect();
    let during: Vec<Duration> = lat.iter().filter(|(t, _)| *t >= t0 && *t <= t1).map(|l| l.1).collect();
    assert!(!before.is_empty() && !during.is_empty(), "requests flowed before and during the swap");
    println!(
        "10k-route swap: applied in {took_ms:.1} ms (load+validate+compile+swap, this build); /stable p99 before {:?} ({} req), during {:?} ({} req)",
        p99(before.clone()),
        before.len(),
        p99(during.clone()),
        during.len()
    );
    stop(gw).await;
}
