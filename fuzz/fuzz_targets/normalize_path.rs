//! Request-target normalisation (`normalize::normalize_target`, which applies the config crate's
//! `path::normalize_path`), the fast path that skips it, and routing on the result.
//!
//! The input is a request target (`/a/b?x=1`); how it is respelled below is derived from a hash
//! of the input.
//!
//! Properties:
//! - nothing panics (`normalize_target`, `normalize_path`, `is_normal_path`, the router);
//! - the fast path and the normaliser never disagree: a path `is_normal_path` accepts
//!   normalises to itself (the pipeline routes by the one or the other);
//! - normalising is idempotent, and its output is a path the config accepts as a matcher;
//! - differential: the target respelled (unreserved bytes percent-encoded with either hex case,
//!   hex digits of escapes in the other case, `./`, `x/../` and `%2E%2E` detours, doubled
//!   slashes) normalises to the same result (or is refused too), and routes to the same route
//!   through a real `Snapshot` built from a fixed config, for several hosts and methods;
//! - the route table's answer agrees with `explain`, which evaluates each route on its own.

#![no_main]

use gatehouse_core::normalize::{is_normal_path, normalize_target};
use gatehouse_core::router::{Lookup, RequestView, Verdict};
use gatehouse_fuzz::{router_snapshot, routing_target};
use libfuzzer_sys::fuzz_target;

/// xorshift64 seeded from the input: the respelling choices.
struct Rng(u64);

