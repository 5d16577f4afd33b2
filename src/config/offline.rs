//! The `[offline]` section: offline-push hand-off, its size bounds, and the
//! optional forwarder role that posts the events to the app's push service.

use serde::{Deserialize, Serialize};

use super::{Invalid, invalid};

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct OfflineConfig {
    /// Hand off stored messages with `options.offlinePush` for recipients with no
    /// online device to the `<prefix>offline` topic.
    pub(crate) enabled: bool,
    /// Largest `offlinePush.title` / `.content` / `.payload` a message may carry,
    /// bytes (checked before the message is appended).
    pub(crate) max_title_bytes: usize,
    pub(crate) max_content_bytes: usize,
    pub(crate) max_payload_bytes: usize,
    /// Largest offline fan-out one request may cause: recipients × offline-push bytes
    /// of its messages with `offlinePush`, summed over its conversations.
    pub(crate) max_fanout_bytes: usize,
    pub(crate) forwarder: ForwarderConfig,
}

impl Default for OfflineConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            max_title_bytes: 512,
            max_content_bytes: 4096,
            max_payload_bytes: 4096,
            max_fanout_bytes: 8 << 20,
            forwarder: ForwarderConfig::default(),
        }
    }
}

/// The optional forwarder role: posts offline events to the app's push service.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct ForwarderConfig {
    /// Endpoint the events are POSTed to (https://…; http:// only for local set-ups).
    /// None: the forwarder role does not run.
    pub(crate) url: Option<String>,
    /// Sent as `Authorization: Bearer …` when set.
    pub(crate) bearer_token: Option<String>,
    /// Most events per request.
    pub(crate) batch_max: usize,
    /// How long a batch waits for more events after its first, ms.
    pub(crate) batch_wait_ms: u64,
    /// Timeout of one request, ms.
    pub(crate) timeout_ms: u64,
    /// First wait after a failed request, ms; doubled per failure up to `retry_max_ms`.
    pub(crate) retry_initial_ms: u64,
    pub(crate) retry_max_ms: u64,
    /// Largest request body posted, bytes (JSON as sent): a batch is cut before it;
    /// the push service must accept bodies of this size.
    pub(crate) max_body_bytes: usize,
    /// Times an event refused for what it is (a 4xx answer other than 408 and 429)
    /// is posted before it goes to the offline dead-letter topic.
    pub(crate) max_refusals: u32,
}

impl Default for ForwarderConfig {
    fn default() -> Self {
        Self {
            url: None,
            bearer_token: None,
            batch_max: 100,
            batch_wait_ms: 100,
            timeout_ms: 5000,
            retry_initial_ms: 200,
            retry_max_ms: 30_000,
            max_body_bytes: 1 << 20,
            max_refusals: 3,
        }
    }
}

impl OfflineConfig {
    pub(super) fn validate(&self, bad: &mut Vec<Invalid>) {
        let fw = &self.forwarder;
        if let Some(url) = &fw.url
            && !(url.starts_with("https://") || url.starts_with("http://"))
        {
            bad.push(invalid(
                "offline.forwarder.url",
                format!("{url:?} must be an https:// (or, locally, http://) URL"),
            ));
        }
        for (key, v) in [
            ("offline.forwarder.batch_max", fw.batch_max as u64),
            ("offline.forwarder.timeout_ms", fw.timeout_ms),
            ("offline.forwarder.retry_initial_ms", fw.retry_initial_ms),
        ] {
            if v == 0 {
                bad.push(invalid(key, "must be greater than 0"));
            }
        }
        if fw.batch_max > 10_000 {
            bad.push(invalid("offline.forwarder.batch_max", "at most 10000"));
        }
        if fw.retry_max_ms < fw.retry_initial_ms {
            bad.push(invalid(
                "offline.forwarder.retry_max_ms",
                "must be at least offline.forwarder.retry_initial_ms",
            ));
        }
    }
}
