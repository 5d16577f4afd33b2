//! Embedded log: topics in one redb file under the data directory. A single writer
//! thread group-commits concurrent appends, so many small appends cost one fsync.
//! One partition (0) per topic: per-key order is total order.
//!
//! Costs per record are kept off the hot path on purpose:
//! - only appends (and explicit flushes) are fsync'd; group offsets are committed
//!   without one and persist with the next durable commit, which is what Kafka's
//!   offsets promise too (a lost offset re-delivers, consumers are idempotent);
//! - each topic has its own tip (next offset) that its readers wait on, so an append
//!   wakes only the subscriptions of its topic, and a woken reader opens a read
//!   transaction only for topics whose tip moved past its cursor.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
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
    /// Per topic, the offset the next record gets, moved once the records below it
    /// are readable (committed, or in memory for ephemeral topics). Readers of a topic
    /// wait on its tip; senders are never removed, so a wait never sees a closed one.
    tips: Mutex<HashMap<String, watch::Sender<u64>>>,
    ephemeral: Mutex<HashMap<String, EphemeralTopic>>,
    durable_topics: Mutex<HashSet<String>>,
    /// Read transactions opened by readers: what a wake-up costs, counted.
    reads: AtomicU64,
}

impl Inner {
    fn tip(&self, topic: &str) -> watch::Receiver<u64> {
        let mut tips = self.tips.lock().unwrap();
        match tips.get(topic) {
            Some(t) => t.subscribe(),
            None => {
                let (tx, rx) = watch::channel(0);
                tips.insert(topic.to_owned(), tx);
                rx
            }
        }
    }

    /// Moves a topic's tip forward (never back) and wakes its readers.
    fn advance(&self, topic: &str, next: u64) {
        let mut tips = self.tips.lock().unwrap();
        let tip = tips
            .entry(topic.to_owned())
            .or_insert_with(|| watch::channel(0).0);
        tip.send_if_modified(|v| {
            let moved = *v < next;
            if moved {
                *v = next;
            }
            moved
        });
    }
}

#[derive(Clone)]
pub struct EmbeddedLog {
    inner: Arc<Inner>,
    /// The largest record appended (`kafka.max_message_bytes`): a larger one is
    /// `LogError::Rejected`, as Kafka would refuse it, so both backends take the same.
    max_record_bytes: usize,
}

