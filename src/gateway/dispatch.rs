//! Routes one request to its handler and turns the outcome into frames.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use tracing::Instrument as _;

use super::Gateway;
use super::wire::{self, Failure};
use super::{custom, send, sync};
use crate::connections::registry::Conn;
use crate::domain::{Message, UserId};
use crate::proto::pb::{ActiveEvent, RequestBody};

/// The calling connection.
pub(crate) struct ConnCtx {
    pub(crate) app: Gateway,
    pub(crate) user: UserId,
    /// This socket's registry entry: identity, queue and closer.
    pub(crate) conn: Conn,
    pub(crate) meta: super::meta::Meta,
}

/// A handler's success: the response payload, and messages to push to the caller
/// after it (the `push=true` variants).
pub(crate) struct Reply {
    pub(crate) data: Bytes,
    pub(crate) push: Vec<Message>,
}

impl Reply {
    pub(crate) fn data(data: impl Into<Bytes>) -> Self {
        Self {
            data: data.into(),
            push: Vec::new(),
        }
    }
}

fn request_span(ctx: &ConnCtx, req: &RequestBody) -> tracing::Span {
    tracing::info_span!(
        "ws.request",
        otel.name = %format!("ws {}", wire::event_name(req.event)),
        event = wire::event_name(req.event),
        req_id = %req.req_id,
        user = %ctx.user,
        platform = %ctx.conn.platform,
        code = tracing::field::Empty,
    )
}

/// Handles one request; returns the frames for the caller, response first.
pub(crate) async fn handle(ctx: &ConnCtx, req: RequestBody) -> Vec<Bytes> {
    let span = request_span(ctx, &req);
    handle_in(ctx, req).instrument(span).await
}

/// The frames of an answer that is still on its way.
pub(crate) type Answer = Pin<Box<dyn Future<Output = Vec<Bytes>> + Send + 'static>>;

/// Starts one SendMsgList: validates and enqueues it now (so requests started in
/// turn keep their order in the log) and returns the wait for its frames, which
/// come once the append is durable (or failed).
pub(crate) async fn start_send(ctx: Arc<ConnCtx>, req: RequestBody) -> Answer {
    let span = request_span(&ctx, &req);
    let started = std::time::Instant::now();
    let started_send = send::start_send_msg_list(&ctx, req.data)
        .instrument(span.clone())
        .await;
    let (event, req_id) = (req.event, req.req_id);
    Box::pin(
        async move {
            let outcome = match started_send {
                Ok(sending) => sending.await,
                Err(f) => Err(f),
            };
            frames(event, &req_id, started, outcome)
        }
        .instrument(span),
    )
}

async fn handle_in(ctx: &ConnCtx, req: RequestBody) -> Vec<Bytes> {
    let started = std::time::Instant::now();
    let outcome = match ActiveEvent::try_from(req.event) {
        Ok(ActiveEvent::SendMsgList) => match send::start_send_msg_list(ctx, req.data).await {
            Ok(sending) => sending.await,
            Err(f) => Err(f),
        },
        Ok(ActiveEvent::SyncConvSeq) => sync::sync_conv_seq(ctx, req.data).await,
        Ok(ActiveEvent::SyncMsgList) => sync::sync_msg_list(ctx, req.data).await,
        Ok(ActiveEvent::AckNotice) => sync::ack_notice(ctx, req.data).await,
        Ok(ActiveEvent::GetMsgById) => sync::get_msg_by_id(ctx, req.data).await,
        Ok(ActiveEvent::CustomRequest) => custom::custom_request(ctx, req.data).await,
        Ok(ActiveEvent::DiscoverConvs) | Err(_) => Err(Failure::Request(format!("unknown event {}", req.event))),
    };
    frames(req.event, &req.req_id, started, outcome)
}

/// Records the outcome (metrics, the span's code) and turns it into frames.
fn frames(
    event: i32,
    req_id: &str,
    started: std::time::Instant,
    outcome: Result<Reply, Failure>,
) -> Vec<Bytes> {
    let name = wire::event_name(event);
    metrics::histogram!("ferry_request_seconds", "event" => name)
        .record(started.elapsed().as_secs_f64());
    match outcome {
        Ok(reply) => {
            let code = "Success";
            metrics::counter!("ferry_requests_total", "event" => name, "code" => code).increment(1);
            tracing::Span::current().record("code", code);
            let mut frames = vec![wire::success(event, req_id, reply.data)];
            if !reply.push.is_empty() {
                frames.push(crate::connections::frames::messages(&reply.push));
            }
            frames
        }
        Err(f) => {
            metrics::counter!("ferry_requests_total", "event" => name, "code" => f.code().as_str_name()).increment(1);
            tracing::Span::current().record("code", f.code().as_str_name());
            tracing::debug!(event = name, req_id = %req_id, error = %f, "request failed");
            vec![wire::failure(event, req_id, &f)]
        }
    }
}

/// Decodes a request payload or fails with a message naming the event.
pub(crate) fn decode<T: prost::Message + Default>(data: Bytes, what: &str) -> Result<T, Failure> {
    T::decode(data).map_err(|e| Failure::malformed(what, &e))
}
