//! Distributed tracing: W3C trace context in and out, a SERVER span per request and a CLIENT span
//! per upstream attempt, exported over OTLP/HTTP protobuf by a dedicated thread.
//!
//! Invariants: the request path only pays for what it uses: with tracing off there is no `Tracer`
//! (the caller holds `Option<Arc<Tracer>>`); an unsampled span is ids and flags on the stack (plus
//! a reference-count bump for a received `tracestate`), never a heap allocation, and still
//! propagates a `traceparent` with flags `00` so downstream services see one trace. Only sampled
//! spans record attributes, and finishing one hands a `SpanRecord` to the exporter's bounded queue
//! without ever blocking (`export`). Span end times come from a monotonic clock, so a wall-clock
//! step never yields a negative duration. We write our own exporter instead of using the
//! opentelemetry crates: far less to compile, no tracing-layer cost per request, and no async
//! exporter sharing the workers' reactors.

pub mod config;
pub mod context;
pub mod export;
pub mod proto;
pub mod sampler;

use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

pub use config::{TracingConfig, TracingOverrides};
pub use context::{format_traceparent, parse_traceparent, parse_tracestate, TraceContext, TRACEPARENT_LEN};
pub use export::{Endpoint, ExportCounters, Exporter, ExporterSettings, TraceError};
pub use proto::{AttrValue, KeyValue, SpanKind, SpanRecord, StatusCode};
pub use sampler::Sampler;

use context::FLAG_SAMPLED;

/// Semantic-convention attribute names (OpenTelemetry HTTP conventions, stable).
pub mod attr {
    pub const HTTP_REQUEST_METHOD: &str = "http.request.method";
    pub const HTTP_REQUEST_METHOD_ORIGINAL: &str = "http.request.method_original";
    pub const HTTP_RESPONSE_STATUS_CODE: &str = "http.response.status_code";
    pub const HTTP_ROUTE: &str = "http.route";
    pub const URL_PATH: &str = "url.path";
    pub const URL_SCHEME: &str = "url.scheme";
    pub const URL_FULL: &str = "url.full";
    pub const SERVER_ADDRESS: &str = "server.address";
    pub const SERVER_PORT: &str = "server.port";
    pub const CLIENT_ADDRESS: &str = "client.address";
    pub const NETWORK_PEER_ADDRESS: &str = "network.peer.address";
    pub const NETWORK_PEER_PORT: &str = "network.peer.port";
    pub const USER_AGENT_ORIGINAL: &str = "user_agent.original";
    pub const ERROR_TYPE: &str = "error.type";
    pub const HTTP_REQUEST_RESEND_COUNT: &str = "http.request.resend_count";
}

/// The instrumentation scope name in exported data.
pub const SCOPE_NAME: &str = "gatehouse";

/// Sampling, id generation and the exporter, built once from a `TracingConfig`.
#[derive(Debug)]
pub struct Tracer {
    sampler: Sampler,
    propagate: bool,
    exporter: Exporter,
    service_name: String,
}

impl Tracer {
    /// Builds the tracer and starts its exporter thread; `Ok(None)` when tracing is off (config or
    /// `OTEL_SDK_DISABLED` / `OTEL_TRACES_EXPORTER=none`).
    pub fn new(cfg: &TracingConfig) -> Result<Option<Arc<Tracer>>, TraceError> {
        if !cfg.is_active() {
            return Ok(None);
        }
        let endpoint = Endpoint::parse(&cfg.endpoint)?;
        let mut resource = vec![
            ("service.name".to_string(), cfg.service_name.clone()),
            ("telemetry.sdk.name".to_string(), SCOPE_NAME.to_string()),
            ("telemetry.sdk.language".to_string(), "rust".to_string()),
            ("telemetry.sdk.version".to_string(), env!("CARGO_PKG_VERSION").to_string()),
        ];
        for (k, v) in &cfg.resource_attributes {
            match resource.iter_mut().find(|(old, _)| old == k) {
                Some(slot) => slot.1 = v.clone(),
                None => resource.push((k.clone(), v.clone())),
            }
        }
        let exporter = Exporter::start(ExporterSettings {
            endpoint,
            headers: cfg.headers.clone(),
            preamble: proto::Preamble::new(&resource, SCOPE_NAME, env!("CARGO_PKG_VERSION")),
            max_batch: cfg.max_export_batch_size,
            max_queue: cfg.max_queue_size,
            schedule_delay: cfg.schedule_delay,
            export_timeout: cfg.export_timeout,
            max_retries: cfg.max_retries,
            initial_backoff: cfg.retry_backoff,
        })?;
        Ok(Some(Arc::new(Tracer {
            sampler: cfg.sampler.clone(),
            propagate: cfg.propagate,
            exporter,
            service_name: cfg.service_name.clone(),
        })))
    }

