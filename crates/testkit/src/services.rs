//! Real services the tests need beside the gateway: `redis-server` (`RedisServer`), an OTLP
//! trace receiver (`OtlpReceiver`) and a gRPC service and client (`GrpcServer`, `grpc_call`),
//! the last two in Python with the official protobuf and `grpcio` packages.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::launch::free_port;

/// A real `redis-server` on an ephemeral 127.0.0.1 port, without persistence; killed on drop.
///
/// The binary is required: if it is missing, `start` panics with how to install it (the tests
/// must fail, not skip; `.ci/run` installs Debian's `redis-server`). `REDIS_SERVER` overrides
/// the binary path.
pub struct RedisServer {
    child: Option<Child>,
    pub port: u16,
    dir: PathBuf,
    /// TLS only (`start_tls`): the port speaks TLS with a certificate signed by `ca_file()`.
    tls: bool,
}

impl RedisServer {
    /// Starts a server on a free port and waits (up to 10 s) until it answers PING.
    pub fn start() -> RedisServer {
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("gatehouse-redis-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let mut r = RedisServer { child: None, port, dir, tls: false };
        r.restart();
        r
    }

    /// Like `start`, but the port speaks only TLS: a test CA (made with the `openssl` CLI, in
    /// the server's temp dir) signs a certificate for 127.0.0.1. Clients need no certificate.
    pub fn start_tls() -> RedisServer {
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("gatehouse-redis-tls-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let run = |args: &[&str]| {
            let out = Command::new("openssl").args(args).current_dir(&dir).output().expect("openssl runs");
            assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        };
        run(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=gatehouse test CA",
        ]);
        run(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=127.0.0.1",
        ]);
        std::fs::write(dir.join("ext.cnf"), "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n").expect("ext");
        run(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
        ]);
        let mut r = RedisServer { child: None, port, dir, tls: true };
        r.restart();
        r
    }

    /// The test CA that signed a TLS server's certificate.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    fn binary() -> String {
        std::env::var("REDIS_SERVER").unwrap_or_else(|_| "redis-server".to_string())
    }

    /// `redis://127.0.0.1:<port>/0` (`rediss://` for a TLS server).
    pub fn url(&self) -> String {
        let scheme = if self.tls { "rediss" } else { "redis" };
        format!("{scheme}://127.0.0.1:{}/0", self.port)
    }

    /// Whether the server answers PING right now.
    pub fn ping(&self) -> bool {
        use std::io::{Read, Write};
        if self.tls {
            let out = Command::new("redis-cli")
                .args(["--tls", "--cacert"])
                .arg(self.ca_file())
                .args(["-p", &self.port.to_string(), "ping"])
                .output();
            return out.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("PONG"));
        }
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let Ok(mut s) = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else { return false };
        let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
        let mut buf = [0u8; 16];
        s.write_all(b"PING\r\n").is_ok() && matches!(s.read(&mut buf), Ok(n) if buf[..n].starts_with(b"+PONG"))
    }

    /// Kills the server (its data is gone: no persistence).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// (Re)starts the server on the same port; waits until it answers PING (up to 10 s).
    pub fn restart(&mut self) {
        self.stop();
        let bin = Self::binary();
        let port = self.port.to_string();
        let mut cmd = Command::new(&bin);
        if self.tls {
            cmd.args(["--port", "0", "--tls-port", &port, "--tls-auth-clients", "no"]).args([
                "--tls-cert-file",
                "server.pem",
                "--tls-key-file",
                "server.key",
                "--tls-ca-cert-file",
                "ca.pem",
            ]);
        } else {
            cmd.args(["--port", &port]);
        }
        let child = cmd
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        match child {
            Ok(c) => self.child = Some(c),
            Err(e) => panic!(
                "cannot run `{bin}` ({e}): the cluster-mode tests need a real Redis. Install it \
                 (Debian/Ubuntu: `apt-get install redis-server`; `.ci/run` does) or set REDIS_SERVER"
            ),
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::time::Instant::now() < deadline {
            if self.ping() {
                return;
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!("`{bin}` exited with {status} before answering PING on port {}", self.port);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("`{bin}` did not answer PING on port {} within 10 s", self.port);
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A real OTLP/HTTP trace receiver: `otlp_receiver.py` decoding with the official
/// `opentelemetry-proto` Python package (an independent decoder of what the exporter encodes).
/// Killed on drop.
pub struct OtlpReceiver {
    /// Base URL (`http://127.0.0.1:PORT`), as `OTEL_EXPORTER_OTLP_ENDPOINT` takes it.
    pub endpoint: String,
    pub port: u16,
    child: Child,
    events: Arc<Mutex<Vec<serde_json::Value>>>,
}

impl OtlpReceiver {
    pub fn start() -> OtlpReceiver {
        OtlpReceiver::start_with(&[])
    }

    /// Starts the receiver with extra arguments (`--port N`, `--fail-first N`, `--fail-status S`,
    /// `--retry-after S`); waits up to 10 s for it to listen.
    pub fn start_with(args: &[&str]) -> OtlpReceiver {
        use std::io::BufRead;
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("otlp_receiver.py");
        let mut child = Command::new("python3")
            .arg(&script)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 runs (the OTLP receiver needs `pip install opentelemetry-proto`, see .ci/run)");
        let stdout = child.stdout.take().expect("piped stdout");
        let events = Arc::new(Mutex::new(Vec::new()));
        let (port_tx, port_rx) = std::sync::mpsc::channel();
        let ev = events.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(p) = line.strip_prefix("PORT ") {
                    let _ = port_tx.send(p.trim().parse::<u16>().expect("port number"));
                } else if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
                    ev.lock().expect("events").push(v);
                }
            }
        });
        let port = match port_rx.recv_timeout(Duration::from_secs(10)) {
            Ok(p) => p,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the OTLP receiver did not start (is opentelemetry-proto installed? see .ci/run)");
            }
        };
        OtlpReceiver { endpoint: format!("http://127.0.0.1:{port}"), port, child, events }
    }

    fn events_of(&self, kind: &str) -> Vec<serde_json::Value> {
        self.events.lock().expect("events").iter().filter(|e| e["event"] == kind).cloned().collect()
    }

    /// The decoded spans received so far, waiting up to `wait` for at least one.
    pub fn spans(&self, wait: Duration) -> Vec<serde_json::Value> {
        self.wait_spans(1, wait)
    }

    /// Waits up to `wait` for at least `n` spans; returns all received (maybe fewer on timeout).
    pub fn wait_spans(&self, n: usize, wait: Duration) -> Vec<serde_json::Value> {
        self.wait_events("span", n, wait)
    }

    /// One entry per export request (`status` answered, request `headers`, `spans` decoded),
    /// waiting up to `wait` for at least `n`. The receiver's output is read asynchronously, so an
    /// export the client saw answered may take a moment to show here.
    pub fn wait_requests(&self, n: usize, wait: Duration) -> Vec<serde_json::Value> {
        self.wait_events("request", n, wait)
    }

    fn wait_events(&self, kind: &str, n: usize, wait: Duration) -> Vec<serde_json::Value> {
        let deadline = std::time::Instant::now() + wait;
        loop {
            let events = self.events_of(kind);
            if events.len() >= n || std::time::Instant::now() >= deadline {
                return events;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A real gRPC server: `grpc_server.py`, the official `grpcio` server with service `test.Echo`
/// (bytes in and out, no code generation; methods `Unary`, `ServerStream`, `ClientStream`,
/// `Bidi`, `Fail`, `Slow`), insecure (h2c) on 127.0.0.1. Killed on drop; it also exits when the
/// test process does (its stdin closes).
pub struct GrpcServer {
    pub addr: SocketAddr,
    child: Child,
}

impl GrpcServer {
    /// Starts the server on an ephemeral port; waits up to 10 s for it to listen.
    pub fn start() -> GrpcServer {
        use std::io::BufRead;
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("grpc_server.py");
        let mut child = Command::new("python3")
            .arg(&script)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 runs (the gRPC server needs `pip install grpcio`, see .ci/run)");
        let stdout = child.stdout.take().expect("piped stdout");
        let (port_tx, port_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(p) = line.strip_prefix("PORT ") {
                    let _ = port_tx.send(p.trim().parse::<u16>().expect("port number"));
                }
            }
        });
        let port = match port_rx.recv_timeout(Duration::from_secs(10)) {
            Ok(p) => p,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the gRPC server did not start (is grpcio installed? see .ci/run)");
            }
        };
        GrpcServer { addr: SocketAddr::from(([127, 0, 0, 1], port)), child }
    }

    /// The upstream target URL for the gateway (`h2c://127.0.0.1:PORT`).
    pub fn h2c_url(&self) -> String {
        format!("h2c://{}", self.addr)
    }
}

