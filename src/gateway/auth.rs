//! Connection authentication: JWTs signed with an HS256 secret, or RS256/ES256 with
//! public keys from a PEM file or a JWKS file. The token is a secret: it is never
//! logged, traced or echoed, and errors never quote it.

use std::collections::HashMap;
use std::path::Path;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde_json::Value;

use crate::config::AuthConfig;

/// Why a connection was refused; the close reason comes from here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AuthFailure {
    MissingParam(&'static str),
    InvalidParam(&'static str),
    /// A metadata parameter (deviceModel, …) over its length limit.
    InvalidMeta(String),
    /// A parameter with a control, line-break or bidirectional character.
    Unprintable(String),
    /// A parameter given twice.
    RepeatedParam(String),
    QueryTooLong,
    /// A token with a `crit` header this server does not understand (RFC 7515 §4.1.11).
    UnknownCrit,
    /// A token valid for longer than `auth.max_token_lifetime_secs`.
    LifetimeTooLong,
    Malformed,
    BadSignature,
    Expired,
    NotYetValid,
    WrongUser,
    WrongIssuer,
    WrongAudience,
    MissingExp,
    WrongPlatform,
    WrongDevice,
    UnknownKey,
}

impl AuthFailure {
    /// The close reason, in English or (language=zh) Chinese. Kept under 123 bytes,
    /// the most a close frame can carry.
    pub(crate) fn reason(&self, zh: bool) -> String {
        use AuthFailure::*;
        let (en, cn): (String, String) = match self {
            MissingParam(p) => (
                format!("missing query parameter {p}"),
                format!("缺少参数 {p}"),
            ),
            InvalidParam(p) => (
                format!("invalid query parameter {p}"),
                format!("参数 {p} 无效"),
            ),
            InvalidMeta(p) => (
                format!("query parameter {p} is too long"),
                format!("参数 {p} 过长"),
            ),
            Unprintable(p) => (
                format!("query parameter {p} has control, line-break or bidi characters"),
                format!("参数 {p} 含有控制字符"),
            ),
            RepeatedParam(p) => (
                format!("query parameter {p} is given more than once"),
                format!("参数 {p} 重复"),
            ),
            QueryTooLong => ("query string is too long".into(), "查询字符串过长".into()),
            UnknownCrit => (
                "token has a crit header this server does not support".into(),
                "token 含有不支持的 crit".into(),
            ),
            LifetimeTooLong => (
                "token lifetime exceeds auth.max_token_lifetime_secs".into(),
                "token 有效期过长".into(),
            ),
            Malformed => ("token is not a valid JWT".into(), "token 格式错误".into()),
            BadSignature => ("token signature is invalid".into(), "token 签名无效".into()),
            Expired => ("token expired".into(), "token 已过期".into()),
            NotYetValid => ("token not yet valid".into(), "token 尚未生效".into()),
            WrongUser => (
                "token does not belong to userId".into(),
                "token 与 userId 不匹配".into(),
            ),
            WrongIssuer => (
                "token issuer not accepted".into(),
                "token 签发者无效".into(),
            ),
            WrongAudience => (
                "token audience not accepted".into(),
                "token 受众无效".into(),
            ),
            MissingExp => ("token has no exp claim".into(), "token 缺少 exp".into()),
            WrongPlatform => (
                "token is for another platform".into(),
                "token 平台不匹配".into(),
            ),
            WrongDevice => (
                "token is for another device".into(),
                "token 设备不匹配".into(),
            ),
            UnknownKey => (
                "token signing key is unknown".into(),
                "token 密钥未知".into(),
            ),
        };
        if zh { cn } else { en }
    }
}

pub(super) enum Keys {
    Secret(DecodingKey),
    Public(DecodingKey, Algorithm),
    Jwks(HashMap<String, (DecodingKey, Algorithm)>),
}

pub(crate) struct Authenticator {
    keys: Keys,
    subject_claim: String,
    issuer: Option<String>,
    audience: Option<String>,
    leeway: u64,
    /// Longest lifetime (exp - now) a token may have, seconds.
    max_lifetime: u64,
}

/// Default of `auth.max_token_lifetime_secs`: a day.
pub(crate) const DEFAULT_MAX_TOKEN_LIFETIME_SECS: u64 = 86_400;

#[derive(Debug, thiserror::Error)]
pub(crate) enum KeyError {
    #[error("auth: cannot read {path}: {err}")]
    Read { path: String, err: std::io::Error },
    #[error("auth: {0}")]
    Invalid(String),
}

fn read(path: &Path) -> Result<Vec<u8>, KeyError> {
    std::fs::read(path).map_err(|err| KeyError::Read {
        path: path.display().to_string(),
        err,
    })
}

fn public_pem(pem: &[u8]) -> Result<(DecodingKey, Algorithm), KeyError> {
    if let Ok(k) = DecodingKey::from_rsa_pem(pem) {
        return Ok((k, Algorithm::RS256));
    }
    DecodingKey::from_ec_pem(pem)
        .map(|k| (k, Algorithm::ES256))
        .map_err(|e| {
            KeyError::Invalid(format!(
                "auth.public_key_file is neither an RSA nor an EC public key: {e}"
            ))
        })
}

impl Authenticator {
    /// `dev_secret` is used when the configuration names no key at all.
    pub(crate) fn new(cfg: &AuthConfig, dev_secret: Option<&str>) -> Result<Self, KeyError> {
        // Public keys usually come from an identity provider that signs tokens for
        // other applications too: without an audience and an issuer to check, a token
        // it minted for another app would log in here.
        if let Some(key) = [
            ("auth.jwks_file", cfg.jwks_file.is_some()),
            ("auth.public_key_file", cfg.public_key_file.is_some()),
        ]
        .into_iter()
        .find_map(|(k, set)| set.then_some(k))
            && (cfg.audience.is_none() || cfg.issuer.is_none())
        {
            return Err(KeyError::Invalid(format!(
                "{key} is set: auth.audience and auth.issuer are required with public keys \
                 (a token the identity provider minted for another application would be accepted)"
            )));
        }
        let keys = if let Some(f) = &cfg.jwks_file {
            Keys::Jwks(super::jwks::load(&read(f)?)?)
        } else if let Some(f) = &cfg.public_key_file {
            let (k, alg) = public_pem(&read(f)?)?;
            Keys::Public(k, alg)
        } else if let Some(s) = cfg.hs256_secret.as_deref().or(dev_secret) {
            Keys::Secret(DecodingKey::from_secret(s.as_bytes()))
        } else {
            return Err(KeyError::Invalid(
                "no key configured: set auth.hs256_secret, auth.public_key_file or auth.jwks_file \
                 (auth.signing_key_file only signs, for `ferry token`)"
                    .into(),
            ));
        };
        Ok(Self {
            keys,
            subject_claim: cfg.subject_claim.clone().unwrap_or_else(|| "sub".into()),
            issuer: cfg.issuer.clone(),
            audience: cfg.audience.clone(),
            leeway: cfg.leeway_secs.unwrap_or(30),
            max_lifetime: cfg
                .max_token_lifetime_secs
                .unwrap_or(DEFAULT_MAX_TOKEN_LIFETIME_SECS),
        })
    }

    /// Verifies `token` for this (userId, platform, deviceId).
    pub(crate) fn verify(
        &self,
        token: &str,
        user: &str,
        platform: &str,
        device: &str,
    ) -> Result<(), AuthFailure> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| AuthFailure::Malformed)?;
        // No extension is understood: any `crit` makes the token invalid (RFC 7515 §4.1.11).
        if has_crit(token)? {
            return Err(AuthFailure::UnknownCrit);
        }
        let (key, alg) = match &self.keys {
            Keys::Secret(k) => (k, Algorithm::HS256),
            Keys::Public(k, a) => (k, *a),
            Keys::Jwks(map) => {
                let kid = header.kid.clone().unwrap_or_default();
                let (k, a) = map.get(&kid).ok_or(AuthFailure::UnknownKey)?;
                (k, *a)
            }
        };
        // Only the configured algorithm: no alg confusion, no "none".
        if header.alg != alg {
            return Err(AuthFailure::BadSignature);
        }
        let mut v = Validation::new(alg);
        v.leeway = self.leeway;
        v.validate_nbf = true;
        v.set_required_spec_claims(&["exp"]);
        match &self.audience {
            Some(a) => v.set_audience(&[a]),
            None => v.validate_aud = false,
        }
        if let Some(i) = &self.issuer {
            v.set_issuer(&[i]);
        }
        use jsonwebtoken::errors::ErrorKind as K;
        let data =
            jsonwebtoken::decode::<HashMap<String, Value>>(token, key, &v).map_err(|e| match e
                .kind()
            {
                K::ExpiredSignature => AuthFailure::Expired,
                K::ImmatureSignature => AuthFailure::NotYetValid,
                K::InvalidIssuer => AuthFailure::WrongIssuer,
                K::InvalidAudience => AuthFailure::WrongAudience,
                K::MissingRequiredClaim(c) if c == "exp" => AuthFailure::MissingExp,
                K::MissingRequiredClaim(c) if c == "iss" => AuthFailure::WrongIssuer,
                K::MissingRequiredClaim(c) if c == "aud" => AuthFailure::WrongAudience,
                K::InvalidSignature | K::InvalidAlgorithm | K::InvalidKeyFormat => {
                    AuthFailure::BadSignature
                }
                _ => AuthFailure::Malformed,
            })?;
        let claims = data.claims;
        let now = u64::try_from(crate::domain::now_ms() / 1000).unwrap_or(0);
        let exp = claims
            .get("exp")
            .and_then(Value::as_f64)
            .map_or(u64::MAX, |e| e as u64);
        if exp.saturating_sub(now) > self.max_lifetime.saturating_add(self.leeway) {
            return Err(AuthFailure::LifetimeTooLong);
        }
        let claim_str = |name: &str| {
            claims.get(name).and_then(|v| match v {
                Value::String(s) => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            })
        };
        if claim_str(&self.subject_claim).as_deref() != Some(user) {
            return Err(AuthFailure::WrongUser);
        }
        if claim_str("platform").is_some_and(|p| p != platform) {
            return Err(AuthFailure::WrongPlatform);
        }
        if claim_str("deviceId").is_some_and(|d| d != device) {
            return Err(AuthFailure::WrongDevice);
        }
        Ok(())
    }
}

