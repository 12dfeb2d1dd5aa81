//! The identity policies' state that outlives a snapshot (`Limiters::auth`): remote key sets and
//! introspection caches by their settings, the basic-auth verification cache, the decision
//! counters; and `Live`, what one compiled snapshot uses of it.
//!
//! Invariants: a cache is keyed by every setting it depends on, so a reload that keeps a JWKS
//! source or an introspection endpoint keeps its keys and cached answers, and one that changes
//! it starts fresh; `retain` after a reload drops what no compiled policy uses any more.
//! Counters only grow.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::basic;
use super::introspection::IntrospectionCache;
use super::jwks::{JwksCache, JwksSettings};
use super::Denial;

/// Auth decisions since start (the observability issue exports these).
#[derive(Debug, Default)]
pub struct AuthStats {
    allowed: AtomicU64,
    anonymous: AtomicU64,
    missing: AtomicU64,
    invalid: AtomicU64,
    expired: AtomicU64,
    multiple: AtomicU64,
    forbidden: AtomicU64,
    unavailable: AtomicU64,
    external: AtomicU64,
}

/// A copy of the counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AuthCounts {
    /// Requests authenticated with a credential (by `auth`) or allowed by `external_auth`.
    pub allowed: u64,
    /// Requests admitted as the `anonymous` consumer.
    pub anonymous: u64,
    pub denied_missing: u64,
    pub denied_invalid: u64,
    pub denied_expired: u64,
    pub denied_multiple: u64,
    pub denied_forbidden: u64,
    pub denied_unavailable: u64,
    pub denied_external: u64,
}

impl AuthStats {
    pub fn allow(&self, anonymous: bool) {
        if anonymous { &self.anonymous } else { &self.allowed }.fetch_add(1, Ordering::Relaxed);
    }

    pub fn deny(&self, d: Denial) {
        let c = match d {
            Denial::Missing => &self.missing,
            Denial::Invalid => &self.invalid,
            Denial::Expired => &self.expired,
            Denial::Multiple => &self.multiple,
            Denial::Forbidden => &self.forbidden,
            Denial::Unavailable => &self.unavailable,
            Denial::External => &self.external,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    pub fn counts(&self) -> AuthCounts {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        AuthCounts {
            allowed: l(&self.allowed),
            anonymous: l(&self.anonymous),
            denied_missing: l(&self.missing),
            denied_invalid: l(&self.invalid),
            denied_expired: l(&self.expired),
            denied_multiple: l(&self.multiple),
            denied_forbidden: l(&self.forbidden),
            denied_unavailable: l(&self.unavailable),
            denied_external: l(&self.external),
        }
    }
}

/// Identity state that outlives snapshots: remote key sets, introspection caches, the basic-auth
/// verification cache and the decision counters. Caches are keyed by their settings, so a reload
/// that keeps a JWKS source keeps its keys; removed ones are dropped.
#[derive(Debug, Default)]
pub struct AuthState {
    pub stats: AuthStats,
    jwks: Mutex<HashMap<String, Arc<JwksCache>>>,
    introspection: Mutex<HashMap<String, Arc<IntrospectionCache>>>,
    pub basic_cache: basic::VerifiedCache,
}

impl AuthState {
    pub(super) fn jwks(&self, s: JwksSettings) -> Arc<JwksCache> {
        let id = format!("{s:?}");
        let mut map = self.jwks.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(id).or_insert_with(|| Arc::new(JwksCache::new(s))).clone()
    }

    pub(super) fn introspection(&self, id: String) -> Arc<IntrospectionCache> {
        let mut map = self.introspection.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(id).or_default().clone()
    }

    /// Every remote key set with its URL (or discovery URL), for the admin API and metrics.
    pub fn jwks_caches(&self) -> Vec<Arc<JwksCache>> {
        self.jwks.lock().unwrap_or_else(|p| p.into_inner()).values().cloned().collect()
    }

    /// Drops caches no compiled policy uses any more (after a reload).
    pub fn retain(&self, live_jwks: &[Arc<JwksCache>], live_introspection: &[Arc<IntrospectionCache>]) {
        self.jwks.lock().unwrap_or_else(|p| p.into_inner()).retain(|_, c| live_jwks.iter().any(|l| Arc::ptr_eq(l, c)));
        self.introspection
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|_, c| live_introspection.iter().any(|l| Arc::ptr_eq(l, c)));
    }
}

/// What a compiled snapshot's identity policies hold on to (for `AuthState::retain`).
#[derive(Debug, Default)]
pub struct Live {
    pub jwks: Vec<Arc<JwksCache>>,
    pub introspection: Vec<Arc<IntrospectionCache>>,
}
