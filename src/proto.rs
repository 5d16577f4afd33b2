//! Generated protobuf code in, domain types out. Nothing past this module builds or
//! reads prost message types of the client protocol, except the log records codec.

use crate::domain::{Message, MsgOptions, Notice, OfflinePush};

#[allow(unreachable_pub, clippy::all, clippy::pedantic)]
pub(crate) mod gateway {
    include!(concat!(env!("OUT_DIR"), "/gateway.rs"));
}

/// The client protocol's messages (the proto package is `gateway`).
pub(crate) use gateway as pb;

#[allow(unreachable_pub, clippy::all, clippy::pedantic)]
pub(crate) mod records {
    include!(concat!(env!("OUT_DIR"), "/records.rs"));
}

pub(crate) use pb::response_body::Code;

/// Decimal-string milliseconds; anything unparsable counts as 0 (clients send "" freely).
fn ms_from_str(s: &str) -> i64 {
    s.trim().parse().unwrap_or(0)
}

fn ms_to_str(ms: i64) -> String {
    if ms == 0 {
        String::new()
    } else {
        ms.to_string()
    }
}

impl From<pb::MsgData> for Message {
    fn from(m: pb::MsgData) -> Self {
        let options = match m.options {
            Some(o) => MsgOptions {
                storage_for_server: o.storage_for_server,
                storage_for_client: o.storage_for_client,
                need_decrypt: o.need_decrypt,
                offline_push: o.offline_push,
                update_conv_msg: o.update_conv_msg,
                update_unread_count: o.update_unread_count,
            },
            // The original server crashed here; absent options mean an ordinary stored message.
            None => MsgOptions::stored(),
        };
        Message {
            client_msg_id: m.client_msg_id,
            server_msg_id: m.server_msg_id,
            client_time_ms: ms_from_str(&m.client_time),
            server_time_ms: ms_from_str(&m.server_time),
            sender_id: m.sender_id,
            sender_info: m.sender_info,
            conv_id: m.conv_id,
            at_users: m.at_users,
            content_type: m.content_type,
            content: m.content,
            seq: m.seq.trim().parse().unwrap_or(0),
            options,
            offline_push: m.offline_push.map(|p| OfflinePush {
                title: p.title,
                content: p.content,
                payload: p.payload,
            }),
            ext: m.ext,
        }
    }
}

impl From<&Message> for pb::MsgData {
    fn from(m: &Message) -> Self {
        let o = &m.options;
        pb::MsgData {
            client_msg_id: m.client_msg_id.clone(),
            server_msg_id: m.server_msg_id.clone(),
            client_time: ms_to_str(m.client_time_ms),
            server_time: ms_to_str(m.server_time_ms),
            sender_id: m.sender_id.clone(),
            sender_info: m.sender_info.clone(),
            conv_id: m.conv_id.clone(),
            at_users: m.at_users.clone(),
            content_type: m.content_type,
            content: m.content.clone(),
            seq: if m.seq == 0 {
                String::new()
            } else {
                m.seq.to_string()
            },
            options: Some(pb::msg_data::Options {
                storage_for_server: o.storage_for_server,
                storage_for_client: o.storage_for_client,
                need_decrypt: o.need_decrypt,
                offline_push: o.offline_push,
                update_conv_msg: o.update_conv_msg,
                update_unread_count: o.update_unread_count,
            }),
            offline_push: m.offline_push.as_ref().map(|p| pb::msg_data::OfflinePush {
                title: p.title.clone(),
                content: p.content.clone(),
                payload: p.payload.clone(),
            }),
            ext: m.ext.clone(),
        }
    }
}

impl From<pb::NoticeData> for Notice {
    fn from(n: pb::NoticeData) -> Self {
        let o = n.options.unwrap_or_default();
        Notice {
            conv_id: n.conv_id,
            notice_id: n.notice_id,
            unread_count: n.unread_count,
            unread_absolute: n.unread_absolute,
            create_time_ms: ms_from_str(&n.create_time),
            title: n.title,
            content_type: n.content_type,
            content: n.content,
            storage_for_client: o.storage_for_client,
            update_conv_msg: o.update_conv_msg,
            online_push_once: o.online_push_once,
            ext: n.ext,
        }
    }
}

impl From<&Notice> for pb::NoticeData {
    fn from(n: &Notice) -> Self {
        pb::NoticeData {
            conv_id: n.conv_id.clone(),
            unread_count: n.unread_count,
            unread_absolute: n.unread_absolute,
            notice_id: n.notice_id.clone(),
            create_time: ms_to_str(n.create_time_ms),
            title: n.title.clone(),
            content_type: n.content_type,
            content: n.content.clone(),
            options: Some(pb::notice_data::Options {
                storage_for_client: n.storage_for_client,
                update_conv_msg: n.update_conv_msg,
                online_push_once: n.online_push_once,
            }),
            ext: n.ext.clone(),
        }
    }
}

pub(crate) fn msg_list(msgs: &[Message]) -> pb::MsgDataList {
    pb::MsgDataList {
        msg_data_list: msgs.iter().map(pb::MsgData::from).collect(),
    }
}

pub(crate) fn notice_list(notices: &[Notice]) -> pb::NoticeDataList {
    pb::NoticeDataList {
        notice_data_list: notices.iter().map(pb::NoticeData::from).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message as _;

    #[test]
    fn message_round_trips_through_the_wire_type() {
        let m = Message {
            client_msg_id: "c1".into(),
            server_msg_id: "group:g-3".into(),
            client_time_ms: 17,
            server_time_ms: 18,
            sender_id: "u".into(),
            conv_id: "group:g".into(),
            content_type: 11,
            content: "hi".into(),
            seq: 3,
            options: MsgOptions::stored(),
            offline_push: Some(OfflinePush::default()),
            ..Message::default()
        };
        let bytes = pb::MsgData::from(&m).encode_to_vec();
        let back = Message::from(pb::MsgData::decode(bytes.as_slice()).unwrap());
        assert_eq!(back, m);
    }

    #[test]
    fn absent_options_mean_a_stored_message() {
        let m = Message::from(pb::MsgData::default());
        assert!(m.options.storage_for_server);
        assert!(m.offline_push.is_none());
    }
}
