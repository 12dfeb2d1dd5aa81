//! Starting the gateway under test: in-process through the real pipeline (`gateway`,
//! `TestGateway`), or the real binary (`GatewayProcess`); and building its config (`Cfg`, the
//! one config builder for test files, and `simple_config` on top of it).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::client::{get, Resp};
use crate::Gateway;

/// An in-process gateway running the real pipeline (worker threads, snapshot, admin).
pub struct TestGateway {
    pub gw: Arc<Gateway>,
    pub addr: SocketAddr,
    pub admin: Option<SocketAddr>,
}

/// Parses `yaml` through the real loader (panics listing every problem) and starts it.
pub async fn gateway(yaml: &str) -> TestGateway {
    let config = load(yaml);
    let gw = Gateway::start(config, gatehouse_core::Options { workers: 1, admin: true, ..Default::default() })
        .await
        .expect("gateway starts");
    TestGateway { addr: gw.listen_addrs[0], admin: gw.admin_addr, gw }
}

/// Loads a YAML config or panics with every error.
pub fn load(yaml: &str) -> gatehouse_config::Config {
    match gatehouse_config::load_str(yaml, &|_| None) {
        Ok(c) => c,
        Err(errs) => {
            panic!("invalid test config:\n{}", errs.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n"))
        }
    }
}

/// A minimal config: one listener on an ephemeral port, admin on an ephemeral port, one upstream
/// `backend` with the given target URLs, and the given routes YAML (indented list items) or a
/// catch-all route when `routes` is empty.
pub fn simple_config(targets: &[String], routes: &str) -> String {
    let c = Cfg::new().admin().upstream("backend", targets);
    if routes.is_empty() { c.route("all", "backend") } else { c.routes_yaml(routes) }.to_yaml()
}

/// A gateway config for tests, built item by item; `to_yaml()` is what the loader reads.
///
/// ```ignore
/// let yaml = Cfg::new()
///     .admin()
///     .upstream("backend", &[backend.url()])
///     .route_with("api", "backend", "match: {path: {prefix: /api}}\nrewrite: {strip_prefix: true}")
///     .to_yaml();
/// ```
///
/// The `*_with` / `listener` / `admin_with` arguments are the item's extra fields as a YAML block
/// (at any indentation: it is re-indented here); `routes_yaml` and `yaml` are the escape hatches
/// for anything else (raw route list items, raw top-level sections).
#[derive(Debug, Clone)]
pub struct Cfg {
    /// Each listener's address and its extra fields (indented).
    listeners: Vec<(String, String)>,
    admin: Option<(String, String)>,
    top: String,
    upstreams: String,
    routes: String,
}

impl Default for Cfg {
    fn default() -> Cfg {
        Cfg::new()
    }
}

/// `block` (YAML at any indentation: its common indentation is removed) indented by `n` spaces,
/// newline-ended.
fn indent(block: &str, n: usize) -> String {
    let lines = block.lines().filter(|l| !l.trim().is_empty());
    let common = lines.map(|l| l.len() - l.trim_start_matches(' ').len()).min().unwrap_or(0);
    let pad = " ".repeat(n);
    block
        .lines()
        .map(|l| if l.trim().is_empty() { "\n".to_string() } else { format!("{pad}{}\n", &l[common..]) })
        .collect()
}

impl Cfg {
    /// One listener on `127.0.0.1:0`, no admin listener, no upstreams, no routes.
    pub fn new() -> Cfg {
        Cfg {
            listeners: vec![("127.0.0.1:0".into(), String::new())],
            admin: None,
            top: String::new(),
            upstreams: String::new(),
            routes: String::new(),
        }
    }

    /// The first listener's address (default `127.0.0.1:0`).
    pub fn listen(mut self, addr: &str) -> Cfg {
        self.listeners[0].0 = addr.to_string();
        self
    }

    /// Extra fields of the last listener (`tls: ...`, `http2: ...`, `timeouts: ...`).
    pub fn listener(mut self, fields: &str) -> Cfg {
        if let Some(l) = self.listeners.last_mut() {
            l.1.push_str(&indent(fields, 4));
        }
        self
    }

    /// Another listener on `addr`, with extra fields.
    pub fn add_listener(mut self, addr: &str, fields: &str) -> Cfg {
        self.listeners.push((addr.to_string(), indent(fields, 4)));
        self
    }

    /// The admin listener on `127.0.0.1:0`.
    pub fn admin(self) -> Cfg {
        self.admin_with("127.0.0.1:0", "")
    }

    /// The admin listener on `addr`, with extra fields (`token: ...`).
    pub fn admin_with(mut self, addr: &str, fields: &str) -> Cfg {
        self.admin = Some((addr.to_string(), indent(fields, 2)));
        self
    }

    /// An upstream with these target URLs.
    pub fn upstream<S: AsRef<str>>(self, name: &str, targets: &[S]) -> Cfg {
        self.upstream_with(name, targets, "")
    }

    /// An upstream with these target URLs and extra fields (`tls: ...`, `protocol: http2`, ...).
    pub fn upstream_with<S: AsRef<str>>(mut self, name: &str, targets: &[S], fields: &str) -> Cfg {
        let t: String = targets.iter().map(|u| format!("      - url: {}\n", u.as_ref())).collect();
        self.upstreams.push_str(&format!("  - name: {name}\n    targets:\n{t}{}", indent(fields, 4)));
        self
    }

    /// An upstream with weighted targets (`(url, weight)`) and extra fields.
    pub fn upstream_weighted<S: AsRef<str>>(mut self, name: &str, targets: &[(S, u32)], fields: &str) -> Cfg {
        let t: String =
            targets.iter().map(|(u, w)| format!("      - {{url: \"{}\", weight: {w}}}\n", u.as_ref())).collect();
        self.upstreams.push_str(&format!("  - name: {name}\n    targets:\n{t}{}", indent(fields, 4)));
        self
    }

    /// A route to `upstream` matching every request.
    pub fn route(self, name: &str, upstream: &str) -> Cfg {
        self.route_with(name, upstream, "")
    }

    /// A route to `upstream` with extra fields (`match: ...`, `policies: ...`, ...).
    pub fn route_with(mut self, name: &str, upstream: &str, fields: &str) -> Cfg {
        self.routes.push_str(&format!("  - name: {name}\n    upstream: {upstream}\n{}", indent(fields, 4)));
        self
    }

    /// Route list items as raw YAML (each `  - ...`, indented 2).
    pub fn routes_yaml(mut self, items: &str) -> Cfg {
        self.routes.push_str(items);
        if !items.is_empty() && !items.ends_with('\n') {
            self.routes.push('\n');
        }
        self
    }

    /// Raw top-level sections (`access_log: ...`, `server: ...`, `cluster: ...`), at column 0.
    pub fn yaml(mut self, sections: &str) -> Cfg {
        self.top.push_str(&indent(sections, 0));
        self
    }

    /// An in-process gateway running this config ([`gateway`]).
    pub async fn start(&self) -> TestGateway {
        gateway(&self.to_yaml()).await
    }

    pub fn to_yaml(&self) -> String {
        let mut y = String::from("listeners:\n");
        for (addr, fields) in &self.listeners {
            y.push_str(&format!("  - address: {addr}\n{fields}"));
        }
        if let Some((addr, fields)) = &self.admin {
            y.push_str(&format!("admin:\n  address: {addr}\n{fields}"));
        }
        y.push_str(&self.top);
        y.push_str(&format!("upstreams:\n{}routes:\n{}", self.upstreams, self.routes));
        y
    }
}

/// A free TCP port on 127.0.0.1 (bound then released; for the binary launcher).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("free port")
}

