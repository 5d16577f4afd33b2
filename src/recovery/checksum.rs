//! `ferry store checksum`: a digest of the store's content, to compare a store
//! before and after a recovery (or two replicas of it). Per conversation: its seq
//! row (max_seq, update time, claim) and every message 1..=max_seq as stored; per
//! group: its members and their min_seq; per user: their conversation index
//! entries (`store::convs`).

use std::collections::BTreeSet;

use prost::Message as _;
use sha2::{Digest, Sha256};

use crate::proto::pb;
use crate::store::{Store, StoreError};

/// Seqs fetched per request.
const CHUNK: u64 = 1000;

/// One conversation's or group's digest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Line {
    pub(crate) text: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Summary {
    pub(crate) conversations: u64,
    pub(crate) messages: u64,
    /// Seqs at or below max_seq with no stored message.
    pub(crate) missing: u64,
    pub(crate) groups: u64,
    /// Users with conversation index entries.
    pub(crate) index_users: u64,
    pub(crate) sha256: String,
}

fn hex(d: &[u8]) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// Digests `convs` (all conversations and groups when None); returns one line per
/// conversation and group, in order, and the total over them.
pub(crate) async fn checksum(
    store: &dyn Store,
    convs: Option<&BTreeSet<String>>,
) -> Result<(Vec<Line>, Summary), StoreError> {
    let (conv_list, group_list): (Vec<String>, Vec<String>) = match convs {
        Some(c) => (
            c.iter().cloned().collect(),
            c.iter()
                .filter_map(|c| c.strip_prefix("group:").map(str::to_owned))
                .collect(),
        ),
        None => {
            let mut c = store.conversations().await?;
            c.sort();
            let mut g = store.groups().await?;
            g.sort();
            (c, g)
        }
    };
    let mut total = Sha256::new();
    let mut sum = Summary::default();
    let mut lines = Vec::new();
    for conv in &conv_list {
        let mut h = Sha256::new();
        h.update(conv.as_bytes());
        let Some(state) = store.conv_state(conv).await? else {
            let text = format!("conv {conv} absent");
            total.update(text.as_bytes());
            lines.push(Line { text });
            continue;
        };
        sum.conversations += 1;
        h.update(
            format!(
                "|max_seq={}|time={}|claim={}/{}/{}",
                state.max_seq,
                state.update_time_ms,
                state.claim.partition,
                state.claim.offset,
                state.claim.first_seq
            )
            .as_bytes(),
        );
        let (mut found, mut missing) = (0u64, 0u64);
        let mut from = 1;
        while from <= state.max_seq {
            let to = (from + CHUNK - 1).min(state.max_seq);
            let seqs: Vec<u64> = (from..=to).collect();
            let got = store.messages(conv, &seqs).await?;
            let mut it = got.iter().peekable();
            for s in &seqs {
                match it.next_if(|m| m.seq == *s) {
                    Some(m) => {
                        found += 1;
                        let body = pb::MsgData::from(m).encode_to_vec();
                        h.update(format!("|{s}:{}:", body.len()).as_bytes());
                        h.update(&body);
                    }
                    None => {
                        missing += 1;
                        h.update(format!("|{s}:missing").as_bytes());
                    }
                }
            }
            from = to + 1;
        }
        sum.messages += found;
        sum.missing += missing;
        let text = format!(
            "conv {conv} max_seq={} messages={found} missing={missing} sha256={}",
            state.max_seq,
            hex(&h.finalize())
        );
        total.update(text.as_bytes());
        lines.push(Line { text });
    }
    for g in &group_list {
        let mut members = store.members(g).await?;
        if members.is_empty() {
            continue;
        }
        members.sort();
        sum.groups += 1;
        let mut h = Sha256::new();
        for (u, min) in &members {
            h.update(format!("{u}={min};").as_bytes());
        }
        let text = format!(
            "group {g} members={} sha256={}",
            members.len(),
            hex(&h.finalize())
        );
        total.update(text.as_bytes());
        lines.push(Line { text });
    }
    for (user, n, digest) in index(store, convs).await? {
        sum.index_users += 1;
        let text = format!("index {user} entries={n} sha256={digest}");
        total.update(text.as_bytes());
        lines.push(Line { text });
    }
    sum.sha256 = hex(&total.finalize());
    Ok((lines, sum))
}

/// Per user (in order), the number and digest of their index entries (those of
/// `convs` only, when given).
async fn index(
    store: &dyn Store,
    convs: Option<&BTreeSet<String>>,
) -> Result<Vec<(String, usize, String)>, StoreError> {
    let mut users = store.index_users().await?;
    users.sort();
    let mut out = Vec::new();
    for user in users {
        let mut entries = store.user_convs(&user).await?;
        entries.retain(|(c, _)| convs.is_none_or(|set| set.contains(c)));
        if entries.is_empty() {
            continue;
        }
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        let mut h = Sha256::new();
        for (c, e) in &entries {
            h.update(
                format!(
                    "{c}|{}/{}|{}|{}|{}|{};",
                    e.partition, e.offset, e.min_seq, e.max_seq, e.update_time_ms, e.removed
                )
                .as_bytes(),
            );
        }
        out.push((user, entries.len(), hex(&h.finalize())));
    }
    Ok(out)
}
