//! Group members (with the minSeq a member starts from) and kicks.

use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;

use super::body::Body;
use super::{ApiError, bad};
use crate::domain::{ConvId, MAX_SEQ, UserId};
use crate::gateway::Gateway;
use crate::gateway::wire::Closing;
use crate::pipeline::records;
use crate::pipeline::router::PushPayload;
use crate::proto::records::{Disconnect, MemberChange};

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct AddMember {
    /// First seq the member may read; default: the group's next message.
    min_seq: Option<u64>,
}

fn ids(group: &str, user: &str) -> Result<(String, UserId), ApiError> {
    let conv = ConvId::parse(&format!("group:{group}")).map_err(|e| bad(e.to_string()))?;
    let user = UserId::parse(user).map_err(|e| bad(e.to_string()))?;
    Ok((conv.group_id().unwrap_or_default().to_owned(), user))
}

/// How long a member change may take to be applied before the call answers 202.
const APPLY_WITHIN: Duration = Duration::from_secs(5);
/// A sequencer in another process writes through its own store handle, which wakes
/// nobody here: the store is read again after this long without a local write.
const RECHECK_EVERY: Duration = Duration::from_millis(100);

/// Membership changes go through the inbound topic, ordered with the group's
/// messages; the call returns once the sequencer has applied it (the member's row
/// reads `want`), or 202 after `APPLY_WITHIN`.
async fn change(app: &Gateway, change: MemberChange, want: Option<u64>) -> Result<(), ApiError> {
    let (group, user) = (change.group_id.clone(), change.user_id.clone());
    // Subscribed before the append: a write that lands in between is not missed.
    let mut writes = app.store.member_writes();
    app.log
        .append(vec![records::member(&app.topics, change)])
        .await?;
    let deadline = tokio::time::Instant::now() + APPLY_WITHIN;
    loop {
        if app.store.member_uncached(&group, &user).await? == want {
            return Ok(());
        }
        let now = tokio::time::Instant::now();
        if now >= deadline {
            break;
        }
        let recheck = (now + RECHECK_EVERY).min(deadline);
        match writes.as_mut() {
            // A local membership write, any group: read this member's row again.
            Some(w) => {
                if let Ok(Err(_)) = tokio::time::timeout_at(recheck, w.changed()).await {
                    writes = None;
                }
            }
            None => tokio::time::sleep_until(recheck).await,
        }
    }
    Err(ApiError(
        StatusCode::ACCEPTED,
        "accepted; not yet applied (is a sequencer running?)".into(),
    ))
}

pub(crate) async fn add(
    State(app): State<Gateway>,
    Path((group, user)): Path<(String, String)>,
    body: Option<Body<AddMember>>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let (group, user) = ids(&group, &user)?;
    let min_seq = match body.and_then(|b| b.0.min_seq) {
        Some(s) if s > MAX_SEQ => return Err(bad(format!("minSeq must be at most {MAX_SEQ}"))),
        Some(s) => s,
        None => app
            .store
            .conv_state(&format!("group:{group}"))
            .await?
            .map_or(0, |s| s.max_seq + 1),
    };
    let rec = MemberChange {
        group_id: group,
        user_id: user.to_string(),
        removed: false,
        min_seq,
        min_seq_set: true,
    };
    change(&app, rec, Some(min_seq)).await?;
    Ok(Json(serde_json::json!({ "minSeq": min_seq })))
}

pub(crate) async fn remove(
    State(app): State<Gateway>,
    Path((group, user)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let (group, user) = ids(&group, &user)?;
    let rec = MemberChange {
        group_id: group,
        user_id: user.to_string(),
        removed: true,
        ..Default::default()
    };
    change(&app, rec, None).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(crate) async fn list(
    State(app): State<Gateway>,
    Path(group): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    ConvId::parse(&format!("group:{group}")).map_err(|e| bad(e.to_string()))?;
    let members: Vec<_> = app
        .store
        .members(&group)
        .await?
        .into_iter()
        .map(|(u, s)| serde_json::json!({ "userId": u, "minSeq": s }))
        .collect();
    Ok(Json(serde_json::json!({ "members": members })))
}

/// The pods that hold a socket of the user, as this pod's presence view sees them.
pub(crate) async fn presence(
    State(app): State<Gateway>,
    Path(user): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let user = UserId::parse(&user)
        .map_err(|e| bad(e.to_string()))?
        .to_string();
    let mut pods = app.presence.pods(&user);
    if !app.registry.conns(&user).is_empty() && !pods.contains(&app.cfg.pod) {
        pods.push(app.cfg.pod.clone());
    }
    pods.sort();
    Ok(Json(serde_json::json!({ "pods": pods })))
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct Kick {
    platform: Option<String>,
    device_id: Option<String>,
}

/// Closes the user's matching devices with 1001 "kick", on every pod.
pub(crate) async fn kick(
    State(app): State<Gateway>,
    Path(user): Path<String>,
    body: Option<Body<Kick>>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let user = UserId::parse(&user)
        .map_err(|e| bad(e.to_string()))?
        .to_string();
    let k = body.map(|b| b.0).unwrap_or_default();
    let (code, reason) = Closing::Kick.pair();
    let d = Disconnect {
        platform: k.platform.unwrap_or_default(),
        device_id: k.device_id.unwrap_or_default(),
        except_conn_id: String::new(),
        close_code: u32::from(code),
        reason,
    };
    let pods = app.presence.pods(&user).len();
    app.router
        .push(std::slice::from_ref(&user), PushPayload::Disconnect(d), &[])
        .await?;
    Ok(Json(serde_json::json!({ "pods": pods })))
}
