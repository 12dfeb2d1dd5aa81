//! What a reload of a large config costs (issue 7: "10,000 routes compile and swap in ≤ 100 ms").
//!
//! Phases, measured separately on the same 10,000-route config (a third each prefix, exact and
//! `{param}` template routes, over 20 upstreams): `load` = YAML parse + typed deserialisation +
//! validation (what `gatehouse validate` does), `compile` = snapshot compilation (route table,
//! policies, upstreams; the registry keeps state as a reload does), `swap` = the `ArcSwap` store
//! that makes it live.

use std::sync::Arc;

use arc_swap::ArcSwap;
use criterion::{criterion_group, criterion_main, Criterion};
use gatehouse_core::policy::Limiters;
use gatehouse_core::snapshot::compile;
use gatehouse_core::upstream::Registry;
use std::hint::black_box;

pub fn config_text(routes: usize) -> String {
    let mut s = String::from("listeners:\n  - address: 127.0.0.1:0\nupstreams:\n");
    for u in 0..20 {
        s.push_str(&format!("  - name: u{u}\n    targets:\n      - url: http://127.0.0.1:{}\n", 20000 + u));
    }
    s.push_str("routes:\n");
    for i in 0..routes {
        let m = match i % 3 {
            0 => format!("prefix: /svc{i}"),
            1 => format!("exact: /exact/{i}"),
            _ => format!("template: \"/t{i}/{{id}}\""),
        };
        s.push_str(&format!("  - name: r{i}\n    upstream: u{}\n    match:\n      path:\n        {m}\n", i % 20));
    }
    s
}

fn bench(c: &mut Criterion) {
    let text = config_text(10_000);
    let config = gatehouse_config::load_str(&text, &|_| None).expect("valid");
    let (registry, limiters) = (Registry::new(), Limiters::new());
    let mut g = c.benchmark_group("reload_10k_routes");
    g.sample_size(10);
    g.bench_function("load_and_validate", |b| {
        b.iter(|| black_box(gatehouse_config::load_str(black_box(&text), &|_| None).is_ok()))
    });
    g.bench_function("compile", |b| {
        b.iter(|| black_box(compile(config.clone(), &registry, &limiters).map(|s| s.routes.len()).ok()))
    });
    let live = ArcSwap::from_pointee(compile(config.clone(), &registry, &limiters).expect("compiles"));
    g.bench_function("compile_and_swap", |b| {
        b.iter(|| {
            let s = compile(config.clone(), &registry, &limiters).expect("compiles");
            live.store(Arc::new(s));
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
