//! Embedded store: the read model in a redb file under the data directory.
//!
//! Versions are not stored: the file is locked by the one process that serves it,
//! whose sequencer applies each conversation's records in log order, and each
//! `write` is one transaction (a record is applied whole or not at all), so the last
//! write is always the latest record's.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, TryLockError};

use async_trait::async_trait;
use prost::Message as _;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use tokio::sync::{mpsc, oneshot};

use super::{Claim, ConvState, Store, StoreError, Stored, Writes, unavailable};
use crate::domain::Message;
use crate::proto::pb;
use crate::proto::records::ConvRow;

const CONVS: TableDefinition<&str, &[u8]> = TableDefinition::new("convs");
const MSGS: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("messages");
/// (clientMsgId, convId, senderId) -> seq of the latest message under that id.
const CMID: TableDefinition<(&str, &str, &str), u64> = TableDefinition::new("client_msg_ids");
const MEMBERS: TableDefinition<(&str, &str), u64> = TableDefinition::new("members");
/// The conversation index (`store::convs`): (user, convId) -> (partition, offset,
/// min_seq, max_seq, update_time_ms, removed).
const USER_CONVS: TableDefinition<(&str, &str), IndexCells> = TableDefinition::new("user_convs");
type IndexCells = (i32, i64, u64, u64, i64, bool);

#[derive(Clone)]
pub struct EmbeddedStore {
    db: Arc<Database>,
    /// The writer thread's queue: concurrent writes share one transaction.
    writer: mpsc::Sender<Job>,
    /// Held by whoever commits: the writer thread for each group commit, or a caller
    /// that found it free with nothing queued (`write`).
    committing: Arc<Mutex<()>>,
    /// Writes committed on the caller's task, not the writer thread's.
    inline_commits: Arc<AtomicU64>,
}

fn hold(m: &Mutex<()>) -> MutexGuard<'_, ()> {
    // Guards no data: a panic while it was held leaves nothing half done.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// One `write`'s cells, encoded by the caller.
#[derive(Default)]
struct Batch {
    /// (conv, seq, clientMsgId, sender, encoded message)
    msgs: Vec<(String, u64, String, String, Vec<u8>)>,
    /// (group, user, min seq; None removes)
    members: Vec<(String, String, Option<u64>)>,
    /// (conv, encoded row)
    rows: Vec<(String, Vec<u8>)>,
    /// The conversation index's entries.
    convs: Vec<super::convs::ConvIndexWrite>,
}

/// A write for the writer thread, and where its outcome goes. `None`: no write, the
/// caller waits until everything written before it is durable (`flush`).
type Job = (Option<Batch>, oneshot::Sender<Result<(), StoreError>>);

/// Writes waiting for the writer thread before `write` waits.
const WRITE_QUEUE: usize = 1024;
/// Writes applied in one transaction at most.
const WRITE_BATCH: usize = 256;

