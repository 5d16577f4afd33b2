//! What this pod publishes: its local view of a user, on every connect and
//! disconnect and again before it goes stale on the other pods.

use std::sync::Arc;
use std::time::Duration;

use prost::Message as _;
use tokio_util::sync::CancellationToken;

use super::view::key;
use crate::connections::registry::Registry;
use crate::domain::now_ms;
use crate::msglog::{MsgLog, Outgoing, Topics};
use crate::proto::records::{Device, PresenceRecord};

/// Publishes this pod's sockets to the presence topic.
#[derive(Clone)]
pub(crate) struct Publisher {
    pub(crate) log: Arc<dyn MsgLog>,
    pub(crate) topics: Topics,
    pub(crate) pod: String,
    pub(crate) registry: Arc<Registry>,
}

impl Publisher {
    /// Publishes this pod's current view of `user` (a tombstone when none is left).
    pub(crate) async fn publish(&self, user: &str) {
        let devices = self
            .registry
            .conns(user)
            .into_iter()
            .map(|c| Device {
                platform: c.platform,
                device_id: c.device_id,
                conn_id: c.conn_id,
            })
            .collect();
        let rec = record(&self.topics, &self.pod, user, devices);
        if let Err(e) = self.log.append(vec![rec]).await {
            tracing::warn!(error = %e, user, "presence update failed");
        }
    }

    /// Re-publishes every local user a third of the TTL apart, so the entries stay
    /// fresh on the other pods while the sockets live.
    pub(crate) async fn refresh(
        self,
        ttl_secs: u64,
        stop: CancellationToken,
    ) -> anyhow::Result<()> {
        let every = Duration::from_secs((ttl_secs / 3).max(1));
        loop {
            tokio::select! {
                _ = stop.cancelled() => return Ok(()),
                _ = tokio::time::sleep(every) => {
                    for user in self.registry.users() {
                        self.publish(&user).await;
                    }
                }
            }
        }
    }
}

/// The presence record a pod publishes for one of its users.
fn record(topics: &Topics, pod: &str, user: &str, devices: Vec<Device>) -> Outgoing {
    let k = key(user, pod);
    if devices.is_empty() {
        return Outgoing::tombstone(topics.presence(), k);
    }
    let rec = PresenceRecord {
        user_id: user.to_owned(),
        pod: pod.to_owned(),
        devices,
        refreshed_at_ms: now_ms(),
    };
    Outgoing::new(topics.presence(), k, rec.encode_to_vec())
}
