//! The concurrency limiter: at most `max` requests in flight per key, with an optional bounded
//! wait queue.
//!
//! Invariants:
//! - A slot is taken by `acquire` and held by a `Permit` that the request context owns; dropping
//!   the permit (the request finished, failed, or its connection went away) frees the slot. No
//!   path can leak a slot because none releases by hand.
//! - A key is in the map only while it has a request in flight or waiting, so memory is bounded
//!   by the number of requests being processed (no cap or sweep needed).
//! - At most `queue` requests per key wait; each waits at most `queue_timeout`. A freed slot wakes
//!   one waiter (`Notify::notify_one`, which keeps a permit if the waiter is not parked yet, so
//!   no wake-up is lost). Waiting is not strictly FIFO: a request arriving while a slot is free
//!   takes it, and a woken waiter that finds the slot taken waits again until its deadline.
//! - Compiling (`CompilePolicy for cfg::ConcurrencyLimit`) attaches the limiter kept in `Limiters`
//!   for the policy's `StateId` (max, queue, timeout and key), so a reload that keeps them keeps
//!   the in-flight counts.
//! - Same locking choice as the rate limiter: 64 padded shards of `std::sync::Mutex<HashMap>`
//!   held for one map operation, never across an await.

use std::hash::RandomState;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gatehouse_config as cfg;
use tokio::sync::Notify;

pub use crate::ctx::Permit;

use super::{shard_of, CompilePolicy, Flow, KeyMap, KeySpec, Policy, PolicyEnv, StateId, SHARDS};
use crate::ctx::{RequestCtx, RequestInfo};
use crate::error::{CompileError, GatewayError};
use crate::http1::Headers;

#[derive(Default)]
struct Slot {
    inflight: u32,
    waiting: u32,
    /// Created when the first request has to wait.
    notify: Option<Arc<Notify>>,
}

#[repr(align(64))]
struct Shard(Mutex<KeyMap<Slot>>);

/// In-flight counters per key for one policy of one route.
pub struct ConcurrencyLimiter {
    max: u32,
    queue: u32,
    queue_timeout: Duration,
    seed: RandomState,
    shards: Box<[Shard]>,
    /// Requests that got a slot (at once or after waiting).
    pub allowed: AtomicU64,
    /// Requests refused (503), at once or after waiting `queue_timeout`.
    pub limited: AtomicU64,
    /// Requests that had to wait.
    pub queued: AtomicU64,
}

impl std::fmt::Debug for ConcurrencyLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConcurrencyLimiter").field("max", &self.max).field("queue", &self.queue).finish()
    }
}

impl crate::ctx::Release for ConcurrencyLimiter {
    fn release(&self, key: u64) {
        self.release_slot(key);
    }
}

impl ConcurrencyLimiter {
    pub fn new(max: u32, queue: u32, queue_timeout: Duration) -> ConcurrencyLimiter {
        ConcurrencyLimiter {
            max: max.max(1),
            queue,
            queue_timeout,
            seed: RandomState::new(),
            shards: (0..SHARDS).map(|_| Shard(Mutex::new(KeyMap::default()))).collect(),
            allowed: AtomicU64::new(0),
            limited: AtomicU64::new(0),
            queued: AtomicU64::new(0),
        }
    }

    pub fn for_config(c: &cfg::ConcurrencyLimit) -> ConcurrencyLimiter {
        ConcurrencyLimiter::new(c.max, c.queue, c.queue_timeout.0)
    }

    pub fn seed(&self) -> &RandomState {
        &self.seed
    }

    fn lock(&self, key: u64) -> std::sync::MutexGuard<'_, KeyMap<Slot>> {
        self.shards[shard_of(key)].0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes a slot for `key`, waiting in the queue if allowed; `None` means refused.
    pub async fn acquire(self: &Arc<Self>, key: u64) -> Option<Permit> {
        let notify = {
            let mut map = self.lock(key);
            let slot = map.entry(key).or_default();
            if slot.inflight < self.max {
                slot.inflight += 1;
                drop(map);
                self.allowed.fetch_add(1, Ordering::Relaxed);
                return Some(Permit::new(self.clone(), key));
            }
            if slot.waiting >= self.queue {
                drop(map);
                self.limited.fetch_add(1, Ordering::Relaxed);
                return None;
            }
            slot.waiting += 1;
            slot.notify.get_or_insert_with(|| Arc::new(Notify::new())).clone()
        };
        self.queued.fetch_add(1, Ordering::Relaxed);
        let deadline = tokio::time::Instant::now() + self.queue_timeout;
        loop {
            let woken = tokio::time::timeout_at(deadline, notify.notified()).await.is_ok();
            let mut map = self.lock(key);
            let Some(slot) = map.get_mut(&key) else {
                // Unreachable: our `waiting` count keeps the entry. Refuse rather than panic.
                self.limited.fetch_add(1, Ordering::Relaxed);
                return None;
            };
            if slot.inflight < self.max {
                slot.inflight += 1;
                slot.waiting -= 1;
                drop(map);
                self.allowed.fetch_add(1, Ordering::Relaxed);
                return Some(Permit::new(self.clone(), key));
            }
            if !woken {
                slot.waiting -= 1;
                if slot.inflight == 0 && slot.waiting == 0 {
                    map.remove(&key);
                }
                drop(map);
                self.limited.fetch_add(1, Ordering::Relaxed);
                return None;
            }
        }
    }

