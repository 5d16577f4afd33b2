//! Rows of results: printed as a human summary and a Markdown table, and written to a
//! JSON result file.

use serde::Serialize;

use crate::hist::Summary;
use crate::job::Counters;
use crate::procstat::Cost;

#[derive(Clone, Debug, Default, Serialize)]
pub struct Row {
    pub scenario: String,
    /// ferry (embedded / kafka+cassandra, pods), centrifugo, bare-ws, rdkafka.
    pub system: String,
    pub params: String,
    pub connections: u64,
    pub offered_per_s: f64,
    pub secs: f64,
    pub counters: Counters,
    /// Messages expected at recipients.
    pub expected: u64,
    /// Delivered messages (or records, syncs) per second over the window.
    pub delivered_per_s: f64,
    pub ack: Summary,
    pub e2e: Summary,
    pub connect: Summary,
    /// Every watched process group over the window (server, brokers, load generator).
    pub costs: Vec<Cost>,
    /// CPU of the system under test (all its processes) per delivered message, µs.
    pub cpu_us_per_delivery: Option<f64>,
    /// Deliveries per second per core of the system under test.
    pub deliveries_per_core_s: Option<f64>,
    /// RSS growth of the system under test per connection, bytes.
    pub bytes_per_conn: Option<f64>,
    /// CPU of the system under test as a percentage of one core over the window.
    pub cpu_pct: f64,
    /// The machine's 1-minute load average when the window closed (other work on the
    /// same cores moves absolute numbers; ratios within one run are what compare).
    pub load_avg: f64,
    pub notes: Vec<String>,
    /// The flood scenario's flooded row: quiet vs flooded percentiles, flooders' counts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flood: Option<crate::scenario::flood::Isolation>,
    /// `--counts`: requests per message, per process.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub counts: Option<crate::counts::Counts>,
}

impl Row {
    pub fn system_cost(&self) -> Option<&Cost> {
        self.costs.iter().find(|c| c.name == "server")
    }

    /// Stamps the load average (the row's window has just closed) and prints the row.
    pub fn print(&mut self) {
        self.load_avg = crate::machine::load_avg();
        let c = &self.counters;
        println!(
            "\n== {} | {} | {} | {} conns | load average {:.1}",
            self.scenario, self.system, self.params, self.connections, self.load_avg
        );
        println!(
            "   sent {} acked {} errors {} connect errors {} | delivered {}/{} ({:.0}/s){}",
            c.sent,
            c.acked,
            c.errors,
            c.connect_errors,
            c.received,
            self.expected,
            self.delivered_per_s,
            if c.synced + c.sync_errors > 0 {
                format!(" | synced {} sync errors {}", c.synced, c.sync_errors)
            } else {
                String::new()
            }
        );
        if self.ack.count > 0 {
            println!("   ack        {}", self.ack);
        }
        if self.e2e.count > 0 {
            println!("   send→push  {}", self.e2e);
        }
        if self.connect.count > 0 {
            println!("   connect    {}", self.connect);
        }
        for cost in &self.costs {
            println!(
                "   {:<10} CPU {:.2} s ({:.0}% of a core)  RSS {:.1} MB (grew {:.1} MB)",
                cost.name,
                cost.cpu_secs,
                100.0 * cost.cpu_secs / self.secs.max(1e-9),
                cost.rss_bytes as f64 / 1e6,
                cost.rss_growth_bytes as f64 / 1e6
            );
        }
        if let Some(v) = self.cpu_us_per_delivery {
            println!("   server CPU per delivery {v:.2} µs");
        }
        if let Some(v) = self.bytes_per_conn {
            println!("   server RSS per connection {:.2} KB", v / 1024.0);
        }
        if let Some(c) = &self.counts {
            c.print();
        }
        for n in &self.notes {
            println!("   note: {n}");
        }
    }
}

fn ms(s: &Summary, f: impl Fn(&Summary) -> f64) -> String {
    if s.count == 0 {
        "–".into()
    } else {
        format!("{:.1}", f(s))
    }
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map(|v| format!("{v:.digits$}"))
        .unwrap_or_else(|| "–".into())
}

/// ferry's value over the peer's, e.g. "2.1× CPU/delivery"; None when either is missing.
fn ratio(ferry: Option<f64>, peer: Option<f64>, what: &str) -> Option<String> {
    let (f, p) = (ferry?, peer?);
    (p > 0.0 && f.is_finite()).then(|| format!("{:.1}× {what}", f / p))
}

fn p99(s: &Summary) -> Option<f64> {
    (s.count > 0).then_some(s.p99_ms)
}

