//! The sequencer, simulated in memory. Seqs are a pure function of the ordered
//! inbound records of a conversation's partition (serverTime is the record's
//! timestamp, the claim is the record's position), so replaying a partition from
//! its beginning through the sequencer's own `plan` and `stamp` rebuilds exactly
//! what the live sequencer stored: every message, the seq row and the members.
//!
//! The simulation mirrors the store the sequencer reads, not the sequencer's code
//! paths: `by_client_msg_id` is the message currently stored at the highest seq
//! indexed under (sender, clientMsgId). It is the first delivery of every record,
//! so the "ours" range of a redelivered record never applies (a redelivery converges
//! to the same result, see pipeline::sequencer).

use std::collections::{BTreeMap, HashMap};

use crate::domain::{ConvId, Message};
use crate::pipeline::stamping::{Stamped, plan, stamp};
use crate::store::{Claim, ConvState};

/// One conversation's store, as the sequencer would have left it.
#[derive(Default)]
pub(crate) struct ConvSim {
    pub(crate) state: Option<ConvState>,
    /// Every stored message by seq, with its latest content (edits rewrite them).
    pub(crate) messages: BTreeMap<u64, Message>,
    /// The offset of the record that last wrote each seq (its write version).
    pub(crate) written_by: BTreeMap<u64, i64>,
    /// (senderId, clientMsgId) -> the highest seq stored under it.
    index: HashMap<(String, String), u64>,
}

/// Where an inbound record sits in the log.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Position {
    pub(crate) partition: i32,
    pub(crate) offset: i64,
    pub(crate) timestamp_ms: i64,
}

impl ConvSim {
    /// Applies one batch as the sequencer does and returns the seqs it wrote
    /// (rewritten originals and new messages).
    pub(crate) fn step(
        &mut self,
        conv: &ConvId,
        sender: &str,
        at: Position,
        msgs: &[Message],
    ) -> Vec<u64> {
        let existing: Vec<Option<Message>> = msgs
            .iter()
            .map(|m| match m.client_msg_id.as_str() {
                "" => None,
                id => self
                    .index
                    .get(&(sender.to_owned(), id.to_owned()))
                    .and_then(|seq| self.messages.get(seq))
                    .cloned(),
            })
            .collect();
        let fates = plan(msgs, existing, None);
        let takes = fates.iter().filter(|f| f.takes_seq()).count() as u64;
        let base = self.state.as_ref().map_or(1, |s| s.max_seq + 1);
        if takes > 0 {
            self.state = Some(ConvState {
                max_seq: base + takes - 1,
                update_time_ms: at.timestamp_ms,
                claim: Claim {
                    partition: at.partition,
                    offset: at.offset,
                    first_seq: base,
                },
            });
        }
        let Stamped {
            stored, originals, ..
        } = stamp(conv, sender, at.timestamp_ms, msgs, fates, base);
        // The same order as the sequencer's writes: originals, then new messages.
        let mut wrote = Vec::with_capacity(originals.len() + stored.len());
        for m in originals.into_iter().chain(stored) {
            wrote.push(m.seq);
            self.written_by.insert(m.seq, at.offset);
            self.put(m);
        }
        wrote
    }

    /// `Store::put_messages` of one message: upsert by seq, index the clientMsgId at
    /// the highest seq (both backends keep the highest, whatever the write order).
    fn put(&mut self, m: Message) {
        if !m.client_msg_id.is_empty() {
            let key = (m.sender_id.clone(), m.client_msg_id.clone());
            let seq = self.index.entry(key).or_insert(m.seq);
            *seq = (*seq).max(m.seq);
        }
        self.messages.insert(m.seq, m);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::MsgOptions;

    fn msg(id: &str, content: &str) -> Message {
        Message {
            client_msg_id: id.into(),
            content: content.as_bytes().to_vec().into(),
            options: MsgOptions::stored(),
            ..Message::default()
        }
    }

    fn at(offset: i64) -> Position {
        Position {
            partition: 2,
            offset,
            timestamp_ms: 1000 + offset,
        }
    }

    #[test]
    fn seqs_retries_and_edits_follow_the_sequencer() {
        let conv = ConvId::parse("single:a-b").unwrap();
        let mut sim = ConvSim::default();
        assert_eq!(
            sim.step(&conv, "a", at(0), &[msg("c1", "hi"), msg("c2", "yo")]),
            vec![1, 2]
        );
        // A retry takes no seq and writes nothing.
        assert!(sim.step(&conv, "a", at(1), &[msg("c1", "hi")]).is_empty());
        assert_eq!(sim.state.as_ref().unwrap().claim.offset, 0);
        // An edit rewrites the original (seq 1) and appends seq 3.
        assert_eq!(
            sim.step(&conv, "a", at(2), &[msg("c1", "edited")]),
            vec![1, 3]
        );
        assert_eq!(sim.messages[&1].content.as_ref(), b"edited");
        assert_eq!(sim.messages[&3].server_msg_id, "single:a-b-3");
        assert_eq!(sim.messages[&3].server_time_ms, 1002);
        let s = sim.state.clone().unwrap();
        assert_eq!((s.max_seq, s.update_time_ms), (3, 1002));
        assert_eq!(
            s.claim,
            Claim {
                partition: 2,
                offset: 2,
                first_seq: 3
            }
        );
        // The same clientMsgId from another sender is a different message.
        assert_eq!(sim.step(&conv, "b", at(3), &[msg("c1", "hi")]), vec![4]);
        // A retry of the edit is recognised against the latest version.
        assert!(
            sim.step(&conv, "a", at(4), &[msg("c1", "edited")])
                .is_empty()
        );
    }

    #[test]
    fn transient_messages_are_not_stored() {
        let conv = ConvId::parse("group:g").unwrap();
        let mut sim = ConvSim::default();
        let mut t = msg("t1", "typing");
        t.options.storage_for_server = false;
        assert!(sim.step(&conv, "a", at(0), &[t]).is_empty());
        assert!(sim.state.is_none());
        // An empty clientMsgId becomes the serverMsgId.
        assert_eq!(sim.step(&conv, "", at(1), &[msg("", "sys")]), vec![1]);
        assert_eq!(sim.messages[&1].client_msg_id, "group:g-1");
    }
}
