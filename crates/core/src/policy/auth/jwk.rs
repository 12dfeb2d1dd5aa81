//! Key material for JWS verification: a key (from PEM config or a fetched JWK) parsed once into
//! a ready RustCrypto verifier bound to one algorithm (`VerifyKey`), and the reasons a token is
//! refused (`JwtError`). Shared by static keys (`jwt.rs`) and remote key sets (`jwks.rs`).
//!
//! Invariants: an HMAC key is never built from an RSA/EC/EdDSA key, and the algorithm a key
//! verifies with is fixed when it is parsed (see `jwt.rs`).

use hmac::{Hmac, Mac};
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm};
use jsonwebtoken::{Algorithm, DecodingKey, DecodingKeyKind};
use p256::ecdsa::signature::Verifier;
use rsa::pkcs1::DecodeRsaPublicKey;
use rsa::{BigUint, Pkcs1v15Sign, Pss, RsaPublicKey};
use sha2::{Digest, Sha256, Sha384, Sha512};

/// Why a token was refused (for logs and counters, not for the client).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    #[error("malformed token")]
    Malformed,
    #[error("algorithm not allowed")]
    Algorithm,
    #[error("no key for this token")]
    UnknownKey,
    #[error("signature verification failed")]
    Signature,
    #[error("token expired")]
    Expired,
    #[error("token not yet valid")]
    NotYetValid,
    #[error("token has no exp")]
    MissingExp,
    #[error("iat in the future")]
    IssuedInFuture,
    #[error("issuer not accepted")]
    Issuer,
    #[error("audience not accepted")]
    Audience,
    #[error("lifetime longer than allowed")]
    Lifetime,
    #[error("required claim missing")]
    MissingClaim,
    #[error("verification keys unavailable")]
    KeysUnavailable,
}

/// Parses an algorithm name; `none` and unknown names give `None`.
pub fn algorithm(name: &str) -> Option<Algorithm> {
    Some(match name {
        "HS256" => Algorithm::HS256,
        "HS384" => Algorithm::HS384,
        "HS512" => Algorithm::HS512,
        "RS256" => Algorithm::RS256,
        "RS384" => Algorithm::RS384,
        "RS512" => Algorithm::RS512,
        "PS256" => Algorithm::PS256,
        "PS384" => Algorithm::PS384,
        "PS512" => Algorithm::PS512,
        "ES256" => Algorithm::ES256,
        "ES384" => Algorithm::ES384,
        "EdDSA" => Algorithm::EdDSA,
        _ => return None,
    })
}

const RSA_ALGS: &[Algorithm] =
    &[Algorithm::RS256, Algorithm::RS384, Algorithm::RS512, Algorithm::PS256, Algorithm::PS384, Algorithm::PS512];

/// A verification key and the algorithms it may verify (one, unless an RSA JWK names none).
#[derive(Clone)]
pub struct VerifyKey {
    pub kid: Option<String>,
    pub algs: Vec<Algorithm>,
    key: Prepared,
}

/// A key parsed into the verifier its family needs, once.
#[derive(Clone)]
enum Prepared {
    /// The HMAC state after keying (cloned per token: no key schedule per request).
    Hs256(Hmac<Sha256>),
    Hs384(Hmac<Sha384>),
    Hs512(Hmac<Sha512>),
    Rsa(RsaPublicKey),
    P256(p256::ecdsa::VerifyingKey),
    P384(p384::ecdsa::VerifyingKey),
    Ed25519(ed25519_dalek::VerifyingKey),
}

