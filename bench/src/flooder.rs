//! A flooder process for the flood scenario: the coordinator re-executes this binary as
//! `ferry-bench flooder`, so the flood's client work runs outside the process that
//! measures the victim. Its connections send one kind of frame as fast as the socket
//! takes them, drain whatever comes back, and connect again whenever ferry closes them,
//! until stdin closes; then the process prints what it saw as one JSON line.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use prost::Message as _;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncBufReadExt;
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;

use crate::conn;
use crate::job::{Client, Target};
use crate::pb::gateway as pb;

/// What a flooding connection sends, over and over.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
pub enum Kind {
    /// Valid SendMsgList requests of one message.
    Send,
    /// Frames that are not a RequestBody at all.
    Garbage,
    /// SendMsgList with far more messages than a request may carry.
    BigSend,
    /// SyncMsgList naming far more seqs than a request may ask for.
    BigSync,
}

impl Kind {
    pub const ALL: [Kind; 4] = [Kind::Send, Kind::Garbage, Kind::BigSend, Kind::BigSync];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Send => "send",
            Kind::Garbage => "garbage",
            Kind::BigSend => "big-send",
            Kind::BigSync => "big-sync",
        }
    }
}

/// Messages in one oversized SendMsgList (ferry accepts 100).
const BIG_SEND_MSGS: usize = 1000;
/// Seqs in one oversized SyncMsgList (ferry accepts 1000); about 390 KB, under the
/// 1 MiB frame limit, so it is refused for its list, not its size.
const BIG_SYNC_SEQS: u64 = 50_000;

#[derive(clap::Args, Clone, Debug)]
pub struct Args {
    /// host:port of the ferry pod to flood.
    #[arg(long)]
    pub server: String,
    #[arg(long, value_enum)]
    pub kind: Kind,
    /// Flooding connections in this process (each its own user).
    #[arg(long, default_value_t = 2)]
    pub conns: usize,
    /// Local address the sockets are bound to.
    #[arg(long, default_value = "127.0.0.2")]
    pub source_ip: String,
    /// User ids are `<prefix>u<n>` (letters and digits only).
    #[arg(long)]
    pub user_prefix: String,
    #[arg(long)]
    pub secret: String,
}

/// What one flooder process saw, summed over its connections.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Report {
    pub kind: String,
    pub conns: u64,
    /// Connections opened (the first ones and every reconnect).
    pub opened: u64,
    pub connect_errors: u64,
    pub frames_sent: u64,
    /// Answers with code Success.
    pub answered_ok: u64,
    /// Answers with RetryError (over the rate, too many in flight).
    pub refused: u64,
    /// Answers with any other error code (malformed, over a size limit).
    pub rejected: u64,
    /// Sockets ferry closed with 1008 (policy: a connection that keeps flooding).
    pub closed_1008: u64,
    /// Sockets closed with any other code, or that ended without a Close frame.
    pub closed_other: u64,
}

#[derive(Default)]
struct Counts {
    opened: AtomicU64,
    connect_errors: AtomicU64,
    frames: AtomicU64,
    ok: AtomicU64,
    refused: AtomicU64,
    rejected: AtomicU64,
    closed_1008: AtomicU64,
    closed_other: AtomicU64,
}

/// The frame a `kind` flooder sends as `user`.
fn frame(kind: Kind, user: &str, n: u64) -> Bytes {
    let conv = format!("single:{user}-{user}x");
    let req = |event: pb::ActiveEvent, data: Vec<u8>| {
        pb::RequestBody {
            event: event as i32,
            req_id: format!("f{n}"),
            data: data.into(),
        }
        .encode_to_vec()
    };
    let msg = |i: u64| {
        crate::pb::text_msg(
            format!("{user}.{n}.{i}"),
            user,
            &conv,
            Bytes::from_static(&[b'x'; 100]),
            conn::now_ns() / 1_000_000,
        )
    };
    Bytes::from(match kind {
        Kind::Send => req(
            pb::ActiveEvent::SendMsgList,
            pb::SendMsgListReq {
                msg_data_list: vec![msg(0)],
                ..Default::default()
            }
            .encode_to_vec(),
        ),
        Kind::Garbage => {
            let mut b = vec![0xff; 64];
            b[1] = n as u8;
            b
        }
        Kind::BigSend => req(
            pb::ActiveEvent::SendMsgList,
            pb::SendMsgListReq {
                msg_data_list: (0..BIG_SEND_MSGS as u64).map(msg).collect(),
                ..Default::default()
            }
            .encode_to_vec(),
        ),
        Kind::BigSync => req(
            pb::ActiveEvent::SyncMsgList,
            pb::BatchGetMsgListByConvIdReq {
                items: vec![pb::batch_get_msg_list_by_conv_id_req::Item {
                    conv_id: conv.clone(),
                    seq_list: (1..=BIG_SYNC_SEQS).map(|s| s.to_string()).collect(),
                }],
                ..Default::default()
            }
            .encode_to_vec(),
        ),
    })
}

