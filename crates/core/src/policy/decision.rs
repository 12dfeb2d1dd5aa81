//! What a rate limit decided for one request, and who decided it (the local limiter or Redis):
//! shared by the local limiter (`rate_limit.rs`) and the cluster mode (`cluster.rs`), which
//! therefore do not depend on each other for it.

/// One outcome of the limiter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    /// Cost-1 requests that would be admitted right now (after this decision).
    pub remaining: u64,
    /// Nanoseconds until the key's bucket is full again.
    pub reset_ns: u64,
    /// For a refusal: nanoseconds until this request would be admitted; 0 when admitted.
    pub retry_after_ns: u64,
    /// The request was counted in the overflow bucket (the key map was full).
    pub overflow: bool,
    /// Who decided (and so what a refund must undo).
    pub via: Via,
}

/// Who made a rate-limit decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// This process's limiter (local mode, or cluster mode's `on_redis_error: local`).
    Local,
    /// The Redis script (cluster mode).
    Redis,
    /// Redis failed and the policy is `fail_open`: admitted without counting.
    FailOpen,
    /// Redis failed and the policy is `fail_closed`: refused with 503.
    FailClosed,
}

impl Decision {
    /// The decision of a cluster-mode policy whose Redis call failed (`fail_open`/`fail_closed`).
    pub(crate) fn unmetered(via: Via) -> Decision {
        Decision { allowed: via == Via::FailOpen, remaining: 0, reset_ns: 0, retry_after_ns: 0, overflow: false, via }
    }
}
