//! `gatehouse hash-key`, `gatehouse hash-password` and `gatehouse validate` on key material.

use std::io::Write;
use std::process::{Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_gatehouse");

fn run_stdin(args: &[&str], input: &str) -> (bool, String, String) {
    let mut child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn gatehouse");
    child.stdin.take().expect("stdin").write_all(input.as_bytes()).expect("write stdin");
    let out = child.wait_with_output().expect("wait");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn hash_key_prints_the_sha256_sum() {
    // `printf %s alice-key-0001 | sha256sum`
    let want = "0264b8205526ceea6fff4c7d3d3b6cf383d579553a931736819eb39ec6dd9a04\n";
    assert_eq!(run_stdin(&["hash-key", "alice-key-0001"], "").1, want);
    assert_eq!(run_stdin(&["hash-key"], "alice-key-0001\n").1, want, "from stdin, newline dropped");
    assert!(!run_stdin(&["hash-key"], "").0, "an empty key is refused");
}

#[test]
fn hash_password_prints_an_argon2id_phc_string() {
    let (ok, out, _) = run_stdin(&["hash-password"], "correct horse\n");
    assert!(ok);
    let h = out.trim();
    assert!(h.starts_with("$argon2id$v=19$") && h.split('$').count() == 6, "{h}");
    let (_, again, _) = run_stdin(&["hash-password"], "correct horse\n");
    assert_ne!(again.trim(), h, "a fresh random salt each time");
}

#[test]
fn validate_reports_unreadable_key_material() {
    let dir = std::env::temp_dir().join(format!("gatehouse-auth-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let file = dir.join("c.yaml");
    let cfg = "listeners:\n  - address: 127.0.0.1:8080\nupstreams:\n  - name: u\n    targets: [{url: \"http://127.0.0.1:9001\"}]\nroutes:\n  - name: r\n    upstream: u\n    policies:\n      - auth:\n          methods:\n            - jwt:\n                keys: [{alg: RS256, pem: \"-----BEGIN PUBLIC KEY-----\\nbm90IGEga2V5\\n-----END PUBLIC KEY-----\\n\"}]\n";
    std::fs::write(&file, cfg).expect("write");
    let out = Command::new(BIN).args(["validate", &file.to_string_lossy()]).output().expect("run");
    let _ = std::fs::remove_dir_all(&dir);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success());
    assert!(stdout.contains("routes[0].policies[0].auth.methods[0].jwt.keys[0]") && stdout.contains("PEM"), "{stdout}");
}
