//! A lane's wave, applied in steps: step k takes the k-th record of every chain (one
//! conversation's records, in log order) that has one, computes each one's writes
//! from its conversation's state, makes all of them with one `Store::write` (one
//! round per phase: messages and members, then the clientMsgId index, then the seq
//! rows), then appends their pushes as one push record per push topic (pod). So a
//! step of n conversations' records costs three store rounds and one produce of a
//! record per pod, not n of each.
//!
//! A step's pushes are put in line in the log (`MsgLog::enqueue`) and the next step
//! starts while they become durable; its records are reported done (and so may be
//! committed) only once they are, before the next step's pushes are put in line,
//! or before the lane waits for more records. Live pushes stay at least once, and a
//! conversation's pushes stay in seq order (records put in line keep their order).
//!
//! Why that is as safe as one record at a time (`sequencer.rs`, point 4): a step holds
//! at most one record per conversation, and step k+1 starts only once step k's writes
//! are all made, so each conversation still sees its records applied one at a time,
//! in log order, seq row last. Records of different conversations share a write call
//! but nothing the argument relies on. A record whose step fails (its state cannot be
//! read, or the shared write fails) is applied again on its own, with retries
//! (`Sequencer::retry`): its writes are versioned and deterministic, so whatever of
//! them the failed step made is rewritten with the very same cells, and a lookup that
//! finds one of them takes it as the record's own (`written_by` its offset).

use std::sync::Mutex;
use std::time::Instant;

use futures_util::StreamExt as _;
use futures_util::future::join_all;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use super::memory::Memory;
use super::{CHAINS, Sequencer, pushes_dropped};
use crate::msglog::{Durable, LogRecord};
use crate::proto::records::PushRecord;
use crate::store::Writes;

fn phase(name: &'static str, started: Instant) {
    metrics::histogram!("ferry_sequencer_step_seconds", "phase" => name)
        .record(started.elapsed().as_secs_f64());
}

fn record_span(rec: &LogRecord) -> tracing::Span {
    let span = tracing::info_span!(
        "sequencer.record",
        otel.name = "sequence",
        partition = rec.partition,
        offset = rec.offset,
        conv = %String::from_utf8_lossy(&rec.key),
    );
    crate::telemetry::follow(&span, &rec.headers);
    span
}

/// A step's pushes on their way into the log, and its records, done once the pushes
/// are durable.
pub(super) struct InFlight {
    durable: Durable,
    records: Vec<(String, i32, i64)>,
    pushes: u64,
}

impl Sequencer {
    /// Waits for a step's pushes to be durable (best effort: failed ones are dropped,
    /// clients resync), then reports its records as done.
    pub(super) async fn settle(
        &self,
        f: InFlight,
        done: &mpsc::UnboundedSender<(String, i32, i64)>,
    ) {
        if let Err(e) = f.durable.await {
            pushes_dropped(&e, f.pushes);
        }
        for r in f.records {
            let _ = done.send(r);
        }
    }

    /// Applies a wave's chains step by step and reports each record as done once its
    /// step is. False when cancelled while a record was still failing: it, the rest
    /// of its step and the later steps are not done (not committed).
    pub(super) async fn wave(
        &self,
        chains: Vec<Vec<(LogRecord, u64)>>,
        memory: &Mutex<Memory>,
        done: &mpsc::UnboundedSender<(String, i32, i64)>,
        cancel: &CancellationToken,
        in_flight: &mut Option<InFlight>,
    ) -> bool {
        let mut chains: Vec<_> = chains.into_iter().map(Vec::into_iter).collect();
        loop {
            let step: Vec<(LogRecord, u64)> =
                chains.iter_mut().filter_map(Iterator::next).collect();
            if step.is_empty() {
                return true;
            }
            let spans: Vec<tracing::Span> = step.iter().map(|(r, _)| record_span(r)).collect();
            let (applied, pushes) = self.step(&step, &spans, memory).await;
            // What the step could not apply, one record at a time with retries.
            let mut alone = Vec::new();
            for ((rec, epoch), (span, ok)) in step.iter().zip(spans.iter().zip(&applied)) {
                if !ok {
                    alone.push(self.retry(rec, *epoch, span, memory, cancel));
                }
            }
            let finished = futures_util::stream::iter(alone)
                .buffer_unordered(CHAINS)
                .collect::<Vec<bool>>()
                .await
                .into_iter()
                .all(|ok| ok);
            if !finished {
                return false;
            }
            if let Some(previous) = in_flight.take() {
                let started = Instant::now();
                self.settle(previous, done).await;
                phase("settle", started);
            }
            // One push record per push topic (pod) for the whole step.
            let pushes = self.router.coalesce(pushes);
            let n = pushes.len() as u64;
            let durable = match self.log.enqueue(pushes).await {
                Ok(d) => d,
                Err(e) => Box::pin(std::future::ready(Err(e))) as Durable,
            };
            *in_flight = Some(InFlight {
                durable,
                records: step
                    .into_iter()
                    .map(|(rec, _)| (rec.topic, rec.partition, rec.offset))
                    .collect(),
                pushes: n,
            });
        }
    }

    /// Applies one record of each of several conversations together; which of them
    /// were applied (the others are left to `retry`), and their push records.
    async fn step(
        &self,
        step: &[(LogRecord, u64)],
        spans: &[tracing::Span],
        memory: &Mutex<Memory>,
    ) -> (Vec<bool>, Vec<(String, PushRecord)>) {
        let started = Instant::now();
        let mut prepares = Vec::with_capacity(step.len());
        for ((rec, epoch), span) in step.iter().zip(spans) {
            prepares.push(self.prepare(rec, *epoch, memory).instrument(span.clone()));
        }
        let mut prepared = join_all(prepares).await;
        phase("prepare", started);
        let mut writes = Writes::default();
        for p in prepared.iter_mut().flatten() {
            writes.append(&mut p.writes);
        }
        if !writes.is_empty() {
            let started = Instant::now();
            // The write is in the first record's trace, linked from the others'.
            let write = self
                .write(&writes, &spans[1..], memory)
                .instrument(spans[0].clone());
            if let Err(e) = write.await {
                tracing::warn!(error = %e, records = step.len(), "a wave step's write failed; its records are applied one at a time");
                return (vec![false; step.len()], Vec::new());
            }
            phase("write", started);
        }
        let started = Instant::now();
        let mut applied = Vec::with_capacity(step.len());
        let mut pushes = Vec::new();
        for (p, span) in prepared.into_iter().zip(spans) {
            match p {
                Ok(p) => {
                    pushes.extend(self.complete(p, memory).instrument(span.clone()).await);
                    applied.push(true);
                }
                Err(_) => applied.push(false),
            }
        }
        phase("complete", started);
        metrics::histogram!("ferry_sequencer_step_records").record(step.len() as f64);
        (applied, pushes)
    }
}
