//! One WebSocket session: authenticate, register, then a reader loop and a writer
//! task. SendMsgList requests go through one ordered, pipelined worker per connection
//! (order per conversation is kept, `pipeline.rs`); other requests run concurrently,
//! bounded per connection.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ws::{Message as WsMessage, WebSocket};
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use prost::Message as _;
use tokio::sync::{Notify, Semaphore, mpsc};

use super::Gateway;
use super::auth::AuthFailure;
use super::dispatch::{self, ConnCtx};
use super::keepalive::{Keepalive, Silence};
use super::limits::TokenBucket;
use super::wire::{self, Closing, Failure};
use super::ws_close;
use crate::connections::registry::{self, Closer, Conn, Outbound, QueuedBytes};
use crate::domain::UserId;
use crate::proto::pb::{ActiveEvent, RequestBody};

/// Requests of one connection being handled at once (besides the SendMsgList queue).
const IN_FLIGHT_PER_CONN: usize = 32;
/// SendMsgList requests queued per connection.
const SEND_QUEUE_PER_CONN: usize = 64;

/// Longest token accepted, bytes: room for RS256/ES256 tokens with many claims.
pub(crate) const MAX_TOKEN_BYTES: usize = 8 << 10;
/// Longest value of any other query parameter, bytes.
pub(crate) const MAX_PARAM_BYTES: usize = 256;
/// Longest query string, bytes: a token and every other parameter at their limits.
pub(crate) const MAX_QUERY_BYTES: usize = 12 << 10;

/// What the client said in the query string. The token stays out of Debug output.
pub(crate) struct ConnectParams {
    /// The query string was longer than MAX_QUERY_BYTES and was not parsed.
    pub(crate) too_long: bool,
    pub(crate) token: Option<String>,
    pub(crate) user_id: Option<String>,
    pub(crate) platform: Option<String>,
    pub(crate) device_id: Option<String>,
    /// networkUsed, deviceModel, osVersion, appVersion, language: kept as metadata.
    pub(crate) meta: Vec<(String, String)>,
}

impl ConnectParams {
    pub(crate) fn parse(query: &str) -> Self {
        let mut p = ConnectParams {
            too_long: query.len() > MAX_QUERY_BYTES,
            token: None,
            user_id: None,
            platform: None,
            device_id: None,
            meta: Vec::new(),
        };
        if p.too_long {
            return p;
        }
        for (k, v) in form_urlencoded::parse(query.as_bytes()) {
            let v = v.into_owned();
            match k.as_ref() {
                "token" => p.token = Some(v),
                "userId" => p.user_id = Some(v),
                "platform" => p.platform = Some(v),
                "deviceId" => p.device_id = Some(v),
                "networkUsed" | "deviceModel" | "osVersion" | "appVersion" | "language" => {
                    // A repeated key replaces the earlier value.
                    p.meta.retain(|(name, _)| name != k.as_ref());
                    p.meta.push((k.into_owned(), v))
                }
                _ => {}
            }
        }
        p
    }

    pub(crate) fn language_zh(&self) -> bool {
        self.meta
            .iter()
            .any(|(k, v)| k == "language" && v.to_ascii_lowercase().starts_with("zh"))
    }
}

fn required<'a>(
    v: &'a Option<String>,
    name: &'static str,
    max: usize,
) -> Result<&'a str, AuthFailure> {
    match v.as_deref() {
        None | Some("") => Err(AuthFailure::MissingParam(name)),
        Some(s) if s.len() > max => Err(AuthFailure::InvalidParam(name)),
        Some(s) => Ok(s),
    }
}

struct Identity {
    user: UserId,
    platform: String,
    device_id: String,
}

fn authenticate(app: &Gateway, p: &ConnectParams) -> Result<Identity, AuthFailure> {
    if p.too_long {
        return Err(AuthFailure::QueryTooLong);
    }
    let token = required(&p.token, "token", MAX_TOKEN_BYTES)?;
    let user = required(&p.user_id, "userId", MAX_PARAM_BYTES)?;
    let platform = required(&p.platform, "platform", MAX_PARAM_BYTES)?;
    let device = required(&p.device_id, "deviceId", MAX_PARAM_BYTES)?;
    // Metadata is forwarded to CustomRequest upstreams as headers.
    if let Some((k, _)) = p.meta.iter().find(|(_, v)| v.len() > MAX_PARAM_BYTES) {
        return Err(AuthFailure::InvalidMeta(k.clone()));
    }
    let user_id = UserId::parse(user).map_err(|_| AuthFailure::InvalidParam("userId"))?;
    app.auth.verify(token, user, platform, device)?;
    Ok(Identity {
        user: user_id,
        platform: platform.to_owned(),
        device_id: device.to_owned(),
    })
}

