//! Embedded log: topics in one redb file under the data directory. A single writer
//! thread group-commits concurrent appends, so many small appends cost one fsync.
//! One partition (0) per topic: per-key order is total order.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::Path;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use prost::Message as _;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use tokio::sync::{mpsc, oneshot, watch};

use super::{
    LogError, LogRecord, MsgLog, Outgoing, Retention, Subscription, TopicInfo, TopicSpec,
    Watermarks, unavailable,
};
use crate::domain::now_ms;
use crate::proto::records::{Header, StoredRecord};

const TOPICS: TableDefinition<&str, u8> = TableDefinition::new("topics");
const NEXT: TableDefinition<&str, u64> = TableDefinition::new("next_offset");
const RECORDS: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("records");
const KEYS: TableDefinition<(&str, &[u8]), u64> = TableDefinition::new("compacted_keys");
const OFFSETS: TableDefinition<(&str, &str), u64> = TableDefinition::new("group_offsets");

/// Records kept in memory per ephemeral topic; older ones are dropped.
const EPHEMERAL_KEEP: usize = 4096;
/// Records read from disk per topic per fill.
const FILL_BATCH: usize = 256;
/// Operations group-committed in one write transaction.
const WRITE_BATCH: usize = 1024;

enum WriteOp {
    Append(Vec<Outgoing>, oneshot::Sender<Result<(), LogError>>),
    Commit {
        group: String,
        topic: String,
        next: u64,
    },
    Ensure(TopicSpec, oneshot::Sender<Result<(), LogError>>),
    Flush(oneshot::Sender<Result<(), LogError>>),
}

#[derive(Default)]
struct EphemeralTopic {
    next: u64,
    records: VecDeque<LogRecord>,
}

struct Inner {
    db: Database,
    writer: mpsc::UnboundedSender<WriteOp>,
    /// Bumped after every commit or ephemeral append; consumers wait on it.
    version: watch::Sender<u64>,
    ephemeral: Mutex<HashMap<String, EphemeralTopic>>,
    durable_topics: Mutex<HashSet<String>>,
}

#[derive(Clone)]
pub struct EmbeddedLog {
    inner: Arc<Inner>,
}

