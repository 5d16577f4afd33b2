//! The `MsgLog` operations of the embedded log: appends (ephemeral topics in
//! memory, durable ones through the writer thread), topics, offsets and watermarks.

use std::collections::VecDeque;

use async_trait::async_trait;
use redb::ReadableDatabase;

use super::record::decode;
use super::writer::WriteOp;
use super::{EPHEMERAL_KEEP, EmbeddedLog, EphemeralTopic, OFFSETS, RECORDS, TOPICS};
use crate::domain::now_ms;
use crate::msglog::{
    LogError, LogRecord, MsgLog, Outgoing, Retention, Subscription, TopicInfo, TopicSpec,
    Watermarks, unavailable,
};

#[async_trait]
impl MsgLog for EmbeddedLog {
    async fn append(&self, records: Vec<Outgoing>) -> Result<(), LogError> {
        if records.is_empty() {
            return Ok(());
        }
        // All or nothing: checked before any record is written.
        if let Some(o) = records
            .iter()
            .find(|o| crate::msglog::record_bytes(o) > self.max_record_bytes)
        {
            return Err(LogError::Rejected(format!(
                "{}: a record of {} bytes is over the {}-byte limit",
                o.topic,
                crate::msglog::record_bytes(o),
                self.max_record_bytes
            )));
        }
        let (eph, durable): (Vec<_>, Vec<_>) = records
            .into_iter()
            .partition(|o| self.is_ephemeral(&o.topic));
        {
            let known = self.inner.durable_topics.lock().unwrap();
            if let Some(o) = durable.iter().find(|o| !known.contains(&o.topic)) {
                return Err(LogError::Unavailable(format!("unknown topic {}", o.topic)));
            }
        }
        if !eph.is_empty() {
            let ts = now_ms();
            let mut topics = self.inner.ephemeral.lock().unwrap();
            let mut moved: Vec<(String, u64)> = Vec::new();
            for o in eph {
                if !topics.contains_key(&o.topic) {
                    topics.insert(o.topic.clone(), EphemeralTopic::default());
                }
                let t = topics.get_mut(&o.topic).expect("inserted above");
                let next = t.next + 1;
                match moved.last_mut() {
                    Some((name, n)) if *name == o.topic => *n = next,
                    _ => moved.push((o.topic.clone(), next)),
                }
                t.records.push_back(LogRecord {
                    topic: o.topic,
                    partition: 0,
                    offset: t.next as i64,
                    key: o.key,
                    value: o.value,
                    timestamp_ms: ts,
                    headers: o.headers,
                });
                t.next = next;
                if t.records.len() > EPHEMERAL_KEEP {
                    t.records.pop_front();
                }
            }
            drop(topics);
            for (topic, next) in moved {
                self.inner.advance(&topic, next);
            }
        }
        if durable.is_empty() {
            return Ok(());
        }
        self.send(|tx| WriteOp::Append(durable, tx)).await
    }

    async fn subscribe(
        &self,
        group: &str,
        topics: &[String],
    ) -> Result<Box<dyn Subscription>, LogError> {
        Ok(Box::new(self.subscription(
            Some(group.to_owned()),
            topics,
            false,
        )?))
    }

    async fn read_from_start(&self, topic: &str) -> Result<Box<dyn Subscription>, LogError> {
        Ok(Box::new(self.subscription(
            None,
            &[topic.to_owned()],
            true,
        )?))
    }

    async fn ensure_topic(&self, spec: &TopicSpec) -> Result<(), LogError> {
        if spec.retention == Retention::Ephemeral {
            // A topic made again after a delete goes on from its old tip: offsets
            // never go back under a reader that followed the old one.
            let tip = *self.inner.tip(&spec.name).borrow();
            self.inner
                .ephemeral
                .lock()
                .unwrap()
                .entry(spec.name.clone())
                .or_insert_with(|| EphemeralTopic {
                    next: tip,
                    records: VecDeque::new(),
                });
            return Ok(());
        }
        self.send(|tx| WriteOp::Ensure(spec.clone(), tx)).await?;
        self.inner
            .durable_topics
            .lock()
            .unwrap()
            .insert(spec.name.clone());
        Ok(())
    }

    async fn delete_topic(&self, name: &str) -> Result<(), LogError> {
        self.inner.ephemeral.lock().unwrap().remove(name);
        Ok(())
    }

