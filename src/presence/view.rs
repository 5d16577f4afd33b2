//! The presence view: the presence topic followed into a map of user -> pods.
//! Entries not refreshed within the TTL are stale (a crashed pod) and ignored;
//! clients resync on reconnect.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use prost::Message as _;
use tokio_util::sync::CancellationToken;

use crate::domain::now_ms;
use crate::msglog::{LogRecord, MsgLog, Topics};
use crate::proto::records::PresenceRecord;

#[derive(Default)]
pub(crate) struct PresenceView {
    /// user -> pod -> last refresh, ms.
    users: RwLock<HashMap<String, HashMap<String, i64>>>,
    ttl_ms: i64,
}

/// The pods of one user's entry refreshed at or after `horizon` (ms).
fn fresh(pods: Option<&HashMap<String, i64>>, horizon: i64) -> impl Iterator<Item = &str> {
    pods.into_iter()
        .flatten()
        .filter(move |(_, t)| **t >= horizon)
        .map(|(p, _)| p.as_str())
}

pub(crate) fn key(user: &str, pod: &str) -> String {
    format!("{user}|{pod}")
}

impl PresenceView {
    pub(crate) fn new(ttl_secs: u64) -> Arc<Self> {
        Arc::new(Self {
            users: RwLock::default(),
            ttl_ms: ttl_secs as i64 * 1000,
        })
    }

    /// Pods that currently hold a socket of `user`.
    pub(crate) fn pods(&self, user: &str) -> Vec<String> {
        let horizon = now_ms() - self.ttl_ms;
        fresh(self.users.read().unwrap().get(user), horizon)
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
        let map = self.users.read().unwrap();
        for user in users {
            each(user, &mut fresh(map.get(user), horizon));
        }
    }

    pub(crate) fn apply(&self, rec: &LogRecord) {
        let key = String::from_utf8_lossy(&rec.key);
        let Some((user, pod)) = key.split_once('|') else {
            return;
        };
        let mut users = self.users.write().unwrap();
        match rec.value.as_deref().map(PresenceRecord::decode) {
            Some(Ok(p)) if !p.devices.is_empty() => {
                users
                    .entry(user.to_owned())
                    .or_default()
                    .insert(pod.to_owned(), p.refreshed_at_ms);
            }
            Some(Err(_)) => tracing::warn!(%key, "undecodable presence record ignored"),
            _ => {
                if let Some(pods) = users.get_mut(user) {
                    pods.remove(pod);
                    if pods.is_empty() {
                        users.remove(user);
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

    fn rec(user: &str, pod: &str, refreshed_at_ms: i64, devices: usize) -> LogRecord {
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
        }
        .encode_to_vec();
        LogRecord {
            topic: "presence".into(),
            partition: 0,
            offset: 0,
            key: key(user, pod).into(),
            value: Some(value.into()),
            timestamp_ms: 0,
            headers: Vec::new(),
        }
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
}
