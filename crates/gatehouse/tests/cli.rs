//! The `gatehouse` command line: `validate`, `run` with a bad config, the quickstart (every printed
//! `curl` command run as printed) and JSON logs.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use gatehouse_testkit::{blocking_get, free_port, GatewayProcess};

const BIN: &str = env!("CARGO_BIN_EXE_gatehouse");

/// A temp dir removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let d = std::env::temp_dir().join(format!("gatehouse-cli-{tag}-{}-{}", std::process::id(), free_port()));
        std::fs::create_dir_all(&d).expect("temp dir");
        TempDir(d)
    }
    fn file(&self, name: &str, text: &str) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, text).expect("write");
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `cmd` to completion within `timeout` (killed and failed otherwise).
fn run_bounded(cmd: &mut Command, timeout: Duration) -> Output {
    let mut child = cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn");
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut v = Vec::new();
            let _ = r.read_to_end(&mut v);
            v
        })
    };
    let out = drain(Box::new(child.stdout.take().expect("stdout")));
    let err = drain(Box::new(child.stderr.take().expect("stderr")));
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(s) = child.try_wait().expect("try_wait") {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} did not finish within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Output { status, stdout: out.join().expect("stdout"), stderr: err.join().expect("stderr") }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn validate_ok_binds_and_contacts_nothing() {
    // Hold the listener, admin and target ports ourselves: `validate` must neither bind them nor
    // connect to the target.
    let listen = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let admin = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let target = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    target.set_nonblocking(true).expect("nonblocking");
    let dir = TempDir::new("ok");
    let yaml = format!(
        "listeners:\n  - address: {}\nadmin:\n  address: {}\nupstreams:\n  - name: backend\n    health_check: {{path: /health, interval: 1s}}\n    targets:\n      - url: http://{}\nroutes:\n  - name: all\n    upstream: backend\n",
        listen.local_addr().unwrap(),
        admin.local_addr().unwrap(),
        target.local_addr().unwrap()
    );
    let file = dir.file("basic.yaml", &yaml);
    let out = run_bounded(Command::new(BIN).arg("validate").arg(&file), Duration::from_secs(10));
    assert!(out.status.success(), "stdout {} stderr {}", text(&out.stdout), text(&out.stderr));
    assert_eq!(text(&out.stdout), "OK\n");
    assert!(
        matches!(target.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "validate contacted the upstream target"
    );
}

#[test]
fn validate_examples_basic_prints_ok() {
    let file = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/basic.yaml");
    let out = run_bounded(Command::new(BIN).arg("validate").arg(file), Duration::from_secs(10));
    assert!(out.status.success(), "stdout {} stderr {}", text(&out.stdout), text(&out.stderr));
    assert_eq!(text(&out.stdout), "OK\n");
}

#[test]
fn validate_every_example() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples");
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("examples/")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    files.sort();
    assert!(!files.is_empty());
    // `validate` reads certificate files: bench-tls.yaml gets a real pair.
    let pki = gatehouse_testkit::tls::Pki::new("examples");
    let cert = pki.issue("bench", "/CN=localhost", &["localhost", "127.0.0.1"], 10);
    for f in &files {
        // The bench configs take their ports (and Redis URL, certificate) from the environment.
        let out = run_bounded(
            Command::new(BIN)
                .arg("validate")
                .arg(f)
                .env("LISTEN_PORT", "18080")
                .env("BACKEND_PORT", "18081")
                .env("REDIS_URL", "redis://127.0.0.1:6379/0")
                .env("TLS_CERT", &cert.cert)
                .env("TLS_KEY", &cert.key),
            Duration::from_secs(10),
        );
        assert!(out.status.success(), "{}: {}", f.display(), text(&out.stdout));
        assert_eq!(text(&out.stdout), "OK\n", "{}", f.display());
    }
}

#[test]
fn validate_lists_every_problem_with_path_and_position() {
    let dir = TempDir::new("bad");
    // Line numbers matter: three problems on lines 7, 10 and 14.
    let yaml = "listeners:
  - address: 127.0.0.1:18080
upstreams:
  - name: backend
    targets:
      - url: http://127.0.0.1:18081
        weight: 0
routes:
  - name: a
    upstream: nowhere
  - name: b
    upstream: backend
    match:
      methods: [get]
";
    let file = dir.file("bad.yaml", yaml);
    let out = run_bounded(Command::new(BIN).arg("validate").arg(&file), Duration::from_secs(10));
    assert_eq!(out.status.code(), Some(1), "stderr {}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    let expected = [
        ("upstreams[0].targets[0].weight", "line 7, column 17"),
        ("routes[0].upstream", "line 10, column 15"),
        ("routes[1].match.methods[0]", "line 14, column 17"),
    ];
    for (line, (path, pos)) in lines.iter().zip(expected) {
        assert!(line.starts_with(&format!("{}: {path} ({pos}): ", file.display())), "{line:?}");
    }
    assert!(lines[1].contains("nowhere"), "{stdout}");
    assert!(text(&out.stderr).contains("3 problem"), "{}", text(&out.stderr));
}

