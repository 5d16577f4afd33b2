//! inflight: one account with 20 sockets, each with 32 large SyncMsgList in flight
//! (large stored messages first): how much ferry's resident memory grows while it
//! answers them. Every answer is about 4 MB, so 640 built at once would be 2.5 GB;
//! the answer budget (`[budgets]`) bounds what is built and queued at once. The row
//! prints the peak RSS growth (VmHWM, reset before the burst), answers and refusals.

use std::time::Duration;

use anyhow::{Context, bail};
use futures_util::{SinkExt as _, StreamExt as _};
use prost::Message as _;
use tokio_tungstenite::tungstenite::Message;

use crate::conn;
use crate::pb::gateway as pb;
use crate::report::Row;
use crate::servers::SECRET;
use crate::systems::{Opts, Running};

#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// Sockets of the one account.
    #[arg(long, default_value_t = 20)]
    pub sockets: usize,
    /// SyncMsgList in flight per socket.
    #[arg(long, default_value_t = 32)]
    pub requests: usize,
    /// Stored messages each request asks for.
    #[arg(long, default_value_t = 10)]
    pub msgs: u64,
    /// Bytes of each stored message's content.
    #[arg(long, default_value_t = 400_000)]
    pub msg_bytes: usize,
}

/// The rate and in-flight limits (per socket and per account) out of the way: the
/// answer budget is what is measured (its defaults).
const LIMITS: &str = "requests_per_second = 100000\nrequest_burst = 100000\n\
     [budgets]\naccount_requests_per_second = 100000\naccount_request_burst = 100000\n\
     account_in_flight = 100000\n";

use crate::conn::Ws;

async fn open(server: &str, user: &str, device: &str) -> anyhow::Result<Ws> {
    let url = format!(
        "ws://{server}/ws?token={}&userId={user}&platform=ios&deviceId={device}",
        conn::token(SECRET, user)
    );
    let stream = tokio::net::TcpStream::connect(server).await?;
    let (mut ws, _) = tokio_tungstenite::client_async(url, stream).await?;
    match ws.next().await {
        Some(Ok(Message::Text(t))) if t.as_str() == "connected" => Ok(ws),
        other => bail!("{user}/{device}: not connected: {other:?}"),
    }
}

fn request(event: pb::ActiveEvent, req_id: String, data: Vec<u8>) -> Message {
    Message::Binary(
        pb::RequestBody {
            event: event as i32,
            req_id,
            data: data.into(),
        }
        .encode_to_vec()
        .into(),
    )
}

/// The code of a response frame; None for anything else.
fn code(b: &[u8]) -> Option<i32> {
    let p = pb::PushBody::decode(b).ok()?;
    (p.event == pb::PushEvent::PushResponseBody as i32)
        .then(|| pb::ResponseBody::decode(p.data).ok().map(|r| r.code))
        .flatten()
}

async fn answers(ws: &mut Ws, n: usize) -> anyhow::Result<Vec<i32>> {
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        match tokio::time::timeout(Duration::from_secs(120), ws.next())
            .await
            .context("no answer within 120 s")?
        {
            Some(Ok(Message::Binary(b))) => out.extend(code(&b)),
            Some(Ok(_)) => {}
            other => bail!("socket ended after {} answers: {other:?}", out.len()),
        }
    }
    Ok(out)
}

