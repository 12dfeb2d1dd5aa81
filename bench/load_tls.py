#!/usr/bin/env python3
"""HTTPS and HTTP/2 load benchmark: Gatehouse vs nginx, same certificate, same run.

Started by bench/load_tls.sh (which builds Gatehouse, installs the tools and makes the
certificate); stdlib only. It mirrors the shared harness (../shared/bench/harness.py), which only
loads http:// targets:

- one backend: a single-process nginx answering 200 with a 64-byte body (the harness's
  configs/backend-nginx.conf, rendered here);
- targets, each started and stopped per round in its own session (process group):
  `nginx` (TLS proxy: `listen ssl http2`, the same certificate, upstream keep-alive, no access log,
  worker_processes = PROXY_THREADS) and `gatehouse` (examples/bench-tls.yaml);
- rows: `https-h1` (wrk, HTTP/1.1 over TLS, keep-alive, closed loop) and `h2` (h2load, ALPN h2,
  closed loop with a fixed number of streams per connection);
- pinning like the harness's `shared` preset: load generator on cpu0, proxy and backend on cpu1
  (sched_setaffinity on the started processes, the same as `taskset`);
- CPU time of each process tree from /proc before and after each load (CPU us/req), load
  generator CPU from wait4, RSS of the proxy's tree, other processes' CPU during the run (noise);
- targets rotate order every round; ratios vs nginx are paired per round.

Only 127.0.0.1 is contacted. Every load is bounded (-d / -D plus a hard timeout). Processes are
stopped by the process group of the process this script started, never by name.
"""
import argparse
import json
import os
import re
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
CLK = os.sysconf("SC_CLK_TCK")
NGINX = "/usr/sbin/nginx"
PF_KTHREAD = 0x00200000
PROTOCOLS = ("https-h1", "h2")

PIN_PRESETS = {
    "none": {"lg": None, "proxy": None, "backend": None},
    "shared": {"lg": [0], "proxy": [1], "backend": [1]},
    "split": {"lg": [0], "proxy": [1], "backend": [0]},
}

BACKEND_CONF = """# Backend: the shared harness's configs/backend-nginx.conf (one process, fixed body).
daemon off;
master_process off;
worker_processes 1;
pid {run}/backend.pid;
error_log {run}/backend-error.log warn;
events {{ worker_connections 8192; }}
http {{
    access_log off;
    keepalive_timeout 75s;
    keepalive_requests 10000000;
    default_type text/plain;
    server {{
        listen 127.0.0.1:{backend_port} backlog=4096;
        location / {{ return 200 "{body}"; }}
    }}
}}
"""

# The harness's configs/nginx.conf plus TLS and h2 on the listener. nginx's TLS defaults are kept
# (ciphers, curves); protocols limited to TLS 1.2/1.3, what Gatehouse offers. The upstream
# keep-alive pool keeps 256 idle connections per worker, like the harness and like Gatehouse's
# default `pool.max_idle_per_target`: the h2 row's default conns x streams (50 x 4 = 200 requests
# in flight) stays below it, so neither proxy churns upstream connections. With more in flight
# (`--streams 10`: 500) both close and reopen upstream connections (the "upstream conns closed"
# column), which measures the pools, not HTTP/2.
NGINX_TLS_CONF = """# nginx as a TLS-terminating reverse proxy (h2 and http/1.1 by ALPN).
daemon off;
master_process on;
worker_processes {threads};
pid {run}/nginx.pid;
error_log {run}/nginx-error.log warn;
events {{ worker_connections 8192; }}
http {{
    access_log off;
    keepalive_timeout 75s;
    keepalive_requests 10000000;   # also bounds requests per h2 connection (nginx >= 1.19.7)
    upstream backend {{
        server 127.0.0.1:{backend_port};
        keepalive 256;
        keepalive_requests 10000000;
    }}
    server {{
        listen 127.0.0.1:{listen_port} ssl http2 backlog=4096;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        ssl_protocols TLSv1.2 TLSv1.3;
        location / {{
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
}}
"""


# ------------------------------------------------------------------ /proc ---
def _stat_fields(pid):
    with open(f"/proc/{pid}/stat") as f:
        s = f.read()
    return s[s.rfind(")") + 2:].split()


def process_tree(root):
    kids = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            ppid = int(_stat_fields(d)[1])
        except (OSError, IndexError, ValueError):
            continue
        kids.setdefault(ppid, []).append(int(d))
    out, todo = [], [root]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return out


