//! The log record format, in one place: every record appended to the inbound topic
//! (message batches, member changes), to the delay tiers and to the dead-letter
//! topic is built here, and inbound records are read back here (by the sequencer
//! and by replay).

use prost::Message as _;

use crate::domain::{ConvId, Message};
use crate::msglog::{LogRecord, Outgoing, Topics};
use crate::proto::pb;
use crate::proto::records::{
    DelayedRecord, InboundRecord, MemberChange, MessageBatch, inbound_record,
};

/// A batch of one conversation's messages from one sender, as the gateway and the
/// server API accepted it (`due_at_ms` > 0: delayed until then).
pub(crate) fn batch(
    conv: &ConvId,
    sender: &str,
    msgs: &[Message],
    accepted_at_ms: i64,
    due_at_ms: i64,
) -> MessageBatch {
    MessageBatch {
        conv_id: conv.to_string(),
        sender_id: sender.to_owned(),
        msgs: msgs.iter().map(pb::MsgData::from).collect(),
        accepted_at_ms,
        due_at_ms,
    }
}

/// The inbound record for a batch, keyed by its convId: one conversation, one
/// partition, one order.
pub(crate) fn inbound(topics: &Topics, batch: MessageBatch) -> Outgoing {
    let key = batch.conv_id.clone();
    let rec = InboundRecord {
        kind: Some(inbound_record::Kind::Messages(batch)),
    };
    Outgoing::new(topics.inbound(), key, rec.encode_to_vec())
}

/// The inbound record for a membership change, keyed by the group's convId so it is
/// ordered with the group's messages.
pub(crate) fn member(topics: &Topics, change: MemberChange) -> Outgoing {
    let key = format!("group:{}", change.group_id);
    let rec = InboundRecord {
        kind: Some(inbound_record::Kind::Member(change)),
    };
    Outgoing::new(topics.inbound(), key, rec.encode_to_vec())
}

/// The record for a batch entering delay tier `tier_secs` at `now_ms`.
pub(crate) fn delayed(
    topics: &Topics,
    tier_secs: u64,
    batch: MessageBatch,
    now_ms: i64,
) -> Outgoing {
    let key = batch.conv_id.clone();
    let rec = DelayedRecord {
        batch: Some(batch),
        entered_tier_at_ms: now_ms,
    };
    Outgoing::new(topics.delay(tier_secs), key, rec.encode_to_vec())
}

/// The longest reason a dead letter carries, bytes (a longer one is cut).
const MAX_REASON_BYTES: usize = 1024;

/// `rec` copied to the dead-letter topic with why and where it came from, in at most
/// `max` bytes (`msglog::record_bytes`): the original when it fits beside the reason,
/// else only the reference (`ferry-origin`: topic/partition/offset, and
/// `ferry-omitted`: the original's size), so a dead letter is never refused itself.
pub(crate) fn dead_letter(topics: &Topics, rec: &LogRecord, why: &str, max: usize) -> Outgoing {
    dead_letter_to(topics.dead_letter(), rec, why, max)
}

/// `dead_letter`, to `topic` (the offline events' own dead-letter topic).
pub(crate) fn dead_letter_to(topic: String, rec: &LogRecord, why: &str, max: usize) -> Outgoing {
    let mut cut = why.len().min(MAX_REASON_BYTES);
    while !why.is_char_boundary(cut) {
        cut -= 1;
    }
    let reference: Vec<(String, bytes::Bytes)> = vec![
        (
            "ferry-error".to_owned(),
            why.as_bytes()[..cut].to_vec().into(),
        ),
        (
            "ferry-origin".to_owned(),
            format!("{}/{}/{}", rec.topic, rec.partition, rec.offset)
                .into_bytes()
                .into(),
        ),
    ];
    let mut o = Outgoing::new(
        topic.clone(),
        rec.key.clone(),
        rec.value.clone().unwrap_or_default(),
    );
    o.headers = rec.headers.clone();
    o.headers.extend(reference.iter().cloned());
    if crate::msglog::record_bytes(&o) <= max {
        return o;
    }
    let size = crate::msglog::record_bytes(&o);
    // The key is a convId (at most a few hundred bytes) or a group key: kept, so the
    // reference names the conversation too, unless even it is too long.
    let key = if rec.key.len() <= 1024 {
        rec.key.clone()
    } else {
        bytes::Bytes::new()
    };
    let mut o = Outgoing::new(topic, key, bytes::Bytes::new());
    o.headers = reference;
    o.headers.push((
        "ferry-omitted".into(),
        format!("{size} bytes").into_bytes().into(),
    ));
    o
}

