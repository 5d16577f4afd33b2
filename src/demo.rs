//! The browser chat demo at `/demo`, and the two development endpoints it needs:
//! `POST /demo/token` mints a token for any user name, `POST /demo/notice` creates a
//! notice for a user. All of it exists only while ferry verifies tokens with its
//! generated development secret *and* listens on loopback: as soon as a key of any
//! kind is configured, or the listener is reachable from other machines, nobody may
//! mint tokens and `/demo` is not routed at all (`server.demo_beyond_loopback`
//! overrides the second, loudly). It answers only to a loopback Host.
//!
//! The page and its script are built by `clients/ts/scripts/bundle-demo.mjs` and
//! committed, so `cargo build` embeds them without needing npm.

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
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

/// The demo's routes, or None when they are off: a key of any kind is configured,
/// or the listener is not loopback (and `server.demo_beyond_loopback` is not set).
/// Every route answers only to a loopback Host (or `server.dev_allowed_hosts`), and
/// reads its body within `server.body_read_timeout_secs`.
pub(crate) fn router(app: &Gateway) -> Option<Router> {
    let cfg = &app.cfg;
    if !crate::secrets::dev_endpoints(cfg) {
        if cfg.auth.any_key() {
            return None;
        }
        tracing::warn!(
            listen = %cfg.server.listen,
            "no auth key configured on a non-loopback listener: tokens are signed with the \
             development secret, /demo and token minting are off; configure auth.* for production"
        );
        return None;
    }
    let secret = match crate::secrets::auth_dev_secret(cfg) {
        Ok(Some(s)) => s,
        Ok(None) => return None,
        Err(e) => {
            tracing::warn!(error = %e, "development secret unreadable: /demo is off");
            return None;
        }
    };
    if cfg.server.demo_beyond_loopback {
        tracing::error!(
            listen = %cfg.server.listen,
            "server.demo_beyond_loopback is set: /demo mints a token for ANY user to anyone who \
             reaches this listener; never use this outside a throwaway test setup"
        );
    } else {
        tracing::warn!(
            "development secret in use: /demo is on (loopback only) and mints tokens for any user; \
             configure auth.* to turn it off"
        );
    }
    let body_timeout = std::time::Duration::from_secs(cfg.server.body_read_timeout_secs);
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
            .route_layer(middleware::from_fn_with_state(
                body_timeout,
                crate::api::deadline::read_within,
            ))
            .route_layer(middleware::from_fn_with_state(app.clone(), host_allowed))
            .with_state(demo),
    )
}

/// Refuses a request whose Host is not loopback (or listed): a page on another site
/// that re-pointed its own name at this address reaches ferry with its name as Host.
async fn host_allowed(State(app): State<Gateway>, req: Request, next: Next) -> Response {
    if !crate::gateway::origin::dev_host_allowed(&app.cfg, req.headers()) {
        metrics::counter!("ferry_dev_host_refusals_total").increment(1);
        return (
            StatusCode::FORBIDDEN,
            Json(serde_json::json!({
                "error": "the development endpoints answer only to a loopback Host (see server.dev_allowed_hosts)"
            })),
        )
            .into_response();
    }
    next.run(req).await
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
    let max_title = MAX_TITLE.min(demo.app.cfg.limits.notices.max_title_bytes);
    if req.title.is_empty() || req.title.len() > max_title {
        return bad(format!("title: 1..={max_title} bytes"));
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
    if let Err(over) = app
        .notices
        .admit(user.as_str(), &notice, &app.cfg.limits.notices)
    {
        return ApiError::from(over).into_response();
    }
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
