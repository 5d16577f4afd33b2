//! The forwarder's request bodies, bounded in bytes as sent: `{"events":[…]}` with
//! each event as JSON (escapes counted, a control character is six bytes), at most
//! `offline.forwarder.max_body_bytes` and `batch_max` events. An event too large to
//! be sent even alone never enters a batch: it is set aside (dead letter) so it
//! cannot hold up the events behind it.

use crate::msglog::LogRecord;

use super::handoff;

/// `{"events":[` and `]}`.
const WRAPPER_BYTES: usize = 13;

/// One batch: the records it covers (committed together once delivered, including
/// those without an event), and the events to post.
pub(crate) struct Batch {
    max_bytes: usize,
    max_events: usize,
    pub(crate) records: Vec<LogRecord>,
    /// (index in `records`, the event as JSON).
    pub(crate) events: Vec<(usize, String)>,
    bytes: usize,
}

/// What `Batch::add` did with a record.
pub(crate) enum Added {
    /// In the batch (with its event, or without one: undecodable, skipped).
    Yes,
    /// Would take the body over its bounds: post this batch first, then start the
    /// next one with it.
    Full(LogRecord),
    /// Larger than a body may be even alone (its JSON size): to set aside.
    TooLarge(LogRecord, usize),
}

impl Batch {
    pub(crate) fn new(max_bytes: usize, max_events: usize) -> Self {
        Self {
            max_bytes,
            max_events,
            records: Vec::new(),
            events: Vec::new(),
            bytes: WRAPPER_BYTES,
        }
    }

    /// Whether no more event may join.
    pub(crate) fn is_full(&self) -> bool {
        self.events.len() >= self.max_events
    }

    pub(crate) fn add(&mut self, rec: LogRecord) -> Added {
        let Some(e) = handoff::decode(&rec) else {
            tracing::warn!(
                partition = rec.partition,
                offset = rec.offset,
                "undecodable offline record skipped"
            );
            self.records.push(rec);
            return Added::Yes;
        };
        let json = handoff::json(&e).to_string();
        if WRAPPER_BYTES + json.len() > self.max_bytes {
            let n = json.len();
            return Added::TooLarge(rec, n);
        }
        let comma = usize::from(!self.events.is_empty());
        if self.is_full() || self.bytes + comma + json.len() > self.max_bytes {
            return Added::Full(rec);
        }
        self.bytes += comma + json.len();
        self.events.push((self.records.len(), json));
        self.records.push(rec);
        Added::Yes
    }

    /// A record that joins the batch without an event (set aside already), so that
    /// it is committed with the others, in order.
    pub(crate) fn skip(&mut self, rec: LogRecord) {
        self.records.push(rec);
    }
}

/// The body for `events` (JSON each).
pub(crate) fn body<'a>(events: impl IntoIterator<Item = &'a str>) -> String {
    let mut out = String::from("{\"events\":[");
    for (i, e) in events.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(e);
    }
    out.push_str("]}");
    out
}

/// Whether an answer refuses the request for what it holds, so that posting it
/// again as it is cannot succeed: a 4xx other than those that say "later" (408,
/// 429) or "not this endpoint or not these credentials" (401, 403, 404: a
/// configuration to fix, after which every event goes through).
pub(crate) fn refuses_content(status: reqwest::StatusCode) -> bool {
    status.is_client_error() && ![401, 403, 404, 408, 429].contains(&status.as_u16())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::msglog::Topics;
    use crate::proto::records::OfflinePush;

    fn rec(user: &str, content: &str, offset: i64) -> LogRecord {
        let e = OfflinePush {
            user_id: user.into(),
            server_msg_id: format!("single:a-b-{offset}"),
            content: content.into(),
            ..OfflinePush::default()
        };
        let o = handoff::record(&Topics::new("t."), &e);
        let mut r = LogRecord::at(0, offset);
        r.value = o.value;
        r
    }

    #[test]
    fn a_body_never_exceeds_its_bytes_with_escapes_counted() {
        let max = 2000;
        let mut b = Batch::new(max, 100);
        // Control characters: six bytes each as JSON.
        let escaped = "\u{1}".repeat(150);
        let mut cut = None;
        for i in 0..10 {
            match b.add(rec("bob", &escaped, i)) {
                Added::Yes => {}
                Added::Full(r) => {
                    cut = Some(r.offset);
                    break;
                }
                Added::TooLarge(..) => panic!("fits alone"),
            }
        }
        assert!(cut.is_some(), "the batch was cut");
        let body = body(b.events.iter().map(|(_, e)| e.as_str()));
        assert!(body.len() <= max, "{}", body.len());
        assert_eq!(body.len(), b.bytes);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["events"].as_array().unwrap().len(), b.events.len());
    }

    #[test]
    fn an_event_too_large_alone_is_set_aside_and_others_still_batch() {
        let mut b = Batch::new(1000, 100);
        assert!(matches!(b.add(rec("ann", "x", 1)), Added::Yes));
        assert!(
            matches!(b.add(rec("bob", &"y".repeat(2000), 2)), Added::TooLarge(r, n) if r.offset == 2 && n > 2000)
        );
        assert!(matches!(b.add(rec("cid", "z", 3)), Added::Yes));
        let users: Vec<String> = b
            .events
            .iter()
            .map(|(_, e)| {
                serde_json::from_str::<serde_json::Value>(e).unwrap()["userId"].to_string()
            })
            .collect();
        assert_eq!(users, ["\"ann\"", "\"cid\""]);
    }

    #[test]
    fn only_refusals_of_the_content_are_final() {
        use reqwest::StatusCode as S;
        for s in [
            S::PAYLOAD_TOO_LARGE,
            S::BAD_REQUEST,
            S::UNPROCESSABLE_ENTITY,
        ] {
            assert!(refuses_content(s), "{s}");
        }
        for s in [
            S::TOO_MANY_REQUESTS,
            S::REQUEST_TIMEOUT,
            S::UNAUTHORIZED,
            S::FORBIDDEN,
            S::NOT_FOUND,
            S::INTERNAL_SERVER_ERROR,
            S::BAD_GATEWAY,
        ] {
            assert!(!refuses_content(s), "{s}");
        }
    }
}
