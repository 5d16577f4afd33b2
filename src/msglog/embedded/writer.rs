//! The embedded log's only writer: one thread that group-commits every queued
//! append, offset commit, topic creation and flush in one write transaction.

use std::collections::HashMap;

use redb::ReadableTable;
use tokio::sync::{mpsc, oneshot};

use super::record::encode;
use super::{Inner, KEYS, OFFSETS, RECORDS, TOPICS};
use crate::domain::now_ms;
use crate::msglog::{LogError, Outgoing, Retention, TopicSpec};

/// Operations group-committed in one write transaction.
const WRITE_BATCH: usize = 1024;

pub(super) enum WriteOp {
    Append(Vec<Outgoing>, oneshot::Sender<Result<(), LogError>>),
    Commit {
        group: String,
        topic: String,
        next: u64,
    },
    Ensure(TopicSpec, oneshot::Sender<Result<(), LogError>>),
    Flush(oneshot::Sender<Result<(), LogError>>),
}

pub(super) fn writer_loop(inner: std::sync::Weak<Inner>, mut rx: mpsc::UnboundedReceiver<WriteOp>) {
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

/// A durable topic's next offset as the file says: one past its last record (no
/// record of a durable topic is ever removed but one its key's newer record
/// replaced, so the last one stays), or what the `next_offset` table says for files
/// written while it was kept up to date, whichever is higher.
pub(super) fn durable_tip(
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
