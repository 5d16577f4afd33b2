//! The `[session]` section: how long a socket may stay silent or slow, which
//! devices of a user may be connected at once, and the shutdown drain's deadline.

use serde::{Deserialize, Serialize};

use super::{Invalid, invalid};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum DevicePolicy {
    /// Any number of devices; only the same (platform, deviceId) replaces.
    Multi,
    /// One device per platform: a new device kicks the others on its platform.
    OnePerPlatform,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct SessionConfig {
    /// A socket silent (no frame, no ping) for longer than this is closed.
    pub(crate) idle_timeout_secs: u64,
    /// A queued frame the client's TCP window does not take within this many seconds
    /// closes the socket as a slow consumer (1013): a client that stops reading while
    /// a frame is being written is not waited for forever.
    pub(crate) write_timeout_secs: u64,
    pub(crate) device_policy: DevicePolicy,
    /// On shutdown, the bound on the whole drain: close sockets, finish requests in
    /// flight, flush and commit, delete the push topic (one deadline, see app.rs).
    pub(crate) shutdown_grace_secs: u64,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            idle_timeout_secs: 60,
            write_timeout_secs: 20,
            device_policy: DevicePolicy::Multi,
            shutdown_grace_secs: 20,
        }
    }
}

impl SessionConfig {
    pub(super) fn validate(&self, bad: &mut Vec<Invalid>) {
        if self.idle_timeout_secs == 0 {
            bad.push(invalid(
                "session.idle_timeout_secs",
                "must be greater than 0",
            ));
        }
        if self.write_timeout_secs == 0 {
            bad.push(invalid(
                "session.write_timeout_secs",
                "must be greater than 0",
            ));
        }
    }
}
