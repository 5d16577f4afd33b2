//! The configuration keys that bound what reaches ferry from outside: where the
//! development endpoints answer, which browser origins may open a socket, how long a
//! request body may take, how many sockets may sit unauthenticated, and what a
//! notice may cost. Validated here, called once from `Config::validate`.

use serde::{Deserialize, Serialize};

use super::{AuthConfig, Config, Invalid, invalid};

impl AuthConfig {
    /// Whether a key of any kind is configured: a verification key, or a signing
    /// key (which says tokens come from somewhere other than the demo).
    pub(crate) fn any_key(&self) -> bool {
        self.hs256_secret.is_some()
            || self.public_key_file.is_some()
            || self.jwks_file.is_some()
            || self.signing_key_file.is_some()
    }
}

/// `origin` as `scheme://host[:port]` in lower case, the default port left out; None
/// when it is not an origin (a path, no host, a scheme other than http(s)).
pub(crate) fn normalise_origin(origin: &str) -> Option<String> {
    let o = origin.trim().to_ascii_lowercase();
    let (scheme, rest) = o.split_once("://")?;
    let default_port = match scheme {
        "http" => ":80",
        "https" => ":443",
        _ => return None,
    };
    if rest.is_empty()
        || !rest
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-.[]:".contains(c))
    {
        return None;
    }
    let rest = rest.strip_suffix(default_port).unwrap_or(rest);
    Some(format!("{scheme}://{rest}"))
}

/// Bounds on notices: per user pending, per notice, and per API request.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct NoticeLimits {
    /// Pending (unacknowledged) notices one user may have.
    pub(crate) max_pending_per_user: usize,
    /// Bytes of pending notices one user may have (encoded notices). At most half of
    /// `limits.send_queue_bytes`, so a user's pending notices always fit the queue of
    /// the socket they are pushed to on connect.
    pub(crate) max_pending_bytes_per_user: usize,
    /// Longest notice title, bytes.
    pub(crate) max_title_bytes: usize,
    /// Largest notice content, bytes.
    pub(crate) max_content_bytes: usize,
    /// userIds in one `POST /api/v1/notices`.
    pub(crate) max_users_per_request: usize,
    /// userIds × encoded notice bytes one `POST /api/v1/notices` may write to the log.
    pub(crate) max_fanout_bytes_per_request: usize,
}

impl Default for NoticeLimits {
    fn default() -> Self {
        Self {
            max_pending_per_user: 100,
            max_pending_bytes_per_user: 1 << 20,
            max_title_bytes: 512,
            max_content_bytes: 64 << 10,
            max_users_per_request: 1000,
            max_fanout_bytes_per_request: 16 << 20,
        }
    }
}

/// The checks of the keys above and of `server.*`, `auth.*` keys that guard the edge.
pub(super) fn validate(c: &Config, bad: &mut Vec<Invalid>) {
    let s = &c.server;
    if s.body_read_timeout_secs == 0 || s.body_read_timeout_secs > 600 {
        bad.push(invalid(
            "server.body_read_timeout_secs",
            "must be between 1 and 600",
        ));
    }
    if s.max_unconnected_sockets == 0 {
        bad.push(invalid(
            "server.max_unconnected_sockets",
            "must be greater than 0",
        ));
    }
    for o in &s.allowed_origins {
        if normalise_origin(o).is_none() {
            bad.push(invalid(
                "server.allowed_origins",
                format!(
                    "{o:?} is not an origin: scheme://host[:port], e.g. https://chat.example.com"
                ),
            ));
        }
    }
    for h in &s.dev_allowed_hosts {
        if h.is_empty()
            || !h
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-.[]:".contains(c))
        {
            bad.push(invalid(
                "server.dev_allowed_hosts",
                format!("{h:?} is not a host name"),
            ));
        }
    }
    if s.demo_beyond_loopback && c.auth.any_key() {
        bad.push(invalid(
            "server.demo_beyond_loopback",
            "the demo signs with the development secret, which exists only when no auth key is configured",
        ));
    }
    if c.auth.max_token_lifetime_secs == Some(0) {
        bad.push(invalid(
            "auth.max_token_lifetime_secs",
            "must be greater than 0",
        ));
    }
    let n = &c.limits.notices;
    for (key, v) in [
        (
            "limits.notices.max_pending_per_user",
            n.max_pending_per_user,
        ),
        (
            "limits.notices.max_pending_bytes_per_user",
            n.max_pending_bytes_per_user,
        ),
        ("limits.notices.max_title_bytes", n.max_title_bytes),
        ("limits.notices.max_content_bytes", n.max_content_bytes),
        (
            "limits.notices.max_users_per_request",
            n.max_users_per_request,
        ),
        (
            "limits.notices.max_fanout_bytes_per_request",
            n.max_fanout_bytes_per_request,
        ),
    ] {
        if v == 0 {
            bad.push(invalid(key, "must be greater than 0"));
        }
    }
    if n.max_pending_bytes_per_user > c.limits.send_queue_bytes / 2 {
        bad.push(invalid(
            "limits.notices.max_pending_bytes_per_user",
            "at most half of limits.send_queue_bytes (pending notices are pushed on connect)",
        ));
    }
    if n.max_pending_per_user > c.limits.send_queue / 2 {
        bad.push(invalid(
            "limits.notices.max_pending_per_user",
            "at most half of limits.send_queue (pending notices are pushed on connect)",
        ));
    }
    if n.max_title_bytes + n.max_content_bytes + NOTICE_OVERHEAD > n.max_pending_bytes_per_user {
        bad.push(invalid(
            "limits.notices.max_content_bytes",
            "one notice of the largest title and content must fit limits.notices.max_pending_bytes_per_user",
        ));
    }
}

/// Room for a notice's ids, flags and ext besides its title and content, bytes: what
/// a notice of the largest title and content may add when encoded.
pub(crate) const NOTICE_OVERHEAD: usize = 1024;

#[cfg(test)]
mod tests {
    use crate::config::Config;

    #[test]
    fn the_edge_keys_are_validated_by_name() {
        let mut c = Config::default();
        c.server.allowed_origins = vec!["chat.example.com".into()];
        c.server.body_read_timeout_secs = 0;
        c.server.demo_beyond_loopback = true;
        c.auth.hs256_secret = Some("0123456789abcdef0123".into());
        c.limits.notices.max_pending_bytes_per_user = c.limits.send_queue_bytes;
        let err = c.validate().unwrap_err().to_string();
        for key in [
            "server.allowed_origins",
            "server.body_read_timeout_secs",
            "server.demo_beyond_loopback",
            "limits.notices.max_pending_bytes_per_user",
        ] {
            assert!(
                err.contains(&format!("`{key}`")),
                "{key} missing from: {err}"
            );
        }
    }
}
