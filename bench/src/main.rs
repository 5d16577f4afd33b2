//! ferry-bench: the open-loop load generator ferry's performance claims are judged by.
//! One command per scenario; ferry and its peers (Centrifugo, a bare WebSocket
//! broadcast server, a bare rdkafka producer) are measured in the same run.

mod bare;
mod cleanup;
mod client;
mod conn;
mod counts;
mod flooder;
mod hist;
mod http;
mod job;
mod kafka_ceiling;
mod machine;
mod pb;
mod perf;
mod pool;
mod procstat;
mod report;
mod scenario;
mod servers;
mod systems;
mod worker;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use systems::Opts;

#[derive(Parser, Debug)]
#[command(
    name = "ferry-bench",
    about = "Load generator and peer comparison for ferry"
)]
struct Cli {
    /// ferry backends to run: embedded, kafka (two pods, Kafka + Cassandra), kafka1 (one
    /// pod on Kafka + Cassandra), or several.
    #[arg(long, default_value = "embedded", value_delimiter = ',', global = true)]
    backend: Vec<String>,
    /// Peers measured in the same run: centrifugo, bare, rdkafka (chat on Kafka), none.
    #[arg(
        long,
        default_value = "centrifugo,bare,rdkafka",
        value_delimiter = ',',
        global = true
    )]
    peers: Vec<String>,
    /// The ferry binary (default: `ferry` next to this executable).
    #[arg(long, global = true)]
    ferry: Option<PathBuf>,
    /// The Centrifugo binary.
    #[arg(long, global = true, env = "FERRY_BENCH_CENTRIFUGO")]
    centrifugo: Option<PathBuf>,
    #[arg(
        long,
        global = true,
        env = "FERRY_TEST_KAFKA",
        default_value = "127.0.0.1:9092"
    )]
    kafka: String,
    #[arg(
        long,
        global = true,
        env = "FERRY_TEST_CQL",
        default_value = "127.0.0.1:9042"
    )]
    cql: String,
    /// Message payload bytes.
    #[arg(long, global = true, default_value_t = 100)]
    payload: usize,
    /// Client worker processes (at least enough for 9,000 sockets each).
    #[arg(long, global = true, default_value_t = 2)]
    workers: usize,
    /// JSON result file (default target/ferry-bench/<scenario>-<time>.json).
    #[arg(long, global = true)]
    out: Option<PathBuf>,
    /// Fail unless every expected message arrived and nothing failed (CI smoke).
    #[arg(long, global = true)]
    check: bool,
    /// Profile ferry with `perf record` during each measured round; reports are written
    /// to this directory (one per round).
    #[arg(long, global = true)]
    perf: Option<PathBuf>,
    /// Count requests per message in every measured round: Kafka requests and CQL
    /// requests per ferry pod, Cassandra writes and reads per table, and per process
    /// context switches and syscalls (`perf stat`); see bench/src/counts.rs.
    #[arg(long, global = true)]
    counts: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Idle connections per server process: RSS per connection, CPU at rest.
    Idle {
        #[arg(long, default_value = "1000,5000,15000", value_delimiter = ',')]
        conns: Vec<usize>,
        #[arg(long, default_value_t = 10)]
        rest_secs: u64,
    },
    /// 1:1 messages at fixed offered rates: ack and send→push latency, capacity.
    Chat {
        #[arg(long, default_value_t = 10_000)]
        users: usize,
        #[arg(long, default_value = "500,2000,5000,10000", value_delimiter = ',')]
        rates: Vec<f64>,
        #[arg(long, default_value_t = 10.0)]
        secs: f64,
        #[arg(long, default_value_t = 30)]
        drain_secs: u64,
        /// Records the bare rdkafka producer sends (Kafka backend only).
        #[arg(long, default_value_t = 200_000)]
        ceiling_records: u64,
        /// A round at the first rate before the measured ones, not reported: the
        /// consumer groups settle and the brokers' JVMs warm up (0 skips it).
        #[arg(long, default_value_t = 3.0)]
        warmup_secs: f64,
    },
    /// Messages into a group of N online members: deliveries/s, CPU per delivery.
    Fanout {
        #[arg(long, default_value = "100,1000", value_delimiter = ',')]
        members: Vec<usize>,
        /// Offered deliveries per second (message rate x recipients).
        #[arg(long, default_value_t = 50_000.0)]
        deliveries: f64,
        #[arg(long, default_value_t = 10.0)]
        secs: f64,
        /// Percentage of members that never read their socket.
        #[arg(long, default_value_t = 0.0)]
        stalled_pct: f64,
    },
    /// N clients reconnect at once and sync: time until all synced, errors.
    Storm {
        #[arg(long, default_value_t = 10_000)]
        clients: usize,
        #[arg(long, default_value_t = 2)]
        msgs: u64,
    },
    /// Conversation discovery: CPU per message with the index, and a reconnect storm
    /// of DiscoverConvs.
    Discover(scenario::discover::Args),
    /// Delayed messages: lateness past the due time.
    Delay {
        #[arg(long, default_value_t = 40)]
        senders: usize,
        #[arg(long, default_value = "1,2,3,5", value_delimiter = ',')]
        delays: Vec<u32>,
        #[arg(long, default_value_t = 5)]
        msgs: u64,
    },
    /// One sender waiting for each ack: per-request latency and closed-loop rate.
    Ack {
        #[arg(long, default_value_t = 2000)]
        msgs: u64,
    },
    /// One user's latency, quiet and while other connections flood ferry (default limits).
    Flood(scenario::flood::Args),
    /// One account's sockets with large SyncMsgList in flight: ferry's RSS growth.
    Inflight(scenario::inflight::Args),
    /// Only the bare rdkafka producer (SendMsgList ceiling).
    KafkaCeiling {
        #[arg(long, default_value_t = 200_000)]
        records: u64,
    },
    /// Internal: a client worker process (reads its job on stdin).
    #[command(hide = true)]
    Worker,
    /// Internal: a flooder process of the flood scenario.
    #[command(hide = true)]
    Flooder(flooder::Args),
    /// Internal: the bare WebSocket broadcast server.
    #[command(hide = true)]
    BareServer,
}

