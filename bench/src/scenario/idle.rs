//! idle: N idle connections per server process, pinging every 2 s as the SDKs do:
//! RSS per connection, and CPU at rest.

use std::time::Duration;

use crate::job::Client;
use crate::pool::Pool;
use crate::procstat::Window;
use crate::report::Row;
use crate::servers::SECRET;
use crate::systems::{Opts, Running};

pub async fn run(opts: &Opts, conns: &[usize], rest_secs: u64) -> anyhow::Result<Vec<Row>> {
    let mut rows = Vec::new();
    for &n in conns {
        for sys in opts.systems(true) {
            let run = Running::start(&sys, opts)?;
            let pods = run.pods();
            let total = n * pods;
            let clients = (0..total)
                .map(|i| Client {
                    user: format!("i{i}"),
                    server: run.procs[i % pods].addr.clone(),
                    subscribe: None,
                    send: None,
                    record_pushes: false,
                    stalled: false,
                    sync: None,
                })
                .collect();
            // Let the server finish starting before its baseline is taken.
            tokio::time::sleep(Duration::from_secs(2)).await;
            let mem = Window::open(&run.watched(None));
            let mut pool =
                Pool::start(run.target, clients, opts.workers, SECRET, opts.payload, 200).await?;
            let label = format!("idle {n}/proc {}", short(&run.label));
            pool.connect_all(&label, Duration::from_secs(300)).await?;
            tokio::time::sleep(Duration::from_secs(3)).await;
            let grown = mem.close();
            // Sampled only at rest: the profile is the keep-alive's cost, not the connects'.
            let profile = run.perf.as_ref().and_then(|dir| {
                let _ = std::fs::create_dir_all(dir);
                let pids: Vec<u32> = run.procs.iter().map(|p| p.pid()).collect();
                crate::perf::start(&pids, dir.join(format!("idle-{n}.txt")))
            });
            let rest = Window::open(&run.watched(Some(&pool)));
            tokio::time::sleep(Duration::from_secs(rest_secs)).await;
            let costs = rest.close();
            let secs = rest.secs();
            if let Some(p) = profile {
                p.finish();
            }
            let outcome = pool.stop().await?;
            pool.exit().await;
            let server_growth = grown
                .iter()
                .find(|c| c.name == "server")
                .map(|c| c.rss_growth_bytes)
                .unwrap_or(0);
            let mut row = Row {
                scenario: "idle".into(),
                system: run.label.clone(),
                params: format!("{n} per process, {rest_secs} s at rest"),
                connections: total as u64,
                secs,
                counters: outcome.counters.clone(),
                connect: crate::hist::summary(&outcome.connect),
                costs,
                bytes_per_conn: Some(server_growth as f64 / total as f64),
                notes: outcome.samples.iter().take(3).cloned().collect(),
                ..Default::default()
            };
            if let Some(s) = row.system_cost() {
                row.cpu_pct = 100.0 * s.cpu_secs / secs;
            }
            row.print();
            rows.push(row);
            drop(run);
        }
    }
    Ok(rows)
}

pub fn short(label: &str) -> &str {
    label.split(" (").next().unwrap_or(label)
}
