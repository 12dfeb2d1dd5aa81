//! The circuit breaker of an upstream (or of a route that configures its own).
//!
//! States: **closed** (requests flow; outcomes feed a sliding window) → **open** when, with at
//! least `min_calls` in the window, the failure or slow-call percentage reaches its threshold
//! (requests are refused at once with 503 + `Retry-After`; the upstream is not touched) →
//! **half-open** once `open_duration` passed (exactly `half_open_probes` requests are let
//! through) → **closed** when every probe succeeds, back to **open** on the first failed probe.
//!
//! Invariants: `admit` and `record` are lock-free (atomics only, a closed breaker costs one load);
//! time is passed in as ns, so the state machine is tested without a clock; a probe whose outcome
//! is never reported (the client vanished) cannot wedge the breaker half-open: after another
//! `open_duration` the probes are handed out again. Transition counters are plain atomics for
//! the metrics exporter.

use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};

use super::window::RollingWindow;

const CLOSED: u8 = 0;
const OPEN: u8 = 1;
const HALF_OPEN: u8 = 2;

/// Compiled breaker settings.
#[derive(Debug, Clone, PartialEq)]
pub struct BreakerConfig {
    /// Percent; 0 = off.
    pub failure_rate: u32,
    pub slow_call_ns: Option<u64>,
    pub slow_call_rate: u32,
    pub min_calls: u32,
    pub window_ns: u64,
    pub open_ns: u64,
    pub probes: u32,
}

impl BreakerConfig {
    pub fn from_config(c: &gatehouse_config::CircuitBreaker) -> Option<BreakerConfig> {
        c.enabled.then(|| BreakerConfig {
            failure_rate: c.failure_rate,
            slow_call_ns: c.slow_call_duration.map(|d| d.0.as_nanos() as u64),
            slow_call_rate: c.slow_call_rate,
            min_calls: c.min_calls.max(1),
            window_ns: c.window.0.as_nanos() as u64,
            open_ns: c.open_duration.0.as_nanos() as u64,
            probes: c.half_open_probes.max(1),
        })
    }
}

/// How a request was let through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    Closed,
    Probe,
}

/// The breaker's state for the admin API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    Open { remaining_ns: u64 },
    HalfOpen,
}

#[derive(Debug)]
pub struct CircuitBreaker {
    pub cfg: BreakerConfig,
    state: AtomicU8,
    /// Open: when half-open may start. Half-open: when unanswered probes are handed out again.
    until: AtomicU64,
    probes_issued: AtomicU32,
    probes_ok: AtomicU32,
    window: RollingWindow,
    opened: AtomicU64,
    half_opened: AtomicU64,
    closed: AtomicU64,
    rejected: AtomicU64,
}

impl CircuitBreaker {
    pub fn new(cfg: BreakerConfig) -> CircuitBreaker {
        CircuitBreaker {
            window: RollingWindow::new(cfg.window_ns),
            cfg,
            state: AtomicU8::new(CLOSED),
            until: AtomicU64::new(0),
            probes_issued: AtomicU32::new(0),
            probes_ok: AtomicU32::new(0),
            opened: AtomicU64::new(0),
            half_opened: AtomicU64::new(0),
            closed: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
        }
    }

    /// Lets a request through, or refuses it with the seconds to wait (`Retry-After`).
    pub fn admit(&self, now: u64) -> Result<Admit, u64> {
        match self.state.load(Ordering::Acquire) {
            CLOSED => Ok(Admit::Closed),
            OPEN => {
                let until = self.until.load(Ordering::Acquire);
                if now < until {
                    self.rejected.fetch_add(1, Ordering::Relaxed);
                    return Err(secs_ceil(until - now));
                }
                if self.state.compare_exchange(OPEN, HALF_OPEN, Ordering::AcqRel, Ordering::Acquire).is_ok() {
                    self.start_probing(now);
                    self.half_opened.fetch_add(1, Ordering::Relaxed);
                }
                self.probe(now)
            }
            _ => self.probe(now),
        }
    }