/// The real `gatehouse` binary running a config file.
pub struct GatewayProcess {
    pub child: Child,
    pub dir: PathBuf,
    pub config: PathBuf,
}

impl GatewayProcess {
    /// Writes `yaml` to a temp dir and runs `bin run --config FILE`; waits until `ready` (an
    /// admin address) answers /readyz, up to 10 s.
    pub fn spawn(bin: &str, yaml: &str, ready: SocketAddr) -> GatewayProcess {
        GatewayProcess::spawn_with_args(bin, &[], yaml, ready)
    }

    /// Sends a signal (`TERM`, `HUP`, ...) with kill(1).
    pub fn signal(&self, sig: &str) {
        let _ = Command::new("kill").arg(format!("-{sig}")).arg(self.child.id().to_string()).status();
    }

    pub fn config_path(&self) -> &Path {
        &self.config
    }

    /// Waits for exit up to `timeout`; returns the exit status if it exited.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = std::time::Instant::now() + timeout;
        while std::time::Instant::now() < deadline {
            if let Ok(Some(s)) = self.child.try_wait() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

// ---------------------------------------------------------------------------------------------
// Helpers added for the end-to-end proxy, balancer and lifecycle tests.
// ---------------------------------------------------------------------------------------------

impl GatewayProcess {
    /// Like [`GatewayProcess::spawn`], with extra arguments before `run` (e.g. `--log-format json`).
    pub fn spawn_with_args(bin: &str, global_args: &[&str], yaml: &str, ready: SocketAddr) -> GatewayProcess {
        let dir = std::env::temp_dir().join(format!("gatehouse-test-{}-{}", std::process::id(), free_port()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let config = dir.join("gatehouse.yaml");
        std::fs::write(&config, yaml).expect("write config");
        GatewayProcess::spawn_file(bin, global_args, dir, config, ready)
    }

    /// Runs `bin run --config CONFIG` on an existing file (in `dir`, removed by nobody: the
    /// caller owns it); waits until `ready` answers /readyz, up to 10 s.
    pub fn spawn_file(
        bin: &str,
        global_args: &[&str],
        dir: PathBuf,
        config: PathBuf,
        ready: SocketAddr,
    ) -> GatewayProcess {
        let child = Command::new(bin)
            .args(global_args)
            .args(["run", "--config"])
            .arg(&config)
            .args(["--workers", "1"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn gatehouse");
        let mut p = GatewayProcess { child, dir, config };
        if !p.wait_ready(ready, Duration::from_secs(10)) {
            panic!("gatehouse did not become ready");
        }
        p
    }

    /// Waits until `admin` answers /readyz with 200 (false on timeout or if the process exited).
    pub fn wait_ready(&mut self, admin: SocketAddr, timeout: Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        while std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return false;
            }
            if let Ok(mut s) = std::net::TcpStream::connect(admin) {
                use std::io::{Read, Write};
                let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                let _ = s.write_all(b"GET /readyz HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n");
                let mut out = String::new();
                let _ = s.read_to_string(&mut out);
                if out.starts_with("HTTP/1.1 200") {
                    return true;
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// Collects the child's stderr on a thread; the returned buffer fills as lines arrive.
    pub fn capture_stderr(&mut self) -> Arc<Mutex<String>> {
        let buf = Arc::new(Mutex::new(String::new()));
        if let Some(mut err) = self.child.stderr.take() {
            let b = buf.clone();
            std::thread::spawn(move || {
                use std::io::Read;
                let mut tmp = [0u8; 4096];
                loop {
                    match err.read(&mut tmp) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => b.lock().expect("lock").push_str(&String::from_utf8_lossy(&tmp[..n])),
                    }
                }
            });
        }
        buf
    }
}

/// Shuts an in-process gateway down, bounded to 5 s.
pub async fn stop(gw: TestGateway) {
    let _ = tokio::time::timeout(Duration::from_secs(5), gw.gw.shutdown()).await;
}

/// A route list item `name` on exact path `/name` to upstream `backend`, with the given policies
/// (YAML list items indented 6 spaces).
pub fn policy_route(name: &str, policies: &str) -> String {
    format!(
        "  - name: {name}\n    upstream: backend\n    match: {{path: {{exact: /{name}}}}}\n    policies:\n{policies}"
    )
}

/// The statuses of a list of responses.
pub fn statuses(rs: &[Resp]) -> Vec<u16> {
    rs.iter().map(|r| r.status).collect()
}

/// The responses to five requests on a route limited to 3 per minute (`limit: 3/min`) in draft
/// header mode: what local and cluster mode must both answer, byte for byte.
pub fn assert_three_per_minute(rs: &[Resp]) {
    assert_eq!(statuses(rs), [200, 200, 200, 429, 429]);
    for (i, r) in rs[..3].iter().enumerate() {
        assert_eq!(r.header("ratelimit-policy"), Some("\"limited\";q=3;w=60"), "{:?}", r.headers);
        let want = format!("\"limited\";r={};t={}", 2 - i, 20 * (i + 1));
        assert_eq!(r.header("ratelimit"), Some(want.as_str()));
        assert_eq!(r.header("retry-after"), None);
    }
    let refused = &rs[3];
    assert_eq!(refused.header("retry-after"), Some("20"), "{:?}", refused.headers);
    assert_eq!(refused.header("ratelimit"), Some("\"limited\";r=0;t=60"));
    assert_eq!(refused.header("ratelimit-policy"), Some("\"limited\";q=3;w=60"));
    assert_eq!(refused.header("content-type"), Some("application/json"));
    let v = refused.json();
    assert_eq!(v["error"]["status"], 429);
    assert_eq!(v["error"]["code"], "rate_limited");
    assert_eq!(v["error"]["request_id"].as_str(), refused.header("x-request-id"));
}

/// Fetches the admin `/upstreams` JSON.
pub async fn upstreams_view(gw: &TestGateway) -> serde_json::Value {
    get(gw.admin.expect("admin listener"), "/upstreams").await.json()
}

// ---------------------------------------------------------------------------------------------
// A real gRPC service and client (Python `grpcio`) for the HTTP/2 and gRPC tests.
// ---------------------------------------------------------------------------------------------
