//! The WebSocket conformance echo: `/conformance/echo`, mounted only when
//! `server.conformance_echo` is set (off by default; config validation allows it only on
//! a loopback listener). It echoes text and binary messages on a socket configured
//! exactly like `/ws` (same buffers and frame limits) and closes with the same
//! codes (`wire::Closing`), so the Autobahn|Testsuite fuzzing client can check ferry's
//! WebSocket layer, which `/ws` (authenticated, protobuf only) cannot echo for it.

use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use tokio_tungstenite::tungstenite::Message as WsMessage;

use super::upgrade::Socket;

use super::wire::Closing;
use super::ws_close::{self, CLOSE_WAIT};

pub(crate) async fn run(mut socket: Socket, idle: Duration) {
    loop {
        let msg = match tokio::time::timeout(idle, socket.next()).await {
            Err(_) => return close_with(socket, Closing::Idle).await,
            Ok(None) => return,
            Ok(Some(Err(e))) => {
                if let Some(why) = Closing::for_read_error(&e) {
                    close_with(socket, why).await;
                }
                return;
            }
            Ok(Some(Ok(m))) => m,
        };
        let echo = match msg {
            WsMessage::Text(_) | WsMessage::Binary(_) => msg,
            // Pings are answered by the WebSocket layer, and so is a Close (the next
            // read sends the answer and ends the stream), as in `/ws`.
            WsMessage::Ping(_) | WsMessage::Pong(_) | WsMessage::Close(_) | WsMessage::Frame(_) => {
                continue;
            }
        };
        if socket.send(echo).await.is_err() {
            return;
        }
    }
}

/// Starts the closing handshake and waits (bounded) for the peer's answer.
async fn close_with(mut socket: Socket, why: Closing<'_>) {
    if !ws_close::send(&mut socket, why.code(), &why.reason()).await {
        return;
    }
    let _ = tokio::time::timeout(CLOSE_WAIT, async {
        while let Some(Ok(m)) = socket.next().await {
            if matches!(m, WsMessage::Close(_)) {
                break;
            }
        }
    })
    .await;
}
