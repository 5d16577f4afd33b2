//! A JWKS file read into verification keys by `kid`. Each key's algorithm is the
//! JWK's own `alg` when it names one (checked against the key's type), else the
//! usual one for its type and curve. Symmetric (`oct`) keys are refused at start-up:
//! a JWKS is public, and a shared secret published in it would let anyone sign.

use std::collections::HashMap;

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::Value;

use super::auth::KeyError;

fn invalid(kid: &str, why: impl std::fmt::Display) -> KeyError {
    KeyError::Invalid(format!("auth.jwks_file key {kid:?}: {why}"))
}

/// The keys of the JWKS document `bytes`, by kid.
pub(crate) fn load(bytes: &[u8]) -> Result<HashMap<String, (DecodingKey, Algorithm)>, KeyError> {
    let doc: Value = serde_json::from_slice(bytes)
        .map_err(|e| KeyError::Invalid(format!("auth.jwks_file is not JSON: {e}")))?;
    let Some(list) = doc.get("keys").and_then(Value::as_array) else {
        return Err(KeyError::Invalid(
            "auth.jwks_file is not a JWKS: no \"keys\" array".into(),
        ));
    };
    let mut keys = HashMap::new();
    for raw in list {
        let kid = raw.get("kid").and_then(Value::as_str).unwrap_or_default();
        if raw.get("kty").and_then(Value::as_str) == Some("oct") {
            return Err(invalid(
                kid,
                "a symmetric (oct) key: a JWKS holds public keys only; use auth.hs256_secret for a shared secret",
            ));
        }
        let jwk: Jwk = serde_json::from_value(raw.clone()).map_err(|e| invalid(kid, e))?;
        let alg =
            algorithm(&jwk, raw.get("alg").and_then(Value::as_str)).map_err(|e| invalid(kid, e))?;
        let key = DecodingKey::from_jwk(&jwk).map_err(|e| invalid(kid, e))?;
        if keys.insert(kid.to_owned(), (key, alg)).is_some() {
            return Err(invalid(kid, "the kid is used twice"));
        }
    }
    Ok(keys)
}

/// The algorithm tokens signed with `jwk` must use: its `alg` if given (refused when
/// it does not fit the key type), else the default for the type.
fn algorithm(jwk: &Jwk, alg: Option<&str>) -> Result<Algorithm, String> {
    use Algorithm::*;
    let fits: &[Algorithm] = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => &[RS256, RS384, RS512, PS256, PS384, PS512],
        AlgorithmParameters::EllipticCurve(ec) => match ec.curve {
            EllipticCurve::P256 => &[ES256],
            EllipticCurve::P384 => &[ES384],
            _ => return Err("an unsupported elliptic curve (P-256 and P-384 are)".into()),
        },
        AlgorithmParameters::OctetKeyPair(_) => &[EdDSA],
        AlgorithmParameters::OctetKey(_) => return Err("a symmetric (oct) key".into()),
        _ => return Err("a key type ferry does not verify".into()),
    };
    match alg {
        None => Ok(fits[0]),
        Some(name) => {
            let a: Algorithm = name
                .parse()
                .map_err(|_| format!("alg {name:?} is not a signature algorithm ferry verifies"))?;
            if fits.contains(&a) {
                Ok(a)
            } else {
                Err(format!("alg {name:?} does not fit the key's type"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oct_keys_and_mismatched_algs_are_refused() {
        let oct = br#"{"keys":[{"kty":"oct","kid":"s","k":"c2VjcmV0LXNlY3JldC1zZWNyZXQ"}]}"#;
        let Err(err) = load(oct) else {
            panic!("an oct key was accepted")
        };
        let err = err.to_string();
        assert!(err.contains("oct") && err.contains("\"s\""), "{err}");
        let Err(not_jwks) = load(b"{}") else {
            panic!("a document without keys was accepted")
        };
        let not_jwks = not_jwks.to_string();
        assert!(not_jwks.contains("keys"), "{not_jwks}");
    }
}
