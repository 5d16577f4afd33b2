//! ferry's soak run (not a test; `scripts/soak.sh`): starts the binary, drives it with
//! steady load from real WebSocket clients for a long while and reports whether RSS,
//! open fds and consumer lag stay flat. Throughput and latency are ferry-bench's.
//!
//!   cargo bench --bench soak -- soak [--kafka] [--minutes N] [--pairs N] [--rate R] [--sample-secs S]
//!
//! `--kafka` runs against Kafka + Cassandra from FERRY_TEST_KAFKA / FERRY_TEST_CQL.

#![allow(unreachable_pub)]

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};

use futures_util::StreamExt;
use tokio_tungstenite::tungstenite::Message as WsMessage;

#[allow(clippy::all, dead_code, unreachable_pub)]
mod pb {
    include!(concat!(env!("OUT_DIR"), "/gateway.rs"));
}

#[path = "soak/run.rs"]
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
        .open(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/docs/benchmarks-history.md"
        ))
        .unwrap();
    writeln!(f, "{text}").unwrap();
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let kafka = args.iter().any(|a| a == "--kafka");
    if args.iter().any(|a| a == "soak") {
        rt.block_on(soak::soak(
            kafka,
            arg(&args, "--minutes", 30),
            arg(&args, "--pairs", 10),
            arg(&args, "--rate", 10),
            arg(&args, "--sample-secs", 30),
        ));
    } else {
        eprintln!(
            "usage: cargo bench --bench soak -- soak [--kafka] [--minutes N] [--pairs N] [--rate R] [--sample-secs S]"
        );
    }
}
