//! One WebSocket session: authenticate, register, then one task that reads the
//! socket, writes its queued frames and keeps it alive. SendMsgList requests go
//! through one ordered, pipelined worker per connection (order per conversation is
//! kept, `pipeline.rs`); other requests run concurrently, bounded per connection. The
//! session, its worker and its requests run on the gateway's task tracker, so the
//! shutdown drain waits for them.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt as _, StreamExt};
use prost::Message as _;
use std::future::Future as _;
use std::pin::Pin;
use std::task::Poll;
use tokio::sync::{Semaphore, mpsc};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message as WsMessage;

use super::Gateway;
use super::auth::AuthFailure;
use super::dispatch::{self, ConnCtx};
use super::keepalive::{Keepalive, Silence};
use super::limits::{Refusals, TokenBucket};
use super::meta::{self, Meta};
use super::upgrade::{Pending, Socket};
use super::wire::{self, Closing, Failure};
use super::ws_close;
use crate::connections::outbox::Outbox;
use crate::connections::registry::{self, Closer, Conn, Connection};
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
    /// A parameter given more than once (refused: which one counts would be a guess).
    pub(crate) repeated: Option<String>,
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
            repeated: None,
        };
        if p.too_long {
            return p;
        }
        p.repeated = super::hygiene::repeated(query);
        for (k, v) in form_urlencoded::parse(query.as_bytes()) {
            let v = v.into_owned();
            match k.as_ref() {
                "token" => p.token = Some(v),
                "userId" => p.user_id = Some(v),
                "platform" => p.platform = Some(v),
                "deviceId" => p.device_id = Some(v),
                key if meta::KEYS.contains(&key) => {
                    // A repeated key replaces the earlier value.
                    p.meta.retain(|(name, _)| name != k.as_ref());
                    p.meta.push((k.into_owned(), v))
                }
                _ => {}
            }
        }
        p
    }

    /// The metadata alone, packed; everything else (the token among it) is freed.
    fn into_meta(self) -> Meta {
        Meta::pack(self.meta.iter().map(|(k, v)| (k.as_str(), v.as_str())))
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
    if let Some(k) = &p.repeated {
        return Err(AuthFailure::RepeatedParam(k.clone()));
    }
    let token = required(&p.token, "token", MAX_TOKEN_BYTES)?;
    let user = required(&p.user_id, "userId", MAX_PARAM_BYTES)?;
    let platform = required(&p.platform, "platform", MAX_PARAM_BYTES)?;
    let device = required(&p.device_id, "deviceId", MAX_PARAM_BYTES)?;
    // Metadata is forwarded to CustomRequest upstreams as headers.
    if let Some((k, _)) = p.meta.iter().find(|(_, v)| v.len() > MAX_PARAM_BYTES) {
        return Err(AuthFailure::InvalidMeta(k.clone()));
    }
    if let Some(k) = super::hygiene::unprintable(platform, device, &p.meta) {
        return Err(AuthFailure::Unprintable(k.to_owned()));
    }
    let user_id = UserId::parse(user).map_err(|_| AuthFailure::InvalidParam("userId"))?;
    app.auth.verify(token, user, platform, device)?;
    Ok(Identity {
        user: user_id,
        platform: platform.to_owned(),
        device_id: device.to_owned(),
    })
}

async fn close_now(socket: &mut Socket, why: Closing<'_>) {
    ws_close::send(socket, why.code(), &why.reason()).await;
}

/// What a session starts from, boxed so the session's task holds one pointer to it
/// while it connects and nothing once it has: the task's future is what every idle
/// socket carries, and a value moved out of a future keeps its room in it.
pub(crate) type Start = Box<(Gateway, ConnectParams)>;

