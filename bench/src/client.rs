//! One simulated client: connects, pings every 2 s like the SDKs, sends on an open-loop
//! schedule, records what it receives, and for the storm reconnects and syncs.
//!
//! Latency is measured from each message's *scheduled* send time, carried in its id,
//! not from when the send actually happened: if the client or the server falls behind,
//! the backlog's waiting time is counted (coordinated omission corrected by design).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use prost::Message as _;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

use crate::conn::{self, Ws, now_ns};
use crate::hist;
use crate::job::{Client, Counters, Job, Target};
use crate::pb::gateway as pb;

/// Where the worker is; every client follows it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Phase {
    Connecting,
    Go {
        start_ns: u64,
        at: Instant,
        rate: f64,
        count: u64,
    },
    Stopped,
    Reconnect {
        at: Instant,
    },
    Exit,
}

#[derive(Default)]
pub struct Stats {
    pub connected: AtomicU64,
    pub connect_errors: AtomicU64,
    pub sent: AtomicU64,
    pub acked: AtomicU64,
    pub errors: AtomicU64,
    pub received: AtomicU64,
    pub early: AtomicU64,
    pub synced: AtomicU64,
    pub sync_errors: AtomicU64,
    pub ack: Mutex<Option<Histogram<u64>>>,
    pub e2e: Mutex<Option<Histogram<u64>>>,
    pub connect: Mutex<Option<Histogram<u64>>>,
    pub samples: Mutex<Vec<String>>,
}

impl Stats {
    pub fn counters(&self) -> Counters {
        Counters {
            connected: self.connected.load(Relaxed),
            connect_errors: self.connect_errors.load(Relaxed),
            sent: self.sent.load(Relaxed),
            acked: self.acked.load(Relaxed),
            errors: self.errors.load(Relaxed),
            received: self.received.load(Relaxed),
            early: self.early.load(Relaxed),
            synced: self.synced.load(Relaxed),
            sync_errors: self.sync_errors.load(Relaxed),
        }
    }

    fn rec(h: &Mutex<Option<Histogram<u64>>>, micros: u64) {
        let mut g = h.lock().expect("histogram lock");
        hist::record(g.get_or_insert_with(hist::new), micros);
    }

    pub fn error(&self, what: String) {
        self.errors.fetch_add(1, Relaxed);
        self.sample(what);
    }

    pub fn sample(&self, what: String) {
        let mut s = self.samples.lock().expect("samples lock");
        if s.len() < 20 {
            s.push(what);
        }
    }
}

/// The id of every message: its scheduled send time (ns since the epoch), its
/// deliverAfter, and a unique tail. Receivers in any process compute latency from it.
fn msg_id(intended_ns: u64, delay: u32, worker: usize, client: usize, k: u64) -> String {
    format!("{intended_ns}.{delay}.{worker}.{client}.{k}")
}

fn parse_id(id: &str) -> Option<(u64, u32)> {
    let mut p = id.split('.');
    Some((p.next()?.parse().ok()?, p.next()?.parse().ok()?))
}

struct Ctx {
    job: Arc<Job>,
    stats: Arc<Stats>,
    c: Client,
    index: usize,
    payload: Bytes,
    /// Requests awaiting their answer: reqId → scheduled send time.
    pending: HashMap<String, u64>,
    next_cmd: u64,
}

impl Ctx {
    /// Records a message pushed to this client from someone else.
    fn received(&self, id: &str) {
        if !self.c.record_pushes {
            return;
        }
        let Some((t, delay)) = parse_id(id) else {
            return;
        };
        let due = t + u64::from(delay) * 1_000_000_000;
        let now = now_ns();
        self.stats.received.fetch_add(1, Relaxed);
        if now < due {
            self.stats.early.fetch_add(1, Relaxed);
        }
        Stats::rec(&self.stats.e2e, now.saturating_sub(due) / 1000);
    }

    fn answered(&mut self, req: &str, ok: Result<(), String>) {
        let Some(t) = self.pending.remove(req) else {
            return;
        };
        match ok {
            Ok(()) => {
                self.stats.acked.fetch_add(1, Relaxed);
                Stats::rec(&self.stats.ack, now_ns().saturating_sub(t) / 1000);
            }
            Err(e) => self.stats.error(e),
        }
    }

