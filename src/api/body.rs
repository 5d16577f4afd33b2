//! The JSON body of an API request. axum's own rejection answers in plain text with
//! serde's message; this answers `{"error": ...}` in ferry's words, with the same
//! status, and logs serde's message for the operator.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, OptionalFromRequest, Request};
use axum::http::StatusCode;

use super::ApiError;

/// A JSON body of type `T`.
pub(crate) struct Body<T>(pub(crate) T);

fn rejected(r: JsonRejection) -> ApiError {
    tracing::debug!(detail = %r.body_text(), "API request body rejected");
    let msg = match &r {
        JsonRejection::MissingJsonContentType(_) => {
            "expected a body with content-type: application/json"
        }
        JsonRejection::JsonSyntaxError(_) => "the body is not valid JSON",
        JsonRejection::JsonDataError(_) => {
            "the body does not have the fields and types this endpoint takes (see the API reference)"
        }
        _ if r.status() == StatusCode::PAYLOAD_TOO_LARGE => "the body is too large",
        _ => "the body could not be read",
    };
    ApiError(r.status(), msg.into())
}

impl<S, T> FromRequest<S> for Body<T>
where
    Json<T>: FromRequest<S, Rejection = JsonRejection>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        Json::<T>::from_request(req, state)
            .await
            .map(|Json(v)| Body(v))
            .map_err(rejected)
    }
}

/// No body at all (no content-type) is None; a body that is not `T` is an error.
impl<S, T> OptionalFromRequest<S> for Body<T>
where
    Json<T>: OptionalFromRequest<S, Rejection = JsonRejection>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Option<Self>, ApiError> {
        <Json<T> as OptionalFromRequest<S>>::from_request(req, state)
            .await
            .map(|o| o.map(|Json(v)| Body(v)))
            .map_err(rejected)
    }
}
