//! Tracing configuration: defaults, the standard `OTEL_*` environment variables, and explicit
//! overrides from the gateway's config file.
//!
//! Precedence (the usual OpenTelemetry rule): an explicit config-file field beats the environment,
//! and the environment beats the defaults. One exception: `OTEL_SDK_DISABLED=true` and
//! `OTEL_TRACES_EXPORTER=none` are operator kill switches and turn tracing off whatever the file
//! says. Invariants: resolution never fails; an unusable variable is ignored with a warning and the
//! default stands (the OpenTelemetry env spec asks for exactly that).

use std::time::Duration;

use super::sampler::Sampler;

pub const DEFAULT_ENDPOINT: &str = "http://localhost:4318";
pub const DEFAULT_SERVICE_NAME: &str = "gatehouse";

/// Everything the `Tracer` is built from.
#[derive(Debug, Clone, PartialEq)]
pub struct TracingConfig {
    /// Off unless the config file turns it on.
    pub enabled: bool,
    /// Set by `OTEL_SDK_DISABLED=true` or `OTEL_TRACES_EXPORTER=none`; wins over `enabled`.
    pub disabled_by_env: bool,
    /// The full URL spans are POSTed to (`.../v1/traces`). Only `http://` works for now.
    pub endpoint: String,
    pub service_name: String,
    /// Extra resource attributes (`OTEL_RESOURCE_ATTRIBUTES`); `service.name` comes from
    /// `service_name`, never from here.
    pub resource_attributes: Vec<(String, String)>,
    pub sampler: Sampler,
    /// Extra HTTP headers on every export request (`OTEL_EXPORTER_OTLP_HEADERS`), e.g. an API key.
    pub headers: Vec<(String, String)>,
    /// Whether `traceparent`/`tracestate` are extracted and injected (`OTEL_PROPAGATORS` contains
    /// `tracecontext`, the default).
    pub propagate: bool,
    pub max_export_batch_size: usize,
    pub max_queue_size: usize,
    /// How long a span may wait for a batch to fill before it is sent anyway.
    pub schedule_delay: Duration,
    /// Time for one export request (connect, send, answer).
    pub export_timeout: Duration,
    /// Attempts after the first on 429/502/503/504 or a connection error.
    pub max_retries: u32,
    /// First retry delay; doubled per attempt (with jitter) up to 5 s. Not an OTEL variable.
    pub retry_backoff: Duration,
}

impl Default for TracingConfig {
    fn default() -> TracingConfig {
        TracingConfig {
            enabled: false,
            disabled_by_env: false,
            endpoint: traces_url(DEFAULT_ENDPOINT),
            service_name: DEFAULT_SERVICE_NAME.into(),
            resource_attributes: Vec::new(),
            sampler: Sampler::default(),
            headers: Vec::new(),
            propagate: true,
            max_export_batch_size: 512,
            max_queue_size: 2048,
            schedule_delay: Duration::from_millis(5000),
            export_timeout: Duration::from_millis(10_000),
            max_retries: 5,
            retry_backoff: Duration::from_millis(250),
        }
    }
}

/// The fields a config file may set explicitly; `None` leaves the env/default value.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TracingOverrides {
    pub enabled: Option<bool>,
    /// A base URL like `OTEL_EXPORTER_OTLP_ENDPOINT`: `/v1/traces` is appended.
    pub endpoint: Option<String>,
    pub service_name: Option<String>,
    pub sampler: Option<Sampler>,
    pub max_export_batch_size: Option<usize>,
    pub max_queue_size: Option<usize>,
    pub schedule_delay: Option<Duration>,
    pub export_timeout: Option<Duration>,
    /// Added to (and replacing same-named) env headers.
    pub headers: Vec<(String, String)>,
}

impl TracingConfig {
    /// Defaults with the process environment applied.
    pub fn from_env() -> TracingConfig {
        TracingConfig::from_lookup(&|k| std::env::var(k).ok())
    }

    /// Defaults with the environment, then the config file's explicit fields, applied.
    pub fn resolve(overrides: &TracingOverrides) -> TracingConfig {
        TracingConfig::from_env().with_overrides(overrides)
    }

    /// Whether a `Tracer` should exist at all.
    pub fn is_active(&self) -> bool {
        self.enabled && !self.disabled_by_env
    }