/// Group commit: every write queued while the previous transaction committed goes
/// into the next one, so 32 lanes writing at once cost one commit, not 32 commits
/// queued on redb's single-writer lock, and each table is opened once per commit. A
/// failed transaction fails all its writes (each is retried by its caller).
/// Transactions commit without fsync unless one of their jobs is a flush: then the
/// one fsync covers the flush and the writes beside it, and a flush never waits for
/// redb's write lock behind the writer.
fn writer_loop(db: Arc<Database>, committing: Arc<Mutex<()>>, mut rx: mpsc::Receiver<Job>) {
    while let Some(first) = rx.blocking_recv() {
        let mut jobs = vec![first];
        while jobs.len() < WRITE_BATCH {
            match rx.try_recv() {
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
        let durable = jobs.iter().any(|(b, _)| b.is_none());
        let (batches, replies): (Vec<_>, Vec<_>) = jobs.into_iter().unzip();
        let result = {
            let _held = hold(&committing);
            commit(&db, batches.iter().flatten(), durable)
        };
        for reply in replies {
            let _ = reply.send(match &result {
                Ok(()) => Ok(()),
                Err(e) => Err(StoreError::Unavailable(e.to_string())),
            });
        }
    }
}

/// Applies the batches in order in one transaction. Each table's cells are written
/// in batch order, so the later write of a key wins as it would one by one; the
/// transaction is atomic, so the order between tables does not matter.
fn commit<'a>(
    db: &Database,
    batches: impl Iterator<Item = &'a Batch> + Clone,
    durable: bool,
) -> Result<(), StoreError> {
    let mut tx = db.begin_write().map_err(unavailable)?;
    if !durable {
        tx.set_durability(redb::Durability::None)
            .map_err(unavailable)?;
    }
    if batches.clone().any(|b| !b.msgs.is_empty()) {
        let mut t = tx.open_table(MSGS).map_err(unavailable)?;
        let mut cmid = tx.open_table(CMID).map_err(unavailable)?;
        for (conv, seq, client_id, sender, bytes) in batches.clone().flat_map(|b| &b.msgs) {
            t.insert((conv.as_str(), *seq), bytes.as_slice())
                .map_err(unavailable)?;
            if client_id.is_empty() {
                continue;
            }
            // One descent of the index for the usual case (a new id, or a higher
            // seq); an id already at a higher seq gets its value back.
            let key = (client_id.as_str(), conv.as_str(), sender.as_str());
            let old = cmid
                .insert(key, *seq)
                .map_err(unavailable)?
                .map(|v| v.value());
            if let Some(old) = old.filter(|old| old > seq) {
                cmid.insert(key, old).map_err(unavailable)?;
            }
        }
    }
    if batches.clone().any(|b| !b.members.is_empty()) {
        let mut t = tx.open_table(MEMBERS).map_err(unavailable)?;
        for (g, u, min_seq) in batches.clone().flat_map(|b| &b.members) {
            match min_seq {
                Some(min) => t.insert((g.as_str(), u.as_str()), *min).map(|_| ()),
                None => t.remove((g.as_str(), u.as_str())).map(|_| ()),
            }
            .map_err(unavailable)?;
        }
    }
    if batches.clone().any(|b| !b.convs.is_empty()) {
        let mut t = tx.open_table(USER_CONVS).map_err(unavailable)?;
        for w in batches.clone().flat_map(|b| &b.convs) {
            let e = &w.entry;
            let value = (
                e.partition,
                e.offset,
                e.min_seq,
                e.max_seq,
                e.update_time_ms,
                e.removed,
            );
            t.insert((w.user.as_str(), w.conv.as_str()), value)
                .map_err(unavailable)?;
        }
    }
    if batches.clone().any(|b| !b.rows.is_empty()) {
        let mut t = tx.open_table(CONVS).map_err(unavailable)?;
        for (conv, row) in batches.flat_map(|b| &b.rows) {
            t.insert(conv.as_str(), row.as_slice())
                .map_err(unavailable)?;
        }
    }
    tx.commit().map_err(unavailable)
}

fn decode_msg(bytes: &[u8]) -> Result<Message, StoreError> {
    pb::MsgData::decode(bytes)
        .map(Message::from)
        .map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn decode_conv(bytes: &[u8]) -> Result<ConvState, StoreError> {
    let r = ConvRow::decode(bytes).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    Ok(ConvState {
        max_seq: r.max_seq,
        update_time_ms: r.update_time_ms,
        claim: Claim {
            partition: r.claim_partition,
            offset: r.claim_offset,
            first_seq: r.claim_first_seq,
        },
    })
}

fn encode_conv(s: &ConvState) -> Vec<u8> {
    ConvRow {
        max_seq: s.max_seq,
        update_time_ms: s.update_time_ms,
        claim_partition: s.claim.partition,
        claim_offset: s.claim.offset,
        claim_first_seq: s.claim.first_seq,
    }
    .encode_to_vec()
}

impl EmbeddedStore {
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir).map_err(unavailable)?;
        let db = Database::create(dir.join("store.redb")).map_err(unavailable)?;
        let tx = db.begin_write().map_err(unavailable)?;
        tx.open_table(CONVS).map_err(unavailable)?;
        tx.open_table(MSGS).map_err(unavailable)?;
        tx.open_table(CMID).map_err(unavailable)?;
        tx.open_table(MEMBERS).map_err(unavailable)?;
        tx.open_table(USER_CONVS).map_err(unavailable)?;
        tx.commit().map_err(unavailable)?;
        let db = Arc::new(db);
        let (writer, rx) = mpsc::channel(WRITE_QUEUE);
        let committing = Arc::new(Mutex::new(()));
        let (for_writer, held_by_writer) = (db.clone(), committing.clone());
        std::thread::Builder::new()
            .name("ferry-store-writer".into())
            .spawn(move || writer_loop(for_writer, held_by_writer, rx))
            .map_err(unavailable)?;
        Ok(Self {
            db,
            writer,
            committing,
            inline_commits: Arc::new(AtomicU64::new(0)),
        })
    }

    /// Applies `f` in the writer thread's next transaction (`None`: an fsync'd one).
    /// It commits without fsync unless a flush shares it: `flush` makes it durable
    /// (the sequencer flushes before committing offsets, so a crash loses only writes
    /// whose records will be read again).
    async fn grouped(&self, f: Option<Batch>) -> Result<(), StoreError> {
        let (tx, rx) = oneshot::channel();
        self.writer
            .send((f, tx))
            .await
            .map_err(|_| StoreError::Unavailable("store writer stopped".into()))?;
        rx.await
            .map_err(|_| StoreError::Unavailable("store writer stopped".into()))?
    }

    /// Runs a read transaction on the blocking pool: a scan that waits for the disk
    /// must not hold up the async workers that serve every other socket.
    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&redb::ReadTransaction) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || {
            let tx = db.begin_read().map_err(unavailable)?;
            f(&tx)
        })
        .await
        .map_err(unavailable)?
    }

    /// Runs a read of a few small keys on the calling task. A point lookup descends a
    /// handful of pages, almost always in redb's cache: microseconds, where the hop
    /// to the blocking pool and back costs two thread wake-ups (a third of the
    /// sequencer's CPU per message when measured). Scans stay on the pool (`read`).
    fn point<T>(
        &self,
        f: impl FnOnce(&redb::ReadTransaction) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let tx = self.db.begin_read().map_err(unavailable)?;
        f(&tx)
    }
}