    /// The frame that sends message `k`, scheduled at `intended_ns`.
    fn encode_send(&mut self, k: u64, intended_ns: u64) -> Message {
        let s = self.c.send.as_ref().expect("only senders send");
        let id = msg_id(intended_ns, s.deliver_after, self.job.worker, self.index, k);
        match self.job.target {
            Target::Ferry => {
                let m = crate::pb::text_msg(
                    id.clone(),
                    &self.c.user,
                    &s.to,
                    self.payload.clone(),
                    intended_ns / 1_000_000,
                );
                let req = pb::RequestBody {
                    event: pb::ActiveEvent::SendMsgList as i32,
                    req_id: id.clone(),
                    data: pb::SendMsgListReq {
                        msg_data_list: vec![m],
                        deliver_after: (s.deliver_after > 0).then_some(s.deliver_after as i32),
                        ..Default::default()
                    }
                    .encode_to_vec()
                    .into(),
                };
                self.pending.insert(id, intended_ns);
                Message::Binary(req.encode_to_vec().into())
            }
            Target::Centrifugo => {
                self.next_cmd += 1;
                let cmd = self.next_cmd;
                self.pending.insert(cmd.to_string(), intended_ns);
                let pad = std::str::from_utf8(&self.payload).unwrap_or("");
                Message::Text(
                    serde_json::json!({"id": cmd, "publish": {"channel": s.to, "data": {"i": id, "p": pad}}})
                        .to_string()
                        .into(),
                )
            }
            Target::Bare => {
                let mut b = Vec::with_capacity(s.to.len() + id.len() + 2 + self.payload.len());
                b.extend_from_slice(s.to.as_bytes());
                b.push(b'\n');
                b.extend_from_slice(id.as_bytes());
                b.push(b'\n');
                b.extend_from_slice(&self.payload);
                // The bare server answers nothing: a send counts as acked when written.
                self.stats.acked.fetch_add(1, Relaxed);
                Message::Binary(b.into())
            }
        }
    }

    /// Handles one server frame; returns a frame to answer with (Centrifugo's pong).
    fn handle(&mut self, frame: Message) -> Option<Message> {
        match (self.job.target, frame) {
            (Target::Ferry, Message::Binary(b)) => {
                let push = pb::PushBody::decode(b).ok()?;
                if push.event == pb::PushEvent::PushMsgDataList as i32 {
                    let list = pb::MsgDataList::decode(push.data).ok()?;
                    for m in list.msg_data_list {
                        if m.sender_id != self.c.user {
                            self.received(&m.client_msg_id);
                        }
                    }
                } else if push.event == pb::PushEvent::PushResponseBody as i32 {
                    let r = pb::ResponseBody::decode(push.data).ok()?;
                    let ok = if r.code == 0 {
                        Ok(())
                    } else {
                        let msg = pb::SendMsgListResp::decode(r.data)
                            .ok()
                            .and_then(|x| x.common_resp?.msg)
                            .unwrap_or_default();
                        Err(format!("code {}: {msg}", r.code))
                    };
                    self.answered(&r.req_id, ok);
                }
                None
            }
            (Target::Centrifugo, Message::Text(t)) => {
                let mut pong = None;
                for line in t.as_str().lines() {
                    if line == "{}" {
                        pong = Some(Message::Text("{}".into()));
                        continue;
                    }
                    let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
                        continue;
                    };
                    if let Some(id) = v.get("id").and_then(|i| i.as_u64()) {
                        let ok = match v.get("error") {
                            Some(e) => Err(format!("centrifugo: {e}")),
                            None => Ok(()),
                        };
                        self.answered(&id.to_string(), ok);
                    } else if let Some(i) = v.pointer("/push/pub/data/i").and_then(|i| i.as_str()) {
                        self.received(i);
                    }
                }
                pong
            }
            (Target::Bare, Message::Binary(b)) => {
                let mut parts = b.splitn(3, |c| *c == b'\n');
                let _room = parts.next();
                if let Some(id) = parts.next().and_then(|i| std::str::from_utf8(i).ok()) {
                    self.received(id);
                }
                None
            }
            _ => None,
        }
    }
}

/// Sends one request and reads frames until its answer; pushes in between are ignored.
pub async fn call(
    ws: &mut Ws,
    event: pb::ActiveEvent,
    req_id: &str,
    data: Vec<u8>,
) -> Result<Bytes, String> {
    let req = pb::RequestBody {
        event: event as i32,
        req_id: req_id.to_owned(),
        data: data.into(),
    };
    ws.send(Message::Binary(req.encode_to_vec().into()))
        .await
        .map_err(|e| format!("send: {e}"))?;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let frame = tokio::time::timeout_at(deadline, ws.next())
            .await
            .map_err(|_| format!("{req_id}: no answer in 60 s"))?;
        let Some(Ok(Message::Binary(b))) = frame else {
            match frame {
                Some(Ok(_)) => continue,
                other => return Err(format!("{req_id}: socket ended: {other:?}")),
            }
        };
        let Ok(push) = pb::PushBody::decode(b) else {
            continue;
        };
        if push.event != pb::PushEvent::PushResponseBody as i32 {
            continue;
        }
        let Ok(r) = pb::ResponseBody::decode(push.data) else {
            continue;
        };
        if r.req_id != req_id {
            continue;
        }
        return if r.code == 0 {
            Ok(r.data)
        } else {
            Err(format!("{req_id}: code {}", r.code))
        };
    }
}

