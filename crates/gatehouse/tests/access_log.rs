//! The JSON access log: one line per request (errors included), the documented fields, no query
//! string unless asked for, never a credential.

use std::time::Duration;

use gatehouse_testkit::{free_port, gateway, request, Backend, Cfg};

fn config(backend: &str, dead: &str, log: &str, include_query: bool) -> Cfg {
    Cfg::new()
        .yaml(&format!("access_log:\n  enabled: true\n  path: {log}\n  include_query: {include_query}"))
        .upstream("api", &[backend])
        .upstream("dead", &[dead])
        .route_with("users", "api", "match: {path: {prefix: /users}}")
        .route_with("broken", "dead", "match: {path: {prefix: /broken}}")
}

async fn lines(path: &std::path::Path, n: usize) -> Vec<serde_json::Value> {
    for _ in 0..200 {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let v: Vec<serde_json::Value> =
            text.lines().map(|l| serde_json::from_str(l).expect("each line is JSON")).collect();
        if v.len() >= n {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("fewer than {n} access-log lines in {}", path.display());
}

#[tokio::test]
async fn one_json_line_per_request_with_the_documented_fields() {
    let backend = Backend::named("b").await;
    let path = std::env::temp_dir().join(format!("gatehouse-access-{}-{}.log", std::process::id(), free_port()));
    let dead = format!("http://127.0.0.1:{}", free_port());
    let gw = gateway(&config(&backend.url(), &dead, &path.to_string_lossy(), false).to_yaml()).await;

    let ok = request(gw.addr, "GET", "/users/7?token=s3cr3t", &[("authorization", "Bearer hunter2")], b"").await;
    assert_eq!(ok.status, 200);
    let missing = request(gw.addr, "GET", "/nope", &[], b"").await;
    assert_eq!(missing.status, 404);
    let broken = request(gw.addr, "POST", "/broken", &[], b"x").await;
    assert_eq!(broken.status, 502);

    let v = lines(&path, 3).await;
    let first = &v[0];
    assert_eq!(first["request_id"], ok.header("x-request-id").expect("id"));
    assert_eq!(first["method"], "GET");
    assert_eq!(first["protocol"], "HTTP/1.1");
    assert_eq!(first["host"], "gatehouse.test");
    assert_eq!(first["path"], "/users/7");
    assert!(first.get("query").is_none(), "query logged without include_query: {first}");
    assert_eq!(first["route"], "users");
    assert_eq!(first["upstream"], "api");
    assert_eq!(first["target"], backend.url());
    assert_eq!(first["status"], 200);
    assert_eq!(first["upstream_status"], 200);
    assert_eq!(first["client_ip"], "127.0.0.1");
    assert!(first["duration_ms"].as_f64().is_some_and(|d| d >= 0.0));
    assert!(first["upstream_ms"].as_f64().is_some());
    assert!(first["timestamp"].as_str().is_some_and(|t| t.ends_with('Z') && t.len() == 24));
    assert!(first["error_kind"].is_null());

    assert_eq!(v[1]["status"], 404);
    assert_eq!(v[1]["error_kind"], "route_not_found");
    assert!(v[1]["route"].is_null());
    assert_eq!(v[2]["status"], 502);
    assert_eq!(v[2]["route"], "broken");
    assert_eq!(v[2]["error_kind"], "upstream_connect_failed");

    let text = std::fs::read_to_string(&path).expect("log");
    assert!(!text.contains("hunter2") && !text.contains("s3cr3t"), "a credential reached the log: {text}");
    gw.gw.shutdown().await;
    let _ = std::fs::remove_file(&path);
}

#[tokio::test]
async fn query_is_logged_only_when_asked() {
    let backend = Backend::named("b").await;
    let path = std::env::temp_dir().join(format!("gatehouse-access-q-{}-{}.log", std::process::id(), free_port()));
    let dead = format!("http://127.0.0.1:{}", free_port());
    let gw = gateway(&config(&backend.url(), &dead, &path.to_string_lossy(), true).to_yaml()).await;
    assert_eq!(request(gw.addr, "GET", "/users?page=2", &[], b"").await.status, 200);
    let v = lines(&path, 1).await;
    assert_eq!(v[0]["query"], "page=2");
    gw.gw.shutdown().await;
    let _ = std::fs::remove_file(&path);
}

/// Log rotation (`logrotate` in `create` mode): the file is renamed, SIGUSR1 makes the gateway
/// reopen its path, and the next lines go to the new file; nothing is lost in between.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigusr1_reopens_the_access_log_after_a_rename() {
    let backend = Backend::named("b").await;
    let dir = std::env::temp_dir().join(format!("gh-rotate-{}-{}", std::process::id(), free_port()));
    std::fs::create_dir_all(&dir).expect("dir");
    let log = dir.join("access.log");
    let (listen, admin) = (free_port(), free_port());
    let yaml = config(&backend.url(), "http://127.0.0.1:1", &log.display().to_string(), false)
        .listen(&format!("127.0.0.1:{listen}"))
        .admin_with(&format!("127.0.0.1:{admin}"), "")
        .to_yaml();
    let admin_addr: std::net::SocketAddr = ([127, 0, 0, 1], admin).into();
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], listen).into();
    let bin = env!("CARGO_BIN_EXE_gatehouse");
    let p = tokio::task::spawn_blocking(move || gatehouse_testkit::GatewayProcess::spawn(bin, &yaml, admin_addr))
        .await
        .expect("join");

    assert_eq!(request(addr, "GET", "/users/before", &[], b"").await.status, 200);
    assert_eq!(lines(&log, 1).await[0]["path"], "/users/before");
    let rotated = dir.join("access.log.1");
    std::fs::rename(&log, &rotated).expect("rotate");
    p.signal("USR1");
    // The writer recreates the file once it has handled the signal.
    let mut reopened = false;
    for _ in 0..200 {
        if log.exists() {
            reopened = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(reopened, "the access log was not reopened");
    assert_eq!(request(addr, "GET", "/users/after", &[], b"").await.status, 200);
    assert_eq!(lines(&log, 1).await[0]["path"], "/users/after");
    let old = std::fs::read_to_string(&rotated).expect("rotated file");
    assert_eq!(old.lines().count(), 1, "the rotated file keeps what was written before: {old}");
    drop(p);
    let _ = std::fs::remove_dir_all(&dir);
}
