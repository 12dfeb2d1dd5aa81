//! Validation of `access_log` and `tracing` (`metrics` has nothing that can be wrong).
//!
//! Invariants: the same rules as the rest of `validate/` (every problem collected with its
//! path, nothing stops early). Only what the exporters rely on is checked (an `http://`
//! collector, a known sampler, sizes that fit); the environment's `OTEL_*` fallbacks are the
//! data plane's business.

use super::Validator;
use crate::net::is_token;
use crate::types::Config;

impl Validator<'_> {
    pub(super) fn access_log(&mut self, cfg: &Config) {
        let p = &cfg.access_log.path;
        if p.is_empty() || p.chars().any(|c| c.is_control()) {
            self.err("access_log.path", "must be `stdout` or a file path without control characters");
        }
    }

    pub(super) fn tracing(&mut self, cfg: &Config) {
        let t = &cfg.tracing;
        if let Some(e) = &t.endpoint {
            match e.strip_prefix("http://") {
                Some(rest) if !rest.is_empty() && !rest.contains('@') => {}
                Some(_) => self.err("tracing.endpoint", "must be http://host:port without credentials (use headers)"),
                None if e.starts_with("https://") => self.err(
                    "tracing.endpoint",
                    "https:// collectors are not supported yet; point it at a local collector or agent over http://",
                ),
                None => self.err("tracing.endpoint", "must be an http:// URL such as http://127.0.0.1:4318"),
            }
        }
        const SAMPLERS: &[&str] = &[
            "parentbased_always_on",
            "parentbased_always_off",
            "parentbased_traceidratio",
            "traceidratio",
            "always_on",
            "always_off",
        ];
        if let Some(sm) = &t.sampler {
            if !SAMPLERS.contains(&sm.as_str()) {
                self.err("tracing.sampler", format!("unknown sampler; expected one of {}", SAMPLERS.join(", ")));
            }
        }
        if let Some(r) = t.ratio {
            if !(0.0..=1.0).contains(&r) {
                self.err("tracing.ratio", "must be between 0.0 and 1.0");
            }
        }
        if t.batch_size == Some(0) {
            self.err("tracing.batch_size", "must be at least 1");
        }
        if t.queue_size == Some(0) {
            self.err("tracing.queue_size", "must be at least 1");
        }
        if let (Some(b), Some(q)) = (t.batch_size, t.queue_size) {
            if b > q {
                self.err("tracing.batch_size", "must not exceed tracing.queue_size");
            }
        }
        for (k, v) in &t.headers {
            if !is_token(k) {
                self.err(format!("tracing.headers.{k}"), "not a valid header name");
            }
            if v.chars().any(|c| c.is_control()) {
                self.err(format!("tracing.headers.{k}"), "header values must not contain control characters");
            }
        }
    }
}