/// An inbound record as read back.
pub(crate) enum Inbound {
    Messages(MessageBatch),
    Member(MemberChange),
    /// Not a record this version understands (the sequencer dead-letters it).
    Undecodable,
}

pub(crate) fn read_inbound(rec: &LogRecord) -> Inbound {
    match rec.value.as_deref().map(InboundRecord::decode) {
        Some(Ok(InboundRecord {
            kind: Some(inbound_record::Kind::Messages(b)),
        })) => Inbound::Messages(b),
        Some(Ok(InboundRecord {
            kind: Some(inbound_record::Kind::Member(m)),
        })) => Inbound::Member(m),
        _ => Inbound::Undecodable,
    }
}

/// A delay-tier record as read back; None when undecodable or empty.
pub(crate) fn read_delayed(rec: &LogRecord) -> Option<(MessageBatch, i64)> {
    let d = DelayedRecord::decode(rec.value.as_deref()?).ok()?;
    Some((d.batch?, d.entered_tier_at_ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_back(o: Outgoing) -> LogRecord {
        LogRecord {
            topic: o.topic,
            partition: 0,
            offset: 0,
            key: o.key,
            value: o.value,
            timestamp_ms: 0,
            headers: o.headers,
        }
    }

    #[test]
    fn records_read_back_as_written() {
        let topics = Topics::new("t.");
        let conv = ConvId::parse("group:g1").unwrap();
        let b = batch(&conv, "alice", &[Message::default()], 5, 0);
        let o = inbound(&topics, b.clone());
        assert_eq!(
            (o.topic.as_str(), &o.key[..]),
            ("t.inbound", &b"group:g1"[..])
        );
        assert!(matches!(read_inbound(&read_back(o)), Inbound::Messages(got) if got == b));

        let change = MemberChange {
            group_id: "g1".into(),
            user_id: "bob".into(),
            ..MemberChange::default()
        };
        let o = member(&topics, change.clone());
        assert_eq!(&o.key[..], b"group:g1", "ordered with the group's messages");
        assert!(matches!(read_inbound(&read_back(o)), Inbound::Member(got) if got == change));

        let o = delayed(&topics, 5, b.clone(), 42);
        assert_eq!(o.topic, topics.delay(5));
        assert_eq!(read_delayed(&read_back(o)), Some((b, 42)));

        let mut junk = read_back(Outgoing::new("t.inbound", "k", "not a record"));
        junk.headers
            .push(("traceparent".into(), "00-1-2-01".into()));
        let dl = dead_letter(&topics, &junk, "undecodable", 1000);
        assert_eq!(
            dl.value.as_deref(),
            Some(&b"not a record"[..]),
            "fits: kept"
        );
        assert_eq!(
            dl.headers.len(),
            3,
            "its own headers, the reason, the origin"
        );
        assert!(matches!(read_inbound(&junk), Inbound::Undecodable));
        junk.value = None;
        assert!(matches!(read_inbound(&junk), Inbound::Undecodable));
        assert_eq!(read_delayed(&junk), None);
    }
}

#[cfg(test)]
mod dead_letter_tests {
    use super::*;

    #[test]
    fn a_dead_letter_always_fits_keeping_the_original_only_when_it_does() {
        let topics = Topics::new("t.");
        let mut rec = LogRecord::at(3, 41);
        rec.topic = topics.inbound();
        rec.key = bytes::Bytes::from_static(b"single:a-b");
        rec.value = Some(bytes::Bytes::from(vec![7u8; 5000]));
        let why = "x".repeat(5000);
        for max in [6500, 5000, 3000] {
            let dl = dead_letter(&topics, &rec, &why, max);
            assert!(crate::msglog::record_bytes(&dl) <= max, "{max}");
            assert_eq!(dl.topic, topics.dead_letter());
            let origin = dl
                .headers
                .iter()
                .find(|(n, _)| n == "ferry-origin")
                .unwrap();
            assert_eq!(&origin.1[..], b"t.inbound/3/41");
            let reason = dl.headers.iter().find(|(n, _)| n == "ferry-error").unwrap();
            assert_eq!(reason.1.len(), MAX_REASON_BYTES, "a long reason is cut");
            let omitted = dl.headers.iter().find(|(n, _)| n == "ferry-omitted");
            match max {
                6500 => {
                    assert_eq!(dl.value.as_ref().unwrap().len(), 5000);
                    assert!(omitted.is_none());
                }
                _ => {
                    assert_eq!(dl.value.as_ref().unwrap().len(), 0);
                    assert!(omitted.is_some());
                    assert_eq!(&dl.key[..], b"single:a-b");
                }
            }
        }
    }
}