async fn close_now(socket: &mut WebSocket, why: Closing<'_>) {
    ws_close::send(socket, why.code(), &why.reason()).await;
}

pub(crate) async fn run(app: Gateway, params: ConnectParams, mut socket: WebSocket) {
    let id = match authenticate(&app, &params) {
        Ok(id) => id,
        Err(f) => {
            metrics::counter!("ferry_auth_failures_total").increment(1);
            tracing::info!(reason = f.reason(false), "connection refused");
            close_now(&mut socket, Closing::Auth(&f, params.language_zh())).await;
            return;
        }
    };
    if app.registry.connection_count() >= app.cfg.limits.max_connections {
        close_now(&mut socket, Closing::ServerFull).await;
        return;
    }
    let conn_id = uuid::Uuid::new_v4().simple().to_string();
    let (tx, rx) = mpsc::channel(app.cfg.limits.send_queue);
    let conn = Conn {
        conn_id: conn_id.clone(),
        user: id.user.to_string(),
        platform: id.platform.clone(),
        device_id: id.device_id.clone(),
        tx,
        queued: QueuedBytes::new(app.cfg.limits.send_queue_bytes),
        closer: Closer::default(),
    };
    // Routable before the client hears "connected": whatever is pushed from then on
    // queues behind that frame.
    if !super::lifecycle::connected(&app, &conn).await {
        close_now(&mut socket, Closing::UserFull).await;
        return;
    }
    if socket
        .send(WsMessage::Text("connected".into()))
        .await
        .is_err()
    {
        super::lifecycle::disconnected(&app, &conn).await;
        return;
    }
    tracing::debug!(user = %id.user, platform = %id.platform, conn = %conn_id, "connected");
    metrics::gauge!("ferry_connections", "platform" => id.platform.clone()).increment(1.0);

    let (sink, stream) = socket.split();
    let ping = Arc::new(Notify::new());
    let writer = tokio::spawn(write_loop(
        sink,
        rx,
        conn.queued.clone(),
        conn.closer.clone(),
        app.shutdown.clone(),
        ping.clone(),
    ));
    let ctx = Arc::new(ConnCtx {
        app: app.clone(),
        user: id.user,
        conn: conn.clone(),
        meta: params.meta,
    });
    let keepalive = Keepalive::new(Duration::from_secs(app.cfg.session.idle_timeout_secs), ping);
    read_loop(&app, &ctx, &conn.closer, stream, keepalive).await;

    Closing::Normal.close(&conn.closer);
    // The writer gives up on a client that does not read within ws_close::CLOSE_WAIT.
    let _ = writer.await;
    super::lifecycle::disconnected(&app, &conn).await;
    metrics::gauge!("ferry_connections", "platform" => id.platform).decrement(1.0);
}

/// Writes queued frames. A write that cannot finish (a client that stopped reading)
/// is abandoned as soon as the socket is closed, so a slow consumer's session, socket
/// and queue are freed at once instead of when the client goes away.
async fn write_loop(
    mut sink: futures_util::stream::SplitSink<WebSocket, WsMessage>,
    mut rx: mpsc::Receiver<Outbound>,
    queued: QueuedBytes,
    closer: Closer,
    shutdown: tokio_util::sync::CancellationToken,
    ping: Arc<Notify>,
) {
    let (code, reason) = loop {
        // A server ping (keep-alive) or the next queued frame, with its queued bytes.
        let (msg, n) = tokio::select! {
            biased;
            why = closer.closed() => break why,
            _ = shutdown.cancelled() => break Closing::Restarting.pair(),
            _ = ping.notified() => (WsMessage::Ping(Bytes::new()), 0),
            out = rx.recv() => match out {
                Some(Outbound::Binary(b)) => {
                    let n = b.len();
                    (WsMessage::Binary(b), n)
                }
                None => break Closing::Normal.pair(),
            },
        };
        let sent = tokio::select! {
            biased;
            why = closer.closed() => Err(why),
            _ = shutdown.cancelled() => Err(Closing::Restarting.pair()),
            r = sink.send(msg) => Ok(r.is_ok()),
        };
        queued.release(n);
        match sent {
            Ok(true) => {}
            Ok(false) => {
                Closing::Normal.close(&closer);
                return;
            }
            Err(why) => break why,
        }
    };
    ws_close::send(&mut sink, code, &reason).await;
    closer.close(code, "");
}