impl EmbeddedLog {
    pub fn open(dir: &Path) -> Result<Self, LogError> {
        std::fs::create_dir_all(dir).map_err(unavailable)?;
        let db = Database::create(dir.join("log.redb")).map_err(unavailable)?;
        let mut known = HashSet::new();
        {
            let tx = db.begin_write().map_err(unavailable)?;
            {
                let topics = tx.open_table(TOPICS).map_err(unavailable)?;
                tx.open_table(NEXT).map_err(unavailable)?;
                tx.open_table(RECORDS).map_err(unavailable)?;
                tx.open_table(KEYS).map_err(unavailable)?;
                tx.open_table(OFFSETS).map_err(unavailable)?;
                for row in topics.iter().map_err(unavailable)? {
                    let (k, _) = row.map_err(unavailable)?;
                    known.insert(k.value().to_owned());
                }
            }
            tx.commit().map_err(unavailable)?;
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let inner = Arc::new(Inner {
            db,
            writer: tx,
            version: watch::channel(0).0,
            ephemeral: Mutex::new(HashMap::new()),
            durable_topics: Mutex::new(known),
        });
        let weak = Arc::downgrade(&inner);
        std::thread::Builder::new()
            .name("ferry-log-writer".into())
            .spawn(move || writer_loop(weak, rx))
            .map_err(unavailable)?;
        Ok(Self { inner })
    }

    fn is_ephemeral(&self, topic: &str) -> bool {
        self.inner.ephemeral.lock().unwrap().contains_key(topic)
    }

    async fn send(
        &self,
        op: impl FnOnce(oneshot::Sender<Result<(), LogError>>) -> WriteOp,
    ) -> Result<(), LogError> {
        let (tx, rx) = oneshot::channel();
        self.inner
            .writer
            .send(op(tx))
            .map_err(|_| LogError::Closed)?;
        rx.await.map_err(|_| LogError::Closed)?
    }

    fn subscription(
        &self,
        group: Option<String>,
        topics: &[String],
        from_start: bool,
    ) -> Result<EmbeddedSub, LogError> {
        let mut cursors = HashMap::new();
        let rtx = self.inner.db.begin_read().map_err(unavailable)?;
        let offsets = rtx.open_table(OFFSETS).map_err(unavailable)?;
        for t in topics {
            let start = if let Some(eph) = self.inner.ephemeral.lock().unwrap().get(t) {
                if from_start {
                    eph.records.front().map_or(eph.next, |r| r.offset as u64)
                } else {
                    eph.next
                }
            } else {
                match &group {
                    Some(g) => offsets
                        .get((g.as_str(), t.as_str()))
                        .map_err(unavailable)?
                        .map_or(0, |v| v.value()),
                    None => 0,
                }
            };
            cursors.insert(t.clone(), start);
        }
        Ok(EmbeddedSub {
            log: self.clone(),
            group,
            cursors,
            paused: HashSet::new(),
            buf: VecDeque::new(),
            version: self.inner.version.subscribe(),
        })
    }
}

fn writer_loop(inner: std::sync::Weak<Inner>, mut rx: mpsc::UnboundedReceiver<WriteOp>) {
    while let Some(first) = rx.blocking_recv() {
        let Some(inner) = inner.upgrade() else { return };
        let mut ops = vec![first];
        while ops.len() < WRITE_BATCH {
            match rx.try_recv() {
                Ok(op) => ops.push(op),
                Err(_) => break,
            }
        }
        let result = apply(&inner.db, &ops);
        if let Err(e) = &result {
            tracing::error!(error = %e, "embedded log write failed");
        }
        for op in ops {
            let reply = match op {
                WriteOp::Append(_, r) | WriteOp::Ensure(_, r) | WriteOp::Flush(r) => r,
                WriteOp::Commit { .. } => continue,
            };
            let _ = reply.send(
                result
                    .as_ref()
                    .map(|_| ())
                    .map_err(|e| LogError::Unavailable(e.to_string())),
            );
        }
        inner.version.send_modify(|v| *v += 1);
    }
}

fn encode(o: &Outgoing, ts: i64) -> Vec<u8> {
    StoredRecord {
        key: o.key.clone(),
        value: o.value.clone(),
        timestamp_ms: ts,
        headers: o
            .headers
            .iter()
            .map(|(n, v)| Header {
                name: n.clone(),
                value: v.clone(),
            })
            .collect(),
    }
    .encode_to_vec()
}

fn decode(topic: &str, offset: u64, bytes: &[u8]) -> Option<LogRecord> {
    let s = StoredRecord::decode(bytes).ok()?;
    Some(LogRecord {
        topic: topic.to_owned(),
        partition: 0,
        offset: offset as i64,
        key: s.key,
        value: s.value,
        timestamp_ms: s.timestamp_ms,
        headers: s.headers.into_iter().map(|h| (h.name, h.value)).collect(),
    })
}

fn apply(db: &Database, ops: &[WriteOp]) -> Result<(), redb::Error> {
    let tx = db.begin_write()?;
    {
        let mut topics = tx.open_table(TOPICS)?;
        let mut next = tx.open_table(NEXT)?;
        let mut records = tx.open_table(RECORDS)?;
        let mut keys = tx.open_table(KEYS)?;
        let mut offsets = tx.open_table(OFFSETS)?;
        let ts = now_ms();
        for op in ops {
            match op {
                WriteOp::Append(batch, _) => {
                    for o in batch {
                        let compacted = topics.get(o.topic.as_str())?.map(|v| v.value()) == Some(1);
                        let off = next.get(o.topic.as_str())?.map_or(0, |v| v.value());
                        next.insert(o.topic.as_str(), off + 1)?;
                        if compacted {
                            let old = keys
                                .insert((o.topic.as_str(), o.key.as_ref()), off)?
                                .map(|v| v.value());
                            if let Some(old) = old {
                                records.remove((o.topic.as_str(), old))?;
                            }
                        }
                        records.insert((o.topic.as_str(), off), encode(o, ts).as_slice())?;
                    }
                }
                WriteOp::Commit {
                    group,
                    topic,
                    next: n,
                } => {
                    offsets.insert((group.as_str(), topic.as_str()), *n)?;
                }
                WriteOp::Ensure(spec, _) => {
                    let code = if spec.retention == Retention::Compacted {
                        1
                    } else {
                        0
                    };
                    topics.insert(spec.name.as_str(), code)?;
                }
                WriteOp::Flush(_) => {}
            }
        }
    }
    tx.commit()?;
    Ok(())
}

#[async_trait]
impl MsgLog for EmbeddedLog {
    async fn append(&self, records: Vec<Outgoing>) -> Result<(), LogError> {
        if records.is_empty() {
            return Ok(());
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
            for o in eph {
                let t = topics.entry(o.topic.clone()).or_default();
                t.records.push_back(LogRecord {
                    topic: o.topic,
                    partition: 0,
                    offset: t.next as i64,
                    key: o.key,
                    value: o.value,
                    timestamp_ms: ts,
                    headers: o.headers,
                });
                t.next += 1;
                if t.records.len() > EPHEMERAL_KEEP {
                    t.records.pop_front();
                }
            }
            drop(topics);
            self.inner.version.send_modify(|v| *v += 1);
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
            self.inner
                .ephemeral
                .lock()
                .unwrap()
                .entry(spec.name.clone())
                .or_default();
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

impl EmbeddedLog {
    /// The first kept and the next offset of a topic's only partition.
    fn bounds(&self, topic: &str) -> Result<(u64, u64), LogError> {
        if let Some(eph) = self.inner.ephemeral.lock().unwrap().get(topic) {
            let low = eph.records.front().map_or(eph.next, |r| r.offset as u64);
            return Ok((low, eph.next));
        }
        if !self.inner.durable_topics.lock().unwrap().contains(topic) {
            return Err(LogError::UnknownTopic(topic.to_owned()));
        }
        let rtx = self.inner.db.begin_read().map_err(unavailable)?;
        let next = rtx.open_table(NEXT).map_err(unavailable)?;
        let high = next
            .get(topic)
            .map_err(unavailable)?
            .map_or(0, |v| v.value());
        let records = rtx.open_table(RECORDS).map_err(unavailable)?;
        let low = match records
            .range((topic, 0)..(topic, u64::MAX))
            .map_err(unavailable)?
            .next()
        {
            Some(row) => row.map_err(unavailable)?.0.value().1,
            None => high,
        };
        Ok((low, high))
    }
}

struct EmbeddedSub {
    log: EmbeddedLog,
    /// None: a read outside any group, nothing is committed.
    group: Option<String>,
    /// Next offset to deliver, per topic.
    cursors: HashMap<String, u64>,
    paused: HashSet<String>,
    /// Read but not yet delivered; never holds records of a paused topic.
    buf: VecDeque<LogRecord>,
    version: watch::Receiver<u64>,
}

impl EmbeddedSub {
    fn fill(&mut self) -> Result<(), LogError> {
        let inner = &self.log.inner;
        let rtx = inner.db.begin_read().map_err(unavailable)?;
        let records = rtx.open_table(RECORDS).map_err(unavailable)?;
        let mut topics: Vec<_> = self.cursors.iter().map(|(t, c)| (t.clone(), *c)).collect();
        topics.sort();
        for (topic, cursor) in topics {
            if self.paused.contains(&topic) {
                continue;
            }
            if let Some(eph) = inner.ephemeral.lock().unwrap().get(&topic) {
                let skip_to = cursor.max(eph.records.front().map_or(0, |r| r.offset as u64));
                self.buf.extend(
                    eph.records
                        .iter()
                        .filter(|r| r.offset as u64 >= skip_to)
                        .take(FILL_BATCH)
                        .cloned(),
                );
                continue;
            }
            let range = records
                .range((topic.as_str(), cursor)..(topic.as_str(), u64::MAX))
                .map_err(unavailable)?;
            for row in range.take(FILL_BATCH) {
                let (k, v) = row.map_err(unavailable)?;
                let (_, off) = k.value();
                match decode(&topic, off, v.value()) {
                    Some(r) => self.buf.push_back(r),
                    None => tracing::error!(
                        topic,
                        offset = off,
                        "undecodable embedded log record skipped"
                    ),
                }
            }
        }
        Ok(())
    }
}

#[async_trait]
impl Subscription for EmbeddedSub {
    async fn next(&mut self) -> Result<LogRecord, LogError> {
        loop {
            if let Some(r) = self.buf.pop_front() {
                self.cursors.insert(r.topic.clone(), r.offset as u64 + 1);
                return Ok(r);
            }
            // Mark the current version seen before reading, so an append that lands
            // after the read wakes us.
            self.version.borrow_and_update();
            self.fill()?;
            if self.buf.is_empty() {
                self.version.changed().await.map_err(|_| LogError::Closed)?;
            }
        }
    }

    fn commit(&mut self, record: &LogRecord) -> Result<(), LogError> {
        let Some(group) = &self.group else {
            return Ok(());
        };
        if self.log.is_ephemeral(&record.topic) {
            return Ok(());
        }
        self.log
            .inner
            .writer
            .send(WriteOp::Commit {
                group: group.clone(),
                topic: record.topic.clone(),
                next: record.offset as u64 + 1,
            })
            .map_err(|_| LogError::Closed)
    }

    fn pause(&mut self, topic: &str, _partition: i32) -> Result<(), LogError> {
        self.paused.insert(topic.to_owned());
        if let Some(first) = self
            .buf
            .iter()
            .find(|r| r.topic == topic)
            .map(|r| r.offset as u64)
        {
            self.cursors.insert(topic.to_owned(), first);
        }
        self.buf.retain(|r| r.topic != topic);
        Ok(())
    }

    fn resume(&mut self, topic: &str, _partition: i32) -> Result<(), LogError> {
        self.paused.remove(topic);
        self.log.inner.version.send_modify(|v| *v += 1);
        Ok(())
    }

    async fn flush_commits(&mut self) -> Result<(), LogError> {
        self.log.send(WriteOp::Flush).await
    }
}