impl Drop for GrpcServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One call with the official `grpcio` client (`grpc_client.py`) to `target` (`host:port`):
/// `method` of `test.Echo` (or a full `/pkg.Service/Method` path), then `args` (messages and
/// options such as `--metadata k=v`, `--timeout S`, `--size N`, `--pingpong`, `--ca FILE`,
/// `--server-name NAME`; see the script). Returns the script's JSON: `code` (`"OK"`,
/// `"NOT_FOUND"`, ...), `code_value`, `details`, `messages`, `message_lengths`,
/// `initial_metadata`, `trailing_metadata`, `elapsed_ms`. Blocking; the process is killed after
/// 30 s.
pub fn grpc_call(target: &str, method: &str, args: &[&str]) -> serde_json::Value {
    use std::io::Read;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("grpc_client.py");
    let mut child = Command::new("python3")
        .arg(&script)
        .arg(target)
        .arg(method)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs (the gRPC client needs `pip install grpcio`, see .ci/run)");
    let (mut out, mut err) = (child.stdout.take().expect("stdout"), child.stderr.take().expect("stderr"));
    let reader = std::thread::spawn(move || {
        let (mut o, mut e) = (Vec::new(), Vec::new());
        let _ = out.read_to_end(&mut o);
        let _ = err.read_to_end(&mut e);
        (o, e)
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Ok(Some(s)) = child.try_wait() {
            break Some(s);
        }
        if std::time::Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let (o, e) = reader.join().expect("reader");
    let (o, e) = (String::from_utf8_lossy(&o), String::from_utf8_lossy(&e));
    let Some(status) = status else { panic!("grpc_client.py {method} {args:?} ran over 30 s; stderr:\n{e}") };
    match serde_json::from_str(o.trim()) {
        Ok(v) if status.success() => v,
        _ => panic!("grpc_client.py {method} {args:?} failed ({status}); stdout:\n{o}\nstderr:\n{e}"),
    }
}