    /// Whether `traceparent`/`tracestate` are read from requests and written to upstreams
    /// (`OTEL_PROPAGATORS` includes `tracecontext`, the default).
    pub fn propagates(&self) -> bool {
        self.propagate
    }

    pub fn service_name(&self) -> &str {
        &self.service_name
    }

    /// Reads the incoming context from the request's `traceparent` and `tracestate` values;
    /// `None` when there is none, it is invalid, or propagation is off.
    pub fn extract(&self, traceparents: &[&[u8]], tracestates: &[&[u8]]) -> Option<TraceContext> {
        if !self.propagate {
            return None;
        }
        TraceContext::extract(traceparents, tracestates)
    }

    /// Starts the SERVER span of a request: continues `incoming`'s trace or starts a new one, and
    /// makes the sampling decision for this process's part of the trace.
    pub fn start_server(self: &Arc<Self>, incoming: Option<TraceContext>) -> ServerSpan {
        let (trace_id, parent, trace_state, parent_sampled) = match incoming {
            Some(c) => {
                let sampled = c.is_sampled();
                (c.trace_id, Some(c.span_id), c.trace_state, Some(sampled))
            }
            None => (sampler::new_trace_id(), None, None, None),
        };
        let sampled = self.sampler.should_sample(parent_sampled, &trace_id);
        let ctx = TraceContext {
            trace_id,
            span_id: sampler::new_span_id(),
            flags: if sampled { FLAG_SAMPLED } else { 0 },
            trace_state,
        };
        let rec = sampled.then(|| Box::new(Recording::new(self.clone(), parent, parent.is_some())));
        ServerSpan { ctx, rec, propagate: self.propagate }
    }

    pub fn counters(&self) -> &ExportCounters {
        self.exporter.counters()
    }

    /// Spans waiting for export.
    pub fn queued(&self) -> usize {
        self.exporter.queued()
    }

    /// Exports what is queued; `false` if that did not finish within `timeout`.
    pub fn flush(&self, timeout: std::time::Duration) -> bool {
        self.exporter.flush(timeout)
    }

    /// Exports what is queued within `timeout` and stops the exporter thread; spans finished after
    /// this are dropped (counted). Call on gateway shutdown, after the workers have drained.
    /// (Dropping the last `Arc<Tracer>`, e.g. after a reload replaced it, shuts down in the
    /// background instead: the last owner may be a worker finishing a span, which must not wait.)
    pub fn shutdown(&self, timeout: std::time::Duration) -> bool {
        self.exporter.shutdown(timeout)
    }

    fn export(&self, span: SpanRecord) {
        self.exporter.enqueue(span);
    }
}

/// What a sampled span records; boxed so an unsampled span stays small and allocation-free.
#[derive(Debug)]
struct Recording {
    tracer: Arc<Tracer>,
    parent: Option<[u8; 8]>,
    parent_is_remote: bool,
    start_unix_nano: u64,
    start: Instant,
    attributes: Vec<KeyValue>,
    method: Option<String>,
    route: Option<String>,
}

impl Recording {
    fn new(tracer: Arc<Tracer>, parent: Option<[u8; 8]>, parent_is_remote: bool) -> Recording {
        let start_unix_nano = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
        Recording {
            tracer,
            parent,
            parent_is_remote,
            start_unix_nano,
            start: Instant::now(),
            attributes: Vec::with_capacity(10),
            method: None,
            route: None,
        }
    }

    fn set(&mut self, key: &'static str, value: AttrValue) {
        match self.attributes.iter_mut().find(|kv| kv.key == key) {
            Some(kv) => kv.value = value,
            None => self.attributes.push(KeyValue { key: key.into(), value }),
        }
    }

