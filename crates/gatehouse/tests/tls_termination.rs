//! TLS termination end to end: certificates made by the `openssl` CLI in the test, checked by
//! real clients (`curl` with `--cacert`/`--resolve`, and a rustls client that reports which
//! certificate the gateway chose). SNI (exact, wildcard, default), TLS 1.2 and 1.3, ALPN,
//! `X-Forwarded-Proto: https`, mTLS, the https redirect, HSTS, and the admin/metrics views.

use std::net::SocketAddr;

use gatehouse_testkit::tls::{curl, ClientOpts, Issued, Pki, TlsClient};
use gatehouse_testkit::{gateway, get, request, Backend};

fn p(i: &Issued) -> (String, String) {
    (i.cert.display().to_string(), i.key.display().to_string())
}

struct Certs {
    pki: Pki,
    exact: Issued,
    wild: Issued,
    default: Issued,
}

fn certs() -> Certs {
    let pki = Pki::new("sni-ca");
    let exact = pki.issue("exact", "/CN=exact", &["a.example.test"], 10);
    let wild = pki.issue("wild", "/CN=wild", &["*.wild.test"], 10);
    let default = pki.issue("default", "/CN=default", &["default.test", "127.0.0.1"], 10);
    Certs { pki, exact, wild, default }
}

fn tls_yaml(c: &Certs, backend: &str, tls_extra: &str, extra_listener: &str, route_extra: &str) -> String {
    let ((ec, ek), (wc, wk), (dc, dk)) = (p(&c.exact), p(&c.wild), p(&c.default));
    format!(
        "listeners:
  - name: tls
    address: 127.0.0.1:0
    tls:
      certificates:
        - {{cert: {ec}, key: {ek}}}
        - {{cert: {wc}, key: {wk}}}
        - {{cert: {dc}, key: {dk}, default: true}}
{tls_extra}{extra_listener}
admin:
  address: 127.0.0.1:0
upstreams:
  - name: backend
    targets:
      - url: {backend}
routes:
  - name: all
    upstream: backend
{route_extra}"
    )
}

fn resolve(name: &str, addr: SocketAddr) -> String {
    format!("{name}:{}:127.0.0.1", addr.port())
}

