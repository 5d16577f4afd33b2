//! The client protocol and log records, generated from the repository's proto/.

#[allow(clippy::all, dead_code)]
pub mod gateway {
    include!(concat!(env!("OUT_DIR"), "/gateway.rs"));
}

#[allow(clippy::all, dead_code)]
pub mod records {
    include!(concat!(env!("OUT_DIR"), "/records.rs"));
}

/// A 1:1 text message as the SDKs send it (content type 101, stored and counted):
/// the load generator's SendMsgList and the Kafka ceiling's records carry the same.
pub fn text_msg(
    client_msg_id: String,
    sender: &str,
    conv: &str,
    content: bytes::Bytes,
    client_time_ms: u64,
) -> gateway::MsgData {
    gateway::MsgData {
        client_msg_id,
        sender_id: sender.to_owned(),
        conv_id: conv.to_owned(),
        content_type: 101,
        content,
        client_time: client_time_ms.to_string(),
        options: Some(gateway::msg_data::Options {
            storage_for_server: true,
            storage_for_client: true,
            update_conv_msg: true,
            update_unread_count: true,
            ..Default::default()
        }),
        ..Default::default()
    }
}
