//! Opens the configured backends: the log (Kafka or embedded) and the store
//! (ScyllaDB or embedded), and names every topic ferry uses.

use std::sync::Arc;
use std::time::Duration;

use crate::config::{Config, LogKind, StoreKind};
use crate::msglog::kafka::{KafkaLog, KafkaSettings};
use crate::msglog::{MsgLog, Retention, TopicSpec, Topics};
use crate::store::Store;
use crate::store::scylla::{ScyllaSettings, ScyllaStore};

pub(crate) fn kafka_settings(cfg: &Config) -> KafkaSettings {
    KafkaSettings {
        brokers: cfg.kafka.brokers.clone(),
        topic_prefix: cfg.kafka.topic_prefix.clone(),
        partitions: cfg.kafka.partitions,
        replication: cfg.kafka.replication,
        properties: cfg.kafka.properties.clone(),
        append_timeout: Duration::from_millis(cfg.log.append_timeout_ms),
        max_message_bytes: cfg.kafka.max_message_bytes,
    }
}

pub(crate) fn scylla_settings(cfg: &Config) -> ScyllaSettings {
    let s = &cfg.scylla;
    ScyllaSettings {
        nodes: s.nodes.clone(),
        keyspace: s.keyspace.clone(),
        replication: s.replication,
        username: s.username.clone(),
        password: s.password.clone(),
    }
}

pub(crate) async fn open_log(cfg: &Config) -> anyhow::Result<Arc<dyn MsgLog>> {
    Ok(match cfg.log.kind {
        LogKind::Embedded => Arc::new(
            crate::msglog::embedded::EmbeddedLog::open(&cfg.data_dir)?
                .with_max_record_bytes(cfg.kafka.max_message_bytes),
        ),
        LogKind::Kafka => Arc::new(KafkaLog::connect(&kafka_settings(cfg))?),
    })
}

pub(crate) async fn open_store(cfg: &Config) -> anyhow::Result<Arc<dyn Store>> {
    Ok(match cfg.store.kind {
        StoreKind::Embedded => {
            Arc::new(crate::store::embedded::EmbeddedStore::open(&cfg.data_dir)?)
        }
        StoreKind::Scylla => Arc::new(
            ScyllaStore::connect_with_horizon(
                &scylla_settings(cfg),
                std::time::Duration::from_secs(cfg.scylla.durability_horizon_secs),
            )
            .await?,
        ),
    })
}

/// Every topic ferry uses, with how each keeps its records.
pub(crate) fn topic_specs(cfg: &Config, topics: &Topics) -> Vec<TopicSpec> {
    let mut specs = vec![
        TopicSpec {
            name: topics.inbound(),
            retention: Retention::Forever,
        },
        TopicSpec {
            name: topics.notices(),
            retention: Retention::Compacted,
        },
        TopicSpec {
            name: topics.presence(),
            retention: Retention::Compacted,
        },
        TopicSpec {
            name: topics.dead_letter(),
            retention: Retention::Full,
        },
        TopicSpec {
            name: topics.offline(),
            retention: Retention::Full,
        },
        TopicSpec {
            name: topics.offline_dead_letter(),
            retention: Retention::Full,
        },
        TopicSpec {
            name: topics.push(&cfg.pod),
            retention: Retention::Ephemeral,
        },
    ];
    specs.extend(cfg.pipeline.delay_tiers_secs.iter().map(|t| TopicSpec {
        name: topics.delay(*t),
        retention: Retention::Full,
    }));
    specs
}
