//! The conversation index on ScyllaDB / Cassandra: table `user_convs`, one partition
//! per user (see `store::convs`).

use futures_util::TryStreamExt;
use scylla::client::session::Session;
use scylla::statement::prepared::PreparedStatement;

use super::{StoreError, batched, big, corrupt, unavailable, unsigned};
use crate::store::convs::{ConvEntry, ConvIndexWrite};

const COLS: &str = "at_partition, at_offset, min_seq, max_seq, update_time_ms, removed";

pub(super) struct ConvStatements {
    put: PreparedStatement,
    get: PreparedStatement,
}

impl ConvStatements {
    pub(super) async fn prepare(session: &Session, ks: &str) -> Result<Self, StoreError> {
        // Versioned upserts and reads: idempotent.
        let prep = async |cql: String| super::prepared(session, cql, true).await;
        Ok(Self {
            put: prep(format!(
                "INSERT INTO {ks}.user_convs (user_id, conv_id, {COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?) \
                 USING TIMESTAMP ?"
            ))
            .await?,
            get: prep(format!(
                "SELECT conv_id, {COLS} FROM {ks}.user_convs WHERE user_id = ?"
            ))
            .await?,
        })
    }

    /// Upserts the entries, each at its version, in unlogged batches.
    pub(super) async fn put(
        &self,
        session: &Session,
        writes: &[ConvIndexWrite],
    ) -> Result<(), StoreError> {
        let mut rows = Vec::with_capacity(writes.len());
        for w in writes {
            let e = &w.entry;
            let values = (
                &w.user,
                &w.conv,
                e.partition,
                e.offset,
                big(e.min_seq)?,
                big(e.max_seq)?,
                e.update_time_ms,
                e.removed,
                w.version,
            );
            rows.push((w.user.len() + w.conv.len() + 48, values));
        }
        batched(session, &self.put, rows).await
    }

    /// Every entry of `user`, paged (a user with many conversations spans pages).
    pub(super) async fn get(
        &self,
        session: &Session,
        user: &str,
    ) -> Result<Vec<(String, ConvEntry)>, StoreError> {
        type Row = (
            String,
            Option<i32>,
            Option<i64>,
            Option<i64>,
            Option<i64>,
            Option<i64>,
            Option<bool>,
        );
        let pager = session
            .execute_iter(self.get.clone(), (user,))
            .await
            .map_err(unavailable)?;
        let rows: Vec<Row> = pager
            .rows_stream()
            .map_err(corrupt)?
            .try_collect()
            .await
            .map_err(unavailable)?;
        rows.into_iter()
            .map(|(conv, p, o, min, max, time, removed)| {
                Ok((
                    conv,
                    ConvEntry {
                        partition: p.unwrap_or(0),
                        offset: o.unwrap_or(0),
                        min_seq: unsigned(min.unwrap_or(0))?,
                        max_seq: unsigned(max.unwrap_or(0))?,
                        update_time_ms: time.unwrap_or(0),
                        removed: removed.unwrap_or(false),
                    },
                ))
            })
            .collect()
    }
}
