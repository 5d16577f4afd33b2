//! Delayed delivery: a ladder of delay-tier topics. A record waits in a tier until
//! `min(entered + tier, due)`, then moves to the largest tier not exceeding the time
//! left, or to the inbound topic once due. Records enter a tier in time order, so a
//! tier's head is always the next one due there: the role pauses the partition until
//! then instead of polling. Everything lives in the log, so delays survive restarts.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::records;
use crate::backoff;
use crate::domain::now_ms;
use crate::msglog::{LogRecord, MsgLog, Outgoing, Topics};
use crate::proto::records::MessageBatch;

/// A failed forward is retried after 200 ms more per attempt, at most 5 s.
const RETRY_STEP: Duration = Duration::from_millis(200);
const RETRY_MAX: Duration = Duration::from_secs(5);

/// The default ladder, seconds.
pub(crate) const DEFAULT_TIERS_SECS: [u64; 15] = [
    1, 5, 10, 30, 60, 300, 600, 1800, 3600, 7200, 21600, 43200, 86400, 172800, 345600,
];

/// The longest delay a client may ask for: ten days.
pub(crate) const MAX_DELAY_SECS: i32 = 864_000;

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
        // The head of each paused partition, waiting for its time.
        let mut held: HashMap<(String, i32), Held> = HashMap::new();
        loop {
            let next_due = held.values().map(|h| h.leaves_at).min();
            let sleep = match next_due {
                Some(t) => Duration::from_millis((t - now_ms()).max(0) as u64),
                None => Duration::from_secs(3600),
            };
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = tokio::time::sleep(sleep), if next_due.is_some() => {
                    let now = now_ms();
                    let due: Vec<_> = held.iter().filter(|(_, h)| h.leaves_at <= now).map(|(k, _)| k.clone()).collect();
                    for k in due {
                        let h = held.remove(&k).expect("key taken from the map");
                        self.forward(&mut *sub, &h.record, h.batch, &cancel).await?;
                        sub.resume(&k.0, k.1)?;
                    }
                }
                rec = sub.next() => {
                    let rec = rec?;
                    let Some(tier) = tier_of.get(&rec.topic).copied() else { continue };
                    let Some((batch, entered_at)) = records::read_delayed(&rec) else {
                        tracing::error!(topic = %rec.topic, offset = rec.offset, "undecodable delayed record skipped");
                        sub.commit(&rec)?;
                        continue;
                    };
                    let at = leaves_at(tier, entered_at, batch.due_at_ms);
                    if at <= now_ms() {
                        self.forward(&mut *sub, &rec, batch, &cancel).await?;
                    } else {
                        sub.pause(&rec.topic, rec.partition)?;
                        held.insert((rec.topic.clone(), rec.partition), Held { record: rec, batch, leaves_at: at });
                    }
                }
            }
        }
        sub.flush_commits().await?;
        Ok(())
    }

    /// Appends the next hop, then commits: a crash in between repeats the hop, and
    /// the sequencer's idempotence makes the repeat harmless. Retries until the log
    /// takes it or the role is stopped (then nothing is committed: the record is
    /// read again after the restart).
    async fn forward(
        &self,
        sub: &mut dyn crate::msglog::Subscription,
        rec: &LogRecord,
        batch: MessageBatch,
        cancel: &CancellationToken,
    ) -> anyhow::Result<()> {
        let late = now_ms() - batch.due_at_ms;
        let span = tracing::info_span!("delay.forward", otel.name = "delay hop", from = %rec.topic, late_ms = late);
        crate::telemetry::follow(&span, &rec.headers);
        let mut out = next_hop(&self.topics, &self.tiers, batch, now_ms());
        out.headers = rec.headers.clone();
        span.in_scope(|| crate::telemetry::inject(&mut out.headers));
        let mut attempt = 0u32;
        while let Err(e) = self.log.append(vec![out.clone()]).await {
            attempt += 1;
            tracing::warn!(error = %e, attempt, "delay tier forward failed; retrying");
            if !backoff::wait(cancel, backoff::linear(RETRY_STEP, RETRY_MAX, attempt)).await {
                return Ok(());
            }
        }
        if out.topic == self.topics.inbound() {
            metrics::histogram!("ferry_delay_lateness_seconds").record(late.max(0) as f64 / 1000.0);
        }
        sub.commit(rec)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: &[u64] = &DEFAULT_TIERS_SECS;

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
