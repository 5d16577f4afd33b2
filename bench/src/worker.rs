//! A worker process: the coordinator re-executes this binary as `ferry-bench worker`,
//! writes one Job line to its stdin, then Commands; the worker answers with Events on
//! stdout. One process holds fewer than 20k descriptors here, so load is spread.

use std::io::Write as _;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncBufReadExt;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::client::{self, Phase, Stats};
use crate::hist;
use crate::job::{Command, Event, Job};

fn emit(ev: &Event) {
    let mut out = std::io::stdout().lock();
    let _ = serde_json::to_writer(&mut out, ev);
    let _ = out.write_all(b"\n");
    let _ = out.flush();
}

fn take(h: &std::sync::Mutex<Option<hdrhistogram::Histogram<u64>>>) -> Vec<(u64, u64)> {
    h.lock()
        .expect("histogram lock")
        .take()
        .map(|h| hist::to_pairs(&h))
        .unwrap_or_default()
}

pub async fn main() -> anyhow::Result<()> {
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    let first = lines
        .next_line()
        .await?
        .ok_or_else(|| anyhow::anyhow!("no job on stdin"))?;
    let job: Arc<Job> = Arc::new(serde_json::from_str(&first)?);
    let stats = Arc::new(Stats::default());
    let (phase_tx, phase_rx) = watch::channel(Phase::Connecting);
    let gate = Arc::new(tokio::sync::Semaphore::new(job.connect_concurrency.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..job.clients.len() {
        tasks.spawn(client::run(
            job.clone(),
            stats.clone(),
            i,
            phase_rx.clone(),
            gate.clone(),
        ));
    }
    let n = job.clients.len() as u64;
    let mut ready = false;
    // The coordinator sees a round end at the first report after it: the report
    // interval bounds how far a round's measured time can overshoot.
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let c = stats.counters();
                if !ready && c.connected + c.connect_errors >= n {
                    ready = true;
                    emit(&Event::Ready(c));
                } else {
                    emit(&Event::Progress(c));
                }
            }
            line = lines.next_line() => {
                // The coordinator going away ends the worker too.
                let Ok(Some(line)) = line else { break };
                match serde_json::from_str::<Command>(&line)? {
                    Command::Go { start_ns, rate, count } => {
                        let now = crate::conn::now_ns();
                        let at = Instant::now() + Duration::from_nanos(start_ns.saturating_sub(now));
                        phase_tx.send_replace(Phase::Go { start_ns, at, rate, count });
                    }
                    Command::Stop => {
                        phase_tx.send_replace(Phase::Stopped);
                        emit(&Event::Result {
                            counters: stats.counters(),
                            ack: take(&stats.ack),
                            e2e: take(&stats.e2e),
                            connect: take(&stats.connect),
                            samples: stats.samples.lock().expect("samples lock").clone(),
                        });
                    }
                    Command::Reconnect => {
                        phase_tx.send_replace(Phase::Reconnect { at: Instant::now() });
                    }
                    Command::Exit => break,
                }
            }
        }
    }
    phase_tx.send_replace(Phase::Exit);
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    Ok(())
}
