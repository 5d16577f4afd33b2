//! chat: 1:1 messages among many users at fixed offered rates (open loop). Senders and
//! recipients are on different pods when there are two. Reports ack and send→push
//! latency per rate and the highest rate whose p99 send→push stays under 100 ms.

use std::time::Duration;

use super::{round, row};
use crate::job::{Client, Sender, Target};
use crate::pool::Pool;
use crate::report::Row;
use crate::servers::SECRET;
use crate::systems::{Opts, Running, System};

/// Sustained capacity: p99 send→push under this, everything delivered.
pub const P99_LIMIT_MS: f64 = 100.0;

pub fn pair_clients(run: &Running, pairs: usize, closed_loop: bool) -> Vec<Client> {
    let mut v = Vec::with_capacity(pairs * 2);
    for i in 0..pairs {
        let (to, sub) = match run.target {
            Target::Ferry => (format!("single:r{i}-s{i}"), None),
            _ => (format!("p{i}"), Some(format!("p{i}"))),
        };
        v.push(Client {
            user: format!("s{i}"),
            server: run.send_addr(),
            subscribe: None,
            send: Some(Sender {
                to,
                deliver_after: 0,
                closed_loop,
            }),
            record_pushes: false,
            stalled: false,
            sync: None,
        });
        v.push(Client {
            user: format!("r{i}"),
            server: run.recv_addr(),
            subscribe: sub,
            send: None,
            record_pushes: true,
            stalled: false,
            sync: None,
        });
    }
    v
}

/// The rounds of a chat run: users, and each round's sending and draining time.
pub struct Shape {
    pub users: usize,
    pub secs: f64,
    pub drain_secs: u64,
    pub warmup_secs: f64,
}

pub async fn run(
    opts: &Opts,
    shape: &Shape,
    rates: &[f64],
    ceiling_records: u64,
) -> anyhow::Result<Vec<Row>> {
    let (users, secs, drain_secs) = (shape.users, shape.secs, shape.drain_secs);
    let mut rows = Vec::new();
    let pairs = (users / 2).max(1);
    for sys in opts.systems(true) {
        let run = Running::start(&sys, opts)?;
        let mut pool = Pool::start(
            run.target,
            pair_clients(&run, pairs, false),
            opts.workers,
            SECRET,
            opts.payload,
            200,
        )
        .await?;
        let label = super::idle::short(&run.label).to_owned();
        pool.connect_all(&format!("chat {label}: connect"), Duration::from_secs(300))
            .await?;
        if let Some(&rate) = rates.first()
            && shape.warmup_secs > 0.0
        {
            // Not reported: a first measured round would otherwise carry the group
            // joins, the first fetches and the JVMs' compilation.
            let count = ((rate * shape.warmup_secs) / pairs as f64).ceil().max(1.0) as u64;
            round(
                &mut pool,
                &run,
                &format!("chat {label} warm-up {rate}/s"),
                rate / pairs as f64,
                count,
                count * pairs as u64,
                Duration::from_secs_f64(shape.warmup_secs + drain_secs as f64),
            )
            .await?;
        }
        let mut sustained = None;
        for &rate in rates {
            let count = ((rate * secs) / pairs as f64).ceil().max(1.0) as u64;
            let expected = count * pairs as u64;
            let r = round(
                &mut pool,
                &run,
                &format!("chat {label} {rate}/s"),
                rate / pairs as f64,
                count,
                expected,
                Duration::from_secs_f64(secs + drain_secs as f64),
            )
            .await?;
            let mut row = row(
                "chat",
                &run,
                format!("{rate:.0} msgs/s offered, {users} users, {secs:.0} s"),
                (pairs * 2) as u64,
                rate,
                expected,
                &r,
            );
            if row.counters.received >= expected && row.e2e.p99_ms < P99_LIMIT_MS {
                sustained = Some(rate);
            }
            row.print();
            rows.push(row);
        }
        pool.exit().await;
        if let Some(last) = rows.last_mut() {
            let s = match sustained {
                Some(r) => format!(
                    "highest offered rate with p99 send→push < {P99_LIMIT_MS} ms: {r:.0} msgs/s"
                ),
                None => format!("no offered rate kept p99 send→push < {P99_LIMIT_MS} ms"),
            };
            println!("   {}: {s}", run.label);
            last.notes.push(s);
        }
        let kafka = matches!(sys, System::Ferry(crate::servers::Backend::Kafka { .. }, _));
        drop(run);
        // Once per run, after the first Kafka system.
        let measured = rows.iter().any(|r| r.system.starts_with("rdkafka"));
        if kafka && !measured && opts.peers.iter().any(|p| p == "rdkafka") {
            rows.push(ceiling(opts, ceiling_records, pairs as u64).await?);
        }
    }
    Ok(rows)
}

/// The bare producer's row, measured right after ferry on the same brokers.
pub async fn ceiling(opts: &Opts, records: u64, convs: u64) -> anyhow::Result<Row> {
    let prefix = format!(
        "benchceil{}{}.",
        std::process::id(),
        crate::conn::now_ns() % 1_000_000_000
    );
    let kafka_pids = crate::procstat::listening_on(
        opts.brokers
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or(9092),
    );
    let me = crate::procstat::Watched {
        name: "server".into(),
        pids: vec![std::process::id()],
    };
    let win = crate::procstat::Window::open(&[
        me,
        crate::procstat::Watched {
            name: "kafka".into(),
            pids: kafka_pids,
        },
    ]);
    let c = crate::kafka_ceiling::run(&opts.brokers, &prefix, records, convs, opts.payload, 10_000)
        .await?;
    let costs = win.close();
    let mut row = Row {
        scenario: "chat".into(),
        system: "rdkafka producer (acks=all, idempotent)".into(),
        params: format!(
            "{records} records of {} bytes, 10k in flight",
            c.record_bytes
        ),
        secs: c.secs,
        delivered_per_s: c.records as f64 / c.secs,
        ack: crate::hist::summary(&c.ack),
        costs,
        expected: c.records,
        notes: vec!["ceiling for SendMsgList acks: records/s acknowledged by Kafka".into()],
        ..Default::default()
    };
    row.counters.sent = c.records;
    row.counters.acked = c.records - c.errors;
    row.counters.received = c.records - c.errors;
    row.counters.errors = c.errors;
    row.print();
    Ok(row)
}
