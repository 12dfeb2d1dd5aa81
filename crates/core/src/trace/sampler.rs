//! Head sampling (the `OTEL_TRACES_SAMPLER` family) and id generation.
//!
//! Invariants: a decision depends only on the parent's sampled flag and the trace id, never on
//! state or time, so every service using the same rule and ratio agrees on a trace. The ratio test
//! follows the OpenTelemetry TraceIdRatioBased rule compatible with W3C Level 2 randomness: the
//! low 56 bits of the trace id are compared with the rejection threshold `(1 - ratio) * 2^56`.
//! Ids are never all zeros.

use std::cell::Cell;
use std::hash::{BuildHasher, Hasher};

/// What decides whether a new SERVER span is recorded and exported.
#[derive(Debug, Clone, PartialEq)]
pub enum Sampler {
    AlwaysOn,
    AlwaysOff,
    /// Samples `ratio` of traces (0.0..=1.0), by trace id.
    TraceIdRatio(f64),
    /// Follows the parent's sampled flag when there is a parent; otherwise asks `root`.
    ParentBased(Box<Sampler>),
}

impl Default for Sampler {
    /// `parentbased_always_on`, the OpenTelemetry default.
    fn default() -> Sampler {
        Sampler::ParentBased(Box::new(Sampler::AlwaysOn))
    }
}

impl Sampler {
    /// The sampler named by `OTEL_TRACES_SAMPLER` with its `_ARG` (a ratio). `None` for names we do
    /// not implement (`jaeger_remote`, `xray`, ...): the caller falls back to the default.
    pub fn from_name(name: &str, arg: Option<f64>) -> Option<Sampler> {
        let ratio = || Sampler::TraceIdRatio(arg.unwrap_or(1.0).clamp(0.0, 1.0));
        Some(match name.trim().to_ascii_lowercase().as_str() {
            "always_on" => Sampler::AlwaysOn,
            "always_off" => Sampler::AlwaysOff,
            "traceidratio" => ratio(),
            "parentbased_always_on" => Sampler::ParentBased(Box::new(Sampler::AlwaysOn)),
            "parentbased_always_off" => Sampler::ParentBased(Box::new(Sampler::AlwaysOff)),
            "parentbased_traceidratio" => Sampler::ParentBased(Box::new(ratio())),
            _ => return None,
        })
    }

    /// Decides for a span of trace `trace_id`; `parent_sampled` is the remote parent's flag, or
    /// `None` at the root of a trace.
    pub fn should_sample(&self, parent_sampled: Option<bool>, trace_id: &[u8; 16]) -> bool {
        match self {
            Sampler::AlwaysOn => true,
            Sampler::AlwaysOff => false,
            Sampler::TraceIdRatio(ratio) => ratio_sampled(*ratio, trace_id),
            Sampler::ParentBased(root) => match parent_sampled {
                Some(sampled) => sampled,
                None => root.should_sample(None, trace_id),
            },
        }
    }
}

const TWO_56: f64 = (1u64 << 56) as f64;

fn ratio_sampled(ratio: f64, trace_id: &[u8; 16]) -> bool {
    if ratio >= 1.0 {
        return true;
    }
    if ratio <= 0.0 || ratio.is_nan() {
        return false;
    }
    let mut low = [0u8; 8];
    low[1..].copy_from_slice(&trace_id[9..16]);
    let randomness = u64::from_be_bytes(low);
    // Truncation towards zero keeps "ratio > 0 samples something" and "ratio < 1 rejects something".
    let threshold = ((1.0 - ratio) * TWO_56) as u64;
    randomness >= threshold
}

thread_local! {
    static RNG: Cell<u64> = Cell::new(seed());
}

/// A per-thread seed from the standard library's per-process random keys, so two threads (and two
/// processes) never share a sequence. Ids need uniqueness, not unpredictability.
fn seed() -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64));
    h.finish() | 1
}

/// wyrand: fast, passes BigCrush, one multiply per 64 bits.
fn next_u64() -> u64 {
    RNG.with(|s| {
        let x = s.get().wrapping_add(0xa076_1d64_78bd_642f);
        s.set(x);
        let t = u128::from(x) * u128::from(x ^ 0xe703_7ed1_a0b4_28db);
        ((t >> 64) as u64) ^ (t as u64)
    })
}

