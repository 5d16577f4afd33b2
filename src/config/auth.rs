//! The `[auth]` section: which keys verify client tokens.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{Invalid, invalid};

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct AuthConfig {
    /// HS256 shared secret. With no key at all, a development secret is generated in data_dir.
    pub(crate) hs256_secret: Option<String>,
    /// PEM file with an RSA or EC public key (RS256 / ES256).
    pub(crate) public_key_file: Option<PathBuf>,
    /// JWKS file with RS256 / ES256 keys, chosen by `kid`.
    pub(crate) jwks_file: Option<PathBuf>,
    /// PEM private key used only by `ferry token` to sign with RS256/ES256.
    pub(crate) signing_key_file: Option<PathBuf>,
    /// Claim that must equal userId (default `sub`).
    pub(crate) subject_claim: Option<String>,
    pub(crate) issuer: Option<String>,
    pub(crate) audience: Option<String>,
    /// Clock skew tolerated for exp/nbf, seconds (default 30).
    pub(crate) leeway_secs: Option<u64>,
    /// Longest token lifetime accepted (exp minus now), seconds (default 86400).
    pub(crate) max_token_lifetime_secs: Option<u64>,
}

impl AuthConfig {
    pub(super) fn validate(&self, bad: &mut Vec<Invalid>) {
        if self.hs256_secret.as_deref().is_some_and(|s| s.len() < 16) {
            bad.push(invalid("auth.hs256_secret", "use at least 16 bytes"));
        }
    }
}
