#!/usr/bin/env python3
"""Latency of an unchanged route while a 10,000-route config is swapped in (issue 7).

Runs the release gateway (`target/release/gatehouse`) with a small config, a local HTTP backend
(Python, keep-alive), and one keep-alive client that sends GET /stable in a loop for a bounded
time; one second in, it PUTs a 10,000-route config through the admin API. Reports the p50/p99 of
/stable before and during the swap (from the PUT until its answer), and the gateway's own
`took_ms`. Only 127.0.0.1; every loop is bounded in time; kills only what it started.

    python3 bench/reload_swap.py [--routes 10000] [--seconds 4]
"""
import argparse, http.client, http.server, json, os, socket, subprocess, sys, tempfile, threading, time

def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p

class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are separate writes
    def do_GET(self):
        body = b"ok"
        self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers(); self.wfile.write(body)
    def log_message(self, *a): pass

def config(listen, admin, backend, token, routes):
    s = (f"listeners:\n  - address: 127.0.0.1:{listen}\nadmin:\n  address: 127.0.0.1:{admin}\n  token: {token}\n"
         f"server:\n  watch_config: false\nupstreams:\n  - name: backend\n    targets:\n      - url: http://127.0.0.1:{backend}\n"
         "routes:\n  - name: stable\n    upstream: backend\n    match: {path: {prefix: /stable}}\n")
    for i in range(routes):
        m = [f"prefix: /svc{i}", f"exact: /exact/{i}", f'template: "/t{i}/{{id}}"'][i % 3]
        s += f"  - name: r{i}\n    upstream: backend\n    match:\n      path:\n        {m}\n"
    return s

def pct(v, q):
    v = sorted(v); return v[min(len(v) - 1, int(len(v) * q))] if v else float("nan")

def main():
    ap = argparse.ArgumentParser(); ap.add_argument("--routes", type=int, default=10000); ap.add_argument("--seconds", type=float, default=4.0)
    a = ap.parse_args()
    binary = os.path.join(os.path.dirname(__file__), "..", "target", "release", "gatehouse")
    backend = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=backend.serve_forever, daemon=True).start()
    listen, admin, token = free_port(), free_port(), "reload-bench-token-0123456789"
    d = tempfile.mkdtemp(); path = os.path.join(d, "g.yaml")
    open(path, "w").write(config(listen, admin, backend.server_port, token, 10))
    big = config(listen, admin, backend.server_port, token, a.routes)
    p = subprocess.Popen([binary, "--log-level", "warn", "run", "--config", path, "--workers", "1"])
    try:
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                c = http.client.HTTPConnection("127.0.0.1", admin, timeout=1); c.request("GET", "/readyz")
                if c.getresponse().status == 200: break
            except OSError: time.sleep(0.05)
        lat, swap = [], {}
        def put():
            time.sleep(1.0)
            c = http.client.HTTPConnection("127.0.0.1", admin, timeout=60)
            swap["start"] = time.perf_counter()
            c.request("PUT", "/config", body=big.encode(), headers={"Authorization": f"Bearer {token}"})
            r = c.getresponse(); body = r.read()
            swap["end"] = time.perf_counter(); swap["status"] = r.status; swap["body"] = json.loads(body)
        t = threading.Thread(target=put); t.start()
        c = http.client.HTTPConnection("127.0.0.1", listen, timeout=5)
        c.connect(); c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        end = time.perf_counter() + a.seconds; failed = 0
        while time.perf_counter() < end:
            t0 = time.perf_counter(); c.request("GET", "/stable"); r = c.getresponse(); r.read(); t1 = time.perf_counter()
            if r.status != 200: failed += 1
            lat.append((t0, t1 - t0))
        t.join(timeout=60)
        before = [l for (s, l) in lat if s < swap.get("start", 0)]
        during = [l for (s, l) in lat if swap.get("start", 0) <= s <= swap.get("end", 0)]
        print(json.dumps({
            "routes": a.routes, "put_status": swap.get("status"), "gateway_took_ms": swap.get("body", {}).get("took_ms"),
            "put_wall_ms": round((swap.get("end", 0) - swap.get("start", 0)) * 1000, 1), "failed": failed,
            "before": {"n": len(before), "p50_ms": round(pct(before, .5) * 1000, 3), "p99_ms": round(pct(before, .99) * 1000, 3)},
            "during": {"n": len(during), "p50_ms": round(pct(during, .5) * 1000, 3), "p99_ms": round(pct(during, .99) * 1000, 3)},
        }, indent=1))
    finally:
        p.terminate(); p.wait(timeout=10); backend.shutdown()

if __name__ == "__main__":
    main()