#[test]
fn validate_env_substitution() {
    let dir = TempDir::new("env");
    let yaml = "listeners:\n  - address: 127.0.0.1:${GH_TEST_LISTEN_PORT}\nupstreams:\n  - name: backend\n    targets:\n      - url: http://127.0.0.1:${GH_TEST_BACKEND_PORT}\nroutes:\n  - name: all\n    upstream: backend\n";
    let file = dir.file("env.yaml", yaml);
    let out = run_bounded(
        Command::new(BIN)
            .arg("validate")
            .arg(&file)
            .env("GH_TEST_LISTEN_PORT", "18080")
            .env("GH_TEST_BACKEND_PORT", "18081"),
        Duration::from_secs(10),
    );
    assert!(out.status.success(), "{}", text(&out.stdout));
    let out = run_bounded(
        Command::new(BIN)
            .arg("validate")
            .arg(&file)
            .env_remove("GH_TEST_LISTEN_PORT")
            .env("GH_TEST_BACKEND_PORT", "18081"),
        Duration::from_secs(10),
    );
    assert_eq!(out.status.code(), Some(1));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("GH_TEST_LISTEN_PORT") && stdout.contains("line 2"), "{stdout}");
    assert!(!stdout.contains("GH_TEST_BACKEND_PORT"), "{stdout}");
}

#[test]
fn run_with_an_invalid_config_exits_1_and_binds_nothing() {
    let port = free_port();
    let dir = TempDir::new("run-bad");
    let yaml = format!(
        "listeners:\n  - address: 127.0.0.1:{port}\nupstreams:\n  - name: backend\n    targets: [{{url: \"http://127.0.0.1:1\"}}]\nroutes:\n  - {{name: a, upstream: nowhere}}\n"
    );
    let file = dir.file("bad.yaml", &yaml);
    let out = run_bounded(Command::new(BIN).args(["run", "--config"]).arg(&file), Duration::from_secs(10));
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("routes[0].upstream"), "{}", text(&out.stderr));
    assert!(std::net::TcpListener::bind(("127.0.0.1", port)).is_ok());
}

/// The quickstart's stdout, line by line, on a channel.
fn lines_of(r: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for l in BufReader::new(r).lines() {
            let Ok(l) = l else { return };
            if tx.send(l).is_err() {
                return;
            }
        }
    });
    rx
}

struct Quickstart {
    child: std::process::Child,
}

