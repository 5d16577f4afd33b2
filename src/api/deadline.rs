//! Request bodies arrive within `server.body_read_timeout_secs`: the body of every
//! /api/v1 and /demo request is read in full under that deadline before the handler
//! runs, so a client that trickles its body (a byte every few seconds) is answered
//! 408 and its connection closed, instead of holding a task and a descriptor.

use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::ApiError;

/// Largest body read: axum's default body limit, which the JSON extractors apply
/// again to what is read here.
pub(crate) const MAX_BODY_BYTES: usize = 2 << 20;

/// Middleware: buffers the body within `timeout`, or answers 408 (413 when larger
/// than [`MAX_BODY_BYTES`]).
pub(crate) async fn read_within(
    State(timeout): State<Duration>,
    req: Request,
    next: Next,
) -> Response {
    let (parts, body) = req.into_parts();
    let read = axum::body::to_bytes(body, MAX_BODY_BYTES);
    let bytes = match tokio::time::timeout(timeout, read).await {
        Ok(Ok(b)) => b,
        Ok(Err(e)) => {
            // http-body-util's LengthLimitError, known by its text (not a dependency here).
            let too_large =
                std::iter::successors(Some(&e as &(dyn std::error::Error + 'static)), |e| {
                    e.source()
                })
                .any(|e| e.to_string() == "length limit exceeded");
            return if too_large {
                ApiError(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("the body is larger than {MAX_BODY_BYTES} bytes"),
                )
            } else {
                ApiError(StatusCode::BAD_REQUEST, "the body could not be read".into())
            }
            .into_response();
        }
        Err(_) => {
            metrics::counter!("ferry_body_read_timeouts_total").increment(1);
            let mut r = ApiError(
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "the request body did not arrive within {} s",
                    timeout.as_secs()
                ),
            )
            .into_response();
            // The rest of the body is never read: the connection cannot carry another request.
            r.headers_mut().insert(
                axum::http::header::CONNECTION,
                axum::http::HeaderValue::from_static("close"),
            );
            return r;
        }
    };
    next.run(Request::from_parts(parts, axum::body::Body::from(bytes)))
        .await
}
