//! The consumer side of the Kafka log: group subscriptions, assigned readers, and
//! the rebalance hooks that keep pauses and commits right.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use rdkafka::client::ClientContext;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Headers, Message as _};
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::watch;

use super::{KafkaLog, code, stats, unavailable};
use crate::domain::now_ms;
use crate::msglog::{LogError, LogRecord, Subscription};

impl KafkaLog {
    /// Like `subscribe`, with the concrete type: it also reports assignment changes.
    pub(crate) fn subscribe_group(
        &self,
        group: &str,
        topics: &[String],
    ) -> Result<KafkaSubscription, LogError> {
        let prefix = &self.inner.settings.topic_prefix;
        let context = SubContext::new(Some(group.to_owned()), stats::role(prefix, group));
        let consumer: StreamConsumer<SubContext> = self
            .inner
            .settings
            .client_config(
                &[
                    // Cooperative: a rebalance revokes only the partitions that move,
                    // the rest keep flowing (no stop-the-world for the sequencer), and
                    // the revocation hook below runs for exactly the moved ones.
                    ("partition.assignment.strategy", "cooperative-sticky"),
                    ("auto.commit.interval.ms", "1000"),
                    // Push latency: the broker answers a fetch within this even when
                    // fewer than fetch.min.bytes are waiting (librdkafka's 500 ms
                    // default shows up as p99 push latency).
                    ("fetch.wait.max.ms", "20"),
                    // A crashed member's partitions move after this long (librdkafka's
                    // 45 s default would stall its conversations that long).
                    ("session.timeout.ms", "10000"),
                    ("heartbeat.interval.ms", "2000"),
                ],
                &[
                    ("group.id", group),
                    ("enable.auto.commit", "true"),
                    ("enable.auto.offset.store", "false"),
                    ("auto.offset.reset", "earliest"),
                ],
            )
            .create_with_context(context)
            .map_err(unavailable)?;
        let names: Vec<&str> = topics.iter().map(String::as_str).collect();
        consumer.subscribe(&names).map_err(unavailable)?;
        let consumer = Arc::new(consumer);
        self.inner
            .groups
            .lock()
            .unwrap()
            .push(Arc::downgrade(consumer.context()));
        Ok(KafkaSubscription { consumer })
    }

    pub(super) async fn open_from_start(
        &self,
        topic: &str,
    ) -> Result<Box<dyn Subscription>, LogError> {
        let partitions = self
            .partitions_of(topic)
            .await?
            .ok_or_else(|| LogError::Unavailable(format!("unknown topic {topic}")))?;
        let starts: Vec<(i32, Offset)> = (0..partitions as i32)
            .map(|p| (p, Offset::Beginning))
            .collect();
        // Presence and notices followers: new records matter within ms.
        self.assigned_reader(topic, &starts, &[("fetch.wait.max.ms", "20")])
    }

    pub(super) async fn open_from(
        &self,
        topic: &str,
        starts: &[(i32, i64)],
    ) -> Result<Box<dyn Subscription>, LogError> {
        let starts: Vec<(i32, Offset)> = starts
            .iter()
            .map(|(p, o)| (*p, Offset::Offset(*o)))
            .collect();
        self.assigned_reader(topic, &starts, &[])
    }

    /// A reader of the listed partitions of `topic` from the given offsets, outside
    /// any group (a private group id, never committed to).
    fn assigned_reader(
        &self,
        topic: &str,
        starts: &[(i32, Offset)],
        tunables: &[(&str, &str)],
    ) -> Result<Box<dyn Subscription>, LogError> {
        let consumer: StreamConsumer<SubContext> = self
            .inner
            .settings
            .client_config(
                tunables,
                &[
                    ("group.id", &self.private_group()),
                    ("enable.auto.commit", "false"),
                    ("enable.auto.offset.store", "false"),
                ],
            )
            .create_with_context(SubContext::new(
                None,
                stats::role(&self.inner.settings.topic_prefix, topic),
            ))
            .map_err(unavailable)?;
        let mut tpl = TopicPartitionList::new();
        for (p, o) in starts {
            tpl.add_partition_offset(topic, *p, *o)
                .map_err(unavailable)?;
        }
        consumer.assign(&tpl).map_err(unavailable)?;
        consumer
            .context()
            .assigned
            .lock()
            .unwrap()
            .extend(starts.iter().map(|(p, _)| (topic.to_owned(), *p)));
        Ok(Box::new(KafkaSubscription {
            consumer: Arc::new(consumer),
        }))
    }
}

