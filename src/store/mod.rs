//! The read model: messages, each conversation's seq row, the clientMsgId index and
//! group members. Two backends side by side: `scylla` for production (ScyllaDB or
//! Apache Cassandra), `embedded` for one machine.

pub(crate) mod convs;
pub(crate) mod embedded;
pub(crate) mod member_cache;
mod membership;
pub(crate) mod scylla;
pub(crate) mod scylla_members;
pub(crate) mod watched;

use async_trait::async_trait;

use crate::domain::Message;

/// A conversation's seq row. `claim` records which inbound record took the last
/// range of seqs: with the write versions below, what lets a sequencer tell a record
/// already applied from one still to apply (see pipeline::sequencer).
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

/// Write versions: every cell the sequencer writes carries the position in the log
/// of the inbound record that produced it (on ScyllaDB/Cassandra as the cell's write
/// timestamp, `USING TIMESTAMP`), so last-write-wins keeps the write of the latest
/// record whatever order writes arrive in: a zombie's late write of an earlier
/// record loses to the rightful owner's write of a later one. A conversation lives
/// in one partition, so offsets order all writes to its cells.
///
/// Versions start at `VERSION_BASE` (microseconds in the year ~3100): every one is
/// newer than any wall-clock write, so rows written before versions existed (or by
/// hand with a default timestamp) never shadow the log's writes.
pub const VERSION_BASE: i64 = 1 << 55;

/// Which write of a record a version stamps: a record rewrites edited originals
/// before it writes its new messages and its seq row, and `ferry replay` repairs
/// above both (the log is the truth) but below the next record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    Original = 1,
    New = 2,
    Repair = 4,
}

/// The version of `step` of the record at `offset`.
pub fn version(offset: i64, step: Step) -> i64 {
    VERSION_BASE + (offset.max(-1) + 1) * 8 + step as i64
}

/// The offset of the record that wrote a cell with this version; None for a cell
/// written without one.
pub fn written_by(version: i64) -> Option<i64> {
    (version >= VERSION_BASE + 8).then(|| (version - VERSION_BASE) / 8 - 1)
}

/// A message as stored, with the record that last wrote it when the backend knows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stored {
    pub msg: Message,
    /// Offset of the inbound record whose write is stored (None: unknown, e.g. the
    /// embedded backend, whose single writer applies records in log order).
    pub written_by: Option<i64>,
}

/// A message to upsert by (convId, seq), at a version.
#[derive(Clone, Debug)]
pub struct MessageWrite {
    pub msg: Message,
    pub version: i64,
}

/// A member added (`min_seq` Some) or removed (None), at a version.
#[derive(Clone, Debug)]
pub struct MemberWrite {
    pub group: String,
    pub user: String,
    pub min_seq: Option<u64>,
    pub version: i64,
}

/// A conversation's seq row, at a version.
#[derive(Clone, Debug)]
pub struct RowWrite {
    pub conv: String,
    pub state: ConvState,
    pub version: i64,
}

/// What one or more inbound records change, applied by `Store::write`: messages
/// (with their clientMsgId index) and members first, seq rows last, so a reader that
/// sees a seq row finds its messages.
#[derive(Clone, Debug, Default)]
pub struct Writes {
    pub messages: Vec<MessageWrite>,
    pub members: Vec<MemberWrite>,
    pub rows: Vec<RowWrite>,
    /// The per-user conversation index (`convs`), written with messages and members.
    pub convs: Vec<convs::ConvIndexWrite>,
}