impl Rng {
    fn new(data: &[u8]) -> Rng {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for &b in data {
            h = (h ^ u64::from(b)).wrapping_mul(0x1000_0000_01b3);
        }
        Rng(h | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn one_in(&mut self, n: u64) -> bool {
        self.next().is_multiple_of(n)
    }
}

fn unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn push_escape(out: &mut Vec<u8>, b: u8, lower: bool) {
    let hex = if lower { b"0123456789abcdef" } else { b"0123456789ABCDEF" };
    out.extend_from_slice(&[b'%', hex[usize::from(b >> 4)], hex[usize::from(b & 0xf)]]);
}

/// The same path written differently; the query (after `?`) is kept as is. Escapes are copied
/// as units (only their hex case may change), so the decoded bytes never change.
fn respell(target: &[u8], rng: &mut Rng) -> Vec<u8> {
    let (path, query) = match target.iter().position(|&b| b == b'?') {
        Some(q) => (&target[..q], Some(&target[q..])),
        None => (target, None),
    };
    let mut out = Vec::with_capacity(path.len() * 2);
    let mut i = 0;
    while i < path.len() {
        let b = path[i];
        if b == b'/' {
            out.push(b'/');
            if rng.one_in(4) {
                out.push(b'/');
            }
            // A detour that resolves to nothing, before whatever segment follows.
            match rng.next() % 8 {
                0 => out.extend_from_slice(b"./"),
                1 => out.extend_from_slice(b"zz/../"),
                2 => out.extend_from_slice(b"%2e/"),
                3 => out.extend_from_slice(b"q%7A/%2E%2e/"),
                _ => {}
            }
            i += 1;
        } else if b == b'%' && i + 2 < path.len() && path[i + 1].is_ascii_hexdigit() && path[i + 2].is_ascii_hexdigit()
        {
            out.push(b'%');
            for &h in &path[i + 1..i + 3] {
                out.push(if rng.one_in(2) { h.to_ascii_lowercase() } else { h.to_ascii_uppercase() });
            }
            i += 3;
        } else if unreserved(b) && rng.one_in(3) {
            push_escape(&mut out, b, rng.one_in(2));
            i += 1;
        } else {
            out.push(b);
            i += 1;
        }
    }
    if let Some(q) = query {
        out.extend_from_slice(q);
    }
    out
}

const HOSTS: &[&str] = &["localhost", "api.example.com", "a.b.example.com", "example.com", "xexample.com"];
const METHODS: &[&str] = &["GET", "POST", "HEAD", "DELETE"];

/// The route table's answer; with `explain`, also checked against each route evaluated on its
/// own (slow: it builds a matcher per route, so it runs once per input).
fn route(path: &str, query: Option<&str>, host: &str, method: &str, explain: bool) -> Lookup {
    let snap = router_snapshot();
    let headers = gatehouse_core::http1::Headers::new();
    let view = RequestView { host, path, method: method.as_bytes(), headers: &headers, query };
    if !explain {
        return snap.router.lookup(&view);
    }
    let (lookup, verdicts) = snap.router.explain(&view);
    assert_eq!(lookup, snap.router.lookup(&view));
    let with = |v: &Verdict| verdicts.iter().enumerate().filter(|(_, x)| *x == v).map(|(i, _)| i).collect::<Vec<_>>();
    let (chosen, shadowed, method_only) = (with(&Verdict::Chosen), with(&Verdict::Shadowed), with(&Verdict::Method));
    match &lookup {
        Lookup::Found { route, .. } => assert_eq!(chosen, vec![*route], "explain disagrees: {path} {host} {method}"),
        Lookup::NotFound => assert!(
            chosen.is_empty() && shadowed.is_empty() && method_only.is_empty(),
            "table: not found; explain: {verdicts:?} for {path} {host} {method}"
        ),
        Lookup::MethodNotAllowed { allow } => {
            assert!(chosen.is_empty() && shadowed.is_empty(), "table: 405; explain: {verdicts:?} for {path}");
            let mut expected: Vec<String> =
                method_only.iter().flat_map(|&i| snap.router.specs()[i].methods.iter().cloned()).collect();
            expected.sort();
            expected.dedup();
            assert_eq!(allow, &expected, "405 Allow differs from explain for {path} {host} {method}");
        }
    }
    lookup
}

fuzz_target!(|data: &[u8]| {
    let _ = is_normal_path(data);
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = gatehouse_config::path::normalize_path(s);
    }
    let normal = normalize_target(data);
    if data.first() != Some(&b'/') {
        assert!(normal.is_err());
        return;
    }
    // Fast path vs normaliser.
    let routed = routing_target(data);
    match (&routed, &normal) {
        (Ok((p, q)), Ok(t)) => assert_eq!((p, q), (&t.path, &t.query), "fast path and normaliser disagree"),
        (Err(_), Err(_)) => {}
        (a, b) => panic!("fast path and normaliser disagree: {a:?} vs {b:?}"),
    }
    let path_end = data.iter().position(|&b| b == b'?').unwrap_or(data.len());
    if is_normal_path(&data[..path_end]) {
        let p = std::str::from_utf8(&data[..path_end]).expect("the fast path accepts ASCII only");
        match gatehouse_config::path::normalize_path(p) {
            Ok(n) => assert_eq!(n, p, "fast path accepted a non-normal path"),
            Err(e) => panic!("a path the fast path accepts is refused by the normaliser: {e}"),
        }
    }

    let mut rng = Rng::new(data);
    // The raw target respelled: the same verdict.
    let again = respell(data, &mut rng);
    match (&normal, normalize_target(&again)) {
        (Ok(a), Ok(b)) => {
            assert_eq!(a, &b, "{:?} respelled as {:?}", String::from_utf8_lossy(data), String::from_utf8_lossy(&again))
        }
        (Err(_), Err(_)) => {}
        (a, b) => panic!(
            "{:?} gave {a:?} but its respelling {:?} gave {b:?}",
            String::from_utf8_lossy(data),
            String::from_utf8_lossy(&again)
        ),
    }
    let Ok(t) = normal else { return };

    // Idempotent, and a valid config matcher.
    assert_eq!(gatehouse_config::path::normalize_path(&t.path).as_deref(), Ok(t.path.as_str()), "not idempotent");
    if let Err(e) = gatehouse_config::path::check_config_path(&t.path) {
        panic!("normal form {:?} refused as a config path: {e}", t.path);
    }

    // The normal form respelled: same target, same route.
    let mut full = t.path.clone().into_bytes();
    if let Some(q) = &t.query {
        full.push(b'?');
        full.extend_from_slice(q.as_bytes());
    }
    let spelled = respell(&full, &mut rng);
    let (p2, q2) = routing_target(&spelled)
        .unwrap_or_else(|e| panic!("respelling {:?} refused: {e}", String::from_utf8_lossy(&spelled)));
    assert_eq!((&p2, &q2), (&t.path, &t.query), "respelling {:?}", String::from_utf8_lossy(&spelled));
    let (p0, q0) = routed.expect("checked above");
    let host = HOSTS[(rng.next() % HOSTS.len() as u64) as usize];
    let method = METHODS[(rng.next() % METHODS.len() as u64) as usize];
    let a = route(&p0, q0.as_deref(), host, method, true);
    let b = route(&p2, q2.as_deref(), host, method, false);
    assert_eq!(
        a,
        b,
        "{:?} and {:?} route differently",
        String::from_utf8_lossy(data),
        String::from_utf8_lossy(&spelled)
    );
});