#[async_trait]
impl Store for EmbeddedStore {
    /// One process, and `flush` (which the sequencer awaits before it commits an
    /// offset) makes every returned write durable: nothing a committed offset covers
    /// is ever forgotten, so no horizon and no outages.
    fn durability_horizon(&self) -> std::time::Duration {
        std::time::Duration::ZERO
    }

    fn outages(&self) -> u64 {
        0
    }

    async fn conv_state(&self, conv: &str) -> Result<Option<ConvState>, StoreError> {
        self.point(|tx| {
            let t = tx.open_table(CONVS).map_err(unavailable)?;
            t.get(conv)
                .map_err(unavailable)?
                .map(|v| decode_conv(v.value()))
                .transpose()
        })
    }

    async fn write(&self, w: &Writes) -> Result<(), StoreError> {
        if w.is_empty() {
            return Ok(());
        }
        let batch = Batch {
            msgs: w
                .messages
                .iter()
                .map(|w| {
                    let m = &w.msg;
                    (
                        m.conv_id.clone(),
                        m.seq,
                        m.client_msg_id.clone(),
                        m.sender_id.clone(),
                        pb::MsgData::from(m).encode_to_vec(),
                    )
                })
                .collect(),
            rows: w
                .rows
                .iter()
                .map(|r| (r.conv.clone(), encode_conv(&r.state)))
                .collect(),
            members: w
                .members
                .iter()
                .map(|m| (m.group.clone(), m.user.clone(), m.min_seq))
                .collect(),
            convs: w.convs.clone(),
        };
        // Nothing queued and nobody committing: commit here. A non-durable commit is
        // CPU only (tens of µs), while the hop to the writer thread and back is two
        // thread wake-ups, a third of the store's cost per message for a lone writer.
        // Under load the writer is busy or has a queue, so writes still group there.
        // Concurrent writes may commit in either order, as through the queue; a later
        // `flush` commits after this one (it takes the same lock), so covers it.
        if self.writer.capacity() == self.writer.max_capacity() {
            let held = match self.committing.try_lock() {
                Ok(g) => Some(g),
                Err(TryLockError::Poisoned(e)) => Some(e.into_inner()),
                Err(TryLockError::WouldBlock) => None,
            };
            if let Some(_held) = held {
                self.inline_commits.fetch_add(1, Ordering::Relaxed);
                return commit(&self.db, std::iter::once(&batch), false);
            }
        }
        self.grouped(Some(batch)).await
    }

