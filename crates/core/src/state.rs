//! What every worker shares: the current snapshot behind an `ArcSwap` (one atomic load per
//! request, never a lock), the registries whose state outlives a snapshot (targets, breakers,
//! budgets, limiters, access-log writers, metrics, the tracer), and the lifecycle flags.
//!
//! Invariants: a request loads the snapshot once and keeps it to its end (a reload never changes
//! a request in flight); everything here that a request touches is atomics or lock-free.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio::sync::watch;

use crate::snapshot::Snapshot;
use crate::upstream::Registry;

/// State shared by every worker: the current snapshot, long-lived registries, lifecycle.
pub struct Shared {
    pub snapshot: ArcSwap<Snapshot>,
    pub registry: Registry,
    /// Rate and concurrency limiters, kept across reloads like `registry`.
    pub limiters: crate::policy::Limiters,
    /// Open access-log writers by output, kept across reloads.
    pub access_logs: crate::access_log::AccessLogs,
    pub shutdown: watch::Receiver<bool>,
    /// Set once a drain starts; read per request (an atomic load, no lock).
    pub stopping: std::sync::atomic::AtomicBool,
    /// Woken (`notify_waiters`) when a drain starts, so idle keep-alive connections close at once.
    pub stop: Arc<tokio::sync::Notify>,
    /// Open client connections (traffic listeners only).
    pub connections: AtomicUsize,
    /// Requests being processed.
    pub inflight: AtomicUsize,
    /// Request counters and reload figures for `/metrics`, kept across reloads.
    pub metrics: crate::metrics::Metrics,
    /// The tracer and the `tracing` config it was built from: a reload that keeps the section
    /// keeps the tracer (its queue and exporter connection).
    pub tracer: std::sync::Mutex<Option<(gatehouse_config::Tracing, Arc<crate::trace::Tracer>)>>,
}

pub(crate) struct CountGuard<'a>(&'a AtomicUsize);

impl<'a> CountGuard<'a> {
    pub(crate) fn new(c: &'a AtomicUsize) -> Self {
        c.fetch_add(1, Ordering::Relaxed);
        CountGuard(c)
    }
}

impl Drop for CountGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}
