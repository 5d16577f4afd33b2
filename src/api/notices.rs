//! POST /api/v1/notices: create a notice for one or many users.

use axum::Json;
use axum::extract::State;
use serde::Deserialize;

use super::body::Body;
use super::{ApiError, bad, content};
use crate::domain::{ConvId, Notice, UserId, now_ms};
use crate::gateway::Gateway;
use crate::pipeline::notices::{self, NoticeOver};
use crate::pipeline::router::PushPayload;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct CreateNotices {
    user_ids: Vec<String>,
    notice: ApiNotice,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct ApiNotice {
    conv_id: String,
    notice_id: String,
    #[serde(default)]
    title: String,
    #[serde(default)]
    content_type: i32,
    content: Option<String>,
    content_base64: Option<String>,
    #[serde(default)]
    unread_count: i32,
    #[serde(default)]
    unread_absolute: bool,
    #[serde(default)]
    storage_for_client: bool,
    #[serde(default)]
    update_conv_msg: bool,
    /// Push to online devices once and keep nothing.
    #[serde(default)]
    online_push_once: bool,
}

impl From<NoticeOver> for ApiError {
    fn from(e: NoticeOver) -> Self {
        bad(e.to_string())
    }
}

pub(crate) async fn create(
    State(app): State<Gateway>,
    Body(req): Body<CreateNotices>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let limits = &app.cfg.limits.notices;
    let max_users = limits.max_users_per_request;
    if req.user_ids.is_empty() || req.user_ids.len() > max_users {
        return Err(bad(format!(
            "userIds: 1..={max_users} users (limits.notices.max_users_per_request)"
        )));
    }
    let users = req
        .user_ids
        .iter()
        .map(|u| UserId::parse(u).map(|u| u.to_string()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(e.to_string()))?;
    let n = req.notice;
    ConvId::parse(&n.conv_id).map_err(|e| bad(e.to_string()))?;
    if n.notice_id.is_empty() || n.notice_id.contains('|') || n.notice_id.len() > 128 {
        return Err(bad("noticeId: 1..=128 characters, no '|'"));
    }
    let content = content("notice", n.content, n.content_base64)?;
    let notice = Notice {
        conv_id: n.conv_id,
        notice_id: n.notice_id,
        unread_count: n.unread_count,
        unread_absolute: n.unread_absolute,
        create_time_ms: now_ms(),
        title: n.title,
        content_type: n.content_type,
        content: content.into(),
        storage_for_client: n.storage_for_client,
        update_conv_msg: n.update_conv_msg,
        online_push_once: n.online_push_once,
        ext: Default::default(),
    };
    // Sizes are checked before the notice is copied to anyone: per notice, then the
    // fan-out (each user's copy is one record every gateway keeps), then per user.
    notices::check_notice(&notice, limits)?;
    let fanout = notices::notice_bytes(&notice).saturating_mul(users.len());
    if fanout > limits.max_fanout_bytes_per_request {
        return Err(bad(format!(
            "{} users × {} bytes is more than limits.notices.max_fanout_bytes_per_request ({}): send fewer users per request or a smaller notice",
            users.len(),
            notices::notice_bytes(&notice),
            limits.max_fanout_bytes_per_request
        )));
    }
    if notice.online_push_once {
        app.router
            .push(
                &users,
                PushPayload::Notices(std::slice::from_ref(&notice)),
                &[],
            )
            .await?;
        return Ok(Json(
            serde_json::json!({ "pushed": users.len(), "stored": 0 }),
        ));
    }
    for u in &users {
        app.notices.admit(u, &notice, limits)?;
    }
    let records = users
        .iter()
        .map(|u| notices::record(&app.topics, u, &notice))
        .collect();
    app.log.append(records).await?;
    Ok(Json(
        serde_json::json!({ "pushed": 0, "stored": users.len() }),
    ))
}
