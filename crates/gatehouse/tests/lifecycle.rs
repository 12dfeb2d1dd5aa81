//! Lifecycle: graceful shutdown and SIGHUP reload of the real binary, in-process reloads (state
//! kept in registries, listener changes refused), and the admin endpoints.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gatehouse_core::ReloadError;
use gatehouse_testkit::{
    blocking_get, free_port, gateway, get, load, request, simple_config, wait_for, Backend, Cfg, GatewayProcess,
    KeepAliveClient, Received, Reply, TestGateway,
};

const BIN: &str = env!("CARGO_BIN_EXE_gatehouse");

fn local(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

async fn shutdown(gw: TestGateway) {
    let _ = tokio::time::timeout(Duration::from_secs(5), gw.gw.shutdown()).await;
}

/// The `server` section of most binary configs.
const DRAIN: &str = "server:\n  drain_timeout: 10s";

/// A config for the real binary: fixed ports, a `server` section, one upstream, the given routes.
fn binary_config(listen: u16, admin: u16, server: &str, target: &str, routes: &str) -> String {
    Cfg::new()
        .listen(&format!("127.0.0.1:{listen}"))
        .admin_with(&format!("127.0.0.1:{admin}"), "")
        .yaml(server)
        .upstream("backend", &[target])
        .routes_yaml(routes)
        .to_yaml()
}

fn status_line(raw: &str) -> &str {
    raw.lines().next().unwrap_or("")
}

/// Waits (on a blocking thread) until the process exits, up to `timeout`.
async fn wait_exit(mut p: GatewayProcess, timeout: Duration) -> (GatewayProcess, Option<std::process::ExitStatus>) {
    tokio::task::spawn_blocking(move || {
        let s = p.wait_exit(timeout);
        (p, s)
    })
    .await
    .expect("join")
}

async fn spawn(yaml: String, admin: SocketAddr) -> GatewayProcess {
    tokio::task::spawn_blocking(move || GatewayProcess::spawn(BIN, &yaml, admin)).await.expect("join")
}

async fn blocking(addr: SocketAddr, path: &'static str) -> String {
    tokio::task::spawn_blocking(move || blocking_get(addr, path)).await.expect("join")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_requests_and_refuses_new_connections() {
    let backend =
        Backend::start("slow", Arc::new(|_: &Received| Reply::text(200, "slow done").delay(Duration::from_secs(1))))
            .await;
    let (listen, admin) = (free_port(), free_port());
    let routes = "  - {name: all, upstream: backend}\n";
    let mut p = spawn(binary_config(listen, admin, DRAIN, &backend.url(), routes), local(admin)).await;
    let stderr = p.capture_stderr();

    // A slow request in flight (HTTP/1.1 keep-alive: the gateway must end it with `connection: close`).
    let in_flight = tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(local(listen)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
        s.write_all(b"GET /slow HTTP/1.1\r\nhost: gatehouse.test\r\n\r\n").expect("write");
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    });
    assert!(wait_for(Duration::from_secs(3), || async { backend.count() >= 1 }).await, "request reached the backend");

    p.signal("TERM");
    let signalled = Instant::now();

    // New connections are refused shortly after SIGTERM.
    let refused = wait_for(Duration::from_secs(1), || async {
        matches!(
            std::net::TcpStream::connect_timeout(&local(listen), Duration::from_millis(200)),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused
        )
    })
    .await;
    assert!(refused, "new connections still accepted {:?} after SIGTERM", signalled.elapsed());
    assert!(signalled.elapsed() < Duration::from_millis(900), "the slow request was still in flight");

    // The in-flight request completes normally.
    let raw = in_flight.await.expect("join");
    assert!(status_line(&raw).starts_with("HTTP/1.1 200"), "{raw}");
    assert!(raw.ends_with("slow done"), "{raw}");
    assert!(raw.to_ascii_lowercase().contains("connection: close"), "{raw}");

    // And the process exits 0 within a few seconds.
    let (_p, status) = wait_exit(p, Duration::from_secs(5)).await;
    let status = status.expect("gatehouse exited within 5 s of SIGTERM");
    assert!(status.success(), "exit status {status:?}; stderr:\n{}", stderr.lock().unwrap());
    assert!(signalled.elapsed() < Duration::from_secs(4), "exit took {:?}", signalled.elapsed());
}

/// Regression: the admin listener used to stop with the traffic listeners, so /readyz was
/// connection-refused during the drain instead of answering 503.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_reports_draining_during_shutdown() {
    let backend =
        Backend::start("slow", Arc::new(|_: &Received| Reply::text(200, "slow done").delay(Duration::from_secs(1))))
            .await;
    let (listen, admin) = (free_port(), free_port());
    let routes = "  - {name: all, upstream: backend}\n";
    let p = spawn(binary_config(listen, admin, DRAIN, &backend.url(), routes), local(admin)).await;
    let in_flight = blocking(local(listen), "/slow");
    let in_flight = tokio::spawn(in_flight);
    assert!(wait_for(Duration::from_secs(3), || async { backend.count() >= 1 }).await);
    p.signal("TERM");
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_millis(800);
    let mut draining = false;
    while !draining && Instant::now() < deadline {
        let raw = blocking(local(admin), "/readyz").await;
        draining = status_line(&raw).contains(" 503") && raw.contains("draining");
        seen.push(if raw.is_empty() { "<no answer>".to_string() } else { status_line(&raw).to_string() });
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let raw = in_flight.await.expect("join");
    let (_p, status) = wait_exit(p, Duration::from_secs(5)).await;
    assert!(draining, "/readyz while draining answered: {:?}", seen.iter().take(3).collect::<Vec<_>>());
    assert!(status_line(&raw).contains(" 200"), "{raw}");
    assert!(status.expect("exited").success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_and_keeps_the_old_config_when_the_new_one_is_bad() {
    let backend = Backend::named("b").await;
    let (listen, admin) = (free_port(), free_port());
    let route_a = "  - {name: a, upstream: backend, match: {path: {prefix: /a}}}\n";
    let route_b = "  - {name: b, upstream: backend, match: {path: {prefix: /b}}}\n";
    let mut p = spawn(binary_config(listen, admin, DRAIN, &backend.url(), route_a), local(admin)).await;
    let stderr = p.capture_stderr();
    let addr = local(listen);
    assert!(status_line(&blocking(addr, "/a").await).contains(" 200"));
    assert!(status_line(&blocking(addr, "/b").await).contains(" 404"));

    // A new route via SIGHUP.
    let two_routes = format!("{route_a}{route_b}");
    std::fs::write(p.config_path(), binary_config(listen, admin, DRAIN, &backend.url(), &two_routes)).expect("write");
    p.signal("HUP");
    assert!(
        wait_for(Duration::from_secs(3), || async { status_line(&blocking(addr, "/b").await).contains(" 200") }).await,
        "new route not served after SIGHUP; stderr:\n{}",
        stderr.lock().unwrap()
    );
    // The log line follows the swap, and the stderr reader thread may lag behind: wait for it.
    let logged = wait_for(Duration::from_secs(3), || async { stderr.lock().unwrap().contains("config applied") }).await;
    assert!(logged, "no `config applied` log; stderr:\n{}", stderr.lock().unwrap());

    // An invalid config: refused, logged, the old one keeps serving.
    let bad = binary_config(listen, admin, DRAIN, &backend.url(), "  - {name: c, upstream: nowhere, mystery: 1}\n");
    std::fs::write(p.config_path(), bad).expect("write");
    p.signal("HUP");
    assert!(
        wait_for(Duration::from_secs(3), || async { stderr.lock().unwrap().contains("reload refused") }).await,
        "no refusal logged; stderr:\n{}",
        stderr.lock().unwrap()
    );
    {
        let log = stderr.lock().unwrap();
        assert!(log.contains("routes[0].upstream") && log.contains("mystery"), "the reason is logged:\n{log}");
    }
    assert!(status_line(&blocking(addr, "/a").await).contains(" 200"));
    assert!(status_line(&blocking(addr, "/b").await).contains(" 200"));
    assert!(p.child.try_wait().expect("try_wait").is_none(), "the process must stay up");

    // A valid config that moves the listener is refused too (a restart is needed for that).
    let moved = binary_config(free_port(), admin, DRAIN, &backend.url(), route_a);
    std::fs::write(p.config_path(), moved).expect("write");
    let refusals = stderr.lock().unwrap().matches("reload refused").count();
    p.signal("HUP");
    assert!(
        wait_for(Duration::from_secs(3), || async {
            stderr.lock().unwrap().matches("reload refused").count() > refusals
        })
        .await
    );
    assert!(stderr.lock().unwrap().contains("listeners changed"));
    assert!(status_line(&blocking(addr, "/b").await).contains(" 200"), "old config still serving");

    p.signal("TERM");
    let (_p, status) = wait_exit(p, Duration::from_secs(5)).await;
    assert!(status.expect("exited").success());
}

fn health_config(target: &str, health: &str, extra_routes: &str) -> String {
    let fields = format!("health_check: {health}");
    Cfg::new()
        .admin()
        .upstream_with("backend", &[target], &fields)
        .route("all", "backend")
        .routes_yaml(extra_routes)
        .to_yaml()
}

async fn health_of(gw: &TestGateway) -> String {
    let v = get(gw.admin.expect("admin"), "/upstreams").await.json();
    v["upstreams"][0]["targets"][0]["health"].as_str().unwrap_or("missing").to_string()
}

#[tokio::test]
async fn reload_keeps_target_health_state() {
    let failing = Arc::new(AtomicBool::new(true));
    let f = failing.clone();
    let backend = Backend::start(
        "sick",
        Arc::new(move |r: &Received| {
            if r.uri == "/health" && f.load(Ordering::SeqCst) {
                Reply::text(500, "sick")
            } else {
                Reply::text(200, "ok")
            }
        }),
    )
    .await;
    let fast = "{path: /health, interval: 100ms, timeout: 80ms, unhealthy_threshold: 2, healthy_threshold: 2}";
    let gw = gateway(&health_config(&backend.url(), fast, "")).await;
    assert!(wait_for(Duration::from_secs(3), || async { health_of(&gw).await == "unhealthy" }).await);
    assert_eq!(get(gw.addr, "/").await.status, 503);

    // Reload with slow checks (a fresh state would need 3 failures = 20 s to go unhealthy) and a
    // new route: the verdict carries over at once.
    let slow = "{path: /health, interval: 10s, timeout: 1s, unhealthy_threshold: 3, healthy_threshold: 2}";
    let extra = "  - {name: extra, upstream: backend, match: {path: {exact: /extra}}}\n";
    let reloads = gw.gw.reload_count();
    gw.gw.reload(load(&health_config(&backend.url(), slow, extra))).expect("reload");
    assert_eq!(gw.gw.reload_count(), reloads + 1);
    assert_eq!(health_of(&gw).await, "unhealthy", "health state reset by reload");
    let r = get(gw.addr, "/extra").await;
    assert_eq!((r.status, r.json()["error"]["code"].clone()), (503, "no_healthy_upstream".into()));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(health_of(&gw).await, "unhealthy");
    shutdown(gw).await;
}

#[tokio::test]
async fn reload_keeps_pooled_upstream_connections() {
    let backend = Backend::named("pooled").await;
    let gw = gateway(&simple_config(&[backend.url()], "")).await;
    assert_eq!(get(gw.addr, "/one").await.status, 200);
    let routes =
        "  - {name: all, upstream: backend}\n  - {name: new, upstream: backend, match: {path: {exact: /new}}}\n";
    gw.gw.reload(load(&simple_config(&[backend.url()], routes))).expect("reload");
    assert_eq!(get(gw.addr, "/new").await.status, 200);
    assert_eq!(backend.connections(), 1, "the unchanged target's pooled connection survives the reload");
    shutdown(gw).await;
}

#[tokio::test]
async fn reload_rejects_a_listener_change_and_keeps_serving() {
    let backend = Backend::named("b").await;
    let cfg = Cfg::new().admin().upstream("backend", &[backend.url()]).route("all", "backend");
    let gw = cfg.start().await;
    let moved = cfg.clone().listen(&format!("127.0.0.1:{}", free_port())).to_yaml();
    match gw.gw.reload(load(&moved)) {
        Err(e @ ReloadError::ListenersChanged(_)) => assert!(e.to_string().contains("restart"), "{e}"),
        other => panic!("expected ListenersChanged, got {other:?}"),
    }
    let added = cfg.add_listener(&format!("127.0.0.1:{}", free_port()), "").to_yaml();
    assert!(matches!(gw.gw.reload(load(&added)), Err(ReloadError::ListenersChanged(_))));
    assert_eq!(gw.gw.reload_count(), 0);
    assert_eq!(get(gw.addr, "/still").await.status, 200);
    shutdown(gw).await;
}

/// Regression: the snapshot used to be loaded before waiting for the next request head, so the
/// first request after a reload on an idle keep-alive connection ran with the old config.
#[tokio::test]
async fn reload_applies_to_the_next_request_on_an_open_connection() {
    let (old, new) = (Backend::named("old").await, Backend::named("new").await);
    let gw = gateway(&simple_config(&[old.url()], "")).await;
    let mut c = KeepAliveClient::connect(gw.addr).await;
    assert_eq!(c.get("/").await.json()["backend"], "old");
    gw.gw.reload(load(&simple_config(&[new.url()], ""))).expect("reload");
    assert_eq!(c.get("/").await.json()["backend"], "new", "request after reload used the old config");
    shutdown(gw).await;
}

#[tokio::test]
async fn admin_endpoints() {
    let backend = Backend::named("b").await;
    let routes = "  - name: all\n    upstream: backend\n    request_headers:\n      set: {Authorization: \"Bearer secret-token-123\", X-Env: prod}\n";
    let gw = gateway(&simple_config(&[backend.url()], routes)).await;
    let admin = gw.admin.expect("admin listener");

    let r = get(admin, "/healthz").await;
    assert_eq!((r.status, r.json()["status"].clone()), (200, "ok".into()));
    let r = get(admin, "/readyz").await;
    assert_eq!((r.status, r.json()["status"].clone()), (200, "ready".into()));

    let r = get(admin, "/config").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    let text = r.text();
    assert!(!text.contains("secret-token-123"), "secret leaked:\n{text}");
    let set = &r.json()["routes"][0]["request_headers"]["set"];
    assert_eq!(set["Authorization"], "<redacted>", "{text}");
    assert_eq!(set["X-Env"], "prod", "non-secret values stay readable");
    assert_eq!(r.json()["upstreams"][0]["targets"][0]["url"], backend.url());

    // The header really is set upstream (redaction is only in the admin view).
    assert_eq!(get(gw.addr, "/").await.status, 200);
    assert_eq!(
        backend.last().and_then(|r| r.header("authorization").map(str::to_string)).as_deref(),
        Some("Bearer secret-token-123")
    );

    let r = get(admin, "/upstreams").await;
    assert_eq!(r.status, 200);
    let v = r.json();
    let u = &v["upstreams"][0];
    assert_eq!(u["name"], "backend");
    assert_eq!(u["healthy_targets"], 1);
    assert_eq!(u["targets"][0]["url"], backend.url());
    assert_eq!(u["targets"][0]["health"], "healthy");
    assert_eq!(u["targets"][0]["active_checks"], false);

    let r = get(admin, "/nope").await;
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["error"]["code"], "not_found");
    let r = request(admin, "POST", "/config", &[], b"{}").await;
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("GET, HEAD, PUT"));
    // Admin endpoints are not served on the traffic listener.
    let r = request(gw.addr, "GET", "/healthz", &[], b"").await;
    assert_eq!(r.status, 200);
    assert_eq!(backend.last().map(|r| r.uri), Some("/healthz".to_string()), "traffic listener proxies /healthz");
    shutdown(gw).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_drain_is_bounded_by_drain_timeout() {
    let backend =
        Backend::start("stuck", Arc::new(|_: &Received| Reply::text(200, "late").delay(Duration::from_secs(5)))).await;
    let (listen, admin) = (free_port(), free_port());
    let server = "server:\n  drain_timeout: 500ms";
    let yaml = binary_config(listen, admin, server, &backend.url(), "  - {name: all, upstream: backend}\n");
    let p = spawn(yaml, local(admin)).await;
    let stuck = tokio::spawn(blocking(local(listen), "/stuck"));
    assert!(wait_for(Duration::from_secs(3), || async { backend.count() >= 1 }).await);
    p.signal("INT");
    let signalled = Instant::now();
    let (_p, status) = wait_exit(p, Duration::from_secs(4)).await;
    let took = signalled.elapsed();
    assert!(status.expect("exited").success());
    assert!(took < Duration::from_secs(3), "exit took {took:?} with a 500ms drain timeout");
    let raw = stuck.await.expect("join");
    assert!(!raw.contains("late"), "the stuck request cannot have completed: {raw}");
}

#[tokio::test]
async fn shutdown_closes_idle_keep_alive_connections_promptly() {
    let backend = Backend::named("b").await;
    let gw = gateway(&simple_config(&[backend.url()], "")).await;
    let mut idle = KeepAliveClient::connect(gw.addr).await;
    assert_eq!(idle.get("/").await.status, 200);
    assert_eq!(gw.gw.open_connections(), 1);
    let started = Instant::now();
    tokio::time::timeout(Duration::from_secs(3), gw.gw.shutdown())
        .await
        .expect("shutdown does not wait for idle clients");
    assert!(started.elapsed() < Duration::from_secs(1), "took {:?}", started.elapsed());
    assert!(wait_for(Duration::from_secs(1), || async { idle.is_closed() }).await, "idle connection closed");
    assert!(tokio::net::TcpStream::connect(gw.addr).await.is_err(), "listener closed");
}

/// `server.shutdown_delay`: after SIGTERM, `/readyz` fails at once while new connections are
/// still accepted and served until the delay has passed; then the drain runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_delay_fails_readiness_first_and_keeps_serving() {
    let backend = Backend::named("b").await;
    let (listen, admin) = (free_port(), free_port());
    let server = "server:\n  drain_timeout: 10s\n  shutdown_delay: 1500ms";
    let yaml = binary_config(listen, admin, server, &backend.url(), "  - {name: all, upstream: backend}\n");
    assert!(yaml.contains("shutdown_delay"), "{yaml}");
    let p = spawn(yaml, local(admin)).await;
    p.signal("TERM");
    let signalled = Instant::now();
    assert!(
        wait_for(Duration::from_secs(1), || async {
            status_line(&blocking(local(admin), "/readyz").await).contains(" 503")
        })
        .await,
        "readiness did not fail at once"
    );
    // Still inside the delay: a new connection is accepted and served.
    let raw = blocking(local(listen), "/during-delay").await;
    assert!(signalled.elapsed() < Duration::from_millis(1500), "the check ran too late to mean anything");
    assert!(status_line(&raw).contains(" 200"), "{raw}");
    let (_p, status) = wait_exit(p, Duration::from_secs(6)).await;
    assert!(status.expect("exited").success());
    assert!(signalled.elapsed() >= Duration::from_millis(1500), "exited before the delay was over");
}
