//! The local GCRA limiter (issue 6: "Criterion bench of the local limiter under contention").
//!
//! - `decide/single_key`: one key, the same shard every time (the cost of one decision).
//! - `decide/10k_keys`: rotating over 10 000 keys (hash-map work, cache misses).
//! - `hash_and_decide/client_ip`: what a request pays: hash the client IP with the limiter's
//!   SipHash keys, then decide.
//! - `contended/*`: two threads hammering the same limiter, on the same key (one shard, the worst
//!   case) and on different keys (different shards); the time is wall time per decision of each
//!   thread, so compare it with `single_key`.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use gatehouse_config as cfg;
use gatehouse_core::http1::Headers;
use gatehouse_core::policy::{KeySpec, RateLimiter};

/// 1 000 000/s with a burst of 1000: high enough that the bench measures admitted decisions
/// mostly, like a limit that does not trigger.
fn limiter() -> RateLimiter {
    RateLimiter::new(1_000, 1_000 * 1_000)
}

fn keys(n: u64) -> Vec<u64> {
    (0..n).map(|i| i.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0x5555).collect()
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("decide");
    let l = limiter();
    g.bench_function("single_key", |b| b.iter(|| black_box(l.decide(black_box(42), 1))));
    let l = limiter();
    let ks = keys(10_000);
    let mut i = 0;
    g.bench_function("10k_keys", |b| {
        b.iter(|| {
            i = (i + 1) % ks.len();
            black_box(l.decide(ks[i], 1))
        })
    });
    g.finish();

    let mut g = c.benchmark_group("hash_and_decide");
    let l = limiter();
    let spec = KeySpec::compile(&cfg::LimitKey(vec![cfg::KeyPart::ClientIp]));
    let headers = Headers::new();
    let ip = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7));
    g.bench_function("client_ip", |b| b.iter(|| black_box(l.decide(spec.hash(l.seed(), black_box(ip), &headers), 1))));
    g.finish();

    let mut g = c.benchmark_group("contended");
    g.measurement_time(Duration::from_secs(5));
    for (name, same_key) in [("2_threads_same_key", true), ("2_threads_different_keys", false)] {
        let l = Arc::new(limiter());
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                let threads: Vec<_> = (0..2u64)
                    .map(|t| {
                        let l = l.clone();
                        // Different keys land in different shards (top bits differ).
                        let key = if same_key { 7 } else { t << 62 | 7 };
                        std::thread::spawn(move || {
                            for _ in 0..iters {
                                black_box(l.decide(key, 1));
                            }
                        })
                    })
                    .collect();
                for t in threads {
                    let _ = t.join();
                }
                start.elapsed()
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
