//! SendMsgList: validate, split by conversation, append to the log (or to the delay
//! tiers), and answer Success only once the log has the batch durably.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use prost::Message as _;
use tracing::Instrument as _;

use super::dispatch::{ConnCtx, Reply, decode};
use super::wire::Failure;
use crate::access;
use crate::config::MAX_DELAY_SECS;
use crate::domain::{ConvId, Message, now_ms};
use crate::msglog::{LogError, Outgoing};
use crate::pipeline::delay;
use crate::pipeline::records;
use crate::proto::pb;

/// Validated messages grouped by conversation, in first-seen order.
pub(crate) type Batches = Vec<(ConvId, Vec<Message>)>;

/// Checks every message and groups them; `sender` is the authenticated user, or None
/// for system messages sent through the server API.
pub(crate) async fn validate(
    app: &super::Gateway,
    sender: Option<&crate::domain::UserId>,
    list: Vec<pb::MsgData>,
) -> Result<Batches, Failure> {
    let limits = &app.cfg.limits;
    if list.is_empty() {
        return Err(Failure::Request("msgDataList is empty".into()));
    }
    if list.len() > limits.max_msgs_per_send {
        return Err(Failure::Request(format!(
            "at most {} messages per SendMsgList",
            limits.max_msgs_per_send
        )));
    }
    let mut batches: Batches = Vec::new();
    for (i, m) in list.into_iter().enumerate() {
        let conv = ConvId::parse(&m.conv_id)
            .map_err(|e| Failure::Request(format!("msgDataList[{i}]: {e}")))?;
        let mut msg = Message::from(m);
        match sender {
            Some(user) => {
                if msg.sender_id.is_empty() {
                    msg.sender_id = user.to_string();
                } else if msg.sender_id != user.as_str() {
                    return Err(Failure::Request(format!(
                        "msgDataList[{i}]: senderId must be the authenticated user"
                    )));
                }
                if !access::can_write(app.store.as_ref(), user, &conv).await? {
                    return Err(Failure::Request(format!(
                        "msgDataList[{i}]: you may not send to {conv}"
                    )));
                }
            }
            None => {
                if matches!(conv, ConvId::Notice(_)) {
                    return Err(Failure::Request(format!(
                        "msgDataList[{i}]: notice conversations carry notices, not messages"
                    )));
                }
            }
        }
        if msg.client_msg_id.len() > 128 {
            return Err(Failure::Request(format!(
                "msgDataList[{i}]: clientMsgId longer than 128 bytes"
            )));
        }
        super::sizes::offline_push(&app.cfg, i, &msg)?;
        // What the sequencer owns is never taken from the client.
        msg.seq = 0;
        msg.server_msg_id.clear();
        msg.server_time_ms = 0;
        msg.conv_id = conv.to_string();
        match batches.iter_mut().find(|(c, _)| *c == conv) {
            Some((_, v)) => v.push(msg),
            None => batches.push((conv, vec![msg])),
        }
    }
    // Sizes of the whole request before anything is appended: a request is refused
    // whole, never after part of it was stored.
    super::sizes::batches(&app.cfg, &batches)?;
    super::sizes::fanout(app, &batches).await?;
    Ok(batches)
}

/// Checks deliverAfter (seconds) and turns it into a due time.
pub(crate) fn due_at(deliver_after: Option<i32>, now: i64) -> Result<i64, Failure> {
    match deliver_after {
        None | Some(0) => Ok(0),
        Some(d) if d < 0 => Err(Failure::Request("deliverAfter must not be negative".into())),
        Some(d) if d > MAX_DELAY_SECS => Err(Failure::Request(format!(
            "deliverAfter must be at most {MAX_DELAY_SECS} seconds"
        ))),
        Some(d) => Ok(now + i64::from(d) * 1000),
    }
}

/// Appends the batches (to inbound, or to the delay tiers when due later).
pub(crate) async fn append(
    app: &super::Gateway,
    sender: &str,
    batches: Batches,
    due: i64,
) -> Result<(), Failure> {
    enqueue(app, sender, batches, due).await?.await
}

/// The wait for an enqueued append to be durable.
pub(crate) type Appended = Pin<Box<dyn Future<Output = Result<(), Failure>> + Send + 'static>>;

