//! Distributed tracing end to end: the real gateway between a client sending a W3C
//! `traceparent`, a real backend, and a real OTLP/HTTP receiver that decodes the spans with the
//! official OpenTelemetry protobuf package (`crates/testkit/otlp_receiver.py`).

use std::time::Duration;

use gatehouse_testkit::prom::{self, value};
use gatehouse_testkit::{free_port, gateway, get, request, stop, wait_for, Backend, Cfg, OtlpReceiver};
use serde_json::Value;

const PARENT_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_SPAN: &str = "00f067aa0ba902b7";

fn config(receiver: &OtlpReceiver, targets: &[String], log: &std::path::Path, extra: &str) -> String {
    Cfg::new()
        .admin()
        .upstream("backend", targets)
        .route_with("users", "backend", "match: {path: {template: \"/users/{id}\"}}")
        .routes_yaml(extra)
        .yaml(&format!("access_log:\n  enabled: true\n  path: {}", log.display()))
        .yaml(&format!(
            "tracing:\n  enabled: true\n  endpoint: {}\n  service_name: edge\n  schedule_delay: 50ms",
            receiver.endpoint
        ))
        .to_yaml()
}

fn of_kind(spans: &[Value], kind: i64) -> Vec<&Value> {
    spans.iter().filter(|s| s["kind"] == kind).collect()
}

