//! The read model: messages, each conversation's seq row, the clientMsgId index and
//! group members. Two backends side by side: `scylla` for production (ScyllaDB or
//! Apache Cassandra), `embedded` for one machine.

pub(crate) mod embedded;
pub(crate) mod scylla;

use async_trait::async_trait;

use crate::domain::Message;

/// A conversation's seq row. `claim` records which inbound record took the last
/// range of seqs: the sequencer's fence (see pipeline::sequencer).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConvState {
    pub max_seq: u64,
    pub update_time_ms: i64,
    pub claim: Claim,
}

/// The inbound record (partition, offset) that claimed seqs `first_seq..=max_seq`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Claim {
    pub partition: i32,
    pub offset: i64,
    pub first_seq: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store unavailable: {0}")]
    Unavailable(String),
    #[error("corrupt stored row: {0}")]
    Corrupt(String),
    /// The value can never be stored (e.g. a number beyond what the schema holds):
    /// retrying cannot help.
    #[error("value cannot be stored: {0}")]
    Invalid(String),
}

pub(crate) fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    async fn conv_state(&self, conv: &str) -> Result<Option<ConvState>, StoreError>;

    /// Compare-and-set on the seq row: writes `next` only if the row's max_seq is still
    /// `expected_max` (None: the row must not exist). False when another writer got there.
    async fn claim(
        &self,
        conv: &str,
        expected_max: Option<u64>,
        next: &ConvState,
    ) -> Result<bool, StoreError>;

    /// Upserts messages by (convId, seq) and indexes their clientMsgId.
    async fn put_messages(&self, msgs: &[Message]) -> Result<(), StoreError>;

    /// The stored messages among `seqs`, in the order asked; missing seqs are left out.
    async fn messages(&self, conv: &str, seqs: &[u64]) -> Result<Vec<Message>, StoreError>;

    /// The latest message `sender` sent in `conv` under `client_msg_id`.
    async fn by_client_msg_id(
        &self,
        conv: &str,
        sender: &str,
        client_msg_id: &str,
    ) -> Result<Option<Message>, StoreError>;

    /// Where messages with this clientMsgId are stored (any conversation, any
    /// sender), as (convId, seq): at most `limit` of them, so a clientMsgId that many
    /// messages share costs a bounded read.
    async fn find_client_msg_id(
        &self,
        client_msg_id: &str,
        limit: usize,
    ) -> Result<Vec<(String, u64)>, StoreError>;

    /// Adds or updates a member; `min_seq` is the first seq they may read (0: all).
    async fn set_member(&self, group: &str, user: &str, min_seq: u64) -> Result<(), StoreError>;
    async fn remove_member(&self, group: &str, user: &str) -> Result<(), StoreError>;
    /// The member's min_seq, or None when not a member.
    async fn member(&self, group: &str, user: &str) -> Result<Option<u64>, StoreError>;
    async fn members(&self, group: &str) -> Result<Vec<(String, u64)>, StoreError>;

    async fn ping(&self) -> Result<(), StoreError>;

    /// Makes every write that has returned durable. The sequencer calls it before it
    /// commits offsets, so a committed offset never points past a lost write.
    /// Backends whose writes are durable when they return need not override it.
    async fn flush(&self) -> Result<(), StoreError> {
        Ok(())
    }

    /// Every conversation that has a seq row (a full scan: for recovery tools).
    async fn conversations(&self) -> Result<Vec<String>, StoreError>;

    /// Every group that has at least one member (a full scan: for recovery tools).
    async fn groups(&self) -> Result<Vec<String>, StoreError>;
}
