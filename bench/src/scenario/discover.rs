//! discover: the cost of conversation discovery (DiscoverConvs). Seeds `users` users
//! with `convs` single conversations each (user i writes to the next convs/2 users),
//! measuring the server's CPU per 1:1 message (each writes both participants' index
//! entries); then `group_msgs` messages into one group of `group_members` members
//! (a group message writes no index entry); then every user reconnects at once and
//! pages DiscoverConvs from the beginning until nothing more is ready: time until
//! all are done, per-client latency, entries listed, CPU per reconnect. ferry only.
//!
//! Run the seed part (`--seed-only`) against a ferry without discovery for the
//! per-message cost before it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use prost::Message as _;
use tokio_tungstenite::tungstenite::Message as WsMessage;

use crate::conn::{now_ns, token};
use crate::hist;
use crate::pb::gateway as pb;
use crate::procstat::Window;
use crate::report::Row;
use crate::servers::{SECRET, SERVICE_TOKEN};
use crate::systems::{Opts, Running};

#[derive(clap::Args, Clone, Debug)]
pub struct Args {
    #[arg(long, default_value_t = 1000)]
    pub users: usize,
    /// Single conversations per user (even).
    #[arg(long, default_value_t = 50)]
    pub convs: usize,
    #[arg(long, default_value_t = 1000)]
    pub group_members: usize,
    #[arg(long, default_value_t = 500)]
    pub group_msgs: usize,
    /// Reconnecting clients in flight at once (all of them: a storm).
    #[arg(long, default_value_t = 10_000)]
    pub concurrency: usize,
    /// Only the seed rounds (per-message cost), e.g. against a ferry without discovery.
    #[arg(long)]
    pub seed_only: bool,
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

fn user(i: usize) -> String {
    format!("du{i}")
}

fn single(a: &str, b: &str) -> String {
    if a < b {
        format!("single:{a}-{b}")
    } else {
        format!("single:{b}-{a}")
    }
}

async fn connect(addr: &str, user: &str) -> anyhow::Result<Ws> {
    let url = format!(
        "ws://{addr}/ws?token={}&userId={user}&platform=ios&deviceId=bench-{user}",
        token(SECRET, user)
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await?;
    match ws.next().await {
        Some(Ok(WsMessage::Text(t))) if t.as_str() == "connected" => Ok(ws),
        other => bail!("unexpected first frame: {other:?}"),
    }
}

/// One request and its response (other frames are skipped), within 60 s.
/// One request; an answer with a non-zero code is an error.
async fn call(
    ws: &mut Ws,
    event: pb::ActiveEvent,
    data: Vec<u8>,
) -> anyhow::Result<pb::ResponseBody> {
    let r = answer(ws, event, data).await?;
    if r.code != 0 {
        bail!("{} answered code {}", event.as_str_name(), r.code);
    }
    Ok(r)
}

/// SendMsgList's RetryError (the log did not acknowledge in time on a loaded
/// machine): the same request again (same clientMsgIds: nothing is stored twice).
const RETRY_ERROR: i32 = 8;
/// RetryErrors answered during the seed, retried.
static RETRIED: AtomicU64 = AtomicU64::new(0);

/// One request and its answer, whatever its code.
async fn answer(
    ws: &mut Ws,
    event: pb::ActiveEvent,
    data: Vec<u8>,
) -> anyhow::Result<pb::ResponseBody> {
    static N: AtomicU64 = AtomicU64::new(0);
    let req_id = format!("d{}", N.fetch_add(1, Ordering::Relaxed));
    let body = pb::RequestBody {
        event: event as i32,
        req_id: req_id.clone(),
        data: data.into(),
    };
    ws.send(WsMessage::Binary(body.encode_to_vec().into()))
        .await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let frame = tokio::time::timeout_at(deadline, ws.next())
            .await
            .context("no response within 60 s")?;
        let Some(Ok(WsMessage::Binary(b))) = frame else {
            if frame.is_none() {
                bail!("closed");
            }
            continue;
        };
        let push = pb::PushBody::decode(b)?;
        if push.event == pb::PushEvent::PushResponseBody as i32 {
            let r = pb::ResponseBody::decode(push.data)?;
            if r.req_id == req_id {
                return Ok(r);
            }
        }
    }
}

/// Sends `msgs` (one sender) in SendMsgList requests of up to 100.
async fn send_all(ws: &mut Ws, msgs: Vec<pb::MsgData>) -> anyhow::Result<()> {
    for chunk in msgs.chunks(100) {
        let req = pb::SendMsgListReq {
            msg_data_list: chunk.to_vec(),
            ..Default::default()
        };
        let data = req.encode_to_vec();
        for attempt in 1.. {
            let r = answer(ws, pb::ActiveEvent::SendMsgList, data.clone()).await?;
            match r.code {
                0 => break,
                RETRY_ERROR if attempt < 30 => {
                    RETRIED.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                code => bail!("SendMsgList answered code {code} (attempt {attempt})"),
            }
        }
    }
    Ok(())
}

fn text(sender: &str, conv: &str, payload: usize) -> pb::MsgData {
    static N: AtomicU64 = AtomicU64::new(0);
    crate::pb::text_msg(
        format!("m{}-{}", now_ns(), N.fetch_add(1, Ordering::Relaxed)),
        sender,
        conv,
        vec![b'x'; payload].into(),
        now_ns() / 1_000_000,
    )
}

/// Pages DiscoverConvs from the beginning: (entries, pages).
async fn discover(ws: &mut Ws) -> anyhow::Result<(u64, u64)> {
    let (mut cursor, mut entries, mut pages) = (String::new(), 0u64, 0u64);
    loop {
        let req = pb::DiscoverConvsReq {
            cursor: cursor.clone(),
            ..Default::default()
        };
        let r = call(ws, pb::ActiveEvent::DiscoverConvs, req.encode_to_vec()).await?;
        let page = pb::DiscoverConvsResp::decode(r.data)?;
        entries += page.convs.len() as u64;
        pages += 1;
        cursor = page.cursor;
        if !page.more {
            return Ok((entries, pages));
        }
    }
}

fn cost_row(run: &Running, scenario: &str, params: String, n: u64, win: &Window) -> Row {
    let secs = win.secs();
    let costs = win.close();
    let mut row = Row {
        scenario: scenario.into(),
        system: run.label.clone(),
        params,
        secs,
        delivered_per_s: n as f64 / secs,
        costs,
        ..Default::default()
    };
    if let Some(c) = row.system_cost() {
        let (cpu, rss) = (c.cpu_secs, c.rss_bytes);
        row.cpu_us_per_delivery = Some(cpu * 1e6 / n as f64);
        row.cpu_pct = 100.0 * cpu / secs;
        row.notes.push(format!(
            "server CPU {:.1} us per {} (rss {} MB)",
            cpu * 1e6 / n as f64,
            if scenario == "discover-storm" {
                "reconnect"
            } else {
                "message"
            },
            rss / 1_000_000
        ));
    }
    row
}

pub async fn run(opts: &Opts, a: &Args) -> anyhow::Result<Vec<Row>> {
    let mut rows = Vec::new();
    let half = (a.convs / 2).max(1);
    for sys in opts.systems(false) {
        let run = Running::start(&sys, opts)?;
        let addr = run.send_addr();
        // Seed: user i writes one message to each of users i+1..=i+half.
        let win = Window::open(&run.watched(None));
        let sent = Arc::new(AtomicU64::new(0));
        let mut tasks = tokio::task::JoinSet::new();
        let lanes = 64.min(a.users);
        for lane in 0..lanes {
            let (addr, sent, users, payload) = (addr.clone(), sent.clone(), a.users, opts.payload);
            tasks.spawn(async move {
                for i in (lane..users).step_by(lanes) {
                    let me = user(i);
                    let mut ws = connect(&addr, &me).await?;
                    let msgs: Vec<pb::MsgData> = (1..=half)
                        .map(|k| text(&me, &single(&me, &user((i + k) % users)), payload))
                        .collect();
                    let n = msgs.len() as u64;
                    send_all(&mut ws, msgs).await?;
                    sent.fetch_add(n, Ordering::Relaxed);
                }
                anyhow::Ok(())
            });
        }
        while let Some(r) = tasks.join_next().await {
            r??;
        }
        let n = sent.load(Ordering::Relaxed);
        let retried = RETRIED.swap(0, Ordering::Relaxed);
        let mut row = cost_row(
            &run,
            "discover-seed",
            format!("{n} 1:1 messages ({} users x {} convs)", a.users, 2 * half),
            n,
            &win,
        );
        row.notes.push(format!(
            "{retried} SendMsgList requests answered RetryError and sent again"
        ));
        row.print();
        rows.push(row);

        // One group of `group_members`, `group_msgs` messages into it.
        let group = format!("dg{}", now_ns() % 1_000_000);
        for i in 0..a.group_members.min(a.users) {
            let path = format!("/api/v1/groups/{group}/members/{}", user(i));
            let (s, body) = crate::http::request(&addr, "PUT", &path, Some(SERVICE_TOKEN))
                .map_err(anyhow::Error::msg)?;
            // 202: accepted, applied once the sequencer gets to it (after the seed).
            if s != 200 && s != 202 {
                bail!("adding a member: {s} {body}");
            }
        }
        let win = Window::open(&run.watched(None));
        let mut ws = connect(&addr, &user(0)).await?;
        let conv = format!("group:{group}");
        // One message per request, so one log record per message as in the 1:1 seed.
        for _ in 0..a.group_msgs {
            send_all(&mut ws, vec![text(&user(0), &conv, opts.payload)]).await?;
        }
        drop(ws);
        let mut row = cost_row(
            &run,
            "discover-seed",
            format!(
                "{} messages into a group of {}",
                a.group_msgs,
                a.group_members.min(a.users)
            ),
            a.group_msgs as u64,
            &win,
        );
        row.print();
        rows.push(row);
        if a.seed_only {
            continue;
        }

        // Wait until the last user's conversations are all discoverable.
        let want = (2 * half) as u64 + u64::from(a.users - 1 < a.group_members);
        // The sequencer may still be working through the seed's backlog: a second
        // per 1,000 messages seeded, at least 120 s.
        let settle = Duration::from_secs((n / 1000).max(120));
        let deadline = Instant::now() + settle;
        let mut probe = connect(&addr, &user(a.users - 1)).await?;
        while discover(&mut probe).await?.0 < want {
            if Instant::now() > deadline {
                bail!("discovery did not settle within {settle:?}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        drop(probe);

        // The storm: every user connects and discovers, `concurrency` at a time.
        let win = Window::open(&run.watched(None));
        let t0 = Instant::now();
        let gate = Arc::new(tokio::sync::Semaphore::new(a.concurrency.max(1)));
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..a.users {
            let (addr, gate) = (addr.clone(), gate.clone());
            tasks.spawn(async move {
                let _permit = gate.acquire_owned().await?;
                let started = Instant::now();
                let mut ws = connect(&addr, &user(i)).await?;
                let (entries, pages) = discover(&mut ws).await?;
                anyhow::Ok((started.elapsed(), entries, pages))
            });
        }
        let mut lat = hist::new();
        let (mut entries, mut pages, mut errors, mut done) = (0u64, 0u64, 0u64, 0u64);
        let mut first_error = None;
        while let Some(r) = tasks.join_next().await {
            match r? {
                Ok((t, e, p)) => {
                    hist::record(&mut lat, t.as_micros() as u64);
                    entries += e;
                    pages += p;
                    done += 1;
                }
                Err(e) => {
                    errors += 1;
                    first_error.get_or_insert(e.to_string());
                }
            }
        }
        let secs = t0.elapsed().as_secs_f64();
        let mut row = cost_row(
            &run,
            "discover-storm",
            format!(
                "{} users reconnect at once, each with {} conversations",
                a.users,
                2 * half + usize::from(a.group_members > 0)
            ),
            a.users as u64,
            &win,
        );
        row.connections = a.users as u64;
        row.e2e = hist::summary(&lat);
        row.notes.insert(
            0,
            format!(
                "{done} of {} discovered in {secs:.2} s ({entries} entries, {pages} pages, {errors} errors{}); send→push column: connect + discovery per client",
                a.users,
                first_error.map(|e| format!(": {e}")).unwrap_or_default()
            ),
        );
        row.print();
        rows.push(row);
    }
    Ok(rows)
}
