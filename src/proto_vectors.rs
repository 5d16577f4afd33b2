//! Conformance: every frame in tests/vectors/ (from docs/SPEC.md §1) decodes to the content described
//! beside it (protobuf JSON mapping), and push frames survive a re-encode.

use std::path::PathBuf;

use base64::Engine as _;
use bytes::Bytes;
use prost::Message as _;
use serde_json::{Map, Value, json};

use crate::proto::pb;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/vectors")
}

fn load(name: &str) -> (Bytes, Value) {
    let hex = std::fs::read_to_string(dir().join(format!("{name}.hex")))
        .unwrap_or_else(|e| panic!("vector tests/vectors/{name}.hex: {e}"));
    let hex = hex.trim();
    let bytes: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect();
    let json =
        serde_json::from_str(&std::fs::read_to_string(dir().join(format!("{name}.json"))).unwrap())
            .unwrap();
    (bytes.into(), json)
}

/// Builds a JSON object, omitting fields at their default as the JSON mapping does.
struct Obj(Map<String, Value>);

impl Obj {
    fn new() -> Self {
        Self(Map::new())
    }
    fn s(mut self, k: &str, v: &str) -> Self {
        if !v.is_empty() {
            self.0.insert(k.into(), json!(v));
        }
        self
    }
    fn b(mut self, k: &str, v: &[u8]) -> Self {
        if !v.is_empty() {
            self.0.insert(
                k.into(),
                json!(base64::engine::general_purpose::STANDARD.encode(v)),
            );
        }
        self
    }
    fn i(mut self, k: &str, v: i64) -> Self {
        if v != 0 {
            self.0.insert(k.into(), json!(v));
        }
        self
    }
    fn t(mut self, k: &str, v: bool) -> Self {
        if v {
            self.0.insert(k.into(), json!(true));
        }
        self
    }
    fn v(mut self, k: &str, v: Value) -> Self {
        let empty = matches!(&v, Value::Object(m) if m.is_empty())
            || matches!(&v, Value::Array(a) if a.is_empty())
            || v.is_null();
        if !empty {
            self.0.insert(k.into(), v);
        }
        self
    }
    fn e(mut self, k: &str, name: &str, zero: bool) -> Self {
        if !zero {
            self.0.insert(k.into(), json!(name));
        }
        self
    }
    fn done(self) -> Value {
        Value::Object(self.0)
    }
}

fn msg_data(m: &pb::MsgData) -> Value {
    let opts = m.options.as_ref().map(|o| {
        Obj::new()
            .t("storageForServer", o.storage_for_server)
            .t("storageForClient", o.storage_for_client)
            .t("needDecrypt", o.need_decrypt)
            .t("offlinePush", o.offline_push)
            .t("updateConvMsg", o.update_conv_msg)
            .t("updateUnreadCount", o.update_unread_count)
            .done()
    });
    let push = m.offline_push.as_ref().map(|p| {
        Obj::new()
            .s("title", &p.title)
            .s("content", &p.content)
            .s("payload", &p.payload)
            .done()
    });
    Obj::new()
        .s("clientMsgId", &m.client_msg_id)
        .s("serverMsgId", &m.server_msg_id)
        .s("clientTime", &m.client_time)
        .s("serverTime", &m.server_time)
        .s("senderId", &m.sender_id)
        .b("senderInfo", &m.sender_info)
        .s("convId", &m.conv_id)
        .v("atUsers", json!(m.at_users))
        .i("contentType", m.content_type.into())
        .b("content", &m.content)
        .s("seq", &m.seq)
        .v("options", opts.unwrap_or(Value::Null))
        .v("offlinePush", push.unwrap_or(Value::Null))
        .b("ext", &m.ext)
        .done()
}

