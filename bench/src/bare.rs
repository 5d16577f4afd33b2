//! The bare broadcast server: the least a WebSocket server can do for the same
//! clients (accept, answer pings, forward a frame to every other member of a room), with
//! buffers sized on purpose. Its bytes per connection and frames per second are the
//! ceiling ferry's are compared with.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

type Rooms = Arc<Mutex<HashMap<String, Vec<(u64, mpsc::Sender<Bytes>)>>>>;

/// Frames queued per socket before further ones are dropped for it (a slow reader).
const QUEUE: usize = 512;

pub async fn serve() -> anyhow::Result<()> {
    // The accept queue ferry and Centrifugo get too (mio's default is 128).
    let socket = TcpSocket::new_v4()?;
    socket.bind("127.0.0.1:0".parse()?)?;
    let listener = socket.listen(4096)?;
    println!("bare listening on {}", listener.local_addr()?);
    let rooms: Rooms = Arc::default();
    let ids = Arc::new(AtomicU64::new(0));
    loop {
        let (stream, _) = listener.accept().await?;
        let id = ids.fetch_add(1, Relaxed);
        tokio::spawn(conn(stream, rooms.clone(), id));
    }
}

async fn conn(stream: TcpStream, rooms: Rooms, id: u64) {
    let _ = stream.set_nodelay(true);
    let mut room: Option<String> = None;
    // The callback's signature (and its large error type) is tungstenite's.
    #[allow(clippy::result_large_err)]
    let cb = |req: &Request, resp: Response| {
        room = req.uri().query().and_then(|q| {
            q.split('&')
                .find_map(|kv| kv.strip_prefix("room="))
                .map(str::to_owned)
        });
        Ok(resp)
    };
    let cfg = WebSocketConfig::default()
        .read_buffer_size(2048)
        .write_buffer_size(0);
    let Ok(mut ws) = tokio_tungstenite::accept_hdr_async_with_config(stream, cb, Some(cfg)).await
    else {
        return;
    };
    if ws.send(Message::Text("connected".into())).await.is_err() {
        return;
    }
    let (tx, mut rx) = mpsc::channel::<Bytes>(QUEUE);
    if let Some(r) = &room {
        rooms
            .lock()
            .expect("rooms lock")
            .entry(r.clone())
            .or_default()
            .push((id, tx));
    }
    loop {
        tokio::select! {
            m = ws.next() => match m {
                Some(Ok(Message::Binary(b))) => {
                    let Some(nl) = b.iter().position(|c| *c == b'\n') else { continue };
                    let Ok(name) = std::str::from_utf8(&b[..nl]) else { continue };
                    let rooms = rooms.lock().expect("rooms lock");
                    if let Some(members) = rooms.get(name) {
                        for (m, q) in members {
                            if *m != id {
                                // A full queue drops the frame for that reader only.
                                let _ = q.try_send(b.clone());
                            }
                        }
                    }
                }
                Some(Ok(_)) => {}
                _ => break,
            },
            Some(b) = rx.recv() => {
                if ws.feed(Message::Binary(b)).await.is_err() {
                    break;
                }
                while let Ok(b) = rx.try_recv() {
                    if ws.feed(Message::Binary(b)).await.is_err() {
                        break;
                    }
                }
                if ws.flush().await.is_err() {
                    break;
                }
            }
        }
    }
    if let Some(r) = &room {
        let mut rooms = rooms.lock().expect("rooms lock");
        if let Some(v) = rooms.get_mut(r) {
            v.retain(|(m, _)| *m != id);
        }
    }
}
