//! Who may reach ferry from a browser: the Origin policy of `/ws`
//! (`server.allowed_origins`) and the Host allow-list of the development endpoints.
//! Both exist for pages on other sites: a page may open a WebSocket to any address,
//! and a name it controls may be re-pointed at 127.0.0.1 (DNS rebinding), after which
//! the browser treats a development ferry as that page's own origin.

use axum::http::{HeaderMap, StatusCode, header};

use crate::config::{Config, normalise_origin as normalise};

/// The host part of `host[:port]` (a Host header or an origin's authority).
fn host_part(authority: &str) -> &str {
    if let Some(v6) = authority.strip_prefix('[') {
        return v6.split(']').next().unwrap_or("");
    }
    authority.split(':').next().unwrap_or("")
}

/// Whether `host` (no port) names this machine: localhost, 127.0.0.0/8 or ::1.
fn is_loopback_name(host: &str) -> bool {
    let host = host.to_ascii_lowercase();
    host == "localhost"
        || host.ends_with(".localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Whether the request's Host is one the development endpoints answer to: a loopback
/// name, or one of `server.dev_allowed_hosts`. A missing Host is refused.
pub(crate) fn dev_host_allowed(cfg: &Config, headers: &HeaderMap) -> bool {
    let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) else {
        return false;
    };
    let host = host_part(host.trim());
    is_loopback_name(host)
        || cfg
            .server
            .dev_allowed_hosts
            .iter()
            .any(|h| host_part(h).eq_ignore_ascii_case(host))
}

/// Why a socket's Origin was refused: the answer is 403 with this text.
pub(crate) type Refusal = (StatusCode, &'static str);

/// The Origin policy of `/ws`: a client without Origin (a native app) is accepted;
/// a browser Origin must be one of `server.allowed_origins` when that is set, or,
/// while the development endpoints are on, a loopback origin (the demo page itself).
pub(crate) fn check(cfg: &Config, headers: &HeaderMap) -> Result<(), Refusal> {
    const REFUSED: Refusal = (StatusCode::FORBIDDEN, "origin not allowed");
    let Some(origin) = headers.get(header::ORIGIN) else {
        return Ok(());
    };
    let allowed = &cfg.server.allowed_origins;
    let dev = crate::secrets::dev_endpoints(cfg);
    if allowed.is_empty() && !dev {
        return Ok(());
    }
    let Some(origin) = origin.to_str().ok().and_then(normalise) else {
        return Err(REFUSED);
    };
    let listed = allowed
        .iter()
        .any(|a| normalise(a).as_deref() == Some(origin.as_str()));
    let local_demo = allowed.is_empty()
        && origin
            .split_once("://")
            .is_some_and(|(_, authority)| is_loopback_name(host_part(authority)));
    if listed || local_demo {
        Ok(())
    } else {
        Err(REFUSED)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_compared_normalised() {
        assert_eq!(
            normalise("HTTPS://Chat.Example.com:443").as_deref(),
            Some("https://chat.example.com")
        );
        assert_eq!(
            normalise("http://127.0.0.1:8080").as_deref(),
            Some("http://127.0.0.1:8080")
        );
        for bad in [
            "null",
            "chat.example.com",
            "ftp://x",
            "https://",
            "https://a/b",
        ] {
            assert_eq!(normalise(bad), None, "{bad}");
        }
    }

    #[test]
    fn loopback_hosts_with_or_without_port() {
        for ok in [
            "localhost:8080",
            "127.0.0.1",
            "127.1.2.3:1",
            "[::1]:8080",
            "a.localhost",
        ] {
            assert!(is_loopback_name(host_part(ok)), "{ok}");
        }
        for no in [
            "evil.example:8080",
            "localhost.evil.example",
            "10.0.0.1",
            "[::2]:1",
        ] {
            assert!(!is_loopback_name(host_part(no)), "{no}");
        }
    }
}
