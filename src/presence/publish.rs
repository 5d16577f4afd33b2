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

/// Users whose presence records go to the log in one append when refreshing.
const REFRESH_BATCH: usize = 500;

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
        if let Err(e) = self.log.append(vec![self.current(user)]).await {
            tracing::warn!(error = %e, user, "presence update failed");
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
        record(&self.topics, &self.pod, user, devices)
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
                    // One append per batch, not per user: at 15k users a pod otherwise
                    // spends its idle time in 15k separate log writes.
                    let users = self.registry.users();
                    for batch in users.chunks(REFRESH_BATCH) {
                        let recs = batch.iter().map(|u| self.current(u)).collect();
                        if let Err(e) = self.log.append(recs).await {
                            tracing::warn!(error = %e, users = batch.len(), "presence refresh failed");
                        }
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