/// How a ferry row compares with a peer's row of the same load: memory and CPU at rest
/// for idle rows, CPU per delivery and p99 send→push otherwise.
fn versus(r: &Row, peer: &Row) -> String {
    let parts: Vec<String> = if r.scenario == "idle" {
        vec![
            ratio(r.bytes_per_conn, peer.bytes_per_conn, "mem/conn"),
            ratio(Some(r.cpu_pct), Some(peer.cpu_pct), "CPU"),
        ]
    } else {
        vec![
            ratio(
                r.cpu_us_per_delivery,
                peer.cpu_us_per_delivery,
                "CPU/delivery",
            ),
            ratio(p99(&r.e2e), p99(&peer.e2e), "p99"),
        ]
    }
    .into_iter()
    .flatten()
    .collect();
    if parts.is_empty() {
        "–".into()
    } else {
        parts.join(", ")
    }
}

/// The ratio columns of a ferry row: against Centrifugo and the bare server of the same
/// scenario and load, and (chat on Kafka) acks/s against the bare producer's records/s.
fn ratios(r: &Row, rows: &[Row]) -> [String; 3] {
    if !r.system.starts_with("ferry") {
        return ["–".into(), "–".into(), "–".into()];
    }
    let peer = |prefix: &str| {
        rows.iter()
            .find(|p| {
                p.scenario == r.scenario && p.params == r.params && p.system.starts_with(prefix)
            })
            .map(|p| versus(r, p))
            .unwrap_or_else(|| "–".into())
    };
    // Every ack has arrived by the end of the send schedule plus the slowest ack's
    // latency (measured from its scheduled send time): a lower bound on ferry's acks/s.
    let ceiling = rows
        .iter()
        .find(|p| p.scenario == r.scenario && p.system.starts_with("rdkafka"))
        .filter(|_| r.system.contains("kafka") && r.offered_per_s > 0.0 && r.ack.count > 0)
        .map(|p| {
            let schedule = r.counters.sent as f64 / r.offered_per_s;
            let acks = r.counters.acked as f64 / (schedule + r.ack.max_ms / 1000.0);
            format!("{:.2}× acks/s", acks / p.delivered_per_s.max(1e-9))
        })
        .unwrap_or_else(|| "–".into());
    [peer("Centrifugo"), peer("bare"), ceiling]
}

/// One Markdown table of all rows (the format BENCHMARKS.md uses), with ferry's ratios
/// to the peers and the ceiling measured in the same run.
pub fn markdown(rows: &[Row]) -> String {
    let mut t = String::from(
        "| scenario | system | load | conns | delivered/s | ack p50/p99 ms | send→push p50/p99/p99.9/max ms | server CPU % | µs CPU/delivery | KB/conn | errors | load avg | vs Centrifugo | vs bare | vs rdkafka |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        let c = &r.counters;
        let [vc, vb, vk] = ratios(r, rows);
        t.push_str(&format!(
            "| {} | {} | {} | {} | {:.0} | {} / {} | {} / {} / {} / {} | {:.0} | {} | {} | {} | {:.1} | {vc} | {vb} | {vk} |\n",
            r.scenario,
            r.system,
            r.params,
            r.connections,
            r.delivered_per_s,
            ms(&r.ack, |s| s.p50_ms),
            ms(&r.ack, |s| s.p99_ms),
            ms(&r.e2e, |s| s.p50_ms),
            ms(&r.e2e, |s| s.p99_ms),
            ms(&r.e2e, |s| s.p999_ms),
            ms(&r.e2e, |s| s.max_ms),
            r.cpu_pct,
            opt(r.cpu_us_per_delivery, 2),
            opt(r.bytes_per_conn.map(|b| b / 1024.0), 2),
            c.errors + c.connect_errors + c.sync_errors + c.early,
            r.load_avg,
        ));
        for n in r.notes.iter().filter(|n| {
            n.starts_with("highest")
                || n.starts_with("no offered")
                || n.contains(" synced after ")
                || n.starts_with("victim p99")
        }) {
            t.push_str(&format!(
                "|  |  | ↳ {n} |  |  |  |  |  |  |  |  |  |  |  |  |\n"
            ));
        }
    }
    t
}

pub fn write_json(path: &std::path::Path, command: &str, rows: &[Row]) -> anyhow::Result<()> {
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d)?;
    }
    let doc = serde_json::json!({
        "command": command,
        "machine": crate::machine::describe(),
        "rows": rows,
    });
    std::fs::write(path, serde_json::to_vec_pretty(&doc)?)?;
    Ok(())
}
