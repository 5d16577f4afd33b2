//! `--counts`: what one message costs in requests, per process, over a measured round.
//!
//! - Kafka requests by type (Produce, Fetch, the rest) each ferry pod sent: librdkafka's
//!   own statistics, which ferry adds to /metrics when `statistics.interval.ms` is set
//!   (`ferry_kafka_requests_total`; set here at 1 s for every pod).
//! - CQL requests each pod sent (statements, batches and prepares alike): Cassandra's
//!   `system_views.clients.request_count` of the pod's own connections, matched by
//!   their local ports; and the writes and reads Cassandra coordinated per table of
//!   the run's keyspace (`system_views.coordinator_{write,read}_latency`), i.e.
//!   mutations per message.
//! - Per process (both pods, the broker, Cassandra): context switches (each one a
//!   thread sleeping or being preempted: the wake-ups), futex and epoll_wait calls,
//!   writes (`write`, `writev`, `sendto`, `sendmsg`) and reads (`read`, `recvfrom`,
//!   `recvmsg`), counted by `perf stat` on the syscall tracepoints.
//!
//! Counts do not depend on how busy the machine is, unlike CPU time; ferry's counters
//! are per pod, but the broker's and Cassandra's are the whole process: run them alone
//! (`scripts/services/services.sh` with other ports) for those columns to mean this run.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};

use serde::Serialize;

static ON: AtomicBool = AtomicBool::new(false);

pub fn enable() {
    ON.store(true, Ordering::Relaxed);
}

pub fn enabled() -> bool {
    ON.load(Ordering::Relaxed)
}

/// The syscall tracepoints counted, and the column each adds to.
const EVENTS: &[(&str, &str)] = &[
    ("context-switches", "ctx_switches"),
    ("syscalls:sys_enter_futex", "futex"),
    ("syscalls:sys_enter_epoll_wait", "epoll_wait"),
    ("syscalls:sys_enter_epoll_pwait", "epoll_wait"),
    ("syscalls:sys_enter_write", "writes"),
    ("syscalls:sys_enter_writev", "writes"),
    ("syscalls:sys_enter_sendto", "writes"),
    ("syscalls:sys_enter_sendmsg", "writes"),
    ("syscalls:sys_enter_read", "reads"),
    ("syscalls:sys_enter_recvfrom", "reads"),
    ("syscalls:sys_enter_recvmsg", "reads"),
];

/// One process of the system under test.
#[derive(Clone, Debug)]
pub struct Target {
    pub name: String,
    pub pid: u32,
    /// A ferry pod's HTTP address (its /metrics); None for the services.
    pub http: Option<String>,
}

/// Counts of one process over a round, per delivered message.
#[derive(Clone, Debug, Default, Serialize)]
pub struct PerProcess {
    pub name: String,
    /// Column → count per message.
    pub per_msg: BTreeMap<String, f64>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Counts {
    pub messages: u64,
    pub processes: Vec<PerProcess>,
    /// Per table of the run's keyspace: coordinated writes and reads per message.
    pub tables: BTreeMap<String, (f64, f64)>,
}

struct Stat {
    child: Child,
    out: PathBuf,
}

pub struct Probe {
    targets: Vec<Target>,
    stats: Vec<Option<Stat>>,
    before: Vec<BTreeMap<String, f64>>,
    cql: Option<Cql>,
    cql_before: Option<CqlSnap>,
}

impl Probe {
    pub async fn start(targets: Vec<Target>, cql: Option<(String, String)>) -> Self {
        let cql = match cql {
            Some((node, ks)) => match Cql::connect(&node, &ks).await {
                Ok(c) => Some(c),
                Err(e) => {
                    eprintln!("counts: CQL {node}: {e}; no CQL columns");
                    None
                }
            },
            None => None,
        };
        let before = targets.iter().map(scrape).collect();
        let cql_before = match &cql {
            Some(c) => c.snap().await.ok(),
            None => None,
        };
        let stats = targets.iter().map(|t| perf_stat(t.pid)).collect();
        Self {
            targets,
            stats,
            before,
            cql,
            cql_before,
        }
    }