impl Prepared {
    /// Parses `key` for `alg`'s family (an RSA key serves every RS/PS algorithm).
    fn new(alg: Algorithm, key: &DecodingKey) -> Result<Prepared, String> {
        let bytes = || key.try_get_as_bytes().map_err(|e| format!("invalid key: {e}"));
        let hmac_err = |_| "invalid HMAC key".to_string();
        Ok(match alg {
            Algorithm::HS256 => Prepared::Hs256(Hmac::new_from_slice(bytes()?).map_err(hmac_err)?),
            Algorithm::HS384 => Prepared::Hs384(Hmac::new_from_slice(bytes()?).map_err(hmac_err)?),
            Algorithm::HS512 => Prepared::Hs512(Hmac::new_from_slice(bytes()?).map_err(hmac_err)?),
            Algorithm::ES256 => Prepared::P256(
                p256::ecdsa::VerifyingKey::from_sec1_bytes(bytes()?).map_err(|_| "invalid P-256 public key")?,
            ),
            Algorithm::ES384 => Prepared::P384(
                p384::ecdsa::VerifyingKey::from_sec1_bytes(bytes()?).map_err(|_| "invalid P-384 public key")?,
            ),
            Algorithm::EdDSA => {
                let raw: &[u8; 32] = bytes()?.try_into().map_err(|_| "an Ed25519 public key is 32 bytes")?;
                Prepared::Ed25519(
                    ed25519_dalek::VerifyingKey::from_bytes(raw).map_err(|_| "invalid Ed25519 public key")?,
                )
            }
            _ => Prepared::Rsa(match key.kind() {
                DecodingKeyKind::SecretOrDer(der) => {
                    RsaPublicKey::from_pkcs1_der(der).map_err(|e| format!("invalid RSA public key: {e}"))?
                }
                DecodingKeyKind::RsaModulusExponent { n, e } => {
                    RsaPublicKey::new(BigUint::from_bytes_be(n), BigUint::from_bytes_be(e))
                        .map_err(|e| format!("invalid RSA public key: {e}"))?
                }
            }),
        })
    }

    /// Checks `signature` over `message` for `alg`; a family mismatch is a failure.
    pub(crate) fn verify(&self, alg: Algorithm, message: &[u8], signature: &[u8]) -> bool {
        fn rsa<D>(k: &RsaPublicKey, pss: bool, m: &[u8], sig: &[u8]) -> bool
        where
            D: 'static + Digest + sha2::digest::DynDigest + rsa::pkcs8::AssociatedOid + Send + Sync,
        {
            let digest = D::digest(m);
            if pss {
                k.verify(Pss::new::<D>(), &digest, sig).is_ok()
            } else {
                k.verify(Pkcs1v15Sign::new::<D>(), &digest, sig).is_ok()
            }
        }
        fn hmac<M: Mac + Clone>(m: &M, msg: &[u8], sig: &[u8]) -> bool {
            let mut m = m.clone();
            m.update(msg);
            m.verify_slice(sig).is_ok() // constant-time comparison
        }
        match (self, alg) {
            (Prepared::Hs256(m), Algorithm::HS256) => hmac(m, message, signature),
            (Prepared::Hs384(m), Algorithm::HS384) => hmac(m, message, signature),
            (Prepared::Hs512(m), Algorithm::HS512) => hmac(m, message, signature),
            (Prepared::Rsa(k), Algorithm::RS256) => rsa::<Sha256>(k, false, message, signature),
            (Prepared::Rsa(k), Algorithm::RS384) => rsa::<Sha384>(k, false, message, signature),
            (Prepared::Rsa(k), Algorithm::RS512) => rsa::<Sha512>(k, false, message, signature),
            (Prepared::Rsa(k), Algorithm::PS256) => rsa::<Sha256>(k, true, message, signature),
            (Prepared::Rsa(k), Algorithm::PS384) => rsa::<Sha384>(k, true, message, signature),
            (Prepared::Rsa(k), Algorithm::PS512) => rsa::<Sha512>(k, true, message, signature),
            (Prepared::P256(k), Algorithm::ES256) => {
                p256::ecdsa::Signature::from_slice(signature).is_ok_and(|s| Verifier::verify(k, message, &s).is_ok())
            }
            (Prepared::P384(k), Algorithm::ES384) => {
                p384::ecdsa::Signature::from_slice(signature).is_ok_and(|s| Verifier::verify(k, message, &s).is_ok())
            }
            (Prepared::Ed25519(k), Algorithm::EdDSA) => {
                ed25519_dalek::Signature::from_slice(signature).is_ok_and(|s| Verifier::verify(k, message, &s).is_ok())
            }
            _ => false,
        }
    }
}

impl std::fmt::Debug for VerifyKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material (an HMAC key is a secret).
        f.debug_struct("VerifyKey").field("kid", &self.kid).field("algs", &self.algs).finish()
    }
}

fn is_hmac(a: Algorithm) -> bool {
    matches!(a, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512)
}

impl VerifyKey {
    /// A key from PEM text; `alg` is the one algorithm it verifies (never HMAC).
    pub fn from_pem(kid: Option<String>, alg: Algorithm, pem: &[u8]) -> Result<VerifyKey, String> {
        let key = match alg {
            a if RSA_ALGS.contains(&a) => DecodingKey::from_rsa_pem(pem),
            Algorithm::ES256 | Algorithm::ES384 => DecodingKey::from_ec_pem(pem),
            Algorithm::EdDSA => DecodingKey::from_ed_pem(pem),
            _ => return Err("a PEM public key cannot verify an HMAC algorithm".into()),
        }
        .map_err(|e| format!("cannot read the PEM key for {alg:?}: {e}"))?;
        Ok(VerifyKey { kid, algs: vec![alg], key: Prepared::new(alg, &key)? })
    }

