//! Config changes through the admin API (`PUT /config`, `POST /reload`, history, rollback) and
//! through the file watch (an edited file, and a Kubernetes-style `..data` symlink swap), all of
//! them through the gateway's one validate → compile → swap path.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use gatehouse_testkit::prom::{self, value};
use gatehouse_testkit::{free_port, gateway, get, request, stop, wait_for, Backend, Cfg, GatewayProcess};

const BIN: &str = env!("CARGO_BIN_EXE_gatehouse");
const TOKEN: &str = "s3cret-admin-token-0123";

fn config(listen: &str, admin: &str, target: &str, token: bool, routes: &[&str]) -> String {
    let token = if token { format!("token: {TOKEN}") } else { String::new() };
    let cfg = Cfg::new().listen(listen).admin_with(admin, &token).upstream("backend", &[target]);
    let route = |c: Cfg, r: &&str| c.route_with(r, "backend", &format!("match: {{path: {{prefix: /{r}}}}}"));
    routes.iter().fold(cfg, route).to_yaml()
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

async fn put_config(admin: SocketAddr, token: Option<&str>, body: &str) -> gatehouse_testkit::Resp {
    let auth = token.map(bearer);
    let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("authorization", a.as_str())).collect();
    request(admin, "PUT", "/config", &headers, body.as_bytes()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_config_needs_the_token_lists_every_problem_and_rolls_back() {
    let backend = Backend::named("b").await;
    let any = "127.0.0.1:0";
    let gw = gateway(&config(any, any, &backend.url(), true, &["a"])).await;
    let admin = gw.admin.expect("admin");
    let good = config(any, any, &backend.url(), true, &["a", "b"]);

    // Without or with a wrong token: refused, nothing changes.
    let r = put_config(admin, None, &good).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.header("www-authenticate"), Some("Bearer"));
    assert_eq!(put_config(admin, Some("s3cret-admin-token-0124"), &good).await.status, 401);
    assert_eq!(get(gw.addr, "/b").await.status, 404);

    // An invalid config: 400 with every problem and its path; the running config stays.
    let bad = good.replace(
        "upstream: backend\n    match: {path: {prefix: /b}}",
        "upstream: nowhere\n    match: {path: {prefix: /b}, mystery: 1}",
    );
    let r = put_config(admin, Some(TOKEN), &bad).await;
    assert_eq!(r.status, 400, "{}", r.text());
    let v = r.json();
    assert_eq!(v["error"]["code"], "invalid_config");
    let paths: Vec<&str> =
        v["error"]["problems"].as_array().expect("problems").iter().filter_map(|p| p["path"].as_str()).collect();
    assert!(paths.contains(&"routes[1].match.mystery"), "{paths:?}");
    assert!(paths.contains(&"routes[1].upstream"), "{paths:?}");
    assert_eq!(get(gw.addr, "/a").await.status, 200);

    // A good one is applied at once.
    let r = put_config(admin, Some(TOKEN), &good).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["id"], 2);
    assert_eq!(get(gw.addr, "/b").await.status, 200);

    // History: start, admin; the stored config is redacted (the token is a secret).
    let h = get(admin, "/config/history").await.json();
    let sources: Vec<&str> =
        h["history"].as_array().expect("list").iter().filter_map(|e| e["source"].as_str()).collect();
    assert_eq!(sources, ["start", "admin"]);
    let first = get(admin, "/config/history/1").await;
    assert_eq!(first.status, 200);
    assert!(!first.text().contains(TOKEN), "history leaks the admin token");
    assert_eq!(first.json()["config"]["routes"].as_array().map(Vec::len), Some(1));

    // Rollback to the first config: route b disappears; the rollback is a new history entry.
    let auth = bearer(TOKEN);
    let r = request(admin, "POST", "/config/rollback/1", &[("authorization", &auth)], b"").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["source"], "rollback");
    assert_eq!(get(gw.addr, "/b").await.status, 404);
    assert_eq!(request(admin, "POST", "/config/rollback/99", &[("authorization", &auth)], b"").await.status, 404);
    // No file behind an in-process gateway: nothing to re-read.
    assert_eq!(request(admin, "POST", "/reload", &[("authorization", &auth)], b"").await.status, 409);

    let s = prom::parse(&get(admin, "/metrics").await.text());
    assert_eq!(value(&s, "gatehouse_config_reloads_total", &[("result", "success")]), 2.0);
    assert_eq!(value(&s, "gatehouse_config_reloads_total", &[("result", "failure")]), 1.0);
    stop(gw).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_token_the_admin_api_cannot_change_the_config() {
    let backend = Backend::named("b").await;
    let gw = gateway(&config("127.0.0.1:0", "127.0.0.1:0", &backend.url(), false, &["a"])).await;
    let admin = gw.admin.expect("admin");
    let r = put_config(admin, Some(TOKEN), &config("127.0.0.1:0", "127.0.0.1:0", &backend.url(), false, &["b"])).await;
    assert_eq!(r.status, 403);
    assert_eq!(r.json()["error"]["code"], "admin_writes_disabled");
    assert_eq!(get(gw.addr, "/a").await.status, 200);
    stop(gw).await;
}

