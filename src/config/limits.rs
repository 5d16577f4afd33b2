//! The `[limits]` section: every size, count and rate a client controls, bounded.

use serde::{Deserialize, Serialize};

use super::{Invalid, NoticeLimits, invalid};

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct Limits {
    /// Largest WebSocket frame or message accepted, bytes.
    pub(crate) max_frame_bytes: usize,
    /// Sustained requests per second per connection (token bucket).
    pub(crate) requests_per_second: u32,
    /// Burst above the sustained rate.
    pub(crate) request_burst: u32,
    /// Frames refused for the rate a connection may collect (one more each second)
    /// before it is closed with 1008: a client that keeps flooding is cut off.
    pub(crate) max_refusals: u32,
    /// Seconds a device closed for flooding must wait before it connects again
    /// (0: no wait); otherwise each reconnect would bring a fresh burst.
    pub(crate) flood_cooldown_secs: u64,
    pub(crate) max_msgs_per_send: usize,
    /// Messages sent with deliverAfter that one user may have pending (not yet due)
    /// on one process; a send past it is refused whole with a RequestError.
    pub(crate) max_pending_delayed_per_user: usize,
    /// Seqs per SyncMsgList, over all its items (a seq asked twice counts twice).
    pub(crate) max_seqs_per_sync: usize,
    /// Conversations (items) per SyncMsgList.
    pub(crate) max_convs_per_msg_sync: usize,
    pub(crate) max_convs_per_seq_sync: usize,
    /// Conversations per DiscoverConvs answer (its page bound; a client asks for at
    /// most this many with `limit`).
    pub(crate) max_convs_per_discovery: usize,
    /// Messages one clientMsgId may match for GetMsgById; an id shared by more is
    /// refused as ambiguous (clients make clientMsgIds unique; look up by serverMsgId).
    pub(crate) max_client_msg_id_matches: usize,
    /// Largest response or push of requested data (SyncMsgList, CustomRequest), bytes.
    pub(crate) max_response_bytes: usize,
    /// Sockets per process. Capped at startup below what the file-descriptor limit
    /// (RLIMIT_NOFILE) allows, keeping room for the backends' own files.
    pub(crate) max_connections: usize,
    /// Sockets per user on one process.
    pub(crate) max_connections_per_user: usize,
    /// Frames queued for one socket before it counts as a slow consumer and is closed.
    pub(crate) send_queue: usize,
    /// Bytes queued for one socket before it counts as a slow consumer and is closed.
    pub(crate) send_queue_bytes: usize,
    pub(crate) notices: NoticeLimits,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_frame_bytes: 1 << 20,
            requests_per_second: 50,
            request_burst: 100,
            max_refusals: 50,
            flood_cooldown_secs: 10,
            max_msgs_per_send: 100,
            max_pending_delayed_per_user: 1000,
            max_seqs_per_sync: 1000,
            max_convs_per_msg_sync: 100,
            max_convs_per_seq_sync: 1000,
            max_convs_per_discovery: 100,
            max_client_msg_id_matches: 50,
            max_response_bytes: 4 << 20,
            max_connections: 100_000,
            max_connections_per_user: 20,
            send_queue: 512,
            send_queue_bytes: 8 << 20,
            notices: NoticeLimits::default(),
        }
    }
}

impl Limits {
    pub(super) fn validate(&self, bad: &mut Vec<Invalid>) {
        let l = self;
        for (key, v) in [
            ("limits.max_frame_bytes", l.max_frame_bytes),
            ("limits.requests_per_second", l.requests_per_second as usize),
            ("limits.max_refusals", l.max_refusals as usize),
            ("limits.max_msgs_per_send", l.max_msgs_per_send),
            (
                "limits.max_pending_delayed_per_user",
                l.max_pending_delayed_per_user,
            ),
            ("limits.max_seqs_per_sync", l.max_seqs_per_sync),
            ("limits.max_convs_per_msg_sync", l.max_convs_per_msg_sync),
            ("limits.max_convs_per_seq_sync", l.max_convs_per_seq_sync),
            ("limits.max_convs_per_discovery", l.max_convs_per_discovery),
            (
                "limits.max_client_msg_id_matches",
                l.max_client_msg_id_matches,
            ),
            ("limits.max_response_bytes", l.max_response_bytes),
            ("limits.max_connections", l.max_connections),
            (
                "limits.max_connections_per_user",
                l.max_connections_per_user,
            ),
            ("limits.send_queue", l.send_queue),
            ("limits.send_queue_bytes", l.send_queue_bytes),
        ] {
            if v == 0 {
                bad.push(invalid(key, "must be greater than 0"));
            }
        }
        if l.max_pending_delayed_per_user < l.max_msgs_per_send {
            bad.push(invalid(
                "limits.max_pending_delayed_per_user",
                "must be at least limits.max_msgs_per_send",
            ));
        }
    }
}
