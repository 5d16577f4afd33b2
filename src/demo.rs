//! The browser chat demo at `/demo`, and the two development endpoints it needs:
//! `POST /demo/token` mints a token for any user name, `POST /demo/notice` creates a
//! notice for a user. All of it exists only while ferry verifies tokens with its
//! generated development secret: as soon as a secret or key is configured, nobody
//! may mint tokens, and `/demo` is not routed at all.
//!
//! The page and its script are built by `clients/ts/scripts/bundle-demo.mjs` and
//! committed, so `cargo build` embeds them without needing npm.

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;

use crate::api::ApiError;
use crate::api::body::Body;
use crate::config::AuthConfig;
use crate::domain::{Notice, UserId, now_ms};
use crate::gateway::Gateway;
use crate::gateway::wire::Failure;
use crate::pipeline::notices;

const PAGE: &str = include_str!("../clients/ts/demo/index.html");
const SCRIPT: &str = include_str!("../clients/ts/demo/dist/demo.js");

/// Demo tokens live half a day: long enough for a session of trying things.
const TOKEN_TTL_SECS: u64 = 12 * 3600;
/// The conversation demo notices are filed under.
const NOTICE_CONV: &str = "notice:Demo";
/// Longest notice title the demo accepts (bytes).
const MAX_TITLE: usize = 200;

#[derive(Clone)]
struct Demo {
    app: Gateway,
    /// The generated development secret: the only key demo tokens are signed with.
    secret: std::sync::Arc<str>,
}

/// The demo's routes, or None when a secret or key is configured.
pub(crate) fn router(app: &Gateway) -> Option<Router> {
    let secret = match crate::secrets::auth_dev_secret(&app.cfg) {
        Ok(Some(s)) => s,
        Ok(None) => return None,
        Err(e) => {
            tracing::warn!(error = %e, "development secret unreadable: /demo is off");
            return None;
        }
    };
    tracing::warn!(
        "development secret in use: /demo is on and mints tokens for any user; configure auth.* to turn it off"
    );
    let demo = Demo {
        app: app.clone(),
        secret: secret.into(),
    };
    Some(
        Router::new()
            .route("/demo", get(page))
            .route("/demo/", get(page))
            .route("/demo/demo.js", get(script))
            .route("/demo/token", post(token))
            .route("/demo/notice", post(notice))
            .with_state(demo),
    )
}

async fn page() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        PAGE,
    )
        .into_response()
}

async fn script() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        SCRIPT,
    )
        .into_response()
}

fn bad(msg: impl Into<String>) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(serde_json::json!({ "error": msg.into() })),
    )
        .into_response()
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct TokenReq {
    user_id: String,
}

async fn token(State(demo): State<Demo>, Body(req): Body<TokenReq>) -> Response {
    let user = match UserId::parse(&req.user_id) {
        Ok(u) => u,
        Err(e) => return bad(e.to_string()),
    };
    // Signed with the development secret only, whatever signing key is configured.
    let auth = AuthConfig {
        signing_key_file: None,
        ..demo.app.cfg.auth.clone()
    };
    match crate::gateway::auth::mint(
        &auth,
        Some(&demo.secret),
        user.as_str(),
        TOKEN_TTL_SECS,
        &[],
    ) {
        Ok(t) => Json(serde_json::json!({ "userId": user.as_str(), "token": t })).into_response(),
        Err(e) => {
            ApiError::from(Failure::internal("the token could not be signed", &e)).into_response()
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct NoticeReq {
    user_id: String,
    title: String,
}

async fn notice(State(demo): State<Demo>, Body(req): Body<NoticeReq>) -> Response {
    let user = match UserId::parse(&req.user_id) {
        Ok(u) => u,
        Err(e) => return bad(e.to_string()),
    };
    if req.title.is_empty() || req.title.len() > MAX_TITLE {
        return bad(format!("title: 1..={MAX_TITLE} bytes"));
    }
    let notice = Notice {
        conv_id: NOTICE_CONV.into(),
        notice_id: uuid::Uuid::new_v4().simple().to_string(),
        unread_count: 1,
        unread_absolute: false,
        create_time_ms: now_ms(),
        title: req.title,
        content_type: 0,
        content: Default::default(),
        storage_for_client: false,
        update_conv_msg: false,
        online_push_once: false,
        ext: Default::default(),
    };
    let app = &demo.app;
    let record = notices::record(&app.topics, user.as_str(), &notice);
    match app.log.append(vec![record]).await {
        Ok(()) => Json(serde_json::json!({
            "userId": user.as_str(),
            "convId": notice.conv_id,
            "noticeId": notice.notice_id,
        }))
        .into_response(),
        Err(e) => ApiError::from(e).into_response(),
    }
}
