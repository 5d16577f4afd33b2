//! Opening one client connection the way each target expects: TCP from the worker's own
//! loopback address, small WebSocket buffers, and the target's handshake.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::job::{Client, Target};

pub type Ws = WebSocketStream<TcpStream>;

pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

pub fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// An HS256 JWT with `sub` = user, valid for a day: what ferry and Centrifugo both accept.
pub fn token(secret: &str, user: &str) -> String {
    let exp = now_ns() / 1_000_000_000 + 86_400;
    let claims = serde_json::json!({ "sub": user, "exp": exp });
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("HS256 signing cannot fail")
}

async fn tcp(server: &str, source_ip: &str) -> anyhow::Result<TcpStream> {
    let server: SocketAddr = server.parse().context("server address")?;
    let sock = TcpSocket::new_v4()?;
    sock.set_reuseaddr(true)?;
    // Each worker binds its own loopback address: one address runs out of ephemeral
    // ports at about 28k connections to one server port.
    sock.bind(SocketAddr::new(source_ip.parse().context("source ip")?, 0))?;
    let stream = sock.connect(server).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Opens the socket and completes the handshake; returns once the server has said the
/// connection is usable.
pub async fn open(target: Target, c: &Client, source_ip: &str, secret: &str) -> anyhow::Result<Ws> {
    let stream = tcp(&c.server, source_ip).await?;
    // Small buffers: a worker holds up to ~10k sockets.
    let cfg = WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0);
    let url = match target {
        Target::Ferry => format!(
            "ws://{}/ws?token={}&userId={}&networkUsed=wifi&platform=ios&deviceId=bench-{}&deviceModel=bench&osVersion=1&appVersion=1.0.0&language=en",
            c.server,
            token(secret, &c.user),
            c.user,
            c.user
        ),
        Target::Centrifugo => format!("ws://{}/connection/websocket", c.server),
        Target::Bare => match &c.subscribe {
            Some(room) => format!("ws://{}/?room={room}", c.server),
            None => format!("ws://{}/", c.server),
        },
    };
    let (mut ws, _) = tokio_tungstenite::client_async_with_config(url, stream, Some(cfg))
        .await
        .context("websocket upgrade")?;
    match target {
        Target::Ferry | Target::Bare => match ws.next().await {
            Some(Ok(Message::Text(t))) if t.as_str() == "connected" => Ok(ws),
            Some(Ok(Message::Close(f))) => bail!("refused: {f:?}"),
            other => bail!("unexpected first frame: {other:?}"),
        },
        Target::Centrifugo => {
            let mut cmds = serde_json::json!({"id": 1, "connect": {"token": token(secret, &c.user), "name": "ferry-bench"}}).to_string();
            let want = if let Some(ch) = &c.subscribe {
                cmds.push('\n');
                cmds.push_str(
                    &serde_json::json!({"id": 2, "subscribe": {"channel": ch}}).to_string(),
                );
                2
            } else {
                1
            };
            ws.send(Message::Text(cmds.into())).await?;
            let mut got = 0;
            while got < want {
                let Some(frame) = ws.next().await else {
                    bail!("closed during connect")
                };
                let Message::Text(t) = frame? else { continue };
                for line in t.as_str().lines() {
                    let v: serde_json::Value = serde_json::from_str(line)?;
                    if let Some(e) = v.get("error") {
                        bail!("centrifugo error: {e}");
                    }
                    if v.get("id").is_some() {
                        got += 1;
                    }
                }
            }
            Ok(ws)
        }
    }
}
