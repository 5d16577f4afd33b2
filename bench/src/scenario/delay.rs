//! delay: messages sent with deliverAfter; the lateness of each push past its due time
//! (send time + delay). ferry only. Short delays run for real: ferry has no injectable
//! clock, so long delays are not measured here.

use std::time::Duration;

use super::{round, row};
use crate::pool::Pool;
use crate::report::Row;
use crate::servers::SECRET;
use crate::systems::{Opts, Running};

pub async fn run(
    opts: &Opts,
    senders: usize,
    delays: &[u32],
    msgs: u64,
) -> anyhow::Result<Vec<Row>> {
    let mut rows = Vec::new();
    let longest = delays.iter().copied().max().unwrap_or(0);
    for sys in opts.systems(false) {
        let run = Running::start(&sys, opts)?;
        let mut cs = super::chat::pair_clients(&run, senders, false);
        for (i, c) in cs.iter_mut().enumerate() {
            if let Some(s) = c.send.as_mut() {
                s.deliver_after = delays[(i / 2) % delays.len().max(1)];
            }
        }
        let mut pool = Pool::start(run.target, cs, opts.workers, SECRET, opts.payload, 200).await?;
        let label = super::idle::short(&run.label).to_owned();
        pool.connect_all(&format!("delay {label}: connect"), Duration::from_secs(120))
            .await?;
        let rate = 2.0;
        let expected = msgs * senders as u64;
        let r = round(
            &mut pool,
            &run,
            &format!("delay {label}"),
            rate,
            msgs,
            expected,
            Duration::from_secs_f64(msgs as f64 / rate + f64::from(longest) + 30.0),
        )
        .await?;
        pool.exit().await;
        let mut row = row(
            "delay",
            &run,
            format!("deliverAfter {delays:?} s, {senders} senders x {msgs} msgs"),
            (senders * 2) as u64,
            rate * senders as f64,
            expected,
            &r,
        );
        row.notes
            .insert(0, "send→push column: lateness past the due time".into());
        row.cpu_us_per_delivery = None;
        row.print();
        rows.push(row);
    }
    Ok(rows)
}
