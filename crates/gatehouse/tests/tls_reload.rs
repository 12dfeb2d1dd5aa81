//! Certificates on reload: a changed certificate file is picked up by the file watch without
//! dropping an open keep-alive connection; a bad certificate (expired, key that does not match)
//! is refused with its config path by `gatehouse validate` and by a reload, and the old
//! certificate keeps serving.

use std::path::Path;
use std::time::Duration;

use gatehouse_testkit::tls::{ClientOpts, Issued, Pki, TlsClient};
use gatehouse_testkit::{wait_for, Backend, Gateway};

fn yaml(cert: &Path, key: &Path, backend: &str) -> String {
    format!(
        "listeners:
  - name: tls
    address: 127.0.0.1:0
    tls:
      certificates:
        - {{cert: {}, key: {}}}
upstreams:
  - name: backend
    targets:
      - url: {backend}
routes:
  - name: all
    upstream: backend
",
        cert.display(),
        key.display()
    )
}

/// Replaces the served files with `src`'s content (key first, then certificate; the watcher may
/// see the half-done state, which fails to load and is retried on the next event).
fn install(src: &Issued, cert: &Path, key: &Path) {
    std::fs::copy(&src.key, key).expect("copy key");
    std::fs::copy(&src.cert, cert).expect("copy cert");
}

#[tokio::test]
async fn changed_certificate_files_are_picked_up_without_dropping_connections() {
    let pki = Pki::new("reload-ca");
    let v1 = pki.issue("v1", "/CN=v1", &["gw.test"], 10);
    let v2 = pki.issue("v2", "/CN=v2", &["gw.test"], 10);
    let expired = pki.issue("expired", "/CN=expired", &["gw.test"], -1);
    let (cert, key) = (pki.dir.join("served.pem"), pki.dir.join("served.key"));
    install(&v1, &cert, &key);
    let backend = Backend::named("b").await;
    let config_path = pki.dir.join("gatehouse.yaml");
    std::fs::write(&config_path, yaml(&cert, &key, &backend.url())).expect("write config");
    let config = gatehouse_config::load_file(&config_path).expect("config loads");
    let gw = Gateway::start(
        config,
        gatehouse_core::Options { workers: 1, admin: false, config_path: Some(config_path.clone()) },
    )
    .await
    .expect("starts");
    let addr = gw.listen_addrs[0];
    let ca = pki.ca();
    let opts = || ClientOpts { server_name: "gw.test", ca: Some(&ca), ..Default::default() };

    let mut kept = TlsClient::connect(addr, opts()).await.expect("handshake");
    assert_eq!(kept.server_subject, "CN=v1");
    assert_eq!(kept.get("/1", "gw.test").await.status, 200);

    install(&v2, &cert, &key);
    let swapped = wait_for(Duration::from_secs(5), || async {
        TlsClient::connect(addr, opts()).await.map(|c| c.server_subject == "CN=v2").unwrap_or(false)
    })
    .await;
    assert!(
        swapped,
        "the new certificate was not served after its files changed (reloads: {}, failed: {})",
        gw.reload_count(),
        gw.shared().metrics.reloads_failed.load(std::sync::atomic::Ordering::Relaxed)
    );
    // The connection opened before the change is still open and still served.
    assert!(!kept.is_closed());
    assert_eq!(kept.try_send("/2", "gw.test", &[]).await.expect("kept connection").status, 200);

    // An expired certificate fails the reload: the running one keeps serving.
    let failed_before = gw.shared().metrics.reloads_failed.load(std::sync::atomic::Ordering::Relaxed);
    install(&expired, &cert, &key);
    let refused = wait_for(Duration::from_secs(5), || async {
        gw.shared().metrics.reloads_failed.load(std::sync::atomic::Ordering::Relaxed) > failed_before
    })
    .await;
    assert!(refused, "the expired certificate did not fail a reload");
    let c = TlsClient::connect(addr, opts()).await.expect("still serving");
    assert_eq!(c.server_subject, "CN=v2");
    assert_eq!(kept.try_send("/3", "gw.test", &[]).await.expect("kept connection").status, 200);

    // The same through the reload API: the error names the field.
    let bad = gatehouse_testkit::load(&yaml(&expired.cert, &expired.key, &backend.url()));
    let e = gw.reload(bad).expect_err("expired certificate refused").to_string();
    assert!(e.contains("listeners[0].tls.certificates[0].cert") && e.contains("expired on"), "{e}");
    gw.shutdown().await;
}

