//! The WebSocket conformance echo: `/conformance/echo`, mounted only when
//! `server.conformance_echo` is set (off by default; config validation allows it only on
//! a loopback listener). It echoes text and binary messages on a socket configured
//! exactly like `/ws` (same buffers and frame limits) and closes with the same
//! codes (`wire::Closing`), so the Autobahn|Testsuite fuzzing client can check ferry's
//! WebSocket layer, which `/ws` (authenticated, protobuf only) cannot echo for it.

use std::time::Duration;

use axum::extract::ws::{Message as WsMessage, WebSocket};

use super::wire::Closing;
use super::ws_close::{self, CLOSE_WAIT};

pub(crate) async fn run(mut socket: WebSocket, idle: Duration) {
    loop {
        let msg = match tokio::time::timeout(idle, socket.recv()).await {
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
            WsMessage::Ping(_) | WsMessage::Pong(_) | WsMessage::Close(_) => continue,
        };
        if socket.send(echo).await.is_err() {
            return;
        }
    }
}

/// Starts the closing handshake and waits (bounded) for the peer's answer.
async fn close_with(mut socket: WebSocket, why: Closing<'_>) {
    if !ws_close::send(&mut socket, why.code(), &why.reason()).await {
        return;
    }
    let _ = tokio::time::timeout(CLOSE_WAIT, async {
        while let Some(Ok(m)) = socket.recv().await {
            if matches!(m, WsMessage::Close(_)) {
                break;
            }
        }
    })
    .await;
}
