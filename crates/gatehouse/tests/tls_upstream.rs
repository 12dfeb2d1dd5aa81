//! `https://` upstream targets against real rustls backends: verified with a configured CA,
//! SNI and name check from the target host or `server_name`, a client certificate for upstreams
//! that require one, pooled TLS connections, large bodies both ways, and a certificate that does
//! not verify answered with 502 `upstream_tls_failed` (nothing sent to that upstream).

use std::sync::Arc;

use gatehouse_testkit::tls::{acceptor, Pki};
use gatehouse_testkit::{get, pattern, request, Backend, Cfg, Received, Reply};

#[tokio::test]
async fn https_targets_verified_pooled_and_refused_when_untrusted() {
    let pki = Pki::new("upstream-ca");
    let by_ip = pki.issue("by-ip", "/CN=by-ip", &["127.0.0.1"], 10);
    let by_name = pki.issue("by-name", "/CN=by-name", &["backend.test"], 10);
    let echo: gatehouse_testkit::Handler = Arc::new(|r: &Received| {
        let body = if r.uri.starts_with("/ip/big") { pattern(300_000, 7) } else { r.body.clone() };
        Reply { status: 200, headers: vec![], body, delay: None, trailers: Vec::new() }
    });
    let ip_backend = Backend::start_tls("ip", echo.clone(), &by_ip.cert, &by_ip.key).await;
    let name_backend = Backend::start_tls("name", echo.clone(), &by_name.cert, &by_name.key).await;
    let other = Pki::new("other-ca");
    let ca = pki.ca().display().to_string();
    let ip_url = format!("https://{}", ip_backend.addr);
    let name_url = format!("https://{}", name_backend.addr);
    let cfg = Cfg::new()
        .admin()
        .upstream_with("ip", &[&ip_url], &format!("tls: {{ca: {ca}}}"))
        .upstream_with("name", &[&name_url], &format!("tls: {{ca: {ca}, server_name: backend.test}}"))
        .upstream_with("untrusted", &[&ip_url], &format!("tls: {{ca: {}}}", other.ca().display()))
        .upstream_with("wrongname", &[&name_url], &format!("tls: {{ca: {ca}, server_name: other.test}}"));
    // Route `/x` goes to upstream `x`.
    let gw = ["ip", "name", "untrusted", "wrongname"]
        .into_iter()
        .fold(cfg, |c, n| c.route_with(n, n, &format!("match: {{path: {{prefix: /{n}}}}}")))
        .start()
        .await;

    // Verified by IP SAN, then reused from the pool.
    for i in 0..3 {
        let r = get(gw.addr, &format!("/ip/{i}")).await;
        assert_eq!(r.status, 200, "{}", r.text());
    }
    assert_eq!(ip_backend.count(), 3);
    assert_eq!(ip_backend.connections(), 1, "the TLS connection is pooled and reused");
    let last = ip_backend.last().expect("request");
    assert_eq!(last.header("host"), Some(ip_backend.addr.to_string().as_str()));

    // Large bodies both ways over TLS.
    let up = pattern(500_000, 3);
    let r = request(gw.addr, "POST", "/ip/echo", &[], &up).await;
    assert_eq!(r.status, 200);
    assert!(r.body == up, "echoed body differs ({} bytes)", r.body.len());
    let r = get(gw.addr, "/ip/big").await;
    assert_eq!(r.status, 200);
    assert!(r.body == pattern(300_000, 7), "large response differs ({} bytes)", r.body.len());

    // SNI and the name check use `server_name`.
    assert_eq!(get(gw.addr, "/name/x").await.status, 200);
    assert_eq!(name_backend.count(), 1);

    // A certificate from another CA, or without the expected name: 502, nothing forwarded.
    let before = (ip_backend.count(), name_backend.count());
    for path in ["/untrusted/x", "/wrongname/x"] {
        let r = get(gw.addr, path).await;
        assert_eq!(r.status, 502, "{path}: {}", r.text());
        assert_eq!(r.json()["error"]["code"], "upstream_tls_failed", "{path}");
    }
    assert_eq!((ip_backend.count(), name_backend.count()), before);
    gw.gw.shutdown().await;
}

#[tokio::test]
async fn client_certificate_to_an_upstream_that_requires_one() {
    let pki = Pki::new("mtls-up-ca");
    let server = pki.issue("server", "/CN=server", &["127.0.0.1"], 10);
    let client = pki.issue("gateway", "/CN=gateway", &[], 10);
    // A raw rustls server requiring a client certificate from the same CA, answering 200.
    let acc = acceptor(&server.cert, &server.key, Some(&pki.ca()));
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = l.local_addr().expect("addr");
    let seen = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let seen2 = seen.clone();
    let task = tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((s, _)) = l.accept().await {
            let acc = acc.clone();
            let seen = seen2.clone();
            tokio::spawn(async move {
                let Ok(mut t) = acc.accept(s).await else { return };
                let subject = t
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|c| c.first())
                    .and_then(|c| gatehouse_core::tls::x509::parse(c))
                    .map(|f| f.subject)
                    .unwrap_or_default();
                seen.lock().expect("lock").push(subject);
                let mut buf = vec![0u8; 4096];
                let _ = t.read(&mut buf).await;
                let _ = t.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok").await;
                let _ = t.shutdown().await;
            });
        }
    });
    let ca = pki.ca().display().to_string();
    let url = format!("https://{addr}");
    let tls =
        format!("tls:\n  ca: {ca}\n  client_cert: {{cert: {}, key: {}}}", client.cert.display(), client.key.display());
    let gw =
        Cfg::new().upstream_with("m", &[&url], &tls).route_with("m", "m", "match: {path: {prefix: /}}").start().await;
    let r = get(gw.addr, "/m").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text(), "ok");
    assert_eq!(seen.lock().expect("lock").as_slice(), ["CN=gateway"]);
    gw.gw.shutdown().await;
    task.abort();
}
