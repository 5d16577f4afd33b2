//! Development secrets: with no key configured, the JWT secret and the server API's
//! service token are generated once into data_dir and read from there afterwards,
//! so `ferry serve`, `ferry token` and `ferry client` agree without any setup.

use std::path::Path;

use anyhow::Context as _;

use crate::config::Config;

/// Reads a development secret from `dir/name`, creating it on first use.
fn dev_secret(dir: &Path, name: &str) -> anyhow::Result<String> {
    let path = dir.join(name);
    if let Ok(s) = std::fs::read_to_string(&path) {
        return Ok(s.trim().to_owned());
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating data_dir {}", dir.display()))?;
    let secret: String = {
        use rand::Rng;
        let mut rng = rand::rng();
        (0..48)
            .map(|_| char::from(rng.sample(rand::distr::Alphanumeric)))
            .collect()
    };
    std::fs::write(&path, &secret).with_context(|| format!("writing {}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600));
    }
    Ok(secret)
}

/// The JWT secret to use when the configuration names no key.
pub(crate) fn auth_dev_secret(cfg: &Config) -> anyhow::Result<Option<String>> {
    if cfg.auth.any_key() {
        return Ok(None);
    }
    dev_secret(&cfg.data_dir, "dev-jwt-secret").map(Some)
}

/// Whether the development endpoints (/demo, token minting) are served: only with
/// the development secret (no key of any kind configured), and only on a loopback
/// listener unless `server.demo_beyond_loopback` says otherwise.
pub(crate) fn dev_endpoints(cfg: &Config) -> bool {
    if cfg.auth.any_key() {
        return false;
    }
    let loopback = cfg
        .server
        .listen
        .parse::<std::net::SocketAddr>()
        .is_ok_and(|a| a.ip().is_loopback());
    loopback || cfg.server.demo_beyond_loopback
}

/// The server API's bearer token: `api.service_token`, or the development token.
pub(crate) fn service_token(cfg: &Config) -> anyhow::Result<String> {
    match &cfg.api.service_token {
        Some(t) => Ok(t.clone()),
        None => dev_secret(&cfg.data_dir, "dev-service-token"),
    }
}
