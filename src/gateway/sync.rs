//! The read side: SyncConvSeq, SyncMsgList, GetMsgById, and AckNotice.

use bytes::Bytes;
use prost::Message as _;

use std::collections::HashSet;

use super::dispatch::{ConnCtx, Reply, decode};
use super::wire::Failure;
use super::{bounded, sync_read};
use crate::access;
use crate::domain::{ConvId, Message, Seq, parse_server_msg_id};
use crate::pipeline::notices;
use crate::proto::pb;

pub(crate) async fn sync_conv_seq(ctx: &ConnCtx, data: Bytes) -> Result<Reply, Failure> {
    let max = ctx.app.cfg.limits.max_convs_per_seq_sync;
    if bounded::count_up_to(&data, 2, max).map_err(malformed("BatchGetConvSeqReq"))? > max {
        return Err(Failure::Request(format!(
            "at most {max} convIds per SyncConvSeq"
        )));
    }
    let req: pb::BatchGetConvSeqReq = decode(data, "BatchGetConvSeqReq")?;
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

fn malformed(what: &'static str) -> impl Fn(bounded::Malformed) -> Failure {
    move |e| Failure::malformed(what, &e)
}

pub(crate) async fn sync_msg_list(ctx: &ConnCtx, data: Bytes) -> Result<Reply, Failure> {
    let limits = &ctx.app.cfg.limits;
    // Both lengths are checked on the encoded request, before anything is decoded.
    let (mut items, mut total) = (0usize, 0usize);
    let max_seqs = limits.max_seqs_per_sync;
    bounded::each(&data, 2, |item| {
        items += 1;
        // Once over the limit the rest is not counted: the request is refused anyway.
        if total <= max_seqs {
            total += bounded::count_up_to(item, 2, max_seqs - total)?;
        }
        Ok(())
    })
    .map_err(malformed("BatchGetMsgListByConvIdReq"))?;
    if items > limits.max_convs_per_msg_sync {
        return Err(Failure::Request(format!(
            "at most {} items per SyncMsgList",
            limits.max_convs_per_msg_sync
        )));
    }
    if total > limits.max_seqs_per_sync {
        return Err(Failure::Request(format!(
            "at most {} seqs per SyncMsgList",
            limits.max_seqs_per_sync
        )));
    }
    let req: pb::BatchGetMsgListByConvIdReq = decode(data, "BatchGetMsgListByConvIdReq")?;
    let store = ctx.app.store.as_ref();
    // A (conversation, seq) asked for twice is answered once.
    let mut seen: HashSet<(String, u64)> = HashSet::new();
    let mut wanted = Vec::new();
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
        let conv_s = conv.to_string();
        let seqs = seqs
            .into_iter()
            .filter(|s| *s >= min && seen.insert((conv_s.clone(), *s)))
            .collect();
        wanted.push(sync_read::Wanted { conv, seqs });
    }
    sync_read::check_partitions(&wanted, ctx.app.cfg.budgets.max_sync_partitions)?;
    let (out, held) = sync_read::read(ctx, wanted).await?;
    let mut reply = with_push(req.push, out, |msgs| {
        pb::GetMsgListResp {
            msg_data_list: msgs.iter().map(pb::MsgData::from).collect(),
            ..Default::default()
        }
        .encode_to_vec()
    });
    reply.held = Some(held);
    Ok(reply)
}

/// push=true: answer empty and push the messages to the caller instead.
fn with_push(push: bool, msgs: Vec<Message>, encode: impl Fn(&[Message]) -> Vec<u8>) -> Reply {
    if push {
        Reply {
            data: encode(&[]).into(),
            push: msgs,
            held: None,
        }
    } else {
        Reply::data(encode(&msgs))
    }
}

pub(crate) async fn get_msg_by_id(ctx: &ConnCtx, data: Bytes) -> Result<Reply, Failure> {
    let req: pb::GetMsgByIdReq = decode(data, "GetMsgByIdReq")?;
    for id in [&req.server_msg_id, &req.client_msg_id]
        .into_iter()
        .flatten()
    {
        if id.len() > MAX_ID_BYTES {
            return Err(Failure::Request(format!(
                "message ids are at most {MAX_ID_BYTES} bytes"
            )));
        }
    }
    // The message's worst case, before it is read.
    let held = ctx
        .budget
        .take(sync_read::message_bound(&ctx.app.cfg.limits))
        .await?;
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
        // At most the bound plus one index rows are read: one more says "too many".
        let max = ctx.app.cfg.limits.max_client_msg_id_matches;
        let hits = store.find_client_msg_id(id, max + 1).await?;
        if hits.len() > max {
            return Err(Failure::Request(format!(
                "more than {max} messages carry this clientMsgId; look it up by serverMsgId"
            )));
        }
        for (conv_s, seq) in hits {
            let Ok(conv) = ConvId::parse(&conv_s) else {
                continue;
            };
            if let Some(min) = access::read_from(store, &ctx.user, &conv).await?
                && seq >= min
                && let Some(m) = store.messages(&conv_s, &[seq]).await?.pop()
            {
                found = Some(m);
                break;
            }
        }
    } else {
        return Err(Failure::Request("give serverMsgId or clientMsgId".into()));
    }
    let msgs: Vec<Message> = found.into_iter().collect();
    let mut reply = with_push(req.push, msgs, |m| {
        pb::GetMsgByIdResp {
            msg_data: m.first().map(pb::MsgData::from),
            ..Default::default()
        }
        .encode_to_vec()
    });
    reply.held = Some(held);
    Ok(reply)
}

/// Longest serverMsgId, clientMsgId, noticeId or notice convId accepted, bytes.
const MAX_ID_BYTES: usize = 256;

/// Acks a pending notice with a tombstone. Only a notice pending for this user is
/// tombstoned: acking one that is unknown or already acked succeeds without writing,
/// so a client cannot fill the notices topic with tombstones of its own invention.
pub(crate) async fn ack_notice(ctx: &ConnCtx, data: Bytes) -> Result<Reply, Failure> {
    let req: pb::AckNoticeDataReq = decode(data, "AckNoticeDataReq")?;
    if req.notice_id.is_empty() {
        return Err(Failure::Request("noticeId is required".into()));
    }
    if req.notice_id.len() > MAX_ID_BYTES || req.conv_id.len() > MAX_ID_BYTES {
        return Err(Failure::Request(format!(
            "convId and noticeId are at most {MAX_ID_BYTES} bytes"
        )));
    }
    if req.conv_id.contains('|') || req.notice_id.contains('|') {
        return Err(Failure::Request(
            "convId and noticeId may not contain '|'".into(),
        ));
    }
    let app = &ctx.app;
    let user = ctx.user.as_str();
    if app.notices.is_pending(user, &req.conv_id, &req.notice_id) {
        metrics::counter!("ferry_notice_acks_total", "outcome" => "acked").increment(1);
        app.log
            .append(vec![notices::ack(
                &app.topics,
                user,
                &req.conv_id,
                &req.notice_id,
            )])
            .await?;
    } else {
        metrics::counter!("ferry_notice_acks_total", "outcome" => "not_pending").increment(1);
    }
    Ok(Reply::data(
        pb::AckNoticeDataResp::default().encode_to_vec(),
    ))
}