    async fn ping(&self) -> Result<(), LogError> {
        self.send(WriteOp::Flush).await
    }

    async fn watermarks(&self, topic: &str) -> Result<Vec<Watermarks>, LogError> {
        let (low, high) = self.bounds(topic)?;
        Ok(vec![Watermarks {
            partition: 0,
            low: low as i64,
            high: high as i64,
        }])
    }

    async fn offsets_for_time(&self, topic: &str, ts_ms: i64) -> Result<Vec<(i32, i64)>, LogError> {
        let (low, high) = self.bounds(topic)?;
        if let Some(eph) = self.inner.ephemeral.lock().unwrap().get(topic) {
            let at = eph.records.iter().find(|r| r.timestamp_ms >= ts_ms);
            return Ok(vec![(0, at.map_or(high as i64, |r| r.offset))]);
        }
        // Appends stamp the wall clock, which may step back: scan rather than bisect.
        let rtx = self.inner.db.begin_read().map_err(unavailable)?;
        let records = rtx.open_table(RECORDS).map_err(unavailable)?;
        for row in records
            .range((topic, low)..(topic, u64::MAX))
            .map_err(unavailable)?
        {
            let (k, v) = row.map_err(unavailable)?;
            let off = k.value().1;
            if decode(topic, off, v.value()).is_some_and(|r| r.timestamp_ms >= ts_ms) {
                return Ok(vec![(0, off as i64)]);
            }
        }
        Ok(vec![(0, high as i64)])
    }

    async fn read_from(
        &self,
        topic: &str,
        starts: &[(i32, i64)],
    ) -> Result<Box<dyn Subscription>, LogError> {
        self.bounds(topic)?;
        let mut sub = self.subscription(None, &[], true)?;
        // One partition: any start other than partition 0's is for nothing here.
        if let Some((_, o)) = starts.iter().find(|(p, _)| *p == 0) {
            sub.cursors.insert(topic.to_owned(), (*o).max(0) as u64);
            sub.tips.insert(topic.to_owned(), self.inner.tip(topic));
        }
        Ok(Box::new(sub))
    }

    async fn committed(
        &self,
        group: &str,
        topic: &str,
    ) -> Result<Vec<(i32, Option<i64>)>, LogError> {
        self.bounds(topic)?;
        let rtx = self.inner.db.begin_read().map_err(unavailable)?;
        let offsets = rtx.open_table(OFFSETS).map_err(unavailable)?;
        let at = offsets.get((group, topic)).map_err(unavailable)?;
        Ok(vec![(0, at.map(|v| v.value() as i64))])
    }

    async fn set_committed(
        &self,
        group: &str,
        topic: &str,
        offsets: &[(i32, i64)],
    ) -> Result<(), LogError> {
        // No live member can interfere: the file lock keeps every other process out
        // while this one has the log open.
        self.bounds(topic)?;
        for (p, o) in offsets {
            if *p != 0 {
                return Err(LogError::UnknownTopic(format!("{topic} partition {p}")));
            }
            self.inner
                .writer
                .send(WriteOp::Commit {
                    group: group.to_owned(),
                    topic: topic.to_owned(),
                    next: (*o).max(0) as u64,
                })
                .map_err(|_| LogError::Closed)?;
        }
        self.send(WriteOp::Flush).await
    }

    async fn describe(&self, topic: &str) -> Result<Option<TopicInfo>, LogError> {
        let partitions = match self.watermarks(topic).await {
            Ok(p) => p,
            Err(LogError::UnknownTopic(_)) => return Ok(None),
            Err(e) => return Err(e),
        };
        let policy = if self.is_ephemeral(topic) {
            "in-memory (ephemeral)"
        } else {
            let rtx = self.inner.db.begin_read().map_err(unavailable)?;
            let topics = rtx.open_table(TOPICS).map_err(unavailable)?;
            match topics.get(topic).map_err(unavailable)?.map(|v| v.value()) {
                Some(1) => "compact",
                _ => "delete",
            }
        };
        let mut configs = vec![("cleanup.policy".to_owned(), policy.to_owned())];
        if policy == "delete" {
            // The embedded log never expires records.
            configs.push(("retention.ms".to_owned(), "-1".to_owned()));
        }
        Ok(Some(TopicInfo {
            partitions,
            replication: 1,
            configs,
        }))
    }
}
