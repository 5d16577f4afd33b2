//! What this pod publishes: its local view of a user on every connect and
//! disconnect, and a heartbeat of its own before its users' entries go stale on
//! the other pods (one record per pod per refresh, whatever its number of users).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prost::Message as _;
use tokio_util::sync::CancellationToken;

use super::view::{heartbeat_key, key};
use crate::connections::registry::Registry;
use crate::domain::now_ms;
use crate::msglog::{MsgLog, Outgoing, Topics};
use crate::proto::records::{Device, PodHeartbeat, PresenceRecord};

/// Users whose failed updates are published again in one append when refreshing.
const REFRESH_BATCH: usize = 500;

/// Publishes this pod's sockets to the presence topic.
#[derive(Clone)]
pub(crate) struct Publisher {
    pub(crate) log: Arc<dyn MsgLog>,
    pub(crate) topics: Topics,
    pub(crate) pod: String,
    /// This process among the pod's lives: entries of an earlier one are not kept
    /// alive by this one's heartbeats.
    pub(crate) incarnation: u64,
    pub(crate) registry: Arc<Registry>,
    /// Users whose last update did not reach the log: published again at the next
    /// refresh, since the heartbeat would otherwise keep a stale entry alive.
    pub(crate) failed: Arc<Mutex<HashSet<String>>>,
}

/// A new process's incarnation: random and never 0 (entries written before
/// incarnations existed carry 0, and no heartbeat keeps them alive).
pub(crate) fn new_incarnation() -> u64 {
    rand::random::<u64>().max(1)
}

impl Publisher {
    /// Publishes this pod's current view of `user` (a tombstone when none is left).
    pub(crate) async fn publish(&self, user: &str) {
        if let Err(e) = self.log.append(vec![self.current(user)]).await {
            tracing::warn!(error = %e, user, "presence update failed");
            self.failed.lock().unwrap().insert(user.to_owned());
        }
    }

    /// This pod's record of `user` as the registry holds it now.
    fn current(&self, user: &str) -> Outgoing {
        let devices = self
            .registry
            .conns(user)
            .into_iter()
            .map(|c| Device {
                platform: c.platform.clone(),
                device_id: c.device_id.clone(),
                conn_id: c.conn_id.clone(),
            })
            .collect();
        self.record(user, devices)
    }

    /// The presence record this pod publishes for one of its users.
    fn record(&self, user: &str, devices: Vec<Device>) -> Outgoing {
        let k = key(user, &self.pod);
        if devices.is_empty() {
            return Outgoing::tombstone(self.topics.presence(), k);
        }
        let rec = PresenceRecord {
            user_id: user.to_owned(),
            pod: self.pod.clone(),
            devices,
            refreshed_at_ms: now_ms(),
            incarnation: self.incarnation,
        };
        Outgoing::new(self.topics.presence(), k, rec.encode_to_vec())
    }

    /// This pod's heartbeat: every entry it published in this incarnation is fresh
    /// on the other pods while it is.
    fn heartbeat(&self) -> Outgoing {
        let beat = PodHeartbeat {
            pod: self.pod.clone(),
            incarnation: self.incarnation,
            refreshed_at_ms: now_ms(),
        };
        Outgoing::new(
            self.topics.presence(),
            heartbeat_key(&self.pod),
            beat.encode_to_vec(),
        )
    }

    /// Publishes the heartbeat at once and then a third of the TTL apart, with the
    /// users whose updates failed since the last one. Per-user records were
    /// re-published here before: at 15k users that was 15k appends, read back by
    /// every pod, per refresh.
    pub(crate) async fn refresh(
        self,
        ttl_secs: u64,
        stop: CancellationToken,
    ) -> anyhow::Result<()> {
        let every = Duration::from_secs((ttl_secs / 3).max(1));
        loop {
            if let Err(e) = self.log.append(vec![self.heartbeat()]).await {
                tracing::warn!(error = %e, "presence heartbeat failed");
            }
            self.retry_failed().await;
            tokio::select! {
                _ = stop.cancelled() => return Ok(()),
                _ = tokio::time::sleep(every) => {}
            }
        }
    }

    /// Publishes again, as the registry holds them now, the users whose update failed.
    async fn retry_failed(&self) {
        let users: Vec<String> = self.failed.lock().unwrap().drain().collect();
        for batch in users.chunks(REFRESH_BATCH) {
            let recs = batch.iter().map(|u| self.current(u)).collect();
            if let Err(e) = self.log.append(recs).await {
                tracing::warn!(error = %e, users = batch.len(), "presence retry failed");
                self.failed.lock().unwrap().extend(batch.iter().cloned());
            }
        }
    }
}