fn notice(n: &pb::NoticeData) -> Value {
    let o = n.options.unwrap_or_default();
    Obj::new()
        .s("convId", &n.conv_id)
        .i("unreadCount", n.unread_count.into())
        .t("unreadAbsolute", n.unread_absolute)
        .s("noticeId", &n.notice_id)
        .s("createTime", &n.create_time)
        .s("title", &n.title)
        .i("contentType", n.content_type.into())
        .b("content", &n.content)
        .v(
            "options",
            Obj::new()
                .t("storageForClient", o.storage_for_client)
                .t("updateConvMsg", o.update_conv_msg)
                .t("onlinePushOnce", o.online_push_once)
                .done(),
        )
        .b("ext", &n.ext)
        .done()
}

fn event(e: i32) -> (String, bool) {
    let name = pb::ActiveEvent::try_from(e)
        .map(|e| e.as_str_name().to_owned())
        .unwrap_or_default();
    (name, e == 0)
}

/// Decodes a request frame into its JSON content.
fn request(bytes: Bytes) -> Value {
    let r = pb::RequestBody::decode(bytes).unwrap();
    let data = match pb::ActiveEvent::try_from(r.event).unwrap() {
        pb::ActiveEvent::SendMsgList => {
            let d = pb::SendMsgListReq::decode(r.data.clone()).unwrap();
            Obj::new()
                .v(
                    "msgDataList",
                    Value::Array(d.msg_data_list.iter().map(msg_data).collect()),
                )
                .i("deliverAfter", d.deliver_after.unwrap_or(0).into())
                .done()
        }
        pb::ActiveEvent::SyncConvSeq => Obj::new()
            .v(
                "convIdList",
                json!(
                    pb::BatchGetConvSeqReq::decode(r.data.clone())
                        .unwrap()
                        .conv_id_list
                ),
            )
            .done(),
        pb::ActiveEvent::SyncMsgList => {
            let d = pb::BatchGetMsgListByConvIdReq::decode(r.data.clone()).unwrap();
            let items: Vec<Value> = d
                .items
                .iter()
                .map(|i| {
                    Obj::new()
                        .s("convId", &i.conv_id)
                        .v("seqList", json!(i.seq_list))
                        .done()
                })
                .collect();
            Obj::new()
                .v("items", Value::Array(items))
                .t("push", d.push)
                .done()
        }
        pb::ActiveEvent::AckNotice => {
            let d = pb::AckNoticeDataReq::decode(r.data.clone()).unwrap();
            Obj::new()
                .s("noticeId", &d.notice_id)
                .s("convId", &d.conv_id)
                .done()
        }
        pb::ActiveEvent::GetMsgById => {
            let d = pb::GetMsgByIdReq::decode(r.data.clone()).unwrap();
            Obj::new()
                .s("serverMsgId", d.server_msg_id.as_deref().unwrap_or(""))
                .s("clientMsgId", d.client_msg_id.as_deref().unwrap_or(""))
                .t("push", d.push)
                .done()
        }
        pb::ActiveEvent::CustomRequest => {
            let d = pb::CustomRequestBody::decode(r.data.clone()).unwrap();
            Obj::new().s("method", &d.method).b("data", &d.data).done()
        }
        pb::ActiveEvent::DiscoverConvs => {
            let d = pb::DiscoverConvsReq::decode(r.data.clone()).unwrap();
            Obj::new()
                .s("cursor", &d.cursor)
                .i("limit", d.limit.into())
                .done()
        }
    };
    let (name, zero) = event(r.event);
    Obj::new()
        .e("event", &name, zero)
        .s("reqId", &r.req_id)
        .v("data", data)
        .done()
}

