//! The presence view: the presence topic followed into a map of user -> pods.
//! A user's entry on a pod is fresh while it was published within the TTL, or while
//! that pod's heartbeat of the same incarnation is (`PodHeartbeat`: one record per
//! pod per refresh keeps all its users alive). Entries of a crashed pod go stale
//! with its heartbeats and are ignored; clients resync on reconnect.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use prost::Message as _;
use tokio_util::sync::CancellationToken;

use crate::domain::now_ms;
use crate::msglog::{LogRecord, MsgLog, Topics};
use crate::proto::records::{PodHeartbeat, PresenceRecord};

#[derive(Default)]
pub(crate) struct PresenceView {
    map: RwLock<Map>,
    ttl_ms: i64,
}

#[derive(Default)]
struct Map {
    /// user -> pod -> the entry as published.
    users: HashMap<String, HashMap<String, Seen>>,
    /// pod -> its latest heartbeat.
    pods: HashMap<String, Seen>,
}

/// When a record was published, and by which incarnation of its pod.
#[derive(Clone, Copy)]
struct Seen {
    at_ms: i64,
    incarnation: u64,
}

impl Map {
    /// The pods of `user` whose entry, or whose pod's heartbeat of the entry's
    /// incarnation, is at or after `horizon` (ms).
    fn fresh(&self, user: &str, horizon: i64) -> impl Iterator<Item = &str> {
        self.users
            .get(user)
            .into_iter()
            .flatten()
            .filter(move |(pod, seen)| {
                seen.at_ms >= horizon
                    || self.pods.get(pod.as_str()).is_some_and(|beat| {
                        beat.incarnation == seen.incarnation && beat.at_ms >= horizon
                    })
            })
            .map(|(p, _)| p.as_str())
    }
}

pub(crate) fn key(user: &str, pod: &str) -> String {
    format!("{user}|{pod}")
}

/// The key of a pod's heartbeat: an empty user, which no user id is.
pub(crate) fn heartbeat_key(pod: &str) -> String {
    key("", pod)
}

impl PresenceView {
    pub(crate) fn new(ttl_secs: u64) -> Arc<Self> {
        Arc::new(Self {
            map: RwLock::default(),
            ttl_ms: ttl_secs as i64 * 1000,
        })
    }

    /// Pods that currently hold a socket of `user`.
    pub(crate) fn pods(&self, user: &str) -> Vec<String> {
        let horizon = now_ms() - self.ttl_ms;
        self.map
            .read()
            .unwrap()
            .fresh(user, horizon)
            .map(str::to_owned)
            .collect()
    }

    /// Calls `each(user, pods)` for every user in `users`, `pods` borrowed (the
    /// fresh ones only), under one read lock: routing a fan-out copies no pod names.
    pub(crate) fn each_pods<'u>(
        &self,
        users: impl IntoIterator<Item = &'u String>,
        mut each: impl FnMut(&'u String, &mut dyn Iterator<Item = &str>),
    ) {
        let horizon = now_ms() - self.ttl_ms;
        let map = self.map.read().unwrap();
        for user in users {
            each(user, &mut map.fresh(user, horizon));
        }
    }

    pub(crate) fn apply(&self, rec: &LogRecord) {
        let key = String::from_utf8_lossy(&rec.key);
        let Some((user, pod)) = key.split_once('|') else {
            return;
        };
        let mut map = self.map.write().unwrap();
        if user.is_empty() {
            match rec.value.as_deref().map(PodHeartbeat::decode) {
                Some(Ok(b)) => {
                    let seen = Seen {
                        at_ms: b.refreshed_at_ms,
                        incarnation: b.incarnation,
                    };
                    map.pods.insert(pod.to_owned(), seen);
                }
                Some(Err(_)) => tracing::warn!(%key, "undecodable pod heartbeat ignored"),
                None => {
                    map.pods.remove(pod);
                }
            }
            return;
        }
        match rec.value.as_deref().map(PresenceRecord::decode) {
            Some(Ok(p)) if !p.devices.is_empty() => {
                let seen = Seen {
                    at_ms: p.refreshed_at_ms,
                    incarnation: p.incarnation,
                };
                map.users
                    .entry(user.to_owned())
                    .or_default()
                    .insert(pod.to_owned(), seen);
            }
            Some(Err(_)) => tracing::warn!(%key, "undecodable presence record ignored"),
            _ => {
                if let Some(pods) = map.users.get_mut(user) {
                    pods.remove(pod);
                    if pods.is_empty() {
                        map.users.remove(user);
                    }
                }
            }
        }
    }

