//! Soak: a moderate, steady load for a long time, sampling what must stay flat:
//! ferry's resident memory, its open file descriptors, and the consumer lag of its
//! groups (from `/metrics`). Receivers reconnect now and then, so sessions are torn
//! down and rebuilt throughout, as on a real gateway.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use prost::Message as _;
use tokio_tungstenite::tungstenite::Message as WsMessage;

use super::{connect, pb, report, rss_kb, start};

#[derive(Default)]
struct Counts {
    acked: AtomicU64,
    refused: AtomicU64,
    delivered: AtomicU64,
    reconnects: AtomicU64,
}

struct Sample {
    at_s: u64,
    rss_kb: u64,
    fds: usize,
    lag: u64,
    acked: u64,
    delivered: u64,
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Sum of `ferry_consumer_lag` over every group, topic and partition.
async fn lag(addr: &str) -> u64 {
    let Ok(resp) = reqwest::get(format!("http://{addr}/metrics")).await else {
        return 0;
    };
    let text = resp.text().await.unwrap_or_default();
    text.lines()
        .filter(|l| l.starts_with("ferry_consumer_lag{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

fn message(sender: &str, conv: &str, id: String) -> pb::RequestBody {
    let m = pb::MsgData {
        client_msg_id: id.clone(),
        sender_id: sender.to_owned(),
        conv_id: conv.to_owned(),
        content_type: 11,
        content: b"soak payload of a typical short chat message"
            .to_vec()
            .into(),
        options: Some(pb::msg_data::Options {
            storage_for_server: true,
            storage_for_client: true,
            ..Default::default()
        }),
        ..Default::default()
    };
    pb::RequestBody {
        event: 0,
        req_id: id,
        data: pb::SendMsgListReq {
            msg_data_list: vec![m],
            ..Default::default()
        }
        .encode_to_vec()
        .into(),
    }
}

/// Sends `rate` messages a second until `stop`, awaiting each response.
async fn sender(
    addr: String,
    me: String,
    peer: String,
    rate: usize,
    counts: Arc<Counts>,
    stop: Arc<AtomicBool>,
) {
    let mut ws = connect(&addr, &me, "d").await;
    let conv = format!("single:{peer}-{me}");
    let start = Instant::now();
    let mut i = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let due = start + Duration::from_secs_f64(i as f64 / rate as f64);
        tokio::time::sleep_until(due.into()).await;
        let id = format!("{me}-{i}");
        let req = message(&me, &conv, id.clone());
        if ws
            .send(WsMessage::Binary(req.encode_to_vec().into()))
            .await
            .is_err()
        {
            panic!("{me}: socket lost");
        }
        loop {
            let Some(Ok(WsMessage::Binary(bytes))) = ws.next().await else {
                panic!("{me}: socket lost");
            };
            let push = pb::PushBody::decode(bytes).unwrap();
            if push.event == 2 {
                let r = pb::ResponseBody::decode(push.data).unwrap();
                if r.req_id == id {
                    let c = if r.code == 0 {
                        &counts.acked
                    } else {
                        &counts.refused
                    };
                    c.fetch_add(1, Ordering::Relaxed);
                    break;
                }
            }
        }
        i += 1;
    }
}

/// Reads pushes; every `churn` it drops its socket and connects again.
async fn receiver(
    addr: String,
    me: String,
    churn: Duration,
    counts: Arc<Counts>,
    stop: Arc<AtomicBool>,
) {
    while !stop.load(Ordering::Relaxed) {
        let mut ws = connect(&addr, &me, "d").await;
        let until = tokio::time::Instant::now() + churn;
        loop {
            let frame = tokio::select! {
                f = ws.next() => f,
                _ = tokio::time::sleep_until(until) => break,
            };
            let Some(Ok(WsMessage::Binary(bytes))) = frame else {
                break;
            };
            let push = pb::PushBody::decode(bytes).unwrap();
            if push.event == 0 {
                let n = pb::MsgDataList::decode(push.data)
                    .unwrap()
                    .msg_data_list
                    .len();
                counts.delivered.fetch_add(n as u64, Ordering::Relaxed);
            }
        }
        let _ = ws.close(None).await;
        counts.reconnects.fetch_add(1, Ordering::Relaxed);
    }
}

fn mean(xs: impl Iterator<Item = f64>) -> f64 {
    let v: Vec<f64> = xs.collect();
    v.iter().sum::<f64>() / v.len().max(1) as f64
}

pub async fn soak(kafka: bool, minutes: usize, pairs: usize, rate: usize, sample_secs: usize) {
    let server = start(kafka);
    let pid = server.child.id();
    let counts = Arc::new(Counts::default());
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for p in 0..pairs {
        let (a, b) = (format!("s{p}"), format!("r{p}"));
        // Receivers reconnect at staggered times, about every 1-2 minutes each.
        let churn = Duration::from_secs(60 + (p as u64 * 7) % 60);
        tasks.push(tokio::spawn(receiver(
            server.addr.clone(),
            b.clone(),
            churn,
            counts.clone(),
            stop.clone(),
        )));
        tasks.push(tokio::spawn(sender(
            server.addr.clone(),
            a,
            b,
            rate,
            counts.clone(),
            stop.clone(),
        )));
    }
    let t0 = Instant::now();
    let end = t0 + Duration::from_secs(minutes as u64 * 60);
    let mut samples = Vec::new();
    println!("| t (s) | RSS (MB) | fds | consumer lag | acked | delivered |");
    println!("|---|---|---|---|---|---|");
    while Instant::now() < end {
        tokio::time::sleep(Duration::from_secs(sample_secs as u64)).await;
        let s = Sample {
            at_s: t0.elapsed().as_secs(),
            rss_kb: rss_kb(pid),
            fds: open_fds(pid),
            lag: lag(&server.addr).await,
            acked: counts.acked.load(Ordering::Relaxed),
            delivered: counts.delivered.load(Ordering::Relaxed),
        };
        println!(
            "| {} | {:.1} | {} | {} | {} | {} |",
            s.at_s,
            s.rss_kb as f64 / 1024.0,
            s.fds,
            s.lag,
            s.acked,
            s.delivered
        );
        samples.push(s);
    }
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
    }
    // Judge after the first fifth (warm-up: caches, pools, JIT-like growth of maps):
    // the last third against the second third.
    let warm = &samples[samples.len() / 5..];
    let third = warm.len() / 3;
    let (mid, last) = (&warm[third..2 * third], &warm[2 * third..]);
    let rss_mid = mean(mid.iter().map(|s| s.rss_kb as f64)) / 1024.0;
    let rss_last = mean(last.iter().map(|s| s.rss_kb as f64)) / 1024.0;
    let fds_mid = mean(mid.iter().map(|s| s.fds as f64));
    let fds_last = mean(last.iter().map(|s| s.fds as f64));
    let lag_mid = mean(mid.iter().map(|s| s.lag as f64));
    let lag_last = mean(last.iter().map(|s| s.lag as f64));
    let rss_flat = rss_last <= rss_mid * 1.10 + 8.0;
    let fds_flat = fds_last <= fds_mid + 8.0;
    // Not growing, and keeping up: at most ten seconds of traffic behind at the end.
    let lag_flat =
        lag_last <= lag_mid * 1.5 + (rate * pairs) as f64 && lag_last <= (10 * rate * pairs) as f64;
    let acked = counts.acked.load(Ordering::Relaxed);
    let delivered = counts.delivered.load(Ordering::Relaxed);
    let backend = if kafka {
        "Kafka + Cassandra"
    } else {
        "embedded"
    };
    report(&format!(
        "| soak | {backend} | {minutes} min, {pairs} pairs at {rate}/s each | {acked} acked, {} refused, {delivered} delivered, {} reconnects | RSS {rss_mid:.1} -> {rss_last:.1} MB ({}) | fds {fds_mid:.0} -> {fds_last:.0} ({}) | lag {lag_mid:.0} -> {lag_last:.0} ({}) |",
        counts.refused.load(Ordering::Relaxed),
        counts.reconnects.load(Ordering::Relaxed),
        if rss_flat { "flat" } else { "GROWING" },
        if fds_flat { "flat" } else { "GROWING" },
        if lag_flat { "flat" } else { "GROWING" },
    ));
    assert!(
        rss_flat && fds_flat && lag_flat,
        "soak: something grows (see above)"
    );
}
