//! Delayed delivery: a ladder of delay-tier topics. A record waits in a tier until
//! `min(entered + tier, due)`, then moves to the largest tier not exceeding the time
//! left, or to the inbound topic once due. Records enter a tier in time order, so a
//! tier's head is always the next one due there: the role pauses the partition until
//! then instead of polling. Everything lives in the log, so delays survive restarts.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use super::records;
use crate::backoff;
use crate::domain::now_ms;
use crate::msglog::{LogRecord, MsgLog, Outgoing, Subscription, Topics};
use crate::proto::records::MessageBatch;

/// A failed forward is retried after 200 ms more per attempt, at most 5 s.
const RETRY_STEP: Duration = Duration::from_millis(200);
const RETRY_MAX: Duration = Duration::from_secs(5);

#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Hop {
    Inbound,
    Tier(u64),
}

/// Where a record due at `due_ms` goes at `now_ms`.
pub(crate) fn route(tiers: &[u64], now_ms: i64, due_ms: i64) -> Hop {
    let left = due_ms - now_ms;
    if left <= 0 {
        return Hop::Inbound;
    }
    let left_secs = (left / 1000) as u64;
    let tier = tiers
        .iter()
        .rev()
        .find(|t| **t <= left_secs)
        .unwrap_or(&tiers[0]);
    Hop::Tier(*tier)
}

/// When a record that entered `tier_secs` at `entered_ms` leaves it.
pub(crate) fn leaves_at(tier_secs: u64, entered_ms: i64, due_ms: i64) -> i64 {
    (entered_ms + tier_secs as i64 * 1000).min(due_ms)
}

/// The record to append for `batch` at `now`: to a tier or, when due, to inbound.
pub(crate) fn next_hop(topics: &Topics, tiers: &[u64], batch: MessageBatch, now: i64) -> Outgoing {
    match route(tiers, now, batch.due_at_ms) {
        Hop::Inbound => records::inbound(topics, batch),
        Hop::Tier(t) => records::delayed(topics, t, batch, now),
    }
}

pub(crate) struct DelayRole {
    pub(crate) log: Arc<dyn MsgLog>,
    pub(crate) topics: Topics,
    pub(crate) tiers: Vec<u64>,
}

/// Records forwarded by one append at most; a tier's backlog drains in appends of
/// this many records, each followed by the commits of what it carried.
pub(crate) const MAX_BATCH: usize = 2_000;

/// After the first due record, how long more records are gathered (as long as they
/// are already read and due) before the batch is appended: a burst of due records
/// leaves in a few appends, not one append per record.
const GATHER: Duration = Duration::from_millis(5);

/// A record read from a tier with where it goes next.
struct Held {
    record: LogRecord,
    batch: MessageBatch,
    leaves_at: i64,
}