#[test]
fn validate_names_the_bad_certificate_field() {
    let pki = Pki::new("validate-ca");
    let good = pki.issue("good", "/CN=good", &["a.test"], 10);
    let other = pki.issue("other", "/CN=other", &["b.test"], 10);
    let expired = pki.issue("expired", "/CN=expired", &["c.test"], -1);
    let file = pki.dir.join("bad.yaml");
    let run = |yaml: &str| {
        std::fs::write(&file, yaml).expect("write");
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_gatehouse"))
            .arg("validate")
            .arg(&file)
            .output()
            .expect("run gatehouse validate");
        (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let cfg = |certs: &str| {
        format!(
            "listeners:\n  - address: 127.0.0.1:0\n    tls:\n      certificates:\n{certs}upstreams:\n  - name: u\n    targets: [{{url: \"http://127.0.0.1:1\"}}]\nroutes:\n  - {{name: r, upstream: u}}\n"
        )
    };
    let entry = |c: &Path, k: &Path| format!("        - {{cert: {}, key: {}}}\n", c.display(), k.display());

    let (ok, out) = run(&cfg(&entry(&good.cert, &good.key)));
    assert!(ok, "{out}");

    // Second entry: the key of another certificate.
    let (ok, out) = run(&cfg(&(entry(&good.cert, &good.key) + &entry(&other.cert, &good.key))));
    assert!(!ok);
    assert!(out.contains("listeners[0].tls.certificates[1].key") && out.contains("does not match"), "{out}");

    let (ok, out) = run(&cfg(&entry(&expired.cert, &expired.key)));
    assert!(!ok);
    assert!(out.contains("listeners[0].tls.certificates[0].cert") && out.contains("expired on"), "{out}");

    let missing = pki.dir.join("missing.pem");
    let (ok, out) = run(&cfg(&entry(&good.cert, &missing)));
    assert!(!ok);
    assert!(out.contains("listeners[0].tls.certificates[0].key") && out.contains("missing.pem"), "{out}");

    // Shape errors come from the config validator, with their paths too.
    let (ok, out) = run(&cfg(&format!(
        "        - {{cert: {}, key: {}, default: true, names: [\"bad name\"]}}\n        - {{cert: {}, key: {}, default: true}}\n",
        good.cert.display(),
        good.key.display(),
        other.cert.display(),
        other.key.display()
    )));
    assert!(!ok);
    assert!(out.contains("listeners[0].tls.certificates[0].names[0]"), "{out}");
    assert!(out.contains("listeners[0].tls.certificates[1].default"), "{out}");
}

#[test]
fn tls_example_loads_its_files() {
    let pki = Pki::new("example-ca");
    let c = pki.issue("bench", "/CN=localhost", &["localhost", "127.0.0.1"], 10);
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/bench-tls.yaml");
    let text = std::fs::read_to_string(file).expect("read example");
    let env = |n: &str| match n {
        "LISTEN_PORT" => Some("8443".to_string()),
        "BACKEND_PORT" => Some("9001".to_string()),
        "TLS_CERT" => Some(c.cert.display().to_string()),
        "TLS_KEY" => Some(c.key.display().to_string()),
        _ => None,
    };
    let config = gatehouse_config::load_str(&text, &env).expect("example loads");
    assert_eq!(gatehouse_core::tls::check_files(&config), vec![]);
}
