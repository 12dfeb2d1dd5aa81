//! The tracing module against a real OTLP/HTTP receiver (`otlp_receiver.py`, decoding with the
//! official `opentelemetry-proto` package): what we encode by hand must decode there, with the
//! right ids, parent links, kinds, names, attributes, status and resource.

use std::sync::Arc;
use std::time::Duration;

use gatehouse_core::trace::{
    attr, config::traces_url, parse_traceparent, Sampler, TraceContext, Tracer, TracingConfig,
};
use gatehouse_testkit::{free_port, OtlpReceiver};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(5);

fn config(endpoint: &str) -> TracingConfig {
    TracingConfig {
        enabled: true,
        endpoint: traces_url(endpoint),
        service_name: "gatehouse-test".into(),
        resource_attributes: vec![("deployment.environment".into(), "test".into())],
        sampler: Sampler::default(),
        headers: vec![("x-api-key".into(), "k123".into())],
        schedule_delay: Duration::from_millis(50),
        retry_backoff: Duration::from_millis(50),
        ..TracingConfig::default()
    }
}

fn tracer(cfg: &TracingConfig) -> Arc<Tracer> {
    Tracer::new(cfg).expect("valid config").expect("enabled")
}

fn by_kind(spans: &[Value], kind: u64) -> Value {
    let found: Vec<&Value> = spans.iter().filter(|s| s["kind"] == kind).collect();
    assert_eq!(found.len(), 1, "one span of kind {kind} in {spans:#?}");
    found[0].clone()
}

