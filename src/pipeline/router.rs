//! Turns "deliver this to these users" into one record per push topic that holds any
//! of them: never to every pod. Where each user goes is the routing hook's decision
//! (`routing.rs`).

use std::sync::Arc;

use prost::Message as _;

use super::routing::{PushRouting, Route};
use crate::domain::{Message, Notice};
use crate::msglog::{LogError, MsgLog, Outgoing};
use crate::proto::records::{Disconnect, PushRecord, push_record::Payload};
use crate::proto::{msg_list, notice_list};

#[derive(Clone)]
pub(crate) struct PushRouter {
    pub(crate) log: Arc<dyn MsgLog>,
    pub(crate) routing: Arc<dyn PushRouting>,
    /// `pipeline.group_pushes`: whether `coalesce` groups a topic's pushes.
    pub(crate) group: bool,
    /// The largest push record value (`Budget::push_max`): `coalesce` never builds
    /// a larger one (`push_split.rs`).
    pub(crate) max_record: usize,
}

pub(crate) enum PushPayload<'a> {
    Messages(&'a [Message]),
    Notices(&'a [Notice]),
    Disconnect(Disconnect),
}

impl PushRouter {
    /// Where `users`' pushes go now, and who is offline.
    pub(crate) async fn route(&self, users: &[String]) -> Route {
        self.routing.route(users).await
    }

    /// Routes `users` and appends one push record per push topic.
    pub(crate) async fn push(
        &self,
        users: &[String],
        payload: PushPayload<'_>,
        headers: &[(String, bytes::Bytes)],
    ) -> Result<(), LogError> {
        let route = self.route(users).await;
        self.push_routed(&route, payload, headers).await
    }

    /// Appends one push record per topic of an already decided `route`.
    pub(crate) async fn push_routed(
        &self,
        route: &Route,
        payload: PushPayload<'_>,
        headers: &[(String, bytes::Bytes)],
    ) -> Result<(), LogError> {
        let records = Self::records(route, payload, headers);
        if records.is_empty() {
            return Ok(());
        }
        self.log.append(records).await
    }

    /// The push records of an already decided `route`, one per topic.
    pub(crate) fn records(
        route: &Route,
        payload: PushPayload<'_>,
        headers: &[(String, bytes::Bytes)],
    ) -> Vec<Outgoing> {
        Self::one_each(Self::items(route, payload, headers))
    }

    /// What `records` would append, as (push topic, record) with `headers` in the
    /// record's `trace`, for a caller that puts several routes' pushes together
    /// (`coalesce`).
    pub(crate) fn items(
        route: &Route,
        payload: PushPayload<'_>,
        headers: &[(String, bytes::Bytes)],
    ) -> Vec<(String, PushRecord)> {
        if route.topics.is_empty() {
            return Vec::new();
        }
        let payload = match payload {
            PushPayload::Messages(m) => Payload::Msgs(msg_list(m)),
            PushPayload::Notices(n) => Payload::Notices(notice_list(n)),
            PushPayload::Disconnect(d) => Payload::Disconnect(d),
        };
        let trace: std::collections::HashMap<String, bytes::Bytes> =
            headers.iter().cloned().collect();
        route
            .topics
            .iter()
            .map(|(topic, user_ids)| {
                let rec = PushRecord {
                    user_ids: user_ids.clone(),
                    payload: Some(payload.clone()),
                    items: Vec::new(),
                    trace: trace.clone(),
                };
                (topic.clone(), rec)
            })
            .collect()
    }

    /// The records for `items`: grouped per push topic (`grouped`), or one plain
    /// record each while `pipeline.group_pushes` is off.
    pub(crate) fn coalesce(&self, items: Vec<(String, PushRecord)>) -> Vec<Outgoing> {
        let items = super::push_split::fitting(items, self.max_record);
        if self.group {
            super::push_split::by_size(items, self.max_record)
                .into_iter()
                .flat_map(Self::grouped)
                .collect()
        } else {
            Self::one_each(items)
        }
    }

    /// One plain record per item, as pods without grouped records read them.
    fn one_each(items: Vec<(String, PushRecord)>) -> Vec<Outgoing> {
        items
            .into_iter()
            .map(|(topic, rec)| Self::record(topic, rec))
            .collect()
    }

    /// One push record per push topic for all of `items` (the caller keeps each
    /// topic's share within the size budget, `coalesce`): a topic with one item gets
    /// it as a plain record, with several a record whose `items` keeps their order
    /// (the pusher delivers them in it).
    pub(super) fn grouped(items: Vec<(String, PushRecord)>) -> Vec<Outgoing> {
        let mut topics: Vec<(String, Vec<PushRecord>)> = Vec::new();
        for (topic, rec) in items {
            match topics.iter_mut().find(|(t, _)| *t == topic) {
                Some((_, recs)) => recs.push(rec),
                None => topics.push((topic, vec![rec])),
            }
        }
        topics
            .into_iter()
            .map(|(topic, mut recs)| {
                if recs.len() == 1 {
                    let rec = recs.pop().expect("one item");
                    return Self::record(topic, rec);
                }
                let rec = PushRecord {
                    items: recs,
                    ..PushRecord::default()
                };
                Self::record(topic, rec)
            })
            .collect()
    }

    /// A push record as appended: an item's trace goes into the record's headers.
    fn record(topic: String, mut rec: PushRecord) -> Outgoing {
        let headers: Vec<(String, bytes::Bytes)> =
            std::mem::take(&mut rec.trace).into_iter().collect();
        let mut o = Outgoing::new(topic.clone(), topic, rec.encode_to_vec());
        o.headers = headers;
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(topic: &str, user: &str, trace: &str) -> (String, PushRecord) {
        let route = Route {
            topics: [(topic.to_owned(), vec![user.to_owned()])].into(),
            offline: Vec::new(),
        };
        let headers = [(
            "traceparent".to_owned(),
            bytes::Bytes::from(trace.to_owned()),
        )];
        PushRouter::items(&route, PushPayload::Messages(&[]), &headers)
            .pop()
            .unwrap()
    }

    #[test]
    fn a_steps_pushes_are_one_record_per_topic_in_order_each_with_its_trace() {
        let out = PushRouter::grouped(vec![
            item("push.a", "u1", "t1"),
            item("push.b", "u2", "t2"),
            item("push.a", "u3", "t3"),
        ]);
        assert_eq!(out.len(), 2);
        let a = PushRecord::decode(out[0].value.clone().unwrap()).unwrap();
        assert_eq!(out[0].topic, "push.a");
        let users: Vec<&str> = a.items.iter().map(|i| i.user_ids[0].as_str()).collect();
        assert_eq!(users, ["u1", "u3"]);
        assert_eq!(a.items[1].trace["traceparent"], "t3");
        // A topic with one item gets it as a plain record, its trace in the headers.
        let b = PushRecord::decode(out[1].value.clone().unwrap()).unwrap();
        assert_eq!(
            (b.user_ids.as_slice(), b.items.len()),
            (["u2".to_owned()].as_slice(), 0)
        );
        assert_eq!(
            out[1].headers,
            [("traceparent".to_owned(), bytes::Bytes::from("t2"))]
        );
    }

    #[test]
    fn with_grouping_off_every_push_is_a_plain_record_as_older_pods_read_them() {
        let out =
            PushRouter::one_each(vec![item("push.a", "u1", "t1"), item("push.a", "u3", "t3")]);
        assert_eq!(out.len(), 2);
        for (o, user) in out.iter().zip(["u1", "u3"]) {
            let r = PushRecord::decode(o.value.clone().unwrap()).unwrap();
            assert_eq!(
                (r.user_ids.as_slice(), r.items.len()),
                ([user.to_owned()].as_slice(), 0)
            );
        }
    }
}