    /// An HMAC secret for `alg` (HS256/384/512).
    pub fn from_secret(kid: Option<String>, alg: Algorithm, secret: &[u8]) -> Result<VerifyKey, String> {
        if !is_hmac(alg) {
            return Err(format!("a secret verifies HS256/384/512 only, not {alg:?}"));
        }
        Ok(VerifyKey { kid, algs: vec![alg], key: Prepared::new(alg, &DecodingKey::from_secret(secret))? })
    }

    /// A key from a JWK. `alg` (from the config) wins over the JWK's own `alg`; without either,
    /// the key type decides (EC curve → ES256/ES384, OKP → EdDSA, RSA → any RS/PS in
    /// `allowed`). Symmetric (`oct`) keys need `allow_hmac` and an explicit algorithm.
    pub fn from_jwk(jwk: &Jwk, alg: Option<Algorithm>, allow_hmac: bool) -> Result<VerifyKey, String> {
        let kid = jwk.common.key_id.clone();
        let jwk_alg = match jwk.common.key_algorithm {
            None => None,
            Some(ka) => Some(key_algorithm(ka).ok_or_else(|| format!("unsupported JWK alg {ka:?}"))?),
        };
        let stated = alg.or(jwk_alg);
        let family: Vec<Algorithm> = match &jwk.algorithm {
            AlgorithmParameters::RSA(_) => RSA_ALGS.to_vec(),
            AlgorithmParameters::EllipticCurve(ec) => match ec.curve {
                EllipticCurve::P256 => vec![Algorithm::ES256],
                EllipticCurve::P384 => vec![Algorithm::ES384],
                _ => return Err("unsupported EC curve (P-256 and P-384 are supported)".into()),
            },
            AlgorithmParameters::OctetKeyPair(okp) => match okp.curve {
                EllipticCurve::Ed25519 => vec![Algorithm::EdDSA],
                _ => return Err("unsupported OKP curve (Ed25519 is supported)".into()),
            },
            AlgorithmParameters::OctetKey(_) => {
                if !allow_hmac {
                    return Err("symmetric (`oct`) keys are not accepted from a JWKS".into());
                }
                vec![Algorithm::HS256, Algorithm::HS384, Algorithm::HS512]
            }
            _ => return Err("unsupported key type".into()),
        };
        let algs = match stated {
            Some(a) if family.contains(&a) => vec![a],
            Some(a) => return Err(format!("the key type cannot verify {a:?}")),
            None if matches!(jwk.algorithm, AlgorithmParameters::OctetKey(_)) => {
                return Err("a symmetric JWK needs an `alg`".into())
            }
            None => family,
        };
        let key = DecodingKey::from_jwk(jwk).map_err(|e| format!("invalid JWK: {e}"))?;
        // Every algorithm in `algs` shares the key's family, so the first one picks the parser.
        let first = algs.first().copied().ok_or("the key verifies no algorithm")?;
        let key = Prepared::new(first, &key)?;
        Ok(VerifyKey { kid, algs, key })
    }

    /// Verifies `signature` over `message` with `alg`, which must be bound to this key.
    pub(crate) fn verify(&self, alg: Algorithm, message: &[u8], signature: &[u8]) -> bool {
        self.algs.contains(&alg) && self.key.verify(alg, message, signature)
    }
}

fn key_algorithm(ka: KeyAlgorithm) -> Option<Algorithm> {
    algorithm(match ka {
        KeyAlgorithm::HS256 => "HS256",
        KeyAlgorithm::HS384 => "HS384",
        KeyAlgorithm::HS512 => "HS512",
        KeyAlgorithm::ES256 => "ES256",
        KeyAlgorithm::ES384 => "ES384",
        KeyAlgorithm::RS256 => "RS256",
        KeyAlgorithm::RS384 => "RS384",
        KeyAlgorithm::RS512 => "RS512",
        KeyAlgorithm::PS256 => "PS256",
        KeyAlgorithm::PS384 => "PS384",
        KeyAlgorithm::PS512 => "PS512",
        KeyAlgorithm::EdDSA => "EdDSA",
        _ => return None,
    })
}