/// One socket from its upgrade to its close. Connecting and closing are boxed: their
/// state exists only while they run, and the future every idle socket keeps holds
/// only the socket and the loop of `serve_socket`.
pub(crate) async fn run(start: Start, pending: Pending) {
    let cfg = super::socket_config::socket_config(&start.0);
    // The socket is made here, in this future, not moved into it (a moved value
    // keeps its room in the future it left).
    let Some(mut socket) = pending.socket(cfg).await else {
        return;
    };
    let Some(ctx) = Box::pin(connect(start, &mut socket)).await else {
        return;
    };
    let sender = serve_socket(&ctx, &mut socket).await;
    Box::pin(finish(ctx, socket, sender)).await;
}

/// Authenticates, registers and greets the client; None when the socket was refused
/// (and closed) or went away.
async fn connect(start: Start, socket: &mut Socket) -> Option<Arc<ConnCtx>> {
    let (app, params) = *start;
    let id = match authenticate(&app, &params) {
        Ok(id) => id,
        Err(f) => {
            metrics::counter!("ferry_auth_failures_total").increment(1);
            tracing::info!(reason = f.reason(false), "connection refused");
            close_now(socket, Closing::Auth(&f, params.language_zh())).await;
            return None;
        }
    };
    // Only the metadata is kept: the token and the rest are freed now, not when the
    // session ends.
    let meta = params.into_meta();
    if app.registry.connection_count() >= app.cfg.limits.max_connections {
        close_now(socket, Closing::ServerFull).await;
        return None;
    }
    let conn: Conn = Arc::new(Connection {
        conn_id: uuid::Uuid::new_v4().simple().to_string(),
        user: id.user.to_string(),
        platform: id.platform,
        device_id: id.device_id,
        outbox: Outbox::new(app.cfg.limits.send_queue, app.cfg.limits.send_queue_bytes),
        // Shutdown closes it (1012) through `Registry::shut_down`.
        closer: Closer::default(),
    });
    // Routable before the client hears "connected": whatever is pushed from then on
    // queues behind that frame.
    if let Err(why) = super::lifecycle::connected(&app, &conn).await {
        close_now(socket, why).await;
        return None;
    }
    if socket
        .send(WsMessage::Text("connected".into()))
        .await
        .is_err()
    {
        super::lifecycle::disconnected(&app, &conn).await;
        return None;
    }
    tracing::debug!(user = %id.user, platform = %conn.platform, conn = %conn.conn_id, "connected");
    metrics::gauge!("ferry_connections", "platform" => super::hygiene::platform_label(&conn.platform)).increment(1.0);
    let account = app.accounts.join(&conn.user);
    let budget = app.accounts.budget(&account);
    Some(Arc::new(ConnCtx {
        app,
        user: id.user,
        conn,
        meta,
        account,
        budget,
    }))
}

/// Closes the socket with the closer's reason, lets accepted SendMsgList requests
/// reach the log, and unregisters.
async fn finish(ctx: Arc<ConnCtx>, mut socket: Socket, sender: Option<SendWorker>) {
    let closer = &ctx.conn.closer;
    let (code, reason) = match closer.why() {
        Some(why) => why,
        None if closer.is_closed() => Closing::Restarting.pair(),
        None => Closing::Normal.pair(),
    };
    // Nothing more is queued once the closer fired; what is queued is dropped.
    closer.close(code, &reason);
    ctx.conn.outbox.close();
    // Before the client hears the close: it may connect again the moment it does.
    super::lifecycle::closing(&ctx.app, &ctx.conn);
    // Bounded by ws_close::CLOSE_WAIT: a client that does not read is not waited for.
    ws_close::send(&mut socket, code, &reason).await;
    drop(socket);
    if let Some((send_tx, send_worker)) = sender {
        drop(send_tx);
        // Requests already accepted reach the log before the session ends.
        let _ = tokio::time::timeout(Duration::from_secs(5), send_worker).await;
    }
    super::lifecycle::disconnected(&ctx.app, &ctx.conn).await;
    metrics::gauge!("ferry_connections", "platform" => super::hygiene::platform_label(&ctx.conn.platform)).decrement(1.0);
}