impl Drop for Quickstart {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn curl(cmd: &str) -> String {
    let out = run_bounded(Command::new("sh").arg("-c").arg(cmd), Duration::from_secs(10));
    assert!(out.status.success(), "`{cmd}` exited {:?}: {}", out.status, text(&out.stderr));
    text(&out.stdout)
}

fn json_of(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

/// The header `name` the demo service says it received (it echoes them in its JSON body).
fn seen_header(v: &serde_json::Value, name: &str) -> Option<String> {
    let headers = v["headers"].as_object()?;
    headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).and_then(|(_, v)| v.as_str().map(str::to_string))
}

/// Checks one printed HTTPS command: it is run as printed (curl verifies the certificate against
/// the printed `--cacert` file; no `-k`), and the same command without `--cacert` must fail
/// verification, so the success is the printed file's doing. Returns what was checked.
fn check_https_command(cmd: &str, path: &str, base: &str) -> String {
    let words: Vec<&str> = cmd.split_whitespace().collect();
    assert!(!words.iter().any(|w| *w == "-k" || *w == "--insecure"), "{cmd}");
    let ca =
        words.windows(2).find(|w| w[0] == "--cacert").map(|w| w[1]).unwrap_or_else(|| panic!("no --cacert: {cmd}"));
    assert!(std::path::Path::new(ca.trim_matches('\'')).is_file(), "{ca} (printed in `{cmd}`) is not a file");
    // curl's exit code 60: the peer's certificate cannot be verified with the known CAs.
    let unverified = cmd.replacen(&format!("--cacert {ca} "), "", 1);
    let out = run_bounded(Command::new("sh").arg("-c").arg(&unverified), Duration::from_secs(10));
    assert_eq!(out.status.code(), Some(60), "`{unverified}` without the CA file: {}", text(&out.stderr));

    let over_tls = |v: &serde_json::Value| {
        // The gateway saw the request on its TLS listener.
        assert_eq!(seen_header(v, "x-forwarded-proto").as_deref(), Some("https"), "{v}");
    };
    match (path, cmd.contains(" --http2 ")) {
        ("/echo", false) => {
            let out = curl(cmd);
            let (head, body) = out.split_once("\r\n\r\n").expect("curl -i prints the head");
            let head = head.to_ascii_lowercase();
            // HTTP/1.1 today; curl offers h2 by ALPN on https, so HTTP/2 once the gateway does.
            assert!(head.starts_with("http/1.1 200") || head.starts_with("http/2 200"), "{out}");
            assert!(head.contains("\nstrict-transport-security: max-age=300\r"), "{out}");
            assert!(head.contains("\nx-powered-by: gatehouse\r"), "{out}");
            let v = json_of(body);
            assert_eq!(v["service"], "echo", "{v}");
            over_tls(&v);
            // The certificate also names 127.0.0.1: the same command by IP verifies too.
            let by_ip = cmd.replacen(base, &base.replacen("localhost", "127.0.0.1", 1), 1);
            assert!(by_ip.contains("https://127.0.0.1:"), "{by_ip}");
            assert!(curl(&by_ip).contains("strict-transport-security"), "{by_ip}");
            "https /echo".to_string()
        }
        ("/users/42", true) => {
            // The body, then `HTTP/<version>` from -w: 1.1 today, 2 once the gateway offers h2.
            let out = curl(cmd);
            let (body, version) = out.trim_end().rsplit_once('\n').unwrap_or_else(|| panic!("{out}"));
            assert!(version == "HTTP/1.1" || version == "HTTP/2", "{out}");
            let v = json_of(body);
            assert_eq!(v["path"], "/v1/profiles/42", "{v}");
            over_tls(&v);
            "https --http2 /users/42".to_string()
        }
        _ => {
            let _ = curl(cmd);
            eprintln!("quickstart HTTPS command not specifically checked: {cmd}");
            format!("https {path}")
        }
    }
}

#[test]
fn quickstart_prints_curl_commands_that_work() {
    let (listen, admin, tls) = (free_port(), free_port(), free_port());
    let mut child = Command::new(BIN)
        .env("GATEHOUSE_QUICKSTART_LISTEN", format!("127.0.0.1:{listen}"))
        .env("GATEHOUSE_QUICKSTART_ADMIN", format!("127.0.0.1:{admin}"))
        .env("GATEHOUSE_QUICKSTART_TLS_LISTEN", format!("127.0.0.1:{tls}"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn quickstart");
    let rx = lines_of(child.stdout.take().expect("stdout"));
    let mut qs = Quickstart { child };

    let deadline = Instant::now() + Duration::from_secs(10);
    let mut printed = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(l) if l.contains("Press Ctrl-C") => break,
            Ok(l) => printed.push(l),
            Err(_) => panic!("no `Press Ctrl-C` within 10 s; got:\n{}", printed.join("\n")),
        }
    }
    // Every printed command: `curl ...` lines and shell loops around curl (`for ...; do curl ...`).
    let commands: Vec<String> = printed
        .iter()
        .map(|l| l.trim())
        .filter(|l| l.starts_with("curl ") || (l.starts_with("for ") && l.contains(" curl ")))
        .map(str::to_string)
        .collect();
    assert!(commands.len() >= 5, "{}", printed.join("\n"));
    let gw = format!("http://127.0.0.1:{listen}");
    let adm = format!("http://127.0.0.1:{admin}");
    let https = format!("https://localhost:{tls}");
    assert!(
        commands.iter().all(|c| c.contains(&gw) || c.contains(&adm) || c.contains(&https)),
        "commands use the bound addresses"
    );

    let mut checked = Vec::new();
    let mut tls_dir = None;
    for cmd in &commands {
        if let Some(url) = cmd.split_whitespace().find(|w| w.starts_with(&https)) {
            let ca = cmd.split_whitespace().skip_while(|w| *w != "--cacert").nth(1).unwrap_or("");
            tls_dir = std::path::Path::new(ca.trim_matches('\'')).parent().map(PathBuf::from);
            checked.push(check_https_command(cmd, &url[https.len()..], &https));
            continue;
        }
        let url_path = cmd.split_whitespace().find(|w| w.starts_with("http://")).unwrap_or("");
        let path = url_path.trim_end_matches(';').trim_start_matches(&gw).trim_start_matches(&adm);
        let looped = cmd.starts_with("for ");
        match (path, looped) {
            ("/limited", false) => {
                let out = curl(cmd).to_ascii_lowercase();
                assert!(out.starts_with("http/1.1 200"), "{out}");
                assert!(out.contains("ratelimit-policy: \"limited\";q=5;w=60"), "{out}");
                assert!(out.contains("ratelimit: \"limited\";r="), "{out}");
            }
            ("/limited", true) => {
                // Six requests against a quota of 5 (one may be used already): 200s, then 429s.
                let out = curl(cmd);
                let statuses: Vec<&str> = out.split_whitespace().collect();
                assert_eq!(statuses.len(), 6, "{out}");
                assert!(statuses.iter().all(|s| *s == "200" || *s == "429"), "{out}");
                assert!(statuses.windows(2).all(|w| !(w[0] == "429" && w[1] == "200")), "{out}");
                assert_eq!(statuses.last(), Some(&"429"), "{out}");
                assert!(statuses.first() == Some(&"200"), "{out}");
            }
            ("/secure", false) => {
                // Three commands: no credential (401), the printed token, the printed API key.
                let out = curl(cmd);
                let how = if cmd.contains("Authorization: Bearer ") {
                    "jwt"
                } else if cmd.contains("X-API-Key: ") {
                    "api_key"
                } else {
                    "none"
                };
                if how == "none" {
                    let (head, body) = out.split_once("\r\n\r\n").expect("curl -i prints the head");
                    let head = head.to_ascii_lowercase();
                    assert!(head.starts_with("http/1.1 401"), "{out}");
                    assert!(head.contains("www-authenticate: bearer realm="), "{out}");
                    assert_eq!(json_of(body)["error"]["code"], "unauthorized", "{out}");
                } else {
                    let v = json_of(&out);
                    assert_eq!(v["service"], "echo", "{v}");
                    let headers = v["headers"].as_object().cloned().unwrap_or_default();
                    let get = |n: &str| headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(n)).map(|(_, v)| v.clone());
                    assert_eq!(get("x-consumer-name"), Some("demo".into()), "{v}");
                    assert!(get("x-api-key").is_none(), "the key is not forwarded: {v}");
                    if how == "jwt" {
                        assert_eq!(get("x-user-id"), Some("demo".into()), "{v}");
                    }
                }
                checked.push(format!("/secure {how}"));
            }
            (path, _) => match path {
                "/users" => {
                    // Run twice: round robin alternates the two instances.
                    let a = json_of(&curl(cmd));
                    let b = json_of(&curl(cmd));
                    let mut seen = [a["instance"].as_str().unwrap_or(""), b["instance"].as_str().unwrap_or("")];
                    seen.sort_unstable();
                    assert_eq!(seen, ["users-1", "users-2"], "{a} {b}");
                    assert_eq!(a["path"], "/users");
                }
                "/users/42" => assert_eq!(json_of(&curl(cmd))["path"], "/v1/profiles/42"),
                "/orders/7" => {
                    let v = json_of(&curl(cmd));
                    assert_eq!((v["service"].as_str(), v["path"].as_str()), (Some("orders"), Some("/7")), "{v}");
                }
                "/echo" => {
                    let out = curl(cmd);
                    let (head, body) = out.split_once("\r\n\r\n").expect("curl -i prints the head");
                    let head = head.to_ascii_lowercase();
                    assert!(head.starts_with("http/1.1 200"), "{out}");
                    assert!(head.contains("x-powered-by: gatehouse"), "{out}");
                    // The route has hsts, but RFC 6797 forbids it over plain HTTP.
                    assert!(!head.contains("strict-transport-security"), "{out}");
                    let v = json_of(body);
                    let headers = v["headers"].as_object().cloned().unwrap_or_default();
                    let has = |n: &str| headers.keys().any(|k| k.eq_ignore_ascii_case(n));
                    assert!(has("x-gatehouse-demo"), "{v}");
                    assert!(!has("x-internal-secret") && !body.contains("hunter2"), "{v}");
                }
                "/nope" => {
                    let v = json_of(&curl(cmd));
                    assert_eq!(v["error"]["code"], "route_not_found", "{v}");
                    assert_eq!(v["error"]["request_id"].as_str().map(str::len), Some(32), "{v}");
                }
                "/upstreams" => {
                    let v = json_of(&curl(cmd));
                    let names: Vec<_> =
                        v["upstreams"].as_array().into_iter().flatten().map(|u| u["name"].clone()).collect();
                    assert!(names.contains(&"users".into()), "{v}");
                }
                "/config" => {
                    let v = json_of(&curl(cmd));
                    assert!(v["routes"].is_array(), "{v}");
                }
                "/tls" => {
                    let v = json_of(&curl(cmd));
                    let l = &v["listeners"][0];
                    assert_eq!(l["listener"], "public-tls", "{v}");
                    assert_eq!(l["certificates"][0]["names"], serde_json::json!(["localhost"]), "{v}");
                    assert!(l["certificates"][0]["expires_in_days"].as_u64().is_some_and(|d| d >= 89), "{v}");
                }
                other => {
                    // A command added later: it must at least work as printed.
                    let _ = curl(cmd);
                    eprintln!("quickstart command not specifically checked: {other}");
                }
            },
        }
        checked.push(if looped { format!("for {path}") } else { path.to_string() });
    }
    for must in [
        "/users",
        "/users/42",
        "/orders/7",
        "/echo",
        "/nope",
        "/limited",
        "for /limited",
        "/secure none",
        "/secure jwt",
        "/secure api_key",
        "https /echo",
        "https --http2 /users/42",
        "/tls",
    ] {
        assert!(checked.iter().any(|p| p == must), "no printed command for {must}: {commands:?}");
    }
    // The certificate's directory: private, the key readable by its owner only.
    let tls_dir = tls_dir.expect("the HTTPS commands name the certificate");
    let mode = |p: &std::path::Path| {
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(p).expect("stat").permissions()) & 0o777
    };
    assert_eq!(mode(&tls_dir.join("quickstart-key.pem")), 0o600);
    assert_eq!(mode(&tls_dir), 0o700);
    assert!(printed.iter().any(|l| l.trim() == tls_dir.display().to_string()), "the directory is printed");

    let _ = Command::new("kill").arg("-TERM").arg(qs.child.id().to_string()).status();
    let deadline = Instant::now() + Duration::from_secs(5);
    let status = loop {
        if let Some(s) = qs.child.try_wait().expect("try_wait") {
            break s;
        }
        assert!(Instant::now() < deadline, "quickstart did not exit within 5 s of SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status:?}");
    assert!(blocking_get(SocketAddr::from(([127, 0, 0, 1], listen)), "/users").is_empty(), "port released");
    assert!(!tls_dir.exists(), "{} is removed when the quickstart stops", tls_dir.display());
}

