//! Every file in `examples/` must load without a single error: they are what users copy.

use std::path::{Path, PathBuf};

fn example_files() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|ext| ext == "yaml" || ext == "yml"))
        .collect();
    files.sort();
    files
}

/// The variables the examples use, with values that make a valid config.
fn env(name: &str) -> Option<String> {
    match name {
        "LISTEN_PORT" => Some("8080".to_string()),
        "BACKEND_PORT" => Some("9001".to_string()),
        "REDIS_URL" => Some("redis://127.0.0.1:6379/0".to_string()),
        // Only paths here: the config crate checks shape; `tls_example_loads_its_files` in the
        // gatehouse crate reads real files through the data plane.
        "TLS_CERT" => Some("/etc/gatehouse/tls/cert.pem".to_string()),
        "TLS_KEY" => Some("/etc/gatehouse/tls/key.pem".to_string()),
        _ => None,
    }
}

#[test]
fn every_example_is_valid() {
    let files = example_files();
    assert!(files.len() >= 3, "expected at least 3 example files, found {files:?}");
    let mut failures = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap_or_else(|e| panic!("cannot read {}: {e}", file.display()));
        if let Err(errors) = gatehouse_config::load_str(&text, &env) {
            for e in errors {
                failures.push(format!("{}: {e}", file.display()));
            }
        }
    }
    assert!(failures.is_empty(), "invalid examples:\n{}", failures.join("\n"));
}

#[test]
fn bench_config_is_minimal() {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/bench.yaml");
    let text = std::fs::read_to_string(file).unwrap();
    let cfg = gatehouse_config::load_str(&text, &env).unwrap();
    assert_eq!(cfg.listeners.len(), 1);
    assert_eq!(cfg.listeners[0].address, "127.0.0.1:8080");
    assert_eq!(cfg.upstreams.len(), 1);
    assert_eq!(cfg.upstreams[0].name, "backend");
    assert_eq!(cfg.upstreams[0].targets.len(), 1);
    assert_eq!(cfg.upstreams[0].targets[0].url, "http://127.0.0.1:9001");
    assert_eq!(cfg.routes.len(), 1);
    assert_eq!(cfg.routes[0].name, "all");
    assert_eq!(cfg.routes[0].matches, gatehouse_config::RouteMatch::default());
}

/// The auth load-benchmark row must measure the policy and nothing else: the same listener,
/// upstream and route as bench.yaml, plus consumers and one `auth` policy (JWT RS256).
#[test]
fn bench_auth_config_is_bench_plus_a_jwt_policy() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let load = |name: &str| {
        let text = std::fs::read_to_string(dir.join(name)).unwrap();
        gatehouse_config::load_str(&text, &env).unwrap()
    };
    let (plain, auth) = (load("bench.yaml"), load("bench-auth.yaml"));
    assert_eq!(auth.listeners, plain.listeners);
    assert_eq!(auth.upstreams, plain.upstreams);
    assert_eq!(auth.routes.len(), 1);
    let mut route = auth.routes[0].clone();
    let policies = std::mem::take(&mut route.policies);
    assert_eq!(route, plain.routes[0], "only the policies differ");
    let [gatehouse_config::Policy::Auth(a)] = policies.as_slice() else { panic!("one auth policy: {policies:?}") };
    let [gatehouse_config::AuthMethod::Jwt(j)] = a.methods.as_slice() else { panic!("one jwt method: {a:?}") };
    assert_eq!(j.algorithms, ["RS256"]);
    assert_eq!(j.keys.len(), 1);
}

#[test]
fn bench_config_needs_its_variables() {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/bench.yaml");
    let text = std::fs::read_to_string(file).unwrap();
    let errors = gatehouse_config::load_str(&text, &|_| None).unwrap_err();
    let messages: Vec<String> = errors.iter().map(|e| e.message.clone()).collect();
    assert_eq!(
        messages,
        vec![
            "environment variable `LISTEN_PORT` is not set".to_string(),
            "environment variable `BACKEND_PORT` is not set".to_string()
        ]
    );
}

#[test]
fn complete_example_in_the_docs_is_valid() {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/configuration.md");
    let text = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("cannot read {}: {e}", file.display()));
    let start = text.find("```yaml\n").expect("a yaml block") + "```yaml\n".len();
    let len = text[start..].find("```").expect("the block ends");
    let yaml = &text[start..start + len];
    assert!(yaml.contains("routes:"), "the first yaml block should be the complete example");
    let env = |name: &str| (name == "ORDERS_PORT").then(|| "8080".to_string());
    if let Err(errors) = gatehouse_config::load_str(yaml, &env) {
        let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
        panic!("the complete example in docs/configuration.md is invalid:\n{}", lines.join("\n"));
    }
}

#[test]
fn bench_tls_config_terminates_tls_with_its_variables() {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/bench-tls.yaml");
    let text = std::fs::read_to_string(file).unwrap();
    let cfg = gatehouse_config::load_str(&text, &env).unwrap();
    assert_eq!(cfg.listeners.len(), 1);
    let tls = cfg.listeners[0].tls.as_ref().expect("tls section");
    assert_eq!(tls.certificates.len(), 1);
    assert_eq!(tls.certificates[0].cert, "/etc/gatehouse/tls/cert.pem");
    assert_eq!(tls.certificates[0].key, "/etc/gatehouse/tls/key.pem");
    assert_eq!(cfg.upstreams[0].targets[0].url, "http://127.0.0.1:9001");
    // Without TLS_CERT the file does not load (the variable is required).
    let without = |n: &str| if n == "TLS_CERT" { None } else { env(n) };
    assert!(gatehouse_config::load_str(&text, &without).is_err());
}