/// The ordered SendMsgList worker of a connection: its queue and task.
type SendWorker = (mpsc::Sender<RequestBody>, tokio::task::JoinHandle<()>);

/// The socket's one task: reads frames, writes what is queued for it, pings a silent
/// client and closes an idle one, until the client goes or the closer fires. Returns
/// the SendMsgList worker if one was started.
async fn serve_socket(ctx: &Arc<ConnCtx>, socket: &mut Socket) -> Option<SendWorker> {
    let app = &ctx.app;
    let conn = &ctx.conn;
    let mut bucket = TokenBucket::new(
        app.cfg.limits.requests_per_second,
        app.cfg.limits.request_burst,
    );
    let mut refusals = Refusals::new(app.cfg.limits.max_refusals);
    // The request limit, the ordered SendMsgList worker and its queue exist only once
    // the connection sends a request: an idle socket carries none of them.
    let mut in_flight: Option<Arc<Semaphore>> = None;
    let mut sender: Option<SendWorker> = None;
    let write_timeout = Duration::from_secs(app.cfg.session.write_timeout_secs);
    let mut keepalive = Keepalive::new(
        Duration::from_secs(app.cfg.session.idle_timeout_secs),
        Instant::now(),
    );
    // Reading stops until then when the client is over its request rate: it is held
    // back by TCP instead of costing a refusal per frame.
    let mut paused_until: Option<Instant> = None;
    let timer = tokio::time::sleep_until(keepalive.deadline());
    tokio::pin!(timer);
    loop {
        let frame = tokio::select! {
            biased;
            // A flag and a waker slot: no state of its own kept in this future, no
            // lock taken per poll.
            () = conn.closer.woken() => {
                if conn.closer.is_closed() {
                    break;
                }
                if !write_queued(socket, conn, write_timeout).await {
                    return sender;
                }
                continue;
            }
            () = &mut timer => {
                let now = Instant::now();
                if paused_until.is_some_and(|until| until <= now) {
                    paused_until = None;
                }
                let due = keepalive.on_timer(now);
                if due == Some(Silence::Close) {
                    Closing::Idle.close(&conn.closer);
                    break;
                }
                // Boxed: rare, and its state would otherwise be part of every session.
                if due == Some(Silence::Ping) && !Box::pin(ping(socket, conn, write_timeout)).await {
                    break;
                }
                let next = paused_until.map_or(keepalive.deadline(), |p| p.min(keepalive.deadline()));
                timer.as_mut().reset(next);
                continue;
            }
            f = socket.next(), if paused_until.is_none() => f,
        };
        let msg = match frame {
            None => break,
            Some(Err(e)) => {
                // Protocol violations close with 1002, bad UTF-8 with 1007, size with 1009.
                if let Some(why) = Closing::for_read_error(&e) {
                    why.close(&conn.closer);
                }
                break;
            }
            Some(Ok(m)) => {
                keepalive.on_frame(Instant::now());
                m
            }
        };
        // The WebSocket layer has queued its answer (the client's code, RFC 6455
        // §5.5.1); the next read sends it and then ends the stream.
        if let WsMessage::Close(_) = msg {
            continue;
        }
        metrics::counter!("ferry_frames_received_total").increment(1);
        // Every frame costs a token, well-formed or not, of any kind (pings are
        // answered by the WebSocket layer, pongs only prove liveness, text frames carry
        // nothing, yet each costs a read): a flood of them is throttled like requests.
        let now = Instant::now();
        let over = if !bucket.take(now.into_std()) {
            Some((
                "rate limit exceeded, slow down",
                bucket.next_token_in(now.into_std()),
            ))
        } else if !ctx.account.take(now.into_std()) {
            // The account's rate, over all its sockets here (`account.rs`).
            let why = "this account's rate limit exceeded (over all its connections), slow down";
            Some((why, ctx.account.next_token_in(now.into_std())))
        } else {
            None
        };
        if let Some((why, wait)) = over {
            if !refusals.refuse(now.into_std()) {
                Closing::Flooding.close(&conn.closer);
                break;
            }
            // Only a request is answered; other frames are refused silently.
            if let WsMessage::Binary(data) = msg {
                let (event, req_id) = RequestBody::decode(data)
                    .map(|r| (r.event, r.req_id))
                    .unwrap_or_default();
                reply(
                    ctx,
                    wire::failure(event, &req_id, &Failure::Retry(why.into())),
                );
            }
            let until = now + wait;
            paused_until = Some(until);
            if until < timer.deadline() {
                timer.as_mut().reset(until);
            }
            continue;
        }
        let WsMessage::Binary(data) = msg else {
            continue;
        };
        handle(ctx, data, &mut in_flight, &mut sender);
        // One request per turn: a socket with a backlog of frames would otherwise
        // keep a worker for a whole scheduling budget while other sockets wait.
        tokio::task::yield_now().await;
    }
    sender
}