impl DelayRole {
    pub(crate) async fn run(self, cancel: CancellationToken) -> anyhow::Result<()> {
        let tier_topics: Vec<String> = self.tiers.iter().map(|t| self.topics.delay(*t)).collect();
        let tier_of: HashMap<String, u64> = self
            .tiers
            .iter()
            .map(|t| (self.topics.delay(*t), *t))
            .collect();
        let mut sub = self
            .log
            .subscribe(&self.topics.group("delay"), &tier_topics)
            .await?;
        // The head of each paused partition, waiting for its time. Records are read in
        // partition order, and a partition is paused at its first record not yet due,
        // so everything read before that head is due and is in `ready`.
        let mut held: HashMap<(String, i32), Held> = HashMap::new();
        let mut ready: Vec<Held> = Vec::new();
        loop {
            let next_due = held.values().map(|h| h.leaves_at).min();
            let sleep = match next_due {
                Some(t) => Duration::from_millis((t - now_ms()).max(0) as u64),
                None => Duration::from_secs(3600),
            };
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = tokio::time::sleep(sleep), if next_due.is_some() => {}
                rec = sub.next() => {
                    self.take(&mut *sub, &tier_of, rec?, &mut held, &mut ready)?;
                }
            }
            // Gather what else is already read and due, briefly, up to a batch.
            let until = tokio::time::Instant::now() + GATHER;
            while ready.len() < MAX_BATCH {
                match tokio::time::timeout_at(until, sub.next()).await {
                    Ok(rec) => self.take(&mut *sub, &tier_of, rec?, &mut held, &mut ready)?,
                    Err(_) => break,
                }
            }
            let now = now_ms();
            let due: Vec<_> = held
                .iter()
                .filter(|(_, h)| h.leaves_at <= now)
                .map(|(k, _)| k.clone())
                .collect();
            let mut released = Vec::new();
            for k in due {
                ready.push(held.remove(&k).expect("key taken from the map"));
                released.push(k);
            }
            if ready.is_empty() {
                continue;
            }
            if !self.forward(&mut *sub, &mut ready, &cancel).await? {
                break;
            }
            for (topic, partition) in released {
                sub.resume(&topic, partition)?;
            }
        }
        sub.flush_commits().await?;
        Ok(())
    }

    /// Sorts a record just read: due (into `ready`), or the head of its partition,
    /// which is paused until the record's time.
    fn take(
        &self,
        sub: &mut dyn Subscription,
        tier_of: &HashMap<String, u64>,
        rec: LogRecord,
        held: &mut HashMap<(String, i32), Held>,
        ready: &mut Vec<Held>,
    ) -> anyhow::Result<()> {
        let Some(tier) = tier_of.get(&rec.topic).copied() else {
            return Ok(());
        };
        let Some((batch, entered_at)) = records::read_delayed(&rec) else {
            tracing::error!(topic = %rec.topic, offset = rec.offset, "undecodable delayed record skipped");
            // Committed with the next batch (a commit covers the records before it),
            // or now when nothing of its partition waits.
            if ready
                .iter()
                .all(|h| (&h.record.topic, h.record.partition) != (&rec.topic, rec.partition))
            {
                sub.commit(&rec)?;
            }
            return Ok(());
        };
        let leaves_at = leaves_at(tier, entered_at, batch.due_at_ms);
        let h = Held {
            record: rec,
            batch,
            leaves_at,
        };
        if leaves_at <= now_ms() {
            ready.push(h);
        } else {
            sub.pause(&h.record.topic, h.record.partition)?;
            held.insert((h.record.topic.clone(), h.record.partition), h);
        }
        Ok(())
    }

    /// Appends the next hop of every record in `ready` with one call, then commits
    /// them: a crash in between repeats the hops, and the sequencer's idempotence
    /// makes the repeat harmless. Records of one partition keep their order in the
    /// append (same topic, same key: same order) and are committed in order. Retries
    /// until the log takes them or the role is stopped (then nothing is committed
    /// and false is returned: the records are read again after the restart).
    async fn forward(
        &self,
        sub: &mut dyn Subscription,
        ready: &mut Vec<Held>,
        cancel: &CancellationToken,
    ) -> anyhow::Result<bool> {
        let now = now_ms();
        let span = tracing::info_span!(
            "delay.forward",
            otel.name = "delay hops",
            records = ready.len()
        );
        let mut outs = Vec::with_capacity(ready.len());
        let mut lateness = Vec::new();
        for h in ready.iter() {
            let hop = tracing::info_span!(parent: &span, "delay.hop", otel.name = "delay hop", from = %h.record.topic);
            crate::telemetry::follow(&hop, &h.record.headers);
            let mut out = next_hop(&self.topics, &self.tiers, h.batch.clone(), now);
            if out.topic == self.topics.inbound() {
                lateness.push(now - h.batch.due_at_ms);
            }
            out.headers = h.record.headers.clone();
            hop.in_scope(|| crate::telemetry::inject(&mut out.headers));
            outs.push(out);
        }
        let mut attempt = 0u32;
        while let Err(e) = self.log.append(outs.clone()).instrument(span.clone()).await {
            attempt += 1;
            tracing::warn!(error = %e, attempt, records = outs.len(), "delay tier forward failed; retrying");
            if !backoff::wait(cancel, backoff::linear(RETRY_STEP, RETRY_MAX, attempt)).await {
                return Ok(false);
            }
        }
        for late in lateness {
            metrics::histogram!("ferry_delay_lateness_seconds").record(late.max(0) as f64 / 1000.0);
        }
        metrics::counter!("ferry_delay_forwarded_total").increment(ready.len() as u64);
        metrics::histogram!("ferry_delay_batch_records").record(ready.len() as f64);
        for h in ready.drain(..) {
            sub.commit(&h.record)?;
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: &[u64] = &crate::config::DEFAULT_TIERS_SECS;

    #[test]
    fn routes_to_the_largest_tier_not_exceeding_the_time_left() {
        assert_eq!(route(T, 0, 0), Hop::Inbound);
        assert_eq!(route(T, 1000, 999), Hop::Inbound);
        assert_eq!(route(T, 0, 400), Hop::Tier(1));
        assert_eq!(route(T, 0, 1_000), Hop::Tier(1));
        assert_eq!(route(T, 0, 4_999), Hop::Tier(1));
        assert_eq!(route(T, 0, 5_000), Hop::Tier(5));
        assert_eq!(route(T, 0, 90_000), Hop::Tier(60));
        assert_eq!(route(T, 0, 864_000_000), Hop::Tier(345_600));
    }

    #[test]
    fn a_record_leaves_its_tier_no_later_than_due() {
        assert_eq!(leaves_at(5, 1000, 100_000), 6000);
        assert_eq!(leaves_at(1, 1000, 1400), 1400);
    }

    #[test]
    fn the_ladder_reaches_inbound_on_time() {
        // Walk a 10-day delay down the ladder as the role would, at each hold's end.
        let due = 864_000_000;
        let (mut now, mut hops) = (0i64, 0);
        while let Hop::Tier(t) = route(T, now, due) {
            now = leaves_at(t, now, due);
            hops += 1;
            assert!(hops < 64, "ladder does not converge");
        }
        assert_eq!(now, due);
    }
}
