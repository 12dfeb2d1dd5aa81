//! The compile contract: how a configured policy becomes a compiled one. Each policy's config
//! type implements `CompilePolicy` in the policy's own module (`rate_limit.rs` for
//! `cfg::RateLimit`, ...), naming its compiled type and how it meets its long-lived state;
//! `PolicyEnv` is what compiling may use from the snapshot being built. `Stack::compile`
//! (`stack.rs`) runs it for each configured policy, through the dispatch generated from the
//! config crate's `for_each_policy!`, so no list of policies lives here.
//!
//! Invariants: compilation only fails on what validation should already have refused; every
//! piece of state a policy uses is taken from (or registered in) `Limiters` by its `StateId`
//! (the route's name, the policy's index, its `fingerprint`), so a reload that keeps a policy
//! keeps its counters and one that changes it starts fresh. Every id handed out is recorded in
//! `live_limiters`, and what identity policies keep alive in `live_auth`, for the registry's
//! clean-up after the swap.

use std::sync::Arc;

use gatehouse_config as cfg;

use super::{Limiters, RedisClient, StateId};
use crate::error::CompileError;

/// What compiling policies needs from the snapshot being built, and what it records for the
/// registry's clean-up after the swap. Built by `snapshot::compile` only (its fields are the
/// crate's), so `CompilePolicy` can be named outside the crate but not run there.
pub struct PolicyEnv<'a> {
    pub(crate) limiters: &'a Limiters,
    pub(crate) consumers: Arc<crate::policy::auth::Consumers>,
    pub(crate) redis: Option<(&'a cfg::Redis, Arc<RedisClient>)>,
    /// Limiter ids still in use (the others are dropped after the reload).
    pub(crate) live_limiters: Vec<StateId>,
    pub(crate) live_auth: crate::policy::auth::Live,
}

/// How a policy's config type compiles, implemented in the policy's module. The trait is on the
/// config type so that the config crate's list, which names config types only, is enough to
/// reach it: `RoutePolicy`'s variant for a policy holds `<ConfigType as CompilePolicy>::Runtime`.
pub trait CompilePolicy {
    /// The compiled policy, which implements `Policy`. Box it (`Box<MyPolicy>`, a `Policy` too)
    /// when it is large: `RoutePolicy` is as big as its largest variant, and `stack.rs` asserts
    /// that size.
    type Runtime: super::Policy + std::fmt::Debug;

    /// Every setting that changes what the policy's long-lived state means, starting with its
    /// name: part of its `StateId`, so a reload that changes one of them starts fresh state. A
    /// policy without such state returns its name.
    fn fingerprint(&self) -> String;

    /// The compiled policy for route `route`, with its long-lived state taken from `env` by `id`.
    fn compile(&self, env: &mut PolicyEnv<'_>, route: &cfg::Route, id: &StateId)
        -> Result<Self::Runtime, CompileError>;
}
