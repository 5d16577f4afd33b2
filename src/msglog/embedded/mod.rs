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
//!
//! Files: `writer.rs` the writer thread and its group commit, `record.rs` how a
//! record is stored, `log_trait.rs` the `MsgLog` operations, `subscription.rs`
//! reading and committing.

mod log_trait;
mod record;
mod subscription;
#[cfg(test)]
mod tests;
mod writer;

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use tokio::sync::{mpsc, oneshot, watch};

use super::{LogError, LogRecord, unavailable};
use writer::{WriteOp, durable_tip, writer_loop};

const TOPICS: TableDefinition<&str, u8> = TableDefinition::new("topics");
const NEXT: TableDefinition<&str, u64> = TableDefinition::new("next_offset");
const RECORDS: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("records");
const KEYS: TableDefinition<(&str, &[u8]), u64> = TableDefinition::new("compacted_keys");
const OFFSETS: TableDefinition<(&str, &str), u64> = TableDefinition::new("group_offsets");

/// Records kept in memory per ephemeral topic; older ones are dropped.
const EPHEMERAL_KEEP: usize = 4096;

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
