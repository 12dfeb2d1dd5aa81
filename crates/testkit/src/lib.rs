//! Test-only helpers: real backends on 127.0.0.1 ephemeral ports, raw and HTTP clients,
//! launchers for the gateway (in-process through the real pipeline, or the real binary), a
//! real `redis-server` (`RedisServer`) for cluster-mode tests, a real OTLP trace receiver
//! (`OtlpReceiver`, Python with the official `opentelemetry-proto` decoder) and a real gRPC
//! service and client (`GrpcServer`, `grpc_call`: Python with the official `grpcio`).
//!
//! Invariants: backends are independent implementations (hyper's server), so a test checks the
//! gateway against another parser, never against itself; every wait is bounded in time.

pub use gatehouse_core::Gateway;

pub mod h2raw;
pub mod prom;
pub mod tls;

mod backend;
mod client;
mod launch;
mod services;

pub use backend::*;
pub use client::*;
pub use launch::*;
pub use services::*;

#[cfg(test)]
mod tests {
    use super::Cfg;

    #[test]
    fn cfg_puts_every_item_in_its_place_and_the_loader_accepts_it() {
        let yaml = Cfg::new()
            .listener("    timeouts: {idle: 1s}\n")
            .admin_with("127.0.0.1:0", "token: a-long-enough-admin-token-0123")
            .yaml("server:\n  drain_timeout: 1s")
            .upstream_with("a", &["http://127.0.0.1:1"], "pool:\n  idle_timeout: 5s")
            .upstream_weighted("b", &[("http://127.0.0.1:2", 3)], "")
            .route_with("r", "a", "match: {path: {prefix: /r}}")
            .routes_yaml("  - {name: s, upstream: b}")
            .to_yaml();
        let want = "\
listeners:
  - address: 127.0.0.1:0
    timeouts: {idle: 1s}
admin:
  address: 127.0.0.1:0
  token: a-long-enough-admin-token-0123
server:
  drain_timeout: 1s
upstreams:
  - name: a
    targets:
      - url: http://127.0.0.1:1
    pool:
      idle_timeout: 5s
  - name: b
    targets:
      - {url: \"http://127.0.0.1:2\", weight: 3}
routes:
  - name: r
    upstream: a
    match: {path: {prefix: /r}}
  - {name: s, upstream: b}
";
        assert_eq!(yaml, want);
        crate::load(&yaml);
    }
}
