//! The one place where outcomes become wire frames: responses with their code and a
//! readable CommonResp message (push frames are in connections::frames).

use bytes::Bytes;
use prost::Message as _;

use crate::connections::frames::push;
use crate::proto::Code;
use crate::proto::pb::{self, ActiveEvent, PushEvent};

/// Why a request failed, as the client will see it.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Failure {
    /// The request is wrong; retrying it unchanged will fail again.
    #[error("{0}")]
    Request(String),
    /// Temporary: retry later (backend busy or down, rate limit).
    #[error("{0}")]
    Retry(String),
}

impl Failure {
    pub(crate) fn code(&self) -> Code {
        match self {
            Self::Request(_) => Code::RequestError,
            Self::Retry(_) => Code::RetryError,
        }
    }
}

impl From<crate::store::StoreError> for Failure {
    fn from(e: crate::store::StoreError) -> Self {
        Self::Retry(format!("storage temporarily unavailable: {e}"))
    }
}

impl From<crate::msglog::LogError> for Failure {
    fn from(e: crate::msglog::LogError) -> Self {
        Self::Retry(format!("message log temporarily unavailable: {e}"))
    }
}

/// A successful response carrying `data` (already the event's encoded payload).
pub(crate) fn success(event: ActiveEvent, req_id: &str, data: Bytes) -> Bytes {
    let body = pb::ResponseBody {
        event: event as i32,
        req_id: req_id.to_owned(),
        code: Code::Success as i32,
        data,
    };
    push(PushEvent::PushResponseBody, body.encode_to_vec())
}

/// A failed response. Every response payload has CommonResp at field 1, so one
/// encoding serves every event.
pub(crate) fn failure(event: i32, req_id: &str, f: &Failure) -> Bytes {
    let code = f.code();
    let data = pb::CustomResponseError {
        common_resp: Some(pb::CommonResp {
            code: code as i32,
            msg: Some(f.to_string()),
            data: Bytes::new(),
        }),
    };
    let body = pb::ResponseBody {
        event,
        req_id: req_id.to_owned(),
        code: code as i32,
        data: data.encode_to_vec().into(),
    };
    metrics::counter!("ferry_request_errors_total", "code" => code.as_str_name()).increment(1);
    push(PushEvent::PushResponseBody, body.encode_to_vec())
}

/// Human name of an event for logs and metrics.
pub(crate) fn event_name(event: i32) -> &'static str {
    ActiveEvent::try_from(event)
        .map(|e| e.as_str_name())
        .unwrap_or("Unknown")
}
