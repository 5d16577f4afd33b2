//! ack: one sender waiting for each ack before the next (closed loop), one recipient:
//! per-request latency without queueing, and the rate one client reaches that way.

use std::time::Duration;

use super::{round, row};
use crate::job::Target;
use crate::pool::Pool;
use crate::report::Row;
use crate::servers::SECRET;
use crate::systems::{Opts, Running};

pub async fn run(opts: &Opts, msgs: u64) -> anyhow::Result<Vec<Row>> {
    let mut rows = Vec::new();
    for sys in opts.systems(true) {
        let run = Running::start(&sys, opts)?;
        if run.target == Target::Bare {
            // The bare server answers nothing, so there is no ack to wait for.
            continue;
        }
        let mut pool = Pool::start(
            run.target,
            super::chat::pair_clients(&run, 1, true),
            1,
            SECRET,
            opts.payload,
            1,
        )
        .await?;
        let label = super::idle::short(&run.label).to_owned();
        pool.connect_all(&format!("ack {label}: connect"), Duration::from_secs(60))
            .await?;
        let r = round(
            &mut pool,
            &run,
            &format!("ack {label}"),
            1e9,
            msgs,
            msgs,
            Duration::from_secs(120),
        )
        .await?;
        pool.exit().await;
        let mut row = row(
            "ack",
            &run,
            format!("1 sender waiting for each ack, {msgs} msgs"),
            2,
            0.0,
            msgs,
            &r,
        );
        row.notes.insert(
            0,
            format!(
                "{:.0} msgs/s from one closed-loop sender",
                r.counters.acked as f64 / r.secs
            ),
        );
        row.print();
        rows.push(row);
    }
    Ok(rows)
}