impl Writes {
    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
            && self.members.is_empty()
            && self.rows.is_empty()
            && self.convs.is_empty()
    }

    /// Moves `other`'s writes into these (several records' writes made as one).
    pub fn append(&mut self, other: &mut Writes) {
        self.messages.append(&mut other.messages);
        self.members.append(&mut other.members);
        self.rows.append(&mut other.rows);
        self.convs.append(&mut other.convs);
    }
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

    /// Applies `w`: messages (upserted by (convId, seq), clientMsgId indexed at the
    /// highest seq) and members, then seq rows. Each cell keeps the write with the
    /// highest version, whatever order writes arrive in. No compare-and-set: the
    /// sequencer's writes are a pure function of the log (see pipeline::sequencer).
    async fn write(&self, w: &Writes) -> Result<(), StoreError>;

    /// `write` of messages alone, all at one version.
    async fn put_messages(&self, msgs: &[Message], version: i64) -> Result<(), StoreError> {
        self.write(&Writes {
            messages: msgs
                .iter()
                .map(|m| MessageWrite {
                    msg: m.clone(),
                    version,
                })
                .collect(),
            ..Writes::default()
        })
        .await
    }

    /// The stored messages among `seqs`, in the order asked; missing seqs are left out.
    async fn messages(&self, conv: &str, seqs: &[u64]) -> Result<Vec<Message>, StoreError>;

    /// The latest message `sender` sent in `conv` under `client_msg_id`, with the
    /// record that wrote it.
    async fn by_client_msg_id(
        &self,
        conv: &str,
        sender: &str,
        client_msg_id: &str,
    ) -> Result<Option<Stored>, StoreError>;

    /// Where messages with this clientMsgId are stored (any conversation, any
    /// sender), as (convId, seq): at most `limit` of them, so a clientMsgId that many
    /// messages share costs a bounded read.
    async fn find_client_msg_id(
        &self,
        client_msg_id: &str,
        limit: usize,
    ) -> Result<Vec<(String, u64)>, StoreError>;

    /// Adds or updates a member outside the log (set-up of tools and tests), at the
    /// lowest version: any member change from the log overrides it (on CQL, where the
    /// log has changed members of the same bucket, it is not applied at all: see
    /// `scylla_members`).
    async fn set_member(&self, group: &str, user: &str, min_seq: u64) -> Result<(), StoreError> {
        self.write(&Writes {
            members: vec![MemberWrite {
                group: group.to_owned(),
                user: user.to_owned(),
                min_seq: Some(min_seq),
                version: VERSION_BASE,
            }],
            ..Writes::default()
        })
        .await
    }
    /// The member's min_seq, or None when not a member.
    async fn member(&self, group: &str, user: &str) -> Result<Option<u64>, StoreError>;
    async fn members(&self, group: &str) -> Result<Vec<(String, u64)>, StoreError>;
    /// `member` read from the store itself, past any cache (`member_cache`): for a
    /// caller waiting for a change another process applies.
    async fn member_uncached(&self, group: &str, user: &str) -> Result<Option<u64>, StoreError> {
        self.member(group, user).await
    }

    async fn ping(&self) -> Result<(), StoreError>;

    /// Changes at every membership write made through this handle (see `watched`);
    /// None when this handle does not tell.
    fn member_writes(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        None
    }

    /// Makes every write that has returned durable. The sequencer calls it before it
    /// commits offsets, so a committed offset never points past a lost write.
    /// Backends whose writes are durable when they return need not override it.
    async fn flush(&self) -> Result<(), StoreError> {
        Ok(())
    }

    /// `user`'s entries in the conversation index, as (convId, entry): one partition
    /// read, whole (see `convs`).
    async fn user_convs(&self, user: &str) -> Result<Vec<(String, convs::ConvEntry)>, StoreError>;

    /// How far back the store may forget writes it acknowledged when it fails (a node
    /// killed with periodic commit log sync loses its last sync period): the
    /// sequencer commits offsets only for records applied longer ago than this, so a
    /// restart re-applies whatever could have been lost. Zero for backends whose
    /// writes are durable once acknowledged.
    /// No default: a wrapper that did not forward it would silently turn the horizon off.
    fn durability_horizon(&self) -> std::time::Duration;

    /// How many times this process has seen the store lose its connections (a node
    /// that was reachable no longer is). After such an outage the store may have
    /// forgotten its last writes; the sequencer checks this before every write
    /// (`pipeline::sequencer::horizon`). Constant for backends that cannot forget.
    fn outages(&self) -> u64;

    /// Every conversation that has a seq row (a full scan: for recovery tools).
    async fn conversations(&self) -> Result<Vec<String>, StoreError>;

    /// Every user with an entry in the conversation index (a full scan: for recovery
    /// tools).
    async fn index_users(&self) -> Result<Vec<String>, StoreError>;

    /// Every group that has at least one member (a full scan: for recovery tools).
    async fn groups(&self) -> Result<Vec<String>, StoreError>;
}