async fn read_loop(
    app: &Gateway,
    ctx: &Arc<ConnCtx>,
    closer: &Closer,
    mut stream: futures_util::stream::SplitStream<WebSocket>,
    mut keepalive: Keepalive,
) {
    let mut bucket = TokenBucket::new(
        app.cfg.limits.requests_per_second,
        app.cfg.limits.request_burst,
    );
    let in_flight = Arc::new(Semaphore::new(IN_FLIGHT_PER_CONN));
    // The ordered SendMsgList worker and its queue exist only once the connection sends:
    // an idle socket carries neither a task nor a queue block.
    let mut sender: Option<(mpsc::Sender<RequestBody>, tokio::task::JoinHandle<()>)> = None;
    loop {
        // One frame per turn: a socket with a backlog of frames would otherwise keep
        // a worker for a whole scheduling budget while other sockets wait.
        tokio::task::yield_now().await;
        let frame = tokio::select! {
            _ = closer.closed() => break,
            f = tokio::time::timeout(keepalive.wait(), stream.next()) => f,
        };
        let msg = match frame {
            Err(_) => match keepalive.on_silence() {
                Silence::Ping => continue,
                Silence::Close => {
                    Closing::Idle.close(closer);
                    break;
                }
            },
            Ok(None) => break,
            Ok(Some(Err(e))) => {
                // Protocol violations close with 1002, bad UTF-8 with 1007, size with 1009.
                if let Some(why) = Closing::for_read_error(&e) {
                    why.close(closer);
                }
                break;
            }
            Ok(Some(Ok(m))) => {
                keepalive.on_frame();
                m
            }
        };
        let data: Bytes = match msg {
            WsMessage::Binary(b) => b,
            // The WebSocket layer has queued its answer (the client's code, RFC 6455
            // §5.5.1); the next read sends it and then ends the stream.
            WsMessage::Close(_) => continue,
            // Pings are answered by the WebSocket layer; pongs only prove liveness;
            // text frames carry nothing.
            _ => continue,
        };
        metrics::counter!("ferry_frames_received_total").increment(1);
        // Every frame costs a token, well-formed or not: a flood of garbage is
        // throttled like a flood of requests.
        let now = Instant::now();
        if !bucket.take(now) {
            let (event, req_id) = RequestBody::decode(data)
                .map(|r| (r.event, r.req_id))
                .unwrap_or_default();
            reply(
                ctx,
                wire::failure(
                    event,
                    &req_id,
                    &Failure::Retry("rate limit exceeded, slow down".into()),
                ),
            );
            // Stop reading until the next token: a client over its rate is held back
            // by TCP instead of costing a refusal per frame.
            tokio::select! {
                _ = closer.closed() => break,
                _ = tokio::time::sleep(bucket.next_token_in(now)) => {}
            }
            continue;
        }
        let req = match RequestBody::decode(data) {
            Ok(r) => r,
            Err(e) => {
                reply(
                    ctx,
                    wire::failure(0, "", &Failure::malformed("RequestBody", &e)),
                );
                continue;
            }
        };
        if req.event == ActiveEvent::SendMsgList as i32 {
            let (send_tx, _) = sender.get_or_insert_with(|| {
                let (tx, rx) = mpsc::channel::<RequestBody>(SEND_QUEUE_PER_CONN);
                (tx, tokio::spawn(send_worker(ctx.clone(), rx)))
            });
            if let Err(
                mpsc::error::TrySendError::Full(req) | mpsc::error::TrySendError::Closed(req),
            ) = send_tx.try_send(req)
            {
                reply(
                    ctx,
                    wire::failure(
                        req.event,
                        &req.req_id,
                        &Failure::Retry("too many SendMsgList requests in flight".into()),
                    ),
                );
            }
            continue;
        }
        let Ok(permit) = in_flight.clone().try_acquire_owned() else {
            reply(
                ctx,
                wire::failure(
                    req.event,
                    &req.req_id,
                    &Failure::Retry("too many requests in flight".into()),
                ),
            );
            continue;
        };
        let ctx = ctx.clone();
        tokio::spawn(async move {
            let frames = dispatch::handle(&ctx, req).await;
            for f in frames {
                reply(&ctx, f);
            }
            drop(permit);
        });
    }
    if let Some((send_tx, send_worker)) = sender {
        drop(send_tx);
        // Requests already accepted are answered before the socket goes (if it still can).
        let _ = tokio::time::timeout(Duration::from_secs(5), send_worker).await;
    }
}

async fn send_worker(ctx: Arc<ConnCtx>, rx: mpsc::Receiver<RequestBody>) {
    let answer_to = ctx.clone();
    super::pipeline::run(
        rx,
        super::pipeline::DEPTH,
        |req| dispatch::start_send(ctx.clone(), req),
        |frames| frames.into_iter().for_each(|f| reply(&answer_to, f)),
    )
    .await;
}

/// Queues a frame for the calling connection (a full queue closes it as slow).
fn reply(ctx: &ConnCtx, frame: Bytes) {
    registry::send_or_close(&ctx.conn, Outbound::Binary(frame));
}

/// Parses the query for the HTTP handler.
pub(crate) fn params_from(query: Option<&str>) -> ConnectParams {
    ConnectParams::parse(query.unwrap_or(""))
}