    fn start_probing(&self, now: u64) {
        self.probes_ok.store(0, Ordering::Relaxed);
        self.probes_issued.store(0, Ordering::Relaxed);
        self.until.store(now.saturating_add(self.cfg.open_ns), Ordering::Release);
    }

    fn probe(&self, now: u64) -> Result<Admit, u64> {
        if self.probes_issued.fetch_add(1, Ordering::AcqRel) < self.cfg.probes {
            return Ok(Admit::Probe);
        }
        // Probes are out; if their answers are overdue (lost), hand them out again.
        let until = self.until.load(Ordering::Acquire);
        if now >= until
            && self
                .until
                .compare_exchange(until, now.saturating_add(self.cfg.open_ns), Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            self.probes_ok.store(0, Ordering::Relaxed);
            self.probes_issued.store(1, Ordering::Release);
            return Ok(Admit::Probe);
        }
        self.rejected.fetch_add(1, Ordering::Relaxed);
        Err(1)
    }

    /// Reports the outcome of a request `admit` let through.
    pub fn record(&self, admit: Admit, failed: bool, slow: bool, now: u64) {
        match admit {
            Admit::Closed => {
                if self.state.load(Ordering::Relaxed) != CLOSED {
                    // Admitted before the circuit opened: its outcome is already accounted for.
                    return;
                }
                let c = self.window.add(now, failed, slow);
                if c.total < self.cfg.min_calls as f64 {
                    return;
                }
                let over = |n: f64, pct: u32| pct > 0 && n * 100.0 >= pct as f64 * c.total;
                let slow_trip = self.cfg.slow_call_ns.is_some() && over(c.slow, self.cfg.slow_call_rate);
                if over(c.failed, self.cfg.failure_rate) || slow_trip {
                    self.trip(CLOSED, now);
                }
            }
            Admit::Probe => {
                if self.state.load(Ordering::Acquire) != HALF_OPEN {
                    return;
                }
                if failed || slow {
                    self.trip(HALF_OPEN, now);
                } else if self.probes_ok.fetch_add(1, Ordering::AcqRel) + 1 >= self.cfg.probes
                    && self.state.compare_exchange(HALF_OPEN, CLOSED, Ordering::AcqRel, Ordering::Acquire).is_ok()
                {
                    self.window.reset();
                    self.closed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }

    fn trip(&self, from: u8, now: u64) {
        // `until` first: a reader that sees OPEN must see the new deadline. When another thread
        // tripped it at the same moment, the deadlines differ by nanoseconds.
        self.until.store(now.saturating_add(self.cfg.open_ns), Ordering::Release);
        if self.state.compare_exchange(from, OPEN, Ordering::AcqRel, Ordering::Acquire).is_ok() {
            self.window.reset();
            self.opened.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn state(&self, now: u64) -> BreakerState {
        match self.state.load(Ordering::Acquire) {
            CLOSED => BreakerState::Closed,
            OPEN => BreakerState::Open { remaining_ns: self.until.load(Ordering::Acquire).saturating_sub(now) },
            _ => BreakerState::HalfOpen,
        }
    }

    /// Closed → open transitions so far.
    pub fn opened_total(&self) -> u64 {
        self.opened.load(Ordering::Relaxed)
    }
    /// Open → half-open transitions so far.
    pub fn half_opened_total(&self) -> u64 {
        self.half_opened.load(Ordering::Relaxed)
    }
    /// Half-open → closed transitions so far.
    pub fn closed_total(&self) -> u64 {
        self.closed.load(Ordering::Relaxed)
    }
    /// Requests refused without touching the upstream.
    pub fn rejected_total(&self) -> u64 {
        self.rejected.load(Ordering::Relaxed)
    }
}

/// Whole seconds, rounded up, at least 1.
pub fn secs_ceil(ns: u64) -> u64 {
    ns.div_ceil(1_000_000_000).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;
    const S: u64 = 1_000 * MS;

    fn cfg() -> BreakerConfig {
        BreakerConfig {
            failure_rate: 50,
            slow_call_ns: Some(500 * MS),
            slow_call_rate: 80,
            min_calls: 10,
            window_ns: 10 * S,
            open_ns: 5 * S,
            probes: 2,
        }
    }

    #[test]
    fn opens_on_failure_rate_only_after_min_calls() {
        let b = CircuitBreaker::new(cfg());
        let t = 100 * S;
        for i in 0..9 {
            assert_eq!(b.admit(t + i), Ok(Admit::Closed));
            b.record(Admit::Closed, true, false, t + i);
        }
        // 9 failures, below min_calls: still closed.
        assert_eq!(b.state(t + 9), BreakerState::Closed);
        b.record(Admit::Closed, false, false, t + 10);
        // 9 of 10 failed: open, refusing with Retry-After = open duration.
        assert_eq!(b.admit(t + 11), Err(5));
        assert_eq!(b.opened_total(), 1);
        assert_eq!(b.admit(t + 4 * S + 500 * MS), Err(1));
        assert_eq!(b.rejected_total(), 2);
    }

    #[test]
    fn stays_closed_below_threshold() {
        let b = CircuitBreaker::new(cfg());
        for i in 0..100u64 {
            b.record(Admit::Closed, i % 3 == 0, false, 100 * S + i * MS);
        }
        assert_eq!(b.state(101 * S), BreakerState::Closed);
    }

    #[test]
    fn opens_on_slow_calls() {
        let b = CircuitBreaker::new(cfg());
        for i in 0..10 {
            b.record(Admit::Closed, false, true, 100 * S + i);
        }
        assert!(matches!(b.state(100 * S + 20), BreakerState::Open { .. }));
    }

    fn open(b: &CircuitBreaker, t: u64) {
        for i in 0..10 {
            b.record(Admit::Closed, true, false, t + i);
        }
        assert!(matches!(b.state(t + 10), BreakerState::Open { .. }));
    }

    #[test]
    fn half_open_probes_close_it() {
        let b = CircuitBreaker::new(cfg());
        let t = 100 * S;
        open(&b, t);
        let later = t + 6 * S;
        assert_eq!(b.admit(later), Ok(Admit::Probe));
        assert_eq!(b.admit(later), Ok(Admit::Probe));
        // Only `probes` requests pass while half-open.
        assert_eq!(b.admit(later), Err(1));
        assert_eq!(b.state(later), BreakerState::HalfOpen);
        b.record(Admit::Probe, false, false, later + MS);
        assert_eq!(b.state(later + MS), BreakerState::HalfOpen);
        b.record(Admit::Probe, false, false, later + 2 * MS);
        assert_eq!(b.state(later + 2 * MS), BreakerState::Closed);
        assert_eq!((b.opened_total(), b.half_opened_total(), b.closed_total()), (1, 1, 1));
        // Closing forgot the old failures: one new failure does not reopen it.
        b.record(Admit::Closed, true, false, later + 3 * MS);
        assert_eq!(b.admit(later + 4 * MS), Ok(Admit::Closed));
    }

    #[test]
    fn failed_probe_reopens() {
        let b = CircuitBreaker::new(cfg());
        let t = 100 * S;
        open(&b, t);
        let later = t + 6 * S;
        assert_eq!(b.admit(later), Ok(Admit::Probe));
        b.record(Admit::Probe, true, false, later + MS);
        assert_eq!(b.admit(later + 2 * MS), Err(5));
        assert_eq!(b.opened_total(), 2);
    }

    #[test]
    fn lost_probes_are_reissued() {
        let b = CircuitBreaker::new(cfg());
        let t = 100 * S;
        open(&b, t);
        let later = t + 6 * S;
        assert!(b.admit(later).is_ok() && b.admit(later).is_ok());
        assert_eq!(b.admit(later + S), Err(1));
        // Nobody reported; after another open_duration probes flow again.
        assert_eq!(b.admit(later + 5 * S), Ok(Admit::Probe));
    }

    #[test]
    fn stale_closed_outcomes_do_not_count_while_open() {
        let b = CircuitBreaker::new(cfg());
        open(&b, 100 * S);
        b.record(Admit::Closed, false, false, 100 * S + 20);
        assert!(matches!(b.state(100 * S + 30), BreakerState::Open { .. }));
    }
}
