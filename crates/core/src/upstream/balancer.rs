//! Load balancers: smooth weighted round robin, least-request (P2C), peak-EWMA (P2C), and
//! consistent hashing on a ketama ring.
//!
//! Invariants: picking is lock-free (atomics and immutable tables built at compile time);
//! unhealthy targets are skipped; when every target is unhealthy, `pick` returns `None`, which the
//! proxy turns into 503 `no_healthy_upstream`.

use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::Target;

/// What consistent hashing hashes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HashKey {
    Header(String),
    Cookie(String),
    ClientIp,
    Path,
}

#[derive(Debug)]
pub enum Balancer {
    RoundRobin {
        schedule: Vec<u32>,
        next: AtomicUsize,
    },
    /// `weights`: cumulative weights for weighted candidate sampling, `None` when all are equal.
    LeastRequest {
        weights: Option<Vec<u64>>,
    },
    PeakEwma {
        weights: Option<Vec<u64>>,
    },
    ConsistentHash {
        key: HashKey,
        ring: Vec<(u64, u32)>,
        fallback: AtomicUsize,
    },
}

const RING_POINTS_PER_WEIGHT: u32 = 160;
const MAX_SCHEDULE: u64 = 1 << 16;

impl Balancer {
    pub fn round_robin(weights: &[u32]) -> Balancer {
        Balancer::RoundRobin { schedule: smooth_wrr_schedule(weights), next: AtomicUsize::new(0) }
    }

    /// Cumulative weights when they differ (P2C then samples candidates in proportion to weight).
    pub fn p2c_weights(weights: &[u32]) -> Option<Vec<u64>> {
        if weights.windows(2).all(|w| w[0] == w[1]) {
            return None;
        }
        let mut acc = 0u64;
        Some(
            weights
                .iter()
                .map(|&w| {
                    acc += w.max(1) as u64;
                    acc
                })
                .collect(),
        )
    }

    /// The config name of this balancer.
    pub fn name(&self) -> &'static str {
        match self {
            Balancer::RoundRobin { .. } => "round_robin",
            Balancer::LeastRequest { .. } => "least_request",
            Balancer::PeakEwma { .. } => "peak_ewma",
            Balancer::ConsistentHash { .. } => "consistent_hash",
        }
    }

    pub fn consistent_hash(key: HashKey, targets: &[(String, u32)]) -> Balancer {
        let mut ring = Vec::new();
        for (i, (url, w)) in targets.iter().enumerate() {
            let points = RING_POINTS_PER_WEIGHT.saturating_mul((*w).min(100));
            for p in 0..points {
                ring.push((hash64(format!("{url}#{p}").as_bytes()), i as u32));
            }
        }
        ring.sort_unstable();
        Balancer::ConsistentHash { key, ring, fallback: AtomicUsize::new(0) }
    }

    pub fn hash_key(&self) -> Option<&HashKey> {
        match self {
            Balancer::ConsistentHash { key, .. } => Some(key),
            _ => None,
        }
    }

    /// Picks a healthy target index. `key` is the consistent-hash key, if this balancer uses one.
    pub fn pick(&self, targets: &[Target], key: Option<&[u8]>) -> Option<usize> {
        let n = targets.len();
        if n == 0 {
            return None;
        }
        if n == 1 {
            return targets[0].state.is_healthy().then_some(0);
        }
        match self {
            Balancer::RoundRobin { schedule, next } => {
                let start = next.fetch_add(1, Ordering::Relaxed);
                (0..schedule.len())
                    .map(|k| schedule[(start + k) % schedule.len()] as usize)
                    .find(|&i| targets[i].state.is_healthy())
            }
            // Weights shape which candidates are drawn, load decides between the two: with equal
            // load the first draw wins, so idle targets get traffic in proportion to weight.
            Balancer::LeastRequest { weights } => {
                p2c(targets, weights.as_deref(), 0, |t| t.state.inflight.load(Ordering::Relaxed) as u64)
            }
            Balancer::PeakEwma { weights } => {
                let now = super::now_ns();
                // The second draw must cost less than half of the first to win: latency noise between
                // similar targets must not herd all traffic onto one of them.
                p2c(targets, weights.as_deref(), 50, |t| {
                    let lat = super::decayed_ewma(&t.state, now).max(1);
                    let load = t.state.inflight.load(Ordering::Relaxed) as u64 + 1;
                    lat.saturating_mul(load)
                })
            }
            Balancer::ConsistentHash { ring, fallback, .. } => match key {
                Some(k) if !ring.is_empty() => {
                    let h = hash64(k);
                    let start = ring.partition_point(|&(p, _)| p < h);
                    (0..ring.len())
                        .map(|j| ring[(start + j) % ring.len()].1 as usize)
                        .find(|&i| targets[i].state.is_healthy())
                }
                _ => {
                    // No key on this request: spread it round robin.
                    let start = fallback.fetch_add(1, Ordering::Relaxed);
                    (0..n).map(|k| (start + k) % n).find(|&i| targets[i].state.is_healthy())
                }
            },
        }
    }
}

