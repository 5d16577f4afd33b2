//! Offline hand-off: a stored message with `options.offlinePush`, for each recipient
//! other than the sender that the routing hook counts as offline, becomes one
//! `OfflinePush` record on `<prefix>offline`, keyed by userId, for the app's mobile
//! push service (APNs/FCM).
//!
//! # One event per (user, message)
//!
//! An event's identity is (userId, serverMsgId). serverMsgId is `<convId>-<seq>` and
//! the seq is a pure function of the log, so every re-application of an inbound
//! record computes the same identity: it is the idempotency key
//! ([`idempotency_key`]) carried in a record header and in the forwarder's JSON.
//!
//! Which application of a record emits:
//! - a record that takes new seqs emits *before* the message write
//!   (`Sequencer::pass`): once the messages are in the store, their events are on
//!   the offline topic;
//! - a redelivered record that finds its own writes (the seq row naming it, or
//!   messages written by it: a crash or a rebalance before its offset was
//!   committed, a reset of the sequencer group) first reads the messages it took:
//!   all stored means the earlier application got past the write, hence past the
//!   hand-off, and nothing is emitted again; anything missing means it stopped
//!   before the write, and it emits (the earlier one may or may not have; this is
//!   the only duplicate, same key);
//! - a record whose seqs a later record already moved past emits nothing (it is
//!   skipped as a whole), and a retry (same clientMsgId and content) takes no seq
//!   and emits nothing;
//! - `ferry replay` rebuilds the store and never emits: the hand-off belongs to the
//!   live sequencer, and a replayed record's events went out when it was sequenced.
//!
//! The guarantee is therefore at least once with a stable key, and exactly once
//! unless a record is re-applied while its first application sits between the
//! offline append and the message write (a sequencer killed in those milliseconds,
//! or a zombie still finishing the record after a rebalance). Consumers dedupe by
//! (userId, serverMsgId). Transient messages (`storageForServer` false) have no
//! serverMsgId and are never handed off.

use bytes::Bytes;
use prost::Message as _;

use crate::domain::Message;
use crate::msglog::{LogRecord, Outgoing, Topics};
use crate::proto::records::OfflinePush;

/// Record header with the event's idempotency key.
pub(crate) const KEY_HEADER: &str = "ferry-idempotency-key";

/// `<userId>/<serverMsgId>`: neither contains `/`, so the key splits back unambiguously.
pub(crate) fn idempotency_key(user: &str, server_msg_id: &str) -> String {
    format!("{user}/{server_msg_id}")
}

/// The events for one routed batch: `stored` are the messages this record stored
/// (with seqs), `offline` the recipients the routing hook counted as offline.
pub(crate) fn events(sender: &str, stored: &[Message], offline: &[String]) -> Vec<OfflinePush> {
    let mut out = Vec::new();
    for m in stored
        .iter()
        .filter(|m| m.options.offline_push && m.seq > 0)
    {
        let push = m.offline_push.clone().unwrap_or_default();
        for user in offline.iter().filter(|u| u.as_str() != sender) {
            out.push(OfflinePush {
                user_id: user.clone(),
                conv_id: m.conv_id.clone(),
                seq: m.seq,
                server_msg_id: m.server_msg_id.clone(),
                sender_id: m.sender_id.clone(),
                content_type: m.content_type,
                title: push.title.clone(),
                content: push.content.clone(),
                payload: push.payload.clone(),
                server_time: m.server_time_ms,
            });
        }
    }
    out
}

/// The offline-topic record of one event, keyed by userId.
pub(crate) fn record(topics: &Topics, e: &OfflinePush) -> Outgoing {
    let mut o = Outgoing::new(topics.offline(), e.user_id.clone(), e.encode_to_vec());
    o.headers.push((
        KEY_HEADER.into(),
        Bytes::from(idempotency_key(&e.user_id, &e.server_msg_id)),
    ));
    o
}

/// An event as JSON, for `ferry offline tail` and the forwarder.
pub(crate) fn json(e: &OfflinePush) -> serde_json::Value {
    serde_json::json!({
        "idempotencyKey": idempotency_key(&e.user_id, &e.server_msg_id),
        "userId": e.user_id,
        "convId": e.conv_id,
        "seq": e.seq,
        "serverMsgId": e.server_msg_id,
        "senderId": e.sender_id,
        "contentType": e.content_type,
        "title": e.title,
        "content": e.content,
        "payload": e.payload,
        "serverTime": e.server_time,
    })
}

