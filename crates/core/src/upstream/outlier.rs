//! Passive health (outlier detection): real requests' outcomes eject targets that keep failing.
//!
//! A failure is a 5xx answer, a refused or timed-out connection, a connection that broke before
//! the response head, or an invalid response. A target is ejected when `consecutive_failures`
//! happen in a row, or when, with at least `min_requests` within `window`, its failure
//! percentage reaches `failure_rate`. The n-th ejection in a row lasts n × `base_ejection` (at
//! most `max_ejection`); a target that stayed in rotation for `max_ejection` starts again at 1.
//! At most `max_ejected_percent` of an upstream's targets (rounded down) are ejected at once, so
//! an upstream-wide outage never empties the balancer through ejection alone (the circuit
//! breaker handles that case).
//!
//! Invariants: state lives in the target's `TargetState` (kept across reloads); recording is
//! lock-free; an ejected target returns by itself: `is_ejected` compares the deadline with the
//! clock and clears it, no task is needed. Active health checks are independent: a target is in
//! rotation only when active checks (if any) say healthy *and* it is not ejected; an active check
//! that brings a target back also ends its ejection.

use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};

use super::window::RollingWindow;
use super::Target;

/// Compiled outlier-detection settings (absent when disabled).
#[derive(Debug, Clone, PartialEq)]
pub struct OutlierConfig {
    pub consecutive: u32,
    pub failure_rate: u32,
    pub min_requests: u32,
    pub window_ns: u64,
    pub base_ns: u64,
    pub max_ns: u64,
    pub max_ejected_percent: u32,
}

impl OutlierConfig {
    pub fn from_config(c: &gatehouse_config::OutlierDetection) -> Option<OutlierConfig> {
        (c.enabled && (c.consecutive_failures > 0 || c.failure_rate > 0)).then(|| OutlierConfig {
            consecutive: c.consecutive_failures,
            failure_rate: c.failure_rate,
            min_requests: c.min_requests.max(1),
            window_ns: c.window.0.as_nanos() as u64,
            base_ns: c.base_ejection.0.as_nanos() as u64,
            max_ns: c.max_ejection.0.as_nanos() as u64,
            max_ejected_percent: c.max_ejected_percent,
        })
    }
}

/// Why a target was ejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EjectReason {
    ConsecutiveFailures,
    FailureRate,
}

impl EjectReason {
    pub fn as_str(self) -> &'static str {
        match self {
            EjectReason::ConsecutiveFailures => "consecutive_failures",
            EjectReason::FailureRate => "failure_rate",
        }
    }
}

/// One target's passive-health state.
#[derive(Debug)]
pub struct OutlierState {
    consecutive: AtomicU32,
    window: RollingWindow,
    /// 0 = in rotation; otherwise the clock value (ns) at which the ejection ends.
    ejected_until: AtomicU64,
    /// When the last ejection ended or will end (to reset the multiplier after a calm period).
    last_until: AtomicU64,
    /// Ejections in a row (the multiplier of `base_ejection`).
    streak: AtomicU32,
    reason: AtomicU8,
    ejections: AtomicU64,
}

impl Default for OutlierState {
    fn default() -> Self {
        OutlierState {
            consecutive: AtomicU32::new(0),
            // Set to the upstream's `window` when a snapshot is compiled (`set_window`).
            window: RollingWindow::new(10_000_000_000),
            ejected_until: AtomicU64::new(0),
            last_until: AtomicU64::new(0),
            streak: AtomicU32::new(0),
            reason: AtomicU8::new(0),
            ejections: AtomicU64::new(0),
        }
    }
}

impl OutlierState {
    /// Whether the target is ejected at `now`; clears an expired ejection.
    pub fn is_ejected(&self, now: u64) -> bool {
        let until = self.ejected_until.load(Ordering::Acquire);
        if until == 0 {
            return false;
        }
        if now < until {
            return true;
        }
        if self.ejected_until.compare_exchange(until, 0, Ordering::AcqRel, Ordering::Relaxed).is_ok() {
            self.consecutive.store(0, Ordering::Relaxed);
        }
        false
    }

