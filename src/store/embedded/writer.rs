//! The embedded store's writer thread: concurrent writes group-committed into one
//! transaction, fsync'd only when a flush shares it.

use std::sync::{Arc, Mutex};

use redb::Database;
use tokio::sync::{mpsc, oneshot};

use super::{CMID, CONVS, MEMBERS, MSGS, USER_CONVS, hold};
use crate::store::{StoreError, unavailable};

/// One `write`'s cells, encoded by the caller.
#[derive(Default)]
pub(super) struct Batch {
    /// (conv, seq, clientMsgId, sender, encoded message)
    pub(super) msgs: Vec<(String, u64, String, String, Vec<u8>)>,
    /// (group, user, min seq; None removes)
    pub(super) members: Vec<(String, String, Option<u64>)>,
    /// (conv, encoded row)
    pub(super) rows: Vec<(String, Vec<u8>)>,
    /// The conversation index's entries.
    pub(super) convs: Vec<crate::store::convs::ConvIndexWrite>,
}

/// A write for the writer thread, and where its outcome goes. `None`: no write, the
/// caller waits until everything written before it is durable (`flush`).
pub(super) type Job = (Option<Batch>, oneshot::Sender<Result<(), StoreError>>);

/// Writes waiting for the writer thread before `write` waits.
pub(super) const WRITE_QUEUE: usize = 1024;
/// Writes applied in one transaction at most.
const WRITE_BATCH: usize = 256;

/// Group commit: every write queued while the previous transaction committed goes
/// into the next one, so 32 lanes writing at once cost one commit, not 32 commits
/// queued on redb's single-writer lock, and each table is opened once per commit. A
/// failed transaction fails all its writes (each is retried by its caller).
/// Transactions commit without fsync unless one of their jobs is a flush: then the
/// one fsync covers the flush and the writes beside it, and a flush never waits for
/// redb's write lock behind the writer.
pub(super) fn writer_loop(
    db: Arc<Database>,
    committing: Arc<Mutex<()>>,
    mut rx: mpsc::Receiver<Job>,
) {
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
pub(super) fn commit<'a>(
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
