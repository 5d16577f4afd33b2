//! Kafka log: an idempotent `acks=all` producer, one consumer per subscription, an
//! admin client for topics. All clients share `KafkaSettings::properties` (TLS, SASL,
//! tuning), applied after ferry's tunables and before the settings ferry's
//! guarantees depend on, so a property can retune but never break them.
//!
//! Offsets: ferry stores an offset only when the caller says the record's effects are
//! durable (`Subscription::commit`, `enable.auto.offset.store=false`); the auto
//! committer and the revocation hook only ever write those stored offsets. So a
//! crash or a rebalance redelivers what was not yet processed and never skips it.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use rdkafka::admin::{
    AdminClient, AdminOptions, ConfigSource, NewTopic, ResourceSpecifier, TopicReplication,
};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, DefaultConsumerContext, Rebalance,
    StreamConsumer,
};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Headers, Message as _, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::watch;
use tokio::time::Instant;

use super::{
    LogError, LogRecord, MsgLog, Outgoing, Retention, Subscription, TopicInfo, TopicSpec,
    Watermarks,
};
use crate::domain::now_ms;

/// How long `ensure_topic` / `delete_topic` wait for the metadata to agree.
const TOPIC_SETTLE: Duration = Duration::from_secs(30);
/// Timeout of the metadata request behind `ping`.
const PING_TIMEOUT: Duration = Duration::from_secs(2);
/// Retention of `Retention::Full` topics: 7 days.
const FULL_RETENTION_MS: &str = "604800000";
/// Retention of `Retention::Forever` topics: never deleted.
pub(crate) const FOREVER_RETENTION_MS: &str = "-1";
/// Timeout of the offset and group requests behind the administration methods.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(10);
/// Retention of `Retention::Ephemeral` (push) topics: 1 hour.
const EPHEMERAL_RETENTION_MS: &str = "3600000";
/// Extra wait on top of `append_timeout` before giving up on a delivery report that
/// librdkafka should already have produced (`message.timeout.ms` = `append_timeout`).
const DELIVERY_GRACE: Duration = Duration::from_secs(1);

/// Where and how to reach Kafka. Topic names arrive already prefixed.
#[derive(Clone, Debug)]
pub struct KafkaSettings {
    /// `bootstrap.servers`, comma separated.
    pub brokers: String,
    /// The prefix callers apply to topic and group names; kept for diagnostics.
    pub topic_prefix: String,
    /// Partitions of `Full` and `Compacted` topics (`Ephemeral` ones get 1).
    pub partitions: i32,
    pub replication: i32,
    /// Extra librdkafka properties applied to every client (TLS, SASL, tuning).
    pub properties: BTreeMap<String, String>,
    /// How long `append` may take before it answers `LogError::Timeout`.
    pub append_timeout: Duration,
}

fn unavailable(e: impl std::fmt::Display) -> LogError {
    LogError::Unavailable(e.to_string())
}

fn code(e: &KafkaError) -> Option<RDKafkaErrorCode> {
    e.rdkafka_error_code()
}

#[derive(Clone)]
pub struct KafkaLog {
    inner: Arc<Inner>,
}

struct Inner {
    settings: KafkaSettings,
    producer: FutureProducer,
    admin: AdminClient<DefaultClientContext>,
    /// Live group subscriptions, for `assigned_partitions`.
    groups: Mutex<Vec<Weak<SubContext>>>,
}

impl KafkaLog {
    /// Builds the producer and admin clients. Nothing is contacted yet: librdkafka
    /// connects lazily, so this only fails on bad configuration; `ping` tells whether
    /// the brokers answer.
    pub fn connect(cfg: &KafkaSettings) -> Result<Self, LogError> {
        let timeout_ms = cfg.append_timeout.as_millis().max(10).to_string();
        let producer: FutureProducer = cfg
            .client_config(
                &[("linger.ms", "2"), ("compression.type", "zstd")],
                &[
                    ("enable.idempotence", "true"),
                    ("acks", "all"),
                    // Delivery reports arrive by the deadline: `append` can answer
                    // Timeout knowing librdkafka gave up on the records as well.
                    ("message.timeout.ms", &timeout_ms),
                ],
            )
            .create()
            .map_err(unavailable)?;
        let admin: AdminClient<DefaultClientContext> =
            cfg.client_config(&[], &[]).create().map_err(unavailable)?;
        Ok(Self {
            inner: Arc::new(Inner {
                settings: cfg.clone(),
                producer,
                admin,
                groups: Mutex::new(Vec::new()),
            }),
        })
    }