    /// The raw ejection deadline (0 = none), for the cheap check on the balancer's path.
    pub fn ejected_until(&self) -> u64 {
        self.ejected_until.load(Ordering::Relaxed)
    }

    /// Applies the upstream's failure-rate window (at compile time).
    pub fn set_window(&self, width_ns: u64) {
        self.window.set_width(width_ns);
    }

    /// Ends an ejection now (an active health check brought the target back).
    pub fn uneject(&self) {
        self.ejected_until.store(0, Ordering::Release);
        self.consecutive.store(0, Ordering::Relaxed);
    }

    pub fn reason(&self) -> Option<EjectReason> {
        match self.reason.load(Ordering::Relaxed) {
            1 => Some(EjectReason::ConsecutiveFailures),
            2 => Some(EjectReason::FailureRate),
            _ => None,
        }
    }

    /// Times this target was ejected.
    pub fn ejections_total(&self) -> u64 {
        self.ejections.load(Ordering::Relaxed)
    }

    pub fn consecutive_failures(&self) -> u32 {
        self.consecutive.load(Ordering::Relaxed)
    }
}

/// Records one outcome on `targets[i]`; ejects it when a threshold is crossed and the cap
/// allows. Returns the reason when this call ejected it.
pub fn observe(cfg: &OutlierConfig, targets: &[Target], i: usize, failed: bool, now: u64) -> Option<EjectReason> {
    let s = &targets.get(i)?.state.outlier;
    if s.is_ejected(now) {
        // Late outcomes of requests sent before the ejection change nothing.
        return None;
    }
    let consecutive = if failed {
        s.consecutive.fetch_add(1, Ordering::Relaxed) + 1
    } else {
        s.consecutive.store(0, Ordering::Relaxed);
        0
    };
    let reason = if cfg.consecutive > 0 && consecutive >= cfg.consecutive {
        Some(EjectReason::ConsecutiveFailures)
    } else if cfg.failure_rate > 0 {
        let c = s.window.add(now, failed, false);
        (failed && c.total >= cfg.min_requests as f64 && c.failed * 100.0 >= cfg.failure_rate as f64 * c.total)
            .then_some(EjectReason::FailureRate)
    } else {
        None
    };
    let reason = reason?;
    // The cap counts targets ejected right now (ejections are rare: a scan is fine).
    let allowed = targets.len() as u64 * cfg.max_ejected_percent as u64 / 100;
    let ejected = targets.iter().filter(|t| t.state.outlier.is_ejected(now)).count() as u64;
    if ejected >= allowed {
        return None;
    }
    let calm = now.saturating_sub(s.last_until.load(Ordering::Relaxed)) > cfg.max_ns;
    let streak = if calm {
        s.streak.store(1, Ordering::Relaxed);
        1
    } else {
        s.streak.fetch_add(1, Ordering::Relaxed).saturating_add(1)
    };
    let duration = cfg.base_ns.saturating_mul(streak as u64).min(cfg.max_ns.max(cfg.base_ns));
    let until = now.saturating_add(duration).max(1);
    if s.ejected_until.compare_exchange(0, until, Ordering::AcqRel, Ordering::Relaxed).is_err() {
        return None;
    }
    s.last_until.store(until, Ordering::Relaxed);
    s.reason.store(if reason == EjectReason::ConsecutiveFailures { 1 } else { 2 }, Ordering::Relaxed);
    s.ejections.fetch_add(1, Ordering::Relaxed);
    s.consecutive.store(0, Ordering::Relaxed);
    s.window.reset();
    Some(reason)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::{Addr, TargetState};
    use bytes::Bytes;
    use std::sync::Arc;

    const S: u64 = 1_000_000_000;

    fn targets(n: usize) -> Vec<Target> {
        (0..n)
            .map(|i| Target {
                url: format!("http://10.0.0.{i}:80"),
                addr: Addr::Dns(String::new()),
                authority: Bytes::new(),
                weight: 1,
                state: Arc::new(TargetState::new(i as u64)),
                tls: None,
                http2: false,
            })
            .collect()
    }

    fn cfg() -> OutlierConfig {
        OutlierConfig {
            consecutive: 3,
            failure_rate: 50,
            min_requests: 10,
            window_ns: 10 * S,
            base_ns: 30 * S,
            max_ns: 90 * S,
            max_ejected_percent: 50,
        }
    }

    #[test]
    fn consecutive_failures_eject_and_return_alone() {
        let t = targets(3);
        let c = cfg();
        let now = 1000 * S;
        assert_eq!(observe(&c, &t, 0, true, now), None);
        assert_eq!(observe(&c, &t, 0, true, now), None);
        assert_eq!(observe(&c, &t, 0, true, now), Some(EjectReason::ConsecutiveFailures));
        let s = &t[0].state;
        assert!(!s.is_healthy_at(now + 29 * S));
        assert_eq!(s.outlier.reason(), Some(EjectReason::ConsecutiveFailures));
        // Back after base_ejection without anyone doing anything.
        assert!(s.is_healthy_at(now + 30 * S));
        assert_eq!(s.outlier.ejected_until(), 0);
    }

    #[test]
    fn a_success_resets_the_streak() {
        let t = targets(3);
        let c = cfg();
        for k in 0..10 {
            observe(&c, &t, 0, true, k);
            observe(&c, &t, 0, true, k);
            observe(&c, &t, 0, false, k);
        }
        // 2/3 failures is over 50 %: the failure rate ejects it once min_requests is reached.
        assert_eq!(t[0].state.outlier.reason(), Some(EjectReason::FailureRate));
    }

    #[test]
    fn ejection_time_grows_then_resets_after_calm() {
        let t = targets(4);
        let c = cfg();
        let mut now = 1000 * S;
        let mut durations = Vec::new();
        for _ in 0..4 {
            for _ in 0..3 {
                observe(&c, &t, 1, true, now);
            }
            let until = t[1].state.outlier.ejected_until();
            durations.push((until - now) / S);
            now = until;
            assert!(!t[1].state.outlier.is_ejected(now));
        }
        assert_eq!(durations, vec![30, 60, 90, 90]);
        // After max_ejection in rotation, the multiplier starts again.
        now += 91 * S;
        for _ in 0..3 {
            observe(&c, &t, 1, true, now);
        }
        assert_eq!((t[1].state.outlier.ejected_until() - now) / S, 30);
        assert_eq!(t[1].state.outlier.ejections_total(), 5);
    }

    #[test]
    fn max_ejected_percent_caps_ejections() {
        let t = targets(3);
        let c = cfg();
        // 50 % of 3 targets, rounded down: one at a time.
        for i in 0..3 {
            for _ in 0..5 {
                observe(&c, &t, i, true, 5 * S);
            }
        }
        let ejected = t.iter().filter(|x| x.state.outlier.is_ejected(5 * S)).count();
        assert_eq!(ejected, 1);
        // A single-target upstream is never emptied by ejection.
        let one = targets(1);
        for _ in 0..10 {
            observe(&c, &one, 0, true, 5 * S);
        }
        assert!(one[0].state.is_healthy_at(5 * S));
    }

    /// The balancer's `is_healthy` reads tokio's clock: paused time drives the return.
    #[tokio::test(start_paused = true)]
    async fn ejection_ends_on_tokio_time() {
        let t = targets(2);
        let now = crate::upstream::mono_ns();
        for _ in 0..3 {
            observe(&cfg(), &t, 0, true, now);
        }
        assert!(!t[0].state.is_healthy());
        tokio::time::advance(std::time::Duration::from_secs(29)).await;
        assert!(!t[0].state.is_healthy());
        tokio::time::advance(std::time::Duration::from_secs(1)).await;
        assert!(t[0].state.is_healthy());
    }

    #[test]
    fn uneject_by_active_check() {
        let t = targets(2);
        for _ in 0..3 {
            observe(&cfg(), &t, 0, true, S);
        }
        assert!(!t[0].state.is_healthy_at(2 * S));
        t[0].state.outlier.uneject();
        assert!(t[0].state.is_healthy_at(2 * S));
    }
}