fn temp_log(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("gh-trace-{name}-{}-{}", std::process::id(), free_port()));
    std::fs::create_dir_all(&dir).expect("dir");
    dir.join("access.log")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_traced_request_yields_linked_server_and_client_spans_and_propagates() {
    let receiver = OtlpReceiver::start();
    let backend = Backend::named("b").await;
    let log = temp_log("linked");
    let gw = gateway(&config(&receiver, &[backend.url()], &log, "")).await;

    let tp = format!("00-{PARENT_TRACE}-{PARENT_SPAN}-01");
    let r =
        request(gw.addr, "GET", "/users/42?token=secret", &[("traceparent", &tp), ("tracestate", "rojo=1")], b"").await;
    assert_eq!(r.status, 200);

    // The backend got a new traceparent: same trace, the gateway's CLIENT span as parent.
    let sent = backend.last().expect("backend got the request");
    let up = sent.header("traceparent").expect("traceparent forwarded").to_string();
    let parts: Vec<&str> = up.split('-').collect();
    assert_eq!(parts.len(), 4, "{up}");
    assert_eq!((parts[0], parts[1], parts[3]), ("00", PARENT_TRACE, "01"));
    assert_ne!(parts[2], PARENT_SPAN, "the caller's span id is replaced");
    assert_eq!(sent.header("tracestate"), Some("rojo=1"));
    assert_eq!(sent.header_all("traceparent").len(), 1, "the client's own header is not forwarded too");

    let spans = receiver.wait_spans(2, Duration::from_secs(5));
    let (server, client) = (of_kind(&spans, 2), of_kind(&spans, 3));
    assert_eq!((server.len(), client.len()), (1, 1), "{spans:?}");
    let (s, c) = (server[0], client[0]);
    assert_eq!(s["trace_id"], PARENT_TRACE);
    assert_eq!(s["parent_span_id"], PARENT_SPAN);
    assert_eq!(c["trace_id"], PARENT_TRACE);
    assert_eq!(c["parent_span_id"], s["span_id"]);
    assert_eq!(c["span_id"], parts[2], "the upstream saw the CLIENT span's id");
    assert_eq!(s["name"], "GET /users/{id}", "named by the route template, not the raw path");
    let sa = &s["attributes"];
    assert_eq!(sa["http.route"], "/users/{id}");
    assert_eq!(sa["url.path"], "/users/42");
    assert_eq!(sa["http.response.status_code"], 200);
    assert!(!s.to_string().contains("secret"), "the query string is not exported");
    assert_eq!(c["attributes"]["http.response.status_code"], 200);
    assert_eq!(s["resource"]["service.name"], "edge");

    // The access log names the same trace and the SERVER span.
    let found =
        wait_for(Duration::from_secs(3), || async { std::fs::read_to_string(&log).is_ok_and(|t| !t.is_empty()) }).await;
    assert!(found);
    let line: Value =
        serde_json::from_str(std::fs::read_to_string(&log).expect("log").lines().next().expect("line")).expect("JSON");
    assert_eq!(line["trace_id"], PARENT_TRACE);
    assert_eq!(line["span_id"], s["span_id"]);

    // The exporter counts a batch once the collector's answer is read, a moment after the
    // receiver printed the spans: wait for it (bounded).
    let admin = gw.admin.expect("admin");
    let exported = wait_for(Duration::from_secs(3), || async move {
        let m = prom::parse(&get(admin, "/metrics").await.text());
        value(&m, "gatehouse_tracing_spans_total", &[("result", "exported")]) >= 2.0
    })
    .await;
    assert!(exported, "the exported-spans counter did not reach 2");
    stop(gw).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_attempt_gets_its_client_span_and_gateway_errors_mark_the_server_span() {
    let receiver = OtlpReceiver::start();
    let backend = Backend::named("b").await;
    // The first target refuses connections: the request is retried on the second.
    let dead = format!("http://127.0.0.1:{}", free_port());
    let log = temp_log("attempts");
    let gw = gateway(&config(&receiver, &[dead, backend.url()], &log, "")).await;

    // New traces (no traceparent): the gateway starts them. Round robin makes the dead target
    // the first pick of every other request; those are retried on the live one.
    for _ in 0..4 {
        assert_eq!(get(gw.addr, "/users/1").await.status, 200);
    }
    // A gateway-made 404: a SERVER span without any CLIENT span.
    assert_eq!(get(gw.addr, "/nope").await.status, 404);

    // 5 SERVER spans; 6 CLIENT spans (two retried requests with two attempts each, two direct).
    let spans = receiver.wait_spans(11, Duration::from_secs(5));
    let clients = of_kind(&spans, 3);
    let failed: Vec<&Value> =
        clients.iter().copied().filter(|c| c["attributes"]["error.type"] == "connect_error").collect();

    assert!(!failed.is_empty(), "a refused connection is a failed CLIENT span: {spans:?}");
    let failed = failed[0];
    let server =
        of_kind(&spans, 2).into_iter().find(|s| s["span_id"] == failed["parent_span_id"]).expect("its SERVER span");
    let attempts: Vec<&Value> =
        of_kind(&spans, 3).into_iter().filter(|c| c["parent_span_id"] == server["span_id"]).collect();
    assert_eq!(attempts.len(), 2, "one CLIENT span per attempt: {attempts:?}");
    assert_eq!(server["attributes"]["http.response.status_code"], 200);
    assert_eq!(failed["status"]["code"], 2, "the failed attempt is an error");

    let not_found =
        of_kind(&spans, 2).into_iter().find(|s| s["attributes"]["http.response.status_code"] == 404).expect("404 span");
    assert!(of_kind(&spans, 3).iter().all(|c| c["parent_span_id"] != not_found["span_id"]));
    assert_eq!(not_found["name"], "GET", "no route: named by the method only");
    stop(gw).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_tracing_off_traceparent_passes_through_untouched() {
    let backend = Backend::named("b").await;
    let gw = Cfg::new().upstream("backend", &[backend.url()]).route("all", "backend").start().await;
    let tp = format!("00-{PARENT_TRACE}-{PARENT_SPAN}-01");
    assert_eq!(request(gw.addr, "GET", "/x", &[("traceparent", &tp)], b"").await.status, 200);
    assert_eq!(backend.last().and_then(|r| r.header("traceparent").map(str::to_string)), Some(tp));
    stop(gw).await;
}
