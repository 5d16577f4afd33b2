//! The administration side of the Kafka log: topics, metadata, watermarks and
//! group offsets.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::admin::{AdminOptions, ConfigSource, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, DefaultConsumerContext};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::metadata::MetadataTopic;
use rdkafka::{Offset, TopicPartitionList};
use tokio::time::Instant;

use super::{KafkaLog, unavailable};
use crate::msglog::{LogError, Retention, TopicInfo, TopicSpec, Watermarks};

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
/// How long `groups reset` waits for a stopping group's members to leave: a little
/// over the consumers' session timeout (consumer.rs), after which a crashed member
/// is gone too.
const GROUP_SETTLE: Duration = Duration::from_secs(12);
/// Retention of `Retention::Ephemeral` (push) topics: 1 hour.
const EPHEMERAL_RETENTION_MS: &str = "3600000";

impl KafkaLog {
    /// Reads one topic's metadata with `read`; None until the brokers know the topic
    /// and its partitions.
    async fn topic_metadata<T: Send + 'static>(
        &self,
        topic: &str,
        read: impl FnOnce(&MetadataTopic) -> T + Send + 'static,
    ) -> Result<Option<T>, LogError> {
        let inner = self.inner.clone();
        let topic = topic.to_owned();
        blocking(move || {
            // All topics, not just this one: a single-topic metadata request may
            // auto-create the topic on brokers that allow it.
            let md = inner
                .admin
                .inner()
                .fetch_metadata(None, ADMIN_TIMEOUT)
                .map_err(unavailable)?;
            Ok(md
                .topics()
                .iter()
                .find(|t| t.name() == topic && t.error().is_none() && !t.partitions().is_empty())
                .map(read))
        })
        .await
    }

    /// The topic's partition count once the brokers know it.
    pub(super) async fn partitions_of(&self, topic: &str) -> Result<Option<usize>, LogError> {
        self.topic_metadata(topic, |t| t.partitions().len()).await
    }

    /// The topic's partition count and whether every partition has a leader (a
    /// new topic is listed before its leaders are elected, and reads of a
    /// leaderless partition fail with NotLeaderForPartition).
    async fn partitions_led(&self, topic: &str) -> Result<Option<(usize, bool)>, LogError> {
        self.topic_metadata(topic, |t| {
            let led = t
                .partitions()
                .iter()
                .all(|p| p.leader() >= 0 && p.error().is_none());
            (t.partitions().len(), led)
        })
        .await
    }

    /// Polls the metadata until `done` holds for the topic, or gives up. A metadata
    /// request that fails meanwhile (a busy broker answering all topics' metadata
    /// late) is asked again; the last failure is named if the deadline passes.
    async fn settle(
        &self,
        topic: &str,
        done: impl Fn(Option<(usize, bool)>) -> bool,
    ) -> Result<(), LogError> {
        let deadline = Instant::now() + TOPIC_SETTLE;
        loop {
            let seen = self.partitions_led(topic).await;
            if matches!(seen, Ok(p) if done(p)) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                let why = match seen {
                    Err(e) => format!(": {e}"),
                    Ok(_) => String::new(),
                };
                return Err(LogError::Unavailable(format!(
                    "topic {topic} metadata did not settle within {TOPIC_SETTLE:?}{why}"
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
        // What ferry's producer may send (`kafka.max_message_bytes`), whatever the
        // brokers' default: one number for the whole path (`budget.rs`).
        let max_bytes = s.max_message_bytes.to_string();
        config.insert("max.message.bytes", &max_bytes);
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
        self.settle(&spec.name, |p| matches!(p, Some((_, true))))
            .await?;
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
    pub(super) fn private_group(&self) -> String {
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

    pub(super) async fn remove_topic(&self, name: &str) -> Result<(), LogError> {
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

    pub(super) async fn ping_brokers(&self) -> Result<(), LogError> {
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

    pub(super) async fn topic_watermarks(&self, topic: &str) -> Result<Vec<Watermarks>, LogError> {
        let n = self.partition_count(topic).await?;
        let c = self.plain_consumer(&self.private_group())?;
        let topic = topic.to_owned();
        blocking(move || {
            (0..n)
                .map(|p| {
                    let (low, high) = c.watermarks(&topic, p)?;
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

    pub(super) async fn topic_offsets_for_time(
        &self,
        topic: &str,
        ts_ms: i64,
    ) -> Result<Vec<(i32, i64)>, LogError> {
        let marks = self.topic_watermarks(topic).await?;
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

    pub(super) async fn group_committed(
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

    pub(super) async fn set_group_committed(
        &self,
        group: &str,
        topic: &str,
        offsets: &[(i32, i64)],
    ) -> Result<(), LogError> {
        let c = self.plain_consumer(group)?;
        let (group, topic, offsets) = (group.to_owned(), topic.to_owned(), offsets.to_vec());
        blocking(move || {
            // A live member keeps committing its own positions (and the broker only
            // takes commits from outside the group while it is empty). A pod that has
            // just stopped may still be listed until the broker has processed its
            // leave (or, after a crash, until its session expires): wait for that,
            // bounded, before refusing.
            let deadline = std::time::Instant::now() + GROUP_SETTLE;
            loop {
                let list =
                    c.0.fetch_group_list(Some(&group), ADMIN_TIMEOUT)
                        .map_err(unavailable)?;
                let busy = list
                    .groups()
                    .iter()
                    .find(|g| g.name() == group)
                    .filter(|g| !g.members().is_empty())
                    .map(|g| (g.members().len(), g.state().to_owned()));
                match busy {
                    Some((n, state)) if std::time::Instant::now() >= deadline => {
                        return Err(LogError::Refused(format!(
                            "consumer group {group} has {n} live member(s) (state {state}): \
                             stop the ferry processes running that role first"
                        )));
                    }
                    Some(_) => {}
                    None => {
                        let mut tpl = TopicPartitionList::new();
                        for (p, o) in &offsets {
                            tpl.add_partition_offset(&topic, *p, Offset::Offset(*o))
                                .map_err(unavailable)?;
                        }
                        match c.0.commit(&tpl, CommitMode::Sync) {
                            Ok(()) => return Ok(()),
                            // The group is between generations: ask again.
                            Err(e)
                                if matches!(
                                    e.rdkafka_error_code(),
                                    Some(
                                        RDKafkaErrorCode::RebalanceInProgress
                                            | RDKafkaErrorCode::CoordinatorLoadInProgress
                                            | RDKafkaErrorCode::NotCoordinator
                                    )
                                ) && std::time::Instant::now() < deadline => {}
                            Err(e) => return Err(unavailable(e)),
                        }
                    }
                }
                std::thread::sleep(Duration::from_millis(250));
            }
        })
        .await
    }

    pub(super) async fn describe_topic(&self, topic: &str) -> Result<Option<TopicInfo>, LogError> {
        // One metadata request: whether the topic exists, and its replication.
        let replication = self
            .topic_metadata(topic, |t| t.partitions()[0].replicas().len() as i32)
            .await?;
        let Some(replication) = replication else {
            return Ok(None);
        };
        let partitions = self.topic_watermarks(topic).await?;
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

/// A consumer created for one blocking request.
struct Plain(BaseConsumer<DefaultConsumerContext>);

impl Plain {
    /// One partition's watermarks. A partition whose leader is moving (or not yet
    /// elected on a new topic) answers NotLeaderForPartition / LeaderNotAvailable
    /// for a moment: asked again until ADMIN_TIMEOUT runs out.
    fn watermarks(&self, topic: &str, partition: i32) -> Result<(i64, i64), LogError> {
        let deadline = std::time::Instant::now() + ADMIN_TIMEOUT;
        loop {
            match self.0.fetch_watermarks(topic, partition, ADMIN_TIMEOUT) {
                Ok(marks) => return Ok(marks),
                Err(e)
                    if matches!(
                        e.rdkafka_error_code(),
                        Some(
                            RDKafkaErrorCode::NotLeaderForPartition
                                | RDKafkaErrorCode::LeaderNotAvailable
                        )
                    ) && std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(e) => return Err(unavailable(e)),
            }
        }
    }
}

/// Runs a blocking librdkafka request off the async runtime.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, LogError> + Send + 'static,
) -> Result<T, LogError> {
    tokio::task::spawn_blocking(f).await.map_err(unavailable)?
}