/// Puts the batches in line on the log and returns the wait for their durability;
/// both steps share `log.append_timeout_ms`. Appends enqueued one after another keep
/// their order in the log whatever order their waits end in.
pub(crate) async fn enqueue(
    app: &super::Gateway,
    sender: &str,
    batches: Batches,
    due: i64,
) -> Result<Appended, Failure> {
    let now = now_ms();
    let span = tracing::info_span!(
        "log.append",
        otel.name = "log append",
        records = batches.len(),
        delayed = due > 0
    );
    let _guard = span.enter();
    let delayed = if due > 0 && !sender.is_empty() {
        let n = batches.iter().map(|(_, m)| m.len()).sum();
        app.delay_quota.reserve(sender, n, due, now).map_err(|q| {
            Failure::Request(format!(
                "at most {} delayed messages may be pending per user \
                     (limits.max_pending_delayed_per_user); {} are pending",
                q.limit, q.pending
            ))
        })?;
        Some((app.delay_quota.clone(), sender.to_owned(), n))
    } else {
        None
    };
    // A reservation whose append failed is given back.
    let give_back = move || {
        if let Some((quota, user, n)) = &delayed {
            quota.release(user, *n, due);
        }
    };
    let records: Vec<Outgoing> = batches
        .into_iter()
        .map(|(conv, msgs)| {
            let b = records::batch(&conv, sender, &msgs, now, due);
            if due > 0 {
                delay::next_hop(&app.topics, &app.cfg.pipeline.delay_tiers_secs, b, now)
            } else {
                records::inbound(&app.topics, b)
            }
        })
        .map(|mut o: Outgoing| {
            crate::telemetry::inject(&mut o.headers);
            o
        })
        .collect();
    drop(_guard);
    let started = std::time::Instant::now();
    let deadline =
        tokio::time::Instant::now() + Duration::from_millis(app.cfg.log.append_timeout_ms);
    let enqueued = tokio::time::timeout_at(deadline, app.log.enqueue(records))
        .instrument(span.clone())
        .await;
    let durable = match enqueued {
        Ok(Ok(d)) => d,
        Ok(Err(e)) => {
            give_back();
            return Err(append_failed(started, e));
        }
        Err(_) => {
            give_back();
            return Err(append_failed(started, LogError::Timeout));
        }
    };
    Ok(Box::pin(
        async move {
            let res = match tokio::time::timeout_at(deadline, durable).await {
                Ok(r) => r,
                Err(_) => Err(LogError::Timeout),
            };
            metrics::histogram!("ferry_log_append_seconds").record(started.elapsed().as_secs_f64());
            if res.is_err() {
                give_back();
            }
            res.map_err(Failure::from)
        }
        .instrument(span),
    ))
}

fn append_failed(started: std::time::Instant, e: LogError) -> Failure {
    metrics::histogram!("ferry_log_append_seconds").record(started.elapsed().as_secs_f64());
    Failure::from(e)
}

/// The wait for an enqueued SendMsgList's answer.
pub(crate) type Sending = Pin<Box<dyn Future<Output = Result<Reply, Failure>> + Send + 'static>>;

/// Validates and enqueues one SendMsgList; the returned wait answers Success once the
/// log has it durably. A connection's requests enqueued in turn keep their order.
pub(crate) async fn start_send_msg_list(ctx: &ConnCtx, data: Bytes) -> Result<Sending, Failure> {
    // The list length is checked on the encoded request: an over-long list costs
    // one pass over its bytes, not the decoding of every message.
    let max = ctx.app.cfg.limits.max_msgs_per_send;
    let n = super::bounded::count_up_to(&data, 2, max)
        .map_err(|e| Failure::malformed("SendMsgListReq", &e))?;
    if n > max {
        return Err(Failure::Request(format!(
            "at most {max} messages per SendMsgList"
        )));
    }
    let req: pb::SendMsgListReq = decode(data, "SendMsgListReq")?;
    let due = due_at(req.deliver_after, now_ms())?;
    let batches = validate(&ctx.app, Some(&ctx.user), req.msg_data_list).await?;
    let appended = enqueue(&ctx.app, ctx.user.as_str(), batches, due).await?;
    Ok(Box::pin(async move {
        appended.await?;
        Ok(Reply::data(pb::SendMsgListResp::default().encode_to_vec()))
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deliver_after_is_bounded() {
        assert_eq!(due_at(None, 1000).unwrap(), 0);
        assert_eq!(due_at(Some(0), 1000).unwrap(), 0);
        assert_eq!(due_at(Some(2), 1000).unwrap(), 3000);
        assert_eq!(due_at(Some(864_000), 0).unwrap(), 864_000_000);
        assert!(
            due_at(Some(864_001), 0)
                .unwrap_err()
                .to_string()
                .contains("864000")
        );
        assert!(due_at(Some(-1), 0).is_err());
    }
}
