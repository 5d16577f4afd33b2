//! How every WebSocket ferry accepts is configured: the frame limit and the small
//! per-socket buffers. Here, beside the session that uses it, so the socket side
//! never reaches up into the HTTP wiring (`http.rs`) for it.

use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use super::Gateway;

/// Frames written together are gathered up to this many bytes before the socket
/// writes them (a `flush` writes whatever is gathered). The buffer keeps its size
/// after a burst, so this bounds what a socket that once had a backlog holds.
pub(crate) const WRITE_BUFFER_BYTES: usize = 4 << 10;

/// The read buffer every socket holds for its whole life (its largest frame grows
/// it): a ping or a short request fits, a larger frame takes one read per this many
/// bytes. Idle sockets only ever read pings and pongs.
pub(crate) const READ_BUFFER_BYTES: usize = 256;

/// Every WebSocket ferry accepts is configured here. Small per-socket buffers: idle
/// sockets must stay cheap (see BENCHMARKS.md).
pub(crate) fn socket_config(app: &Gateway) -> WebSocketConfig {
    let limit = app.cfg.limits.max_frame_bytes;
    WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER_BYTES)
        .write_buffer_size(WRITE_BUFFER_BYTES)
        .max_message_size(Some(limit))
        .max_frame_size(Some(limit))
}