impl EmbeddedLog {
    pub fn open(dir: &Path) -> Result<Self, LogError> {
        std::fs::create_dir_all(dir).map_err(unavailable)?;
        let db = Database::create(dir.join("log.redb")).map_err(unavailable)?;
        let mut known = HashSet::new();
        let mut tips = HashMap::new();
        {
            let tx = db.begin_write().map_err(unavailable)?;
            {
                let topics = tx.open_table(TOPICS).map_err(unavailable)?;
                let next = tx.open_table(NEXT).map_err(unavailable)?;
                let records = tx.open_table(RECORDS).map_err(unavailable)?;
                tx.open_table(KEYS).map_err(unavailable)?;
                tx.open_table(OFFSETS).map_err(unavailable)?;
                for row in topics.iter().map_err(unavailable)? {
                    let (k, _) = row.map_err(unavailable)?;
                    let topic = k.value().to_owned();
                    let tip = durable_tip(&next, &records, &topic).map_err(unavailable)?;
                    tips.insert(topic.clone(), watch::channel(tip).0);
                    known.insert(topic);
                }
            }
            tx.commit().map_err(unavailable)?;
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let inner = Arc::new(Inner {
            db,
            writer: tx,
            tips: Mutex::new(tips),
            reads: AtomicU64::new(0),
            ephemeral: Mutex::new(HashMap::new()),
            durable_topics: Mutex::new(known),
        });
        let weak = Arc::downgrade(&inner);
        std::thread::Builder::new()
            .name("ferry-log-writer".into())
            .spawn(move || writer_loop(weak, rx))
            .map_err(unavailable)?;
        Ok(Self {
            inner,
            max_record_bytes: usize::MAX,
        })
    }

    /// Refuses records over `max` bytes (key, value and headers) from now on.
    pub fn with_max_record_bytes(mut self, max: usize) -> Self {
        self.max_record_bytes = max;
        self
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
        let mut tips = HashMap::new();
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
            tips.insert(t.clone(), self.inner.tip(t));
        }
        Ok(EmbeddedSub {
            log: self.clone(),
            group,
            cursors,
            paused: HashSet::new(),
            buf: VecDeque::new(),
            tips,
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
        let result = apply(&inner, &ops);
        match &result {
            Ok(tips) => {
                for (topic, next) in tips {
                    inner.advance(topic, *next);
                }
            }
            Err(e) => tracing::error!(error = %e, "embedded log write failed"),
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

/// A durable topic's next offset as the file says: one past its last record (no
/// record of a durable topic is ever removed but one its key's newer record
/// replaced, so the last one stays), or what the `next_offset` table says for files
/// written while it was kept up to date, whichever is higher.
fn durable_tip(
    next: &impl ReadableTable<&'static str, u64>,
    records: &impl ReadableTable<(&'static str, u64), &'static [u8]>,
    topic: &str,
) -> Result<u64, redb::Error> {
    let stored = next.get(topic)?.map_or(0, |v| v.value());
    let last = records
        .range((topic, 0)..=(topic, u64::MAX))?
        .next_back()
        .transpose()?
        .map_or(0, |(k, _)| k.value().1 + 1);
    Ok(stored.max(last))
}

/// Applies a batch of operations in one write transaction and returns the new tip of
/// every topic it appended to. The transaction is fsync'd only when it holds an
/// operation whose caller waits for durability (append, topic creation, flush); a
/// batch of offset commits alone is committed without one: the next durable commit
/// persists it, and a crash before that only re-delivers (redb keeps commit order).
///
/// A topic's next offset is its tip, which only this thread moves for durable topics
/// and only after a commit: it is not written per batch (one table fewer for every
/// commit to copy and free), but found again on open (`durable_tip`).
fn apply(inner: &Inner, ops: &[WriteOp]) -> Result<HashMap<String, u64>, redb::Error> {
    let mut tx = inner.db.begin_write()?;
    if ops.iter().all(|op| matches!(op, WriteOp::Commit { .. })) {
        tx.set_durability(redb::Durability::None)?;
    }
    // Per topic in this batch: whether it is compacted, and its next offset; read
    // once per topic and written back once, not per record.
    let mut tips: HashMap<String, (bool, u64)> = HashMap::new();
    {
        let mut topics = tx.open_table(TOPICS)?;
        let mut records = tx.open_table(RECORDS)?;
        let mut keys = tx.open_table(KEYS)?;
        let mut offsets = tx.open_table(OFFSETS)?;
        let ts = now_ms();
        for op in ops {
            match op {
                WriteOp::Append(batch, _) => {
                    for o in batch {
                        let topic = o.topic.as_str();
                        let (compacted, off) = match tips.get_mut(topic) {
                            Some(t) => t,
                            None => {
                                let compacted = topics.get(topic)?.map(|v| v.value()) == Some(1);
                                let off = inner
                                    .tips
                                    .lock()
                                    .unwrap()
                                    .get(topic)
                                    .map_or(0, |t| *t.borrow());
                                tips.entry(topic.to_owned()).or_insert((compacted, off))
                            }
                        };
                        let at = *off;
                        *off += 1;
                        if *compacted {
                            let old = keys.insert((topic, o.key.as_ref()), at)?.map(|v| v.value());
                            if let Some(old) = old {
                                records.remove((topic, old))?;
                            }
                        }
                        records.insert((topic, at), encode(o, ts).as_slice())?;
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
                    // A topic that gains records in this same batch was read above
                    // with its old policy; re-read it for the records after this.
                    if let Some(t) = tips.get_mut(spec.name.as_str()) {
                        t.0 = code == 1;
                    }
                }
                WriteOp::Flush(_) => {}
            }
        }
    }
    tx.commit()?;
    Ok(tips.into_iter().map(|(t, (_, off))| (t, off)).collect())
}

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
        let high = *self.inner.tip(topic).borrow();
        let rtx = self.inner.db.begin_read().map_err(unavailable)?;
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
    /// Each read topic's tip, to wait on.
    tips: HashMap<String, watch::Receiver<u64>>,
}

impl EmbeddedSub {
    /// Reads up to a batch per topic from the cursors, for topics whose tip (as last
    /// marked seen) is past the cursor: a topic with nothing new costs no read.
    fn fill(&mut self) -> Result<(), LogError> {
        let inner = &self.log.inner;
        let mut due: Vec<(&str, u64, u64)> = self
            .cursors
            .iter()
            .filter(|(t, _)| !self.paused.contains(*t))
            .filter_map(|(t, c)| {
                let tip = *self.tips.get(t)?.borrow();
                (tip > *c).then_some((t.as_str(), *c, tip))
            })
            .collect();
        if due.is_empty() {
            return Ok(());
        }
        due.sort();
        let mut rtx = None;
        for (topic, cursor, tip) in due {
            if let Some(eph) = inner.ephemeral.lock().unwrap().get(topic) {
                // Offsets in memory are contiguous from the front record's.
                let front = eph.records.front().map_or(eph.next, |r| r.offset as u64);
                let from = (cursor.max(front) - front) as usize;
                let to = eph.records.len().min(from + FILL_BATCH);
                self.buf
                    .extend(eph.records.range(from.min(to)..to).cloned());
                continue;
            }
            if rtx.is_none() {
                inner.reads.fetch_add(1, Ordering::Relaxed);
                let tx = inner.db.begin_read().map_err(unavailable)?;
                let records = tx.open_table(RECORDS).map_err(unavailable)?;
                rtx = Some((tx, records));
            }
            let (_, records) = rtx.as_ref().expect("opened above");
            let range = records
                .range((topic, cursor)..(topic, tip))
                .map_err(unavailable)?;
            for row in range.take(FILL_BATCH) {
                let (k, v) = row.map_err(unavailable)?;
                let (_, off) = k.value();
                match decode(topic, off, v.value()) {
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

    /// Waits until a read topic's tip moves past what was marked seen.
    async fn changed(&mut self) -> Result<(), LogError> {
        if self.tips.is_empty() {
            return std::future::pending().await;
        }
        let waits = self.tips.values_mut().map(|t| Box::pin(t.changed()));
        futures_util::future::select_all(waits)
            .await
            .0
            .map_err(|_| LogError::Closed)
    }
}

#[async_trait]
impl Subscription for EmbeddedSub {
    async fn next(&mut self) -> Result<LogRecord, LogError> {
        loop {
            if let Some(r) = self.buf.pop_front() {
                match self.cursors.get_mut(&r.topic) {
                    Some(c) => *c = r.offset as u64 + 1,
                    None => {
                        self.cursors.insert(r.topic.clone(), r.offset as u64 + 1);
                    }
                }
                return Ok(r);
            }
            // Mark the tips seen before reading, so an append that lands after the
            // read wakes us.
            for t in self.tips.values_mut() {
                t.borrow_and_update();
            }
            self.fill()?;
            if self.buf.is_empty() {
                self.changed().await?;
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
        // The next `next` reads before it waits: nothing to wake.
        self.paused.remove(topic);
        Ok(())
    }

    /// The embedded log has one partition per topic: its cursor moves back.
    async fn seek(&mut self, topic: &str, _partition: i32, offset: i64) -> Result<(), LogError> {
        if self.cursors.contains_key(topic) {
            self.cursors.insert(topic.to_owned(), offset.max(0) as u64);
            self.buf.retain(|r| r.topic != topic);
        }
        Ok(())
    }

    async fn flush_commits(&mut self) -> Result<(), LogError> {
        self.log.send(WriteOp::Flush).await
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    async fn topic(log: &EmbeddedLog, name: &str) -> String {
        log.ensure_topic(&TopicSpec {
            name: name.to_owned(),
            retention: Retention::Full,
        })
        .await
        .unwrap();
        name.to_owned()
    }

    /// Appends to one topic neither wake nor cost a read to a reader of another, and
    /// the reader still gets its own topic's next record at once.
    #[tokio::test]
    async fn a_reader_pays_only_for_its_own_topics() {
        let dir = tempfile::tempdir().unwrap();
        let log = EmbeddedLog::open(dir.path()).unwrap();
        let (quiet, busy) = (topic(&log, "quiet").await, topic(&log, "busy").await);
        let mut sub = log
            .subscribe("g", std::slice::from_ref(&quiet))
            .await
            .unwrap();
        let waiting = tokio::spawn(async move {
            let r = sub.next().await.unwrap();
            (r.offset, r.value)
        });
        // Let the reader reach its wait.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let before = log.inner.reads.load(Ordering::Relaxed);
        for i in 0..50u32 {
            log.append(vec![Outgoing::new(busy.clone(), "k", i.to_string())])
                .await
                .unwrap();
        }
        // Appends to the busy topic are durable and done: had they woken the reader,
        // it would have read by now.
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(
            log.inner.reads.load(Ordering::Relaxed),
            before,
            "appends to another topic made the reader read"
        );
        assert!(!waiting.is_finished());
        log.append(vec![Outgoing::new(quiet.clone(), "k", "mine")])
            .await
            .unwrap();
        let (offset, value) = tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("the reader was not woken by its own topic")
            .unwrap();
        assert_eq!((offset, value.as_deref()), (0, Some(&b"mine"[..])));
    }

    /// A seek reads a topic again from the given offset, whatever was already read
    /// ahead of it (how the sequencer re-applies what it had not committed).
    #[tokio::test]
    async fn a_seek_reads_a_topic_again_from_an_offset() {
        let dir = tempfile::tempdir().unwrap();
        let log = EmbeddedLog::open(dir.path()).unwrap();
        let t = topic(&log, "inbound").await;
        for i in 0..5u32 {
            log.append(vec![Outgoing::new(t.clone(), "k", i.to_string())])
                .await
                .unwrap();
        }
        let mut sub = log.subscribe("g", std::slice::from_ref(&t)).await.unwrap();
        // Every record is appended already: `next` does not wait.
        let mut read = Vec::new();
        for _ in 0..3 {
            read.push(sub.next().await.unwrap().offset);
        }
        sub.seek(&t, 0, 1).await.unwrap();
        for _ in 0..4 {
            read.push(sub.next().await.unwrap().offset);
        }
        assert_eq!(read, [0, 1, 2, 1, 2, 3, 4]);
    }

    /// Opens the log in `dir` again once the previous handle has let go of the file.
    async fn reopen(dir: &Path) -> EmbeddedLog {
        // The writer thread lets go of the file once the last handle is gone.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            match EmbeddedLog::open(dir) {
                Ok(l) => return l,
                Err(e) if std::time::Instant::now() < deadline => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => panic!("reopen: {e}"),
            }
        }
    }

    /// Next offsets are not written per commit: after a reopen, a topic goes on from
    /// one past its last record, a compacted one too (whose earlier records of the
    /// same key are gone).
    #[tokio::test]
    async fn offsets_go_on_after_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let log = EmbeddedLog::open(dir.path()).unwrap();
            let t = topic(&log, "t").await;
            log.ensure_topic(&TopicSpec {
                name: "c".to_owned(),
                retention: Retention::Compacted,
            })
            .await
            .unwrap();
            for i in 0..3u32 {
                log.append(vec![
                    Outgoing::new(t.clone(), "k", i.to_string()),
                    Outgoing::new("c", "same", i.to_string()),
                ])
                .await
                .unwrap();
            }
        }
        let log = reopen(dir.path()).await;
        for name in ["t", "c"] {
            let w = log.watermarks(name).await.unwrap()[0];
            assert_eq!(w.high, 3, "{name}: next offset after a reopen");
            log.append(vec![Outgoing::new(name, "same", "after")])
                .await
                .unwrap();
            let mut sub = log.read_from(name, &[(0, 3)]).await.unwrap();
            let r = tokio::time::timeout(Duration::from_secs(5), sub.next())
                .await
                .unwrap()
                .unwrap();
            assert_eq!((r.offset, r.value.as_deref()), (3, Some(&b"after"[..])));
        }
        assert_eq!(log.watermarks("c").await.unwrap()[0].low, 3);
    }

    /// Offsets committed without an fsync of their own (an append's follows them) are
    /// where the group resumes after a reopen.
    #[tokio::test]
    async fn commits_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let log = EmbeddedLog::open(dir.path()).unwrap();
            let t = topic(&log, "t").await;
            for i in 0..3u32 {
                log.append(vec![Outgoing::new(t.clone(), "k", i.to_string())])
                    .await
                    .unwrap();
            }
            let mut sub = log.subscribe("g", std::slice::from_ref(&t)).await.unwrap();
            let r = sub.next().await.unwrap();
            sub.commit(&r).unwrap();
            log.append(vec![Outgoing::new(t.clone(), "k", "3")])
                .await
                .unwrap();
        }
        // The writer thread lets go of the file once the last handle is gone.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        let log = loop {
            match EmbeddedLog::open(dir.path()) {
                Ok(l) => break l,
                Err(e) if std::time::Instant::now() < deadline => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => panic!("reopen: {e}"),
            }
        };
        let mut sub = log.subscribe("g", &["t".to_owned()]).await.unwrap();
        assert_eq!(sub.next().await.unwrap().offset, 1);
    }
}
