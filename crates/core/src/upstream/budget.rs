//! The retry budget of an upstream: retries may add at most `percent` % of the requests sent to
//! it over the last 10 seconds, plus `min_per_second` × 10 so that a quiet upstream can still be
//! retried (Finagle's and Linkerd's model). On by default: during an outage every request fails,
//! and without a budget N attempts per request multiply the load on a service that is already
//! down.
//!
//! Invariants: lock-free (one sliding window of atomics); time is passed in as ns; concurrent
//! callers may overshoot the budget by at most one retry each (the check and the count are two
//! atomics, not a lock). Counters for the metrics exporter are plain atomics.

use std::sync::atomic::{AtomicU64, Ordering};

use super::window::RollingWindow;

/// The budget's window.
pub const BUDGET_WINDOW_NS: u64 = 10_000_000_000;

#[derive(Debug)]
pub struct RetryBudget {
    percent: u32,
    min_per_window: u32,
    /// `total` counts first attempts, `failed` counts retries (the window's two counters).
    window: RollingWindow,
    retries: AtomicU64,
    exhausted: AtomicU64,
}

impl RetryBudget {
    pub fn new(percent: u32, min_per_second: u32) -> RetryBudget {
        RetryBudget {
            percent,
            min_per_window: min_per_second.saturating_mul((BUDGET_WINDOW_NS / 1_000_000_000) as u32),
            window: RollingWindow::new(BUDGET_WINDOW_NS),
            retries: AtomicU64::new(0),
            exhausted: AtomicU64::new(0),
        }
    }

    /// Counts a request's first attempt (the base the budget is a share of).
    pub fn on_request(&self, now: u64) {
        self.window.add(now, false, false);
    }

    /// Whether one more retry fits in the budget; counts it when it does.
    pub fn try_retry(&self, now: u64) -> bool {
        let c = self.window.read(now);
        let requests = c.total - c.failed;
        let allowed = requests * self.percent as f64 / 100.0 + self.min_per_window as f64;
        if c.failed + 1.0 > allowed {
            self.exhausted.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        // A retry is recorded as a "failed" event, so `total - failed` stays the request count.
        self.window.add(now, true, false);
        self.retries.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// Retries (and hedged attempts) allowed so far.
    pub fn retries_total(&self) -> u64 {
        self.retries.load(Ordering::Relaxed)
    }

    /// Retries refused because the budget was spent.
    pub fn exhausted_total(&self) -> u64 {
        self.exhausted.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    #[test]
    fn caps_retries_at_a_share_of_requests_plus_minimum() {
        let b = RetryBudget::new(20, 1);
        let now = 100 * S;
        // The minimum alone: 10 retries per 10 s window with no requests.
        let free = (0..50).filter(|_| b.try_retry(now)).count();
        assert_eq!(free, 10);
        for _ in 0..100 {
            b.on_request(now);
        }
        // 20 % of 100 more.
        let more = (0..50).filter(|_| b.try_retry(now)).count();
        assert_eq!(more, 20);
        assert_eq!(b.retries_total(), 30);
        assert_eq!(b.exhausted_total(), 70);
    }

    #[test]
    fn budget_refills_as_the_window_slides() {
        let b = RetryBudget::new(20, 0);
        for _ in 0..50 {
            b.on_request(100 * S);
        }
        assert_eq!((0..20).filter(|_| b.try_retry(100 * S)).count(), 10);
        // Two windows later the old retries are forgotten, and so are the old requests.
        assert!(!b.try_retry(125 * S));
        for _ in 0..50 {
            b.on_request(125 * S);
        }
        assert_eq!((0..20).filter(|_| b.try_retry(125 * S)).count(), 10);
    }
}
