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
    pub notes: Vec<String>,
}

impl Row {
    pub fn system_cost(&self) -> Option<&Cost> {
        self.costs.iter().find(|c| c.name == "server")
    }

    pub fn print(&self) {
        let c = &self.counters;
        println!(
            "\n== {} | {} | {} | {} conns",
            self.scenario, self.system, self.params, self.connections
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

/// One Markdown table of all rows (the format BENCHMARKS.md uses).
pub fn markdown(rows: &[Row]) -> String {
    let mut t = String::from(
        "| scenario | system | load | conns | delivered/s | ack p50/p99 ms | send→push p50/p99/p99.9/max ms | server CPU % | µs CPU/delivery | KB/conn | errors |\n|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        let c = &r.counters;
        t.push_str(&format!(
            "| {} | {} | {} | {} | {:.0} | {} / {} | {} / {} / {} / {} | {:.0} | {} | {} | {} |\n",
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
        ));
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
