//! A lock-free sliding-window counter of (requests, failures, slow) used by outlier detection,
//! the circuit breaker and the retry budget.
//!
//! Invariants: two buckets of one window width each; the estimate is the current bucket plus the
//! previous one weighted by how much of it still lies inside the window (the "sliding window
//! counter" approximation). Every operation is a few relaxed atomics; a bucket that rolls over
//! while another thread adds to it may lose that add (an approximation we accept rather than
//! take a lock per request). Time is passed in (`now` in ns), so the logic is testable without
//! a clock.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

#[derive(Debug, Default)]
struct Bucket {
    /// Window number (`now / width`) this bucket counts, `u64::MAX` when empty.
    epoch: AtomicU64,
    total: AtomicU32,
    failed: AtomicU32,
    slow: AtomicU32,
}

/// Counts over roughly the last `width` nanoseconds.
#[derive(Debug)]
pub struct RollingWindow {
    /// Window width in ns (changes only when a reload changes the setting).
    width: AtomicU64,
    buckets: [Bucket; 2],
}

/// An estimate of the counts within the window.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Counts {
    pub total: f64,
    pub failed: f64,
    pub slow: f64,
}

impl RollingWindow {
    pub fn new(width_ns: u64) -> RollingWindow {
        let w = RollingWindow { width: AtomicU64::new(width_ns.max(1)), buckets: Default::default() };
        w.reset();
        w
    }

    /// Changes the width (a reload changed the setting); forgets the counts when it differs.
    pub fn set_width(&self, width_ns: u64) {
        if self.width.swap(width_ns.max(1), Ordering::Relaxed) != width_ns.max(1) {
            self.reset();
        }
    }

    /// Forgets everything (a breaker closing, a target coming back).
    pub fn reset(&self) {
        for b in &self.buckets {
            b.epoch.store(u64::MAX, Ordering::Relaxed);
            b.total.store(0, Ordering::Relaxed);
            b.failed.store(0, Ordering::Relaxed);
            b.slow.store(0, Ordering::Relaxed);
        }
    }

    /// Adds one event and returns the counts including it.
    pub fn add(&self, now: u64, failed: bool, slow: bool) -> Counts {
        let e = now / self.width.load(Ordering::Relaxed);
        let b = &self.buckets[(e % 2) as usize];
        let seen = b.epoch.load(Ordering::Acquire);
        if seen != e && b.epoch.compare_exchange(seen, e, Ordering::AcqRel, Ordering::Acquire).is_ok() {
            b.total.store(0, Ordering::Relaxed);
            b.failed.store(0, Ordering::Relaxed);
            b.slow.store(0, Ordering::Relaxed);
        }
        b.total.fetch_add(1, Ordering::Relaxed);
        if failed {
            b.failed.fetch_add(1, Ordering::Relaxed);
        }
        if slow {
            b.slow.fetch_add(1, Ordering::Relaxed);
        }
        self.read(now)
    }

    /// The counts within the window ending at `now`.
    pub fn read(&self, now: u64) -> Counts {
        let width = self.width.load(Ordering::Relaxed);
        let e = now / width;
        let mut c = Counts::default();
        let cur = &self.buckets[(e % 2) as usize];
        if cur.epoch.load(Ordering::Acquire) == e {
            c.total += cur.total.load(Ordering::Relaxed) as f64;
            c.failed += cur.failed.load(Ordering::Relaxed) as f64;
            c.slow += cur.slow.load(Ordering::Relaxed) as f64;
        }
        let prev = &self.buckets[((e + 1) % 2) as usize];
        if e > 0 && prev.epoch.load(Ordering::Acquire) == e - 1 {
            // The part of the previous bucket still inside the window.
            let weight = 1.0 - (now % width) as f64 / width as f64;
            c.total += prev.total.load(Ordering::Relaxed) as f64 * weight;
            c.failed += prev.failed.load(Ordering::Relaxed) as f64 * weight;
            c.slow += prev.slow.load(Ordering::Relaxed) as f64 * weight;
        }
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    #[test]
    fn counts_slide_out() {
        let w = RollingWindow::new(10 * S);
        for i in 0..10 {
            w.add(100 * S + i, i % 2 == 0, false);
        }
        let c = w.read(100 * S + 10);
        assert_eq!((c.total, c.failed), (10.0, 5.0));
        // Half a window later, half of the previous bucket still counts.
        let c = w.read(115 * S);
        assert!((c.total - 5.0).abs() < 0.01, "{c:?}");
        // Two windows later nothing is left.
        assert_eq!(w.read(121 * S).total, 0.0);
        w.add(130 * S, true, true);
        let c = w.read(130 * S);
        assert_eq!((c.total, c.failed, c.slow), (1.0, 1.0, 1.0));
        w.reset();
        assert_eq!(w.read(130 * S).total, 0.0);
    }
}