def cpu_seconds(pids):
    t = 0
    for p in pids:
        try:
            f = _stat_fields(p)
            t += int(f[11]) + int(f[12])
        except (OSError, IndexError, ValueError):
            pass
    return t / CLK


def rss_mib(pids):
    kb = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        kb += int(line.split()[1])
        except OSError:
            pass
    return kb / 1024


def others_snapshot(exclude):
    """{pid: utime+stime+cutime+cstime} of user-space processes outside `exclude` (as the harness)."""
    snap = {}
    for d in os.listdir("/proc"):
        if not d.isdigit() or int(d) in exclude:
            continue
        try:
            f = _stat_fields(d)
            if int(f[6]) & PF_KTHREAD:
                continue
            snap[int(d)] = int(f[11]) + int(f[12]) + int(f[13]) + int(f[14])
        except (OSError, IndexError, ValueError):
            pass
    return snap


def foreign_pct(before, after, wall):
    j = sum(v - before.get(p, 0) for p, v in after.items() if v >= before.get(p, 0))
    return 100 * j / CLK / max(wall, 1e-6)


def wait_quiet(threshold, max_wait, our_pids):
    t_start = time.time()
    excl = set(our_pids) | {os.getpid()}
    said = 0.0
    while True:
        s0, t0 = others_snapshot(excl), time.time()
        time.sleep(1.0)
        f = foreign_pct(s0, others_snapshot(excl), time.time() - t0)
        if f < threshold or time.time() - t_start >= max_wait:
            if said:
                print(f"    (waited {time.time() - t_start:.0f}s for a quiet machine)", flush=True)
            return f
        if time.time() - said > 30:
            said = time.time()
            print(f"    (waiting for a quiet machine: other processes use {f:.0f}% of a CPU)", flush=True)


def time_wait_count(port):
    n, hexport = 0, f":{port:04X}"
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(path) as f:
                next(f)
                for line in f:
                    parts = line.split()
                    if parts[3] == "06" and (parts[1].endswith(hexport) or parts[2].endswith(hexport)):
                        n += 1
        except (OSError, StopIteration, IndexError):
            pass
    return n


# -------------------------------------------------------------- processes ---
def port_free(port):
    s = socket.socket()
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def free_port(exclude=()):
    for port in range(18440, 18999):
        if port not in exclude and port_free(port):
            return port
    raise SystemExit("no free port in 18440-18998")


