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

    /// The push records of an already decided `route`, one per topic, for a caller
    /// that appends several routes' records in one call.
    pub(crate) fn records(
        route: &Route,
        payload: PushPayload<'_>,
        headers: &[(String, bytes::Bytes)],
    ) -> Vec<Outgoing> {
        if route.topics.is_empty() {
            return Vec::new();
        }
        let payload = match payload {
            PushPayload::Messages(m) => Payload::Msgs(msg_list(m)),
            PushPayload::Notices(n) => Payload::Notices(notice_list(n)),
            PushPayload::Disconnect(d) => Payload::Disconnect(d),
        };
        route
            .topics
            .iter()
            .map(|(topic, user_ids)| {
                let rec = PushRecord {
                    user_ids: user_ids.clone(),
                    payload: Some(payload.clone()),
                };
                let mut o = Outgoing::new(topic.clone(), topic.clone(), rec.encode_to_vec());
                o.headers = headers.to_vec();
                o
            })
            .collect()
    }
}
