//! The size budget, end to end: the largest record the log takes
//! (`kafka.max_message_bytes`, the brokers' `message.max.bytes`) and what it leaves
//! for a client. Every record a message produces must fit it, or the record is
//! refused after the client was answered Success:
//!
//! - the inbound (or delay-tier) record of one conversation's messages of a request:
//!   the batch plus [`ENVELOPE_BYTES`];
//! - its push record: the same messages stamped (seq, serverMsgId, serverTime: at
//!   most [`stamp_bytes`] each) plus the recipients on one pod (a push that does not
//!   fit is split by recipients, `pipeline/router.rs`);
//! - its offline hand-off, one record per recipient: the offline-push fields, capped
//!   by `offline.max_*_bytes`, plus [`EVENT_FIXED_BYTES`] of ids;
//! - its dead letter: the original record with a reason and an origin; when that
//!   does not fit, only a reference to it (`pipeline/records.rs`).
//!
//! So the gateway and the server API refuse a request whose conversation part is
//! over [`Budget::batch_max`] (with its stamps counted), before anything is
//! appended, naming the limit; both backends apply the same numbers.

use crate::config::Config;

/// Room in every record for what is not the client's: key, headers (trace context,
/// dead-letter reason and origin, idempotency key), Kafka's record and batch framing,
/// the protobuf framing around the messages.
pub(crate) const ENVELOPE_BYTES: usize = 16 * 1024;

/// Upper bound of an offline event's ids and numbers (userId, convId, serverMsgId,
/// senderId, seq, times), encoded or as JSON with its keys: ids are at most 128
/// bytes of characters JSON never escapes.
pub(crate) const EVENT_FIXED_BYTES: usize = 2048;

/// JSON escapes a control character as `\u00XX`: six bytes for one.
pub(crate) const JSON_ESCAPE_FACTOR: usize = 6;

/// What the sequencer adds to a message of conversation `conv` when it stamps it:
/// the serverMsgId (`<convId>-<seq>`), the seq and serverTime with their tags.
pub(crate) fn stamp_bytes(conv: &str) -> usize {
    conv.len() + 48
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Budget {
    record_max: usize,
}

impl Default for Budget {
    fn default() -> Self {
        Self::new(1_000_000)
    }
}

impl Budget {
    pub(crate) fn new(record_max: usize) -> Self {
        Self { record_max }
    }

    pub(crate) fn of(cfg: &Config) -> Self {
        Self::new(cfg.kafka.max_message_bytes)
    }

    /// The largest record the log takes, all of it (key, value, headers).
    pub(crate) fn record_max(&self) -> usize {
        self.record_max
    }

    /// The largest one conversation's messages of one request may be: encoded as its
    /// batch, plus every message's [`stamp_bytes`].
    pub(crate) fn batch_max(&self) -> usize {
        self.record_max.saturating_sub(ENVELOPE_BYTES)
    }

    /// The largest push record's value (payload and recipients).
    pub(crate) fn push_max(&self) -> usize {
        self.batch_max()
    }
}

/// The largest offline event (JSON, every escapable byte escaped) the caps allow.
pub(crate) fn max_event_json_bytes(cfg: &Config) -> usize {
    let o = &cfg.offline;
    (o.max_title_bytes + o.max_content_bytes + o.max_payload_bytes) * JSON_ESCAPE_FACTOR
        + EVENT_FIXED_BYTES
}

/// Checks that the limits agree; `bad(key, problem)` for each that does not.
pub(crate) fn validate(cfg: &Config, bad: &mut dyn FnMut(&'static str, String)) {
    let max = cfg.kafka.max_message_bytes;
    if !(4 * ENVELOPE_BYTES..=100_000_000).contains(&max) {
        bad(
            "kafka.max_message_bytes",
            format!(
                "must be between {} and 100000000 (the brokers' message.max.bytes), not {max}",
                4 * ENVELOPE_BYTES
            ),
        );
        return;
    }
    let o = &cfg.offline;
    let fields = o.max_title_bytes + o.max_content_bytes + o.max_payload_bytes;
    if fields + EVENT_FIXED_BYTES > Budget::of(cfg).batch_max() {
        bad(
            "offline.max_content_bytes",
            format!(
                "offline.max_title_bytes + max_content_bytes + max_payload_bytes ({fields}) \
                 leave no room for the event's ids in a record of kafka.max_message_bytes ({max})"
            ),
        );
    }
    if o.max_fanout_bytes == 0 {
        bad("offline.max_fanout_bytes", "must be greater than 0".into());
    }
    let fw = &o.forwarder;
    let event = max_event_json_bytes(cfg);
    if event + 64 > fw.max_body_bytes {
        bad(
            "offline.forwarder.max_body_bytes",
            format!(
                "must hold one event as large as the offline.max_*_bytes caps allow \
                 ({event} bytes as JSON, escapes counted), plus 64"
            ),
        );
    }
    if fw.max_refusals == 0 {
        bad(
            "offline.forwarder.max_refusals",
            "must be greater than 0".into(),
        );
    }
    if cfg.pipeline.stuck_lane_secs == 0 {
        bad("pipeline.stuck_lane_secs", "must be greater than 0".into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(cfg: &Config) -> Vec<&'static str> {
        let mut out = Vec::new();
        validate(cfg, &mut |k, _| out.push(k));
        out
    }

    #[test]
    fn the_defaults_agree_and_leave_a_client_most_of_a_record() {
        let cfg = Config::default();
        assert!(problems(&cfg).is_empty(), "{:?}", problems(&cfg));
        let b = Budget::of(&cfg);
        assert_eq!(b.record_max(), 1_000_000);
        assert_eq!(b.batch_max(), 1_000_000 - ENVELOPE_BYTES);
    }

    #[test]
    fn limits_that_cannot_hold_what_they_must_are_named() {
        let mut cfg = Config::default();
        cfg.kafka.max_message_bytes = 1000;
        assert_eq!(problems(&cfg), ["kafka.max_message_bytes"]);
        let mut cfg = Config::default();
        cfg.offline.max_content_bytes = 2_000_000;
        let p = problems(&cfg);
        assert!(p.contains(&"offline.max_content_bytes"), "{p:?}");
        assert!(p.contains(&"offline.forwarder.max_body_bytes"), "{p:?}");
    }
}
