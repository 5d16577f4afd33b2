//! The per-user conversation index behind conversation discovery
//! (docs/conversation-discovery.md): for each user, one entry per conversation they
//! belong to, placed at the position in the inbound log of the record that last
//! changed it for them.
//!
//! # What is indexed, and why not every message for every recipient
//!
//! The naive index writes one entry per recipient per message: a message to a group
//! of 1000 members would cost 1000 extra writes, a thousandfold the message's own
//! write. Instead:
//!
//! - a *single* conversation has two participants, and each of its messages that
//!   takes a seq rewrites the entry of both (two small upserts beside the message:
//!   the entry carries the conversation's max_seq and update time, so reading it needs
//!   no other row);
//! - a *group* entry is written only when the user's membership changes (added, its
//!   min_seq changed, removed). A group message writes no entry at all: discovery
//!   reads the group's seq row when it answers, and places the group at the later of
//!   the member change and the group's last claim (both positions in the group's one
//!   inbound partition). A group message thus costs nothing more than it did; a
//!   reconnect costs one seq-row read per group the user is in.
//!
//! # Deterministic and versioned like every other write
//!
//! An entry is a pure function of the record that writes it and of the conversation's
//! state before it (the seq row the sequencer already holds): the same record writes
//! the same cells, at the record's version (`store::version`), so the safety argument
//! of `pipeline::sequencer` covers the index unchanged: last-write-wins keeps the
//! latest record's entry whatever order writes arrive in, and `ferry replay` rebuilds
//! it from the log. Entries are written with the messages and members, before the seq
//! row, so a seq row naming a record proves its entries are written.

use super::ConvState;
use crate::domain::ConvId;

/// Where a conversation stands for one user, as the index holds it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConvEntry {
    /// The inbound record (partition, offset) that last changed it for this user.
    pub partition: i32,
    pub offset: i64,
    /// Groups: the member's first readable seq (0 for single conversations).
    pub min_seq: u64,
    /// Single conversations: max_seq after the record. Groups: 0 (read at answer time).
    pub max_seq: u64,
    /// The record's timestamp (epoch ms).
    pub update_time_ms: i64,
    /// A group the user was removed from.
    pub removed: bool,
}

/// One user's entry for one conversation, at a version.
#[derive(Clone, Debug)]
pub struct ConvIndexWrite {
    pub user: String,
    pub conv: String,
    pub entry: ConvEntry,
    pub version: i64,
}

/// The entries of a message record that took seqs in a single conversation: the
/// same entry for both participants.
fn single(
    participants: [&str; 2],
    conv: &str,
    entry: ConvEntry,
    version: i64,
) -> Vec<ConvIndexWrite> {
    participants
        .into_iter()
        .map(|user| ConvIndexWrite {
            user: user.to_owned(),
            conv: conv.to_owned(),
            entry: entry.clone(),
            version,
        })
        .collect()
}

/// The entries a message record writes when it took seqs up to `next.max_seq` in
/// `conv` (`next.claim` is the record's position): both participants' for a single
/// conversation, none for a group (read at answer time) or a notice conversation.
pub(crate) fn for_record(conv: &ConvId, next: &ConvState) -> Vec<ConvIndexWrite> {
    let offset = next.claim.offset;
    let ConvId::Single(a, b) = conv else {
        return Vec::new();
    };
    let entry = ConvEntry {
        partition: next.claim.partition,
        offset,
        min_seq: 0,
        max_seq: next.max_seq,
        update_time_ms: next.update_time_ms,
        removed: false,
    };
    single(
        [a.as_str(), b.as_str()],
        &conv.to_string(),
        entry,
        super::version(offset, super::Step::New),
    )
}

/// The entry of a member change: `min_seq` None when the user was removed.
pub(crate) fn member(
    group: &str,
    user: &str,
    min_seq: Option<u64>,
    (partition, offset, time_ms): (i32, i64, i64),
    version: i64,
) -> ConvIndexWrite {
    ConvIndexWrite {
        user: user.to_owned(),
        conv: format!("group:{group}"),
        entry: ConvEntry {
            partition,
            offset,
            min_seq: min_seq.unwrap_or(0),
            max_seq: 0,
            update_time_ms: time_ms,
            removed: min_seq.is_none(),
        },
        version,
    }
}
