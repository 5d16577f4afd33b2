//! Push frames: what a socket receives outside a response.

use bytes::Bytes;
use prost::Message as _;

use crate::domain::{Message, Notice};
use crate::proto::pb::{self, PushEvent};
use crate::proto::{msg_list, notice_list};

/// A PushBody frame carrying `data` (the event's encoded payload).
pub(crate) fn push(event: PushEvent, data: Vec<u8>) -> Bytes {
    pb::PushBody {
        event: event as i32,
        data: data.into(),
    }
    .encode_to_vec()
    .into()
}

pub(crate) fn messages(msgs: &[Message]) -> Bytes {
    push(PushEvent::PushMsgDataList, msg_list(msgs).encode_to_vec())
}

pub(crate) fn notices(notices: &[Notice]) -> Bytes {
    push(
        PushEvent::PushNoticeDataList,
        notice_list(notices).encode_to_vec(),
    )
}