fn scenario_name(cmd: &Cmd) -> &'static str {
    match cmd {
        Cmd::Idle { .. } => "idle",
        Cmd::Chat { .. } => "chat",
        Cmd::Fanout { .. } => "fanout",
        Cmd::Storm { .. } => "storm",
        Cmd::Delay { .. } => "delay",
        Cmd::Discover(_) => "discover",
        Cmd::Ack { .. } => "ack",
        Cmd::Flood(_) => "flood",
        Cmd::Inflight(_) => "inflight",
        Cmd::Flooder(_) => "flooder",
        Cmd::KafkaCeiling { .. } => "kafka-ceiling",
        Cmd::Worker => "worker",
        Cmd::BareServer => "bare-server",
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    match &cli.cmd {
        Cmd::Worker => return rt.block_on(worker::main()),
        Cmd::Flooder(a) => return rt.block_on(flooder::main(a.clone())),
        Cmd::BareServer => return rt.block_on(bare::serve()),
        _ => {}
    }
    if cli.counts {
        counts::enable();
    }
    let exe = std::env::current_exe()?;
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default();
    let opts = Opts {
        ferry_bin: cli
            .ferry
            .clone()
            .unwrap_or_else(|| exe.with_file_name("ferry")),
        centrifugo_bin: cli
            .centrifugo
            .clone()
            .unwrap_or_else(|| home.join(".cache/ferry/bin/centrifugo")),
        brokers: cli.kafka.clone(),
        cql: cli.cql.clone(),
        backends: cli.backend.clone(),
        peers: cli.peers.iter().filter(|p| *p != "none").cloned().collect(),
        payload: cli.payload,
        workers: cli.workers,
        check: cli.check,
        perf: cli.perf.clone(),
    };
    let command: Vec<String> = std::env::args().collect();
    let command = command.join(" ");
    let name = scenario_name(&cli.cmd);
    let rows = rt.block_on(async {
        match &cli.cmd {
            Cmd::Idle { conns, rest_secs } => scenario::idle::run(&opts, conns, *rest_secs).await,
            Cmd::Chat {
                users,
                rates,
                secs,
                drain_secs,
                ceiling_records,
                warmup_secs,
            } => {
                let shape = scenario::chat::Shape {
                    users: *users,
                    secs: *secs,
                    drain_secs: *drain_secs,
                    warmup_secs: *warmup_secs,
                };
                scenario::chat::run(&opts, &shape, rates, *ceiling_records).await
            }
            Cmd::Fanout {
                members,
                deliveries,
                secs,
                stalled_pct,
            } => scenario::fanout::run(&opts, members, *deliveries, *secs, *stalled_pct).await,
            Cmd::Storm { clients, msgs } => scenario::storm::run(&opts, *clients, *msgs).await,
            Cmd::Delay {
                senders,
                delays,
                msgs,
            } => scenario::delay::run(&opts, *senders, delays, *msgs).await,
            Cmd::Ack { msgs } => scenario::ack::run(&opts, *msgs).await,
            Cmd::Discover(a) => scenario::discover::run(&opts, a).await,
            Cmd::Flood(a) => scenario::flood::run(&opts, a).await,
            Cmd::Inflight(a) => scenario::inflight::run(&opts, a).await,
            Cmd::KafkaCeiling { records } => {
                Ok(vec![scenario::chat::ceiling(&opts, *records, 5000).await?])
            }
            Cmd::Worker | Cmd::Flooder(_) | Cmd::BareServer => unreachable!("handled above"),
        }
    })?;
    println!("\n{}", report::markdown(&rows));
    let out = cli.out.clone().unwrap_or_else(|| {
        PathBuf::from(format!(
            "target/ferry-bench/{name}-{}.json",
            conn::now_ns() / 1_000_000_000
        ))
    });
    report::write_json(&out, &command, &rows)?;
    println!("results written to {}", out.display());
    if opts.check {
        scenario::check(&rows)?;
        println!("check passed: every expected message arrived, no errors");
    }
    Ok(())
}
