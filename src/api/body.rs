//! The JSON body of an API request. axum's own rejection answers in plain text with
//! serde's message; this answers `{"error": ...}` in ferry's words, with the same
//! status, and logs serde's message for the operator. A body must be a JSON object:
//! serde would otherwise read a struct from an array of its fields in order.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, OptionalFromRequest, Request};
use axum::http::StatusCode;
use serde::de::DeserializeOwned;
use serde_json::Value;

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
        JsonRejection::JsonDataError(_) => WRONG_SHAPE,
        _ if r.status() == StatusCode::PAYLOAD_TOO_LARGE => "the body is too large",
        _ => "the body could not be read",
    };
    ApiError(r.status(), msg.into())
}

const WRONG_SHAPE: &str =
    "the body does not have the fields and types this endpoint takes (see the API reference)";

/// The parsed JSON as `T`, if it is an object of `T`'s fields.
fn typed<T: DeserializeOwned>(v: Value) -> Result<Body<T>, ApiError> {
    if !v.is_object() {
        return Err(ApiError(
            StatusCode::UNPROCESSABLE_ENTITY,
            "the body must be a JSON object (see the API reference)".into(),
        ));
    }
    serde_json::from_value(v).map(Body).map_err(|e| {
        tracing::debug!(detail = %e, "API request body rejected");
        ApiError(StatusCode::UNPROCESSABLE_ENTITY, WRONG_SHAPE.into())
    })
}

impl<S, T> FromRequest<S> for Body<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let Json(v) = <Json<Value> as FromRequest<S>>::from_request(req, state)
            .await
            .map_err(rejected)?;
        typed(v)
    }
}

/// No body at all (no content-type) is None; a body that is not `T` is an error.
impl<S, T> OptionalFromRequest<S> for Body<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Option<Self>, ApiError> {
        match <Json<Value> as OptionalFromRequest<S>>::from_request(req, state)
            .await
            .map_err(rejected)?
        {
            Some(Json(v)) => typed(v).map(Some),
            None => Ok(None),
        }
    }
}
