//! The sequencer's pushes, coalesced: lanes hand their pushes to one task, which
//! appends whatever has gathered as ONE push record per push topic (per pod), each
//! holding the pushes in the order they were handed over (`PushRecord.items`).
//!
//! Why: a push record per sequenced record was a produce call, a delivery-report
//! wait and a wake-up of the lane per message, which is where the sequencer's time
//! went. Now a lane only waits for room in a bounded queue, and the batch size
//! follows the load (one item when idle, hundreds under load).
//!
//! Order: a conversation is sequenced by one lane, which hands its pushes over in
//! seq order; this task keeps that order within each topic's record, and puts the
//! records in line (`MsgLog::enqueue`) one flush after another, each topic's records
//! keyed by the topic (one partition), so a pusher reads them in seq order.
//!
//! Pushes are best effort, as before: a failed append costs the live push (counted
//! in `ferry_pushes_dropped_total`), and clients resync by seq. A push handed over
//! but not yet durable when the process dies is lost the same way.

use std::collections::BTreeMap;

use futures_util::StreamExt as _;
use futures_util::stream::FuturesUnordered;
use prost::Message as _;
use tokio::sync::mpsc;

use super::router::{PushPayload, PushRouter};
use super::routing::Route;
use crate::msglog::Outgoing;
use crate::proto::records::{PushRecord, push_record::Payload};

/// Pushes waiting for the task; a full queue makes lanes wait (backpressure).
const QUEUE: usize = 4096;
/// Pushes taken into one flush at most.
const FLUSH_MAX: usize = 512;
/// Flushes whose delivery reports are awaited at once; past it the task waits for
/// the oldest, so the queue above fills and the lanes slow down.
const IN_FLIGHT: usize = 64;

/// One push: its destination topics (with their users), payload and trace context.
struct Item {
    topics: Vec<(String, Vec<String>)>,
    payload: Payload,
    headers: Vec<(String, bytes::Bytes)>,
    /// Messages in it, for the dropped-push counter.
    count: u64,
}

/// A handle to the coalescing task; the task flushes what is left and ends when
/// every handle is dropped.
#[derive(Clone)]
pub(crate) struct PushBatcher {
    tx: mpsc::Sender<Item>,
}

impl PushBatcher {
    pub(crate) fn start(router: PushRouter) -> (Self, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(QUEUE);
        let task = tokio::spawn(run(router, rx));
        (Self { tx }, task)
    }

    /// Hands over one push for the users of `route`; returns once it is queued.
    pub(crate) async fn submit(
        &self,
        route: &Route,
        payload: PushPayload<'_>,
        headers: &[(String, bytes::Bytes)],
    ) {
        if route.topics.is_empty() {
            return;
        }
        let count = match &payload {
            PushPayload::Messages(m) => m.len() as u64,
            _ => 1,
        };
        let item = Item {
            topics: route
                .topics
                .iter()
                .map(|(t, u)| (t.clone(), u.clone()))
                .collect(),
            payload: payload.into_record(),
            headers: headers.to_vec(),
            count,
        };
        if self.tx.send(item).await.is_err() {
            metrics::counter!("ferry_pushes_dropped_total").increment(count);
        }
    }
}

async fn run(router: PushRouter, mut rx: mpsc::Receiver<Item>) {
    let mut in_flight = FuturesUnordered::new();
    let mut batch = Vec::with_capacity(FLUSH_MAX);
    loop {
        tokio::select! {
            n = rx.recv_many(&mut batch, FLUSH_MAX) => {
                if n == 0 {
                    break;
                }
            }
            Some(()) = in_flight.next(), if !in_flight.is_empty() => continue,
        }
        let (records, count) = coalesce(&mut batch);
        match router.log.enqueue(records).await {
            Ok(durable) => in_flight.push(async move {
                if let Err(e) = durable.await {
                    dropped(count, &e);
                }
            }),
            Err(e) => dropped(count, &e),
        }
        while in_flight.len() >= IN_FLIGHT {
            in_flight.next().await;
        }
    }
    while in_flight.next().await.is_some() {}
}

fn dropped(count: u64, e: &crate::msglog::LogError) {
    metrics::counter!("ferry_pushes_dropped_total").increment(count);
    tracing::warn!(error = %e, pushes = count, "push batch dropped");
}

/// One record per topic holding the items for it in order; drains `batch`.
fn coalesce(batch: &mut Vec<Item>) -> (Vec<Outgoing>, u64) {
    let mut per_topic: BTreeMap<String, (PushRecord, Vec<(String, bytes::Bytes)>)> =
        BTreeMap::new();
    let mut count = 0;
    for item in batch.drain(..) {
        count += item.count;
        let trace: std::collections::HashMap<String, bytes::Bytes> =
            item.headers.iter().cloned().collect();
        for (topic, users) in item.topics {
            let (rec, _) = per_topic
                .entry(topic)
                .or_insert_with(|| (PushRecord::default(), item.headers.clone()));
            rec.items.push(PushRecord {
                user_ids: users,
                payload: Some(item.payload.clone()),
                trace: trace.clone(),
                ..PushRecord::default()
            });
        }
    }
    let records = per_topic
        .into_iter()
        .map(|(topic, (rec, headers))| {
            let mut o = Outgoing::new(topic.clone(), topic, rec.encode_to_vec());
            // The record carries its first push's trace context; each item its own.
            o.headers = headers;
            o
        })
        .collect();
    (records, count)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(topics: &[(&str, &[&str])], text: &str) -> Item {
        Item {
            topics: topics
                .iter()
                .map(|(t, us)| (t.to_string(), us.iter().map(|u| u.to_string()).collect()))
                .collect(),
            payload: Payload::Notices(crate::proto::pb::NoticeDataList {
                notice_data_list: vec![crate::proto::pb::NoticeData {
                    notice_id: text.to_owned(),
                    ..Default::default()
                }],
            }),
            headers: vec![("traceparent".into(), bytes::Bytes::from(text.to_owned()))],
            count: 1,
        }
    }

    fn text(p: &PushRecord) -> String {
        match &p.payload {
            Some(Payload::Notices(n)) => n.notice_data_list[0].notice_id.clone(),
            _ => panic!("not a notice"),
        }
    }

    #[test]
    fn one_record_per_topic_holding_its_pushes_in_order() {
        let mut batch = vec![
            item(&[("push.a", &["ann"]), ("push.b", &["bob"])], "1"),
            item(&[("push.a", &["cid"])], "2"),
            item(&[("push.a", &["ann", "cid"])], "3"),
        ];
        let (records, count) = coalesce(&mut batch);
        assert!(batch.is_empty());
        assert_eq!(count, 3);
        assert_eq!(records.len(), 2);
        let decoded: Vec<(String, PushRecord)> = records
            .iter()
            .map(|o| (o.topic.clone(), PushRecord::decode(o.value.clone().unwrap()).unwrap()))
            .collect();
        let (topic, a) = &decoded[0];
        assert_eq!(topic, "push.a");
        assert_eq!(a.items.iter().map(text).collect::<Vec<_>>(), ["1", "2", "3"]);
        assert_eq!(a.items[2].user_ids, ["ann", "cid"]);
        assert_eq!(a.items[1].trace["traceparent"], "2");
        assert_eq!(records[0].headers[0].1, "1");
        let (topic, b) = &decoded[1];
        assert_eq!(topic, "push.b");
        assert_eq!(b.items.len(), 1);
        assert_eq!(b.items[0].user_ids, ["bob"]);
    }
}