/// The storm's work after reconnecting: SyncConvSeq, then SyncMsgList of every seq.
/// Sends message `k` (scheduled at `intended_ns`) and counts it; false when the
/// socket failed (recorded as an error).
async fn send_next(ctx: &mut Ctx, ws: &mut Ws, k: &mut u64, intended_ns: u64) -> bool {
    let frame = ctx.encode_send(*k, intended_ns);
    *k += 1;
    ctx.stats.sent.fetch_add(1, Relaxed);
    if let Err(e) = ws.send(frame).await {
        ctx.stats.error(format!("{}: send failed: {e}", ctx.c.user));
        return false;
    }
    true
}

async fn sync(ws: &mut Ws, conv: &str, expected: u64) -> Result<(), String> {
    let data = pb::BatchGetConvSeqReq {
        conv_id_list: vec![conv.to_owned()],
        ..Default::default()
    }
    .encode_to_vec();
    let resp = call(ws, pb::ActiveEvent::SyncConvSeq, "seq", data).await?;
    let seqs = pb::BatchGetConvSeqResp::decode(resp).map_err(|e| e.to_string())?;
    let max: u64 = seqs
        .conv_seq_map
        .get(conv)
        .and_then(|s| s.max_seq.parse().ok())
        .unwrap_or(0);
    if max < expected {
        return Err(format!("{conv}: maxSeq {max} < {expected}"));
    }
    let data = pb::BatchGetMsgListByConvIdReq {
        items: vec![pb::batch_get_msg_list_by_conv_id_req::Item {
            conv_id: conv.to_owned(),
            seq_list: (1..=max).map(|s| s.to_string()).collect(),
        }],
        ..Default::default()
    }
    .encode_to_vec();
    let resp = call(ws, pb::ActiveEvent::SyncMsgList, "list", data).await?;
    let list = pb::GetMsgListResp::decode(resp).map_err(|e| e.to_string())?;
    let real = list
        .msg_data_list
        .iter()
        .filter(|m| !m.client_msg_id.is_empty())
        .count() as u64;
    if real < expected {
        return Err(format!("{conv}: {real} stored messages < {expected}"));
    }
    Ok(())
}

/// Connects; `gate` bounds how many handshakes run at once (none in the storm, where
/// every client reconnects at the same moment).
async fn connect(ctx: &Ctx, gate: Option<&tokio::sync::Semaphore>) -> Option<Ws> {
    let _permit = match gate {
        Some(g) => Some(g.acquire().await.ok()?),
        None => None,
    };
    let t = Instant::now();
    let r = tokio::time::timeout(
        conn::HANDSHAKE_TIMEOUT,
        conn::open(ctx.job.target, &ctx.c, &ctx.job.source_ip, &ctx.job.secret),
    )
    .await;
    match r {
        Ok(Ok(ws)) => {
            ctx.stats.connected.fetch_add(1, Relaxed);
            Stats::rec(&ctx.stats.connect, t.elapsed().as_micros() as u64);
            Some(ws)
        }
        Ok(Err(e)) => {
            ctx.stats.connect_errors.fetch_add(1, Relaxed);
            ctx.stats.sample(format!("{}: connect: {e:#}", ctx.c.user));
            None
        }
        Err(_) => {
            ctx.stats.connect_errors.fetch_add(1, Relaxed);
            ctx.stats
                .sample(format!("{}: connect timed out", ctx.c.user));
            None
        }
    }
}