fn symlink(target: &Path, link: &Path) {
    std::os::unix::fs::symlink(target, link).expect("symlink");
}

/// Points `dir/..data` at `dir/version` atomically, as the kubelet does for a ConfigMap.
fn swap_data(dir: &Path, version: &str) {
    let tmp = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp);
    symlink(Path::new(version), &tmp);
    std::fs::rename(&tmp, dir.join("..data")).expect("rename over ..data");
}

async fn status(addr: SocketAddr, path: &str) -> u16 {
    tokio::time::timeout(Duration::from_secs(2), get(addr, path)).await.map_or(0, |r| r.status)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configmap_symlink_swap_or_an_edit_reloads_and_a_bad_file_is_refused() {
    let backend = Backend::named("b").await;
    let (listen, admin_port) = (free_port(), free_port());
    let (l, a) = (format!("127.0.0.1:{listen}"), format!("127.0.0.1:{admin_port}"));
    let traffic: SocketAddr = l.parse().expect("addr");
    let admin: SocketAddr = a.parse().expect("addr");
    let dir = std::env::temp_dir().join(format!("gh-watch-{}-{listen}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    // The ConfigMap layout: config.yaml -> ..data/config.yaml, ..data -> v1.
    for (v, routes) in [("v1", &["a"][..]), ("v2", &["a", "b"][..])] {
        std::fs::create_dir_all(dir.join(v)).expect("version dir");
        std::fs::write(dir.join(v).join("config.yaml"), config(&l, &a, &backend.url(), true, routes)).expect("write");
    }
    std::fs::create_dir_all(dir.join("v3")).expect("version dir");
    std::fs::write(dir.join("v3").join("config.yaml"), "routes: [{name: x, upstream: nowhere}]\n").expect("write");
    symlink(Path::new("v1"), &dir.join("..data"));
    symlink(Path::new("..data/config.yaml"), &dir.join("config.yaml"));
    let _p = GatewayProcess::spawn_file(BIN, &[], dir.clone(), dir.join("config.yaml"), admin);
    assert_eq!(status(traffic, "/b").await, 404);

    swap_data(&dir, "v2");
    let seen = wait_for(Duration::from_secs(5), || async { status(traffic, "/b").await == 200 }).await;
    assert!(seen, "the symlink swap was not picked up");

    // A bad version: refused and counted, the running config keeps serving.
    swap_data(&dir, "v3");
    let refused = wait_for(Duration::from_secs(5), || async {
        let s = prom::parse(&get(admin, "/metrics").await.text());
        value(&s, "gatehouse_config_reloads_total", &[("result", "failure")]) == 1.0
    })
    .await;
    assert!(refused, "the bad file was not refused");
    assert_eq!(status(traffic, "/b").await, 200);

    // Back to good content by editing the file in place; then POST /reload re-reads it too.
    swap_data(&dir, "v1");
    let seen = wait_for(Duration::from_secs(5), || async { status(traffic, "/b").await == 404 }).await;
    assert!(seen, "the edit was not picked up");
    std::fs::write(dir.join("v1").join("config.yaml"), config(&l, &a, &backend.url(), true, &["a", "c"]))
        .expect("write");
    let auth = bearer(TOKEN);
    let r = request(admin, "POST", "/reload", &[("authorization", &auth)], b"").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(status(traffic, "/c").await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_config_false_leaves_reloads_to_signals_and_the_admin_api() {
    let backend = Backend::named("b").await;
    let (listen, admin_port) = (free_port(), free_port());
    let (l, a) = (format!("127.0.0.1:{listen}"), format!("127.0.0.1:{admin_port}"));
    let traffic: SocketAddr = l.parse().expect("addr");
    let admin: SocketAddr = a.parse().expect("addr");
    let off = "server:\n  watch_config: false\n";
    let p = GatewayProcess::spawn(BIN, &format!("{off}{}", config(&l, &a, &backend.url(), false, &["a"])), admin);
    std::fs::write(p.config_path(), format!("{off}{}", config(&l, &a, &backend.url(), false, &["a", "b"])))
        .expect("write");
    // Longer than the watch's debounce: nothing happens.
    tokio::time::sleep(gatehouse_core::watch::DEBOUNCE * 3).await;
    assert_eq!(status(traffic, "/b").await, 404);
    p.signal("HUP");
    let seen = wait_for(Duration::from_secs(5), || async { status(traffic, "/b").await == 200 }).await;
    assert!(seen, "SIGHUP still reloads");
}