/// Decodes a consumed offline record; None for a tombstone or garbage.
pub(crate) fn decode(rec: &LogRecord) -> Option<OfflinePush> {
    OfflinePush::decode(rec.value.as_deref()?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{MsgOptions, OfflinePush as Push};

    fn stored(seq: u64, offline_push: bool) -> Message {
        Message {
            conv_id: "group:g".into(),
            server_msg_id: format!("group:g-{seq}"),
            sender_id: "ann".into(),
            seq,
            server_time_ms: 1000 + seq as i64,
            options: MsgOptions {
                offline_push,
                ..MsgOptions::stored()
            },
            offline_push: Some(Push {
                title: "t".into(),
                content: "c".into(),
                payload: "p".into(),
            }),
            ..Message::default()
        }
    }

    #[test]
    fn one_event_per_offline_recipient_and_flagged_message_never_the_sender() {
        let msgs = [stored(1, true), stored(2, false), stored(3, true)];
        let offline: Vec<String> = ["ann", "bob", "cid"].map(String::from).into();
        let ev = events("ann", &msgs, &offline);
        let keys: Vec<String> = ev
            .iter()
            .map(|e| idempotency_key(&e.user_id, &e.server_msg_id))
            .collect();
        assert_eq!(
            keys,
            [
                "bob/group:g-1",
                "cid/group:g-1",
                "bob/group:g-3",
                "cid/group:g-3"
            ]
        );
        assert_eq!((ev[0].title.as_str(), ev[0].server_time), ("t", 1001));
        assert!(events("ann", &msgs, &[]).is_empty());
        let unsequenced = [stored(0, true)];
        assert!(events("ann", &unsequenced, &offline).is_empty());
    }

    /// The sequencer's side of the design above, on the embedded backends: a record
    /// applied twice emits once.
    #[tokio::test]
    async fn the_sequencer_emits_once_per_record() {
        use std::sync::Arc;

        use crate::msglog::embedded::EmbeddedLog;
        use crate::msglog::{MsgLog, Retention, TopicSpec};
        use crate::pipeline::records::{batch, inbound as batch_record};
        use crate::pipeline::router::PushRouter;
        use crate::pipeline::routing::PresenceRouting;
        use crate::pipeline::sequencer::Sequencer;
        use crate::presence::PresenceView;
        use crate::store::Store;
        use crate::store::embedded::EmbeddedStore;

        let dir = tempfile::tempdir().unwrap();
        let log: Arc<dyn MsgLog> = Arc::new(EmbeddedLog::open(dir.path()).unwrap());
        let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
        let topics = Topics::new("t.");
        for name in [topics.inbound(), topics.offline()] {
            let spec = TopicSpec {
                name,
                retention: Retention::Full,
            };
            log.ensure_topic(&spec).await.unwrap();
        }
        let seq = Sequencer {
            log: log.clone(),
            store: store.clone(),
            topics: topics.clone(),
            router: PushRouter {
                log: log.clone(),
                routing: Arc::new(PresenceRouting {
                    topics: topics.clone(),
                    presence: PresenceView::new(90),
                    local: None,
                }),
                group: true,
                max_record: crate::budget::Budget::default().push_max(),
            },
            offline: true,
            stalls: Default::default(),
            budget: Default::default(),
        };
        let conv = crate::domain::ConvId::parse("single:ann-bob").unwrap();
        let inbound = |offset: i64, text: &str| {
            let mut m = stored(0, true);
            m.client_msg_id = text.into();
            m.content = text.as_bytes().to_vec().into();
            let out = batch_record(&topics, batch(&conv, "ann", &[m], 0, 0));
            LogRecord {
                topic: out.topic,
                partition: 0,
                offset,
                key: out.key,
                value: out.value,
                timestamp_ms: 1000 + offset,
                headers: Vec::new(),
            }
        };
        let events = || async { log.watermarks(&topics.offline()).await.unwrap()[0].high };

        let first = inbound(5, "one");
        seq.apply(&first).await.unwrap();
        assert_eq!(events().await, 1, "bob is offline: one event");
        seq.apply(&first).await.unwrap();
        assert_eq!(
            events().await,
            1,
            "redelivered after the write: nothing again"
        );

        let second = inbound(6, "two");
        seq.apply(&second).await.unwrap();
        assert_eq!(events().await, 2, "a new record: handed off");
        seq.apply(&second).await.unwrap();
        assert_eq!(events().await, 2);
        let mut sub = log.read_from(&topics.offline(), &[(0, 0)]).await.unwrap();
        let keys: Vec<String> = [sub.next().await.unwrap(), sub.next().await.unwrap()]
            .iter()
            .map(|r| {
                let e = decode(r).unwrap();
                idempotency_key(&e.user_id, &e.server_msg_id)
            })
            .collect();
        assert_eq!(keys, ["bob/single:ann-bob-1", "bob/single:ann-bob-2"]);
    }

    #[test]
    fn record_is_keyed_by_user_and_carries_the_key() {
        let e = &events("ann", &[stored(4, true)], &["bob".into()])[0];
        let o = record(&Topics::new("p."), e);
        assert_eq!((o.topic.as_str(), &o.key[..]), ("p.offline", &b"bob"[..]));
        assert_eq!(o.headers[0].1, Bytes::from("bob/group:g-4"));
        assert_eq!(json(e)["idempotencyKey"], "bob/group:g-4");
        assert_eq!(json(e)["seq"], 4);
    }
}
