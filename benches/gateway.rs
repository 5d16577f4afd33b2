//! ferry's benchmark program (not a test): starts the release binary, drives it with
//! real WebSocket clients and prints numbers, appending them to BENCHMARKS.md.
//!
//!   cargo bench --bench gateway -- latency [--kafka] [--pairs N] [--messages M] [--rate R]
//!   cargo bench --bench gateway -- idle [--conns N]
//!   cargo bench --bench gateway -- soak [--kafka] [--minutes N] [--pairs N] [--rate R] [--sample-secs S]
//!
//! `--kafka` runs against Kafka + Cassandra from FERRY_TEST_KAFKA / FERRY_TEST_CQL.

#![allow(unreachable_pub)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use prost::Message as _;
use tokio_tungstenite::tungstenite::Message as WsMessage;

#[allow(clippy::all, dead_code, unreachable_pub)]
mod pb {
    include!(concat!(env!("OUT_DIR"), "/gateway.rs"));
}

#[path = "gateway/soak.rs"]
mod soak;

const SECRET: &str = "bench-secret-0123456789abcdef";

struct Server {
    child: Child,
    addr: String,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}

fn start(kafka: bool) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = format!(
        "data_dir = {:?}\npod = \"bench\"\n[server]\nlisten = \"127.0.0.1:0\"\n[auth]\nhs256_secret = \"{SECRET}\"\n[limits]\nrequests_per_second = 100000\nrequest_burst = 100000\nmax_connections = 1000000\n[session]\nidle_timeout_secs = 600\n[telemetry]\nlog_level = \"warn\"\n",
        dir.path().join("data")
    );
    if kafka {
        let run = std::process::id();
        cfg = cfg.replacen(
            "[server]",
            &format!(
                "[log]\nkind = \"kafka\"\n[store]\nkind = \"scylla\"\n[kafka]\nbrokers = \"{}\"\ntopic_prefix = \"bench{run}.\"\npartitions = 8\n[scylla]\nnodes = [\"{}\"]\nkeyspace = \"bench{run}\"\n[server]",
                std::env::var("FERRY_TEST_KAFKA").unwrap_or_else(|_| "127.0.0.1:9092".into()),
                std::env::var("FERRY_TEST_CQL").unwrap_or_else(|_| "127.0.0.1:9042".into()),
            ),
            1,
        );
    }
    let path = dir.path().join("ferry.toml");
    std::fs::write(&path, cfg).unwrap();
    let bin = env!("CARGO_BIN_EXE_ferry");
    if kafka {
        let ok = Command::new(bin)
            .arg("--config")
            .arg(&path)
            .arg("migrate")
            .status()
            .unwrap();
        assert!(ok.success(), "migrate failed");
    }
    let mut child = Command::new(bin)
        .arg("--config")
        .arg(&path)
        .arg("serve")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut line = String::new();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    while out.read_line(&mut line).unwrap() > 0 {
        if let Some(rest) = line.strip_prefix("ferry listening on http://") {
            let addr = rest.split_whitespace().next().unwrap().to_owned();
            std::thread::spawn(move || for _ in out.lines() {});
            return Server {
                child,
                addr,
                _dir: dir,
            };
        }
        line.clear();
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("ferry did not start");
}

fn token(user: &str) -> String {
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600;
    let claims = serde_json::json!({ "sub": user, "exp": exp });
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(addr: &str, user: &str, device: &str) -> Ws {
    let url = format!(
        "ws://{addr}/ws?token={}&userId={user}&platform=bench&deviceId={device}",
        token(user)
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    match ws.next().await {
        Some(Ok(WsMessage::Text(t))) if t.as_str() == "connected" => ws,
        other => panic!("refused: {other:?}"),
    }
}

fn rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

fn arg(args: &[String], name: &str, default: usize) -> usize {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1)?.parse().ok())
        .unwrap_or(default)
}

