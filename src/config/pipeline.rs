//! The `[pipeline]` section: the roles behind the sockets (delay tiers, notices,
//! presence, push grouping, the stuck-lane alarm).

use serde::{Deserialize, Serialize};

use super::{Invalid, in_range, invalid};

/// The default delay ladder, seconds (`pipeline.delay_tiers_secs`).
pub(crate) const DEFAULT_TIERS_SECS: [u64; 15] = [
    1, 5, 10, 30, 60, 300, 600, 1800, 3600, 7200, 21600, 43200, 86400, 172800, 345600,
];

/// The longest delay a client may ask for (`deliverAfter`): ten days. A bound the
/// gateway checks and the delay role honours, so it lives here, below both.
pub(crate) const MAX_DELAY_SECS: i32 = 864_000;

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct PipelineConfig {
    /// Delay ladder, seconds, ascending.
    pub(crate) delay_tiers_secs: Vec<u64>,
    /// Pending notices are pushed again at this interval until acked.
    pub(crate) notice_repush_secs: u64,
    /// A pod's presence not refreshed for this long is stale and ignored.
    pub(crate) presence_ttl_secs: u64,
    /// The sequencer appends a wave step's pushes to one pod as one record. Pods of
    /// versions without grouped push records deliver only plain ones: turn this off
    /// while such pods still run (a rolling upgrade), on again once all are upgraded.
    pub(crate) group_pushes: bool,
    /// A sequencer record failing (and retried) for longer than this makes `/readyz`
    /// answer 503: the pod is stuck, not merely slow.
    pub(crate) stuck_lane_secs: u64,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        Self {
            delay_tiers_secs: DEFAULT_TIERS_SECS.to_vec(),
            notice_repush_secs: 30,
            presence_ttl_secs: 90,
            group_pushes: true,
            stuck_lane_secs: 30,
        }
    }
}

impl PipelineConfig {
    pub(super) fn validate(&self, bad: &mut Vec<Invalid>) {
        let tiers = &self.delay_tiers_secs;
        if tiers.is_empty() || tiers[0] == 0 || tiers.windows(2).any(|w| w[0] >= w[1]) {
            bad.push(invalid(
                "pipeline.delay_tiers_secs",
                "a strictly ascending list of positive seconds",
            ));
        }
        if self.notice_repush_secs == 0 {
            bad.push(invalid(
                "pipeline.notice_repush_secs",
                "must be greater than 0",
            ));
        }
        in_range(
            bad,
            "pipeline.presence_ttl_secs",
            self.presence_ttl_secs,
            3..=86_400,
        );
    }
}