    /// Partitions currently assigned to this process's group consumers.
    pub fn assigned_partitions(&self) -> usize {
        let mut groups = self.inner.groups.lock().unwrap();
        groups.retain(|g| g.strong_count() > 0);
        groups
            .iter()
            .filter_map(Weak::upgrade)
            .map(|g| g.assigned.lock().unwrap().len())
            .sum()
    }

    /// Like `subscribe`, with the concrete type: it also reports assignment changes.
    pub(crate) fn subscribe_group(
        &self,
        group: &str,
        topics: &[String],
    ) -> Result<KafkaSubscription, LogError> {
        let context = SubContext::new(true);
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

    /// Metadata of one topic: its partition count once the brokers know it.
    async fn partitions_of(&self, topic: &str) -> Result<Option<usize>, LogError> {
        let inner = self.inner.clone();
        let topic = topic.to_owned();
        tokio::task::spawn_blocking(move || {
            // All topics, not just this one: a single-topic metadata request may
            // auto-create the topic on brokers that allow it.
            let md = inner
                .admin
                .inner()
                .fetch_metadata(None, PING_TIMEOUT)
                .map_err(unavailable)?;
            Ok(md
                .topics()
                .iter()
                .find(|t| t.name() == topic && t.error().is_none())
                .map(|t| t.partitions().len())
                .filter(|n| *n > 0))
        })
        .await
        .map_err(unavailable)?
    }

    /// Polls the metadata until `done` holds for the topic, or gives up.
    async fn settle(
        &self,
        topic: &str,
        done: impl Fn(Option<usize>) -> bool,
    ) -> Result<(), LogError> {
        let deadline = Instant::now() + TOPIC_SETTLE;
        loop {
            if done(self.partitions_of(topic).await?) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(LogError::Unavailable(format!(
                    "topic {topic} metadata did not settle"
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl KafkaLog {
    /// Creates the topic if missing, with `overrides` on top of the settings its
    /// retention implies (e.g. a longer `retention.ms`). True when it was created
    /// now; an existing topic is left as it is.
    pub(crate) async fn create_topic(
        &self,
        spec: &TopicSpec,
        overrides: &[(String, String)],
    ) -> Result<bool, LogError> {
        let s = &self.inner.settings;
        let (partitions, base): (i32, &[(&str, &str)]) = match spec.retention {
            Retention::Full => (s.partitions, &[("retention.ms", FULL_RETENTION_MS)]),
            Retention::Forever => (s.partitions, &[("retention.ms", FOREVER_RETENTION_MS)]),
            Retention::Compacted => (s.partitions, &[("cleanup.policy", "compact")]),
            Retention::Ephemeral => (1, &[("retention.ms", EPHEMERAL_RETENTION_MS)]),
        };
        let mut config: BTreeMap<&str, &str> = base.iter().copied().collect();
        for (k, v) in overrides {
            config.insert(k, v);
        }
        let mut topic = NewTopic::new(
            &spec.name,
            partitions,
            TopicReplication::Fixed(s.replication),
        );
        for (k, v) in &config {
            topic = topic.set(k, v);
        }
        let opts = AdminOptions::new().operation_timeout(Some(TOPIC_SETTLE));
        let results = self
            .inner
            .admin
            .create_topics([&topic], &opts)
            .await
            .map_err(unavailable)?;
        let mut created = false;
        for r in results {
            match r {
                Ok(_) => created = true,
                Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((name, e)) => {
                    return Err(LogError::Unavailable(format!("create topic {name}: {e}")));
                }
            }
        }
        self.settle(&spec.name, |p| p.is_some()).await?;
        Ok(created)
    }

    /// A consumer that never subscribes: for offset lookups, group offsets and
    /// bounded reads. `group` is the group whose offsets it reads or writes.
    fn plain_consumer(&self, group: &str) -> Result<Plain, LogError> {
        let config = self.inner.settings.client_config(
            &[],
            &[
                ("group.id", group),
                ("enable.auto.commit", "false"),
                ("enable.auto.offset.store", "false"),
            ],
        );
        Ok(Plain(config.create().map_err(unavailable)?))
    }

    /// A group id nobody uses; with `assign` and no commits it never appears on
    /// the broker.
    fn private_group(&self) -> String {
        format!(
            "{}read-{}",
            self.inner.settings.topic_prefix,
            uuid::Uuid::new_v4()
        )
    }

    async fn partition_count(&self, topic: &str) -> Result<i32, LogError> {
        self.partitions_of(topic)
            .await?
            .map(|n| n as i32)
            .ok_or_else(|| LogError::UnknownTopic(topic.to_owned()))
    }
}

/// A consumer created for one blocking request.
struct Plain(BaseConsumer<DefaultConsumerContext>);

/// Runs a blocking librdkafka request off the async runtime.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, LogError> + Send + 'static,
) -> Result<T, LogError> {
    tokio::task::spawn_blocking(f).await.map_err(unavailable)?
}

impl KafkaSettings {
    /// `tunables`, then the user's properties, then `required`.
    fn client_config(&self, tunables: &[(&str, &str)], required: &[(&str, &str)]) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers);
        for (k, v) in tunables {
            c.set(*k, *v);
        }
        for (k, v) in &self.properties {
            c.set(k, v);
        }
        for (k, v) in required {
            c.set(*k, *v);
        }
        c
    }
}

#[async_trait]
impl MsgLog for KafkaLog {
    async fn append(&self, records: Vec<Outgoing>) -> Result<(), LogError> {
        if records.is_empty() {
            return Ok(());
        }
        let deadline = Instant::now() + self.inner.settings.append_timeout;
        // Enqueued one by one, in order: the idempotent producer keeps per-partition
        // order, so records with the same topic and key keep theirs.
        let mut deliveries = Vec::with_capacity(records.len());
        for o in &records {
            let mut headers = OwnedHeaders::new_with_capacity(o.headers.len());
            for (name, value) in &o.headers {
                headers = headers.insert(Header {
                    key: name,
                    value: Some(value.as_ref()),
                });
            }
            let mut rec = FutureRecord::<[u8], [u8]>::to(&o.topic)
                .key(o.key.as_ref())
                .headers(headers);
            if let Some(v) = &o.value {
                rec = rec.payload(v.as_ref());
            }
            loop {
                match self.inner.producer.send_result(rec) {
                    Ok(delivery) => {
                        deliveries.push(delivery);
                        break;
                    }
                    Err((e, back)) if code(&e) == Some(RDKafkaErrorCode::QueueFull) => {
                        // Records already enqueued will still be delivered: a caller
                        // that retries after Timeout may append them twice, which the
                        // pipeline's clientMsgId idempotence absorbs.
                        if Instant::now() >= deadline {
                            return Err(LogError::Timeout);
                        }
                        rec = back;
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    Err((e, _)) => return Err(unavailable(e)),
                }
            }
        }
        let results = tokio::time::timeout_at(
            deadline + DELIVERY_GRACE,
            futures_util::future::join_all(deliveries),
        )
        .await
        .map_err(|_| LogError::Timeout)?;
        for r in results {
            match r {
                Ok(Ok(_)) => {}
                Ok(Err((e, _))) if code(&e) == Some(RDKafkaErrorCode::MessageTimedOut) => {
                    return Err(LogError::Timeout);
                }
                Ok(Err((e, _))) => return Err(unavailable(e)),
                // The producer dropped the delivery report: it is shutting down.
                Err(_) => return Err(LogError::Closed),
            }
        }
        Ok(())
    }

    async fn subscribe(
        &self,
        group: &str,
        topics: &[String],
    ) -> Result<Box<dyn Subscription>, LogError> {
        Ok(Box::new(self.subscribe_group(group, topics)?))
    }

    async fn read_from_start(&self, topic: &str) -> Result<Box<dyn Subscription>, LogError> {
        let partitions = self
            .partitions_of(topic)
            .await?
            .ok_or_else(|| LogError::Unavailable(format!("unknown topic {topic}")))?;
        let group = self.private_group();
        let consumer: StreamConsumer<SubContext> = self
            .inner
            .settings
            .client_config(
                // Presence and notices followers: new records matter within ms.
                &[("fetch.wait.max.ms", "20")],
                &[
                    ("group.id", &group),
                    ("enable.auto.commit", "false"),
                    ("enable.auto.offset.store", "false"),
                ],
            )
            .create_with_context(SubContext::new(false))
            .map_err(unavailable)?;
        let mut tpl = TopicPartitionList::new();
        for p in 0..partitions as i32 {
            tpl.add_partition_offset(topic, p, Offset::Beginning)
                .map_err(unavailable)?;
        }
        consumer.assign(&tpl).map_err(unavailable)?;
        consumer
            .context()
            .assigned
            .lock()
            .unwrap()
            .extend((0..partitions as i32).map(|p| (topic.to_owned(), p)));
        Ok(Box::new(KafkaSubscription {
            consumer: Arc::new(consumer),
        }))
    }

    async fn ensure_topic(&self, spec: &TopicSpec) -> Result<(), LogError> {
        self.create_topic(spec, &[]).await.map(|_| ())
    }

    async fn delete_topic(&self, name: &str) -> Result<(), LogError> {
        let opts = AdminOptions::new().operation_timeout(Some(TOPIC_SETTLE));
        let results = self
            .inner
            .admin
            .delete_topics(&[name], &opts)
            .await
            .map_err(unavailable)?;
        for r in results {
            match r {
                Ok(_) | Err((_, RDKafkaErrorCode::UnknownTopicOrPartition)) => {}
                Err((name, e)) => {
                    return Err(LogError::Unavailable(format!("delete topic {name}: {e}")));
                }
            }
        }
        self.settle(name, |p| p.is_none()).await
    }

    fn groups_joined(&self) -> bool {
        let mut groups = self.inner.groups.lock().unwrap();
        groups.retain(|g| g.strong_count() > 0);
        groups
            .iter()
            .filter_map(Weak::upgrade)
            .all(|g| *g.changes.borrow() > 0)
    }

    async fn ping(&self) -> Result<(), LogError> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            // A metadata request for no topics: cheap, and answered only by a live broker.
            inner
                .admin
                .inner()
                .fetch_cluster_id(PING_TIMEOUT)
                .map(|_| ())
                .ok_or(LogError::Unavailable(format!(
                    "no Kafka broker answered within {PING_TIMEOUT:?}"
                )))
        })
        .await
        .map_err(unavailable)?
    }

    async fn watermarks(&self, topic: &str) -> Result<Vec<Watermarks>, LogError> {
        let n = self.partition_count(topic).await?;
        let c = self.plain_consumer(&self.private_group())?;
        let topic = topic.to_owned();
        blocking(move || {
            (0..n)
                .map(|p| {
                    let (low, high) =
                        c.0.fetch_watermarks(&topic, p, ADMIN_TIMEOUT)
                            .map_err(unavailable)?;
                    Ok(Watermarks {
                        partition: p,
                        low,
                        high,
                    })
                })
                .collect()
        })
        .await
    }

    async fn offsets_for_time(&self, topic: &str, ts_ms: i64) -> Result<Vec<(i32, i64)>, LogError> {
        let marks = self.watermarks(topic).await?;
        let c = self.plain_consumer(&self.private_group())?;
        let topic = topic.to_owned();
        blocking(move || {
            let mut tpl = TopicPartitionList::new();
            for m in &marks {
                tpl.add_partition_offset(&topic, m.partition, Offset::Offset(ts_ms))
                    .map_err(unavailable)?;
            }
            let found =
                c.0.offsets_for_times(tpl, ADMIN_TIMEOUT)
                    .map_err(unavailable)?;
            marks
                .iter()
                .map(|m| {
                    let at = found
                        .find_partition(&topic, m.partition)
                        .map(|e| e.offset());
                    Ok(match at {
                        Some(Offset::Offset(o)) => (m.partition, o),
                        // No record that late: start at the end.
                        Some(Offset::End) | None => (m.partition, m.high),
                        Some(other) => {
                            return Err(LogError::Unavailable(format!(
                                "offsets_for_times answered {other:?} for partition {}",
                                m.partition
                            )));
                        }
                    })
                })
                .collect()
        })
        .await
    }

    async fn read_from(
        &self,
        topic: &str,
        starts: &[(i32, i64)],
    ) -> Result<Box<dyn Subscription>, LogError> {
        let consumer: StreamConsumer<SubContext> = self
            .inner
            .settings
            .client_config(
                &[],
                &[
                    ("group.id", &self.private_group()),
                    ("enable.auto.commit", "false"),
                    ("enable.auto.offset.store", "false"),
                ],
            )
            .create_with_context(SubContext::new(false))
            .map_err(unavailable)?;
        let mut tpl = TopicPartitionList::new();
        for (p, o) in starts {
            tpl.add_partition_offset(topic, *p, Offset::Offset(*o))
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

    async fn committed(
        &self,
        group: &str,
        topic: &str,
    ) -> Result<Vec<(i32, Option<i64>)>, LogError> {
        let n = self.partition_count(topic).await?;
        let c = self.plain_consumer(group)?;
        let topic = topic.to_owned();
        blocking(move || {
            let mut tpl = TopicPartitionList::new();
            for p in 0..n {
                tpl.add_partition(&topic, p);
            }
            let got =
                c.0.committed_offsets(tpl, ADMIN_TIMEOUT)
                    .map_err(unavailable)?;
            Ok((0..n)
                .map(|p| {
                    let o = got.find_partition(&topic, p).map(|e| e.offset());
                    match o {
                        Some(Offset::Offset(o)) => (p, Some(o)),
                        _ => (p, None),
                    }
                })
                .collect())
        })
        .await
    }

    async fn set_committed(
        &self,
        group: &str,
        topic: &str,
        offsets: &[(i32, i64)],
    ) -> Result<(), LogError> {
        let c = self.plain_consumer(group)?;
        let (group, topic, offsets) = (group.to_owned(), topic.to_owned(), offsets.to_vec());
        blocking(move || {
            // A live member keeps committing its own positions (and the broker only
            // takes commits from outside the group while it is empty).
            let list =
                c.0.fetch_group_list(Some(&group), ADMIN_TIMEOUT)
                    .map_err(unavailable)?;
            if let Some(g) = list.groups().iter().find(|g| g.name() == group)
                && !g.members().is_empty()
            {
                return Err(LogError::Refused(format!(
                    "consumer group {group} has {} live member(s) (state {}): stop the ferry \
                     processes running that role first",
                    g.members().len(),
                    g.state()
                )));
            }
            let mut tpl = TopicPartitionList::new();
            for (p, o) in &offsets {
                tpl.add_partition_offset(&topic, *p, Offset::Offset(*o))
                    .map_err(unavailable)?;
            }
            c.0.commit(&tpl, CommitMode::Sync).map_err(unavailable)
        })
        .await
    }

    async fn describe(&self, topic: &str) -> Result<Option<TopicInfo>, LogError> {
        let inner = self.inner.clone();
        let name = topic.to_owned();
        // One metadata request: whether the topic exists, and its replication.
        let replication = blocking(move || {
            let md = inner
                .admin
                .inner()
                .fetch_metadata(None, PING_TIMEOUT)
                .map_err(unavailable)?;
            Ok(md
                .topics()
                .iter()
                .find(|t| t.name() == name && t.error().is_none() && !t.partitions().is_empty())
                .map(|t| t.partitions()[0].replicas().len() as i32))
        })
        .await?;
        let Some(replication) = replication else {
            return Ok(None);
        };
        let partitions = self.watermarks(topic).await?;
        let opts = AdminOptions::new().request_timeout(Some(ADMIN_TIMEOUT));
        let results = self
            .inner
            .admin
            .describe_configs([&ResourceSpecifier::Topic(topic)], &opts)
            .await
            .map_err(unavailable)?;
        let mut configs = Vec::new();
        for r in results {
            let r = r.map_err(|e| LogError::Unavailable(format!("describe {topic}: {e}")))?;
            for e in r.entries {
                // What the topic sets itself, plus what ferry's guarantees rest on.
                let relevant = matches!(e.source, ConfigSource::DynamicTopic)
                    || matches!(e.name.as_str(), "cleanup.policy" | "retention.ms");
                if relevant && let Some(v) = e.value {
                    configs.push((e.name, v));
                }
            }
        }
        configs.sort();
        configs.dedup();
        Ok(Some(TopicInfo {
            partitions,
            replication,
            configs,
        }))
    }
}

/// State shared between a subscription and librdkafka's rebalance callbacks, which
/// run inside `recv` (on the task calling `next`).
pub(crate) struct SubContext {
    /// Group consumers commit on revocation; `read_from_start` readers never commit.
    commits: bool,
    /// Partitions the caller paused. Kept across rebalances: a paused partition that
    /// is revoked and assigned back is paused again, as the caller still expects.
    paused: Mutex<HashSet<(String, i32)>>,
    assigned: Mutex<HashSet<(String, i32)>>,
    /// Bumped after every assignment change.
    changes: watch::Sender<u64>,
}

impl SubContext {
    fn new(commits: bool) -> Self {
        Self {
            commits,
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

impl ClientContext for SubContext {}

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

    async fn flush_commits(&mut self) -> Result<(), LogError> {
        if !self.consumer.context().commits {
            return Ok(());
        }
        let consumer = self.consumer.clone();
        tokio::task::spawn_blocking(move || {
            match consumer.commit_consumer_state(CommitMode::Sync) {
                Ok(()) => Ok(()),
                Err(e) if code(&e) == Some(RDKafkaErrorCode::NoOffset) => Ok(()),
                Err(e) => Err(unavailable(e)),
            }
        })
        .await
        .map_err(unavailable)?
    }
}
