//! Turns "deliver this to these users" into one record per pod that holds any of
//! them, on that pod's push topic: never to every pod.

use std::collections::BTreeMap;
use std::sync::Arc;

use prost::Message as _;

use crate::domain::{Message, Notice};
use crate::msglog::{LogError, MsgLog, Outgoing, Topics};
use crate::presence::PresenceView;
use crate::proto::records::{Disconnect, PushRecord, push_record::Payload};
use crate::proto::{msg_list, notice_list};

#[derive(Clone)]
pub(crate) struct PushRouter {
    pub(crate) log: Arc<dyn MsgLog>,
    pub(crate) topics: Topics,
    pub(crate) presence: Arc<PresenceView>,
    /// This pod and its sockets: local users are routed here without waiting for
    /// the presence topic to come round.
    pub(crate) local: Option<(String, Arc<crate::connections::registry::Registry>)>,
}

pub(crate) enum PushPayload<'a> {
    Messages(&'a [Message]),
    Notices(&'a [Notice]),
    Disconnect(Disconnect),
}

impl PushRouter {
    /// Groups `users` by the pods that hold them and appends one push record per pod.
    pub(crate) async fn push(
        &self,
        users: &[String],
        payload: PushPayload<'_>,
        headers: &[(String, bytes::Bytes)],
    ) -> Result<(), LogError> {
        let mut by_pod: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for u in users {
            let mut pods = self.presence.pods(u);
            if let Some((pod, registry)) = &self.local
                && !pods.contains(pod)
                && !registry.conns(u).is_empty()
            {
                pods.push(pod.clone());
            }
            for pod in pods {
                by_pod.entry(pod).or_default().push(u.clone());
            }
        }
        if by_pod.is_empty() {
            return Ok(());
        }
        let payload = match payload {
            PushPayload::Messages(m) => Payload::Msgs(msg_list(m)),
            PushPayload::Notices(n) => Payload::Notices(notice_list(n)),
            PushPayload::Disconnect(d) => Payload::Disconnect(d),
        };
        let records = by_pod
            .into_iter()
            .map(|(pod, user_ids)| {
                let rec = PushRecord {
                    user_ids,
                    payload: Some(payload.clone()),
                };
                let mut o = Outgoing::new(self.topics.push(&pod), pod.clone(), rec.encode_to_vec());
                o.headers = headers.to_vec();
                o
            })
            .collect();
        self.log.append(records).await
    }
}