fn status_kb(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

pub async fn run(opts: &Opts, a: &Args) -> anyhow::Result<Vec<Row>> {
    let mut rows = Vec::new();
    for sys in opts.systems(false) {
        let run = Running::start_with_limits(&sys, opts, LIMITS)?;
        let server = run.send_addr();
        let (writer, reader) = ("inflightw", "inflightr");
        let conv = format!("single:{writer}-{reader}");
        let mut w = open(&server, writer, "w").await?;
        for i in 0..a.msgs {
            let m = crate::pb::text_msg(
                format!("big-{i}"),
                writer,
                &conv,
                vec![b'x'; a.msg_bytes].into(),
                conn::now_ns() / 1_000_000,
            );
            let data = pb::SendMsgListReq {
                msg_data_list: vec![m],
                ..Default::default()
            }
            .encode_to_vec();
            crate::client::call(&mut w, pb::ActiveEvent::SendMsgList, &format!("s{i}"), data)
                .await
                .map_err(|e| anyhow::anyhow!("seeding: {e}"))?;
        }
        // Stored: the conversation's seq reached the count.
        let seq_req = pb::BatchGetConvSeqReq {
            conv_id_list: vec![conv.clone()],
            ..Default::default()
        }
        .encode_to_vec();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let r = crate::client::call(&mut w, pb::ActiveEvent::SyncConvSeq, "q", seq_req.clone())
                .await
                .map_err(|e| anyhow::anyhow!("seq: {e}"))?;
            let resp = pb::BatchGetConvSeqResp::decode(r)?;
            if resp.conv_seq_map.get(&conv).map(|s| s.max_seq.as_str())
                == Some(a.msgs.to_string().as_str())
            {
                break;
            }
            if tokio::time::Instant::now() > deadline {
                bail!("{conv} not stored within 60 s");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let mut sockets = Vec::new();
        for i in 0..a.sockets {
            sockets.push(open(&server, reader, &format!("d{i}")).await?);
        }
        let pid = run.procs[0].pid();
        // VmHWM (peak RSS) from here on.
        let _ = std::fs::write(format!("/proc/{pid}/clear_refs"), "5");
        let before = status_kb(pid, "VmRSS:");
        let sync = pb::BatchGetMsgListByConvIdReq {
            items: vec![pb::batch_get_msg_list_by_conv_id_req::Item {
                conv_id: conv.clone(),
                seq_list: (1..=a.msgs).map(|s| s.to_string()).collect(),
            }],
            ..Default::default()
        }
        .encode_to_vec();
        let started = std::time::Instant::now();
        let tasks: Vec<_> = sockets
            .into_iter()
            .enumerate()
            .map(|(s, mut ws)| {
                let (sync, n) = (sync.clone(), a.requests);
                tokio::spawn(async move {
                    for i in 0..n {
                        let m = request(
                            pb::ActiveEvent::SyncMsgList,
                            format!("{s}-{i}"),
                            sync.clone(),
                        );
                        ws.send(m).await?;
                    }
                    answers(&mut ws, n).await
                })
            })
            .collect();
        let (mut ok, mut retry, mut other) = (0u64, 0u64, 0u64);
        for t in tasks {
            for c in t.await?? {
                match c {
                    0 => ok += 1,
                    c if c == pb::response_body::Code::RetryError as i32 => retry += 1,
                    _ => other += 1,
                }
            }
        }
        let secs = started.elapsed().as_secs_f64();
        let peak = status_kb(pid, "VmHWM:");
        let grown_mb = peak.saturating_sub(before) as f64 / 1024.0;
        let total = (a.sockets * a.requests) as u64;
        let mut row = Row {
            scenario: "inflight".into(),
            system: run.label.clone(),
            params: format!(
                "1 account, {} sockets x {} SyncMsgList of {} x {} B in flight",
                a.sockets, a.requests, a.msgs, a.msg_bytes
            ),
            connections: a.sockets as u64,
            secs,
            expected: total,
            delivered_per_s: ok as f64 / secs.max(1e-9),
            ..Default::default()
        };
        row.counters.sent = total;
        row.counters.acked = ok;
        row.counters.errors = other;
        row.notes.push(format!(
            "RSS growth {grown_mb:.1} MB (before {:.1} MB, peak {:.1} MB; target <= 64 MB); \
             {ok} answered, {retry} RetryError (answer budget), {other} other",
            before as f64 / 1024.0,
            peak as f64 / 1024.0
        ));
        row.print();
        rows.push(row);
    }
    Ok(rows)
}
