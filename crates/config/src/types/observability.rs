//! Observability: `access_log`, `tracing` (OTLP/HTTP export) and `metrics` (opt-in labels).
//!
//! Invariants: plain data with `deny_unknown_fields`; each section is off or at its default when
//! absent, so observability never needs configuring to get a working gateway. Checked in
//! `validate/observability.rs`.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use super::defaults;
use crate::units::Dur;

/// `metrics`: opt-in label sets (cardinality is the operator's choice).
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Metrics {
    /// Count requests per consumer (`gatehouse_consumer_requests_total{consumer,status_class}`).
    /// Only consumers declared in `consumers` become label values; other identities count as
    /// `_unmapped`.
    #[serde(default)]
    pub consumer_label: bool,
}

/// `tracing`: spans exported over OTLP/HTTP (protobuf). Fields left out come from the standard
/// `OTEL_*` environment variables, then the defaults (see docs/tracing.md).
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Tracing {
    #[serde(default)]
    pub enabled: bool,
    /// Collector base URL (`http://host:4318`); `/v1/traces` is appended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_name: Option<String>,
    /// `parentbased_always_on` (default), `parentbased_traceidratio`, `traceidratio`,
    /// `parentbased_always_off`, `always_on`, `always_off`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sampler: Option<String>,
    /// The ratio of the `*traceidratio` samplers, 0.0 to 1.0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ratio: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_size: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_size: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule_delay: Option<Dur>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub export_timeout: Option<Dur>,
    /// Extra headers on every export request (e.g. an API key; use `${ENV}`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
}

/// `access_log`: one JSON object per request, written off the request path.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AccessLog {
    /// Off by default (and in the load benchmark).
    #[serde(default)]
    pub enabled: bool,
    /// `stdout`, or a file path (opened for appending).
    #[serde(default = "defaults::access_log_path")]
    pub path: String,
    /// Also log the query string (off: queries often carry tokens).
    #[serde(default)]
    pub include_query: bool,
}

impl Default for AccessLog {
    fn default() -> Self {
        AccessLog { enabled: false, path: defaults::access_log_path(), include_query: false }
    }
}