    fn release_slot(&self, key: u64) {
        let mut map = self.lock(key);
        let Some(slot) = map.get_mut(&key) else { return };
        slot.inflight = slot.inflight.saturating_sub(1);
        if slot.waiting > 0 {
            if let Some(n) = &slot.notify {
                n.notify_one();
            }
        } else if slot.inflight == 0 {
            map.remove(&key);
        }
    }

    /// Requests in flight for `key`.
    pub fn inflight(&self, key: u64) -> u32 {
        self.lock(key).get(&key).map_or(0, |s| s.inflight)
    }

    /// Keys with a request in flight or waiting.
    pub fn keys(&self) -> usize {
        self.shards.iter().map(|s| s.0.lock().unwrap_or_else(|p| p.into_inner()).len()).sum()
    }
}

/// A compiled `concurrency_limit` policy of a route.
#[derive(Debug)]
pub struct ConcurrencyPolicy {
    pub limiter: Arc<ConcurrencyLimiter>,
    key: KeySpec,
}

impl ConcurrencyPolicy {
    pub fn new(c: &cfg::ConcurrencyLimit, limiter: Arc<ConcurrencyLimiter>) -> ConcurrencyPolicy {
        ConcurrencyPolicy { limiter, key: KeySpec::compile(&c.key) }
    }

    pub async fn acquire(&self, ctx: &RequestCtx, headers: &Headers) -> Option<Permit> {
        let key = self.key.hash_with(self.limiter.seed(), ctx.client_ip, headers, ctx.identity.as_deref());
        self.limiter.acquire(key).await
    }
}

/// A `concurrency_limit` compiles over the limiter kept for its id (in-flight counts survive a
/// reload that keeps it).
impl CompilePolicy for cfg::ConcurrencyLimit {
    type Runtime = ConcurrencyPolicy;

    fn fingerprint(&self) -> String {
        format!(
            "concurrency_limit max={} queue={} timeout={:?} key={:?}",
            self.max, self.queue, self.queue_timeout, self.key
        )
    }

    fn compile(
        &self,
        env: &mut PolicyEnv<'_>,
        _: &cfg::Route,
        id: &StateId,
    ) -> Result<ConcurrencyPolicy, CompileError> {
        let limiter = env.limiters.concurrency(id.clone(), || ConcurrencyLimiter::for_config(self));
        Ok(ConcurrencyPolicy::new(self, limiter))
    }
}

/// The concurrency limit's side of the policy contract: a permit held in the context until the
/// request ends (dropped with it, whatever the outcome), or 503 `concurrency_limited`.
impl Policy for ConcurrencyPolicy {
    async fn on_request(&self, ctx: &mut RequestCtx, _: usize, headers: &mut Headers, _: &RequestInfo<'_>) -> Flow {
        match self.acquire(ctx, headers).await {
            Some(permit) => {
                ctx.permits.push(permit);
                Flow::Continue
            }
            None => Flow::Fail(GatewayError::ConcurrencyLimited),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn refuses_over_max_and_frees_on_drop() {
        let l = Arc::new(ConcurrencyLimiter::new(2, 0, Duration::from_secs(1)));
        let a = l.acquire(1).await.expect("first");
        let b = l.acquire(1).await.expect("second");
        assert!(l.acquire(1).await.is_none(), "third refused at once");
        assert!(l.acquire(2).await.is_some(), "another key has its own slots");
        assert_eq!(l.inflight(1), 2);
        drop(a);
        let c = l.acquire(1).await.expect("a slot was freed");
        drop((b, c));
        assert_eq!(l.keys(), 0, "idle keys leave the map");
        assert_eq!(l.allowed.load(Ordering::Relaxed), 4);
        assert_eq!(l.limited.load(Ordering::Relaxed), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn queued_request_gets_the_freed_slot() {
        let l = Arc::new(ConcurrencyLimiter::new(1, 1, Duration::from_secs(1)));
        let held = l.acquire(1).await.expect("first");
        let l2 = l.clone();
        let waiter = tokio::spawn(async move { l2.acquire(1).await.map(|p| (tokio::time::Instant::now(), p)) });
        tokio::task::yield_now().await;
        assert!(l.acquire(1).await.is_none(), "queue of 1 is full");
        let t0 = tokio::time::Instant::now();
        tokio::time::sleep(Duration::from_millis(300)).await;
        drop(held);
        let (at, permit) = waiter.await.unwrap().expect("waiter admitted");
        assert_eq!(at - t0, Duration::from_millis(300));
        drop(permit);
        assert_eq!(l.keys(), 0);
        assert_eq!(l.queued.load(Ordering::Relaxed), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn queued_request_times_out() {
        let l = Arc::new(ConcurrencyLimiter::new(1, 4, Duration::from_millis(250)));
        let _held = l.acquire(1).await.expect("first");
        let t0 = tokio::time::Instant::now();
        assert!(l.acquire(1).await.is_none());
        assert_eq!(tokio::time::Instant::now() - t0, Duration::from_millis(250));
        assert_eq!(l.inflight(1), 1);
        assert_eq!(l.limited.load(Ordering::Relaxed), 1);
    }
}