/// Whether the token's protected header has a `crit` parameter (read from the header
/// itself: the JWT library ignores it).
fn has_crit(token: &str) -> Result<bool, AuthFailure> {
    use base64::Engine as _;
    let head = token.split('.').next().ok_or(AuthFailure::Malformed)?;
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(head.trim_end_matches('='))
        .map_err(|_| AuthFailure::Malformed)?;
    let header: serde_json::Map<String, Value> =
        serde_json::from_slice(&json).map_err(|_| AuthFailure::Malformed)?;
    Ok(header.contains_key("crit"))
}

/// Signs a token for `user` (used by `ferry token` and tests).
pub(crate) fn mint(
    cfg: &AuthConfig,
    dev_secret: Option<&str>,
    user: &str,
    ttl_secs: u64,
    extra: &[(&str, &str)],
) -> anyhow::Result<String> {
    let now = crate::domain::now_ms() / 1000;
    let mut claims = serde_json::Map::new();
    claims.insert(
        cfg.subject_claim.clone().unwrap_or_else(|| "sub".into()),
        Value::String(user.to_owned()),
    );
    claims.insert("iat".into(), now.into());
    claims.insert("exp".into(), (now + ttl_secs as i64).into());
    if let Some(i) = &cfg.issuer {
        claims.insert("iss".into(), Value::String(i.clone()));
    }
    if let Some(a) = &cfg.audience {
        claims.insert("aud".into(), Value::String(a.clone()));
    }
    for (k, v) in extra {
        claims.insert((*k).to_owned(), Value::String((*v).to_owned()));
    }
    let (header, key) = if let Some(f) = &cfg.signing_key_file {
        let pem = std::fs::read(f)?;
        match EncodingKey::from_rsa_pem(&pem) {
            Ok(k) => (Header::new(Algorithm::RS256), k),
            Err(_) => (
                Header::new(Algorithm::ES256),
                EncodingKey::from_ec_pem(&pem)?,
            ),
        }
    } else if let Some(s) = cfg.hs256_secret.as_deref().or(dev_secret) {
        (
            Header::new(Algorithm::HS256),
            EncodingKey::from_secret(s.as_bytes()),
        )
    } else {
        anyhow::bail!("no signing key: set auth.hs256_secret or auth.signing_key_file");
    };
    Ok(jsonwebtoken::encode(&header, &claims, &key)?)
}