pub async fn run(
    job: Arc<Job>,
    stats: Arc<Stats>,
    index: usize,
    mut phase: watch::Receiver<Phase>,
    gate: Arc<tokio::sync::Semaphore>,
) {
    let c = job.clients[index].clone();
    let payload = Bytes::from(vec![b'x'; job.payload_bytes]);
    let mut ctx = Ctx {
        job,
        stats,
        c,
        index,
        payload,
        pending: HashMap::new(),
        next_cmd: 2,
    };
    let Some(mut ws) = connect(&ctx, Some(&gate)).await else {
        return;
    };
    let target = ctx.job.target;
    // Pings as the SDKs send them; Centrifugo clients instead answer the server's pings.
    let ping_every = Duration::from_secs(2);
    let mut next_ping = Instant::now() + ping_every;
    let mut k: u64 = 0;
    let mut round: u64 = 0;
    let closed_loop = ctx.c.send.as_ref().is_some_and(|s| s.closed_loop);
    let mut closed_next: Option<Instant> = None;
    loop {
        let cur = *phase.borrow();
        let due = match cur {
            Phase::Go {
                at,
                start_ns,
                rate,
                count,
            } if ctx.c.send.is_some() => {
                if round != start_ns {
                    // A new round: its own schedule from its own time zero.
                    round = start_ns;
                    k = 0;
                    closed_next = None;
                }
                let period = Duration::from_secs_f64(1.0 / rate.max(1e-6));
                // Spread senders over one period so they do not all fire together.
                let offset = period.mul_f64((index as f64 * 0.618_033_988_7).fract());
                if k >= count {
                    None
                } else if closed_loop {
                    if ctx.pending.is_empty() {
                        let t = closed_next.unwrap_or(at).max(at);
                        Some((t, start_ns + t.duration_since(at).as_nanos() as u64))
                    } else {
                        None
                    }
                } else {
                    let d = offset + period.mul_f64(k as f64);
                    Some((at + d, start_ns + d.as_nanos() as u64))
                }
            }
            _ => None,
        };
        let far = Instant::now() + Duration::from_secs(3600);
        // A closed loop sends the next request as soon as the ack is in: through the
        // timer it would wait for the wheel's next tick (up to 1 ms), which would cap
        // every system's closed-loop rate near 1,000/s and measure the client instead.
        if closed_loop
            && let Some((t, intended)) = due
            && t <= Instant::now()
        {
            if !send_next(&mut ctx, &mut ws, &mut k, intended).await {
                return;
            }
            closed_next = None;
            continue;
        }
        tokio::select! {
            biased;
            r = phase.changed() => {
                if r.is_err() {
                    return;
                }
                let now_phase = *phase.borrow();
                match now_phase {
                    Phase::Exit => {
                        let _ = ws.close(None).await;
                        return;
                    }
                    Phase::Reconnect { at } => {
                        drop(ws);
                        let Some(w) = connect(&ctx, None).await else { return };
                        ws = w;
                        if let Some((conv, expected)) = ctx.c.sync.clone() {
                            match sync(&mut ws, &conv, expected).await {
                                Ok(()) => {
                                    ctx.stats.synced.fetch_add(1, Relaxed);
                                    Stats::rec(&ctx.stats.e2e, at.elapsed().as_micros() as u64);
                                }
                                Err(e) => {
                                    ctx.stats.sync_errors.fetch_add(1, Relaxed);
                                    ctx.stats.sample(e);
                                }
                            }
                        }
                        next_ping = Instant::now() + ping_every;
                    }
                    _ => {}
                }
            }
            frame = ws.next(), if !ctx.c.stalled => {
                match frame {
                    Some(Ok(Message::Close(f))) => {
                        ctx.stats.error(format!("{}: closed by server: {f:?}", ctx.c.user));
                        return;
                    }
                    Some(Ok(m)) => {
                        if let Some(reply) = ctx.handle(m)
                            && ws.send(reply).await.is_err()
                        {
                            return;
                        }
                        if closed_loop && ctx.pending.is_empty() && closed_next.is_none() {
                            closed_next = Some(Instant::now());
                        }
                    }
                    Some(Err(e)) => {
                        ctx.stats.error(format!("{}: socket error: {e}", ctx.c.user));
                        return;
                    }
                    None => {
                        ctx.stats.error(format!("{}: socket ended", ctx.c.user));
                        return;
                    }
                }
            }
            _ = tokio::time::sleep_until(next_ping), if target != Target::Centrifugo => {
                next_ping += ping_every;
                if ws.send(Message::Ping(Bytes::new())).await.is_err() {
                    ctx.stats.error(format!("{}: ping failed", ctx.c.user));
                    return;
                }
            }
            _ = tokio::time::sleep_until(due.map(|d| d.0).unwrap_or(far)), if due.is_some() => {
                let intended = due.map(|d| d.1).unwrap_or(0);
                if !send_next(&mut ctx, &mut ws, &mut k, intended).await {
                    return;
                }
                closed_next = None;
            }
        }
    }
}
