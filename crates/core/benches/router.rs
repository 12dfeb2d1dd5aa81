//! Route matching cost at 10, 1k and 10k routes (issue: "Criterion bench for route matching").
//!
//! The table mixes what real configs have: exact paths, `{param}` templates and prefixes, spread
//! over exact hosts, a wildcard host and host-less routes, plus a few regex routes. Each iteration
//! looks up a rotating set of requests that hit different kinds of routes (and one miss).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use gatehouse_core::http1::Headers;
use gatehouse_core::router::{Lookup, PathSpec, RequestView, RouteSpec, RouteTable};
use std::hint::black_box;

fn specs(n: usize) -> Vec<RouteSpec> {
    let mut v = Vec::with_capacity(n);
    for i in 0..n {
        let host = match i % 4 {
            0 => vec![format!("svc{}.example.com", i % 50)],
            1 => vec!["*.wild.example.com".to_string()],
            _ => vec![],
        };
        let path = match i % 10 {
            0..=3 => PathSpec::Exact(format!("/api/v1/service{i}/items")),
            4..=6 => PathSpec::Template(format!("/api/v2/service{i}/items/{{id}}")),
            7 | 8 => PathSpec::Prefix(format!("/static/service{i}")),
            _ if i < 50 => PathSpec::Regex(format!("/re/service{i}/[0-9]+")),
            _ => PathSpec::Prefix(format!("/other/service{i}")),
        };
        let methods = if i % 3 == 0 { vec!["GET".into(), "HEAD".into()] } else { vec![] };
        v.push(RouteSpec { hosts: host, path, methods, headers: vec![], query: vec![] });
    }
    v
}

fn requests(n: usize) -> Vec<(String, String)> {
    let last = n - 1;
    let pick = |k: usize| (last * k) / 7;
    let mut r = Vec::new();
    for k in 0..7 {
        let i = pick(k);
        let path = match i % 10 {
            0..=3 => format!("/api/v1/service{i}/items"),
            4..=6 => format!("/api/v2/service{i}/items/42"),
            7 | 8 => format!("/static/service{i}/css/site.css"),
            _ if i < 50 => format!("/re/service{i}/123"),
            _ => format!("/other/service{i}/x"),
        };
        let host = match i % 4 {
            0 => format!("svc{}.example.com", i % 50),
            1 => "a.wild.example.com".to_string(),
            _ => "unknown.example.org".to_string(),
        };
        r.push((host, path));
    }
    r.push(("nohost.example.org".into(), "/does/not/exist".into()));
    r
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("route_lookup");
    let headers = Headers::new();
    for &n in &[10usize, 1_000, 10_000] {
        let table = RouteTable::build(specs(n)).expect("routes build");
        let reqs = requests(n);
        // Sanity: the table really routes these (all but the final miss).
        let hits = reqs
            .iter()
            .filter(|(h, p)| {
                matches!(
                    table.lookup(&RequestView { host: h, path: p, method: b"GET", headers: &headers, query: None }),
                    Lookup::Found { .. }
                )
            })
            .count();
        assert!(hits >= reqs.len() - 1, "only {hits} of {} requests routed at n={n}", reqs.len());
        g.throughput(Throughput::Elements(reqs.len() as u64));
        g.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter(|| {
                for (h, p) in &reqs {
                    black_box(table.lookup(&RequestView {
                        host: black_box(h),
                        path: black_box(p),
                        method: b"GET",
                        headers: &headers,
                        query: None,
                    }));
                }
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
