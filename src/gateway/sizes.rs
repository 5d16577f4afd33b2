//! Sizes a send may have, checked before anything is appended (`budget.rs` says
//! where each number comes from): one conversation's part of a request must fit a
//! record with the sequencer's stamps; offline-push fields are capped one by one;
//! the offline fan-out of a request (recipients × offline-push bytes) is bounded.
//! Every refusal names the limit and the key that sets it.

use prost::Message as _;

use super::send::Batches;
use super::wire::Failure;
use crate::budget::{Budget, EVENT_FIXED_BYTES, stamp_bytes};
use crate::config::Config;
use crate::domain::{ConvId, Message};
use crate::proto::pb;

/// Bytes of a batch besides its messages: convId, senderId, times, framing.
const BATCH_FIXED_BYTES: usize = 1024;

/// `msgDataList[i]`'s offline-push fields within `offline.max_*_bytes`.
pub(crate) fn offline_push(cfg: &Config, i: usize, msg: &Message) -> Result<(), Failure> {
    let Some(p) = &msg.offline_push else {
        return Ok(());
    };
    let o = &cfg.offline;
    for (field, len, max, key) in [
        (
            "title",
            p.title.len(),
            o.max_title_bytes,
            "offline.max_title_bytes",
        ),
        (
            "content",
            p.content.len(),
            o.max_content_bytes,
            "offline.max_content_bytes",
        ),
        (
            "payload",
            p.payload.len(),
            o.max_payload_bytes,
            "offline.max_payload_bytes",
        ),
    ] {
        if len > max {
            return Err(Failure::Request(format!(
                "msgDataList[{i}]: offlinePush.{field} is {len} bytes, over the {max}-byte limit ({key})"
            )));
        }
    }
    Ok(())
}

/// The bytes a conversation's messages take in its records, stamps included.
pub(crate) fn batch_bytes(conv: &ConvId, msgs: &[Message]) -> usize {
    let conv = conv.to_string();
    BATCH_FIXED_BYTES
        + msgs
            .iter()
            .map(|m| pb::MsgData::from(m).encoded_len() + 6 + stamp_bytes(&conv))
            .sum::<usize>()
}

/// Every conversation's part of the request within one record: all or nothing, so a
/// request is never refused after part of it was stored.
pub(crate) fn batches(cfg: &Config, batches: &Batches) -> Result<(), Failure> {
    let budget = Budget::of(cfg);
    let max = budget.batch_max();
    for (conv, msgs) in batches {
        let n = batch_bytes(conv, msgs);
        if n > max {
            return Err(Failure::Request(format!(
                "the messages to {conv} take {n} bytes, over the {max}-byte limit for one \
                 conversation's messages in one request (kafka.max_message_bytes {} less \
                 record framing)",
                budget.record_max()
            )));
        }
    }
    Ok(())
}

/// The offline events one conversation's messages may cause per recipient, bytes.
pub(crate) fn offline_bytes(msgs: &[Message]) -> usize {
    msgs.iter()
        .filter(|m| m.options.offline_push)
        .map(|m| {
            let p = m.offline_push.as_ref();
            EVENT_FIXED_BYTES + p.map_or(0, |p| p.title.len() + p.content.len() + p.payload.len())
        })
        .sum()
}

/// The request's offline fan-out within `offline.max_fanout_bytes`: for each
/// conversation, its offline bytes times its recipients (every member but none
/// known to be online: the sequencer decides who is offline later, so all count).
pub(crate) async fn fanout(app: &super::Gateway, batches: &Batches) -> Result<(), Failure> {
    if !app.cfg.offline.enabled {
        return Ok(());
    }
    let max = app.cfg.offline.max_fanout_bytes;
    let mut total = 0usize;
    for (conv, msgs) in batches {
        let per = offline_bytes(msgs);
        if per == 0 {
            continue;
        }
        let recipients = match conv {
            ConvId::Group(_) => crate::access::recipients(app.store.as_ref(), conv)
                .await?
                .len(),
            _ => 2,
        };
        total = total.saturating_add(per.saturating_mul(recipients));
        if total > max {
            return Err(Failure::Request(format!(
                "offlinePush fan-out of this request is over {max} bytes (recipients × \
                 offline-push bytes; offline.max_fanout_bytes): {conv} alone has \
                 {recipients} recipients"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{MsgOptions, OfflinePush};

    fn msg(content: usize, push: usize) -> Message {
        Message {
            content: vec![b'x'; content].into(),
            options: MsgOptions {
                offline_push: push > 0,
                ..MsgOptions::stored()
            },
            offline_push: (push > 0).then(|| OfflinePush {
                title: "t".into(),
                content: "c".repeat(push),
                payload: String::new(),
            }),
            ..Message::default()
        }
    }

    #[test]
    fn a_conversation_over_the_record_budget_is_refused_naming_the_limit() {
        let cfg = Config::default();
        let conv = ConvId::parse("single:a-b").unwrap();
        let max = Budget::of(&cfg).batch_max();
        let ok: Batches = vec![(conv.clone(), vec![msg(max - 2000, 0)])];
        assert!(batches(&cfg, &ok).is_ok());
        let big: Batches = vec![(conv.clone(), vec![msg(max, 0)])];
        let err = batches(&cfg, &big).unwrap_err().to_string();
        assert!(err.contains("kafka.max_message_bytes"), "{err}");
        assert!(err.contains(&max.to_string()), "{err}");
        // Many small messages add up the same way.
        let many: Batches = vec![(conv, (0..100).map(|_| msg(max / 99, 0)).collect())];
        assert!(batches(&cfg, &many).is_err());
    }

    #[test]
    fn offline_push_fields_are_capped_one_by_one() {
        let cfg = Config::default();
        assert!(offline_push(&cfg, 0, &msg(10, 4096)).is_ok());
        let err = offline_push(&cfg, 3, &msg(10, 4097))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("msgDataList[3]: offlinePush.content is 4097 bytes"),
            "{err}"
        );
        assert!(err.contains("offline.max_content_bytes"), "{err}");
        assert_eq!(
            offline_bytes(&[msg(10, 100), msg(10, 0)]),
            EVENT_FIXED_BYTES + 101
        );
    }
}