/// Counts what ferry answered, until the socket ends; returns once it has.
fn count_answer(b: &[u8], counts: &Counts) {
    let Ok(push) = pb::PushBody::decode(b) else {
        return;
    };
    if push.event != pb::PushEvent::PushResponseBody as i32 {
        return;
    }
    let Ok(r) = pb::ResponseBody::decode(push.data) else {
        return;
    };
    let c = match r.code {
        0 => &counts.ok,
        c if c == pb::response_body::Code::RetryError as i32 => &counts.refused,
        _ => &counts.rejected,
    };
    c.fetch_add(1, Relaxed);
}

/// One flooding connection, reconnecting whenever it is closed, until `stop`.
async fn flood(
    args: Arc<Args>,
    user: String,
    counts: Arc<Counts>,
    mut stop: watch::Receiver<bool>,
) {
    let client = Client {
        user: user.clone(),
        server: args.server.clone(),
        subscribe: None,
        send: None,
        record_pushes: false,
        stalled: false,
        sync: None,
    };
    let mut n = 0u64;
    // The same frame is sent again and again (building a 1000-message request per
    // frame would make the flooder, not ferry, the bottleneck); only valid sends get
    // a fresh one, so each is a new message.
    let fixed = frame(args.kind, &user, 0);
    while !*stop.borrow() {
        let opened = tokio::time::timeout(
            conn::HANDSHAKE_TIMEOUT,
            conn::open(Target::Ferry, &client, &args.source_ip, &args.secret),
        )
        .await;
        let Ok(Ok(ws)) = opened else {
            if counts.connect_errors.fetch_add(1, Relaxed) == 0 {
                match opened {
                    Ok(Err(e)) => eprintln!("flooder {user}: connect: {e:#}"),
                    _ => eprintln!("flooder {user}: connect timed out"),
                }
            }
            // Bounded retry pace: a refused connect is not retried in a hot loop.
            tokio::select! {
                _ = stop.changed() => {}
                () = tokio::time::sleep(Duration::from_millis(100)) => {}
            }
            continue;
        };
        counts.opened.fetch_add(1, Relaxed);
        let (mut sink, mut stream) = ws.split();
        let reader_counts = counts.clone();
        let mut reader = tokio::spawn(async move {
            while let Some(m) = stream.next().await {
                match m {
                    Ok(Message::Binary(b)) => count_answer(&b, &reader_counts),
                    Ok(Message::Close(f)) => return f.map(|f| u16::from(f.code)),
                    Ok(_) => {}
                    Err(_) => return None,
                }
            }
            None
        });
        let code = loop {
            let f = if args.kind == Kind::Send {
                n += 1;
                frame(args.kind, &user, n)
            } else {
                fixed.clone()
            };
            tokio::select! {
                biased;
                _ = stop.changed() => {
                    reader.abort();
                    break Some(None);
                }
                code = &mut reader => break code.ok(),
                r = sink.send(Message::Binary(f)) => {
                    if r.is_err() {
                        // The socket is gone: the reader has (or soon has) its close code.
                        break tokio::time::timeout(Duration::from_secs(5), &mut reader)
                            .await
                            .ok()
                            .and_then(Result::ok);
                    }
                    counts.frames.fetch_add(1, Relaxed);
                }
            }
        };
        match code {
            // Stopped by the coordinator: not a close by ferry.
            Some(None) if *stop.borrow() => {}
            Some(Some(1008)) => {
                counts.closed_1008.fetch_add(1, Relaxed);
            }
            _ => {
                counts.closed_other.fetch_add(1, Relaxed);
            }
        }
    }
}

pub async fn main(args: Args) -> anyhow::Result<()> {
    let args = Arc::new(args);
    let counts = Arc::new(Counts::default());
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..args.conns {
        let user = format!("{}u{i}", args.user_prefix);
        tasks.spawn(flood(args.clone(), user, counts.clone(), stop_rx.clone()));
    }
    // Tells the coordinator once every connection has been opened (or failed to) and
    // frames are going out; then waits for stdin to close.
    let mut said_started = false;
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    loop {
        tokio::select! {
            _ = tick.tick(), if !said_started => {
                let c = &counts;
                let tried = c.opened.load(Relaxed) + c.connect_errors.load(Relaxed);
                if tried >= args.conns as u64 && c.frames.load(Relaxed) >= args.conns as u64 {
                    said_started = true;
                    println!("started");
                }
            }
            line = lines.next_line() => {
                if !matches!(line, Ok(Some(_))) {
                    break;
                }
            }
        }
    }
    stop_tx.send_replace(true);
    let _ = tokio::time::timeout(Duration::from_secs(10), async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    let c = &counts;
    let report = Report {
        kind: args.kind.name().into(),
        conns: args.conns as u64,
        opened: c.opened.load(Relaxed),
        connect_errors: c.connect_errors.load(Relaxed),
        frames_sent: c.frames.load(Relaxed),
        answered_ok: c.ok.load(Relaxed),
        refused: c.refused.load(Relaxed),
        rejected: c.rejected.load(Relaxed),
        closed_1008: c.closed_1008.load(Relaxed),
        closed_other: c.closed_other.load(Relaxed),
    };
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}