/// State shared between a subscription and librdkafka's rebalance callbacks, which
/// run inside `recv` (on the task calling `next`).
pub(crate) struct SubContext {
    /// Group consumers commit on revocation; `read_from_start` readers never commit.
    commits: bool,
    /// The group of a group consumer: its assignment is the gauge
    /// `ferry_kafka_assigned_partitions{group}`.
    group: Option<String>,
    /// Partitions the caller paused. Kept across rebalances: a paused partition that
    /// is revoked and assigned back is paused again, as the caller still expects.
    paused: Mutex<HashSet<(String, i32)>>,
    pub(super) assigned: Mutex<HashSet<(String, i32)>>,
    /// Bumped after every assignment change.
    pub(super) changes: watch::Sender<u64>,
    /// librdkafka's request counters, when statistics are on (`stats.rs`).
    counts: stats::Counts,
}

impl SubContext {
    fn new(group: Option<String>, role: &str) -> Self {
        Self {
            counts: stats::Counts::new(role),
            commits: group.is_some(),
            group,
            paused: Mutex::new(HashSet::new()),
            assigned: Mutex::new(HashSet::new()),
            changes: watch::channel(0).0,
        }
    }
}

fn partitions(tpl: &TopicPartitionList) -> impl Iterator<Item = (String, i32)> + '_ {
    tpl.elements()
        .into_iter()
        .map(|e| (e.topic().to_owned(), e.partition()))
}

impl ClientContext for SubContext {
    fn stats(&self, s: rdkafka::Statistics) {
        self.counts.add(&s);
    }
}

impl ConsumerContext for SubContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Revoke(tpl) = rebalance else {
            return;
        };
        // Commit before the partitions go: the new owner starts from the committed
        // offset, and librdkafka hands the partitions over only after this callback
        // returns. This is safe because only offsets the caller stored through
        // `commit` (i.e. after its writes were durable) are ever committed: records
        // fetched but not yet processed are not stored, so the new owner redelivers
        // them; a record we are still processing will fail to store (partition no
        // longer ours) and is redone by the new owner, never skipped.
        // A lost assignment (session timed out) is already someone else's: committing
        // would fail or, worse, race the new owner.
        if !self.commits || consumer.assignment_lost() {
            return;
        }
        match consumer.commit_consumer_state(CommitMode::Sync) {
            Ok(()) => {}
            Err(e) if code(&e) == Some(RDKafkaErrorCode::NoOffset) => {}
            Err(e) => {
                tracing::warn!(error = %e, partitions = tpl.count(), "commit on revocation failed")
            }
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                let mut repause = TopicPartitionList::new();
                {
                    let paused = self.paused.lock().unwrap();
                    let mut assigned = self.assigned.lock().unwrap();
                    for tp in partitions(tpl) {
                        if paused.contains(&tp) {
                            repause.add_partition(&tp.0, tp.1);
                        }
                        assigned.insert(tp);
                    }
                }
                if repause.count() > 0
                    && let Err(e) = consumer.pause(&repause)
                {
                    tracing::warn!(error = %e, "re-pausing reassigned partitions failed");
                }
                tracing::info!(partitions = tpl.count(), "kafka partitions assigned");
            }
            Rebalance::Revoke(tpl) => {
                let mut assigned = self.assigned.lock().unwrap();
                for tp in partitions(tpl) {
                    assigned.remove(&tp);
                }
                tracing::info!(partitions = tpl.count(), "kafka partitions revoked");
            }
            Rebalance::Error(e) => tracing::warn!(error = %e, "kafka rebalance error"),
        }
        if let Some(group) = &self.group {
            let n = self.assigned.lock().unwrap().len();
            metrics::gauge!("ferry_kafka_assigned_partitions", "group" => group.clone())
                .set(n as f64);
        }
        self.changes.send_modify(|v| *v += 1);
    }
}

/// One consumer. `next` polls it directly, so there is no buffer of ours between
/// librdkafka and the caller: pausing a partition discards what librdkafka had
/// prefetched for it and resuming fetches again from the last record returned.
///
/// Liveness: librdkafka counts a consumer as alive while it is polled at least every
/// `max.poll.interval.ms` (5 min by default). A pending `next` is woken to poll at
/// half that interval even when nothing arrives (all partitions paused included),
/// so a caller that keeps a `next` pending (e.g. in a `select!` with its timers)
/// stays in the group for as long as it likes; one that stops calling `next` for
/// longer is presumed wedged and its partitions go to another member.
pub(crate) struct KafkaSubscription {
    consumer: Arc<StreamConsumer<SubContext>>,
}

