//! Kafka log: an idempotent `acks=all` producer, one consumer per subscription, an
//! admin client for topics. All clients share `KafkaSettings::properties` (TLS, SASL,
//! tuning), applied after ferry's tunables and before the settings ferry's
//! guarantees depend on, so a property can retune but never break them.
//!
//! Offsets: ferry stores an offset only when the caller says the record's effects are
//! durable (`Subscription::commit`, `enable.auto.offset.store=false`); the auto
//! committer and the revocation hook only ever write those stored offsets. So a
//! crash or a rebalance redelivers what was not yet processed and never skips it.

mod admin;
mod consumer;
mod producer;
mod stats;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use async_trait::async_trait;
use rdkafka::admin::AdminClient;
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::FutureProducer;

use super::{
    LogError, MsgLog, Outgoing, Subscription, TopicInfo, TopicSpec, Watermarks, unavailable,
};
use consumer::SubContext;

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
    /// The largest record (`kafka.max_message_bytes`): librdkafka's
    /// `message.max.bytes` and the `max.message.bytes` of the topics ferry creates.
    pub max_message_bytes: usize,
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
    producer: FutureProducer<stats::Counted>,
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
        let max_bytes = cfg.max_message_bytes.to_string();
        let producer: FutureProducer<stats::Counted> = cfg
            .client_config(
                // lz4, not zstd: with zstd a producer batch paid ZSTD_createCStream
                // and its memset, and acked SendMsgList about half as many records
                // in the same run (BENCHMARKS.md, "Throughput").
                &[("linger.ms", "2"), ("compression.type", "lz4")],
                &[
                    ("enable.idempotence", "true"),
                    ("acks", "all"),
                    // Delivery reports arrive by the deadline: `append` can answer
                    // Timeout knowing librdkafka gave up on the records as well.
                    ("message.timeout.ms", &timeout_ms),
                    // A record over the budget is refused here, as the brokers would
                    // refuse it, and never half of a produce request (`budget.rs`).
                    ("message.max.bytes", &max_bytes),
                ],
            )
            .create_with_context(stats::Counted(stats::Counts::new("producer")))
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
        self.produce(records).await
    }

    async fn enqueue(&self, records: Vec<Outgoing>) -> Result<super::Durable, LogError> {
        self.enqueue_records(records).await
    }

    async fn subscribe(
        &self,
        group: &str,
        topics: &[String],
    ) -> Result<Box<dyn Subscription>, LogError> {
        Ok(Box::new(self.subscribe_group(group, topics)?))
    }

    async fn read_from_start(&self, topic: &str) -> Result<Box<dyn Subscription>, LogError> {
        self.open_from_start(topic).await
    }

    async fn ensure_topic(&self, spec: &TopicSpec) -> Result<(), LogError> {
        self.create_topic(spec, &[]).await.map(|_| ())
    }

    async fn delete_topic(&self, name: &str) -> Result<(), LogError> {
        self.remove_topic(name).await
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
        self.ping_brokers().await
    }

    async fn watermarks(&self, topic: &str) -> Result<Vec<Watermarks>, LogError> {
        self.topic_watermarks(topic).await
    }

    async fn offsets_for_time(&self, topic: &str, ts_ms: i64) -> Result<Vec<(i32, i64)>, LogError> {
        self.topic_offsets_for_time(topic, ts_ms).await
    }

    async fn read_from(
        &self,
        topic: &str,
        starts: &[(i32, i64)],
    ) -> Result<Box<dyn Subscription>, LogError> {
        self.open_from(topic, starts).await
    }

    async fn committed(
        &self,
        group: &str,
        topic: &str,
    ) -> Result<Vec<(i32, Option<i64>)>, LogError> {
        self.group_committed(group, topic).await
    }

    async fn set_committed(
        &self,
        group: &str,
        topic: &str,
        offsets: &[(i32, i64)],
    ) -> Result<(), LogError> {
        self.set_group_committed(group, topic, offsets).await
    }

    async fn describe(&self, topic: &str) -> Result<Option<TopicInfo>, LogError> {
        self.describe_topic(topic).await
    }
}