/// Replaces the value of `token` in a query string, for anything that records URLs.
/// The name is matched decoded, as `ConnectParams::parse` reads it (`tok%65n`).
pub(crate) fn redact_query(query: &str) -> String {
    crate::redact::query(query, |k| k == "token", "REDACTED")
}

/// Key pairs for the tests, made as the integration tests make them.
#[cfg(test)]
#[path = "../../tests/it/keys.rs"]
mod test_keys;

#[cfg(test)]
mod tests {
    use super::test_keys::keypair;
    use super::*;
    use jsonwebtoken::jwk::JwkSet;

    /// What public keys need beside them: the audience and issuer checked.
    fn idp() -> AuthConfig {
        AuthConfig {
            issuer: Some("https://id.example".into()),
            audience: Some("ferry".into()),
            ..AuthConfig::default()
        }
    }

    fn cfg() -> AuthConfig {
        AuthConfig {
            hs256_secret: Some("0123456789abcdef0123".into()),
            ..AuthConfig::default()
        }
    }

    #[test]
    fn minted_tokens_verify_for_their_user_only() {
        let a = Authenticator::new(&cfg(), None).unwrap();
        let t = mint(&cfg(), None, "alice", 60, &[]).unwrap();
        assert_eq!(a.verify(&t, "alice", "ios", "d1"), Ok(()));
        assert_eq!(
            a.verify(&t, "bob", "ios", "d1"),
            Err(AuthFailure::WrongUser)
        );
        assert_eq!(
            a.verify("x.y.z", "alice", "ios", "d1"),
            Err(AuthFailure::Malformed)
        );
    }

