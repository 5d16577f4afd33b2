//! The `Store` operations of the embedded store: point reads on the calling task,
//! scans on the blocking pool, writes committed inline when nobody else is.

use std::sync::TryLockError;
use std::sync::atomic::Ordering;

use async_trait::async_trait;
use prost::Message as _;
use redb::ReadableTable;

use super::rows::{decode_conv, decode_msg, encode_conv};
use super::writer::{Batch, commit};
use super::{CMID, CONVS, EmbeddedStore, MEMBERS, MSGS, USER_CONVS};
use crate::domain::Message;
use crate::proto::pb;
use crate::store::{ConvState, Store, StoreError, Stored, Writes, unavailable};

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
    ) -> Result<Vec<(String, crate::store::convs::ConvEntry)>, StoreError> {
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
                    crate::store::convs::ConvEntry {
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
