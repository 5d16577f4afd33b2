//! Sending a Close frame without waiting on the client forever: shared by `/ws`
//! sessions and the conformance echo endpoint. Which code and reason to send is
//! chosen in wire.rs (`Closing`).

use std::time::Duration;

use futures_util::{Sink, SinkExt};
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;

/// How long a Close frame may take to reach a client (and, on the echo endpoint, the
/// client's answer to come back) before the socket is dropped.
pub(crate) const CLOSE_WAIT: Duration = Duration::from_secs(2);

/// Sends a Close frame, waiting at most `CLOSE_WAIT`; false when it was not sent.
pub(crate) async fn send<S>(sink: &mut S, code: u16, reason: &str) -> bool
where
    S: Sink<WsMessage> + Unpin,
{
    let frame = CloseFrame {
        code: code.into(),
        reason: reason.to_owned().into(),
    };
    matches!(
        tokio::time::timeout(CLOSE_WAIT, sink.send(WsMessage::Close(Some(frame)))).await,
        Ok(Ok(()))
    )
}
