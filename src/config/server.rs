//! The `[server]` section: the listener, its request-head bounds and the browser
//! and development-endpoint exposure keys (validated with the rest of exposure in
//! `exposure.rs`).

use serde::{Deserialize, Serialize};

use super::{Invalid, invalid};

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct ServerConfig {
    /// Address of the WebSocket, server API, health and metrics listener.
    pub(crate) listen: String,
    /// Connections the kernel holds for the listener before they are accepted (capped by
    /// `net.core.somaxconn`). A reconnect storm of more clients than this waits for SYN
    /// retries of 1, 3, 7… s.
    pub(crate) listen_backlog: u32,
    /// A connection that has not sent a complete request head within this time is
    /// closed (it would otherwise hold a file descriptor and the shutdown drain).
    pub(crate) header_read_timeout_secs: u64,
    /// Largest request head (request line and headers), bytes; at least 8192.
    pub(crate) max_header_bytes: usize,
    /// Testing only: mounts `/conformance/echo`, an unauthenticated WebSocket echo with
    /// `/ws`'s limits, for the Autobahn conformance suite. Refused off loopback.
    pub(crate) conformance_echo: bool,
    /// Browser origins (`scheme://host[:port]`) allowed to open a socket. Empty: any
    /// origin (with the demo on, loopback origins only). Clients that send no Origin
    /// (native apps) are always allowed.
    pub(crate) allowed_origins: Vec<String>,
    /// Host names besides loopback ones (localhost, 127.0.0.1, [::1]) the development
    /// endpoints (/demo) answer to: a DNS-rebound name is refused.
    pub(crate) dev_allowed_hosts: Vec<String>,
    /// Serves /demo and its token minting on a non-loopback listener too (still only
    /// with no auth key configured). Logged loudly: anyone who reaches it can mint a
    /// token for any user.
    pub(crate) demo_beyond_loopback: bool,
    /// A request body (/api/v1, /demo) not received in full within this time is
    /// answered 408.
    pub(crate) body_read_timeout_secs: u64,
    /// Connections accepted but not (yet) a connected WebSocket session: silent ones,
    /// ones in their request head, HTTP ones. Over it a new connection is closed at once.
    pub(crate) max_unconnected_sockets: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".to_owned(),
            listen_backlog: 4096,
            header_read_timeout_secs: 10,
            max_header_bytes: 32 << 10,
            conformance_echo: false,
            allowed_origins: Vec::new(),
            dev_allowed_hosts: Vec::new(),
            demo_beyond_loopback: false,
            body_read_timeout_secs: 10,
            max_unconnected_sockets: 4096,
        }
    }
}

impl ServerConfig {
    pub(super) fn validate(&self, bad: &mut Vec<Invalid>) {
        match self.listen.parse::<std::net::SocketAddr>() {
            Err(_) => bad.push(invalid(
                "server.listen",
                "expected host:port, e.g. 0.0.0.0:8080",
            )),
            Ok(listen) if self.conformance_echo && !listen.ip().is_loopback() => bad.push(invalid(
                "server.conformance_echo",
                "an unauthenticated test endpoint: allowed only on a loopback server.listen",
            )),
            Ok(_) => {}
        }
        if self.header_read_timeout_secs == 0 {
            bad.push(invalid(
                "server.header_read_timeout_secs",
                "must be greater than 0",
            ));
        }
        if self.listen_backlog == 0 {
            bad.push(invalid("server.listen_backlog", "must be greater than 0"));
        }
        if self.max_header_bytes < 8192 {
            bad.push(invalid("server.max_header_bytes", "must be at least 8192"));
        }
    }
}
