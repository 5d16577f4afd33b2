//! How the embedded store keeps a conversation's seq row (a `ConvRow` protobuf) and a
//! message (its `MsgData`).

use prost::Message as _;

use crate::domain::Message;
use crate::proto::pb;
use crate::proto::records::ConvRow;
use crate::store::{Claim, ConvState, StoreError};

pub(super) fn decode_msg(bytes: &[u8]) -> Result<Message, StoreError> {
    pb::MsgData::decode(bytes)
        .map(Message::from)
        .map_err(|e| StoreError::Corrupt(e.to_string()))
}

pub(super) fn decode_conv(bytes: &[u8]) -> Result<ConvState, StoreError> {
    let r = ConvRow::decode(bytes).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    Ok(ConvState {
        max_seq: r.max_seq,
        update_time_ms: r.update_time_ms,
        claim: Claim {
            partition: r.claim_partition,
            offset: r.claim_offset,
            first_seq: r.claim_first_seq,
        },
    })
}

pub(super) fn encode_conv(s: &ConvState) -> Vec<u8> {
    ConvRow {
        max_seq: s.max_seq,
        update_time_ms: s.update_time_ms,
        claim_partition: s.claim.partition,
        claim_offset: s.claim.offset,
        claim_first_seq: s.claim.first_seq,
    }
    .encode_to_vec()
}