impl KafkaSubscription {
    /// Records the caller's wish (re-applied after rebalances) and applies it to the
    /// partition now if this consumer holds it.
    fn set_paused(&self, topic: &str, partition: i32, paused: bool) -> Result<(), LogError> {
        let ctx = self.consumer.context();
        let key = (topic.to_owned(), partition);
        if paused {
            ctx.paused.lock().unwrap().insert(key.clone());
        } else {
            ctx.paused.lock().unwrap().remove(&key);
        }
        if ctx.assigned.lock().unwrap().contains(&key) {
            let one = Self::one(topic, partition);
            let r = if paused {
                self.consumer.pause(&one)
            } else {
                self.consumer.resume(&one)
            };
            r.map_err(unavailable)?;
        }
        Ok(())
    }

    fn one(topic: &str, partition: i32) -> TopicPartitionList {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(topic, partition);
        tpl
    }
}

#[async_trait]
impl Subscription for KafkaSubscription {
    async fn next(&mut self) -> Result<LogRecord, LogError> {
        loop {
            // Cancel-safe: `recv` takes a record out of librdkafka's queue only in
            // the poll that returns it, and the conversion below does not await.
            match self.consumer.recv().await {
                Ok(m) => {
                    let headers = m
                        .headers()
                        .map(|hs| {
                            hs.iter()
                                .map(|h| {
                                    (
                                        h.key.to_owned(),
                                        h.value.map(Bytes::copy_from_slice).unwrap_or_default(),
                                    )
                                })
                                .collect()
                        })
                        .unwrap_or_default();
                    return Ok(LogRecord {
                        topic: m.topic().to_owned(),
                        partition: m.partition(),
                        offset: m.offset(),
                        key: m.key().map(Bytes::copy_from_slice).unwrap_or_default(),
                        value: m.payload().map(Bytes::copy_from_slice),
                        timestamp_ms: m.timestamp().to_millis().unwrap_or_else(now_ms),
                        headers,
                    });
                }
                Err(e @ KafkaError::MessageConsumptionFatal(_)) => return Err(unavailable(e)),
                // Broker and transport errors are reported here too; librdkafka
                // retries them itself.
                Err(e) => {
                    tracing::warn!(error = %e, "kafka consumer error");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    fn commit(&mut self, record: &LogRecord) -> Result<(), LogError> {
        if !self.consumer.context().commits {
            return Ok(());
        }
        // librdkafka stores `offset + 1`, the next record to read; the auto committer
        // (every `auto.commit.interval.ms`) and `flush_commits` write it out.
        match self
            .consumer
            .store_offset(&record.topic, record.partition, record.offset)
        {
            Ok(()) => Ok(()),
            // Revoked since delivery: the new owner redoes this record.
            Err(e)
                if matches!(
                    code(&e),
                    Some(RDKafkaErrorCode::State | RDKafkaErrorCode::UnknownPartition)
                ) =>
            {
                tracing::debug!(topic = %record.topic, partition = record.partition, "commit of a revoked partition skipped");
                Ok(())
            }
            Err(e) => Err(unavailable(e)),
        }
    }

    fn pause(&mut self, topic: &str, partition: i32) -> Result<(), LogError> {
        self.set_paused(topic, partition, true)
    }

    fn resume(&mut self, topic: &str, partition: i32) -> Result<(), LogError> {
        self.set_paused(topic, partition, false)
    }

    async fn seek(&mut self, topic: &str, partition: i32, offset: i64) -> Result<(), LogError> {
        let key = (topic.to_owned(), partition);
        if !self
            .consumer
            .context()
            .assigned
            .lock()
            .unwrap()
            .contains(&key)
        {
            return Ok(());
        }
        // librdkafka drops what it had fetched for the partition before the seek (its
        // fetch version moves on), so `next` returns `offset` first.
        let consumer = self.consumer.clone();
        let topic = topic.to_owned();
        let r = tokio::task::spawn_blocking(move || {
            consumer.seek(&topic, partition, Offset::Offset(offset), SEEK_TIMEOUT)
        })
        .await
        .map_err(unavailable)?;
        match r {
            Ok(()) => Ok(()),
            // Revoked meanwhile: the next owner reads from the committed offset.
            Err(e)
                if matches!(
                    code(&e),
                    Some(RDKafkaErrorCode::State | RDKafkaErrorCode::UnknownPartition)
                ) =>
            {
                Ok(())
            }
            Err(e) => Err(unavailable(e)),
        }
    }

    fn commit_soon(&mut self) -> Result<(), LogError> {
        if !self.consumer.context().commits {
            return Ok(());
        }
        match self.consumer.commit_consumer_state(CommitMode::Async) {
            Ok(()) => Ok(()),
            Err(e) if code(&e) == Some(RDKafkaErrorCode::NoOffset) => Ok(()),
            // The periodic commit and the final flush try again.
            Err(e) if rebalancing(&e) => Ok(()),
            Err(e) => Err(unavailable(e)),
        }
    }

    /// The last thing done with a subscription. A commit refused because the group
    /// is rebalancing (another member joined or left, so this member's generation is
    /// stale) is asked again once this member has rejoined, for up to `COMMIT_SETTLE`:
    /// skipping it would make the partitions' next owner redo everything since the
    /// last automatic commit. Rejoining happens inside a poll; the records such a poll
    /// returns are dropped, which is safe because their offsets are never stored: the
    /// next owner reads them.
    async fn flush_commits(&mut self) -> Result<(), LogError> {
        if !self.consumer.context().commits {
            return Ok(());
        }
        let deadline = tokio::time::Instant::now() + COMMIT_SETTLE;
        loop {
            let consumer = self.consumer.clone();
            let e = match tokio::task::spawn_blocking(move || {
                consumer.commit_consumer_state(CommitMode::Sync)
            })
            .await
            .map_err(unavailable)?
            {
                Ok(()) => return Ok(()),
                Err(e) if code(&e) == Some(RDKafkaErrorCode::NoOffset) => return Ok(()),
                Err(e) if rebalancing(&e) => e,
                Err(e) => return Err(unavailable(e)),
            };
            if tokio::time::Instant::now() >= deadline {
                // These partitions are (or are about to be) someone else's, who reads
                // again from the last committed offset: nothing is lost, and not a
                // failure of this role.
                tracing::warn!(error = %e, "commit skipped: the group is still rebalancing");
                return Ok(());
            }
            tracing::debug!(error = %e, "commit refused while the group rebalances; rejoining");
            let rejoin = tokio::time::sleep(REJOIN_POLL);
            tokio::pin!(rejoin);
            loop {
                tokio::select! {
                    () = &mut rejoin => break,
                    _ = self.consumer.recv() => {}
                }
            }
        }
    }
}

/// A group member that owns no partition leaves the group before it is closed.
///
/// librdkafka (2.12, classic protocol, cooperative assignor) sends no LeaveGroup when
/// a member closes with an empty assignment: its revoke-all step finds nothing to
/// revoke and, terminating, returns before the leave. A pod stopped right after it
/// joined (its first, cooperative, assignment is empty while the other members hand
/// over the partitions meant for it) then stays in the group until its session times
/// out, and the partitions the others revoked for it are owned by no one until then.
/// `unsubscribe` (not terminating) takes the path that does leave: with no
/// subscription left, the rejoin it starts becomes a LeaveGroup, which the close
/// below waits for. With partitions assigned, the close revokes them and leaves.
impl Drop for KafkaSubscription {
    fn drop(&mut self) {
        let ctx = self.consumer.context();
        if ctx.group.is_none() || !ctx.assigned.lock().unwrap().is_empty() {
            return;
        }
        tracing::debug!("no partition owned: leaving the group before the close");
        self.consumer.unsubscribe();
    }
}

/// How long a seek may wait for librdkafka to move the partition's fetch position.
const SEEK_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a final commit may wait for the group to settle.
const COMMIT_SETTLE: Duration = Duration::from_secs(6);
/// How long the consumer is polled (so it rejoins) between two commit attempts.
const REJOIN_POLL: Duration = Duration::from_millis(250);

/// The group is rebalancing or has moved on without this member.
fn rebalancing(e: &KafkaError) -> bool {
    matches!(
        code(e),
        Some(
            RDKafkaErrorCode::RebalanceInProgress
                | RDKafkaErrorCode::IllegalGeneration
                | RDKafkaErrorCode::UnknownMemberId
        )
    )
}