#[test]
fn log_format_json_writes_json_lines_to_stderr() {
    let backend = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let (listen, admin) = (free_port(), free_port());
    let yaml = format!(
        "listeners:\n  - address: 127.0.0.1:{listen}\nadmin:\n  address: 127.0.0.1:{admin}\nupstreams:\n  - name: backend\n    targets: [{{url: \"http://{}\"}}]\nroutes:\n  - {{name: all, upstream: backend}}\n",
        backend.local_addr().unwrap()
    );
    let admin_addr = SocketAddr::from(([127, 0, 0, 1], admin));
    let mut p = GatewayProcess::spawn_with_args(BIN, &["--log-format", "json"], &yaml, admin_addr);
    let stderr = p.capture_stderr();
    p.signal("TERM");
    assert!(p.wait_exit(Duration::from_secs(5)).expect("exited").success());
    // The reader thread sees EOF once the process is gone; give it a moment to finish.
    let deadline = Instant::now() + Duration::from_secs(2);
    while !stderr.lock().unwrap().contains("stopped") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let log = stderr.lock().unwrap().clone();
    let lines: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(!lines.is_empty(), "no log lines");
    let parsed: Vec<serde_json::Value> = lines.iter().map(|l| json_of(l)).collect();
    assert!(parsed.iter().all(|v| v["level"].is_string() && v["timestamp"].is_string()), "{log}");
    let listening = parsed.iter().find(|v| v["fields"]["message"] == "listening").unwrap_or_else(|| panic!("{log}"));
    assert_eq!(listening["fields"]["address"], format!("127.0.0.1:{listen}"));
    assert!(parsed.iter().any(|v| v["fields"]["message"] == "stopped"), "{log}");
}
