//! A route's compiled retry, deadline and hedging settings, and the decisions made from them:
//! is this failure retryable, may this request be sent twice, how long to back off, how to
//! write the remaining time for the upstream.
//!
//! Invariants: compiled once per snapshot, read-only per request (no allocation except the
//! deadline header value); a request is sent again only when that cannot surprise the upstream:
//! it never reached it (connection refused or not opened), or the method is idempotent (or the
//! route opted in with `non_idempotent`) *and* the whole request is still in memory. Every retry
//! also needs the upstream's retry budget (`upstream/budget.rs`) and time left before the
//! deadline.

use std::time::Duration;

use bytes::Bytes;
use gatehouse_config as cfg;

use crate::upstream::balancer::rand_u64;

/// What went wrong with one attempt, as far as retrying is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptFailure {
    /// No connection: nothing reached the upstream.
    Connect,
    /// The connection broke before a response head.
    Reset,
    /// No response head in time.
    Timeout,
    /// The upstream answered with this status.
    Status(u16),
}

#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Attempts in total (1 = none).
    pub attempts: u32,
    on_connect: bool,
    on_reset: bool,
    on_timeout: bool,
    /// Bit `s - 400` set for each retryable status in 400..=599.
    statuses: [u64; 4],
    pub non_idempotent: bool,
    base: Duration,
    max: Duration,
}

impl RetryPolicy {
    pub fn from_config(r: &cfg::Retry) -> RetryPolicy {
        let mut p = RetryPolicy {
            attempts: r.attempts.max(1),
            on_connect: false,
            on_reset: false,
            on_timeout: false,
            statuses: [0; 4],
            non_idempotent: r.non_idempotent,
            base: r.backoff.base.0,
            max: r.backoff.max.0,
        };
        for on in &r.on {
            match on {
                cfg::RetryOn::ConnectFailure => p.on_connect = true,
                cfg::RetryOn::Reset => p.on_reset = true,
                cfg::RetryOn::Timeout => p.on_timeout = true,
                cfg::RetryOn::Status(s) if (400..=599).contains(s) => {
                    let b = (s - 400) as usize;
                    p.statuses[b / 64] |= 1 << (b % 64);
                }
                cfg::RetryOn::Status(_) => {}
            }
        }
        p
    }

    /// Whether this failure is one the route retries.
    pub fn retries(&self, f: AttemptFailure) -> bool {
        match f {
            AttemptFailure::Connect => self.on_connect,
            AttemptFailure::Reset => self.on_reset,
            AttemptFailure::Timeout => self.on_timeout,
            AttemptFailure::Status(s) => self.retries_status(s),
        }
    }

    pub fn retries_status(&self, s: u16) -> bool {
        if !(400..=599).contains(&s) {
            return false;
        }
        let b = (s - 400) as usize;
        self.statuses[b / 64] & (1 << (b % 64)) != 0
    }

    /// The wait before retry number `n` (1-based): full jitter over `min(max, base × 2ⁿ⁻¹)`, so
    /// clients that failed together do not come back together.
    pub fn backoff(&self, n: u32) -> Duration {
        let cap = self.base.saturating_mul(1u32 << (n.saturating_sub(1)).min(20)).min(self.max);
        let nanos = cap.as_nanos() as u64;
        if nanos == 0 {
            return Duration::ZERO;
        }
        Duration::from_nanos(rand_u64() % (nanos + 1))
    }
}

/// Whether a request may be sent again after it (possibly) reached the upstream.
pub fn idempotent(method: &[u8]) -> bool {
    matches!(method, b"GET" | b"HEAD" | b"OPTIONS" | b"TRACE" | b"PUT" | b"DELETE")
}

/// A route's total deadline and how the remaining time goes upstream.
#[derive(Debug, Clone)]
pub struct DeadlinePolicy {
    pub timeout: Duration,
    /// Lower-case header name; `None` when not propagated.
    pub header: Option<Bytes>,
    pub format: cfg::DeadlineFormat,
}

