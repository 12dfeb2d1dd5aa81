#!/usr/bin/env python3
"""A minimal OTLP/HTTP trace receiver for tests: an independent decoder of what Gatehouse exports.

Listens on 127.0.0.1 (an ephemeral port unless --port is given), prints `PORT <n>` once bound, then
decodes every `POST /v1/traces` body with the official `opentelemetry-proto` package and prints one
JSON object per line on stdout:

  {"event": "request", "status": 200, "path": ..., "content_type": ..., "headers": {...}, "spans": n}
  {"event": "span", "trace_id": hex, "span_id": hex, "parent_span_id": hex, "name": ..., "kind": 2,
   "flags": int, "trace_state": ..., "start": ns, "end": ns, "attributes": {...},
   "status": {"code": int, "message": str}, "resource": {...}, "scope": {"name": ..., "version": ...}}

--fail-first N answers the first N requests with --fail-status (default 503) and --retry-after S,
without decoding them, to exercise the exporter's retries.
"""

import argparse
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

OUT_LOCK = threading.Lock()


def emit(obj):
    with OUT_LOCK:
        sys.stdout.write(json.dumps(obj, sort_keys=True) + "\n")
        sys.stdout.flush()


def any_value(v):
    kind = v.WhichOneof("value")
    if kind is None:
        return None
    if kind in ("string_value", "bool_value", "int_value", "double_value"):
        return getattr(v, kind)
    return str(getattr(v, kind))


def attrs(kvs):
    return {kv.key: any_value(kv.value) for kv in kvs}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as a real collector does

    def log_message(self, *args):
        pass  # stdout carries the JSON lines only

    def reply(self, status, body=b"", extra=()):
        self.send_response(status)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(body)))
        for k, v in extra:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length)
        headers = {k.lower(): v for k, v in self.headers.items()}
        server = self.server
        with server.lock:
            server.seen += 1
            failing = server.seen <= server.args.fail_first
        if failing:
            extra = [("Retry-After", str(server.args.retry_after))] if server.args.retry_after is not None else []
            emit({"event": "request", "status": server.args.fail_status, "path": self.path, "headers": headers})
            self.reply(server.args.fail_status, b"", extra)
            return
        if self.path != "/v1/traces" or headers.get("content-type") != "application/x-protobuf":
            emit({"event": "request", "status": 400, "path": self.path, "headers": headers})
            self.reply(400)
            return
        req = ExportTraceServiceRequest()
        try:
            req.ParseFromString(body)
        except Exception as e:  # noqa: BLE001 - any decode failure is the exporter's bug
            emit({"event": "request", "status": 400, "path": self.path, "error": str(e), "headers": headers})
            self.reply(400)
            return
        n = 0
        for rs in req.resource_spans:
            resource = attrs(rs.resource.attributes)
            for ss in rs.scope_spans:
                scope = {"name": ss.scope.name, "version": ss.scope.version}
                for s in ss.spans:
                    n += 1
                    emit(
                        {
                            "event": "span",
                            "trace_id": s.trace_id.hex(),
                            "span_id": s.span_id.hex(),
                            "parent_span_id": s.parent_span_id.hex(),
                            "trace_state": s.trace_state,
                            "name": s.name,
                            "kind": s.kind,
                            "flags": s.flags,
                            "start": s.start_time_unix_nano,
                            "end": s.end_time_unix_nano,
                            "attributes": attrs(s.attributes),
                            "status": {"code": s.status.code, "message": s.status.message},
                            "resource": resource,
                            "scope": scope,
                        }
                    )
        emit({"event": "request", "status": 200, "path": self.path, "headers": headers, "spans": n})
        self.reply(200, ExportTraceServiceResponse().SerializeToString())


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--fail-first", type=int, default=0)
    p.add_argument("--fail-status", type=int, default=503)
    p.add_argument("--retry-after", type=int, default=None)
    args = p.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    server.args = args
    server.lock = threading.Lock()
    server.seen = 0
    emit_port = "PORT %d" % server.server_address[1]
    with OUT_LOCK:
        sys.stdout.write(emit_port + "\n")
        sys.stdout.flush()
    server.serve_forever()


if __name__ == "__main__":
    main()
