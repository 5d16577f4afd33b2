//! Counting the elements of a repeated field in encoded protobuf before decoding
//! it: a list longer than its limit is refused before a single element is decoded,
//! so the cost of a refused request does not grow with what the client sent.

use prost::encoding::{DecodeContext, WireType, decode_key, decode_varint, skip_field};

/// Why an encoded message could not be walked.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct Malformed(String);

/// Calls `f` with the bytes of every occurrence of length-delimited field `field`
/// (a repeated string, bytes or message) of the message in `buf`, in order.
pub(crate) fn each(
    buf: &[u8],
    field: u32,
    mut f: impl FnMut(&[u8]) -> Result<(), Malformed>,
) -> Result<(), Malformed> {
    walk(buf, field, |v| f(v).map(|()| true))
}

/// As `each`, until `f` returns false.
fn walk(
    mut buf: &[u8],
    field: u32,
    mut f: impl FnMut(&[u8]) -> Result<bool, Malformed>,
) -> Result<(), Malformed> {
    let bad = |e: prost::DecodeError| Malformed(e.to_string());
    while !buf.is_empty() {
        let (tag, wire_type) = decode_key(&mut buf).map_err(bad)?;
        if tag == field && wire_type == WireType::LengthDelimited {
            let len = decode_varint(&mut buf).map_err(bad)?;
            let len = usize::try_from(len)
                .ok()
                .filter(|l| *l <= buf.len())
                .ok_or_else(|| Malformed(format!("field {field} runs past the end")))?;
            let (value, rest) = buf.split_at(len);
            if !f(value)? {
                return Ok(());
            }
            buf = rest;
        } else {
            skip_field(wire_type, tag, &mut buf, DecodeContext::default()).map_err(bad)?;
        }
    }
    Ok(())
}

/// How many elements repeated field `field` has, counting no further than `max + 1`:
/// a list far over its limit (a flood of 50,000 seqs) costs a walk over its first
/// `max + 1` elements, not over all of them. What follows them is not looked at.
pub(crate) fn count_up_to(buf: &[u8], field: u32, max: usize) -> Result<usize, Malformed> {
    let mut n = 0;
    walk(buf, field, |_| {
        n += 1;
        Ok(n <= max)
    })?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::pb;
    use prost::Message as _;

    #[test]
    fn counts_without_decoding() {
        let req = pb::SendMsgListReq {
            msg_data_list: vec![pb::MsgData::default(); 7],
            deliver_after: Some(3),
            ..Default::default()
        };
        assert_eq!(count_up_to(&req.encode_to_vec(), 2, usize::MAX).unwrap(), 7);
        let sync = pb::BatchGetMsgListByConvIdReq {
            items: vec![
                pb::batch_get_msg_list_by_conv_id_req::Item {
                    conv_id: "group:g".into(),
                    seq_list: vec!["1".into(); 5],
                },
                pb::batch_get_msg_list_by_conv_id_req::Item {
                    conv_id: "group:h".into(),
                    seq_list: vec!["2".into(); 3],
                },
            ],
            push: true,
            ..Default::default()
        };
        let mut seqs = 0;
        each(&sync.encode_to_vec(), 2, |item| {
            seqs += count_up_to(item, 2, usize::MAX)?;
            Ok(())
        })
        .unwrap();
        assert_eq!(seqs, 8);
    }

    #[test]
    fn counting_up_to_a_limit_stops_past_it() {
        let mut req = pb::SendMsgListReq {
            msg_data_list: vec![pb::MsgData::default(); 5],
            ..Default::default()
        }
        .encode_to_vec();
        assert_eq!(count_up_to(&req, 2, 10).unwrap(), 5);
        assert_eq!(count_up_to(&req, 2, 5).unwrap(), 5);
        // Past the limit: what follows is not walked, so a broken tail goes unseen.
        req.extend([0x12, 0x7f]);
        assert_eq!(count_up_to(&req, 2, 2).unwrap(), 3);
        assert!(count_up_to(&req, 2, 10).is_err());
    }

    #[test]
    fn truncated_input_is_malformed() {
        let req = pb::BatchGetConvSeqReq {
            conv_id_list: vec!["single:a:b".into()],
            ..Default::default()
        };
        let bytes = req.encode_to_vec();
        assert!(count_up_to(&bytes[..bytes.len() - 1], 2, usize::MAX).is_err());
    }
}