#[tokio::test]
async fn sni_picks_exact_wildcard_and_default_certificates_over_tls12_and_tls13() {
    let c = certs();
    let backend = Backend::named("b").await;
    let gw = gateway(&tls_yaml(&c, &backend.url(), "", "", "")).await;
    let addr = gw.addr;
    let ca = c.pki.ca();

    // rustls client: which certificate was served for each SNI.
    for (sni, no_sni, want) in [
        ("a.example.test", false, "CN=exact"),
        ("x.wild.test", false, "CN=wild"),
        ("default.test", false, "CN=default"),
        // No SNI at all: the default certificate (verified against its own name).
        ("default.test", true, "CN=default"),
    ] {
        let mut cl =
            TlsClient::connect(addr, ClientOpts { server_name: sni, ca: Some(&ca), no_sni, ..Default::default() })
                .await
                .unwrap_or_else(|e| panic!("{sni}: {e}"));
        assert_eq!(cl.server_subject, want, "SNI {sni} (no_sni: {no_sni})");
        assert_eq!(cl.alpn.as_deref(), Some(&b"http/1.1"[..]), "ALPN is http/1.1 only (no h2 yet)");
        let r = cl.get("/hello", sni).await;
        assert_eq!(r.status, 200);
    }
    // A wildcard covers one label only: `x.y.wild.test` gets the default certificate, which
    // does not carry that name, so a verifying client refuses it.
    let deep =
        TlsClient::connect(addr, ClientOpts { server_name: "x.y.wild.test", ca: Some(&ca), ..Default::default() })
            .await;
    assert!(deep.is_err(), "x.y.wild.test must not match *.wild.test");

    // The backend learns the request came over TLS.
    let last = backend.last().expect("request");
    assert_eq!(last.header("x-forwarded-proto"), Some("https"));

    // curl, TLS 1.2 and 1.3, exact and wildcard names via --resolve, the default by IP.
    let ca_s = ca.display().to_string();
    for (version, max) in [("--tlsv1.2", "1.2"), ("--tlsv1.3", "1.3")] {
        for (name, url_host) in [("a.example.test", "a.example.test"), ("x.wild.test", "x.wild.test")] {
            let url = format!("https://{url_host}:{}/c", addr.port());
            let out =
                curl(&["--cacert", &ca_s, "--resolve", &resolve(name, addr), version, "--tls-max", max, &url]).await;
            assert!(out.ok && out.status() == 200, "curl {version} {name}: {out:?}");
        }
        let url = format!("https://127.0.0.1:{}/c", addr.port());
        let out = curl(&["--cacert", &ca_s, version, "--tls-max", max, &url]).await;
        assert!(out.ok && out.status() == 200, "curl {version} by IP: {out:?}");
    }
    // A client that trusts another CA refuses the gateway's certificate.
    let other = Pki::new("other-ca");
    let out =
        curl(&["--cacert", &other.ca().display().to_string(), &format!("https://127.0.0.1:{}/c", addr.port())]).await;
    assert!(!out.ok, "untrusted certificate accepted: {out:?}");

    // TLS 1.2 with the rustls client too.
    let cl = TlsClient::connect(
        addr,
        ClientOpts { server_name: "a.example.test", ca: Some(&ca), tls12_only: true, ..Default::default() },
    )
    .await
    .expect("TLS 1.2");
    assert_eq!(cl.protocol, Some(gatehouse_testkit::tls::rustls::ProtocolVersion::TLSv1_2));

    // Admin: /tls lists names and expiry; /metrics exports not-after per listener and names.
    let admin = gw.admin.expect("admin");
    let v = get(admin, "/tls").await.json();
    let certs = &v["listeners"][0]["certificates"];
    assert_eq!(certs.as_array().map(Vec::len), Some(3), "{v}");
    assert_eq!(certs[1]["names"][0], "*.wild.test");
    assert!(certs[0]["not_after"].as_str().is_some_and(|s| s.ends_with('Z')), "{v}");
    let m = get(admin, "/metrics").await.text();
    let line = m
        .lines()
        .find(|l| {
            l.starts_with("gatehouse_tls_certificate_not_after_seconds{") && l.contains("names=\"a.example.test\"")
        })
        .unwrap_or_else(|| panic!("no certificate metric in:\n{m}"));
    assert!(line.contains("listener=\"tls\""), "{line}");
    let secs: f64 = line.rsplit(' ').next().and_then(|v| v.parse().ok()).expect("value");
    assert!(secs > gatehouse_core::tls::unix_now() as f64 + 8.0 * 86_400.0, "{line}");
    gw.gw.shutdown().await;
}

#[tokio::test]
async fn mtls_required_and_optional_with_subject_forwarded() {
    let c = certs();
    let client_ca = Pki::new("client-ca");
    let client = client_ca.issue("client", "/O=Gatehouse Test/CN=client-1", &[], 10);
    let stranger_ca = Pki::new("stranger-ca");
    let stranger = stranger_ca.issue("stranger", "/CN=stranger", &[], 10);
    let backend = Backend::named("b").await;
    let ca_file = client_ca.ca().display().to_string();
    let (dc, dk) = p(&c.default);
    let optional = format!(
        "  - name: optional
    address: 127.0.0.1:0
    tls:
      certificates:
        - {{cert: {dc}, key: {dk}}}
      client_auth: {{ca: {ca_file}, required: false}}
"
    );
    let required = format!("      client_auth: {{ca: {ca_file}}}\n");
    let gw = gateway(&tls_yaml(&c, &backend.url(), &required, &optional, "")).await;
    let (required, optional) = (gw.gw.listen_addrs[0], gw.gw.listen_addrs[1]);
    let ca = c.pki.ca();
    let opts =
        |cert| ClientOpts { server_name: "default.test", ca: Some(&ca), client_cert: cert, ..Default::default() };

    // Required: no certificate or one from another CA is refused (at the handshake, or the
    // first request fails for TLS 1.3 where the server's refusal arrives after the client's
    // handshake finished).
    for cert in [None, Some(&stranger)] {
        let refused = match TlsClient::connect(required, opts(cert)).await {
            Err(_) => true,
            Ok(mut cl) => cl.try_send("/x", "default.test", &[]).await.is_err() || cl.is_closed(),
        };
        assert!(refused, "client certificate {:?} accepted", cert.map(|c| &c.cert));
    }
    // With curl too (no client certificate).
    let out = curl(&["--cacert", &ca.display().to_string(), &format!("https://127.0.0.1:{}/x", required.port())]).await;
    assert!(!out.ok || out.status() != 200, "curl without a client certificate got through: {out:?}");

    // A valid certificate is accepted; its subject is forwarded and a forged header is replaced.
    let mut cl = TlsClient::connect(required, opts(Some(&client))).await.expect("mTLS handshake");
    let r = cl.try_send("/who", "default.test", &[("x-client-cert-subject", "CN=admin")]).await.expect("request");
    assert_eq!(r.status, 200);
    let last = backend.last().expect("request");
    assert_eq!(last.header_all("x-client-cert-subject"), vec!["CN=client-1,O=Gatehouse Test"]);
    // curl with the client certificate.
    let (cc, ck) = p(&client);
    let out = curl(&[
        "--cacert",
        &ca.display().to_string(),
        "--cert",
        &cc,
        "--key",
        &ck,
        &format!("https://127.0.0.1:{}/curl", required.port()),
    ])
    .await;
    assert!(out.ok && out.status() == 200, "{out:?}");

    // Optional: no certificate passes, and the client's own header never reaches the backend.
    let mut cl = TlsClient::connect(optional, opts(None)).await.expect("handshake without a certificate");
    let r = cl.try_send("/anon", "default.test", &[("x-client-cert-subject", "CN=admin")]).await.expect("request");
    assert_eq!(r.status, 200);
    assert_eq!(backend.last().expect("request").header("x-client-cert-subject"), None);
    // ... but a certificate that is sent must verify.
    let bad = match TlsClient::connect(optional, opts(Some(&stranger))).await {
        Err(_) => true,
        Ok(mut cl) => cl.try_send("/x", "default.test", &[]).await.is_err() || cl.is_closed(),
    };
    assert!(bad, "an unverifiable certificate was accepted on the optional listener");
    gw.gw.shutdown().await;
}

