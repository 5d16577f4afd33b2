//! How the CQL store sends many requests: at most `CONCURRENCY` in flight, rows of
//! one statement grouped into unlogged batches under Cassandra's warning sizes.

use futures_util::future::BoxFuture;
use futures_util::{StreamExt, TryStreamExt, stream};
use scylla::client::session::Session;
use scylla::serialize::row::SerializeRow;
use scylla::statement::batch::{Batch, BatchType};
use scylla::statement::prepared::PreparedStatement;

use crate::store::{StoreError, unavailable};

/// Requests in flight per `put_messages` or `messages` call.
const CONCURRENCY: usize = 64;

/// Statements per unlogged batch of `write`: Cassandra warns about unlogged batches
/// across more than 10 partitions (`unlogged_batch_across_partitions_warn_threshold`).
const BATCH_STATEMENTS: usize = 10;
/// Bytes of values per batch, under Cassandra's 5 KiB batch-size warning
/// (`batch_size_warn_threshold`, and far under its 50 KiB refusal); a larger value
/// goes as a statement of its own.
const BATCH_BYTES: usize = 4096;

/// Runs `futs` with at most `CONCURRENCY` in flight; the first error wins.
pub(in crate::store) async fn bounded<T>(
    futs: Vec<BoxFuture<'_, Result<T, StoreError>>>,
) -> Result<Vec<T>, StoreError> {
    stream::iter(futs)
        .buffer_unordered(CONCURRENCY)
        .try_collect()
        .await
}

/// Runs `statement` once per row of `rows` (each with its values' size in bytes) as
/// unlogged batches of up to `BATCH_STATEMENTS` rows and `BATCH_BYTES`, a lone row as
/// a plain statement, at most `CONCURRENCY` requests in flight. A batch saves the
/// store a request per row; it is not atomic and need not be: every row is a
/// versioned upsert, and what must come before what is ordered by the caller.
pub(super) async fn batched<V>(
    session: &Session,
    statement: &PreparedStatement,
    rows: Vec<(usize, V)>,
) -> Result<(), StoreError>
where
    V: SerializeRow + Send + Sync,
{
    let mut chunks: Vec<Vec<V>> = Vec::new();
    let mut bytes = 0;
    for (size, row) in rows {
        match chunks.last_mut() {
            Some(c) if c.len() < BATCH_STATEMENTS && bytes + size <= BATCH_BYTES => {
                bytes += size;
                c.push(row);
            }
            _ => {
                bytes = size;
                chunks.push(vec![row]);
            }
        }
    }
    let mut requests: Vec<BoxFuture<'_, Result<(), StoreError>>> = Vec::with_capacity(chunks.len());
    for mut chunk in chunks {
        requests.push(Box::pin(async move {
            if chunk.len() == 1 {
                let row = chunk.pop().expect("one row");
                session
                    .execute_unpaged(statement, row)
                    .await
                    .map_err(unavailable)?;
                return Ok(());
            }
            let mut batch = Batch::new(BatchType::Unlogged);
            for _ in 0..chunk.len() {
                batch.append_statement(statement.clone());
            }
            batch.set_is_idempotent(true);
            session.batch(&batch, chunk).await.map_err(unavailable)?;
            Ok(())
        }));
    }
    bounded(requests).await?;
    Ok(())
}
