//! JWKS over `https://`, as real identity providers serve it: the gateway verifies the IdP's
//! certificate against the system trust store, here pointed at a test CA with `SSL_CERT_FILE`
//! (rustls-native-certs honours it), and refuses an IdP whose certificate does not verify.
//!
//! This file holds one test on purpose: it sets `SSL_CERT_FILE` for the whole process before
//! anything reads the trust store.

#[path = "common/auth.rs"]
mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use common::{bearer, config, fixture, route};
use gatehouse_testkit::tls::{acceptor, Pki};
use gatehouse_testkit::{gateway, request, stop, Backend};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A TLS server on 127.0.0.1 answering every request with `body` (JSON); counts requests.
async fn https_jwks(pki: &Pki, body: String) -> (u16, Arc<AtomicUsize>) {
    let cert = pki.issue("idp", "/CN=idp", &["127.0.0.1", "idp.test"], 10);
    let acc = acceptor(&cert.cert, &cert.key, None);
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = l.local_addr().expect("addr").port();
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            let (acc, body, h) = (acc.clone(), body.clone(), h.clone());
            tokio::spawn(async move {
                let Ok(mut s) = acc.accept(s).await else { return };
                let mut buf = Vec::new();
                let mut tmp = [0u8; 4096];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut tmp).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&tmp[..n]),
                    }
                }
                h.fetch_add(1, Ordering::SeqCst);
                let resp = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncache-control: max-age=300\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(resp.as_bytes()).await;
                let _ = s.shutdown().await;
            });
        }
    });
    (port, hits)
}

fn jwks_route(url: &str) -> String {
    route(
        "api",
        &format!("      - auth:\n          methods:\n            - jwt:\n                jwks: {{url: \"{url}\"}}\n"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwks_over_https_is_verified_against_the_trust_store() {
    let trusted = Pki::new("idp-ca");
    let untrusted = Pki::new("rogue-ca");
    std::env::set_var("SSL_CERT_FILE", trusted.ca());
    let jwks = fixture("jwks-a.json");
    let (good_port, good_hits) = https_jwks(&trusted, jwks.clone()).await;
    let (rogue_port, rogue_hits) = https_jwks(&untrusted, jwks).await;
    let backend = Backend::named("b").await;

    let gw =
        gateway(&config(&backend.url(), "", &jwks_route(&format!("https://127.0.0.1:{good_port}/jwks.json")))).await;
    let r = request(gw.addr, "GET", "/api/x", &[("authorization", &bearer("RS256"))], b"").await;
    assert_eq!(r.status, 200, "{:?}", r.text());
    assert_eq!(good_hits.load(Ordering::SeqCst), 1);
    stop(gw).await;

    // An IdP whose certificate the trust store does not vouch for: keys never load, fail closed.
    let gw =
        gateway(&config(&backend.url(), "", &jwks_route(&format!("https://127.0.0.1:{rogue_port}/jwks.json")))).await;
    let r = request(gw.addr, "GET", "/api/x", &[("authorization", &bearer("RS256"))], b"").await;
    assert_eq!(r.status, 503, "{:?}", r.text());
    assert_eq!(r.json()["error"]["code"], "auth_unavailable");
    assert_eq!(rogue_hits.load(Ordering::SeqCst), 0, "no request went to an unverified server");
    stop(gw).await;
}