    pub async fn finish(self, messages: u64) -> Counts {
        let mut syscalls = Vec::new();
        for s in self.stats {
            syscalls.push(s.map(stop).unwrap_or_default());
        }
        let cql_after = match &self.cql {
            Some(c) => c.snap().await.ok(),
            None => None,
        };
        let n = messages.max(1) as f64;
        let mut out = Counts {
            messages,
            ..Default::default()
        };
        for (i, t) in self.targets.iter().enumerate() {
            let mut per_msg = BTreeMap::new();
            let after = scrape(t);
            for (k, v) in &after {
                let d = v - self.before[i].get(k).copied().unwrap_or(0.0);
                per_msg.insert(k.clone(), d / n);
            }
            for (k, v) in &syscalls[i] {
                per_msg.insert(k.clone(), v / n);
            }
            if let (Some(b), Some(a)) = (&self.cql_before, &cql_after) {
                let ports = crate::procstat::socket_ports(t.pid, a.port);
                if !ports.is_empty() && t.http.is_some() {
                    let sum = |s: &CqlSnap| -> f64 {
                        ports
                            .iter()
                            .map(|p| s.clients.get(p).copied().unwrap_or(0) as f64)
                            .sum()
                    };
                    per_msg.insert("cql_requests".into(), (sum(a) - sum(b)) / n);
                }
            }
            out.processes.push(PerProcess {
                name: t.name.clone(),
                per_msg,
            });
        }
        if let (Some(b), Some(a)) = (&self.cql_before, &cql_after) {
            for (table, (w, r)) in &a.tables {
                let (w0, r0) = b.tables.get(table).copied().unwrap_or((0, 0));
                let (dw, dr) = (w.saturating_sub(w0), r.saturating_sub(r0));
                if dw + dr > 0 {
                    out.tables
                        .insert(table.clone(), (dw as f64 / n, dr as f64 / n));
                }
            }
        }
        out
    }
}

impl Counts {
    pub fn print(&self) {
        println!("   requests per message ({} messages):", self.messages);
        for p in &self.processes {
            let cols: Vec<String> = p
                .per_msg
                .iter()
                .filter(|(_, v)| **v > 0.0)
                .map(|(k, v)| format!("{k} {v:.2}"))
                .collect();
            println!("     {:<10} {}", p.name, cols.join(" | "));
        }
        if !self.tables.is_empty() {
            let t: Vec<String> = self
                .tables
                .iter()
                .map(|(k, (w, r))| format!("{k} w {w:.2} r {r:.2}"))
                .collect();
            println!("     cassandra tables: {}", t.join(" | "));
        }
    }
}

/// A ferry pod's librdkafka request counters: Produce, Fetch and the rest summed.
fn scrape(t: &Target) -> BTreeMap<String, f64> {
    let mut m = BTreeMap::new();
    let Some(addr) = &t.http else { return m };
    let Ok((200, body)) = crate::http::request(addr, "GET", "/metrics", None) else {
        return m;
    };
    for line in body.lines() {
        let Some(rest) = line.strip_prefix("ferry_kafka_requests_total{") else {
            continue;
        };
        let Some((labels, value)) = rest.rsplit_once("} ") else {
            continue;
        };
        let Ok(v) = value.trim().parse::<f64>() else {
            continue;
        };
        let request = labels
            .split(',')
            .find_map(|l| l.strip_prefix("request=\""))
            .map(|r| r.trim_end_matches('"'))
            .unwrap_or("?");
        let col = match request {
            "Produce" => "kafka_produce",
            "Fetch" => "kafka_fetch",
            _ => "kafka_other",
        };
        *m.entry(col.to_owned()).or_default() += v;
    }
    m
}

fn perf_stat(pid: u32) -> Option<Stat> {
    let out = std::env::temp_dir().join(format!(
        "ferry-bench-stat-{}-{pid}-{}.csv",
        std::process::id(),
        crate::conn::now_ns()
    ));
    let events: Vec<&str> = EVENTS.iter().map(|(e, _)| *e).collect();
    let child = Command::new("perf")
        .args(["stat", "-x", ",", "-e", &events.join(","), "-o"])
        .arg(&out)
        .args(["-p", &pid.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    match child {
        Ok(child) => Some(Stat { child, out }),
        Err(e) => {
            eprintln!("counts: perf stat could not start ({e}); no syscall columns");
            None
        }
    }
}

fn stop(mut s: Stat) -> BTreeMap<String, f64> {
    let _ = Command::new("kill")
        .args(["-INT", &s.child.id().to_string()])
        .status();
    let _ = s.child.wait();
    let text = std::fs::read_to_string(&s.out).unwrap_or_default();
    let _ = std::fs::remove_file(&s.out);
    let mut m = BTreeMap::new();
    // CSV: count,unit,event,...
    for line in text.lines() {
        let f: Vec<&str> = line.split(',').collect();
        let (Some(count), Some(event)) = (f.first(), f.get(2)) else {
            continue;
        };
        let Ok(v) = count.parse::<f64>() else {
            continue;
        };
        if let Some((_, col)) = EVENTS.iter().find(|(e, _)| e == event) {
            *m.entry((*col).to_owned()).or_default() += v;
        }
    }
    m
}

struct Cql {
    session: scylla::client::session::Session,
    keyspace: String,
    port: u16,
}

struct CqlSnap {
    port: u16,
    /// Client port → requests on that connection.
    clients: BTreeMap<u16, i64>,
    /// Table → (coordinated writes, coordinated reads).
    tables: BTreeMap<String, (i64, i64)>,
}

impl Cql {
    async fn connect(node: &str, keyspace: &str) -> anyhow::Result<Self> {
        let session = scylla::client::session_builder::SessionBuilder::new()
            .known_node(node)
            .build()
            .await?;
        let port = node
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or(9042);
        Ok(Self {
            session,
            keyspace: keyspace.to_owned(),
            port,
        })
    }

    async fn snap(&self) -> anyhow::Result<CqlSnap> {
        let mut clients = BTreeMap::new();
        let r = self
            .session
            .query_unpaged("SELECT port, request_count FROM system_views.clients", ())
            .await?
            .into_rows_result()?;
        for row in r.rows::<(i32, Option<i64>)>()? {
            let (port, n) = row?;
            clients.insert(port as u16, n.unwrap_or(0));
        }
        let mut tables: BTreeMap<String, (i64, i64)> = BTreeMap::new();
        for (view, write) in [
            ("coordinator_write_latency", true),
            ("coordinator_read_latency", false),
        ] {
            let r = self
                .session
                .query_unpaged(
                    format!(
                        "SELECT table_name, count FROM system_views.{view} \
                         WHERE keyspace_name = ? ALLOW FILTERING"
                    ),
                    (&self.keyspace,),
                )
                .await?
                .into_rows_result()?;
            for row in r.rows::<(String, Option<i64>)>()? {
                let (table, n) = row?;
                let e = tables.entry(table).or_default();
                if write {
                    e.0 = n.unwrap_or(0);
                } else {
                    e.1 = n.unwrap_or(0);
                }
            }
        }
        Ok(CqlSnap {
            port: self.port,
            clients,
            tables,
        })
    }
}
