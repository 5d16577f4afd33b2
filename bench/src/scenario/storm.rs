//! storm: N clients, each with a conversation holding a few messages, drop their
//! sockets and reconnect all at once, then run SyncConvSeq + SyncMsgList: time until
//! every client is synced, and errors. ferry only (the peers have no such sync).

use std::time::{Duration, Instant};

use super::{delta, round};
use crate::hist;
use crate::pool::Pool;
use crate::procstat::Window;
use crate::report::Row;
use crate::servers::SECRET;
use crate::systems::{Opts, Running};

pub async fn run(opts: &Opts, clients: usize, msgs: u64) -> anyhow::Result<Vec<Row>> {
    let mut rows = Vec::new();
    let pairs = (clients / 2).max(1);
    for sys in opts.systems(false) {
        let run = Running::start(&sys, opts)?;
        let mut cs = super::chat::pair_clients(&run, pairs, false);
        for (i, c) in cs.iter_mut().enumerate() {
            c.sync = Some((format!("single:r{}-s{}", i / 2, i / 2), msgs));
        }
        // The reconnect opens every socket at once; the first connect is paced.
        let mut pool = Pool::start(run.target, cs, opts.workers, SECRET, opts.payload, 200).await?;
        let label = super::idle::short(&run.label).to_owned();
        pool.connect_all(&format!("storm {label}: connect"), Duration::from_secs(300))
            .await?;
        // Seed: every conversation gets `msgs` messages, over about five seconds.
        let rate = msgs as f64 / 5.0;
        let seed = round(
            &mut pool,
            &run,
            &format!("storm {label}: seed"),
            rate,
            msgs,
            msgs * pairs as u64,
            Duration::from_secs(180),
        )
        .await?;
        if seed.counters.received < msgs * pairs as u64 {
            eprintln!(
                "storm: only {} of {} seed messages arrived",
                seed.counters.received,
                msgs * pairs as u64
            );
        }
        let base = pool.counters();
        let win = Window::open(&run.watched(Some(&pool)));
        let t0 = Instant::now();
        pool.reconnect().await?;
        let n = (pairs * 2) as u64;
        let gone = |c: &crate::job::Counters| {
            let d = delta(c, &base);
            d.synced + d.sync_errors + d.connect_errors
        };
        pool.wait_until(
            &format!("storm {label}: reconnect + sync"),
            n,
            Duration::from_secs(300),
            gone,
            |c| gone(c) >= n,
        )
        .await?;
        let secs = t0.elapsed().as_secs_f64();
        let costs = win.close();
        let outcome = pool.stop().await?;
        pool.exit().await;
        let counters = delta(&outcome.counters, &base);
        let mut row = Row {
            scenario: "storm".into(),
            system: run.label.clone(),
            params: format!("{n} clients reconnect at once, {msgs} msgs per conversation"),
            connections: n,
            secs,
            delivered_per_s: counters.synced as f64 / secs,
            e2e: hist::summary(&outcome.e2e),
            connect: hist::summary(&outcome.connect),
            costs,
            notes: outcome.samples.iter().take(3).cloned().collect(),
            counters,
            ..Default::default()
        };
        row.notes.insert(
            0,
            format!(
                "{} of {n} synced after {secs:.2} s (send→push column: time until each client was synced)",
                row.counters.synced
            ),
        );
        if let Some(s) = row.system_cost() {
            row.cpu_pct = 100.0 * s.cpu_secs / secs;
        }
        row.print();
        rows.push(row);
    }
    Ok(rows)
}
