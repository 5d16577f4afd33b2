//! Push records within the size budget: one user's oversized push never takes
//! another user's with it. A wave step's pushes to one pod are grouped into one
//! record (`router.rs`); grouped blindly, one large message made the record too
//! large for the log and every push in it was lost. Here a push larger than the
//! budget is split by recipients, one that cannot fit even for one recipient is
//! dropped alone (counted, logged; its recipients resync), and a pod's pushes are
//! grouped in records that each fit, in order.

use prost::Message as _;

use crate::proto::records::PushRecord;

/// Bytes an item takes inside a grouped record besides its own encoding (field tag
/// and length prefix).
const ITEM_FRAMING: usize = 6;

fn size(rec: &PushRecord) -> usize {
    rec.encoded_len() + ITEM_FRAMING
}

/// `items`, each within `max` bytes: an item over it is split into items for parts
/// of its recipients; one that is over it for a single recipient is dropped.
pub(crate) fn fitting(items: Vec<(String, PushRecord)>, max: usize) -> Vec<(String, PushRecord)> {
    let mut out = Vec::with_capacity(items.len());
    let mut todo: Vec<(String, PushRecord)> = items.into_iter().rev().collect();
    while let Some((topic, rec)) = todo.pop() {
        if size(&rec) <= max {
            out.push((topic, rec));
            continue;
        }
        if rec.user_ids.len() < 2 || !rec.items.is_empty() {
            metrics::counter!("ferry_pushes_oversized_total").increment(1);
            tracing::warn!(
                topic,
                bytes = size(&rec),
                max,
                recipients = rec.user_ids.len(),
                "push over the record budget dropped; its recipients resync"
            );
            continue;
        }
        // Halves, in order: the first half next.
        let mut second = rec.clone();
        let mut first = rec;
        second.user_ids = first.user_ids.split_off(first.user_ids.len() / 2);
        todo.push((topic.clone(), second));
        todo.push((topic, first));
    }
    out
}

/// `items` (each within `max`) in rounds: within a round each topic's items add up
/// to at most `max`, a topic's items keep their order across rounds, and the rounds
/// are appended in order (one record per topic each, same key: same partition).
pub(crate) fn by_size(
    items: Vec<(String, PushRecord)>,
    max: usize,
) -> Vec<Vec<(String, PushRecord)>> {
    let mut rounds: Vec<Vec<(String, PushRecord)>> = Vec::new();
    // Per topic: its current round and the bytes it holds there.
    let mut at: std::collections::HashMap<String, (usize, usize)> =
        std::collections::HashMap::new();
    for (topic, rec) in items {
        let n = size(&rec);
        let slot = at.entry(topic.clone()).or_insert((0, 0));
        if slot.1 > 0 && slot.1 + n > max {
            *slot = (slot.0 + 1, 0);
        }
        slot.1 += n;
        if rounds.len() <= slot.0 {
            rounds.resize_with(slot.0 + 1, Vec::new);
        }
        rounds[slot.0].push((topic, rec));
    }
    rounds
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::pb;
    use crate::proto::records::push_record::Payload;

    fn push(user: &str, content: usize) -> (String, PushRecord) {
        let msg = pb::MsgData {
            content: vec![b'x'; content].into(),
            ..Default::default()
        };
        let rec = PushRecord {
            user_ids: vec![user.to_owned()],
            payload: Some(Payload::Msgs(pb::MsgDataList {
                msg_data_list: vec![msg],
            })),
            ..PushRecord::default()
        };
        ("push.a".to_owned(), rec)
    }

    fn users(items: &[(String, PushRecord)]) -> Vec<String> {
        items.iter().flat_map(|(_, r)| r.user_ids.clone()).collect()
    }

    #[test]
    fn an_oversized_push_is_dropped_alone_and_the_others_are_grouped_within_the_budget() {
        let max = 10_000;
        let items = vec![
            push("u1", 100),
            push("big", 20_000),
            push("u2", 6_000),
            push("u3", 6_000),
            push("u4", 100),
        ];
        let fit = fitting(items, max);
        assert_eq!(users(&fit), ["u1", "u2", "u3", "u4"]);
        let rounds = by_size(fit, max);
        let per_round: Vec<Vec<String>> = rounds.iter().map(|r| users(r)).collect();
        assert_eq!(per_round, [vec!["u1", "u2"], vec!["u3", "u4"]]);
        for r in &rounds {
            assert!(r.iter().map(|(_, p)| size(p)).sum::<usize>() <= max);
        }
    }

    #[test]
    fn a_push_too_large_for_its_recipients_is_split_by_recipients_in_order() {
        let (topic, mut rec) = push("u0", 100);
        rec.user_ids = (0..2000).map(|i| format!("user-{i:05}")).collect();
        let fit = fitting(vec![(topic, rec)], 4_000);
        assert!(fit.len() > 1);
        assert!(fit.iter().all(|(_, r)| size(r) <= 4_000));
        let all: Vec<String> = (0..2000).map(|i| format!("user-{i:05}")).collect();
        assert_eq!(users(&fit), all, "every recipient once, in order");
    }
}