class Proc:
    """A started process in its own session (pgid == pid), optionally pinned."""

    def __init__(self, name, argv, env, cpus, log_path, cwd):
        self.name = name
        self.log_path = log_path
        self.log = open(log_path, "wb")
        pre = (lambda: os.sched_setaffinity(0, cpus)) if cpus else None
        self.p = subprocess.Popen(argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL,
                                  stdout=self.log, stderr=subprocess.STDOUT,
                                  start_new_session=True, preexec_fn=pre)
        self.pid = self.p.pid

    def alive(self):
        return self.p.poll() is None

    def pids(self):
        return process_tree(self.pid) if self.alive() else []

    def tail(self, n=800):
        self.log.flush()
        with open(self.log_path, errors="replace") as f:
            return f.read()[-n:]

    def stop(self):
        if self.p.poll() is None:
            try:
                os.killpg(self.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.p.wait(timeout=8)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.p.wait(timeout=5)
        try:  # children that outlived the leader in its group
            os.killpg(self.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.log.close()


def get(port, tls_ctx, alpn=None, timeout=2.0):
    """One GET / on 127.0.0.1:port (over TLS when tls_ctx); returns (status, body, alpn, tls info)."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        s, info, proto = raw, {}, None
        if tls_ctx is not None:
            if alpn:
                tls_ctx.set_alpn_protocols(alpn)
            s = tls_ctx.wrap_socket(raw, server_hostname="localhost")
            proto = s.selected_alpn_protocol()
            info = {"version": s.version(), "cipher": s.cipher()[0]}
            if proto == "h2":
                return None, b"", proto, info
        s.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        m = re.match(rb"HTTP/1\.[01] (\d{3})", head)
        return (int(m.group(1)) if m else None), body, proto, info
    finally:
        raw.close()


def tls_context(cafile):
    ctx = ssl.create_default_context(cafile=cafile)
    return ctx


def wait_ready(proc, port, body, cafile, timeout=20.0):
    deadline, last = time.time() + timeout, "no answer"
    while time.time() < deadline:
        if proc is not None and not proc.alive():
            return f"exited with code {proc.p.returncode}"
        try:
            ctx = tls_context(cafile) if cafile else None
            st, got, _, _ = get(port, ctx, alpn=["http/1.1"] if ctx else None, timeout=1.0)
            if st == 200 and (body is None or got == body):
                return None
            last = f"status {st}, body {got[:60]!r}"
        except (OSError, ssl.SSLError) as e:
            last = str(e)
        time.sleep(0.2)
    return f"not ready after {timeout:.0f}s: {last}"


def alpn_probe(port, cafile):
    """What the server picks when the client offers h2 and http/1.1 (None: no ALPN answer)."""
    try:
        _, _, proto, info = get(port, tls_context(cafile), alpn=["h2", "http/1.1"])
        return proto, info
    except (OSError, ssl.SSLError) as e:
        return None, {"error": str(e)}


# ---------------------------------------------------------- load runners ---
def run_timed(cmd, cpus, timeout):
    """Run a load generator; (stdout, cpu s, wall s, rc). Killed at `timeout` and on interrupt."""
    pre = (lambda: os.sched_setaffinity(0, cpus)) if cpus else None
    out = tempfile.TemporaryFile()
    t0 = time.time()
    p = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                         preexec_fn=pre)
    try:
        while True:
            pid, status, ru = os.wait4(p.pid, os.WNOHANG)
            if pid:
                break
            if time.time() > t0 + timeout:
                p.kill()
                pid, status, ru = os.wait4(p.pid, 0)
                break
            time.sleep(0.05)
    except BaseException:
        p.kill()
        p.wait()
        raise
    p.returncode = os.waitstatus_to_exitcode(status)
    wall = time.time() - t0
    out.seek(0)
    text = out.read().decode(errors="replace")
    out.close()
    return text, ru.ru_utime + ru.ru_stime, wall, p.returncode


def parse_wrk(text):
    r = {}
    m = re.search(r"Requests/sec:\s*([\d.]+)", text)
    r["rps"] = float(m.group(1)) if m else float("nan")
    m = re.search(r"(\d+) requests in", text)
    r["requests"] = int(m.group(1)) if m else 0
    err = 0
    m = re.search(r"Non-2xx or 3xx responses:\s*(\d+)", text)
    err += int(m.group(1)) if m else 0
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if m:
        err += sum(int(x) for x in m.groups())
    r["errors"] = err
    r["protocol"] = "http/1.1"
    return r


def parse_h2load(text):
    r = {"rps": float("nan"), "requests": 0, "errors": 0}
    m = re.search(r"finished in [\d.]+m?s, ([\d.]+) req/s", text)
    if m:
        r["rps"] = float(m.group(1))
    m = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, "
                  r"(\d+) errored, (\d+) timeout", text)
    if m:
        total, started, done, ok, failed, errored, tmo = map(int, m.groups())
        r["requests"] = done
        r["succeeded"] = ok
        r["errors"] = failed + errored + tmo
    m = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", text)
    if m:
        r["non2xx"] = sum(int(x) for x in m.groups()[1:])
        r["errors"] += r["non2xx"]
    m = re.search(r"Application protocol: (\S+)", text)
    r["protocol"] = m.group(1) if m else None
    m = re.search(r"TLS Protocol: (\S+)\s+Cipher: (\S+)", text)
    if m:  # h2load's own cipher preference (nghttp2's) may differ from wrk's OpenSSL defaults
        r["tls_negotiated"] = f"{m.group(1)} {m.group(2)}"
    return r


def load_cmd(a, proto, url, lg_threads, seconds):
    if proto == "https-h1":
        return [a.wrk, f"-t{lg_threads}", f"-c{a.conns}", f"-d{seconds}s", "--timeout", "5s", url]
    # h2 only in ALPN: a server without h2 cannot silently turn this into an HTTP/1.1 run.
    return [a.h2load, f"-t{lg_threads}", f"-c{a.conns}", f"-m{a.streams}", f"-D{seconds}",
            "--npn-list=h2", url]


# ---------------------------------------------------------------- measure ---
def measure_target(a, name, cmd_argv, env, backend, pin, run_dir, protos, cafile):
    """Start one target, run every protocol's load against it, stop it. {proto: result}."""
    out = {}
    port = a.listen_port
    if not port_free(port):
        return {p: {"error": f"port {port} busy before start"} for p in protos}
    proc = Proc(name, cmd_argv, env, pin["proxy"], os.path.join(run_dir, f"{name}.log"), ROOT)
    try:
        err = wait_ready(proc, port, a.body, cafile)
        if err:
            return {p: {"error": f"{err} {proc.tail()!r}"} for p in protos}
        alpn, tls_info = alpn_probe(port, cafile)
        url = f"https://127.0.0.1:{port}/"
        for proto in protos:
            res = {"alpn_offered_h2": alpn == "h2", "tls": tls_info}
            if proto == "h2" and alpn != "h2":
                res["na"] = f"no h2 (ALPN answer to [h2, http/1.1]: {alpn})"
                out[proto] = res
                continue
            if a.warmup > 0:
                run_timed(load_cmd(a, proto, url, a.lg_threads, a.warmup), pin["lg"], a.warmup + 30)
            best = None
            for attempt in range(a.retries + 1):
                sut_pids, be_pids = proc.pids(), backend.pids()
                ours = set(sut_pids) | set(be_pids)
                quiet_before = wait_quiet(a.quiet_threshold, a.quiet_wait, ours)
                excl = ours | {os.getpid()}
                c0, b0 = cpu_seconds(sut_pids), cpu_seconds(be_pids)
                tw0 = time_wait_count(a.backend_port)
                o0, t0 = others_snapshot(excl), time.time()
                text, lg_cpu, wall, rc = run_timed(load_cmd(a, proto, url, a.lg_threads, a.duration),
                                                   pin["lg"], a.duration + 30)
                sut_pids = proc.pids()
                c1, b1 = cpu_seconds(sut_pids), cpu_seconds(be_pids)
                tw1 = time_wait_count(a.backend_port)
                o1, t1 = others_snapshot(excl | set(sut_pids)), time.time()
                run = parse_wrk(text) if proto == "https-h1" else parse_h2load(text)
                if proto == "h2" and run["protocol"] != "h2" and (
                        run["protocol"] or "No protocol negotiated" in text):
                    res["na"] = f"no h2 (h2load: {run['protocol'] or 'no protocol negotiated'})"
                    res["raw_tail"] = text[-400:]
                    best = None
                    break
                if run["rps"] != run["rps"] or run["requests"] == 0:
                    res["error"] = f"{proto}: load generator rc={rc}: {text[-400:]!r}"
                    best = None
                    break
                el = t1 - t0
                run.update({
                    "rc": rc, "wall_s": wall,
                    "quiet_before_pct": quiet_before,
                    "foreign_cpu_pct": foreign_pct(o0, o1, el),
                    "sut_cpu_pct": 100 * (c1 - c0) / el,
                    "be_cpu_pct": 100 * (b1 - b0) / el,
                    "lg_cpu_pct": 100 * lg_cpu / wall,
                    "cpu_us_per_req": 1e6 * (c1 - c0) / max(1, run["requests"]),
                    "be_us_per_req": 1e6 * (b1 - b0) / max(1, run["requests"]),
                    "rss_mib": rss_mib(sut_pids),
                    "upstream_closed": max(0, tw1 - tw0),
                })
                if best is None or run["foreign_cpu_pct"] < best["foreign_cpu_pct"]:
                    best = run
                if run["foreign_cpu_pct"] < a.quiet_threshold:
                    break
                print(f"    ({name} {proto}: other processes used {run['foreign_cpu_pct']:.0f}% of a "
                      f"CPU during the run; attempt {attempt + 1}/{a.retries + 1})", flush=True)
            if best is not None:
                res.update(best)
                res["attempts"] = attempt + 1
                res["noisy"] = best["foreign_cpu_pct"] >= a.quiet_threshold
            if not proc.alive():
                res["error"] = f"exited during the run (code {proc.p.returncode}) {proc.tail()!r}"
            out[proto] = res
        return out
    finally:
        proc.stop()
        for _ in range(50):
            if port_free(port):
                break
            time.sleep(0.1)


# ------------------------------------------------------------------ stats ---
def med(xs):
    xs = [x for x in xs if x == x]
    return statistics.median(xs) if xs else float("nan")


def fmt(x, nd=0):
    return "-" if x != x else f"{x:,.{nd}f}"


def summarize(results, names, protos, meta):
    hdr = ["protocol", "target", "req/s median (min–max)", "ratio vs nginx, paired (min–max)",
           "CPU µs/req", "backend µs/req", "proxy CPU %", "LG CPU %", "RSS MiB",
           "upstream conns closed/run", "errors", "noisy runs"]
    lines = ["| " + " | ".join(hdr) + " |", "|" + "---|" * len(hdr)]
    for proto in protos:
        ref = {r["round"]: r for r in results.get("nginx", {}).get(proto, [])
               if not r.get("error") and not r.get("na")}
        for n in names:
            runs = results[n].get(proto, [])
            ok = [r for r in runs if not r.get("error") and not r.get("na")]
            if not ok:
                na = next((r["na"] for r in runs if r.get("na")), None)
                first = na or next((r.get("error") for r in runs if r.get("error")), "not run")
                label = f"n/a ({na.split(' (')[0]})" if na else "FAILED: " + first[:100]
                lines.append("| " + " | ".join([proto, n, label] + ["–"] * (len(hdr) - 3)) + " |")
                continue
            rps = [r["rps"] for r in ok]
            rr = [r["rps"] / ref[r["round"]]["rps"] for r in ok if r["round"] in ref]
            ratio = "1" if n == "nginx" else (
                f"**{med(rr):.3f}** ({min(rr):.3f}–{max(rr):.3f})" if rr else "–")
            failed = len(runs) - len(ok)
            lines.append("| " + " | ".join([
                proto, n,
                f"{fmt(med(rps))} ({fmt(min(rps))}–{fmt(max(rps))})", ratio,
                fmt(med([r["cpu_us_per_req"] for r in ok]), 1),
                fmt(med([r["be_us_per_req"] for r in ok]), 1),
                fmt(med([r["sut_cpu_pct"] for r in ok])),
                fmt(med([r["lg_cpu_pct"] for r in ok])),
                fmt(med([r["rss_mib"] for r in ok]), 1),
                fmt(med([r["upstream_closed"] for r in ok])),
                str(sum(r["errors"] for r in ok)) + (f" (+{failed} failed runs)" if failed else ""),
                f"{sum(1 for r in ok if r.get('noisy'))}/{len(ok)}",
            ]) + " |")
    allok = [r for n in names for p in protos for r in results[n].get(p, [])
             if not r.get("error") and not r.get("na")]
    foreign = [r["foreign_cpu_pct"] for r in allok]
    tls = {n: next((r["tls"] for p in protos for r in results[n].get(p, []) if r.get("tls")), {})
           for n in names}
    h2tls = {n: next((r["tls_negotiated"] for r in results[n].get("h2", []) if r.get("tls_negotiated")),
                     None) for n in names}
    lines.append("")
    lines.append(
        f"{meta['rounds']} rounds x {meta['duration_s']} s per target and protocol, pin={meta['pin_arg']} "
        f"(load generator cpus {meta['pin']['lg']}, proxy {meta['pin']['proxy']}, backend "
        f"{meta['pin']['backend']}), {meta['proxy_threads']} proxy worker(s). https-h1: wrk -c{meta['conns']} "
        f"(HTTP/1.1 over TLS, keep-alive); h2: h2load -c{meta['conns']} -m{meta['streams']} (ALPN h2). "
        f"Ratio = target req/s / nginx req/s in the same round, median over rounds. CPU µs/req = CPU "
        f"time of the proxy's process tree / requests. Other processes' CPU during runs: median "
        f"{fmt(med(foreign), 1)}%, max {fmt(max(foreign) if foreign else float('nan'), 1)}% of one CPU "
        f"(noisy at >= {meta['quiet_threshold']:g}%). TLS per target (Python probe): "
        + "; ".join(f"{n} {t.get('version', '?')} {t.get('cipher', '?')}" for n, t in tls.items())
        + (". h2load negotiated: " + "; ".join(f"{n} {c}" for n, c in h2tls.items() if c)
           if any(h2tls.values()) else "") + ".")
    return "\n".join(lines)


# ------------------------------------------------------------------- main ---
_stopping = False


def _on_signal(signum, frame):
    global _stopping
    if _stopping:  # a second signal (Ctrl-C plus the wrapper's TERM) must not break the cleanup
        return
    _stopping = True
    raise KeyboardInterrupt


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=int, default=10, help="seconds per measured load")
    ap.add_argument("--warmup", type=int, default=2, help="seconds of warm-up load before each")
    ap.add_argument("--conns", type=int, default=50, help="connections (both rows)")
    ap.add_argument("--streams", type=int, default=4,
                    help="h2 concurrent streams per connection (default 4: 200 in flight, below "
                         "both proxies' 256 idle upstream connections)")
    ap.add_argument("--protocols", default=",".join(PROTOCOLS), help="https-h1,h2 (default both)")
    ap.add_argument("--only", default="nginx,gatehouse", help="targets: nginx,gatehouse")
    ap.add_argument("--pin", default="shared", help="shared (default) | split | none")
    ap.add_argument("--threads", type=int, default=0, help="proxy workers (default: CPUs in the proxy set)")
    ap.add_argument("--body-bytes", type=int, default=64)
    ap.add_argument("--quiet-threshold", type=float, default=5.0)
    ap.add_argument("--quiet-wait", type=float, default=30.0)
    ap.add_argument("--retries", type=int, default=1)
    ap.add_argument("--gatehouse", default=os.path.join(ROOT, "target", "release", "gatehouse"))
    ap.add_argument("--config", default=os.path.join(ROOT, "examples", "bench-tls.yaml"))
    ap.add_argument("--cert", default=os.environ.get("TLS_CERT"))
    ap.add_argument("--key", default=os.environ.get("TLS_KEY"))
    ap.add_argument("--out", default=os.path.join(HERE, "results"))
    ap.add_argument("--summarize", metavar="JSON", help="only print the table of a saved run")
    a = ap.parse_args()
    if a.summarize:
        with open(a.summarize) as f:
            saved = json.load(f)
        print(summarize(saved["results"], list(saved["results"]), saved["meta"]["protocols"], saved["meta"]))
        return

    protos = [p.strip() for p in a.protocols.split(",") if p.strip()]
    if set(protos) - set(PROTOCOLS):
        raise SystemExit(f"--protocols: unknown {sorted(set(protos) - set(PROTOCOLS))}")
    names = [n.strip() for n in a.only.split(",") if n.strip()]
    if set(names) - {"nginx", "gatehouse"}:
        raise SystemExit("--only: nginx and/or gatehouse")
    if not a.cert or not a.key:
        raise SystemExit("TLS_CERT / TLS_KEY (or --cert/--key) are required; load_tls.sh makes them")
    if a.pin not in PIN_PRESETS:
        raise SystemExit("--pin: shared | split | none")
    ncpu = os.cpu_count() or 1
    pin = dict(PIN_PRESETS[a.pin])
    if any(c and max(c) >= ncpu for c in pin.values()):
        print(f"note: {ncpu} CPU(s): pin={a.pin} impossible, not pinning", file=sys.stderr)
        a.pin, pin = "none", dict(PIN_PRESETS["none"])
    threads = a.threads or (len(pin["proxy"]) if pin["proxy"] else ncpu)
    a.lg_threads = len(pin["lg"]) if pin["lg"] else ncpu
    a.wrk = shutil.which("wrk")
    a.h2load = shutil.which("h2load")
    if "https-h1" in protos and not a.wrk:
        raise SystemExit("wrk not found")
    if "h2" in protos and not a.h2load:
        print("note: h2load not found (Debian: nghttp2-client); skipping the h2 row", file=sys.stderr)
        protos.remove("h2")
    if "gatehouse" in names and not os.access(a.gatehouse, os.X_OK):
        raise SystemExit(f"{a.gatehouse}: not built (cargo build --release -p gatehouse)")

    a.body = (b"x" * max(0, a.body_bytes - 1) + b"\n") if a.body_bytes > 0 else b""
    a.backend_port = free_port()
    a.listen_port = free_port(exclude={a.backend_port})
    stamp = time.strftime("%Y%m%d-%H%M%S")
    os.makedirs(a.out, exist_ok=True)
    commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip()
    versions = {}
    for k, cmd in (("nginx", [NGINX, "-v"]), ("wrk", [a.wrk or "wrk", "-v"]),
                   ("h2load", [a.h2load or "h2load", "--version"]), ("openssl", ["openssl", "version"])):
        try:
            o = subprocess.run(cmd, capture_output=True, text=True, timeout=5)
            versions[k] = ((o.stdout + o.stderr).strip().splitlines() or ["?"])[0][:100]
        except (OSError, subprocess.TimeoutExpired):
            pass
    meta = {"when": stamp, "commit": commit, "pin": pin, "pin_arg": a.pin, "proxy_threads": threads,
            "lg_threads": a.lg_threads, "conns": a.conns, "streams": a.streams,
            "duration_s": a.duration, "warmup_s": a.warmup, "rounds": a.rounds, "protocols": protos,
            "targets": names, "body_bytes": len(a.body), "ncpu": ncpu,
            "quiet_threshold": a.quiet_threshold, "versions": versions,
            "config": os.path.relpath(a.config, ROOT)}
    print(f"# tls bench {stamp} ({commit}): pin={a.pin} {pin} proxy_threads={threads} conns={a.conns} "
          f"streams={a.streams} duration={a.duration}s rounds={a.rounds} protocols={','.join(protos)} "
          f"backend_port={a.backend_port} listen_port={a.listen_port}", flush=True)

    run_dir = tempfile.mkdtemp(prefix="gatehouse-tlsbench-")
    with open(os.path.join(run_dir, "backend.conf"), "w") as f:
        f.write(BACKEND_CONF.format(run=run_dir, backend_port=a.backend_port,
                                    body=a.body.decode().replace("\n", "\\n")))
    with open(os.path.join(run_dir, "nginx.conf"), "w") as f:
        f.write(NGINX_TLS_CONF.format(run=run_dir, threads=threads, backend_port=a.backend_port,
                                      listen_port=a.listen_port, cert=a.cert, key=a.key))
    env = dict(os.environ)
    env.update({"LISTEN_PORT": str(a.listen_port), "BACKEND_PORT": str(a.backend_port),
                "PROXY_THREADS": str(threads), "TLS_CERT": a.cert, "TLS_KEY": a.key})
    argv = {
        "nginx": [NGINX, "-e", f"{run_dir}/nginx-error.log", "-p", run_dir, "-c", f"{run_dir}/nginx.conf"],
        "gatehouse": [a.gatehouse, "run", "--config", a.config, "--workers", str(threads),
                      "--log-level", "warn"],
    }
    results = {n: {p: [] for p in protos} for n in names}
    backend = Proc("backend", [NGINX, "-e", f"{run_dir}/backend-error.log", "-p", run_dir,
                               "-c", f"{run_dir}/backend.conf"], env, pin["backend"],
                   os.path.join(run_dir, "backend.log"), run_dir)
    try:
        err = wait_ready(backend, a.backend_port, a.body, None)
        if err:
            raise SystemExit(f"backend failed: {err} {backend.tail()!r}")
        for rnd in range(a.rounds):
            k = rnd % len(names)
            order = names[k:] + names[:k]
            # alternate the protocol order too, so neither row always runs on a freshly started proxy
            pr = protos if rnd % 2 == 0 else list(reversed(protos))
            for name in order:
                got = measure_target(a, name, argv[name], env, backend, pin, run_dir, pr, a.cert)
                for proto in pr:
                    res = got[proto]
                    res["round"] = rnd
                    results[name][proto].append(res)
                    if res.get("na"):
                        line = "n/a: " + res["na"]
                    elif res.get("error"):
                        line = "FAILED " + res["error"]
                    else:
                        line = (f"{fmt(res['rps'])} req/s, proxy {fmt(res['sut_cpu_pct'])}% cpu "
                                f"({fmt(res['cpu_us_per_req'], 1)} us/req), lg {fmt(res['lg_cpu_pct'])}%, "
                                f"backend {fmt(res['be_cpu_pct'])}%, errors {res['errors']}, "
                                f"upstream closed {res['upstream_closed']}, other procs "
                                f"{fmt(res['foreign_cpu_pct'])}%" + (" NOISY" if res.get("noisy") else ""))
                    print(f"  round {rnd + 1}/{a.rounds} {proto:>8} {name:>9}: {line}", flush=True)
    finally:
        backend.stop()
        shutil.rmtree(run_dir, ignore_errors=True)

    table = summarize(results, names, protos, meta)
    print()
    print(table)
    base = os.path.join(a.out, f"{stamp}-tls")
    with open(base + ".json", "w") as f:
        json.dump({"meta": meta, "results": results}, f, indent=1)
    with open(base + ".md", "w") as f:
        f.write(f"tls bench {stamp}, meta: {json.dumps(meta)}\n\n{table}\n")
    print(f"\nraw results: {os.path.relpath(base + '.json', os.getcwd())}")


if __name__ == "__main__":
    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGHUP, _on_signal)
    try:
        main()
    except KeyboardInterrupt:
        print("interrupted; started processes stopped", file=sys.stderr)
        sys.exit(130)
