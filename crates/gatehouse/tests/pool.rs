//! Upstream keep-alive pooling: connections are reused while fresh and dropped after the pool's
//! idle timeout, so the gateway never hands out a connection the upstream has likely closed.

use std::time::Duration;

use gatehouse_testkit::{gateway, get, Backend, Cfg};

fn yaml(backend: &str, idle: &str) -> String {
    let pool = format!("pool:\n  idle_timeout: {idle}");
    Cfg::new().upstream_with("backend", &[backend], &pool).route("all", "backend").to_yaml()
}

#[tokio::test]
async fn idle_connections_are_reused_while_fresh() {
    let backend = Backend::named("b").await;
    let gw = gateway(&yaml(&backend.url(), "10s")).await;
    for i in 0..5 {
        // A new client connection each time: reuse is on the upstream side.
        assert_eq!(get(gw.addr, &format!("/r{i}")).await.status, 200);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(backend.connections(), 1, "one pooled upstream connection serves all five");
    gw.gw.shutdown().await;
}

#[tokio::test]
async fn idle_connections_expire_after_the_idle_timeout() {
    let backend = Backend::named("b").await;
    let gw = gateway(&yaml(&backend.url(), "200ms")).await;
    assert_eq!(get(gw.addr, "/first").await.status, 200);
    assert_eq!(backend.connections(), 1);
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(get(gw.addr, "/second").await.status, 200);
    assert_eq!(backend.connections(), 2, "the expired connection was not reused");
    gw.gw.shutdown().await;
}