    #[test]
    fn device_claims_must_match_when_present() {
        let a = Authenticator::new(&cfg(), None).unwrap();
        let t = mint(&cfg(), None, "alice", 60, &[("platform", "ios")]).unwrap();
        assert_eq!(
            a.verify(&t, "alice", "android", "d1"),
            Err(AuthFailure::WrongPlatform)
        );
    }

    #[test]
    fn rs256_and_es256_public_keys_from_pem() {
        let dir = tempfile::tempdir().unwrap();
        for (kind, alg) in [("rsa", "RS256"), ("ec", "ES256")] {
            let (private, public) = keypair(dir.path(), kind);
            let signer = AuthConfig {
                signing_key_file: Some(private),
                ..idp()
            };
            let verifier = AuthConfig {
                public_key_file: Some(public),
                ..idp()
            };
            let a = Authenticator::new(&verifier, None).unwrap();
            let t = mint(&signer, None, "alice", 60, &[]).unwrap();
            assert_eq!(
                jsonwebtoken::decode_header(&t).unwrap().alg,
                alg.parse().unwrap()
            );
            assert_eq!(a.verify(&t, "alice", "ios", "d"), Ok(()), "{alg}");
            // A token signed with the shared-secret algorithm is refused (no alg confusion).
            let hs = mint(&cfg(), None, "alice", 60, &[]).unwrap();
            assert_eq!(
                a.verify(&hs, "alice", "ios", "d"),
                Err(AuthFailure::BadSignature)
            );
        }
    }

    #[test]
    fn jwks_keys_are_chosen_by_kid() {
        let dir = tempfile::tempdir().unwrap();
        let (private, _) = keypair(dir.path(), "ec");
        let pem = std::fs::read(&private).unwrap();
        let enc = EncodingKey::from_ec_pem(&pem).unwrap();
        let mut jwk = jsonwebtoken::jwk::Jwk::from_encoding_key(&enc, Algorithm::ES256).unwrap();
        jwk.common.key_id = Some("k1".into());
        let jwks = dir.path().join("jwks.json");
        std::fs::write(
            &jwks,
            serde_json::to_vec(&JwkSet { keys: vec![jwk] }).unwrap(),
        )
        .unwrap();
        let a = Authenticator::new(
            &AuthConfig {
                jwks_file: Some(jwks),
                ..idp()
            },
            None,
        )
        .unwrap();
        let claims = serde_json::json!({ "sub": "alice", "exp": crate::domain::now_ms() / 1000 + 60, "iss": "https://id.example", "aud": "ferry" });
        let sign = |kid: &str| {
            let mut h = Header::new(Algorithm::ES256);
            h.kid = Some(kid.into());
            jsonwebtoken::encode(&h, &claims, &enc).unwrap()
        };
        assert_eq!(a.verify(&sign("k1"), "alice", "ios", "d"), Ok(()));
        assert_eq!(
            a.verify(&sign("k2"), "alice", "ios", "d"),
            Err(AuthFailure::UnknownKey)
        );
    }

    #[test]
    fn the_token_is_redacted() {
        assert_eq!(
            redact_query("userId=a&token=secret.jwt&platform=ios"),
            "userId=a&token=REDACTED&platform=ios"
        );
        assert_eq!(
            redact_query("userId=a&tok%65n=secret.jwt"),
            "userId=a&tok%65n=REDACTED"
        );
    }
}
