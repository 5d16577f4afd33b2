//! fanout: one group of N online members, messages sent into it at a fixed rate:
//! deliveries per second, server CPU per delivery and per core, send→push latency.
//! Optionally a share of members never read their socket (stalled readers).

use std::time::Duration;

use super::{round, row};
use crate::job::{Client, Sender, Target};
use crate::pool::Pool;
use crate::report::Row;
use crate::servers::{SECRET, SERVICE_TOKEN};
use crate::systems::{Opts, Running};

/// Makes every member a member of the ferry group through the server API, eight
/// requests at a time.
async fn add_members(addr: String, group: String, members: usize) -> anyhow::Result<()> {
    let mut tasks = tokio::task::JoinSet::new();
    for lane in 0..8 {
        let (addr, group) = (addr.clone(), group.clone());
        tasks.spawn_blocking(move || -> anyhow::Result<()> {
            for j in (lane..members).step_by(8) {
                let path = format!("/api/v1/groups/{group}/members/u{j}");
                let (status, body) =
                    crate::http::request(&addr, "PUT", &path, Some(SERVICE_TOKEN))
                        .map_err(|e| anyhow::anyhow!("{path}: {e}"))?;
                if status / 100 != 2 {
                    anyhow::bail!("{path}: {status} {body}");
                }
            }
            Ok(())
        });
    }
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    Ok(())
}

pub async fn run(
    opts: &Opts,
    members: &[usize],
    deliveries: f64,
    secs: f64,
    stalled_pct: f64,
) -> anyhow::Result<Vec<Row>> {
    let mut rows = Vec::new();
    for &m in members {
        let m = m.max(2);
        for sys in opts.systems(true) {
            let run = Running::start(&sys, opts)?;
            let group = format!("g{m}");
            if run.target == Target::Ferry {
                add_members(run.send_addr(), group.clone(), m).await?;
            }
            let to = match run.target {
                Target::Ferry => format!("group:{group}"),
                _ => group.clone(),
            };
            let stalled = ((m - 1) as f64 * stalled_pct / 100.0).ceil() as usize;
            let mut clients = vec![Client {
                user: "u0".into(),
                server: run.send_addr(),
                subscribe: None,
                send: Some(Sender {
                    to,
                    deliver_after: 0,
                    closed_loop: false,
                }),
                record_pushes: false,
                stalled: false,
                sync: None,
            }];
            for j in 1..m {
                let stall = j <= stalled;
                clients.push(Client {
                    user: format!("u{j}"),
                    server: run.recv_addr(),
                    subscribe: (run.target != Target::Ferry).then(|| group.clone()),
                    send: None,
                    record_pushes: !stall,
                    stalled: stall,
                    sync: None,
                });
            }
            let mut pool =
                Pool::start(run.target, clients, opts.workers, SECRET, opts.payload, 200).await?;
            let label = super::idle::short(&run.label).to_owned();
            pool.connect_all(
                &format!("fanout {m} {label}: connect"),
                Duration::from_secs(120),
            )
            .await?;
            let rate = deliveries / (m - 1) as f64;
            let count = (rate * secs).ceil().max(1.0) as u64;
            let expected = count * (m - 1 - stalled) as u64;
            let r = round(
                &mut pool,
                &run,
                &format!("fanout {m} {label}"),
                rate,
                count,
                expected,
                Duration::from_secs_f64(secs + 30.0),
            )
            .await?;
            pool.exit().await;
            let mut row = row(
                "fanout",
                &run,
                format!(
                    "{m} members, {rate:.0} msgs/s offered ({deliveries:.0} deliveries/s), {secs:.0} s{}",
                    if stalled > 0 {
                        format!(", {stalled} stalled readers")
                    } else {
                        String::new()
                    }
                ),
                m as u64,
                rate,
                expected,
                &r,
            );
            if let Some(v) = row.deliveries_per_core_s {
                row.notes
                    .push(format!("{v:.0} deliveries per server CPU second"));
            }
            row.print();
            rows.push(row);
        }
    }
    Ok(rows)
}
