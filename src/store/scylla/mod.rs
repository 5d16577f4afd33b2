//! ScyllaDB (or Apache Cassandra) store. The schema is `schemas/ferry.cql`; every
//! statement is prepared once at connect, so the driver routes each request to a
//! replica of its partition (token-aware, the default load balancing policy).
//! Reads and writes run at LOCAL_QUORUM. There is no lightweight transaction:
//! every write carries its version as the cell timestamp (`USING TIMESTAMP`, see
//! `store::version`), so last-write-wins keeps the latest record's write.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::TryStreamExt;
use futures_util::future::BoxFuture;
use prost::Message as _;
use scylla::client::execution_profile::ExecutionProfile;
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use scylla::statement::Consistency;

mod convs;
mod durability;
mod requests;
mod schema;
mod statements;

use super::scylla_members::{self, MemberStatements};
use super::{Claim, ConvState, Store, StoreError, Stored, Writes, unavailable, written_by};
use crate::domain::Message;
use crate::proto::pb;
use requests::batched;
pub(super) use requests::bounded;
pub use schema::{MigrateReport, drop_keyspace, migrate};
use statements::Statements;
pub(super) use statements::prepared;

/// Seqs per message partition: the messages of conversation `c` with seq `s` live in
/// partition `(c, s / BUCKET_SIZE)`. 1000 messages of at most a few KB keep every
/// partition in the low megabytes, and a page of history is one or two partitions.
/// Changing it re-homes every stored message: it is part of the schema.
pub(crate) const BUCKET_SIZE: u64 = 1000;

/// Where the cluster is and which keyspace holds ferry's tables.
#[derive(Clone, Debug)]
pub struct ScyllaSettings {
    /// Contact points, `host:port`.
    pub nodes: Vec<String>,
    pub keyspace: String,
    /// Replicas per datacenter (used by `migrate` only).
    pub replication: u32,
    pub username: Option<String>,
    pub password: Option<String>,
}

fn bucket(seq: u64) -> u64 {
    seq / BUCKET_SIZE
}

/// u64 domain values are stored as CQL bigint.
fn big(v: u64) -> Result<i64, StoreError> {
    i64::try_from(v).map_err(|_| StoreError::Invalid(format!("{v} does not fit a CQL bigint")))
}

fn unsigned(v: i64) -> Result<u64, StoreError> {
    u64::try_from(v).map_err(|_| StoreError::Corrupt(format!("negative value {v}")))
}