/// Pings the client; false when the socket failed, the ping was not taken within
/// the write timeout (as in `write_queued`), or the closer fired first (a write that
/// cannot finish, to a client that stopped reading, is abandoned at once).
async fn ping(socket: &mut Socket, conn: &Connection, timeout: Duration) -> bool {
    tokio::select! {
        biased;
        () = conn.closer.closed() => false,
        r = bounded(timeout, socket.send(WsMessage::Ping(Bytes::new()))) => wrote(conn, r),
    }
}

/// Writes every queued frame and then flushes: frames queued together leave in
/// one `write` (the socket buffers up to `socket_config::WRITE_BUFFER_BYTES`
/// before it writes), not one system call each. False as `ping`.
///
/// The client's TCP window must take the next frame (or the flush) within `timeout`
/// of the last one, or the socket is closed as a slow consumer: while a write waits
/// the session reads nothing, so without the bound a client that stops reading in
/// the middle of a frame would hold its session forever, its queue never filling.
/// Written by hand rather than with `feed`/`flush` futures and a `timeout`: those
/// would be part of the future every idle socket keeps. The timer exists (boxed)
/// only while a write waits.
async fn write_queued(socket: &mut Socket, conn: &Connection, timeout: Duration) -> bool {
    let mut timer: Option<Pin<Box<tokio::time::Sleep>>> = None;
    // What is left of a frame written in fragments (`fragments.rs`).
    let mut rest: Option<Box<Bytes>> = None;
    let io = std::future::poll_fn(|cx| {
        loop {
            match socket.poll_ready_unpin(cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(_)) => return Poll::Ready(Err(WriteFailed::Socket)),
                Poll::Pending => break,
            }
            let next = match super::fragments::next(&mut rest) {
                Some(m) => Some(m),
                None => conn
                    .outbox
                    .pop()
                    .map(|f| super::fragments::first(f, &mut rest)),
            };
            let Some(message) = next else {
                match socket.poll_flush_unpin(cx) {
                    Poll::Ready(r) => return Poll::Ready(r.map_err(|_| WriteFailed::Socket)),
                    Poll::Pending => break,
                }
            };
            if socket.start_send_unpin(message).is_err() {
                return Poll::Ready(Err(WriteFailed::Socket));
            }
            // The client took what came before: the wait starts again.
            timer = None;
        }
        timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)))
            .as_mut()
            .poll(cx)
            .map(|()| Err(WriteFailed::Stalled))
    });
    tokio::select! {
        biased;
        () = conn.closer.closed() => false,
        r = io => wrote(conn, r),
    }
}

/// True when the write went out; otherwise closes the socket for the reason it did not.
fn wrote(conn: &Connection, r: Result<(), WriteFailed>) -> bool {
    match r {
        Ok(()) => true,
        Err(WriteFailed::Stalled) => {
            registry::slow_consumer(conn);
            false
        }
        Err(WriteFailed::Socket) => {
            Closing::Normal.close(&conn.closer);
            false
        }
    }
}

