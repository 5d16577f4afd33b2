//! The server API for backends (not end users): send messages as a user or as the
//! system, create notices, manage group members, kick devices. JSON over HTTP,
//! bearer service token, described in schemas/openapi.yaml.

pub(crate) mod body;
pub(crate) mod deadline;
mod groups;
mod messages;
mod notices;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{post, put};

use std::sync::Arc;
use std::time::Duration;

use crate::gateway::Gateway;
use crate::gateway::wire::Failure;

/// The API routes, behind the service token; bodies are read within `body_timeout`
/// (after the token is checked).
pub(crate) fn router(service_token: Arc<str>, body_timeout: Duration) -> Router<Gateway> {
    Router::new()
        .route("/messages", post(messages::send))
        .route("/notices", post(notices::create))
        .route("/groups/{group}/members", axum::routing::get(groups::list))
        .route(
            "/groups/{group}/members/{user}",
            put(groups::add).delete(groups::remove),
        )
        .route("/users/{user}/kick", post(groups::kick))
        .route(
            "/users/{user}/presence",
            axum::routing::get(groups::presence),
        )
        .route_layer(middleware::from_fn_with_state(
            body_timeout,
            deadline::read_within,
        ))
        .route_layer(middleware::from_fn_with_state(service_token, service_auth))
}

/// Requires `Authorization: Bearer <api.service_token>`.
async fn service_auth(State(token): State<Arc<str>>, req: Request, next: Next) -> Response {
    let given = req
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if !constant_time_eq(given.as_bytes(), token.as_bytes()) {
        return ApiError(
            StatusCode::UNAUTHORIZED,
            "missing or wrong service token".into(),
        )
        .into_response();
    }
    next.run(req).await
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// An API error as JSON `{"error": "..."}` with the matching status.
pub(crate) struct ApiError(pub(crate) StatusCode, pub(crate) String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, axum::Json(serde_json::json!({ "error": self.1 }))).into_response()
    }
}

impl From<Failure> for ApiError {
    fn from(f: Failure) -> Self {
        let status = match f {
            Failure::Request(_) => StatusCode::BAD_REQUEST,
            Failure::Retry(_) => StatusCode::SERVICE_UNAVAILABLE,
            Failure::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Self(status, f.to_string())
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        Failure::from(e).into()
    }
}

impl From<crate::msglog::LogError> for ApiError {
    fn from(e: crate::msglog::LogError) -> Self {
        Failure::from(e).into()
    }
}

pub(crate) fn bad(msg: impl Into<String>) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, msg.into())
}

/// The bytes of a `content` (UTF-8 text) / `contentBase64` pair: at most one is given,
/// neither means empty. `field` names the object in the error message.
pub(crate) fn content(
    field: &str,
    text: Option<String>,
    base64: Option<String>,
) -> Result<Vec<u8>, ApiError> {
    use base64::Engine as _;
    match (text, base64) {
        (Some(s), None) => Ok(s.into_bytes()),
        (None, Some(b)) => base64::engine::general_purpose::STANDARD
            .decode(b)
            .map_err(|e| {
                tracing::debug!(field, error = %e, "contentBase64 rejected");
                bad(format!("{field}.contentBase64 is not valid base64"))
            }),
        (None, None) => Ok(Vec::new()),
        (Some(_), Some(_)) => Err(bad(format!(
            "{field}: give content or contentBase64, not both"
        ))),
    }
}
