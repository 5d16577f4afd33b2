//! The offline hand-off encoding, fuzzed: arbitrary bytes become a message's
//! offline-push fields (control characters, quotes, invalid UTF-8 made lossy) and
//! are handed off, encoded, read back and batched as the forwarder does; arbitrary
//! bytes are also read as an offline record (a garbage record on the topic).

use crate::budget::{EVENT_FIXED_BYTES, JSON_ESCAPE_FACTOR};
use crate::domain::{Message, MsgOptions, OfflinePush};
use crate::msglog::{LogRecord, Topics};
use crate::pipeline::handoff;
use crate::pipeline::offline_batch::{Added, Batch, body};

/// Invariants: an event reads back as handed off (record and JSON, every byte of
/// every field); its JSON is within the bound `budget.rs` derives the forwarder's
/// body limit from; a batch body never exceeds its byte limit and stays valid JSON
/// holding exactly its events; garbage never panics.
pub fn offline_handoff(data: &[u8]) {
    let topics = Topics::new("f.");
    // Garbage read as an offline record: decoded or skipped, never a panic.
    let mut junk = record(0);
    junk.value = Some(bytes::Bytes::copy_from_slice(data));
    let _ = handoff::decode(&junk);

    let text = String::from_utf8_lossy(data);
    let mut parts = text.splitn(3, '\u{0}');
    let push = OfflinePush {
        title: parts.next().unwrap_or_default().to_owned(),
        content: parts.next().unwrap_or_default().to_owned(),
        payload: parts.next().unwrap_or_default().to_owned(),
    };
    let fields = push.title.len() + push.content.len() + push.payload.len();
    let msg = Message {
        conv_id: "single:fuzz_a-fuzz_b".into(),
        server_msg_id: "single:fuzz_a-fuzz_b-7".into(),
        sender_id: "fuzz_a".into(),
        seq: 7,
        options: MsgOptions {
            offline_push: true,
            ..MsgOptions::stored()
        },
        offline_push: Some(push.clone()),
        ..Message::default()
    };
    let offline = ["fuzz_b".to_owned(), "fuzz_c".to_owned()];
    let events = handoff::events("fuzz_a", std::slice::from_ref(&msg), &offline);
    assert_eq!(events.len(), 2, "one event per offline recipient");
    let mut batch = Batch::new(4096, 100);
    let mut posted = 0;
    for (i, e) in events.iter().enumerate() {
        let o = handoff::record(&topics, e);
        let mut rec = record(i as i64);
        rec.key = o.key.clone();
        rec.value = o.value.clone();
        rec.headers = o.headers.clone();
        let back = handoff::decode(&rec).expect("a handed-off record decodes");
        assert_eq!(&back, e, "the record reads back as handed off");
        let json = handoff::json(e).to_string();
        assert!(
            json.len() <= fields * JSON_ESCAPE_FACTOR + EVENT_FIXED_BYTES,
            "{} bytes of JSON for {fields} bytes of fields",
            json.len()
        );
        let v: serde_json::Value = serde_json::from_str(&json).expect("valid JSON");
        for (k, want) in [
            ("title", &push.title),
            ("content", &push.content),
            ("payload", &push.payload),
        ] {
            assert_eq!(v[k].as_str(), Some(want.as_str()), "{k} survives JSON");
        }
        match batch.add(rec) {
            Added::Yes => posted += 1,
            Added::Full(_) | Added::TooLarge(..) => {}
        }
    }
    let body = body(batch.events.iter().map(|(_, e)| e.as_str()));
    assert!(body.len() <= 4096, "a body of {} bytes", body.len());
    let v: serde_json::Value = serde_json::from_str(&body).expect("a body is valid JSON");
    assert_eq!(v["events"].as_array().map(Vec::len), Some(posted));
}

fn record(offset: i64) -> LogRecord {
    LogRecord {
        topic: "f.offline".into(),
        partition: 0,
        offset,
        key: bytes::Bytes::new(),
        value: None,
        timestamp_ms: 0,
        headers: Vec::new(),
    }
}
