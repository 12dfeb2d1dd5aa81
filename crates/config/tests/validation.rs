//! Validation rules end to end: YAML text through `load_str`, then each rule's path, message and
//! line:column. These drive the whole loader, so they live here rather than in `src/validate/`
//! (which must not depend on `load`); they use only the crate's public API.

use gatehouse_config::validate::{listener_name, validate, HOP_BY_HOP_HEADERS};
use gatehouse_config::{load_str, ConfigError, HeaderOps, RouteMatch};

const HEAD: &str = "\
listeners:
  - address: 127.0.0.1:8080
upstreams:
  - name: users
    targets: [{url: \"http://127.0.0.1:9001\"}]
  - name: orders
    targets: [{url: \"http://127.0.0.1:9002\"}]
";

fn problems(text: &str) -> Vec<ConfigError> {
    match load_str(text, &|_| None) {
        Ok(_) => Vec::new(),
        Err(e) => e,
    }
}

/// Asserts that loading `text` fails with exactly one error, at `path`, containing `needle`.
#[track_caller]
fn expect_one(text: &str, path: &str, needle: &str) -> ConfigError {
    let errors = problems(text);
    assert_eq!(errors.len(), 1, "expected one error at {path}, got {errors:#?}");
    let e = errors.into_iter().next().unwrap();
    assert_eq!(e.path, path, "{e}");
    assert!(e.message.contains(needle), "expected {needle:?} in: {e}");
    e
}

#[track_caller]
fn expect_ok(text: &str) {
    let errors = problems(text);
    assert!(errors.is_empty(), "expected no errors, got {errors:#?}");
}

fn routes(r: &str) -> String {
    format!("{HEAD}routes:\n{r}")
}

fn listeners(l: &str) -> String {
    format!("listeners:\n{l}")
}

fn upstream(u: &str) -> String {
    format!("listeners:\n  - address: 127.0.0.1:8080\nupstreams:\n{u}")
}

#[test]
fn http2_settings_and_upstream_protocols() {
    let l = |h: &str| listeners(&format!("  - address: 127.0.0.1:8080\n    http2: {h}\n"));
    expect_ok(&l("{max_concurrent_streams: 10, initial_stream_window: 64KiB, reset_window: 1s}"));
    expect_ok(&l("{enabled: false}"));
    expect_one(&l("{max_concurrent_streams: 0}"), "listeners[0].http2.max_concurrent_streams", "at least 1");
    expect_one(&l("{initial_stream_window: 1KiB}"), "listeners[0].http2.initial_stream_window", "65535");
    expect_one(&l("{initial_connection_window: 4GiB}"), "listeners[0].http2.initial_connection_window", "RFC 9113");
    expect_one(&l("{max_resets: 0}"), "listeners[0].http2.max_resets", "at least 1");
    expect_one(&l("{reset_window: 0s}"), "listeners[0].http2.reset_window", "greater than 0");
    expect_ok(&upstream("  - {name: u, targets: [{url: \"h2c://a:50051\"}, {url: \"h2c://b:50051\"}]}\n"));
    expect_ok(&upstream("  - {name: u, protocol: http2, targets: [{url: \"https://a:443\"}]}\n"));
    expect_one(
        &upstream("  - {name: u, protocol: http2, targets: [{url: \"http://a:80\"}]}\n"),
        "upstreams[0].targets[0].url",
        "h2c://",
    );
    expect_one(
        &upstream("  - {name: u, targets: [{url: \"h2c://a:80\"}, {url: \"http://b:80\"}]}\n"),
        "upstreams[0].targets",
        "one protocol",
    );
}

#[test]
fn listener_tls_shape() {
    let tls = |t: &str| listeners(&format!("  - address: 127.0.0.1:8443\n    tls:\n{t}"));
    expect_ok(&tls("      certificates: [{cert: a.pem, key: a.key, names: [\"*.example.com\", api.example.com]}]\n"));
    expect_one(&tls("      certificates: []\n"), "listeners[0].tls.certificates", "at least one certificate");
    expect_one(
        &tls("      certificates: [{cert: \"\", key: a.key}]\n"),
        "listeners[0].tls.certificates[0].cert",
        "path",
    );
    expect_one(
        &tls("      certificates: [{cert: a.pem, key: a.key, names: [\"a.*.com\"]}]\n"),
        "listeners[0].tls.certificates[0].names[0]",
        "wildcard",
    );
    expect_one(
        &tls("      certificates: [{cert: a.pem, key: a.key, default: true}, {cert: b.pem, key: b.key, default: true}]\n"),
        "listeners[0].tls.certificates[1].default",
        "only one default",
    );
    expect_one(
        &tls("      certificates: [{cert: a.pem, key: a.key}]\n      min_version: \"1.1\"\n"),
        "listeners[0].tls.min_version",
        "1.2",
    );
    expect_one(
        &tls("      certificates: [{cert: a.pem, key: a.key}]\n    redirect_https: {}\n"),
        "listeners[0].redirect_https",
        "already is",
    );
    expect_one(
        &listeners("  - address: 127.0.0.1:80\n    redirect_https: {status: 302}\n"),
        "listeners[0].redirect_https.status",
        "301 or 308",
    );
    expect_one(
        &upstream("  - {name: u, targets: [{url: \"https://a:443\"}], tls: {server_name: \"bad name\"}}\n"),
        "upstreams[0].tls.server_name",
        "not a DNS name",
    );
    expect_ok(&upstream(
        "  - {name: u, targets: [{url: \"https://a:443\"}], tls: {ca: ca.pem, server_name: a.internal}}\n",
    ));
}

#[test]
fn head_is_valid() {
    expect_ok(HEAD);
}

#[test]
fn version() {
    expect_ok(&format!("version: 1\n{HEAD}"));
    let e = expect_one(&format!("version: 2\n{HEAD}"), "version", "unsupported version 2");
    assert_eq!((e.line, e.column), (Some(1), Some(10)));
}

#[test]
fn listener_addresses() {
    expect_ok(&listeners(
        "  - address: localhost:80\n  - address: \"[::1]:80\"\n  - address: 0.0.0.0:0\n  - address: 0.0.0.0:0\n",
    ));
    let e = expect_one(&listeners("  - address: example.com:80\n"), "listeners[0].address", "not an IP address");
    assert_eq!((e.line, e.column), (Some(2), Some(14)));
    expect_one(&listeners("  - address: 127.0.0.1\n"), "listeners[0].address", "no port");
    expect_one(
        &listeners("  - address: 127.0.0.1:80\n  - address: 127.0.0.1:80\n"),
        "listeners[1].address",
        "already used by listeners[0]",
    );
    expect_one(&listeners("  - address: 0.0.0.0:80\n  - address: 127.0.0.1:80\n"), "listeners[1].address", "overlaps");
    expect_ok(&listeners("  - address: 0.0.0.0:80\n  - address: \"[::1]:80\"\n"));
}

#[test]
fn listener_names() {
    expect_one(
        &listeners("  - {name: web, address: 127.0.0.1:80}\n  - {name: web, address: 127.0.0.1:81}\n"),
        "listeners[1].name",
        "duplicate listener name `web` (also listeners[0])",
    );
    expect_one(
        &listeners("  - {name: listener-1, address: 127.0.0.1:80}\n  - {address: 127.0.0.1:81}\n"),
        "listeners[1].name",
        "defaults to `listener-N`",
    );
    expect_one(
        &listeners("  - {name: \"my web\", address: 127.0.0.1:80}\n"),
        "listeners[0].name",
        "invalid listener name",
    );
    assert_eq!(listener_name(&load_str(HEAD, &|_| None).unwrap().listeners[0], 0), "listener-0");
}

#[test]
fn trusted_proxies() {
    expect_ok(&listeners("  - address: 127.0.0.1:80\n    trusted_proxies: [10.0.0.0/8, 192.168.1.7, \"fd00::/8\"]\n"));
    expect_one(
        &listeners("  - address: 127.0.0.1:80\n    trusted_proxies: [10.0.0.0/8, 10.0.0.1/8]\n"),
        "listeners[0].trusted_proxies[1]",
        "write `10.0.0.0/8`",
    );
    expect_one(
        &listeners("  - address: 127.0.0.1:80\n    trusted_proxies: [proxy.local]\n"),
        "listeners[0].trusted_proxies[0]",
        "not a CIDR block",
    );
}

#[test]
fn listener_limits_and_timeouts() {
    for field in ["max_header_bytes", "max_headers", "max_uri_bytes", "max_body_bytes"] {
        let errors = problems(&listeners(&format!("  - address: 127.0.0.1:80\n    limits: {{{field}: 0}}\n")));
        assert!(
            errors
                .iter()
                .any(|e| e.path == format!("listeners[0].limits.{field}") && e.message.contains("greater than 0")),
            "{field}: {errors:#?}"
        );
    }
    expect_one(
        &listeners("  - address: 127.0.0.1:80\n    limits: {max_header_bytes: 4KiB, max_uri_bytes: 8KiB}\n"),
        "listeners[0].limits.max_uri_bytes",
        "cannot exceed max_header_bytes",
    );
    for field in ["header_read", "body_read", "idle"] {
        expect_one(
            &listeners(&format!("  - address: 127.0.0.1:80\n    timeouts: {{{field}: 0s}}\n")),
            &format!("listeners[0].timeouts.{field}"),
            "greater than 0",
        );
    }
}

#[test]
fn admin() {
    expect_ok(&format!("{HEAD}admin: {{address: 127.0.0.1:9901}}\n"));
    expect_ok(&format!("{HEAD}admin:\n"));
    expect_one(&format!("{HEAD}admin: {{address: nowhere}}\n"), "admin.address", "not an address");
    expect_ok(&format!("{HEAD}admin: {{token: 0123456789abcdef, history: 3}}\n"));
    expect_one(&format!("{HEAD}admin: {{token: short}}\n"), "admin.token", "at least 16");
    expect_one(&format!("{HEAD}admin: {{history: 0}}\n"), "admin.history", "between 1 and 1000");
    expect_one(&format!("{HEAD}admin: {{address: 127.0.0.1:8080}}\n"), "admin.address", "already used by listeners[0]");
}

#[test]
fn reserved_sections() {
    expect_ok(&format!("{HEAD}consumers: []\npolicies: []\ncluster:\n"));
    expect_ok(&format!("{HEAD}cluster: {{}}\n"));
    expect_one(&format!("{HEAD}policies:\n  a: 1\n"), "policies", "reserved for a later release");
}

fn identity(consumers: &str, policies: &str) -> String {
    format!("{HEAD}consumers:\n{consumers}routes:\n  - name: a\n    upstream: users\n    policies:\n{policies}")
}

const ALICE: &str = "  - name: alice\n    credentials:\n      api_keys: [{sha256: 0264b8205526ceea6fff4c7d3d3b6cf383d579553a931736819eb39ec6dd9a04}]\n";

#[test]
fn identity_sections() {
    let key_auth = "      - auth: {methods: [{api_key: {}}]}\n";
    expect_ok(&identity(ALICE, key_auth));
    expect_one(
        &identity("  - name: alice\n    credentials: {api_keys: [{sha256: abc}]}\n", key_auth),
        "consumers[0].credentials.api_keys[0].sha256",
        "64 hex digits",
    );
    expect_one(
        &identity(&format!("{ALICE}{}", ALICE.replace("alice", "bob")), key_auth),
        "consumers[1].credentials.api_keys[0].sha256",
        "also given at",
    );
    expect_one(
        &identity(&format!("{ALICE}  - name: alice\n"), key_auth),
        "consumers[1].name",
        "duplicate consumer name",
    );
    expect_one(
        &identity(
            "  - name: x\n    credentials: {basic: [{username: x, password_hash: hunter2}]}\n",
            "      - auth: {methods: [basic: {}]}\n",
        ),
        "consumers[0].credentials.basic[0].password_hash",
        "argon2",
    );
    expect_one(
        &identity(ALICE, "      - auth: {methods: []}\n"),
        "routes[0].policies[0].auth.methods",
        "at least one method",
    );
    expect_one(
        &identity(ALICE, "      - auth: {anonymous: nobody, methods: [{api_key: {}}]}\n"),
        "routes[0].policies[0].auth.anonymous",
        "unknown consumer",
    );
    expect_one(
        &identity(ALICE, "      - authorize: {groups: [admins]}\n"),
        "routes[0].policies[0].authorize",
        "needs an `auth` policy earlier",
    );
    expect_one(
        &identity(ALICE, "      - rate_limit: {limit: 1/s, key: consumer}\n"),
        "routes[0].policies[0].rate_limit.key",
        "needs an `auth` policy earlier",
    );
    expect_ok(&identity(ALICE, &format!("{key_auth}      - rate_limit: {{limit: 1/s, key: [consumer, {{claim: tenant}}]}}\n      - authorize: {{consumers: [alice]}}\n")));
    expect_one(
        &identity(ALICE, &format!("{key_auth}      - authorize: {{}}\n")),
        "routes[0].policies[1].authorize",
        "at least one of",
    );
    let jwt = |j: &str| identity(ALICE, &format!("      - auth: {{methods: [{{jwt: {j}}}]}}\n"));
    expect_one(&jwt("{}"), "routes[0].policies[0].auth.methods[0].jwt", "`keys` (static) or `jwks`");
    expect_one(
        &jwt("{algorithms: [none], jwks: {url: \"http://idp:80/k\"}}"),
        "routes[0].policies[0].auth.methods[0].jwt.algorithms[0]",
        "never accepted",
    );
    expect_ok(&jwt("{jwks: {url: \"https://idp.example/.well-known/jwks.json\"}}"));
    expect_one(
        &jwt("{jwks: {url: \"ftp://idp:21/k\"}}"),
        "routes[0].policies[0].auth.methods[0].jwt.jwks.url",
        "unsupported scheme",
    );
    expect_one(
        &jwt("{keys: [{pem: x, alg: HS256}]}"),
        "routes[0].policies[0].auth.methods[0].jwt.keys[0].alg",
        "key-confusion",
    );
    expect_one(
        &jwt("{keys: [{secret: short, alg: HS256}]}"),
        "routes[0].policies[0].auth.methods[0].jwt.keys[0].secret",
        "32 bytes",
    );
    expect_one(&jwt("{keys: [{pem: x}]}"), "routes[0].policies[0].auth.methods[0].jwt.keys[0].alg", "required");
    expect_one(
        &jwt("{keys: [{pem: x, secret: zz, alg: RS256}]}"),
        "routes[0].policies[0].auth.methods[0].jwt.keys[0]",
        "exactly one of",
    );
    expect_one(
        &identity(ALICE, "      - external_auth: {url: \"http://a:1/x\", copy_headers: [connection]}\n"),
        "routes[0].policies[0].external_auth.copy_headers[0]",
        "invalid header name",
    );
}

fn with_redis(redis: &str) -> String {
    format!("{HEAD}cluster:\n  redis:\n{redis}")
}

#[test]
fn cluster_redis_section() {
    expect_ok(&with_redis("    url: redis://127.0.0.1:6379/0\n"));
    expect_ok(&with_redis(
        "    url: \"redis://user:p@ss@redis.internal:6380/3\"\n    timeout: 20ms\n    connect_timeout: 2s\n    key_prefix: \"prod:gh:\"\n",
    ));
    expect_ok(&with_redis("    url: \"redis://[::1]:6379\"\n"));
    expect_ok(&with_redis("    url: rediss://cache:6380/0\n"));
    expect_ok(&with_redis("    url: redis://cache:6380/0\n    pool_size: 8\n"));
    expect_one(
        &with_redis("    url: redis://cache:6380/0\n    pool_size: 0\n"),
        "cluster.redis.pool_size",
        "between 1 and 64",
    );
    let e = expect_one(
        &with_redis("    url: redis://cache:6380/0\n    tls: {ca_file: /dev/null}\n"),
        "cluster.redis.tls",
        "need a `rediss://` URL",
    );
    assert_eq!(e.line, Some(11), "{e}");
    expect_one(
        &with_redis("    url: rediss://cache:6380/0\n    tls: {ca_file: /nonexistent/ca.pem}\n"),
        "cluster.redis.tls.ca_file",
        "cannot read",
    );
    expect_one(&with_redis("    url: http://cache:6379\n"), "cluster.redis.url", "unsupported Redis URL");
    expect_one(&with_redis("    url: \"redis://:6379\"\n"), "cluster.redis.url", "has no host");
    expect_one(&with_redis("    url: \"redis://cache:0\"\n"), "cluster.redis.url", "invalid Redis port");
    expect_one(&with_redis("    url: \"redis://cache/x\"\n"), "cluster.redis.url", "invalid Redis database");
    expect_one(&with_redis("    url: \"redis://ca che\"\n"), "cluster.redis.url", "invalid Redis host");
    expect_one(&with_redis("    url: redis://a\n    timeout: 0ms\n"), "cluster.redis.timeout", "greater than 0");
    expect_one(
        &with_redis("    url: redis://a\n    connect_timeout: 1h\n"),
        "cluster.redis.connect_timeout",
        "at most 10s",
    );
    expect_one(&with_redis("    url: redis://a\n    key_prefix: \"a b\"\n"), "cluster.redis.key_prefix", "spaces");
    expect_one(&with_redis("    url: redis://a\n    pool: 4\n"), "cluster.redis.pool", "unknown field");
    expect_one(&with_redis("    timeout: 5ms\n"), "cluster.redis", "missing field `url`");
    expect_one(&format!("{HEAD}cluster:\n  etcd: {{}}\n"), "cluster.etcd", "unknown field");
}

#[test]
fn cluster_mode_rate_limits() {
    let redis = "cluster:\n  redis: {url: \"redis://127.0.0.1:6379\"}\n";
    let with = |p: &str| format!("{}{redis}", policy(p));
    expect_ok(&with("rate_limit: {limit: 100/s, mode: cluster}"));
    for on in ["fail_open", "fail_closed", "local"] {
        expect_ok(&with(&format!("rate_limit: {{limit: 100/s, mode: cluster, on_redis_error: {on}}}")));
    }
    expect_ok(&policy("rate_limit: {limit: 100/s, mode: local}"));
    let e = expect_one(
        &policy("rate_limit: {limit: 100/s, mode: cluster}"),
        "routes[1].policies[0].rate_limit.mode",
        "needs a `cluster.redis` section",
    );
    assert!(e.line.is_some(), "{e}");
    expect_one(
        &with("rate_limit: {limit: 100/s, mode: global}"),
        "routes[1].policies[0].rate_limit.mode",
        "unknown variant `global`",
    );
    expect_one(
        &with("rate_limit: {limit: 1/s, mode: cluster, on_redis_error: ignore}"),
        "routes[1].policies[0].rate_limit.on_redis_error",
        "unknown variant",
    );
    expect_one(
        &with("rate_limit: {limit: 1/s, on_redis_error: fail_open}"),
        "routes[1].policies[0].rate_limit.on_redis_error",
        "only applies to `mode: cluster`",
    );
    expect_one(
        &with("rate_limit: {limit: 100/s, burst: 50, batch: 10}"),
        "routes[1].policies[0].rate_limit.batch",
        "only applies to `mode: cluster`",
    );
    expect_ok(&with("rate_limit: {limit: 100/s, burst: 50, mode: cluster, batch: 10}"));
    expect_one(
        &with("rate_limit: {limit: 100/s, burst: 50, mode: cluster, batch: 1}"),
        "routes[1].policies[0].rate_limit.batch",
        "between 2 and",
    );
    expect_one(
        &with("rate_limit: {limit: 2000000/s, mode: cluster}"),
        "routes[1].policies[0].rate_limit.limit",
        "one request per microsecond",
    );
    expect_ok(&policy("rate_limit: {limit: 2000000/s}"));
}

#[test]
fn upstream_names() {
    expect_one(
        &upstream("  - {name: \"\", targets: [{url: \"http://a:1\"}]}\n"),
        "upstreams[0].name",
        "must not be empty",
    );
    expect_one(
        &upstream("  - {name: \"u/1\", targets: [{url: \"http://a:1\"}]}\n"),
        "upstreams[0].name",
        "invalid upstream name",
    );
    expect_one(
        &upstream("  - {name: u, targets: [{url: \"http://a:1\"}]}\n  - {name: u, targets: [{url: \"http://a:1\"}]}\n"),
        "upstreams[1].name",
        "duplicate upstream name `u` (also upstreams[0])",
    );
}

#[test]
fn upstream_targets() {
    expect_one(&upstream("  - {name: u, targets: []}\n"), "upstreams[0].targets", "at least one target");
    expect_one(&upstream("  - {name: u, targets: [{url: \"http://a\"}]}\n"), "upstreams[0].targets[0].url", "no port");
    expect_one(
        &upstream("  - {name: u, targets: [{url: \"http://a:1/v1\"}]}\n"),
        "upstreams[0].targets[0].url",
        "has a path",
    );
    expect_one(
        &upstream("  - {name: u, targets: [{url: \"http://a:1\"}, {url: \"http://A:1/\"}]}\n"),
        "upstreams[0].targets[1].url",
        "duplicate target `a:1`",
    );
    expect_one(
        &upstream("  - {name: u, targets: [{url: \"http://a:1\", weight: 0}]}\n"),
        "upstreams[0].targets[0].weight",
        "between 1 and 10000",
    );
    expect_one(
        &upstream("  - {name: u, targets: [{url: \"http://a:1\", weight: 10001}]}\n"),
        "upstreams[0].targets[0].weight",
        "between 1 and 10000",
    );
    expect_ok(&upstream("  - {name: u, targets: [{url: \"http://a:1\", weight: 10000}, {url: \"http://[::1]:2\"}]}\n"));
}

#[test]
fn upstream_balancer_and_pool() {
    let u = |extra: &str| upstream(&format!("  - name: u\n    targets: [{{url: \"http://a:1\"}}]\n{extra}"));
    for b in [
        "round_robin",
        "least_request",
        "peak_ewma",
        "{consistent_hash: client_ip}",
        "{consistent_hash: path}",
        "{consistent_hash: {header: x-user}}",
        "{consistent_hash: {cookie: session}}",
    ] {
        expect_ok(&u(&format!("    balancer: {b}\n")));
    }
    expect_one(
        &u("    balancer: {consistent_hash: {header: \"x user\"}}\n"),
        "upstreams[0].balancer.consistent_hash.header",
        "invalid header name",
    );
    expect_one(
        &u("    balancer: {consistent_hash: {cookie: \"a;b\"}}\n"),
        "upstreams[0].balancer.consistent_hash.cookie",
        "invalid cookie name",
    );
    expect_one(
        &u("    pool: {max_idle_per_target: 100001}\n"),
        "upstreams[0].pool.max_idle_per_target",
        "at most 100000",
    );
    expect_ok(&u("    pool: {max_idle_per_target: 0}\n"));
    expect_one(&u("    pool: {idle_timeout: 0ms}\n"), "upstreams[0].pool.idle_timeout", "greater than 0");
    expect_one(&u("    timeouts: {connect: 0s}\n"), "upstreams[0].timeouts.connect", "greater than 0");
    expect_one(&u("    timeouts: {response_header: 0s}\n"), "upstreams[0].timeouts.response_header", "greater than 0");
}

#[test]
fn health_checks() {
    let u =
        |hc: &str| upstream(&format!("  - name: u\n    targets: [{{url: \"http://a:1\"}}]\n    health_check: {hc}\n"));
    expect_ok(&u("{}"));
    expect_ok(&u("{path: /healthz, interval: 2s, timeout: 2s, expected_status: {min: 200, max: 200}}"));
    expect_one(&u("{path: healthz}"), "upstreams[0].health_check.path", "must start with `/`");
    expect_one(&u("{interval: 0s}"), "upstreams[0].health_check.interval", "greater than 0");
    expect_one(&u("{timeout: 0s}"), "upstreams[0].health_check.timeout", "greater than 0");
    expect_one(&u("{interval: 1s, timeout: 2s}"), "upstreams[0].health_check.timeout", "must not exceed interval");
    expect_one(&u("{healthy_threshold: 0}"), "upstreams[0].health_check.healthy_threshold", "at least 1");
    expect_one(&u("{unhealthy_threshold: 0}"), "upstreams[0].health_check.unhealthy_threshold", "at least 1");
    expect_one(
        &u("{expected_status: {min: 99, max: 200}}"),
        "upstreams[0].health_check.expected_status.min",
        "between 100 and 599",
    );
    expect_one(
        &u("{expected_status: {min: 200, max: 600}}"),
        "upstreams[0].health_check.expected_status.max",
        "between 100 and 599",
    );
    expect_one(
        &u("{expected_status: {min: 300, max: 200}}"),
        "upstreams[0].health_check.expected_status",
        "must not be greater than max",
    );
}

#[test]
fn resilience_settings() {
    let u = |extra: &str| upstream(&format!("  - name: u\n    targets: [{{url: \"http://a:1\"}}]\n{extra}"));
    expect_ok(&u("    outlier_detection: {consecutive_failures: 3, base_ejection: 1s}\n    circuit_breaker: {slow_call_duration: 1s}\n"));
    expect_one(
        &u("    outlier_detection: {failure_rate: 101}\n"),
        "upstreams[0].outlier_detection.failure_rate",
        "between 0 and 100",
    );
    expect_one(
        &u("    outlier_detection: {base_ejection: 10s, max_ejection: 5s}\n"),
        "upstreams[0].outlier_detection.max_ejection",
        "must not be shorter",
    );
    expect_one(&u("    circuit_breaker: {min_calls: 0}\n"), "upstreams[0].circuit_breaker.min_calls", "at least 1");
    expect_one(
        &u("    circuit_breaker: {open_duration: 0s}\n"),
        "upstreams[0].circuit_breaker.open_duration",
        "greater than 0",
    );
    expect_one(&u("    limits: {max_requests: 0}\n"), "upstreams[0].limits.max_requests", "between 1");
    expect_one(&u("    retry_budget: {percent: 5000}\n"), "upstreams[0].retry_budget.percent", "at most");
    let r = |extra: &str| routes(&format!("  - name: r\n    upstream: users\n{extra}"));
    expect_ok(&r("    retry: {attempts: 3, on: [connect_failure, reset, timeout, 503]}\n    deadline: {timeout: 2s, format: grpc}\n    hedge: {delay: 50ms}\n"));
    expect_one(&r("    retry: {attempts: 0}\n"), "routes[0].retry.attempts", "between 1");
    expect_one(&r("    retry: {on: [200]}\n"), "routes[0].retry.on[0]", "4xx and 5xx");
    expect_one(&r("    retry: {on: [503, 503]}\n"), "routes[0].retry.on[1]", "listed twice");
    expect_one(
        &r("    retry: {backoff: {base: 100ms, max: 10ms}}\n"),
        "routes[0].retry.backoff.max",
        "must not be shorter",
    );
    expect_one(
        &r("    deadline: {timeout: 1s, header: \"bad header\"}\n"),
        "routes[0].deadline.header",
        "invalid header name",
    );
    expect_one(&r("    hedge: {delay: 0s}\n"), "routes[0].hedge.delay", "greater than 0");
    expect_one(
        &r("    circuit_breaker: {half_open_probes: 0}\n"),
        "routes[0].circuit_breaker.half_open_probes",
        "between 1",
    );
    let errs = problems(&r("    retry: {on: [sometimes]}\n"));
    assert!(errs.iter().any(|e| e.message.contains("unknown retry condition")), "{errs:?}");
}

#[test]
fn route_names_and_upstreams() {
    expect_ok(&routes("  - {name: a, upstream: users}\n  - {name: b.v2, upstream: orders, match: {hosts: [x.com]}}\n"));
    expect_one(
        &routes("  - {name: a, upstream: users}\n  - {name: a, upstream: users, match: {methods: [GET]}}\n"),
        "routes[1].name",
        "duplicate route name `a` (also routes[0])",
    );
    expect_one(&routes("  - {name: \"a b\", upstream: users}\n"), "routes[0].name", "invalid route name");
    let e = expect_one(&routes("  - name: a\n    upstream: userz\n"), "routes[0].upstream", "");
    assert_eq!(e.message, "unknown upstream \"userz\" (known: users, orders)");
    assert_eq!((e.line, e.column), (Some(10), Some(15)));
}

#[test]
fn hosts() {
    let r = |h: &str| routes(&format!("  - {{name: a, upstream: users, match: {{hosts: [{h}]}}}}\n"));
    for ok in [
        "api.example.com",
        "API.Example.COM",
        "\"*.example.com\"",
        "127.0.0.1",
        "\"[::1]\"",
        "localhost",
        "a_b.internal",
    ] {
        expect_ok(&r(ok));
    }
    expect_one(
        &r("\"api.example.com:8080\""),
        "routes[0].match.hosts[0]",
        "ports are not part of host matching: write `api.example.com`",
    );
    expect_one(&r("\"[::1]:80\""), "routes[0].match.hosts[0]", "ports are not part of host matching");
    expect_one(&r("\"::1\""), "routes[0].match.hosts[0]", "brackets");
    expect_one(&r("\"*\""), "routes[0].match.hosts[0]", "leave `hosts` out");
    expect_one(&r("\"a.*.com\""), "routes[0].match.hosts[0]", "whole first label");
    expect_one(&r("\"*.*.com\""), "routes[0].match.hosts[0]", "whole first label");
    expect_one(&r("\"*example.com\""), "routes[0].match.hosts[0]", "whole first label");
    expect_one(&r("example.com."), "routes[0].match.hosts[0]", "trailing dot");
    expect_one(&r("\"exa mple.com\""), "routes[0].match.hosts[0]", "not a valid host");
    expect_one(&r("a.com, A.com"), "routes[0].match.hosts[1]", "duplicate host");
}

#[test]
fn path_matchers() {
    let r = |p: &str| routes(&format!("  - {{name: a, upstream: users, match: {{path: {p}}}}}\n"));
    for ok in [
        "{exact: /}",
        "{prefix: /api}",
        "{prefix: /api/}",
        "{exact: \"/a%2Fb\"}",
        "{template: \"/u/{id}\"}",
        "{template: \"/f/{*rest}\"}",
        "{regex: \"^/v[0-9]+/.*\"}",
    ] {
        expect_ok(&r(ok));
    }
    expect_one(&r("{exact: /a//b}"), "routes[0].match.path.exact", "write `/a/b`");
    expect_one(&r("{prefix: /a/./b}"), "routes[0].match.path.prefix", "write `/a/b`");
    expect_one(&r("{prefix: /a/../b}"), "routes[0].match.path.prefix", "write `/b`");
    expect_one(&r("{prefix: \"/%7Euser\"}"), "routes[0].match.path.prefix", "write `/~user`");
    expect_one(&r("{prefix: \"/a?x=1\"}"), "routes[0].match.path.prefix", "match.query");
    expect_one(&r("{exact: \"/a#b\"}"), "routes[0].match.path.exact", "fragments");
    expect_one(&r("{exact: api}"), "routes[0].match.path.exact", "must start with `/`");
    expect_one(&r("{template: \"/u/{id}/{id}\"}"), "routes[0].match.path.template", "twice");
    expect_one(&r("{template: \"/f/{*rest}/x\"}"), "routes[0].match.path.template", "whole last segment");
    expect_one(&r("{template: \"/u/{user-id}\"}"), "routes[0].match.path.template", "invalid parameter name");
    expect_one(&r("{regex: \"/v(1\"}"), "routes[0].match.path.regex", "invalid regex: unclosed group");
}

#[test]
fn methods() {
    let r = |m: &str| routes(&format!("  - {{name: a, upstream: users, match: {{methods: [{m}]}}}}\n"));
    expect_ok(&r("GET, POST, PURGE"));
    expect_one(&r("GET, get"), "routes[0].match.methods[1]", "write `GET`");
    expect_one(&r("GET, GET"), "routes[0].match.methods[1]", "duplicate method `GET`");
    expect_one(&r("\"GE T\""), "routes[0].match.methods[0]", "invalid method");
}

#[test]
fn header_and_query_predicates() {
    let h = |p: &str| routes(&format!("  - {{name: a, upstream: users, match: {{headers: [{p}]}}}}\n"));
    let q = |p: &str| routes(&format!("  - {{name: a, upstream: users, match: {{query: [{p}]}}}}\n"));
    expect_ok(&h(
        "{name: X-Version, exact: \"2\"}, {name: x-debug, present: true, invert: true}, {name: accept, regex: json}",
    ));
    expect_ok(&q("{name: v, exact: \"2\"}, {name: \"page[size]\", present: true}"));
    expect_one(&h("{name: x}"), "routes[0].match.headers[0]", "set one of `exact`, `regex` or `present`");
    expect_one(&h("{name: x, exact: a, regex: b}"), "routes[0].match.headers[0]", "set only one of");
    expect_one(&h("{name: \"x y\", exact: a}"), "routes[0].match.headers[0].name", "invalid header name");
    expect_one(&h("{name: x, regex: \"(\"}"), "routes[0].match.headers[0].regex", "invalid regex");
    expect_ok(&h("{name: x-internal, present: false}"));
    expect_one(&q("{name: \"a=b\", exact: c}"), "routes[0].match.query[0].name", "invalid query parameter name");
    expect_one(&q("{name: \"\", exact: c}"), "routes[0].match.query[0].name", "invalid query parameter name");
}

#[test]
fn rewrites() {
    let r =
        |m: &str, rw: &str| routes(&format!("  - {{name: a, upstream: users, match: {{path: {m}}}, rewrite: {rw}}}\n"));
    expect_ok(&r("{prefix: /api}", "{strip_prefix: true}"));
    expect_ok(&r("{template: \"/u/{id}/{*rest}\"}", "{path: \"/v2/users/{id}/{*rest}\"}"));
    expect_one(
        &r("{exact: /api}", "{strip_prefix: true}"),
        "routes[0].rewrite.strip_prefix",
        "needs a `prefix` path matcher",
    );
    expect_one(
        &routes("  - {name: a, upstream: users, rewrite: {strip_prefix: true}}\n"),
        "routes[0].rewrite.strip_prefix",
        "needs a `prefix`",
    );
    expect_one(&r("{prefix: /api}", "{path: /x}"), "routes[0].rewrite.path", "needs a `template` path matcher");
    expect_one(
        &r("{template: \"/u/{id}\"}", "{path: \"/v2/{user}\"}"),
        "routes[0].rewrite.path",
        "does not capture (captured: `id`)",
    );
    expect_one(&r("{template: \"/u/{id}\"}", "{path: \"v2/{id}\"}"), "routes[0].rewrite.path", "must start with `/`");
    let errors = problems(&r("{prefix: /api}", "{strip_prefix: true, path: /x}"));
    assert!(errors.iter().any(|e| e.path == "routes[0].rewrite" && e.message.contains("not both")), "{errors:#?}");
}

#[test]
fn header_operations() {
    let r = |ops: &str| routes(&format!("  - {{name: a, upstream: users, request_headers: {ops}}}\n"));
    let resp = |ops: &str| routes(&format!("  - {{name: a, upstream: users, response_headers: {ops}}}\n"));
    expect_ok(&r("{set: {host: api.internal, X-Gateway: gatehouse}, add: {x-tag: a}, remove: [cookie]}"));
    expect_ok(&resp("{set: {cache-control: no-store}, remove: [server]}"));
    for h in HOP_BY_HOP_HEADERS {
        expect_one(
            &r(&format!("{{set: {{{h}: x}}}}")),
            &format!("routes[0].request_headers.set.{h}"),
            "hop-by-hop or framing header",
        );
        expect_one(
            &resp(&format!("{{remove: [{h}]}}")),
            "routes[0].response_headers.remove[0]",
            "hop-by-hop or framing header",
        );
    }
    expect_one(
        &r("{add: {Transfer-Encoding: chunked}}"),
        "routes[0].request_headers.add.Transfer-Encoding",
        "`transfer-encoding`",
    );
    expect_one(&r("{add: {host: x}}"), "routes[0].request_headers.add.host", "use `set`");
    expect_one(&r("{remove: [Host]}"), "routes[0].request_headers.remove[0]", "`host` cannot be removed");
    expect_one(&r("{set: {\"x y\": a}}"), "routes[0].request_headers.set.x y", "invalid header name");
    expect_one(&r("{set: {x-a: \"a\\r\\nInjected: 1\"}}"), "routes[0].request_headers.set.x-a", "(CR)");
    expect_one(&r("{set: {x-a: \"a\\nb\"}}"), "routes[0].request_headers.set.x-a", "(LF)");
    expect_one(&r("{set: {x-a: \"a\\0b\"}}"), "routes[0].request_headers.set.x-a", "(NUL)");
    expect_one(&r("{set: {X-A: a}, add: {x-a: b}}"), "routes[0].request_headers.add.x-a", "also changed at");
    expect_one(&r("{set: {X-A: a}, remove: [x-a]}"), "routes[0].request_headers.remove[0]", "also changed at");
}

#[test]
fn route_limits_and_policies() {
    expect_one(
        &routes("  - {name: a, upstream: users, max_body_bytes: 0}\n"),
        "routes[0].max_body_bytes",
        "greater than 0",
    );
    expect_one(&routes("  - {name: a, upstream: users, timeout: 0s}\n"), "routes[0].timeout", "greater than 0");
    expect_ok(&routes("  - {name: a, upstream: users, timeout: 2s, max_body_bytes: 1MiB, policies: []}\n"));
    expect_one(
        &routes("  - {name: a, upstream: users, policies: [{rate_limit: {}}]}\n"),
        "routes[0].policies[0].rate_limit",
        "missing field `limit`",
    );
}

fn policy(p: &str) -> String {
    routes(&format!(
        "  - {{name: a, upstream: users, match: {{methods: [GET]}}}}\n  - name: b\n    upstream: orders\n    policies:\n      - {p}\n"
    ))
}

#[test]
fn rate_limit_policies() {
    for ok in [
        "rate_limit: {limit: 100/s}",
        "rate_limit: {limit: 1000/min, burst: 20, key: client_ip, cost: 1, headers: draft}",
        "rate_limit: {limit: 10000/day, key: route, headers: legacy, name: daily}",
        "rate_limit: {limit: 500/10s, key: {header: X-Api-Key}, headers: none}",
        "rate_limit: {limit: 5/ 2 minutes, key: [client_ip, {header: x-tenant}], burst: 4, cost: 5}",
        "rate_limit: {limit: 1/h}",
        "concurrency_limit: {max: 10}",
        "concurrency_limit: {max: 10, key: route, queue: 5, queue_timeout: 1s}",
    ] {
        expect_ok(&policy(ok));
    }
    // Several limits on one route (per second and per day).
    expect_ok(&routes(
        "  - name: a\n    upstream: users\n    policies:\n      - rate_limit: {limit: 10/s}\n      - rate_limit: {limit: 1000/day}\n",
    ));
    let e = expect_one(&policy("rate_limit: {limit: 0/s}"), "routes[1].policies[0].rate_limit.limit", "greater than 0");
    assert_eq!((e.line, e.column), (Some(13), Some(29)));
    expect_one(&policy("rate_limit: {limit: 5/0s}"), "routes[1].policies[0].rate_limit.limit", "period");
    expect_one(&policy("rate_limit: {limit: 5/366d}"), "routes[1].policies[0].rate_limit.limit", "365 days");
    expect_one(&policy("rate_limit: {limit: 100}"), "routes[1].policies[0].rate_limit.limit", "expected a string");
    expect_one(
        &policy("rate_limit: {limit: 100/week}"),
        "routes[1].policies[0].rate_limit.limit",
        "unknown period unit `week`",
    );
    expect_one(&policy("rate_limit: {limit: 100/10}"), "routes[1].policies[0].rate_limit.limit", "needs a unit");
    expect_one(&policy("rate_limit: {limit: x/s}"), "routes[1].policies[0].rate_limit.limit", "invalid rate");
    expect_one(&policy("rate_limit: {limit: 2000000000/s}"), "routes[1].policies[0].rate_limit.limit", "nanosecond");
    expect_one(&policy("rate_limit: {limit: 1/day, burst: 400}"), "routes[1].policies[0].rate_limit.burst", "365 days");
    expect_one(
        &policy("rate_limit: {limit: 1/s, burst: -1}"),
        "routes[1].policies[0].rate_limit.burst",
        "out of range",
    );
    expect_one(&policy("rate_limit: {limit: 1/s, cost: 0}"), "routes[1].policies[0].rate_limit.cost", "at least 1");
    expect_one(
        &policy("rate_limit: {limit: 10/s, burst: 2, cost: 4}"),
        "routes[1].policies[0].rate_limit.cost",
        "raise `burst` to at least 3",
    );
    expect_one(
        &policy("rate_limit: {limit: 1/s, name: \"a b\"}"),
        "routes[1].policies[0].rate_limit.name",
        "invalid rate limit name",
    );
    let e = expect_one(
        &policy("rate_limit: {limit: 1/s, bursts: 2}"),
        "routes[1].policies[0].rate_limit.bursts",
        "unknown field `bursts`",
    );
    assert!(e.message.contains("did you mean `burst`"), "{e}");
    expect_one(
        &policy("rate_limit: {limit: 1/s, headers: ietf}"),
        "routes[1].policies[0].rate_limit.headers",
        "unknown variant `ietf`",
    );
    expect_one(
        &policy("rate_limit: {limit: 1/s, key: client}"),
        "routes[1].policies[0].rate_limit.key",
        "unknown variant `client`",
    );
    expect_one(
        &policy("rate_limit: {limit: 1/s, key: {header: \"x y\"}}"),
        "routes[1].policies[0].rate_limit.key.header",
        "invalid header name",
    );
    expect_one(
        &policy("rate_limit: {limit: 1/s, key: [client_ip, {header: \"a:b\"}]}"),
        "routes[1].policies[0].rate_limit.key[1].header",
        "invalid header name",
    );
    expect_one(
        &policy("rate_limit: {limit: 1/s, key: [{header: X-A}, {header: x-a}]}"),
        "routes[1].policies[0].rate_limit.key[1]",
        "listed twice",
    );
    expect_one(
        &policy("rate_limit: {limit: 1/s, key: []}"),
        "routes[1].policies[0].rate_limit.key",
        "at least one part",
    );
    expect_one(&policy("rate_limitt: {limit: 1/s}"), "routes[1].policies[0]", "unknown variant `rate_limitt`");
}

#[test]
fn concurrency_limit_policies() {
    expect_one(&policy("concurrency_limit: {max: 0}"), "routes[1].policies[0].concurrency_limit.max", "between 1 and");
    expect_one(&policy("concurrency_limit: {}"), "routes[1].policies[0].concurrency_limit", "missing field `max`");
    expect_one(
        &policy("concurrency_limit: {max: 1, queue: 100001}"),
        "routes[1].policies[0].concurrency_limit.queue",
        "at most 100000",
    );
    expect_one(
        &policy("concurrency_limit: {max: 1, queue: 2, queue_timeout: 0s}"),
        "routes[1].policies[0].concurrency_limit.queue_timeout",
        "greater than 0",
    );
    expect_one(
        &policy("concurrency_limit: {max: 1, limit: 2}"),
        "routes[1].policies[0].concurrency_limit.limit",
        "unknown field `limit`",
    );
}

#[test]
fn second_policy_error_has_its_own_path() {
    let text = routes(
        "  - name: a\n    upstream: users\n    policies:\n      - rate_limit: {limit: 10/s}\n      - rate_limit: {limit: 10/s, cost: 0}\n",
    );
    expect_one(&text, "routes[0].policies[1].rate_limit.cost", "at least 1");
}

#[test]
fn shadowed_routes() {
    let e = expect_one(
        &routes("  - {name: x, upstream: users, match: {path: {prefix: /a}}}\n  - {name: users, upstream: users, match: {path: {prefix: /b}}}\n  - {name: z, upstream: orders, match: {path: {prefix: /b}}}\n"),
        "routes[2].match",
        "shadowed by routes[1] (\"users\")",
    );
    assert_eq!(e.line, Some(11));
    // No match at all is the same as a prefix of `/`.
    expect_one(
        &routes("  - {name: a, upstream: users}\n  - {name: b, upstream: users, match: {path: {prefix: /}}}\n"),
        "routes[1].match",
        "shadowed by routes[0]",
    );
    // Sets compare as sets; header names are case-insensitive; hosts too.
    expect_one(
        &routes("  - {name: a, upstream: users, match: {hosts: [a.com, b.com], methods: [GET, POST], headers: [{name: X-A, exact: \"1\"}, {name: x-b, present: true}]}}\n  - {name: b, upstream: users, match: {hosts: [B.com, a.com], methods: [POST, GET], headers: [{name: x-b, present: true}, {name: x-a, exact: \"1\"}]}}\n"),
        "routes[1].match",
        "shadowed by routes[0]",
    );
    expect_one(
        &routes("  - {name: a, upstream: users, match: {headers: [{name: x, present: false}]}}\n  - {name: b, upstream: users, match: {headers: [{name: X, present: true, invert: true}]}}\n"),
        "routes[1].match",
        "shadowed by routes[0]",
    );
    // Any difference in a predicate keeps them apart.
    expect_ok(&routes("  - {name: a, upstream: users, match: {methods: [GET]}}\n  - {name: b, upstream: users, match: {methods: [POST]}}\n"));
    expect_ok(&routes(
        "  - {name: a, upstream: users, match: {query: [{name: v, exact: \"1\"}]}}\n  - {name: b, upstream: users}\n",
    ));
    expect_ok(&routes("  - {name: a, upstream: users, match: {headers: [{name: v, exact: \"1\"}]}}\n  - {name: b, upstream: users, match: {headers: [{name: v, exact: \"1\", invert: true}]}}\n"));
}

#[test]
fn template_conflicts() {
    let t = |host: &str, tpl: &str, name: &str| {
        let hosts = if host.is_empty() { String::new() } else { format!("hosts: [{host}], ") };
        format!("  - {{name: {name}, upstream: users, match: {{{hosts}path: {{template: \"{tpl}\"}}}}}}\n")
    };
    let e = expect_one(
        &routes(&(t("", "/u/{id}", "by-id") + &t("", "/u/{name}", "by-name"))),
        "routes[1].match.path.template",
        "conflicts with `/u/{id}` of routes[0] (\"by-id\") for routes without hosts",
    );
    assert_eq!(e.line, Some(10));
    // Reported on the later route even when it sorts first.
    expect_one(
        &routes(&(t("", "/u/{name}", "by-name") + &t("", "/u/{id}", "by-id"))),
        "routes[1].match.path.template",
        "conflicts with `/u/{name}` of routes[0]",
    );
    expect_one(
        &routes(&(t("a.com", "/f/{*rest}", "files") + &t("a.com", "/f/{id}", "file"))),
        "routes[1].match.path.template",
        "for host `a.com`",
    );
    // Different host buckets never conflict; identical templates are told apart by predicates.
    expect_ok(&routes(&(t("a.com", "/u/{id}", "a") + &t("b.com", "/u/{name}", "b") + &t("", "/u/{other}", "c"))));
    expect_ok(&routes(
        &(t("", "/u/{id}", "a")
            + "  - {name: b, upstream: users, match: {path: {template: \"/u/{id}\"}, methods: [POST]}}\n"),
    ));
    expect_ok(&routes(&(t("", "/u/{id}", "a") + &t("", "/u/new", "b"))));
}

#[test]
fn validate_without_locations() {
    let mut cfg = load_str(HEAD, &|_| None).unwrap();
    cfg.routes.push(gatehouse_config::types::Route {
        name: "r".into(),
        matches: RouteMatch::default(),
        upstream: "nope".into(),
        rewrite: None,
        preserve_host: false,
        request_headers: HeaderOps::default(),
        response_headers: HeaderOps::default(),
        max_body_bytes: None,
        timeout: None,
        policies: Vec::new(),
        retry: Default::default(),
        deadline: None,
        hedge: None,
        circuit_breaker: None,
        upgrades: gatehouse_config::types::defaults::upgrades(),
        tunnel_idle_timeout: gatehouse_config::types::defaults::tunnel_idle_timeout(),
        grpc_web: true,
        hsts: None,
    });
    let errors = validate(&cfg);
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].to_string(), "routes[0].upstream: unknown upstream \"nope\" (known: users, orders)");
}

mod observability {
    #[test]
    fn access_log_section() {
        let base = "listeners:\n  - address: 127.0.0.1:0\n";
        let ok =
            gatehouse_config::load_str(&format!("{base}access_log:\n  enabled: true\n  path: /tmp/x.log\n"), &|_| None)
                .unwrap();
        assert!(ok.access_log.enabled && ok.access_log.path == "/tmp/x.log" && !ok.access_log.include_query);
        let errs = gatehouse_config::load_str(&format!("{base}access_log:\n  enabled: true\n  pathh: x\n"), &|_| None)
            .unwrap_err();
        assert!(errs.iter().any(|e| e.path.starts_with("access_log")), "{errs:?}");
        let errs = gatehouse_config::load_str(&format!("{base}access_log:\n  path: \"\"\n"), &|_| None).unwrap_err();
        assert!(errs.iter().any(|e| e.path == "access_log.path"), "{errs:?}");
    }

    #[test]
    fn tracing_section() {
        let base = "listeners:\n  - address: 127.0.0.1:0\n";
        let ok = gatehouse_config::load_str(
            &format!("{base}tracing:\n  enabled: true\n  endpoint: http://127.0.0.1:4318\n  sampler: parentbased_traceidratio\n  ratio: 0.25\n  headers: {{x-api-key: k}}\n"),
            &|_| None,
        )
        .unwrap();
        assert!(ok.tracing.enabled && ok.tracing.ratio == Some(0.25));
        let errs = gatehouse_config::load_str(
            &format!("{base}tracing:\n  endpoint: https://c:4318\n  sampler: jaeger\n  ratio: 2\n  batch_size: 10\n  queue_size: 5\n"),
            &|_| None,
        )
        .unwrap_err();
        let paths: Vec<&str> = errs.iter().map(|e| e.path.as_str()).collect();
        for p in ["tracing.endpoint", "tracing.sampler", "tracing.ratio", "tracing.batch_size"] {
            assert!(paths.contains(&p), "{p} missing from {paths:?}");
        }
    }
}

mod edge {
    fn errors(route_extra: &str) -> Vec<String> {
        let yaml = format!(
            "listeners:\n  - address: 127.0.0.1:0\nupstreams:\n  - name: b\n    targets:\n      - url: http://127.0.0.1:9\n\
             routes:\n  - name: r\n    upstream: b\n{route_extra}\
             consumers:\n  - name: c\n    credentials:\n      api_keys:\n        - sha256: \"{}\"\n",
            "ab".repeat(32)
        );
        match gatehouse_config::load_str(&yaml, &|_| None) {
            Ok(_) => Vec::new(),
            Err(e) => e.iter().map(|e| e.to_string()).collect(),
        }
    }

    fn has(errs: &[String], path: &str) -> bool {
        errs.iter().any(|e| e.starts_with(&format!("{path}:")) || e.starts_with(&format!("{path} (")))
    }

    #[test]
    fn cors_rules() {
        let auth = "      - auth:\n          methods:\n            - api_key: {}\n";
        let cors = "      - cors:\n          allow_origins: [\"https://a.example.com\"]\n";
        let e = errors(&format!("    policies:\n{auth}{cors}"));
        assert!(has(&e, "routes[0].policies[1].cors"), "{e:?}");
        assert!(errors(&format!("    policies:\n{cors}{auth}")).is_empty());
        let e = errors(&format!("    policies:\n{cors}{cors}"));
        assert!(has(&e, "routes[0].policies[1].cors"), "{e:?}");
        let e = errors(
            "    policies:\n      - cors:\n          allow_origins: []\n          allow_methods: [\"G T\"]\n          allow_headers: [\"*\"]\n          max_age: 48h\n",
        );
        for p in [
            "routes[0].policies[0].cors.allow_origins",
            "routes[0].policies[0].cors.allow_methods[0]",
            "routes[0].policies[0].cors.allow_headers[0]",
            "routes[0].policies[0].cors.max_age",
        ] {
            assert!(has(&e, p), "{p}: {e:?}");
        }
    }

    #[test]
    fn upgrade_rules() {
        let e = errors("    upgrades: [websocket, h2c, \"a/b\"]\n    tunnel_idle_timeout: 0s\n");
        assert!(has(&e, "routes[0].upgrades[1]"), "{e:?}");
        assert!(has(&e, "routes[0].upgrades[2]"), "{e:?}");
        assert!(has(&e, "routes[0].tunnel_idle_timeout"), "{e:?}");
        assert!(errors("    upgrades: []\n").is_empty());
    }
}

mod identity {
    #[test]
    fn mtls_needs_a_listener_that_verifies_client_certificates() {
        let yaml = "listeners:\n  - address: 127.0.0.1:0\nupstreams:\n  - name: u\n    targets: [{url: \"http://127.0.0.1:1\"}]\nroutes:\n  - name: r\n    upstream: u\n    policies:\n      - auth: {methods: [{mtls: {}}]}\n";
        let errs = gatehouse_config::load_str(yaml, &|_| None).unwrap_err();
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert_eq!(errs[0].path, "routes[0].policies[0].auth.methods[0].mtls");
        assert!(errs[0].message.contains("client_auth"), "{}", errs[0].message);
    }
}