/// Power of two random choices over healthy targets (drawn in proportion to `weights` when
/// given); the second draw wins only if it is more than `margin_pct` % cheaper than the first.
fn p2c(targets: &[Target], weights: Option<&[u64]>, margin_pct: u64, cost: impl Fn(&Target) -> u64) -> Option<usize> {
    let n = targets.len();
    let draw = || match weights {
        Some(cum) => {
            let total = cum.last().copied().unwrap_or(1).max(1);
            let r = rand_u64() % total;
            cum.partition_point(|&c| c <= r).min(n - 1)
        }
        None => rand_below(n),
    };
    let pick_healthy = || {
        for _ in 0..4 {
            let i = draw();
            if targets[i].state.is_healthy() {
                return Some(i);
            }
        }
        // Many unhealthy: scan from a random start.
        let s = rand_below(n);
        (0..n).map(|k| (s + k) % n).find(|&i| targets[i].state.is_healthy())
    };
    let a = pick_healthy()?;
    let mut b = pick_healthy()?;
    if b == a {
        // Try once more for a distinct second choice.
        b = (a + 1 + rand_below(n - 1)) % n;
        if !targets[b].state.is_healthy() {
            return Some(a);
        }
    }
    let (ca, cb) = (cost(&targets[a]) as u128, cost(&targets[b]) as u128);
    Some(if cb * 100 < ca * (100 - margin_pct as u128) { b } else { a })
}