    fn set_method(&mut self, method: &str) {
        // Semantic conventions: known methods as is, anything else as `_OTHER` plus the original,
        // which keeps span names low-cardinality.
        const KNOWN: [&str; 9] = ["CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "TRACE"];
        let m = if KNOWN.contains(&method) {
            method
        } else {
            self.set(attr::HTTP_REQUEST_METHOD_ORIGINAL, AttrValue::Str(method.into()));
            "_OTHER"
        };
        self.set(attr::HTTP_REQUEST_METHOD, AttrValue::Str(m.into()));
        self.method = Some(m.into());
    }

    /// Ends the span. `server` decides the status rule: a server's 4xx is the client's fault
    /// (status unset), a client span's 4xx is an error of that call.
    fn finish(mut self, ctx: &TraceContext, kind: SpanKind, status: Option<u16>, error_type: Option<&str>) {
        let elapsed = self.start.elapsed().as_nanos() as u64;
        let err_floor = if kind == SpanKind::Server { 500 } else { 400 };
        if let Some(code) = status {
            self.set(attr::HTTP_RESPONSE_STATUS_CODE, AttrValue::Int(i64::from(code)));
        }
        let error = match (error_type, status) {
            (Some(e), _) => Some(e.to_string()),
            (None, Some(code)) if code >= err_floor => Some(code.to_string()),
            _ => None,
        };
        let (code, message) = match &error {
            Some(e) => {
                self.set(attr::ERROR_TYPE, AttrValue::Str(e.clone()));
                (StatusCode::Error, if error_type.is_some() { e.clone() } else { String::new() })
            }
            None => (StatusCode::Unset, String::new()),
        };
        let method = self.method.as_deref().unwrap_or("HTTP");
        let name = match (&self.route, kind) {
            (Some(route), SpanKind::Server) => format!("{method} {route}"),
            _ => method.to_string(),
        };
        let record = SpanRecord {
            trace_id: ctx.trace_id,
            span_id: ctx.span_id,
            parent_span_id: self.parent,
            parent_is_remote: self.parent_is_remote,
            trace_state: ctx.trace_state.clone(),
            name,
            kind,
            start_unix_nano: self.start_unix_nano,
            end_unix_nano: self.start_unix_nano.saturating_add(elapsed),
            flags: ctx.flags,
            attributes: std::mem::take(&mut self.attributes),
            status: code,
            status_message: message,
        };
        self.tracer.export(record);
    }
}

/// The span of one request as the gateway serves it (kind SERVER).
///
/// Dropping it without `finish` (e.g. the client went away and the request future was dropped)
/// still exports it, with `error.type = "aborted"`.
#[derive(Debug)]
pub struct ServerSpan {
    ctx: TraceContext,
    rec: Option<Box<Recording>>,
    propagate: bool,
}

impl ServerSpan {
    /// This span's context (trace id, own span id, flags): for the access log.
    pub fn context(&self) -> &TraceContext {
        &self.ctx
    }

    pub fn is_sampled(&self) -> bool {
        self.rec.is_some()
    }

    pub fn trace_id_hex(&self) -> String {
        self.ctx.trace_id_hex()
    }

    pub fn span_id_hex(&self) -> String {
        self.ctx.span_id_hex()
    }

    /// Records the request line and peers (call once the head is parsed). `path` is without the
    /// query (it may hold credentials); `client_address` is the resolved client (after trusted
    /// X-Forwarded-For), `peer` the TCP peer.
    pub fn set_request(
        &mut self,
        method: &str,
        path: &str,
        server_address: Option<&str>,
        client_address: Option<&str>,
        peer: Option<&str>,
    ) {
        if let Some(r) = &mut self.rec {
            r.set_method(method);
            r.set(attr::URL_PATH, AttrValue::Str(path.into()));
            if let Some(s) = server_address {
                r.set(attr::SERVER_ADDRESS, AttrValue::Str(s.into()));
            }
            if let Some(c) = client_address {
                r.set(attr::CLIENT_ADDRESS, AttrValue::Str(c.into()));
            }
            if let Some(p) = peer {
                r.set(attr::NETWORK_PEER_ADDRESS, AttrValue::Str(p.into()));
            }
        }
    }

