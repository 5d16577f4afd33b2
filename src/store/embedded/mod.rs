//! Embedded store: the read model in a redb file under the data directory.
//!
//! Versions are not stored: the file is locked by the one process that serves it,
//! whose sequencer applies each conversation's records in log order, and each
//! `write` is one transaction (a record is applied whole or not at all), so the last
//! write is always the latest record's.
//!
//! Files: `writer.rs` the group-committing writer thread, `rows.rs` how a
//! conversation row and a message are stored, `store_trait.rs` the `Store` operations.

mod rows;
mod store_trait;
#[cfg(test)]
mod tests;
mod writer;

use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard};

use redb::{Database, ReadableDatabase, TableDefinition};
use tokio::sync::{mpsc, oneshot};

use super::{StoreError, unavailable};
use writer::{Batch, Job, WRITE_QUEUE, writer_loop};

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