    /// Defaults with variables from `get` applied (tests pass a map instead of the process env).
    pub fn from_lookup(get: &dyn Fn(&str) -> Option<String>) -> TracingConfig {
        let var = |k: &str| get(k).map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
        let mut c = TracingConfig::default();

        if var("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
            c.disabled_by_env = true;
        }
        if let Some(exporters) = var("OTEL_TRACES_EXPORTER") {
            let list: Vec<&str> = exporters.split(',').map(str::trim).collect();
            if list.iter().any(|e| e.eq_ignore_ascii_case("none")) {
                c.disabled_by_env = true;
            } else if !list.iter().any(|e| e.eq_ignore_ascii_case("otlp")) {
                tracing::warn!(%exporters, "OTEL_TRACES_EXPORTER: only `otlp` is supported; exporting OTLP anyway");
            }
        }

        if let Some(url) = var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") {
            c.endpoint = url; // the signal-specific variable is used as is
        } else if let Some(base) = var("OTEL_EXPORTER_OTLP_ENDPOINT") {
            c.endpoint = traces_url(&base);
        }
        if let Some(name) = var("OTEL_SERVICE_NAME") {
            c.service_name = name;
        }
        if let Some(attrs) = var("OTEL_RESOURCE_ATTRIBUTES") {
            for (k, v) in parse_key_values("OTEL_RESOURCE_ATTRIBUTES", &attrs) {
                if k == "service.name" {
                    // OTEL_SERVICE_NAME wins when both are set.
                    if var("OTEL_SERVICE_NAME").is_none() {
                        c.service_name = v;
                    }
                } else {
                    upsert(&mut c.resource_attributes, k, v);
                }
            }
        }

        let arg = var("OTEL_TRACES_SAMPLER_ARG");
        let ratio = arg.as_deref().and_then(|a| match a.parse::<f64>() {
            Ok(r) if (0.0..=1.0).contains(&r) => Some(r),
            _ => {
                tracing::warn!(value = a, "OTEL_TRACES_SAMPLER_ARG is not a ratio in [0, 1]; using 1.0");
                None
            }
        });
        if let Some(name) = var("OTEL_TRACES_SAMPLER") {
            match Sampler::from_name(&name, ratio) {
                Some(s) => c.sampler = s,
                None => tracing::warn!(sampler = %name, "unsupported OTEL_TRACES_SAMPLER; using parentbased_always_on"),
            }
        }

        if let Some(props) = var("OTEL_PROPAGATORS") {
            let list: Vec<String> = props.split(',').map(|p| p.trim().to_ascii_lowercase()).collect();
            c.propagate = list.iter().any(|p| p == "tracecontext");
            for p in list.iter().filter(|p| !matches!(p.as_str(), "tracecontext" | "baggage" | "none" | "")) {
                tracing::warn!(propagator = %p, "unsupported propagator ignored (only tracecontext is implemented)");
            }
        }

        for key in ["OTEL_EXPORTER_OTLP_HEADERS", "OTEL_EXPORTER_OTLP_TRACES_HEADERS"] {
            if let Some(h) = var(key) {
                for (k, v) in parse_key_values(key, &h) {
                    if valid_header(&k, &v) {
                        upsert(&mut c.headers, k, v);
                    } else {
                        tracing::warn!(variable = key, header = %k, "invalid header name or value ignored");
                    }
                }
            }
        }
        for key in ["OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"] {
            if let Some(p) = var(key).filter(|p| p != "http/protobuf") {
                tracing::warn!(variable = key, protocol = %p, "only http/protobuf is supported; using it");
            }
        }

        let ms = |key: &str| {
            var(key).and_then(|v| match v.parse::<u64>() {
                Ok(n) => Some(Duration::from_millis(n)),
                Err(_) => {
                    tracing::warn!(variable = key, value = %v, "not a number of milliseconds; ignored");
                    None
                }
            })
        };
        let count = |key: &str| {
            var(key).and_then(|v| match v.parse::<usize>() {
                Ok(n) if n > 0 => Some(n),
                _ => {
                    tracing::warn!(variable = key, value = %v, "not a positive integer; ignored");
                    None
                }
            })
        };
        if let Some(t) = ms("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT").or_else(|| ms("OTEL_EXPORTER_OTLP_TIMEOUT")) {
            c.export_timeout = t;
        }
        if let Some(d) = ms("OTEL_BSP_SCHEDULE_DELAY") {
            c.schedule_delay = d;
        }
        if let Some(n) = count("OTEL_BSP_MAX_QUEUE_SIZE") {
            c.max_queue_size = n;
        }
        if let Some(n) = count("OTEL_BSP_MAX_EXPORT_BATCH_SIZE") {
            c.max_export_batch_size = n;
        }
        c.normalise();
        c
    }

    /// Applies the config file's explicit fields (they win over the environment).
    pub fn with_overrides(mut self, o: &TracingOverrides) -> TracingConfig {
        if let Some(e) = o.enabled {
            self.enabled = e;
        }
        if let Some(base) = &o.endpoint {
            self.endpoint = traces_url(base);
        }
        if let Some(n) = &o.service_name {
            self.service_name = n.clone();
        }
        if let Some(s) = &o.sampler {
            self.sampler = s.clone();
        }
        if let Some(n) = o.max_export_batch_size {
            self.max_export_batch_size = n;
        }
        if let Some(n) = o.max_queue_size {
            self.max_queue_size = n;
        }
        if let Some(d) = o.schedule_delay {
            self.schedule_delay = d;
        }
        if let Some(d) = o.export_timeout {
            self.export_timeout = d;
        }
        for (k, v) in &o.headers {
            upsert(&mut self.headers, k.clone(), v.clone());
        }
        self.normalise();
        self
    }

    /// A batch can never be larger than the queue (the OTel batch processor clamps the same way).
    fn normalise(&mut self) {
        self.max_queue_size = self.max_queue_size.max(1);
        self.max_export_batch_size = self.max_export_batch_size.clamp(1, self.max_queue_size);
    }
}

