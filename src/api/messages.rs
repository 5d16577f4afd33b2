//! POST /api/v1/messages: send messages as a user or as the system.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;

use super::body::Body;
use super::{ApiError, bad, content};
use crate::access;
use crate::domain::{ConvId, UserId, now_ms};
use crate::gateway::Gateway;
use crate::gateway::send;
use crate::proto::pb;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct SendRequest {
    /// Send as this user (membership is checked); absent: a system message.
    sender_id: Option<String>,
    conv_id: String,
    messages: Vec<ApiMessage>,
    /// Seconds, as deliverAfter in SendMsgList.
    deliver_after: Option<i32>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct ApiMessage {
    client_msg_id: Option<String>,
    content_type: i32,
    /// UTF-8 content; or `contentBase64` for bytes.
    content: Option<String>,
    content_base64: Option<String>,
    #[serde(default)]
    at_users: Vec<String>,
    /// false: pushed but not stored and without a seq (typing, read marks).
    #[serde(default = "yes")]
    store: bool,
}

fn yes() -> bool {
    true
}

pub(crate) async fn send(
    State(app): State<Gateway>,
    Body(req): Body<SendRequest>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let sender = req
        .sender_id
        .as_deref()
        .map(UserId::parse)
        .transpose()
        .map_err(|e| bad(e.to_string()))?;
    let conv = ConvId::parse(&req.conv_id).map_err(|e| bad(e.to_string()))?;
    // A well-formed request from a sender who may not write here is refused as such
    // (403), not as malformed (400).
    if let Some(user) = &sender
        && !access::can_write(app.store.as_ref(), user, &conv).await?
    {
        return Err(ApiError(
            StatusCode::FORBIDDEN,
            format!("{user} may not send to {conv}"),
        ));
    }
    let mut list = Vec::with_capacity(req.messages.len());
    for (i, m) in req.messages.into_iter().enumerate() {
        let content = content(&format!("messages[{i}]"), m.content, m.content_base64)?;
        list.push(pb::MsgData {
            client_msg_id: m.client_msg_id.unwrap_or_default(),
            client_time: now_ms().to_string(),
            conv_id: req.conv_id.clone(),
            content_type: m.content_type,
            content: content.into(),
            at_users: m.at_users,
            options: Some(pb::msg_data::Options {
                storage_for_server: m.store,
                storage_for_client: m.store,
                update_conv_msg: m.store,
                update_unread_count: m.store,
                ..Default::default()
            }),
            ..Default::default()
        });
    }
    let due = send::due_at(req.deliver_after, now_ms())?;
    let count = list.len();
    let batches = send::validate(&app, sender.as_ref(), list).await?;
    let sender_s = sender.map(|u| u.to_string()).unwrap_or_default();
    send::append(&app, &sender_s, batches, due).await?;
    Ok(Json(serde_json::json!({ "accepted": count })))
}
