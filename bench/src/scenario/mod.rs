//! The scenarios, each one command. Shared here: running one measured round of sends
//! and turning what was measured into a row.

pub mod ack;
pub mod chat;
pub mod delay;
pub mod discover;
pub mod fanout;
pub mod flood;
pub mod idle;
pub mod inflight;
pub mod storm;
pub mod victim;

use std::time::Duration;

use crate::hist;
use crate::job::Counters;
use crate::pool::{Outcome, Pool};
use crate::procstat::{Cost, Window};
use crate::report::Row;
use crate::systems::Running;

pub fn delta(a: &Counters, b: &Counters) -> Counters {
    Counters {
        connected: a.connected.saturating_sub(b.connected),
        connect_errors: a.connect_errors.saturating_sub(b.connect_errors),
        sent: a.sent.saturating_sub(b.sent),
        acked: a.acked.saturating_sub(b.acked),
        errors: a.errors.saturating_sub(b.errors),
        received: a.received.saturating_sub(b.received),
        early: a.early.saturating_sub(b.early),
        synced: a.synced.saturating_sub(b.synced),
        sync_errors: a.sync_errors.saturating_sub(b.sync_errors),
    }
}

pub struct Round {
    pub counters: Counters,
    pub outcome: Outcome,
    pub costs: Vec<Cost>,
    pub secs: f64,
    pub counts: Option<crate::counts::Counts>,
}

/// Every sender sends `count` messages at `rate`/s; waits until `expected` pushes have
/// arrived (or `limit` passes), measuring every watched process over the round.
pub async fn round(
    pool: &mut Pool,
    run: &Running,
    label: &str,
    rate: f64,
    count: u64,
    expected: u64,
    limit: Duration,
) -> anyhow::Result<Round> {
    let base = pool.counters();
    let profile = run.perf.as_ref().and_then(|dir| {
        let _ = std::fs::create_dir_all(dir);
        let name: String = label
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        let pids: Vec<u32> = run.procs.iter().map(|p| p.pid()).collect();
        crate::perf::start(&pids, dir.join(format!("{name}.txt")))
    });
    let probe = match crate::counts::enabled() {
        true => Some(crate::counts::Probe::start(run.count_targets(), run.cql.clone()).await),
        false => None,
    };
    let win = Window::open(&run.watched(Some(pool)));
    pool.go(rate, count).await?;
    let (_, _) = pool
        .wait_until(
            label,
            expected,
            limit,
            |c| c.received.saturating_sub(base.received),
            |c| c.received.saturating_sub(base.received) >= expected,
        )
        .await?;
    let costs = win.close();
    let secs = win.secs();
    let received = pool.counters().received.saturating_sub(base.received);
    let counts = match probe {
        Some(p) => Some(p.finish(received).await),
        None => None,
    };
    if let Some(p) = profile {
        p.finish();
    }
    let outcome = pool.stop().await?;
    let counters = delta(&outcome.counters, &base);
    Ok(Round {
        counters,
        outcome,
        costs,
        secs,
        counts,
    })
}

/// A row from a round; `deliveries` is what the server's CPU is divided by.
pub fn row(
    scenario: &str,
    run: &Running,
    params: String,
    conns: u64,
    offered: f64,
    expected: u64,
    r: &Round,
) -> Row {
    let mut row = Row {
        scenario: scenario.into(),
        system: run.label.clone(),
        params,
        connections: conns,
        offered_per_s: offered,
        secs: r.secs,
        counters: r.counters.clone(),
        expected,
        delivered_per_s: r.counters.received as f64 / r.secs.max(1e-9),
        ack: hist::summary(&r.outcome.ack),
        e2e: hist::summary(&r.outcome.e2e),
        connect: hist::summary(&r.outcome.connect),
        costs: r.costs.clone(),
        notes: r.outcome.samples.iter().take(3).cloned().collect(),
        counts: r.counts.clone(),
        ..Default::default()
    };
    if let Some(s) = row.system_cost() {
        let (cpu, delivered) = (s.cpu_secs, r.counters.received);
        row.cpu_pct = 100.0 * cpu / r.secs.max(1e-9);
        if delivered > 0 {
            row.cpu_us_per_delivery = Some(cpu * 1e6 / delivered as f64);
        }
        if cpu > 0.0 {
            row.deliveries_per_core_s = Some(delivered as f64 / cpu);
        }
    }
    row
}

/// With --check: every expected message arrived and nothing failed.
pub fn check(rows: &[Row]) -> anyhow::Result<()> {
    for r in rows {
        let c = &r.counters;
        let bad = c.errors + c.connect_errors + c.sync_errors + c.early;
        let unsynced = r.scenario == "storm" && c.synced < r.connections;
        if c.received < r.expected || bad > 0 || unsynced {
            anyhow::bail!(
                "{} / {} / {}: {} of {} delivered, {} synced, {} errors ({:?})",
                r.scenario,
                r.system,
                r.params,
                c.received,
                r.expected,
                c.synced,
                bad,
                r.notes
            );
        }
    }
    Ok(())
}
