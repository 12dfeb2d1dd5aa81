//! JWT verification (`auth::jwt::JwtVerifier`): header decoding, `alg`/`kid` key choice against
//! a fixed key set, signature, claims; and JWK set parsing (`auth::jwks::parse_jwks`).
//!
//! The key set is the one the identity tests use (`crates/gatehouse/tests/fixtures/jwt`): one
//! RSA key for RS/PS 256-512, P-256, P-384, Ed25519 (kid `rsa-1`, `ec-1`, `ec384-1`, `ed-1`), an
//! HMAC secret for HS256/384/512 (kid `hs-1`), a second HS256 secret without a kid, and the
//! keys of `jwks-a.json` as a JWKS fetch yields them.
//!
//! Input: the first byte picks the mode, the rest is its text:
//! - `0`: a raw token (the seeds are the fixture tokens, valid and forged);
//! - `S`: `header-json \n payload-json`, base64url-encoded and signed here with HS256 and the
//!   `hs-1` secret, so the fuzzer reaches key choice and the claim checks with any header;
//! - `C`: the same, but HMAC-signed (HS256/384/512 by the next byte) with a *public* key's PEM
//!   as the secret (key confusion): must never be accepted;
//! - `J`: a JWK set document for `parse_jwks`.
//!
//! Properties: never panics; `verify` completes without waiting on anything (static keys); a
//! token is accepted only if an independent check agrees: its header's `alg` is a real algorithm
//! (never `none`), and jsonwebtoken's own verifier (`jsonwebtoken::crypto::verify`, not the
//! gateway's prepared RustCrypto keys) confirms the signature with a configured key that the
//! token's `kid` selects and that is bound to that `alg`; the claims returned are the payload.
//! `parse_jwks` never yields an HMAC key.

#![no_main]

use std::future::Future;
use std::sync::OnceLock;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use gatehouse_core::auth::jwks::parse_jwks;
use gatehouse_core::auth::jwt::{algorithm, JwtVerifier, KeySource, VerifyKey};
use gatehouse_core::auth::token_cache::TokenCache;
use hmac::{Hmac, Mac};
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, DecodingKey};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

const RSA_PEM: &[u8] = include_bytes!("../../crates/gatehouse/tests/fixtures/jwt/rsa1.pub.pem");
const EC256_PEM: &[u8] = include_bytes!("../../crates/gatehouse/tests/fixtures/jwt/ec256.pub.pem");
const EC384_PEM: &[u8] = include_bytes!("../../crates/gatehouse/tests/fixtures/jwt/ec384.pub.pem");
const ED_PEM: &[u8] = include_bytes!("../../crates/gatehouse/tests/fixtures/jwt/ed25519.pub.pem");
const HMAC_SECRET: &[u8] = include_bytes!("../../crates/gatehouse/tests/fixtures/jwt/hmac.secret");
const JWKS_A: &[u8] = include_bytes!("../../crates/gatehouse/tests/fixtures/jwt/jwks-a.json");
const SECOND_SECRET: &[u8] = b"fuzz-second-hs256-secret-without-kid-0123456789";

/// A configured key as the oracle sees it: kid, bound algorithms, jsonwebtoken's key.
struct OracleKey {
    kid: Option<String>,
    algs: Vec<Algorithm>,
    key: DecodingKey,
}

struct Fixture {
    verifier: JwtVerifier,
    oracle: Vec<OracleKey>,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let mut keys = Vec::new();
        let mut oracle = Vec::new();
        let rsa = [
            Algorithm::RS256,
            Algorithm::RS384,
            Algorithm::RS512,
            Algorithm::PS256,
            Algorithm::PS384,
            Algorithm::PS512,
        ];
        for alg in rsa {
            keys.push(VerifyKey::from_pem(Some("rsa-1".into()), alg, RSA_PEM).expect("rsa key"));
            oracle.push(OracleKey {
                kid: Some("rsa-1".into()),
                algs: vec![alg],
                key: DecodingKey::from_rsa_pem(RSA_PEM).expect("rsa"),
            });
        }
        keys.push(VerifyKey::from_pem(Some("ec-1".into()), Algorithm::ES256, EC256_PEM).expect("ec key"));
        oracle.push(OracleKey {
            kid: Some("ec-1".into()),
            algs: vec![Algorithm::ES256],
            key: DecodingKey::from_ec_pem(EC256_PEM).expect("ec"),
        });
        keys.push(VerifyKey::from_pem(Some("ec384-1".into()), Algorithm::ES384, EC384_PEM).expect("ec384 key"));
        oracle.push(OracleKey {
            kid: Some("ec384-1".into()),
            algs: vec![Algorithm::ES384],
            key: DecodingKey::from_ec_pem(EC384_PEM).expect("ec384"),
        });
        keys.push(VerifyKey::from_pem(Some("ed-1".into()), Algorithm::EdDSA, ED_PEM).expect("ed key"));
        oracle.push(OracleKey {
            kid: Some("ed-1".into()),
            algs: vec![Algorithm::EdDSA],
            key: DecodingKey::from_ed_pem(ED_PEM).expect("ed"),
        });
        for alg in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
            keys.push(VerifyKey::from_secret(Some("hs-1".into()), alg, HMAC_SECRET).expect("hmac key"));
            oracle.push(OracleKey {
                kid: Some("hs-1".into()),
                algs: vec![alg],
                key: DecodingKey::from_secret(HMAC_SECRET),
            });
        }
        keys.push(VerifyKey::from_secret(None, Algorithm::HS256, SECOND_SECRET).expect("second hmac key"));
        oracle.push(OracleKey {
            kid: None,
            algs: vec![Algorithm::HS256],
            key: DecodingKey::from_secret(SECOND_SECRET),
        });
        // The keys of a JWK set, as a fetch yields them (kid and algorithms from the gateway's
        // parse; the key material from jsonwebtoken's own JWK reader).
        let doc: Value = serde_json::from_slice(JWKS_A).expect("jwks json");
        for k in parse_jwks(JWKS_A).expect("jwks") {
            let jwk = doc["keys"]
                .as_array()
                .expect("keys")
                .iter()
                .find(|j| j["kid"].as_str() == k.kid.as_deref())
                .expect("jwk by kid");
            let jwk: Jwk = serde_json::from_value(jwk.clone()).expect("jwk");
            oracle.push(OracleKey {
                kid: k.kid.clone(),
                algs: k.algs.clone(),
                key: DecodingKey::from_jwk(&jwk).expect("jwk key"),
            });
            keys.push(k);
        }
        let verifier = JwtVerifier {
            keys: KeySource::Static(keys),
            algorithms: vec![],
            issuers: vec!["https://idp.test".into()],
            audiences: vec!["gatehouse".into()],
            require_exp: true,
            skew: Duration::from_secs(60),
            max_lifetime: None,
            required_claims: vec![],
            cache: TokenCache::new(0),
        };
        Fixture { verifier, oracle }
    })
}

