//! The routing hook: for a set of users, which push topics (this region's pods, or
//! other regions' push topics) receive their pushes, and who counts as offline (no
//! online device anywhere: their stored messages are handed off for mobile push).
//!
//! This is the one place that decision is made. The sequencer asks it once per
//! record, before the write, and uses the same answer for the live push and for the
//! offline hand-off, so a message is either pushed live to a user or handed off for
//! them, never judged twice with two different views of presence. Notices and
//! disconnects are routed through it too.
//!
//! The default, [`PresenceRouting`], is presence based: the pods that published
//! presence for the user within the TTL, plus this pod when the user has a local
//! socket (so local users are reached before the presence topic comes round). A
//! deployment with its own placement (several regions, a directory service) writes
//! another implementation and passes it to `PushRouter` in `app.rs`; the README
//! ("Routing pushes across regions") shows a two-region one.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;

use crate::connections::registry::Registry;
use crate::msglog::Topics;
use crate::presence::PresenceView;

/// Where one batch of users' pushes goes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Route {
    /// Push topic -> the users whose pushes are appended there, in the order asked.
    pub(crate) topics: BTreeMap<String, Vec<String>>,
    /// Users with no online device anywhere, in the order asked: they get no live
    /// push, and stored messages with `options.offlinePush` are handed off for them.
    pub(crate) offline: Vec<String>,
}

/// Decides where users' pushes go. Implementations must be cheap (called for every
/// sequenced record) and must not fail: a user that cannot be placed counts as
/// offline, which only costs a mobile push, while a wrong "online" loses it.
#[async_trait]
pub(crate) trait PushRouting: Send + Sync + 'static {
    /// Routes `users` (no duplicates). Every user appears either under one or more
    /// topics or in `offline`, never both and never neither.
    async fn route(&self, users: &[String]) -> Route;
}

/// Today's routing: presence within one region.
pub(crate) struct PresenceRouting {
    pub(crate) topics: Topics,
    pub(crate) presence: Arc<PresenceView>,
    /// This pod and its sockets, when this process is a gateway.
    pub(crate) local: Option<(String, Arc<Registry>)>,
}

#[async_trait]
impl PushRouting for PresenceRouting {
    /// The pods that published presence for each user, plus this pod when the user has
    /// a local socket. Pod names are borrowed from the presence view and each pod's
    /// topic name is made once per batch, not once per recipient.
    async fn route(&self, users: &[String]) -> Route {
        let mut offline = Vec::new();
        // pod -> users, in the order asked.
        let mut by_pod: Vec<(String, Vec<String>)> = Vec::new();
        let mut add = |pod: &str, user: &String| match by_pod.iter_mut().find(|(p, _)| p == pod) {
            Some((_, list)) => list.push(user.clone()),
            None => by_pod.push((pod.to_owned(), vec![user.clone()])),
        };
        self.presence.each_pods(users, |user, pods| {
            let mut any = false;
            let mut here = false;
            for pod in pods {
                any = true;
                here |= self.local.as_ref().is_some_and(|(local, _)| local == pod);
                add(pod, user);
            }
            if let Some((pod, registry)) = &self.local
                && !here
                && registry.has(user)
            {
                any = true;
                add(pod, user);
            }
            if !any {
                offline.push(user.clone());
            }
        });
        Route {
            topics: by_pod
                .into_iter()
                .map(|(pod, users)| (self.topics.push(&pod), users))
                .collect(),
            offline,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::msglog::LogRecord;
    use crate::proto::records::{Device, PresenceRecord};
    use prost::Message as _;

    fn online(view: &PresenceView, user: &str, pod: &str) {
        let value = PresenceRecord {
            user_id: user.into(),
            pod: pod.into(),
            devices: vec![Device::default()],
            refreshed_at_ms: crate::domain::now_ms(),
            incarnation: 1,
        }
        .encode_to_vec();
        view.apply(&LogRecord {
            topic: "presence".into(),
            partition: 0,
            offset: 0,
            // The presence topic's key, `user|pod`.
            key: format!("{user}|{pod}").into(),
            value: Some(value.into()),
            timestamp_ms: 0,
            headers: Vec::new(),
        });
    }

    #[tokio::test]
    async fn presence_routing_sends_online_users_to_their_pods_and_the_rest_offline() {
        let presence = PresenceView::new(90);
        online(&presence, "ann", "pod-a");
        online(&presence, "bob", "pod-a");
        online(&presence, "bob", "pod-b");
        let r = PresenceRouting {
            topics: Topics::new("p."),
            presence,
            local: None,
        };
        let users: Vec<String> = ["ann", "bob", "cid"].map(String::from).into();
        let route = r.route(&users).await;
        assert_eq!(route.topics["p.push.pod-a"], ["ann", "bob"]);
        assert_eq!(route.topics["p.push.pod-b"], ["bob"]);
        assert_eq!(route.offline, ["cid"]);
    }
}