fn corrupt(e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

fn decode_msg(body: &[u8]) -> Result<Message, StoreError> {
    pb::MsgData::decode(body)
        .map(Message::from)
        .map_err(corrupt)
}

/// Keyspace names are pasted into CQL text, so only plain identifiers are accepted.
fn check_keyspace(ks: &str) -> Result<(), StoreError> {
    if crate::config::keyspace_name_ok(ks) {
        Ok(())
    } else {
        Err(StoreError::Unavailable(format!(
            "invalid keyspace name {ks:?}: {}",
            crate::config::KEYSPACE_RULE
        )))
    }
}

async fn session(s: &ScyllaSettings) -> Result<Session, StoreError> {
    check_keyspace(&s.keyspace)?;
    let profile = ExecutionProfile::builder()
        .consistency(Consistency::LocalQuorum)
        .build();
    let mut b = SessionBuilder::new()
        .known_nodes(&s.nodes)
        .default_execution_profile_handle(profile.into_handle());
    if let (Some(u), Some(p)) = (&s.username, &s.password) {
        b = b.user(u, p);
    }
    b.build().await.map_err(unavailable)
}

#[derive(Clone)]
pub struct ScyllaStore {
    inner: Arc<Inner>,
}

struct Inner {
    session: Session,
    st: Statements,
    /// Group members: `scylla_members`.
    members: MemberStatements,
    /// The conversation index's statements (`convs`).
    convs: convs::ConvStatements,
    /// For the unprepared full scans of the recovery tools.
    keyspace: String,
    durability: durability::Durability,
}

type ConvRow = (
    Option<i64>,
    Option<i64>,
    Option<i32>,
    Option<i64>,
    Option<i64>,
);

impl ScyllaStore {
    /// Connects and prepares every statement; the schema must already be migrated.
    pub async fn connect(settings: &ScyllaSettings) -> Result<Self, StoreError> {
        let horizon = Duration::from_secs(crate::config::DURABILITY_HORIZON_SECS);
        Self::connect_with_horizon(settings, horizon).await
    }

    /// `connect`, for a cluster that may forget up to `horizon` of acknowledged
    /// writes (`scylla.durability_horizon_secs`); warns when its commit log can lose
    /// more (`durability::check_sync`).
    pub async fn connect_with_horizon(
        settings: &ScyllaSettings,
        horizon: Duration,
    ) -> Result<Self, StoreError> {
        let session = session(settings).await?;
        let st = Statements::prepare(&session, &settings.keyspace).await?;
        let members = MemberStatements::prepare(&session, &settings.keyspace).await?;
        let convs = convs::ConvStatements::prepare(&session, &settings.keyspace).await?;
        durability::check_sync(&session, horizon).await;
        let durability = durability::Durability::new(&session, horizon);
        let inner = Arc::new(Inner {
            session,
            st,
            members,
            convs,
            keyspace: settings.keyspace.clone(),
            durability,
        });
        // Looks at the connections even while nothing calls the store (a sequencer
        // whose lanes all wait on it), so that an outage is never missed.
        let weak = Arc::downgrade(&inner);
        tokio::spawn(async move {
            while let Some(inner) = weak.upgrade() {
                inner.durability.outages(&inner.session);
                drop(inner);
                tokio::time::sleep(durability::LOOK_EVERY).await;
            }
        });
        Ok(Self { inner })
    }

    async fn one_seq_message(&self, conv: &str, seq: i64) -> Result<Option<Stored>, StoreError> {
        Ok(self.stored(conv, &[unsigned(seq)?]).await?.pop())
    }

    /// The stored messages among `seqs` with the record that wrote each, in the order
    /// asked; missing seqs are left out.
    async fn stored(&self, conv: &str, seqs: &[u64]) -> Result<Vec<Stored>, StoreError> {
        let mut buckets: BTreeMap<u64, BTreeSet<i64>> = BTreeMap::new();
        for s in seqs {
            buckets.entry(bucket(*s)).or_default().insert(big(*s)?);
        }
        let (session, st) = (&self.inner.session, &self.inner.st);
        type Found = Vec<(i64, Vec<u8>, Option<i64>)>;
        let mut queries: Vec<BoxFuture<'_, Result<Found, StoreError>>> = Vec::new();
        for (b, in_bucket) in buckets {
            queries.push(Box::pin(async move {
                let list: Vec<i64> = in_bucket.into_iter().collect();
                let r = session
                    .execute_unpaged(&st.msg_get, (conv, big(b)?, list))
                    .await
                    .map_err(unavailable)?;
                let rows = r.into_rows_result().map_err(corrupt)?;
                rows.rows::<(i64, Vec<u8>, Option<i64>)>()
                    .map_err(corrupt)?
                    .map(|row| row.map_err(corrupt))
                    .collect()
            }));
        }
        // Statements and rows each read costs Cassandra (what `gateway::sync_read`
        // bounds), counted for operators and tests.
        metrics::counter!("ferry_store_message_statements_total").increment(queries.len() as u64);
        let found = bounded(queries).await?;
        let rows: usize = found.iter().map(Vec::len).sum();
        metrics::counter!("ferry_store_message_rows_total").increment(rows as u64);
        let mut by_seq = HashMap::new();
        for (seq, body, ts) in found.into_iter().flatten() {
            let stored = Stored {
                msg: decode_msg(&body)?,
                written_by: ts.and_then(written_by),
            };
            by_seq.insert(unsigned(seq)?, stored);
        }
        Ok(seqs.iter().filter_map(|s| by_seq.remove(s)).collect())
    }
}

#[async_trait]
impl Store for ScyllaStore {
    fn durability_horizon(&self) -> Duration {
        self.inner.durability.horizon
    }

    fn outages(&self) -> u64 {
        self.inner.durability.outages(&self.inner.session)
    }

    async fn conv_state(&self, conv: &str) -> Result<Option<ConvState>, StoreError> {
        let r = self
            .inner
            .session
            .execute_unpaged(&self.inner.st.conv_get, (conv,))
            .await
            .map_err(unavailable)?;
        let Some((max, time, part, off, first)) = r
            .into_rows_result()
            .map_err(corrupt)?
            .maybe_first_row::<ConvRow>()
            .map_err(corrupt)?
        else {
            return Ok(None);
        };
        Ok(Some(ConvState {
            max_seq: unsigned(max.unwrap_or(0))?,
            update_time_ms: time.unwrap_or(0),
            claim: Claim {
                partition: part.unwrap_or(0),
                offset: off.unwrap_or(0),
                first_seq: unsigned(first.unwrap_or(0))?,
            },
        }))
    }

    async fn write(&self, w: &Writes) -> Result<(), StoreError> {
        let (session, st) = (&self.inner.session, &self.inner.st);
        // Messages and members first, then the index, so the index never points at a
        // missing row; seq rows last, so a reader that sees max_seq finds the
        // messages. Each phase is finished before the next starts; within one, rows
        // go in unlogged batches.
        let mut messages = Vec::with_capacity(w.messages.len());
        for m in &w.messages {
            let (msg, body) = (&m.msg, pb::MsgData::from(&m.msg).encode_to_vec());
            let size =
                body.len() + msg.conv_id.len() + msg.client_msg_id.len() + msg.sender_id.len() + 40;
            let values = (
                &msg.conv_id,
                big(bucket(msg.seq))?,
                big(msg.seq)?,
                &msg.client_msg_id,
                &msg.sender_id,
                msg.server_time_ms,
                body,
                m.version,
            );
            messages.push((size, values));
        }
        let (written, members, index) = futures_util::join!(
            batched(session, &st.msg_put, messages),
            self.inner.members.write(session, &w.members),
            self.inner.convs.put(session, &w.convs)
        );
        written?;
        members?;
        index?;
        // USING TIMESTAMP seq: each cell keeps the write with the highest timestamp, so
        // the index ends up at the highest seq whatever order the writes (or a replay)
        // arrive in, with no read-before-write. Equal seqs rewrite the same value.
        let mut index = Vec::new();
        for m in w
            .messages
            .iter()
            .map(|w| &w.msg)
            .filter(|m| !m.client_msg_id.is_empty())
        {
            let seq = big(m.seq)?;
            let size = m.client_msg_id.len() + m.conv_id.len() + m.sender_id.len() + 16;
            index.push((size, (&m.client_msg_id, &m.conv_id, &m.sender_id, seq, seq)));
        }
        batched(session, &st.cmid_put, index).await?;
        let mut rows = Vec::with_capacity(w.rows.len());
        for r in &w.rows {
            let (s, c) = (&r.state, &r.state.claim);
            let values = (
                &r.conv,
                big(s.max_seq)?,
                s.update_time_ms,
                c.partition,
                c.offset,
                big(c.first_seq)?,
                r.version,
            );
            rows.push((r.conv.len() + 48, values));
        }
        batched(session, &st.conv_put, rows).await?;
        Ok(())
    }

    async fn messages(&self, conv: &str, seqs: &[u64]) -> Result<Vec<Message>, StoreError> {
        Ok(self
            .stored(conv, seqs)
            .await?
            .into_iter()
            .map(|s| s.msg)
            .collect())
    }

    async fn by_client_msg_id(
        &self,
        conv: &str,
        sender: &str,
        client_msg_id: &str,
    ) -> Result<Option<Stored>, StoreError> {
        if client_msg_id.is_empty() {
            return Ok(None);
        }
        let r = self
            .inner
            .session
            .execute_unpaged(&self.inner.st.cmid_get, (client_msg_id, conv, sender))
            .await
            .map_err(unavailable)?;
        match r
            .into_rows_result()
            .map_err(corrupt)?
            .maybe_first_row::<(i64,)>()
            .map_err(corrupt)?
        {
            Some((seq,)) => self.one_seq_message(conv, seq).await,
            None => Ok(None),
        }
    }

    async fn find_client_msg_id(
        &self,
        client_msg_id: &str,
        limit: usize,
    ) -> Result<Vec<(String, u64)>, StoreError> {
        // Empty ids are never indexed, and CQL rejects an empty partition key.
        if client_msg_id.is_empty() || limit == 0 {
            return Ok(Vec::new());
        }
        let limit = i32::try_from(limit).unwrap_or(i32::MAX);
        let r = self
            .inner
            .session
            .execute_unpaged(&self.inner.st.cmid_find, (client_msg_id, limit))
            .await
            .map_err(unavailable)?;
        let hits: Vec<(String, i64)> = r
            .into_rows_result()
            .map_err(corrupt)?
            .rows()
            .map_err(corrupt)?
            .collect::<Result<_, _>>()
            .map_err(corrupt)?;
        hits.into_iter()
            .map(|(conv, seq)| Ok((conv, unsigned(seq)?)))
            .collect()
    }

    async fn member(&self, group: &str, user: &str) -> Result<Option<u64>, StoreError> {
        let inner = &self.inner;
        inner.members.member(&inner.session, group, user).await
    }

    async fn members(&self, group: &str) -> Result<Vec<(String, u64)>, StoreError> {
        let inner = &self.inner;
        inner.members.members(&inner.session, group).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.inner
            .session
            .execute_unpaged(&self.inner.st.ping, ())
            .await
            .map_err(unavailable)?;
        Ok(())
    }
    async fn user_convs(
        &self,
        user: &str,
    ) -> Result<Vec<(String, super::convs::ConvEntry)>, StoreError> {
        self.inner.convs.get(&self.inner.session, user).await
    }

    async fn conversations(&self) -> Result<Vec<String>, StoreError> {
        let cql = format!("SELECT conv_id FROM {}.conversations", self.inner.keyspace);
        self.scan_strings(cql).await
    }

    async fn index_users(&self) -> Result<Vec<String>, StoreError> {
        let cql = format!(
            "SELECT DISTINCT user_id FROM {}.user_convs",
            self.inner.keyspace
        );
        self.scan_strings(cql).await
    }

    async fn groups(&self) -> Result<Vec<String>, StoreError> {
        scylla_members::groups(&self.inner.session, &self.inner.keyspace).await
    }
}

impl ScyllaStore {
    /// A paged full scan of one text column, for the recovery tools (not prepared
    /// at connect: nothing on the serving path uses it).
    async fn scan_strings(&self, cql: String) -> Result<Vec<String>, StoreError> {
        let pager = self
            .inner
            .session
            .query_iter(cql, ())
            .await
            .map_err(unavailable)?;
        let rows: Vec<(String,)> = pager
            .rows_stream()
            .map_err(corrupt)?
            .try_collect()
            .await
            .map_err(unavailable)?;
        let mut out: Vec<String> = rows.into_iter().map(|(s,)| s).collect();
        out.sort();
        Ok(out)
    }
}