pub fn new_span_id() -> [u8; 8] {
    loop {
        let v = next_u64();
        if v != 0 {
            return v.to_be_bytes();
        }
    }
}

/// A random trace id; all 16 bytes are random, so the low 56 bits suit ratio sampling.
pub fn new_trace_id() -> [u8; 16] {
    let mut id = [0u8; 16];
    id[..8].copy_from_slice(&next_u64().to_be_bytes());
    id[8..].copy_from_slice(&new_span_id());
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_from_the_env_spec() {
        assert_eq!(Sampler::from_name("always_on", None), Some(Sampler::AlwaysOn));
        assert_eq!(Sampler::from_name("traceidratio", Some(0.25)), Some(Sampler::TraceIdRatio(0.25)));
        assert_eq!(Sampler::from_name("traceidratio", None), Some(Sampler::TraceIdRatio(1.0)));
        assert_eq!(Sampler::from_name("traceidratio", Some(7.0)), Some(Sampler::TraceIdRatio(1.0)));
        assert_eq!(
            Sampler::from_name("parentbased_traceidratio", Some(0.5)),
            Some(Sampler::ParentBased(Box::new(Sampler::TraceIdRatio(0.5))))
        );
        assert_eq!(Sampler::from_name("jaeger_remote", None), None);
        assert_eq!(Sampler::default(), Sampler::from_name("parentbased_always_on", None).expect("known"));
    }

    #[test]
    fn ratio_decides_on_the_low_56_bits() {
        let mut id = [0xffu8; 16];
        id[9..].copy_from_slice(&[0; 7]);
        assert!(!ratio_sampled(0.5, &id), "randomness 0 is below any positive threshold");
        id[9] = 0x80; // randomness exactly 2^55 = threshold for 0.5
        assert!(ratio_sampled(0.5, &id));
        id[9] = 0x7f;
        assert!(!ratio_sampled(0.5, &id));
        // High bytes do not matter.
        let mut id2 = id;
        id2[..9].copy_from_slice(&[0; 9]);
        assert_eq!(ratio_sampled(0.5, &id), ratio_sampled(0.5, &id2));
        assert!(ratio_sampled(1.0, &[0; 16]) && !ratio_sampled(0.0, &[0xff; 16]));
    }

    #[test]
    fn deterministic_and_roughly_proportional() {
        let s = Sampler::TraceIdRatio(0.25);
        let ids: Vec<[u8; 16]> = (0..20_000).map(|_| new_trace_id()).collect();
        let first: Vec<bool> = ids.iter().map(|id| s.should_sample(None, id)).collect();
        let again: Vec<bool> = ids.iter().map(|id| s.should_sample(Some(false), id)).collect();
        assert_eq!(first, again, "a plain ratio sampler ignores the parent and repeats itself");
        let n = first.iter().filter(|b| **b).count();
        assert!((4_400..5_600).contains(&n), "{n} of 20000 at 0.25");
        // Lower ratios sample a subset of higher ones: services with different ratios stay consistent.
        let s10 = Sampler::TraceIdRatio(0.10);
        assert!(ids.iter().all(|id| !s10.should_sample(None, id) || s.should_sample(None, id)));
    }

    #[test]
    fn parent_based_follows_the_parent() {
        let s = Sampler::ParentBased(Box::new(Sampler::AlwaysOff));
        let id = new_trace_id();
        assert!(s.should_sample(Some(true), &id));
        assert!(!s.should_sample(Some(false), &id));
        assert!(!s.should_sample(None, &id));
        let on = Sampler::default();
        assert!(!on.should_sample(Some(false), &id) && on.should_sample(None, &id));
    }

    #[test]
    fn ids_are_nonzero_and_distinct() {
        let a: std::collections::HashSet<[u8; 8]> = (0..10_000).map(|_| new_span_id()).collect();
        assert_eq!(a.len(), 10_000);
        assert_ne!(new_trace_id(), [0; 16]);
    }
}
