//! A per-connection deadline timer that is re-armed lazily.
//!
//! Every request on a keep-alive connection sets two deadlines (idle, then the upstream's
//! response head), almost always later than the one already armed, and almost none fires.
//! Moving a tokio timer is a timer-wheel removal and insertion; here `arm` only records the
//! wanted instant and moves the timer when the new deadline is *earlier* than the armed one.
//! When the armed timer fires before the wanted instant it is moved there and waited on again,
//! so a connection pays one wheel operation per timeout period instead of two per request.
//!
//! Invariant: `fired` completes at or after the last `arm`ed instant, never before.

use std::pin::Pin;

use tokio::time::{Instant, Sleep};

pub(crate) struct LazyTimer {
    sleep: Pin<Box<Sleep>>,
    want: Instant,
}

impl LazyTimer {
    pub(crate) fn new() -> LazyTimer {
        let now = Instant::now();
        LazyTimer { sleep: Box::pin(tokio::time::sleep_until(now)), want: now }
    }

    /// Sets the deadline `fired` waits for.
    pub(crate) fn arm(&mut self, at: Instant) {
        self.want = at;
        if self.sleep.deadline() > at {
            self.sleep.as_mut().reset(at);
        }
    }

    /// Completes once the armed deadline has passed. Cancel-safe: dropping it loses nothing.
    pub(crate) async fn fired(&mut self) {
        loop {
            self.sleep.as_mut().await;
            if Instant::now() >= self.want {
                return;
            }
            let want = self.want;
            self.sleep.as_mut().reset(want);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn fires_at_the_last_armed_deadline_not_the_first() {
        let mut t = LazyTimer::new();
        let start = Instant::now();
        t.arm(start + Duration::from_secs(1));
        t.arm(start + Duration::from_secs(5));
        t.fired().await;
        assert!(Instant::now() >= start + Duration::from_secs(5));
        t.arm(Instant::now() + Duration::from_millis(10));
        let before = Instant::now();
        t.fired().await;
        assert_eq!(Instant::now() - before, Duration::from_millis(10), "an earlier deadline moves the timer");
    }
}
