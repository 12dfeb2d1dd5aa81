#!/usr/bin/env python3
"""A real gRPC service for tests: the official `grpcio` server, without code generation.

Service `test.Echo`, bytes in and bytes out (identity serializers, no protobuf), insecure (h2c
with prior knowledge, as every insecure gRPC channel speaks). Listens on 127.0.0.1 (an ephemeral
port unless --port is given), prints `PORT <n>` once bound, and exits when its standard input
closes (the test process is gone) or on SIGTERM/SIGKILL.

Methods:
  Unary         echoes the request; initial metadata: `x-seen-keys` (the request metadata keys,
                sorted, comma-joined), `x-echo-<name>` for every request key `x-test-<name>`,
                `x-time-remaining-ms` when the call has a deadline; trailing metadata
                `x-trailer: yes` and `x-trailer-bin: 00 01 fe ff` (a binary trailer).
  ServerStream  request = a count in ASCII; answers `msg-0` .. `msg-<count-1>`.
  ClientStream  answers the concatenation of every request message.
  Bidi          echoes each request message as it arrives.
  Fail          aborts with NOT_FOUND "no such thing", trailing metadata `x-fail: yes`.
  Slow          request = milliseconds in ASCII; waits that long (or until the call is
                cancelled), then answers `done`.
"""

import argparse
import os
import sys
import threading
import time
from concurrent import futures

import grpc

BIN_TRAILER = bytes([0x00, 0x01, 0xFE, 0xFF])


def unary(request, context):
    md = context.invocation_metadata()
    keys = sorted({k for k, _ in md})
    initial = [("x-seen-keys", ",".join(keys))]
    for k, v in md:
        if k.startswith("x-test-") and not k.endswith("-bin"):
            initial.append(("x-echo-" + k[len("x-test-") :], v))
    remaining = context.time_remaining()
    # Without a deadline grpcio reports an effectively infinite time.
    if remaining is not None and remaining < 86400:
        initial.append(("x-time-remaining-ms", str(int(remaining * 1000))))
    context.send_initial_metadata(initial)
    context.set_trailing_metadata((("x-trailer", "yes"), ("x-trailer-bin", BIN_TRAILER)))
    return request


def server_stream(request, context):
    for i in range(int(request.decode("ascii"))):
        yield b"msg-%d" % i


def slow_stream(request, context):
    # N messages 300 ms apart: a proxy that buffers the stream delivers them all at the end.
    for i in range(int(request.decode("ascii"))):
        if i:
            time.sleep(0.3)
        yield b"msg-%d" % i


def client_stream(request_iterator, context):
    return b"".join(request_iterator)


def bidi(request_iterator, context):
    for m in request_iterator:
        yield m


def fail(request, context):
    context.set_trailing_metadata((("x-fail", "yes"),))
    context.abort(grpc.StatusCode.NOT_FOUND, "no such thing")


def slow(request, context):
    end = time.monotonic() + int(request.decode("ascii")) / 1000.0
    while time.monotonic() < end and context.is_active():
        time.sleep(0.01)
    return b"done"


HANDLERS = {
    "Unary": grpc.unary_unary_rpc_method_handler(unary),
    "ServerStream": grpc.unary_stream_rpc_method_handler(server_stream),
    "SlowStream": grpc.unary_stream_rpc_method_handler(slow_stream),
    "ClientStream": grpc.stream_unary_rpc_method_handler(client_stream),
    "Bidi": grpc.stream_stream_rpc_method_handler(bidi),
    "Fail": grpc.unary_unary_rpc_method_handler(fail),
    "Slow": grpc.unary_unary_rpc_method_handler(slow),
}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, default=0)
    args = p.parse_args()

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=32))
    # No serializers: the handlers see and return raw bytes.
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("test.Echo", HANDLERS),))
    port = server.add_insecure_port("127.0.0.1:%d" % args.port)
    if port == 0:
        sys.stderr.write("grpc_server.py: cannot bind 127.0.0.1:%d\n" % args.port)
        sys.exit(1)
    server.start()
    sys.stdout.write("PORT %d\n" % port)
    sys.stdout.flush()

    # Exit with the test process: its end closes our stdin.
    def watch_stdin():
        while sys.stdin.buffer.read(4096):
            pass
        os._exit(0)

    threading.Thread(target=watch_stdin, daemon=True).start()
    server.wait_for_termination()


if __name__ == "__main__":
    main()
