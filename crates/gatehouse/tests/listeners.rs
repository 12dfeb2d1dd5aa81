//! Several listeners per config, each with its own limits and trust settings, and several worker
//! threads sharing each listener (SO_REUSEPORT).

use gatehouse_testkit::{get, load, raw, status_of, Backend, Gateway};

fn yaml(backend: &str) -> String {
    format!(
        "listeners:
  - name: public
    address: 127.0.0.1:0
  - name: internal
    address: 127.0.0.1:0
    trusted_proxies: [127.0.0.1/32]
    limits:
      max_uri_bytes: 64
upstreams:
  - name: backend
    targets:
      - url: {backend}
routes:
  - name: all
    upstream: backend
"
    )
}

#[tokio::test]
async fn each_listener_serves_with_its_own_settings() {
    let backend = Backend::named("b").await;
    let gw = Gateway::start(
        load(&yaml(&backend.url())),
        gatehouse_core::Options { workers: 1, admin: false, ..Default::default() },
    )
    .await
    .expect("starts");
    assert_eq!(gw.listen_addrs.len(), 2);
    let (public, internal) = (gw.listen_addrs[0], gw.listen_addrs[1]);
    assert_ne!(public.port(), internal.port());

    // Both answer.
    assert_eq!(get(public, "/a").await.status, 200);
    assert_eq!(get(internal, "/b").await.status, 200);

    // Limits are per listener: a 100-byte target is fine on `public`, 414 on `internal`.
    let long = format!("/{}", "x".repeat(100));
    assert_eq!(get(public, &long).await.status, 200);
    assert_eq!(get(internal, &long).await.status, 414);

    // Trust is per listener: a client-sent X-Forwarded-For is kept (appended to) only on `internal`.
    let req = b"GET /xff HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 10.9.8.7\r\nConnection: close\r\n\r\n";
    assert_eq!(status_of(&raw(public, req).await), 200);
    assert_eq!(backend.last().expect("request").header("x-forwarded-for"), Some("127.0.0.1"));
    assert_eq!(status_of(&raw(internal, req).await), 200);
    assert_eq!(backend.last().expect("request").header("x-forwarded-for"), Some("10.9.8.7, 127.0.0.1"));
    gw.shutdown().await;
}

#[tokio::test]
async fn several_workers_share_a_listener() {
    let backend = Backend::named("b").await;
    let gw = Gateway::start(
        load(&yaml(&backend.url())),
        gatehouse_core::Options { workers: 3, admin: false, ..Default::default() },
    )
    .await
    .expect("starts");
    let addr = gw.listen_addrs[0];
    // Many short connections: the kernel spreads them over the workers' sockets; all succeed.
    let mut tasks = Vec::new();
    for i in 0..60 {
        tasks.push(tokio::spawn(async move { get(addr, &format!("/c{i}")).await.status }));
    }
    for t in tasks {
        assert_eq!(t.await.expect("task"), 200);
    }
    assert_eq!(backend.count(), 60);
    gw.shutdown().await;
}
