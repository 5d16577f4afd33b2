//! The pure part of sequencing, shared by the sequencer and by replay: what becomes
//! of each message of a batch (`plan`) and the messages it turns into once seqs are
//! assigned (`stamp`). No I/O: the same inputs always give the same messages, which
//! is what lets a redelivered record or a replay rewrite exactly what was written.

use std::collections::HashMap;

use crate::domain::{ConvId, Message, Seq, server_msg_id};

/// What became of one message of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Fate {
    /// Not stored (storageForServer=false): pushed without a seq.
    Transient,
    /// Already stored with the same content: no new seq.
    Retry(Box<Message>),
    /// New content: takes the next seq.
    New,
    /// Same clientMsgId, different content: takes the next seq and rewrites this original.
    Edit(Box<Message>),
}

/// Decides each message's fate. `ours` is the seq range this very record claimed
/// before (when redelivered): a message found there is this record's own write.
pub(crate) fn classify(msg: &Message, existing: Option<Message>, ours: Option<(u64, u64)>) -> Fate {
    if !msg.options.storage_for_server {
        return Fate::Transient;
    }
    match existing {
        None => Fate::New,
        Some(e) if ours.is_some_and(|(lo, hi)| (lo..=hi).contains(&e.seq)) => Fate::New,
        Some(e) if e.same_content(msg) => Fate::Retry(Box::new(e)),
        Some(e) => Fate::Edit(Box::new(e)),
    }
}

impl Fate {
    pub(crate) fn takes_seq(&self) -> bool {
        matches!(self, Fate::New | Fate::Edit(_))
    }
}

/// Decides the fate of every message of a batch, in order. `existing[i]` is what the
/// store holds under message i's (convId, senderId, clientMsgId); a clientMsgId
/// repeated inside the batch sees its earlier twin instead.
pub(crate) fn plan(
    msgs: &[Message],
    existing: Vec<Option<Message>>,
    ours: Option<(u64, u64)>,
) -> Vec<Fate> {
    let mut seen: HashMap<&str, Message> = HashMap::new();
    let mut fates = Vec::with_capacity(msgs.len());
    for (m, stored) in msgs.iter().zip(existing) {
        let existing = match seen.get(m.client_msg_id.as_str()) {
            Some(e) => Some(e.clone()),
            None => stored,
        };
        let fate = classify(m, existing, ours);
        if !m.client_msg_id.is_empty() && fate.takes_seq() {
            seen.insert(&m.client_msg_id, m.clone());
        }
        fates.push(fate);
    }
    fates
}

/// What a batch turns into once seqs are assigned from `base`.
pub(crate) struct Stamped {
    /// New messages with their seqs, to store and push.
    pub(crate) stored: Vec<Message>,
    /// Originals rewritten by edits and revokes (keeping their seqs).
    pub(crate) originals: Vec<Message>,
    /// Everything recipients get: stored messages and transient ones.
    pub(crate) push: Vec<Message>,
    /// Stored originals of retries, echoed to the sender only.
    pub(crate) echo: Vec<Message>,
}

/// Stamps seqs, serverMsgId and serverTime (`ts`, the inbound record's timestamp, so
/// that every replay of the record stamps the same). A pure function of its inputs.
pub(crate) fn stamp(
    conv: &ConvId,
    sender: &str,
    ts: i64,
    msgs: &[Message],
    fates: Vec<Fate>,
    base: u64,
) -> Stamped {
    let conv_s = conv.to_string();
    let mut seq = base;
    let mut out = Stamped {
        stored: Vec::new(),
        originals: Vec::new(),
        push: Vec::new(),
        echo: Vec::new(),
    };
    for (m, fate) in msgs.iter().zip(fates) {
        let mut m = m.clone();
        m.conv_id = conv_s.clone();
        m.sender_id = sender.to_owned();
        m.server_time_ms = ts;
        match fate {
            Fate::Transient => {
                m.seq = 0;
                m.server_msg_id.clear();
                out.push.push(m);
            }
            Fate::Retry(e) => out.echo.push(*e),
            Fate::New | Fate::Edit(_) => {
                m.seq = seq;
                m.server_msg_id = server_msg_id(conv, Seq(seq));
                if m.client_msg_id.is_empty() {
                    m.client_msg_id = m.server_msg_id.clone();
                }
                if let Fate::Edit(orig) = fate {
                    let mut o = *orig;
                    o.content_type = m.content_type;
                    o.content = m.content.clone();
                    o.ext = m.ext.clone();
                    o.at_users = m.at_users.clone();
                    out.originals.push(o);
                }
                seq += 1;
                out.stored.push(m.clone());
                out.push.push(m);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::MsgOptions;

    fn msg(id: &str, content: &str, seq: u64) -> Message {
        Message {
            client_msg_id: id.into(),
            content: content.as_bytes().to_vec().into(),
            seq,
            options: MsgOptions::stored(),
            ..Message::default()
        }
    }

    #[test]
    fn classification() {
        let m = msg("c1", "hello", 0);
        assert_eq!(classify(&m, None, None), Fate::New);
        assert_eq!(
            classify(&m, Some(msg("c1", "hello", 4)), None),
            Fate::Retry(Box::new(msg("c1", "hello", 4)))
        );
        assert_eq!(
            classify(&m, Some(msg("c1", "bye", 4)), None),
            Fate::Edit(Box::new(msg("c1", "bye", 4)))
        );
        // Found inside the range this record claimed before: its own earlier write.
        assert_eq!(
            classify(&m, Some(msg("c1", "hello", 7)), Some((6, 8))),
            Fate::New
        );
        let mut t = m.clone();
        t.options.storage_for_server = false;
        assert_eq!(classify(&t, None, None), Fate::Transient);
    }
}