#[test]
fn server_and_client_spans_arrive_linked() {
    let rx = OtlpReceiver::start();
    let t = tracer(&config(&rx.endpoint));
    let incoming = TraceContext::extract(
        &[b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"],
        &[b"rojo=00f067aa0ba902b7"],
    );
    let mut server = t.start_server(incoming);
    server.set_request("GET", "/users/42", Some("api.example.com"), Some("203.0.113.9"), Some("10.0.0.1"));
    server.set_route("/users/{id}");
    let mut client = server.child_client();
    client.set_request("GET", "127.0.0.1", 8081, Some("http://127.0.0.1:8081/users/42"));
    let sent = parse_traceparent(&client.traceparent().expect("propagates")).expect("valid traceparent");
    client.finish(Some(503), None);
    server.finish(Some(502), Some("upstream_status"));
    assert!(t.flush(WAIT), "flush finishes");

    let spans = rx.wait_spans(2, WAIT);
    assert_eq!(spans.len(), 2, "{spans:#?}");
    let s = by_kind(&spans, 2);
    let c = by_kind(&spans, 3);
    assert_eq!(s["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(c["trace_id"], s["trace_id"]);
    assert_eq!(s["parent_span_id"], "00f067aa0ba902b7", "server span's parent is the caller");
    assert_eq!(c["parent_span_id"], s["span_id"], "client span is the server span's child");
    assert_eq!(c["span_id"].as_str(), Some(hex(&sent.span_id).as_str()), "upstream got the client span's id");
    assert_eq!(s["name"], "GET /users/{id}");
    assert_eq!(c["name"], "GET");
    assert_eq!(s["trace_state"], "rojo=00f067aa0ba902b7");
    // flags: sampled bit, plus HAS_IS_REMOTE (0x100) and IS_REMOTE (0x200) for the remote parent.
    assert_eq!(s["flags"], 0x301);
    assert_eq!(c["flags"], 0x101);
    let (sa, ca) = (&s["attributes"], &c["attributes"]);
    assert_eq!(sa[attr::HTTP_REQUEST_METHOD], "GET");
    assert_eq!(sa[attr::URL_PATH], "/users/42");
    assert_eq!(sa[attr::HTTP_ROUTE], "/users/{id}");
    assert_eq!(sa[attr::SERVER_ADDRESS], "api.example.com");
    assert_eq!(sa[attr::CLIENT_ADDRESS], "203.0.113.9");
    assert_eq!(sa[attr::NETWORK_PEER_ADDRESS], "10.0.0.1");
    assert_eq!(sa[attr::HTTP_RESPONSE_STATUS_CODE], 502);
    assert_eq!(sa[attr::ERROR_TYPE], "upstream_status");
    assert_eq!(s["status"]["code"], 2);
    assert_eq!(s["status"]["message"], "upstream_status");
    assert_eq!(ca[attr::SERVER_PORT], 8081);
    assert_eq!(ca[attr::HTTP_RESPONSE_STATUS_CODE], 503);
    assert_eq!(ca[attr::ERROR_TYPE], "503");
    assert_eq!(c["status"]["code"], 2);
    let (start, end) = (s["start"].as_u64().expect("start"), s["end"].as_u64().expect("end"));
    assert!(start > 1_600_000_000_000_000_000 && end >= start, "{start} {end}");
    for span in [&s, &c] {
        assert_eq!(span["resource"]["service.name"], "gatehouse-test");
        assert_eq!(span["resource"]["deployment.environment"], "test");
        assert_eq!(span["resource"]["telemetry.sdk.language"], "rust");
        assert_eq!(span["scope"]["name"], "gatehouse");
    }
    let reqs = rx.wait_requests(1, WAIT);
    assert!(!reqs.is_empty() && reqs.iter().all(|r| r["headers"]["x-api-key"] == "k123"), "{reqs:#?}");
    assert_eq!(t.counters().spans_exported(), 2);
    assert_eq!((t.counters().spans_dropped(), t.counters().export_failures()), (0, 0));
}

#[test]
fn root_spans_and_4xx_are_not_errors_for_the_server() {
    let rx = OtlpReceiver::start();
    let t = tracer(&config(&rx.endpoint));
    let mut server = t.start_server(None);
    server.set_request("BREW", "/pot", None, None, None);
    server.finish(Some(404), None);
    let spans = rx.spans(WAIT);
    assert_eq!(spans.len(), 1, "{spans:#?}");
    let s = &spans[0];
    assert_eq!(s["parent_span_id"], "");
    assert_eq!(s["flags"], 0x101);
    assert_eq!(s["name"], "_OTHER");
    assert_eq!(s["attributes"][attr::HTTP_REQUEST_METHOD_ORIGINAL], "BREW");
    assert_eq!(s["status"]["code"], 0);
    assert!(s["attributes"].get(attr::ERROR_TYPE).is_none());
}

#[test]
fn full_queue_drops_and_counts() {
    // The collector is down at first, so the exporter is stuck retrying its first batch and the
    // queue fills deterministically; then it comes up and everything queued goes out.
    let port = free_port();
    let cfg = TracingConfig {
        max_queue_size: 5,
        max_export_batch_size: 5,
        max_retries: 50,
        retry_backoff: Duration::from_millis(20),
        schedule_delay: Duration::from_secs(3600),
        ..config(&format!("http://127.0.0.1:{port}"))
    };
    let t = tracer(&cfg);
    for _ in 0..5 {
        t.start_server(None).finish(Some(200), None);
    }
    let deadline = std::time::Instant::now() + WAIT;
    while t.queued() > 0 {
        assert!(std::time::Instant::now() < deadline, "the exporter takes the full batch");
        std::thread::sleep(Duration::from_millis(5));
    }
    for _ in 0..8 {
        t.start_server(None).finish(Some(200), None);
    }
    assert_eq!((t.queued(), t.counters().spans_dropped()), (5, 3));
    let rx = OtlpReceiver::start_with(&["--port", &port.to_string()]);
    assert!(t.flush(WAIT));
    assert_eq!(rx.wait_spans(10, WAIT).len(), 10);
    let c = t.counters();
    assert_eq!((c.spans_exported(), c.spans_dropped(), c.export_failures()), (10, 3, 0));
}

#[test]
fn collector_down_then_up_is_retried() {
    let port = free_port();
    let endpoint = format!("http://127.0.0.1:{port}");
    let cfg = TracingConfig { max_retries: 20, retry_backoff: Duration::from_millis(100), ..config(&endpoint) };
    let t = tracer(&cfg);
    t.start_server(None).finish(Some(200), None);
    // Nothing listens yet: the export fails to connect and backs off.
    assert!(!t.flush(Duration::from_millis(300)));
    assert!(t.counters().export_retries() >= 1);
    let rx = OtlpReceiver::start_with(&["--port", &port.to_string()]);
    assert!(t.flush(WAIT), "exported once the collector is up");
    assert_eq!(rx.spans(WAIT).len(), 1);
    assert_eq!((t.counters().spans_exported(), t.counters().export_failures()), (1, 0));
}

#[test]
fn retryable_statuses_are_retried_then_counted() {
    let rx = OtlpReceiver::start_with(&["--fail-first", "2", "--fail-status", "503", "--retry-after", "0"]);
    let t = tracer(&config(&rx.endpoint));
    t.start_server(None).finish(Some(200), None);
    assert!(t.flush(WAIT));
    let statuses: Vec<Value> = rx.wait_requests(3, WAIT).iter().map(|r| r["status"].clone()).collect();
    assert_eq!(statuses, vec![503, 503, 200]);
    assert_eq!((t.counters().export_retries(), t.counters().spans_exported()), (2, 1));

    // Retries run out: the batch is counted as failed, not retried forever.
    let rx = OtlpReceiver::start_with(&["--fail-first", "100", "--fail-status", "429"]);
    let t = tracer(&TracingConfig { max_retries: 2, ..config(&rx.endpoint) });
    t.start_server(None).finish(Some(200), None);
    assert!(t.flush(WAIT));
    let c = t.counters();
    assert_eq!((c.export_retries(), c.export_failures(), c.spans_failed(), c.spans_exported()), (2, 1, 1, 0));

    // A 400 is final: no retry.
    let rx = OtlpReceiver::start_with(&["--fail-first", "100", "--fail-status", "400"]);
    let t = tracer(&config(&rx.endpoint));
    t.start_server(None).finish(Some(200), None);
    assert!(t.flush(WAIT));
    assert_eq!((t.counters().export_retries(), t.counters().export_failures()), (0, 1));
    // Give a wrongly sent retry time to show up before counting.
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(rx.wait_requests(1, WAIT).len(), 1);
}

#[test]
fn shutdown_flushes_what_is_queued() {
    let rx = OtlpReceiver::start();
    let cfg = TracingConfig { schedule_delay: Duration::from_secs(3600), ..config(&rx.endpoint) };
    let t = tracer(&cfg);
    for _ in 0..3 {
        let s = t.start_server(None);
        s.child_client().finish(Some(200), None);
        s.finish(Some(200), None);
    }
    assert_eq!(t.queued(), 6, "the schedule is an hour: nothing went out yet");
    assert!(t.shutdown(WAIT));
    assert_eq!(rx.wait_spans(6, WAIT).len(), 6);
    assert_eq!(t.counters().spans_exported(), 6);
    t.start_server(None).finish(Some(200), None);
    assert_eq!(t.counters().spans_dropped(), 1, "spans after shutdown are dropped, counted");
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
