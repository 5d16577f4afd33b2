//! The `[log]` and `[kafka]` sections: which message log, and how to reach Kafka.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{Invalid, in_range, invalid};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum LogKind {
    Embedded,
    Kafka,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct LogConfig {
    pub(crate) kind: LogKind,
    /// Longest wait for the log to acknowledge an append before answering RetryError.
    pub(crate) append_timeout_ms: u64,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            kind: LogKind::Embedded,
            append_timeout_ms: 5000,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct KafkaConfig {
    pub(crate) brokers: String,
    /// Prepended to every topic and consumer group name.
    pub(crate) topic_prefix: String,
    pub(crate) partitions: i32,
    pub(crate) replication: i32,
    /// Extra librdkafka properties (security.protocol, sasl.*, ssl.*).
    pub(crate) properties: BTreeMap<String, String>,
    /// The largest record the brokers take (their `message.max.bytes`, 1,000,000 by
    /// default): librdkafka's `message.max.bytes`, the topics ferry creates and every
    /// size a client may send are derived from it (`budget.rs`). The embedded log
    /// refuses records over it too, so both backends accept the same requests.
    pub(crate) max_message_bytes: usize,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        Self {
            brokers: "127.0.0.1:9092".to_owned(),
            topic_prefix: "ferry.".to_owned(),
            partitions: 8,
            replication: 1,
            properties: BTreeMap::new(),
            max_message_bytes: 1_000_000,
        }
    }
}

impl LogConfig {
    pub(super) fn validate(&self, bad: &mut Vec<Invalid>) {
        in_range(
            bad,
            "log.append_timeout_ms",
            self.append_timeout_ms,
            1..=600_000,
        );
    }
}

impl KafkaConfig {
    /// Kafka's keys matter only when it is the log.
    pub(super) fn validate(&self, log: LogKind, bad: &mut Vec<Invalid>) {
        if log != LogKind::Kafka {
            return;
        }
        if self.brokers.is_empty() {
            bad.push(invalid(
                "kafka.brokers",
                "required when log.kind = \"kafka\"",
            ));
        }
        if self.partitions < 1 || self.replication < 1 {
            bad.push(invalid(
                "kafka.partitions",
                "partitions and replication must be at least 1",
            ));
        }
    }
}
