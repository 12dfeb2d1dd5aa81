#!/usr/bin/env python3
"""One call to the `test.Echo` service (see grpc_server.py) with the official `grpcio` client,
printing its outcome as one JSON object on stdout:

  {"code": "OK", "code_value": 0, "details": str|null, "messages": [str, ...],
   "message_lengths": [n, ...], "initial_metadata": {k: v}, "trailing_metadata": {k: v},
   "elapsed_ms": n}

Messages are decoded as Latin-1 (byte for byte); binary (`-bin`) metadata values are printed as
lower-case hex. A repeated metadata key keeps its values joined with ", ".

  grpc_client.py TARGET METHOD [MESSAGE ...] [--metadata k=v ...] [--timeout SECONDS]
                 [--size N] [--pingpong] [--ca FILE] [--server-name NAME]

TARGET is `host:port`. METHOD is Unary, ServerStream, ClientStream, Bidi, Fail, Slow or any other
name (sent as `/test.Echo/<METHOD>` unless it starts with `/`). Unary-request methods send the
first MESSAGE; streaming-request methods send every MESSAGE. `--size N` replaces the messages
with one N-byte pattern message (the output then carries `sha256` of each message instead of
the text). `--pingpong` (Bidi) sends each message only after the previous echo arrived, so it
fails unless both directions stream. `--ca` uses TLS with that root certificate (PEM),
`--server-name` overrides the name checked against the server certificate.
"""

import argparse
import hashlib
import json
import queue
import sys
import time

import grpc

UNARY_REQUEST = {"Unary", "ServerStream", "Fail", "Slow"}
STREAM_RESPONSE = {"ServerStream", "Bidi"}


def md_dict(md):
    out = {}
    for k, v in md or ():
        v = v.hex() if isinstance(v, bytes) else v
        out[k] = out[k] + ", " + v if k in out else v
    return out


def main():
    p = argparse.ArgumentParser()
    p.add_argument("target")
    p.add_argument("method")
    p.add_argument("messages", nargs="*")
    p.add_argument("--metadata", action="append", default=[])
    p.add_argument("--timeout", type=float, default=10.0)
    p.add_argument("--size", type=int)
    p.add_argument("--pingpong", action="store_true")
    p.add_argument("--ca")
    p.add_argument("--server-name")
    a = p.parse_args()

    if a.size is not None:
        messages = [bytes((i * 7 + 3) % 251 for i in range(a.size))]
    else:
        messages = [m.encode("latin-1") for m in a.messages]
    metadata = [tuple(kv.split("=", 1)) for kv in a.metadata]
    path = a.method if a.method.startswith("/") else "/test.Echo/" + a.method
    name = path.rsplit("/", 1)[-1]

    # Never through a proxy from the environment: the test names the exact peer.
    options = [("grpc.enable_http_proxy", 0), ("grpc.max_receive_message_length", 64 << 20)]
    if a.ca:
        with open(a.ca, "rb") as f:
            creds = grpc.ssl_channel_credentials(root_certificates=f.read())
        if a.server_name:
            options.append(("grpc.ssl_target_name_override", a.server_name))
        channel = grpc.secure_channel(a.target, creds, options=options)
    else:
        channel = grpc.insecure_channel(a.target, options=options)

    unary_req = name in UNARY_REQUEST
    stream_resp = name in STREAM_RESPONSE
    if unary_req and stream_resp:
        stub = channel.unary_stream(path)
    elif unary_req:
        stub = channel.unary_unary(path)
    elif stream_resp:
        stub = channel.stream_stream(path)
    else:
        stub = channel.stream_unary(path)

    echoes = queue.Queue()

    def requests():
        for i, m in enumerate(messages):
            if a.pingpong and i > 0:
                # The previous echo must come back before the next message leaves.
                echoes.get(timeout=a.timeout)
            yield m

    request = messages[0] if messages else b""
    if not unary_req:
        request = requests()

    received = []
    start = time.monotonic()
    try:
        if stream_resp:
            call = stub(request, timeout=a.timeout, metadata=metadata)
            for m in call:
                received.append(m)
                echoes.put(m)
        else:
            response, call = stub.with_call(request, timeout=a.timeout, metadata=metadata)
            received.append(response)
    except grpc.RpcError as e:
        call = e
    elapsed_ms = int((time.monotonic() - start) * 1000)

    out = {
        "code": call.code().name,
        "code_value": call.code().value[0],
        "details": call.details(),
        "initial_metadata": md_dict(call.initial_metadata()),
        "trailing_metadata": md_dict(call.trailing_metadata()),
        "message_lengths": [len(m) for m in received],
        "elapsed_ms": elapsed_ms,
    }
    if a.size is not None:
        out["sha256"] = [hashlib.sha256(m).hexdigest() for m in received]
        out["sent_sha256"] = hashlib.sha256(messages[0]).hexdigest()
    else:
        out["messages"] = [m.decode("latin-1") for m in received]
    sys.stdout.write(json.dumps(out, sort_keys=True) + "\n")
    sys.stdout.flush()
    channel.close()


if __name__ == "__main__":
    main()