/// `base` + `/v1/traces`, as the spec builds the per-signal URL from `OTEL_EXPORTER_OTLP_ENDPOINT`.
pub fn traces_url(base: &str) -> String {
    format!("{}/v1/traces", base.trim_end_matches('/'))
}

fn upsert(list: &mut Vec<(String, String)>, k: String, v: String) {
    match list.iter_mut().find(|(old, _)| old.eq_ignore_ascii_case(&k)) {
        Some(slot) => slot.1 = v,
        None => list.push((k, v)),
    }
}

/// `k1=v1,k2=v2` with percent-encoded values (the W3C Baggage form the OTel env spec uses).
fn parse_key_values(var: &str, s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        match item.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => {
                out.push((percent_decode(k.trim()), percent_decode(v.trim())));
            }
            _ => tracing::warn!(variable = var, "entry without `key=value` ignored"),
        }
    }
    out
}

fn percent_decode(s: &str) -> String {
    String::from_utf8_lossy(&crate::http1::percent_decode(s.as_bytes())).into_owned()
}

/// A header we can write on the wire without enabling request splitting.
fn valid_header(name: &str, value: &str) -> bool {
    let tchar = |c: u8| c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c);
    !name.is_empty() && name.bytes().all(tchar) && value.bytes().all(|c| c == b'\t' || (0x20..0x7f).contains(&c))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> TracingConfig {
        let m: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        TracingConfig::from_lookup(&move |k| m.get(k).cloned())
    }

    #[test]
    fn defaults() {
        let c = env(&[]);
        assert!(!c.is_active());
        assert_eq!(c.endpoint, "http://localhost:4318/v1/traces");
        assert_eq!(c.service_name, "gatehouse");
        assert_eq!(c.sampler, Sampler::default());
        assert!(c.propagate);
    }

    #[test]
    fn environment_applies() {
        let c = env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/"),
            ("OTEL_SERVICE_NAME", "edge"),
            ("OTEL_RESOURCE_ATTRIBUTES", "service.name=ignored, deployment.environment=prod,team=a%20b"),
            ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "0.1"),
            ("OTEL_PROPAGATORS", "baggage,tracecontext"),
            ("OTEL_EXPORTER_OTLP_HEADERS", "api-key=s%3Dcret,bad header=x"),
            ("OTEL_BSP_MAX_QUEUE_SIZE", "100"),
            ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "500"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "2500"),
        ]);
        assert_eq!(c.endpoint, "http://collector:4318/v1/traces");
        assert_eq!(c.service_name, "edge");
        assert_eq!(
            c.resource_attributes,
            vec![("deployment.environment".into(), "prod".into()), ("team".into(), "a b".into())]
        );
        assert_eq!(c.sampler, Sampler::ParentBased(Box::new(Sampler::TraceIdRatio(0.1))));
        assert!(c.propagate);
        assert_eq!(c.headers, vec![("api-key".to_string(), "s=cret".to_string())]);
        assert_eq!((c.max_queue_size, c.max_export_batch_size), (100, 100), "batch clamped to the queue");
        assert_eq!(c.export_timeout, Duration::from_millis(2500));

        let c = env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://a:1"),
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://b:2/custom"),
            ("OTEL_RESOURCE_ATTRIBUTES", "service.name=from-attrs"),
            ("OTEL_PROPAGATORS", "none"),
            ("OTEL_TRACES_SAMPLER", "nonsense"),
        ]);
        assert_eq!(c.endpoint, "http://b:2/custom");
        assert_eq!(c.service_name, "from-attrs");
        assert!(!c.propagate);
        assert_eq!(c.sampler, Sampler::default());
    }

    #[test]
    fn config_file_beats_env_and_kill_switches_beat_both() {
        let o = TracingOverrides {
            enabled: Some(true),
            endpoint: Some("http://file:4318".into()),
            service_name: Some("from-file".into()),
            ..Default::default()
        };
        let c = env(&[("OTEL_SERVICE_NAME", "from-env"), ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://env:1")])
            .with_overrides(&o);
        assert!(c.is_active());
        assert_eq!((c.service_name.as_str(), c.endpoint.as_str()), ("from-file", "http://file:4318/v1/traces"));
        assert!(!env(&[("OTEL_SDK_DISABLED", "TRUE")]).with_overrides(&o).is_active());
        assert!(!env(&[("OTEL_TRACES_EXPORTER", "none")]).with_overrides(&o).is_active());
        assert!(env(&[("OTEL_SDK_DISABLED", "false")]).with_overrides(&o).is_active());
    }

    #[test]
    fn percent_decoding_is_total() {
        assert_eq!(percent_decode("a%2Cb%"), "a,b%");
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
    }
}
