//! How the embedded log stores a record: the `StoredRecord` protobuf, one per
//! row, keyed by topic and offset (the only partition is 0).

use prost::Message as _;

use crate::msglog::{LogRecord, Outgoing};
use crate::proto::records::{Header, StoredRecord};

pub(super) fn encode(o: &Outgoing, ts: i64) -> Vec<u8> {
    StoredRecord {
        key: o.key.clone(),
        value: o.value.clone(),
        timestamp_ms: ts,
        headers: o
            .headers
            .iter()
            .map(|(n, v)| Header {
                name: n.clone(),
                value: v.clone(),
            })
            .collect(),
    }
    .encode_to_vec()
}

pub(super) fn decode(topic: &str, offset: u64, bytes: &[u8]) -> Option<LogRecord> {
    let s = StoredRecord::decode(bytes).ok()?;
    Some(LogRecord {
        topic: topic.to_owned(),
        partition: 0,
        offset: offset as i64,
        key: s.key,
        value: s.value,
        timestamp_ms: s.timestamp_ms,
        headers: s.headers.into_iter().map(|h| (h.name, h.value)).collect(),
    })
}