    /// The matched route template (`http.route`), which also names the span `METHOD route`.
    pub fn set_route(&mut self, route: &str) {
        if let Some(r) = &mut self.rec {
            r.set(attr::HTTP_ROUTE, AttrValue::Str(route.into()));
            r.route = Some(route.into());
        }
    }

    /// Any other attribute; the value is only converted when the span is sampled.
    pub fn set_str(&mut self, key: &'static str, value: &str) {
        if let Some(r) = &mut self.rec {
            r.set(key, AttrValue::Str(value.into()));
        }
    }

    pub fn set_int(&mut self, key: &'static str, value: i64) {
        if let Some(r) = &mut self.rec {
            r.set(key, AttrValue::Int(value));
        }
    }

    /// A CLIENT span for one upstream attempt, child of this span. Each retry gets its own.
    pub fn child_client(&self) -> ClientSpan {
        let ctx = TraceContext {
            trace_id: self.ctx.trace_id,
            span_id: sampler::new_span_id(),
            flags: self.ctx.flags,
            trace_state: self.ctx.trace_state.clone(),
        };
        let rec = self.rec.as_ref().map(|r| Box::new(Recording::new(r.tracer.clone(), Some(self.ctx.span_id), false)));
        ClientSpan { ctx, rec, propagate: self.propagate }
    }

    /// Ends the span with the status sent to the client (`None` if none was sent) and an error
    /// kind (`error.type`, e.g. `upstream_timeout`); 5xx without a kind is an error too.
    pub fn finish(mut self, status: Option<u16>, error_type: Option<&str>) {
        if let Some(rec) = self.rec.take() {
            rec.finish(&self.ctx, SpanKind::Server, status, error_type);
        }
    }
}

impl Drop for ServerSpan {
    fn drop(&mut self) {
        if let Some(rec) = self.rec.take() {
            rec.finish(&self.ctx, SpanKind::Server, None, Some("aborted"));
        }
    }
}

/// One upstream attempt (kind CLIENT); send `traceparent()` / `tracestate()` with it.
#[derive(Debug)]
pub struct ClientSpan {
    ctx: TraceContext,
    rec: Option<Box<Recording>>,
    propagate: bool,
}

impl ClientSpan {
    pub fn context(&self) -> &TraceContext {
        &self.ctx
    }

    /// The `traceparent` to send upstream (replacing the client's), or `None` when propagation is
    /// off. Unsampled spans propagate too, with flags `00`.
    pub fn traceparent(&self) -> Option<[u8; TRACEPARENT_LEN]> {
        self.propagate.then(|| self.ctx.traceparent())
    }

    /// The `tracestate` to send upstream (the validated incoming one), if any.
    pub fn tracestate(&self) -> Option<&str> {
        if self.propagate {
            self.ctx.trace_state.as_deref()
        } else {
            None
        }
    }

    /// Records the attempt's request: method, the target's address and port, and the full URL.
    pub fn set_request(&mut self, method: &str, server_address: &str, server_port: u16, url_full: Option<&str>) {
        if let Some(r) = &mut self.rec {
            r.set_method(method);
            r.set(attr::SERVER_ADDRESS, AttrValue::Str(server_address.into()));
            r.set(attr::SERVER_PORT, AttrValue::Int(i64::from(server_port)));
            if let Some(u) = url_full {
                r.set(attr::URL_FULL, AttrValue::Str(u.into()));
            }
        }
    }

    pub fn set_str(&mut self, key: &'static str, value: &str) {
        if let Some(r) = &mut self.rec {
            r.set(key, AttrValue::Str(value.into()));
        }
    }

    pub fn set_int(&mut self, key: &'static str, value: i64) {
        if let Some(r) = &mut self.rec {
            r.set(key, AttrValue::Int(value));
        }
    }

