//! The read side: SyncConvSeq, SyncMsgList, GetMsgById, and AckNotice.

use bytes::Bytes;
use prost::Message as _;

use super::dispatch::{ConnCtx, Reply, decode};
use super::wire::Failure;
use crate::access;
use crate::domain::{ConvId, Message, Seq, parse_server_msg_id};
use crate::pipeline::notices;
use crate::proto::pb;

pub(crate) async fn sync_conv_seq(ctx: &ConnCtx, data: Bytes) -> Result<Reply, Failure> {
    let req: pb::BatchGetConvSeqReq = decode(data, "BatchGetConvSeqReq")?;
    let max = ctx.app.cfg.limits.max_convs_per_seq_sync;
    if req.conv_id_list.len() > max {
        return Err(Failure::Request(format!(
            "at most {max} convIds per SyncConvSeq"
        )));
    }
    let store = ctx.app.store.as_ref();
    let mut resp = pb::BatchGetConvSeqResp::default();
    for raw in req.conv_id_list {
        let mut entry = pb::batch_get_conv_seq_resp::ConvSeq {
            conv_id: raw.clone(),
            min_seq: "0".into(),
            max_seq: "0".into(),
            update_time: "0".into(),
        };
        if let Ok(conv) = ConvId::parse(&raw)
            && let Some(min) = access::read_from(store, &ctx.user, &conv).await?
            && let Some(state) = store.conv_state(&conv.to_string()).await?
        {
            entry.min_seq = min.to_string();
            entry.max_seq = state.max_seq.to_string();
            entry.update_time = state.update_time_ms.to_string();
        }
        resp.conv_seq_map.insert(raw, entry);
    }
    Ok(Reply::data(resp.encode_to_vec()))
}

pub(crate) async fn sync_msg_list(ctx: &ConnCtx, data: Bytes) -> Result<Reply, Failure> {
    let req: pb::BatchGetMsgListByConvIdReq = decode(data, "BatchGetMsgListByConvIdReq")?;
    let max = ctx.app.cfg.limits.max_seqs_per_sync;
    let total: usize = req.items.iter().map(|i| i.seq_list.len()).sum();
    if total > max {
        return Err(Failure::Request(format!(
            "at most {max} seqs per SyncMsgList"
        )));
    }
    let store = ctx.app.store.as_ref();
    let mut out = Vec::with_capacity(total);
    for item in req.items {
        let conv = ConvId::parse(&item.conv_id).map_err(|e| Failure::Request(e.to_string()))?;
        let seqs = item
            .seq_list
            .iter()
            .map(|s| Seq::parse(s).map(|s| s.0))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| Failure::Request(e.to_string()))?;
        let Some(min) = access::read_from(store, &ctx.user, &conv).await? else {
            continue;
        };
        let visible: Vec<u64> = seqs.into_iter().filter(|s| *s >= min).collect();
        let conv_s = conv.to_string();
        let found = store.messages(&conv_s, &visible).await?;
        for s in visible {
            match found.iter().find(|m| m.seq == s) {
                Some(m) => out.push(m.clone()),
                None => out.push(Message::placeholder(&conv, Seq(s))),
            }
        }
    }
    Ok(with_push(req.push, out, |msgs| {
        pb::GetMsgListResp {
            msg_data_list: msgs.iter().map(pb::MsgData::from).collect(),
            ..Default::default()
        }
        .encode_to_vec()
    }))
}

/// push=true: answer empty and push the messages to the caller instead.
fn with_push(push: bool, msgs: Vec<Message>, encode: impl Fn(&[Message]) -> Vec<u8>) -> Reply {
    if push {
        Reply {
            data: encode(&[]).into(),
            push: msgs,
        }
    } else {
        Reply::data(encode(&msgs))
    }
}

pub(crate) async fn get_msg_by_id(ctx: &ConnCtx, data: Bytes) -> Result<Reply, Failure> {
    let req: pb::GetMsgByIdReq = decode(data, "GetMsgByIdReq")?;
    let store = ctx.app.store.as_ref();
    let mut found = None;
    if let Some(id) = req.server_msg_id.as_deref().filter(|s| !s.is_empty()) {
        let (conv, seq) = parse_server_msg_id(id).map_err(|e| Failure::Request(e.to_string()))?;
        if let Some(min) = access::read_from(store, &ctx.user, &conv).await?
            && seq.0 >= min
        {
            found = store.messages(&conv.to_string(), &[seq.0]).await?.pop();
        }
    } else if let Some(id) = req.client_msg_id.as_deref().filter(|s| !s.is_empty()) {
        for m in store.find_client_msg_id(id).await? {
            let Ok(conv) = ConvId::parse(&m.conv_id) else {
                continue;
            };
            if let Some(min) = access::read_from(store, &ctx.user, &conv).await?
                && m.seq >= min
            {
                found = Some(m);
                break;
            }
        }
    } else {
        return Err(Failure::Request("give serverMsgId or clientMsgId".into()));
    }
    let msgs: Vec<Message> = found.into_iter().collect();
    Ok(with_push(req.push, msgs, |m| {
        pb::GetMsgByIdResp {
            msg_data: m.first().map(pb::MsgData::from),
            ..Default::default()
        }
        .encode_to_vec()
    }))
}

pub(crate) async fn ack_notice(ctx: &ConnCtx, data: Bytes) -> Result<Reply, Failure> {
    let req: pb::AckNoticeDataReq = decode(data, "AckNoticeDataReq")?;
    if req.notice_id.is_empty() {
        return Err(Failure::Request("noticeId is required".into()));
    }
    if req.conv_id.contains('|') || req.notice_id.contains('|') {
        return Err(Failure::Request(
            "convId and noticeId may not contain '|'".into(),
        ));
    }
    let app = &ctx.app;
    app.log
        .append(vec![notices::ack(
            &app.topics,
            ctx.user.as_str(),
            &req.conv_id,
            &req.notice_id,
        )])
        .await?;
    Ok(Reply::data(
        pb::AckNoticeDataResp::default().encode_to_vec(),
    ))
}
