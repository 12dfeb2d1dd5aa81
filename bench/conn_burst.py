#!/usr/bin/env python3
"""Memory after a burst of client connections (issue 13): RSS of a gateway process before, while
N client connections are open, and after they all closed.

    bench/conn_burst.py --bin target/release/gatehouse --conns 1000 10000

Starts the binary on examples/bench.yaml against a tiny backend on 127.0.0.1 (ephemeral
ports), opens N connections (half send one complete request and stay open idle, half send a
partial head and stay half-open), reads RSS from /proc, closes them all, waits for the
gateway to notice, and reads RSS again. Prints one Markdown row per burst size.
"""
import argparse, os, socket, subprocess, sys, threading, time, http.server, socketserver

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


class Ok(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        self.send_response(200)
        self.send_header("content-length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *a):
        pass


class Backend(socketserver.ThreadingTCPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        pass  # clients of the burst close without reading: not the backend's problem


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.path.join(ROOT, "target/release/gatehouse"))
    ap.add_argument("--conns", type=int, nargs="+", default=[1000, 10000])
    ap.add_argument("--settle", type=float, default=3.0, help="seconds to wait after closing")
    a = ap.parse_args()

    backend = Backend(("127.0.0.1", 0), Ok)
    threading.Thread(target=backend.serve_forever, daemon=True).start()
    port = free_port()
    env = dict(os.environ, LISTEN_PORT=str(port), BACKEND_PORT=str(backend.server_address[1]))
    gw = subprocess.Popen([a.bin, "run", "-c", os.path.join(ROOT, "examples/bench.yaml")], env=env,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        # Warm: a few proxied requests so pools and buffers exist before the baseline.
        for _ in range(20):
            c = socket.create_connection(("127.0.0.1", port))
            c.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            while c.recv(4096):
                pass
            c.close()
        time.sleep(0.5)
        print("| connections | RSS before (MiB) | RSS with them open | RSS after they closed |")
        print("|---|---|---|---|")
        for n in a.conns:
            before = rss_kib(gw.pid)
            socks = []
            for i in range(n):
                s = socket.create_connection(("127.0.0.1", port))
                if i % 2 == 0:
                    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                else:
                    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-Partial: ")
                socks.append(s)
            # Read the complete requests' answers so those connections are idle keep-alive.
            for s in socks[::2]:
                s.settimeout(5)
                try:
                    s.recv(4096)
                except OSError:
                    pass
            time.sleep(1.0)
            during = rss_kib(gw.pid)
            for s in socks:
                s.close()
            time.sleep(a.settle)
            after = rss_kib(gw.pid)
            print(f"| {n} | {before/1024:.1f} | {during/1024:.1f} | {after/1024:.1f} |", flush=True)
    finally:
        gw.terminate()
        gw.wait()
        backend.shutdown()


if __name__ == "__main__":
    sys.exit(main())