    async fn messages(&self, conv: &str, seqs: &[u64]) -> Result<Vec<Message>, StoreError> {
        fn get(
            tx: &redb::ReadTransaction,
            conv: &str,
            seqs: &[u64],
        ) -> Result<Vec<Message>, StoreError> {
            let t = tx.open_table(MSGS).map_err(unavailable)?;
            let mut out = Vec::with_capacity(seqs.len());
            for s in seqs {
                if let Some(v) = t.get((conv, *s)).map_err(unavailable)? {
                    out.push(decode_msg(v.value())?);
                }
            }
            Ok(out)
        }
        // On the pool even for a few seqs: message bodies can be large (a sync of a
        // few big messages reads megabytes), unlike the lookups done on the task.
        let (conv, seqs) = (conv.to_owned(), seqs.to_vec());
        let found = self.read(move |tx| get(tx, &conv, &seqs)).await?;
        // As the CQL store counts them (one read per call here).
        metrics::counter!("ferry_store_message_statements_total").increment(1);
        metrics::counter!("ferry_store_message_rows_total").increment(found.len() as u64);
        Ok(found)
    }

    async fn by_client_msg_id(
        &self,
        conv: &str,
        sender: &str,
        client_msg_id: &str,
    ) -> Result<Option<Stored>, StoreError> {
        self.point(|tx| {
            let ids = tx.open_table(CMID).map_err(unavailable)?;
            let Some(seq) = ids
                .get((client_msg_id, conv, sender))
                .map_err(unavailable)?
                .map(|v| v.value())
            else {
                return Ok(None);
            };
            let msgs = tx.open_table(MSGS).map_err(unavailable)?;
            msgs.get((conv, seq))
                .map_err(unavailable)?
                .map(|v| {
                    decode_msg(v.value()).map(|msg| Stored {
                        msg,
                        written_by: None,
                    })
                })
                .transpose()
        })
    }

    async fn find_client_msg_id(
        &self,
        client_msg_id: &str,
        limit: usize,
    ) -> Result<Vec<(String, u64)>, StoreError> {
        let wanted = client_msg_id.to_owned();
        self.read(move |tx| {
            let t = tx.open_table(CMID).map_err(unavailable)?;
            let mut hits = Vec::new();
            for row in t.range((wanted.as_str(), "", "")..).map_err(unavailable)? {
                let (k, v) = row.map_err(unavailable)?;
                let (id, conv, _) = k.value();
                if id != wanted || hits.len() >= limit {
                    break;
                }
                hits.push((conv.to_owned(), v.value()));
            }
            Ok(hits)
        })
        .await
    }

    async fn member(&self, group: &str, user: &str) -> Result<Option<u64>, StoreError> {
        self.point(|tx| {
            let t = tx.open_table(MEMBERS).map_err(unavailable)?;
            Ok(t.get((group, user))
                .map_err(unavailable)?
                .map(|v| v.value()))
        })
    }

    async fn members(&self, group: &str) -> Result<Vec<(String, u64)>, StoreError> {
        let group = group.to_owned();
        self.read(move |tx| {
            let t = tx.open_table(MEMBERS).map_err(unavailable)?;
            let mut out = Vec::new();
            for row in t.range((group.as_str(), "")..).map_err(unavailable)? {
                let (k, v) = row.map_err(unavailable)?;
                let (g, u) = k.value();
                if g != group {
                    break;
                }
                out.push((u.to_owned(), v.value()));
            }
            Ok(out)
        })
        .await
    }