/// Polls a future that must not wait (static keys): ready on the first poll.
fn now<F: Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("verification with static keys waited"),
    }
}

/// The independent check of an accepted token (see the module docs).
fn oracle_accepts(token: &str, claims: &serde_json::Map<String, Value>) -> Result<(), String> {
    let mut parts = token.split('.');
    let (h, p, s) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let header: Value = URL_SAFE_NO_PAD
        .decode(h)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or("header is not base64url JSON")?;
    let alg_name = header.get("alg").and_then(Value::as_str).ok_or("no alg")?;
    if alg_name.eq_ignore_ascii_case("none") {
        return Err("alg none accepted".into());
    }
    let alg = algorithm(alg_name).ok_or_else(|| format!("unknown alg {alg_name:?} accepted"))?;
    let kid = header.get("kid").and_then(Value::as_str);
    let message = &token.as_bytes()[..h.len() + 1 + p.len()];
    let verified = fixture().oracle.iter().any(|k| {
        let kid_ok = match (kid, &k.kid) {
            (Some(t), Some(c)) => t == c,
            _ => true,
        };
        kid_ok && k.algs.contains(&alg) && jsonwebtoken::crypto::verify(s, message, &k.key, alg).unwrap_or(false)
    });
    if !verified {
        return Err(format!("no configured key for kid {kid:?} and {alg:?} verifies the signature"));
    }
    let payload: Value =
        URL_SAFE_NO_PAD.decode(p).ok().and_then(|b| serde_json::from_slice(&b).ok()).ok_or("payload is not JSON")?;
    if payload.as_object() != Some(claims) {
        return Err("claims differ from the payload".into());
    }
    Ok(())
}

fn check(token: &str) {
    if let Ok(claims) = now(fixture().verifier.verify(token)) {
        if let Err(why) = oracle_accepts(token, &claims) {
            panic!("accepted a token the independent check refuses ({why}): {token}");
        }
    }
}

fn hmac_sign(alg: u8, key: &[u8], message: &str) -> Vec<u8> {
    macro_rules! mac {
        ($d:ty) => {{
            let mut m = Hmac::<$d>::new_from_slice(key).expect("any key length");
            m.update(message.as_bytes());
            m.finalize().into_bytes().to_vec()
        }};
    }
    match alg % 3 {
        0 => mac!(sha2::Sha256),
        1 => mac!(sha2::Sha384),
        _ => mac!(sha2::Sha512),
    }
}

/// `header-json \n payload-json` signed with `key`.
fn signed(text: &[u8], alg: u8, key: &[u8]) -> String {
    let (h, p) = match text.iter().position(|&b| b == b'\n') {
        Some(i) => (&text[..i], &text[i + 1..]),
        None => (text, &b"{}"[..]),
    };
    let message = format!("{}.{}", URL_SAFE_NO_PAD.encode(h), URL_SAFE_NO_PAD.encode(p));
    let sig = hmac_sign(alg, key, &message);
    format!("{message}.{}", URL_SAFE_NO_PAD.encode(sig))
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    match mode {
        b'S' => check(&signed(rest, 0, HMAC_SECRET)),
        b'C' => {
            let Some((&alg, text)) = rest.split_first() else { return };
            for pem in [RSA_PEM, EC256_PEM, EC384_PEM, ED_PEM] {
                let token = signed(text, alg, pem);
                if now(fixture().verifier.verify(&token)).is_ok() {
                    panic!("token HMAC-signed with a public key accepted: {token}");
                }
            }
        }
        b'J' => {
            if let Ok(keys) = parse_jwks(rest) {
                for k in keys {
                    assert!(
                        !k.algs.iter().any(|a| matches!(a, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512)),
                        "an HMAC key from a JWKS: {k:?}"
                    );
                }
            }
        }
        _ => {
            if let Ok(token) = std::str::from_utf8(rest) {
                check(token);
            }
        }
    }
});