impl DeadlinePolicy {
    pub fn from_config(d: &cfg::Deadline) -> DeadlinePolicy {
        let header = d.propagate.then(|| {
            let name = match (&d.header, d.format) {
                (Some(h), _) => h.to_ascii_lowercase(),
                (None, cfg::DeadlineFormat::Grpc) => "grpc-timeout".to_string(),
                (None, _) => "x-request-timeout".to_string(),
            };
            Bytes::from(name)
        });
        DeadlinePolicy { timeout: d.timeout.0, header, format: d.format }
    }

    /// The header value for `remaining` (rounded down to whole milliseconds, at least 1 ms).
    pub fn value(&self, remaining: Duration) -> Bytes {
        let ms = (remaining.as_millis() as u64).max(1);
        Bytes::from(match self.format {
            cfg::DeadlineFormat::Milliseconds => ms.to_string(),
            cfg::DeadlineFormat::Seconds => format!("{}.{:03}", ms / 1000, ms % 1000),
            // grpc-timeout allows at most 8 digits; validation keeps the deadline within that.
            cfg::DeadlineFormat::Grpc => format!("{}m", ms.min(99_999_999)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(yaml_on: Vec<cfg::RetryOn>) -> RetryPolicy {
        RetryPolicy::from_config(&cfg::Retry { on: yaml_on, ..Default::default() })
    }

    #[test]
    fn classification() {
        let p = policy(vec![cfg::RetryOn::ConnectFailure, cfg::RetryOn::Status(503), cfg::RetryOn::Status(429)]);
        assert!(p.retries(AttemptFailure::Connect));
        assert!(!p.retries(AttemptFailure::Reset));
        assert!(!p.retries(AttemptFailure::Timeout));
        assert!(p.retries(AttemptFailure::Status(503)));
        assert!(p.retries(AttemptFailure::Status(429)));
        assert!(!p.retries(AttemptFailure::Status(500)));
        assert!(!p.retries(AttemptFailure::Status(200)));
        assert!(!p.retries(AttemptFailure::Status(600)));
    }

    #[test]
    fn backoff_is_jittered_exponential_and_capped() {
        let p = RetryPolicy::from_config(&cfg::Retry {
            backoff: cfg::Backoff {
                base: cfg::Dur(Duration::from_millis(10)),
                max: cfg::Dur(Duration::from_millis(50)),
            },
            ..Default::default()
        });
        for n in 1..8u32 {
            let cap = Duration::from_millis((10u64 << (n - 1)).min(50));
            let waits: Vec<Duration> = (0..200).map(|_| p.backoff(n)).collect();
            assert!(waits.iter().all(|w| *w <= cap), "retry {n}");
            // Jittered: not all the same.
            assert!(waits.iter().any(|w| *w != waits[0]), "retry {n}");
        }
    }

    #[test]
    fn deadline_formats() {
        let mk = |format, header: Option<&str>| {
            DeadlinePolicy::from_config(&cfg::Deadline {
                timeout: cfg::Dur(Duration::from_secs(5)),
                propagate: true,
                header: header.map(str::to_string),
                format,
            })
        };
        let ms = mk(cfg::DeadlineFormat::Milliseconds, None);
        assert_eq!(ms.header.as_deref(), Some(&b"x-request-timeout"[..]));
        assert_eq!(ms.value(Duration::from_micros(2_500_900)), "2500");
        assert_eq!(ms.value(Duration::ZERO), "1");
        let s = mk(cfg::DeadlineFormat::Seconds, Some("X-Deadline"));
        assert_eq!(s.header.as_deref(), Some(&b"x-deadline"[..]));
        assert_eq!(s.value(Duration::from_millis(2050)), "2.050");
        let g = mk(cfg::DeadlineFormat::Grpc, None);
        assert_eq!(g.header.as_deref(), Some(&b"grpc-timeout"[..]));
        assert_eq!(g.value(Duration::from_millis(1500)), "1500m");
    }
}