    /// Ends the attempt with the upstream's status (`None` when no response came) and an error
    /// kind (e.g. `connect_error`, `upstream_timeout`); 4xx/5xx without a kind are errors too.
    pub fn finish(mut self, status: Option<u16>, error_type: Option<&str>) {
        if let Some(rec) = self.rec.take() {
            rec.finish(&self.ctx, SpanKind::Client, status, error_type);
        }
    }
}

impl Drop for ClientSpan {
    fn drop(&mut self) {
        if let Some(rec) = self.rec.take() {
            rec.finish(&self.ctx, SpanKind::Client, None, Some("aborted"));
        }
    }
}

#[cfg(test)]
pub(crate) mod tests_support {
    use super::*;

    pub fn span() -> SpanRecord {
        SpanRecord {
            trace_id: [1; 16],
            span_id: [2; 8],
            parent_span_id: None,
            parent_is_remote: false,
            trace_state: None,
            name: "GET".into(),
            kind: SpanKind::Server,
            start_unix_nano: 1,
            end_unix_nano: 2,
            flags: 1,
            attributes: vec![],
            status: StatusCode::Unset,
            status_message: String::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn tracer(sampler: Sampler) -> Arc<Tracer> {
        // A collector that is never reached: these tests look at spans, not at export.
        let cfg = TracingConfig {
            enabled: true,
            endpoint: "http://127.0.0.1:9/v1/traces".into(),
            sampler,
            schedule_delay: Duration::from_secs(3600),
            max_retries: 0,
            ..TracingConfig::default()
        };
        Tracer::new(&cfg).expect("builds").expect("enabled")
    }

    #[test]
    fn disabled_means_no_tracer() {
        assert!(Tracer::new(&TracingConfig::default()).expect("ok").is_none());
        let https = TracingConfig { enabled: true, endpoint: "https://c:4318/v1/traces".into(), ..Default::default() };
        assert!(matches!(Tracer::new(&https), Err(TraceError::HttpsUnsupported(_))));
    }

    #[test]
    fn continues_an_incoming_trace() {
        let t = tracer(Sampler::default());
        let incoming = TraceContext::extract(
            &[b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"],
            &[b"rojo=00f067aa0ba902b7"],
        );
        let server = t.start_server(incoming);
        assert!(server.is_sampled());
        assert_eq!(server.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_ne!(server.span_id_hex(), "00f067aa0ba902b7");
        let client = server.child_client();
        let tp = client.traceparent().expect("propagates");
        let parsed = parse_traceparent(&tp).expect("valid");
        assert_eq!(parsed.trace_id, server.context().trace_id);
        assert_eq!(parsed.span_id, client.context().span_id);
        assert_ne!(parsed.span_id, server.context().span_id);
        assert!(parsed.is_sampled());
        assert_eq!(client.tracestate(), Some("rojo=00f067aa0ba902b7"));
        client.finish(Some(200), None);
        server.finish(Some(200), None);
        assert_eq!(t.queued(), 2);
    }

    #[test]
    fn unsampled_still_propagates_and_records_nothing() {
        let t = tracer(Sampler::default());
        let incoming = parse_traceparent(b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00");
        let mut server = t.start_server(incoming);
        assert!(!server.is_sampled());
        server.set_request("GET", "/x", None, None, None);
        let client = server.child_client();
        let tp = client.traceparent().expect("propagates");
        assert!(tp.ends_with(b"-00") && tp.starts_with(b"00-4bf92f3577b34da6a3ce929d0e0e4736-"));
        client.finish(Some(200), None);
        server.finish(Some(200), None);
        assert_eq!(t.queued(), 0);
        assert_eq!(Arc::strong_count(&t), 1, "unsampled spans hold no tracer reference");
        let off = tracer(Sampler::AlwaysOff);
        let root = off.start_server(None);
        assert!(!root.is_sampled() && root.context().trace_id != [0; 16]);
    }

    #[test]
    fn dropping_the_last_tracer_reference_never_blocks() {
        let t = tracer(Sampler::AlwaysOn);
        let span = t.start_server(None);
        drop(t);
        let started = std::time::Instant::now();
        span.finish(Some(200), None); // drops the last Arc<Tracer>, as a worker would after a reload
        assert!(started.elapsed() < Duration::from_millis(200), "{:?}", started.elapsed());
    }

    #[test]
    fn drop_without_finish_exports_an_aborted_span() {
        let t = tracer(Sampler::AlwaysOn);
        drop(t.start_server(None));
        assert_eq!(t.queued(), 1);
    }
}
