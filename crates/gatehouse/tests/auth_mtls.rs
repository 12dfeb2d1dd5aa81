//! The `mtls` authentication method: the identity is the subject of the client certificate the
//! TLS listener verified (certificates made by the `openssl` CLI in the test, a rustls client),
//! mapped to a consumer by `credentials.mtls`. A client-sent `X-Client-Cert-Subject` is never a
//! credential.

use gatehouse_testkit::tls::{ClientOpts, Pki, TlsClient};
use gatehouse_testkit::{gateway, Backend};

#[tokio::test]
async fn client_certificates_identify_consumers() {
    let server_ca = Pki::new("mtls-server-ca");
    let server = server_ca.issue("server", "/CN=default", &["default.test"], 10);
    let client_ca = Pki::new("mtls-client-ca");
    let billing = client_ca.issue("billing", "/O=Gatehouse Test/CN=billing", &[], 10);
    let unknown = client_ca.issue("unknown", "/O=Gatehouse Test/CN=unknown", &[], 10);
    let backend = Backend::named("b").await;
    let yaml = format!(
        "listeners:
  - address: 127.0.0.1:0
    tls:
      certificates:
        - {{cert: {}, key: {}}}
      client_auth: {{ca: {}, required: false}}
consumers:
  - name: billing
    groups: [internal]
    credentials:
      mtls:
        - subject: \"CN=billing,O=Gatehouse Test\"
upstreams:
  - name: backend
    targets:
      - url: {}
routes:
  - name: strict
    upstream: backend
    match: {{path: {{prefix: /strict}}}}
    policies:
      - auth: {{methods: [{{mtls: {{require_consumer: true}}}}]}}
  - name: any
    upstream: backend
    policies:
      - auth: {{methods: [{{mtls: {{}}}}]}}
",
        server.cert.display(),
        server.key.display(),
        client_ca.ca().display(),
        backend.url()
    );
    let gw = gateway(&yaml).await;
    let ca = server_ca.ca();
    let opts =
        |cert| ClientOpts { server_name: "default.test", ca: Some(&ca), client_cert: cert, ..Default::default() };

    // A mapped certificate: the consumer goes upstream.
    let mut cl = TlsClient::connect(gw.addr, opts(Some(&billing))).await.expect("handshake");
    assert_eq!(cl.try_send("/strict/x", "default.test", &[]).await.expect("request").status, 200);
    let seen = backend.last().expect("request");
    assert_eq!(seen.header("x-consumer-name"), Some("billing"));
    assert_eq!(seen.header("x-consumer-groups"), Some("internal"));

    // A valid but unmapped certificate: named by its subject, refused where a consumer is required.
    let mut cl = TlsClient::connect(gw.addr, opts(Some(&unknown))).await.expect("handshake");
    assert_eq!(cl.try_send("/any", "default.test", &[]).await.expect("request").status, 200);
    assert_eq!(backend.last().expect("request").header("x-consumer-name"), Some("CN=unknown,O=Gatehouse Test"));
    assert_eq!(cl.try_send("/strict/x", "default.test", &[]).await.expect("request").status, 403);

    // No certificate: 401, and a forged subject header is no credential.
    let before = backend.count();
    let mut cl = TlsClient::connect(gw.addr, opts(None)).await.expect("handshake without a certificate");
    let forged = [("x-client-cert-subject", "CN=billing,O=Gatehouse Test")];
    assert_eq!(cl.try_send("/any", "default.test", &forged).await.expect("request").status, 401);
    assert_eq!(backend.count(), before, "nothing reached the backend");
    gw.gw.shutdown().await;
}