#[tokio::test]
async fn redirect_to_https_and_hsts_only_over_tls() {
    let c = certs();
    let backend = Backend::named("b").await;
    let plain = "  - name: plain
    address: 127.0.0.1:0
  - name: redirect
    address: 127.0.0.1:0
    redirect_https: {port: 8443}
  - name: redirect301
    address: 127.0.0.1:0
    redirect_https: {status: 301}
";
    let hsts = "    hsts: {max_age: 24h, include_subdomains: true}\n";
    let gw = gateway(&tls_yaml(&c, &backend.url(), "", plain, hsts)).await;
    let a = &gw.gw.listen_addrs;
    let (tls, plain, redirect, r301) = (a[0], a[1], a[2], a[3]);

    let r = request(redirect, "GET", "/a/b?x=1", &[("host", "shop.example.test:80")], b"").await;
    assert_eq!(r.status, 308);
    assert_eq!(r.header("location"), Some("https://shop.example.test:8443/a/b?x=1"));
    let r = request(r301, "POST", "/p", &[("host", "shop.example.test")], b"body").await;
    assert_eq!(r.status, 301);
    assert_eq!(r.header("location"), Some("https://shop.example.test/p"));
    assert_eq!(backend.count(), 0, "a redirect never reaches the backend");

    // HSTS: over TLS only (RFC 6797 §7.2).
    let mut cl = TlsClient::connect(
        tls,
        ClientOpts { server_name: "default.test", ca: Some(&c.pki.ca()), ..Default::default() },
    )
    .await
    .expect("handshake");
    let r = cl.get("/h", "default.test").await;
    assert_eq!(r.header("strict-transport-security"), Some("max-age=86400; includeSubDomains"));
    let r = get(plain, "/h").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("strict-transport-security"), None);
    assert_eq!(backend.last().expect("request").header("x-forwarded-proto"), Some("http"));
    gw.gw.shutdown().await;
}

#[tokio::test]
async fn a_plain_http_client_on_a_tls_port_is_dropped_and_counted() {
    let c = certs();
    let backend = Backend::named("b").await;
    let gw = gateway(&tls_yaml(&c, &backend.url(), "", "", "")).await;
    let out = gatehouse_testkit::raw_timeout(
        gw.addr,
        b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
        std::time::Duration::from_secs(3),
    )
    .await;
    assert!(!out.starts_with("HTTP/1.1 200"), "{out}");
    let admin = gw.admin.expect("admin");
    let ok = gatehouse_testkit::wait_for(std::time::Duration::from_secs(3), || async {
        get(admin, "/metrics").await.text().contains("gatehouse_tls_handshake_failures_total 1")
    })
    .await;
    assert!(ok, "handshake failure not counted");
    assert_eq!(backend.count(), 0);
    gw.gw.shutdown().await;
}