/// nginx's smooth weighted round robin, unrolled once into a schedule.
pub fn smooth_wrr_schedule(weights: &[u32]) -> Vec<u32> {
    let mut w: Vec<u64> = weights.iter().map(|&x| x.max(1) as u64).collect();
    let g = w.iter().copied().fold(0, gcd);
    if g > 1 {
        w.iter_mut().for_each(|x| *x /= g);
    }
    let total: u64 = w.iter().sum();
    if total > MAX_SCHEDULE {
        let scale = total as f64 / MAX_SCHEDULE as f64;
        w.iter_mut().for_each(|x| *x = ((*x as f64 / scale).round() as u64).max(1));
    }
    let total: i64 = w.iter().sum::<u64>() as i64;
    let mut current = vec![0i64; w.len()];
    let mut out = Vec::with_capacity(total as usize);
    for _ in 0..total {
        let mut best = 0;
        for i in 0..w.len() {
            current[i] += w[i] as i64;
            if current[i] > current[best] {
                best = i;
            }
        }
        current[best] -= total;
        out.push(best as u32);
    }
    out
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// FNV-1a with a murmur3 finaliser: stable across processes and versions (ring positions must
/// not move between gateway replicas or releases).
pub fn hash64(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in data {
        h ^= b as u64;
        h = h.wrapping_mul(0x100_0000_01b3);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

thread_local! {
    static RNG: Cell<u64> = Cell::new({
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(1);
        let addr = &t as *const u64 as u64;
        (t ^ addr.rotate_left(32)) | 1
    });
}

/// A fast non-cryptographic random number (xorshift64*), per thread.
pub fn rand_u64() -> u64 {
    RNG.with(|r| {
        let mut x = r.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        r.set(x);
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    })
}

fn rand_below(n: usize) -> usize {
    (((rand_u64() >> 32) * n as u64) >> 32) as usize
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::{Addr, TargetState};
    use bytes::Bytes;
    use std::sync::Arc;

    fn targets(weights: &[u32]) -> Vec<Target> {
        weights
            .iter()
            .enumerate()
            .map(|(i, &w)| Target {
                url: format!("http://10.0.0.{i}:80"),
                addr: Addr::Dns(String::new()),
                authority: Bytes::new(),
                weight: w,
                state: Arc::new(TargetState::new(i as u64)),
                tls: None,
                http2: false,
            })
            .collect()
    }

    #[test]
    fn swrr_is_smooth_and_exact() {
        let s = smooth_wrr_schedule(&[5, 1, 1]);
        assert_eq!(s.len(), 7);
        assert_eq!(s.iter().filter(|&&i| i == 0).count(), 5);
        // Smooth: the heavy target is never picked 5 times in a row.
        assert_eq!(s, vec![0, 0, 1, 0, 2, 0, 0]);
    }

    #[test]
    fn rr_skips_unhealthy_and_none_when_all_down() {
        let t = targets(&[1, 1, 1]);
        let b = Balancer::round_robin(&[1, 1, 1]);
        t[1].state.set_healthy(false);
        for _ in 0..10 {
            assert_ne!(b.pick(&t, None), Some(1));
        }
        t.iter().for_each(|x| x.state.set_healthy(false));
        assert_eq!(b.pick(&t, None), None);
    }

    #[test]
    fn p2c_prefers_less_loaded() {
        let t = targets(&[1, 1]);
        t[0].state.inflight.store(50, Ordering::Relaxed);
        let b = Balancer::LeastRequest { weights: None };
        let ones = (0..1000).filter(|_| b.pick(&t, None) == Some(1)).count();
        assert!(ones > 700, "{ones}");
    }

    #[test]
    fn p2c_honours_weights_when_idle() {
        let t = targets(&[3, 1]);
        let b = Balancer::LeastRequest { weights: Balancer::p2c_weights(&[3, 1]) };
        let heavy = (0..4000).filter(|_| b.pick(&t, None) == Some(0)).count();
        assert!((2700..3300).contains(&heavy), "{heavy}");
    }

    #[test]
    fn peak_ewma_weights_with_similar_latency_and_steers_from_slow() {
        let t = targets(&[3, 1]);
        let now = crate::upstream::now_ns();
        for x in &t {
            x.state.ewma_ns.store(1_000_000, Ordering::Relaxed);
            x.state.ewma_stamp_ns.store(now, Ordering::Relaxed);
        }
        // Within 2x of each other: the weighted draw decides.
        t[1].state.ewma_ns.store(1_500_000, Ordering::Relaxed);
        let b = Balancer::PeakEwma { weights: Balancer::p2c_weights(&[3, 1]) };
        let heavy = (0..4000).filter(|_| b.pick(&t, None) == Some(0)).count();
        assert!((2700..3300).contains(&heavy), "{heavy}");
        // The heavy target is 10x slower: nearly everything goes to the light one.
        t[0].state.ewma_ns.store(15_000_000, Ordering::Relaxed);
        let heavy = (0..4000).filter(|_| b.pick(&t, None) == Some(0)).count();
        assert!(heavy < 400, "{heavy}");
    }

    #[test]
    fn ring_moves_about_one_nth() {
        let urls: Vec<(String, u32)> = (0..5).map(|i| (format!("http://10.0.0.{i}:80"), 1)).collect();
        let t = targets(&[1; 5]);
        let b = Balancer::consistent_hash(HashKey::Path, &urls);
        let before: Vec<_> = (0..10_000).map(|k| b.pick(&t, Some(format!("key-{k}").as_bytes()))).collect();
        t[2].state.set_healthy(false);
        let after: Vec<_> = (0..10_000).map(|k| b.pick(&t, Some(format!("key-{k}").as_bytes()))).collect();
        let moved = before.iter().zip(&after).filter(|(a, b)| a != b).count();
        // Only keys that were on target 2 move: about 1/5.
        assert!(before.iter().zip(&after).all(|(a, b)| a == b || *a == Some(2)));
        assert!((1500..2500).contains(&moved), "{moved}");
    }
}