/// Why a write to the socket did not finish.
enum WriteFailed {
    /// The client did not take it within the write timeout.
    Stalled,
    /// The socket failed.
    Socket,
}

/// `write`, failed as Stalled when it has not finished within `timeout`.
async fn bounded<E>(
    timeout: Duration,
    write: impl std::future::Future<Output = Result<(), E>>,
) -> Result<(), WriteFailed> {
    match tokio::time::timeout(timeout, write).await {
        Ok(r) => r.map_err(|_| WriteFailed::Socket),
        Err(_) => Err(WriteFailed::Stalled),
    }
}

/// Starts one request: SendMsgList into the ordered worker, the rest concurrently,
/// bounded per connection. Never waits.
fn handle(
    ctx: &Arc<ConnCtx>,
    data: Bytes,
    in_flight: &mut Option<Arc<Semaphore>>,
    sender: &mut Option<SendWorker>,
) {
    let req = match RequestBody::decode(data) {
        Ok(r) => r,
        Err(e) => {
            reply(
                ctx,
                wire::failure(0, "", &Failure::malformed("RequestBody", &e)),
            );
            return;
        }
    };
    let tasks = &ctx.app.tasks;
    if req.event == ActiveEvent::SendMsgList as i32 {
        let (send_tx, _) = sender.get_or_insert_with(|| {
            let (tx, rx) = mpsc::channel::<RequestBody>(SEND_QUEUE_PER_CONN);
            (tx, tasks.spawn(send_worker(ctx.clone(), rx)))
        });
        if let Err(mpsc::error::TrySendError::Full(req) | mpsc::error::TrySendError::Closed(req)) =
            send_tx.try_send(req)
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
        return;
    }
    let in_flight = in_flight.get_or_insert_with(|| Arc::new(Semaphore::new(IN_FLIGHT_PER_CONN)));
    let Ok(permit) = in_flight.clone().try_acquire_owned() else {
        reply(
            ctx,
            wire::failure(
                req.event,
                &req.req_id,
                &Failure::Retry("too many requests in flight".into()),
            ),
        );
        return;
    };
    // And the account's, over all its sockets here (`account.rs`).
    let Ok(account_permit) = ctx.account.in_flight.clone().try_acquire_owned() else {
        reply(
            ctx,
            wire::failure(
                req.event,
                &req.req_id,
                &Failure::Retry("too many requests of this account in flight".into()),
            ),
        );
        return;
    };
    let ctx = ctx.clone();
    tasks.spawn(async move {
        let frames = dispatch::handle(&ctx, req).await;
        for f in frames {
            reply(&ctx, f);
        }
        drop((permit, account_permit));
    });
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
    registry::send_or_close(&ctx.conn, frame);
}

/// Parses the query for the HTTP handler.
pub(crate) fn params_from(query: Option<&str>) -> ConnectParams {
    ConnectParams::parse(query.unwrap_or(""))
}

#[cfg(test)]
mod tests {
    /// The size of the future `f` returns, without calling it.
    fn future_size<A, B, F>(_: impl FnOnce(A, B) -> F) -> usize {
        std::mem::size_of::<F>()
    }

    /// Every idle socket holds this future: connecting and closing are boxed, so it
    /// is the socket and the loop's state (1,000 B in a test build, the loop 640 B; it
    /// was 2.5 KiB when connecting and closing were inline, 1,072 B while the loop kept
    /// a `Notified` for its wake-ups).
    #[test]
    fn the_session_future_holds_the_loop_and_little_else() {
        let run = future_size(super::run);
        let serve = future_size(super::serve_socket);
        let socket = std::mem::size_of::<super::Socket>();
        eprintln!("session future {run} B: loop {serve} B, socket {socket} B");
        assert!(
            run <= serve + socket + 128,
            "run {run} B, loop {serve} B, socket {socket} B"
        );
        assert!(serve <= 660, "the loop's state is {serve} B");
    }
}