/// Decodes a push frame into its JSON content.
fn push(bytes: Bytes) -> Value {
    let p = pb::PushBody::decode(bytes).unwrap();
    let ev = pb::PushEvent::try_from(p.event).unwrap();
    let data = match ev {
        pb::PushEvent::PushMsgDataList => {
            let l = pb::MsgDataList::decode(p.data.clone()).unwrap();
            Obj::new()
                .v(
                    "msgDataList",
                    Value::Array(l.msg_data_list.iter().map(msg_data).collect()),
                )
                .done()
        }
        pb::PushEvent::PushNoticeDataList => {
            let l = pb::NoticeDataList::decode(p.data.clone()).unwrap();
            Obj::new()
                .v(
                    "noticeDataList",
                    Value::Array(l.notice_data_list.iter().map(notice).collect()),
                )
                .done()
        }
        pb::PushEvent::PushResponseBody => {
            let r = pb::ResponseBody::decode(p.data.clone()).unwrap();
            // The vectors name the echoed event even at its zero value.
            let (name, _) = event(r.event);
            let inner = if r.code != 0 {
                let c = pb::CustomResponseError::decode(r.data.clone())
                    .unwrap()
                    .common_resp
                    .unwrap();
                let code = pb::response_body::Code::try_from(c.code)
                    .unwrap()
                    .as_str_name();
                Obj::new()
                    .v(
                        "commonResp",
                        Obj::new()
                            .e("code", code, c.code == 0)
                            .s("msg", c.msg.as_deref().unwrap_or(""))
                            .done(),
                    )
                    .done()
            } else {
                let d = pb::BatchGetConvSeqResp::decode(r.data.clone()).unwrap();
                let map: Map<String, Value> = d
                    .conv_seq_map
                    .iter()
                    .map(|(k, v)| {
                        (
                            k.clone(),
                            Obj::new()
                                .s("convId", &v.conv_id)
                                .s("minSeq", &v.min_seq)
                                .s("maxSeq", &v.max_seq)
                                .s("updateTime", &v.update_time)
                                .done(),
                        )
                    })
                    .collect();
                Obj::new().v("convSeqMap", Value::Object(map)).done()
            };
            let code = pb::response_body::Code::try_from(r.code)
                .unwrap()
                .as_str_name();
            Obj::new()
                .e("event", &name, false)
                .s("reqId", &r.req_id)
                .e("code", code, false)
                .v("data", inner)
                .done()
        }
    };
    Obj::new()
        .e("event", ev.as_str_name(), p.event == 0)
        .v("data", data)
        .done()
}

#[test]
fn every_vector_decodes_to_its_described_content() {
    for name in [
        "request_send_msg_list",
        "request_sync_conv_seq",
        "request_sync_msg_list",
        "request_ack_notice",
        "request_get_msg_by_id",
        "request_custom",
    ] {
        let (bytes, want) = load(name);
        assert_eq!(request(bytes), want, "{name}");
    }
    for name in [
        "push_msg_data_list",
        "push_notice_data_list",
        "push_response_sync_conv_seq",
        "push_response_error",
    ] {
        let (bytes, want) = load(name);
        assert_eq!(push(bytes.clone()), want, "{name}");
        // Re-encoding the decoded frame gives bytes that decode to the same content.
        let again: Bytes = pb::PushBody::decode(bytes).unwrap().encode_to_vec().into();
        assert_eq!(push(again), want, "{name} re-encoded");
    }
}

#[test]
fn ferry_encodes_the_error_vector_the_clients_expect() {
    let (_, want) = load("push_response_error");
    let f = crate::gateway::wire::Failure::Request(
        "deliverAfter must be at most 864000 seconds".into(),
    );
    let ours = crate::gateway::wire::failure(pb::ActiveEvent::SendMsgList as i32, "req-9", &f);
    assert_eq!(push(ours), want);
}

#[test]
fn ferry_encodes_pushed_messages_as_the_clients_expect() {
    let (bytes, want) = load("push_msg_data_list");
    let list = pb::MsgDataList::decode(pb::PushBody::decode(bytes).unwrap().data).unwrap();
    let msgs: Vec<crate::domain::Message> = list
        .msg_data_list
        .into_iter()
        .map(crate::domain::Message::from)
        .collect();
    assert_eq!(push(crate::connections::frames::messages(&msgs)), want);
}