fn report(text: &str) {
    println!("{text}");
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(concat!(env!("CARGO_MANIFEST_DIR"), "/BENCHMARKS.md"))
        .unwrap();
    writeln!(f, "{text}").unwrap();
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// Pairs of users; each sender sends `messages` one after the other (awaiting each
/// Success) while its peer measures SendMsgList -> push.
/// With `rate` > 0 each sender paces itself to `rate` messages per second.
async fn latency(kafka: bool, pairs: usize, messages: usize, rate: usize) {
    let server = start(kafka);
    let sent: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let samples: Arc<Mutex<Vec<f64>>> = Arc::default();
    let mut receivers = Vec::new();
    let mut senders = Vec::new();
    for p in 0..pairs {
        let (a, b) = (format!("s{p}"), format!("r{p}"));
        let mut rx = connect(&server.addr, &b, "d").await;
        let (sent2, samples2) = (sent.clone(), samples.clone());
        receivers.push(tokio::spawn(async move {
            let mut got = 0;
            while got < messages {
                let Some(Ok(WsMessage::Binary(bytes))) = rx.next().await else {
                    break;
                };
                let push = pb::PushBody::decode(bytes).unwrap();
                if push.event != 0 {
                    continue;
                }
                for m in pb::MsgDataList::decode(push.data).unwrap().msg_data_list {
                    if let Some(t0) = sent2.lock().unwrap().remove(&m.client_msg_id) {
                        samples2
                            .lock()
                            .unwrap()
                            .push(t0.elapsed().as_secs_f64() * 1000.0);
                        got += 1;
                    }
                }
            }
        }));
        let mut tx = connect(&server.addr, &a, "d").await;
        let sent = sent.clone();
        senders.push(tokio::spawn(async move {
            let conv = format!("single:{b}-{a}");
            let start = Instant::now();
            for i in 0..messages {
                if rate > 0 {
                    let due = start + Duration::from_secs_f64(i as f64 / rate as f64);
                    tokio::time::sleep_until(due.into()).await;
                }
                let id = format!("{a}-{i}");
                let m = pb::MsgData {
                    client_msg_id: id.clone(),
                    sender_id: a.clone(),
                    conv_id: conv.clone(),
                    content_type: 11,
                    content: b"benchmark payload of a typical short chat message"
                        .to_vec()
                        .into(),
                    options: Some(pb::msg_data::Options {
                        storage_for_server: true,
                        storage_for_client: true,
                        ..Default::default()
                    }),
                    ..Default::default()
                };
                let req = pb::RequestBody {
                    event: 0,
                    req_id: id.clone(),
                    data: pb::SendMsgListReq {
                        msg_data_list: vec![m],
                        ..Default::default()
                    }
                    .encode_to_vec()
                    .into(),
                };
                sent.lock().unwrap().insert(id.clone(), Instant::now());
                tx.send(WsMessage::Binary(req.encode_to_vec().into()))
                    .await
                    .unwrap();
                // Await this request's response (echo pushes are skipped).
                loop {
                    let Some(Ok(WsMessage::Binary(bytes))) = tx.next().await else {
                        return;
                    };
                    let push = pb::PushBody::decode(bytes).unwrap();
                    if push.event == 2 && pb::ResponseBody::decode(push.data).unwrap().req_id == id
                    {
                        break;
                    }
                }
            }
        }));
    }
    let t0 = Instant::now();
    for s in senders {
        s.await.unwrap();
    }
    for r in receivers {
        let _ = tokio::time::timeout(Duration::from_secs(60), r).await;
    }
    let elapsed = t0.elapsed().as_secs_f64();
    let mut s = samples.lock().unwrap().clone();
    s.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let backend = if kafka {
        "Kafka + Cassandra"
    } else {
        "embedded"
    };
    report(&format!(
        "| latency | {backend} | {pairs} pairs x {messages} msgs at {} | {} delivered | {:.0} msg/s | p50 {:.2} ms | p99 {:.2} ms | max {:.2} ms |",
        if rate > 0 {
            format!("{rate}/s each")
        } else {
            "full speed".to_owned()
        },
        s.len(),
        s.len() as f64 / elapsed,
        pct(&s, 0.5),
        pct(&s, 0.99),
        s.last().copied().unwrap_or(0.0)
    ));
}

/// Opens `conns` idle sockets and reports ferry's resident memory per socket.
async fn idle(conns: usize) {
    let server = start(false);
    let pid = server.child.id();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = rss_kb(pid);
    let mut sockets = Vec::with_capacity(conns);
    for i in 0..conns {
        sockets.push(connect(&server.addr, &format!("idle{i}"), "d").await);
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = rss_kb(pid);
    report(&format!(
        "| idle | embedded | {conns} sockets | RSS before {:.1} MB | after {:.1} MB | {:.2} KB per socket |",
        before as f64 / 1024.0,
        after as f64 / 1024.0,
        (after.saturating_sub(before)) as f64 / conns as f64
    ));
    drop(sockets);
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let kafka = args.iter().any(|a| a == "--kafka");
    if args.iter().any(|a| a == "idle") {
        rt.block_on(idle(arg(&args, "--conns", 10_000)));
    } else if args.iter().any(|a| a == "latency") {
        rt.block_on(latency(
            kafka,
            arg(&args, "--pairs", 20),
            arg(&args, "--messages", 200),
            arg(&args, "--rate", 0),
        ));
    } else if args.iter().any(|a| a == "soak") {
        rt.block_on(soak::soak(
            kafka,
            arg(&args, "--minutes", 30),
            arg(&args, "--pairs", 10),
            arg(&args, "--rate", 10),
            arg(&args, "--sample-secs", 30),
        ));
    } else {
        eprintln!(
            "usage: cargo bench --bench gateway -- latency [--kafka] [--pairs N] [--messages M] | idle [--conns N] | soak [--kafka] [--minutes N]"
        );
    }
}
