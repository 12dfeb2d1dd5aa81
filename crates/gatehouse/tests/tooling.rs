//! `gatehouse explain` and `gatehouse diff` run as a user would run them.

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_gatehouse");

const CONFIG: &str = r#"
listeners:
  - address: 127.0.0.1:0
upstreams:
  - name: users
    balancer: least_request
    targets:
      - url: http://127.0.0.1:9001
      - url: http://127.0.0.1:9002
        weight: 3
  - name: web
    targets:
      - url: http://127.0.0.1:9003
routes:
  - name: user-by-id
    match:
      hosts: [api.example.com]
      path: { template: "/users/{id}" }
      methods: [GET]
    upstream: users
    rewrite: { path: "/v2/users/{id}" }
    policies:
      - rate_limit: { limit: 100/s, key: client_ip }
    request_headers:
      set: { X-From: gateway }
  - name: beta
    match:
      path: { prefix: /users }
      headers: [{ name: X-Beta, exact: "1" }]
    upstream: users
  - name: site
    upstream: web
"#;

fn write(dir: &std::path::Path, name: &str, text: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write config");
    p
}

fn temp_dir(tag: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("gatehouse-tooling-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&d).expect("dir");
    d
}

fn run(args: &[&str]) -> (bool, String, String) {
    let o = Command::new(BIN).args(args).output().expect("run gatehouse");
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn explain_names_the_route_its_policies_upstream_and_why_others_do_not_match() {
    let dir = temp_dir("explain");
    let cfg = write(&dir, "c.yaml", CONFIG);
    let c = cfg.to_str().expect("utf-8 path");
    let (ok, out, err) = run(&["explain", "--config", c, "GET", "http://api.example.com/users/42?x=1"]);
    assert!(ok, "{err}");
    assert!(out.contains("Matched:   user-by-id (routes[0])"), "{out}");
    assert!(out.contains("params:    id=42"), "{out}");
    assert!(out.contains("1. rate_limit"), "{out}");
    assert!(out.contains("2. request_headers"), "{out}");
    assert!(out.contains("upstream:  users via least_request"), "{out}");
    assert!(out.contains("forwards:  GET /v2/users/42?x=1"), "{out}");
    assert!(out.contains("routes[1] beta: header predicate on `x-beta` fails"), "{out}");
    assert!(out.contains("routes[2] site: matches too, but the chosen route takes precedence"), "{out}");

    // Paths are normalised first, headers count, other hosts fall through.
    let (ok, out, _) = run(&["explain", "-c", c, "GET", "/users/./7", "-H", "Host: other.example", "-H", "X-Beta: 1"]);
    assert!(ok);
    assert!(out.contains("Path:      /users/7 (normalised)"), "{out}");
    assert!(out.contains("Matched:   beta (routes[1])"), "{out}");
    assert!(out.contains("routes[0] user-by-id: host other.example is not in [api.example.com]"), "{out}");

    // A method no route allows at that path, and a path refused by normalisation.
    let (ok, out, _) = run(&["explain", "-c", c, "POST", "http://api.example.com/users/42"]);
    assert!(ok);
    assert!(out.contains("Matched:   site"), "{out}");
    assert!(out.contains("routes[0] user-by-id: method POST not in [GET]"), "{out}");
    let (ok, _, err) = run(&["explain", "-c", c, "GET", "/a%00b"]);
    assert!(!ok && err.contains("400"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn diff_lists_added_removed_and_changed_by_name() {
    let dir = temp_dir("diff");
    let old = write(&dir, "old.yaml", CONFIG);
    let new_text = CONFIG
        .replace("      - url: http://127.0.0.1:9002\n        weight: 3\n", "      - url: http://127.0.0.1:9004\n")
        .replace("limit: 100/s", "limit: 50/s")
        .replace("  - name: beta\n    match:\n      path: { prefix: /users }\n      headers: [{ name: X-Beta, exact: \"1\" }]\n    upstream: users\n", "  - name: health\n    match:\n      path: { exact: /healthz }\n    upstream: web\n");
    let new = write(&dir, "new.yaml", &new_text);
    let (ok, out, err) = run(&["diff", old.to_str().expect("p"), new.to_str().expect("p")]);
    assert!(ok, "{err}");
    assert!(out.contains("+ routes: health added"), "{out}");
    assert!(out.contains("- routes: beta removed"), "{out}");
    assert!(out.contains("~ routes: user-by-id changed: policies"), "{out}");
    assert!(out.contains("+ policy rate_limit"), "{out}");
    assert!(out.contains("~ upstreams: users changed: targets"), "{out}");
    assert!(out.contains("+ target http://127.0.0.1:9004"), "{out}");
    assert!(out.contains("- target http://127.0.0.1:9002"), "{out}");
    let (ok, out, _) = run(&["diff", old.to_str().expect("p"), old.to_str().expect("p")]);
    assert!(ok && out.trim() == "no changes", "{out}");
    // Sections without names: reported as changed, without their (possibly secret) values.
    let traced =
        write(&dir, "traced.yaml", &format!("{CONFIG}tracing:\n  enabled: true\n  headers: {{x-api-key: k-secret}}\n"));
    let (ok, out, _) = run(&["diff", old.to_str().expect("p"), traced.to_str().expect("p")]);
    assert!(ok && out.contains("~ tracing changed") && !out.contains("k-secret"), "{out}");
    // A policy added or removed is printed, its secrets redacted like `GET /config` (a diff goes
    // to terminals and CI logs).
    let secret = "s3cr3t-hmac-key-with-at-least-32-bytes!!";
    let with_auth = write(
        &dir,
        "auth.yaml",
        &new_text
            .replace(
                "      - rate_limit: { limit: 50/s, key: client_ip }\n",
                &format!(
                    "      - rate_limit: {{ limit: 50/s, key: client_ip }}\n      - auth: {{methods: [{{jwt: {{keys: [{{secret: \"{secret}\", alg: HS256}}]}}}}]}}\n"
                ),
            )
    );
    let (ok, out, err) = run(&["diff", new.to_str().expect("p"), with_auth.to_str().expect("p")]);
    assert!(ok, "{err}");
    assert!(out.contains("+ policy auth"), "{out}");
    assert!(!out.contains(secret), "a secret printed:\n{out}");
    let _ = std::fs::remove_dir_all(&dir);
}