    /// Follows the presence topic until cancelled.
    pub(crate) async fn follow(
        self: Arc<Self>,
        log: Arc<dyn MsgLog>,
        topics: Topics,
        cancel: CancellationToken,
    ) -> anyhow::Result<()> {
        let mut sub = log.read_from_start(&topics.presence()).await?;
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return Ok(()),
                rec = sub.next() => self.apply(&rec?),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::records::Device;

    fn record(key: String, value: Option<Vec<u8>>) -> LogRecord {
        LogRecord {
            topic: "presence".into(),
            partition: 0,
            offset: 0,
            key: key.into(),
            value: value.map(Into::into),
            timestamp_ms: 0,
            headers: Vec::new(),
        }
    }

    fn rec(user: &str, pod: &str, refreshed_at_ms: i64, devices: usize) -> LogRecord {
        entry(user, pod, 7, refreshed_at_ms, devices)
    }

    fn entry(user: &str, pod: &str, inc: u64, refreshed_at_ms: i64, devices: usize) -> LogRecord {
        let devices = (0..devices)
            .map(|i| Device {
                platform: "ios".into(),
                device_id: format!("d{i}"),
                conn_id: format!("c{i}"),
            })
            .collect();
        let value = PresenceRecord {
            user_id: user.into(),
            pod: pod.into(),
            devices,
            refreshed_at_ms,
            incarnation: inc,
        };
        record(key(user, pod), Some(value.encode_to_vec()))
    }

    fn beat(pod: &str, inc: u64, refreshed_at_ms: i64) -> LogRecord {
        let value = PodHeartbeat {
            pod: pod.into(),
            incarnation: inc,
            refreshed_at_ms,
        };
        record(heartbeat_key(pod), Some(value.encode_to_vec()))
    }

    #[test]
    fn a_crashed_pods_presence_expires_and_a_tombstone_removes_it() {
        let view = PresenceView::new(90);
        view.apply(&rec("bob", "pod-a", now_ms(), 1));
        view.apply(&rec("bob", "pod-dead", now_ms() - 91_000, 2));
        assert_eq!(view.pods("bob"), ["pod-a"], "stale presence is ignored");
        let mut gone = rec("bob", "pod-a", now_ms(), 0);
        gone.value = None;
        view.apply(&gone);
        assert!(view.pods("bob").is_empty());
        assert!(view.pods("nobody").is_empty());
    }

    #[test]
    fn a_pods_heartbeat_keeps_the_entries_of_its_incarnation_fresh() {
        let view = PresenceView::new(90);
        let old = now_ms() - 300_000;
        view.apply(&entry("ann", "pod-a", 1, old, 1));
        view.apply(&entry("bob", "pod-a", 2, old, 1));
        view.apply(&entry("cid", "pod-b", 3, old, 1));
        assert!(view.pods("ann").is_empty(), "no heartbeat yet: stale");
        // pod-a restarted as incarnation 2: ann's entry is the dead process's.
        view.apply(&beat("pod-a", 2, now_ms()));
        assert!(
            view.pods("ann").is_empty(),
            "another incarnation's heartbeat"
        );
        assert_eq!(view.pods("bob"), ["pod-a"]);
        // pod-b stopped beating long ago.
        view.apply(&beat("pod-b", 3, now_ms() - 91_000));
        assert!(
            view.pods("cid").is_empty(),
            "a stale heartbeat keeps nothing"
        );
        let mut seen = Vec::new();
        view.each_pods(&["bob".to_owned(), "cid".to_owned()], |u, pods| {
            seen.push((u.clone(), pods.map(str::to_owned).collect::<Vec<_>>()))
        });
        assert_eq!(
            seen,
            [
                ("bob".into(), vec!["pod-a".to_owned()]),
                ("cid".into(), vec![])
            ]
        );
        // A heartbeat's tombstone (the pod's key compacted away) ends it too.
        view.apply(&record(heartbeat_key("pod-a"), None));
        assert!(view.pods("bob").is_empty());
    }
}
