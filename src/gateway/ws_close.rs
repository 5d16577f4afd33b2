//! How a WebSocket-level failure becomes our Close frame (RFC 6455 §7.4): the one
//! place close codes for protocol errors are chosen, shared by `/ws` sessions and the
//! conformance echo endpoint. (A client's Close is answered by the WebSocket layer
//! itself, with the client's code, or 1002 for a code no endpoint may send.)

use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message as WsMessage};
use futures_util::{Sink, SinkExt};
use tokio_tungstenite::tungstenite::Error as WsError;
use tokio_tungstenite::tungstenite::error::{CapacityError, ProtocolError};

use super::wire::Closing;

/// Endpoint received data it cannot accept (RFC 6455 §7.4.1): bad framing, reserved
/// bits or opcodes, unmasked client frames, oversized control frames.
pub(crate) const PROTOCOL_ERROR: u16 = 1002;
/// A text message or close reason that is not valid UTF-8.
pub(crate) const INVALID_PAYLOAD: u16 = 1007;

/// How long a Close frame may take to reach a client (and, on the echo endpoint, the
/// client's answer to come back) before the socket is dropped.
pub(crate) const CLOSE_WAIT: Duration = Duration::from_secs(2);

/// Sends a Close frame, waiting at most `CLOSE_WAIT`; false when it was not sent.
pub(crate) async fn send<S>(sink: &mut S, code: u16, reason: &str) -> bool
where
    S: Sink<WsMessage> + Unpin,
{
    let frame = CloseFrame {
        code,
        reason: reason.into(),
    };
    matches!(
        tokio::time::timeout(CLOSE_WAIT, sink.send(WsMessage::Close(Some(frame)))).await,
        Ok(Ok(()))
    )
}

/// The close code and reason for a read error, or None when the connection is gone
/// and nothing can be sent (reset, EOF, already closed).
pub(crate) fn for_error(e: &axum::Error) -> Option<(u16, &'static str)> {
    let inner = std::error::Error::source(e)?.downcast_ref::<WsError>()?;
    match inner {
        // Over `limits.max_frame_bytes`: the code wire.rs chooses for it.
        WsError::Capacity(CapacityError::MessageTooLong { .. }) => {
            Some((Closing::TooBig.code(), "frame too large"))
        }
        WsError::Capacity(_) => Some((Closing::TooBig.code(), "message too large")),
        WsError::Utf8(_) => Some((INVALID_PAYLOAD, "invalid UTF-8")),
        WsError::Protocol(ProtocolError::InvalidCloseSequence) => {
            Some((PROTOCOL_ERROR, "invalid close sequence"))
        }
        WsError::Protocol(
            ProtocolError::ResetWithoutClosingHandshake | ProtocolError::SendAfterClosing,
        ) => None,
        WsError::Protocol(_) => Some((PROTOCOL_ERROR, "protocol error")),
        _ => None,
    }
}