    async fn user_convs(
        &self,
        user: &str,
    ) -> Result<Vec<(String, super::convs::ConvEntry)>, StoreError> {
        let user = user.to_owned();
        self.read(move |tx| {
            let t = tx.open_table(USER_CONVS).map_err(unavailable)?;
            let mut out = Vec::new();
            for row in t.range((user.as_str(), "")..).map_err(unavailable)? {
                let (k, v) = row.map_err(unavailable)?;
                let (u, conv) = k.value();
                if u != user {
                    break;
                }
                let (partition, offset, min_seq, max_seq, update_time_ms, removed) = v.value();
                out.push((
                    conv.to_owned(),
                    super::convs::ConvEntry {
                        partition,
                        offset,
                        min_seq,
                        max_seq,
                        update_time_ms,
                        removed,
                    },
                ));
            }
            Ok(out)
        })
        .await
    }

    async fn flush(&self) -> Result<(), StoreError> {
        // The writer's next transaction is fsync'd, which persists every earlier
        // non-durable one.
        self.grouped(None).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.read(|tx| tx.open_table(CONVS).map(|_| ()).map_err(unavailable))
            .await
    }
    async fn conversations(&self) -> Result<Vec<String>, StoreError> {
        self.read(|tx| {
            let t = tx.open_table(CONVS).map_err(unavailable)?;
            let mut out = Vec::new();
            for row in t.iter().map_err(unavailable)? {
                out.push(row.map_err(unavailable)?.0.value().to_owned());
            }
            Ok(out)
        })
        .await
    }

    async fn index_users(&self) -> Result<Vec<String>, StoreError> {
        self.read(|tx| {
            let t = tx.open_table(USER_CONVS).map_err(unavailable)?;
            let mut out: Vec<String> = Vec::new();
            for row in t.iter().map_err(unavailable)? {
                let (k, _) = row.map_err(unavailable)?;
                let (u, _) = k.value();
                if out.last().map(String::as_str) != Some(u) {
                    out.push(u.to_owned());
                }
            }
            Ok(out)
        })
        .await
    }

    async fn groups(&self) -> Result<Vec<String>, StoreError> {
        self.read(|tx| {
            let t = tx.open_table(MEMBERS).map_err(unavailable)?;
            let mut out: Vec<String> = Vec::new();
            for row in t.iter().map_err(unavailable)? {
                let (k, _) = row.map_err(unavailable)?;
                let g = k.value().0;
                // Keys are sorted: a group's members are adjacent.
                if out.last().map(String::as_str) != Some(g) {
                    out.push(g.to_owned());
                }
            }
            Ok(out)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::store::RowWrite;

    fn row(conv: &str, max_seq: u64) -> Writes {
        Writes {
            rows: vec![RowWrite {
                conv: conv.to_owned(),
                state: ConvState {
                    max_seq,
                    ..ConvState::default()
                },
                version: 0,
            }],
            ..Writes::default()
        }
    }

    async fn max_seq(store: &EmbeddedStore, conv: &str) -> u64 {
        store.conv_state(conv).await.unwrap().unwrap().max_seq
    }

    /// A write with nothing queued and nobody committing commits on the caller's
    /// task; one made while a commit is under way waits for the writer thread.
    #[tokio::test]
    async fn a_lone_write_commits_without_the_writer_thread() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path()).unwrap();
        store.write(&row("si_a_b", 1)).await.unwrap();
        assert_eq!(store.inline_commits.load(Ordering::Relaxed), 1);
        assert_eq!(max_seq(&store, "si_a_b").await, 1);

        // Another thread commits (as the writer thread would) until released.
        let (held_tx, held) = std::sync::mpsc::channel::<()>();
        let (release, released) = std::sync::mpsc::channel::<()>();
        let lock = store.committing.clone();
        let holder = std::thread::spawn(move || {
            let _held = hold(&lock);
            held_tx.send(()).unwrap();
            let _ = released.recv();
        });
        held.recv().unwrap();
        let other = store.clone();
        let queued = tokio::spawn(async move { other.write(&row("si_a_b", 2)).await });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            !queued.is_finished(),
            "a write committed while another commit held the database"
        );
        release.send(()).unwrap();
        holder.join().unwrap();
        tokio::time::timeout(Duration::from_secs(5), queued)
            .await
            .expect("the queued write was never committed")
            .unwrap()
            .unwrap();
        assert_eq!(store.inline_commits.load(Ordering::Relaxed), 1);
        assert_eq!(max_seq(&store, "si_a_b").await, 2);
        store.flush().await.unwrap();
    }
}
