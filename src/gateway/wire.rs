//! The one place where outcomes become wire frames: responses with their code and a
//! readable CommonResp message (push frames are in connections::frames), and the
//! close code and reason of every socket ferry closes.

use bytes::Bytes;
use prost::Message as _;

use super::auth::AuthFailure;
use crate::connections::frames::push;
use crate::connections::registry::{Closer, close};
use crate::proto::Code;
use crate::proto::pb::{self, ActiveEvent, PushEvent};

/// Why a request failed, as the client will see it. Messages are ferry's own words:
/// a backend's or a library's error text is logged under an error id and never sent.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Failure {
    /// The request is wrong; retrying it unchanged will fail again.
    #[error("{0}")]
    Request(String),
    /// Temporary: retry later (backend busy or down, rate limit).
    #[error("{0}")]
    Retry(String),
    /// A fault on ferry's side that a retry cannot fix (e.g. a stored row that cannot
    /// be read).
    #[error("{0}")]
    Internal(String),
}

impl Failure {
    pub(crate) fn code(&self) -> Code {
        match self {
            Self::Request(_) => Code::RequestError,
            Self::Retry(_) => Code::RetryError,
            Self::Internal(_) => Code::InternalError,
        }
    }

    /// A request payload that does not decode as `what`. The decoder's own message
    /// is logged, not sent.
    pub(crate) fn malformed(what: &str, detail: &dyn std::fmt::Display) -> Self {
        tracing::debug!(what, detail = %detail, "malformed request payload");
        Self::Request(format!("malformed {what}: not a valid protobuf encoding"))
    }

    /// A fault on ferry's side (e.g. a signing key that does not sign): logged in
    /// full under a fresh error id; the client gets `what` and the id to quote.
    pub(crate) fn internal(what: &str, detail: &dyn std::fmt::Display) -> Self {
        Self::backend(what, detail, false)
    }

    /// A backend failure: logged in full under a fresh error id; the client gets
    /// `what` and the id to quote.
    fn backend(what: &str, detail: &dyn std::fmt::Display, retry: bool) -> Self {
        let id = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
        tracing::warn!(error_id = %id, error = %detail, "{what}");
        let msg = format!("{what} (error id {id})");
        if retry {
            Self::Retry(msg)
        } else {
            Self::Internal(msg)
        }
    }
}

impl From<crate::store::StoreError> for Failure {
    fn from(e: crate::store::StoreError) -> Self {
        use crate::store::StoreError as E;
        match &e {
            E::Unavailable(_) => Self::backend("storage temporarily unavailable, retry", &e, true),
            E::Corrupt(_) => Self::backend("stored data could not be read", &e, false),
            E::Invalid(_) => Self::backend("the value cannot be stored", &e, false),
        }
    }
}

/// Over an answer budget (bytes in flight of a connection, account or process).
impl From<crate::connections::budget::Over> for Failure {
    fn from(o: crate::connections::budget::Over) -> Self {
        Self::Retry(o.to_string())
    }
}

impl From<crate::msglog::LogError> for Failure {
    fn from(e: crate::msglog::LogError) -> Self {
        use crate::msglog::LogError as E;
        match &e {
            E::Timeout | E::Unavailable(_) | E::Closed => {
                Self::backend("message log temporarily unavailable, retry", &e, true)
            }
            E::UnknownTopic(_) | E::Refused(_) | E::Rejected(_) => {
                Self::backend("message log refused the request", &e, false)
            }
        }
    }
}

/// A successful response carrying `data` (already the event's encoded payload).
/// `event` is echoed as the client sent it.
pub(crate) fn success(event: i32, req_id: &str, data: Bytes) -> Bytes {
    let body = pb::ResponseBody {
        event,
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

/// Endpoint received data it cannot accept (RFC 6455 §7.4.1): bad framing, reserved
/// bits or opcodes, unmasked client frames, oversized control frames.
const PROTOCOL_ERROR: u16 = 1002;
/// A text message or close reason that is not valid UTF-8.
const INVALID_PAYLOAD: u16 = 1007;

/// Why ferry closes a socket. Close codes and reasons are chosen here; the one
/// exception is the slow-consumer close (1013), chosen in the connections registry,
/// which sits below the gateway and cannot depend on it.
#[derive(Debug, PartialEq)]
pub(crate) enum Closing<'a> {
    /// Authentication failed; the reason in the client's language.
    Auth(&'a AuthFailure, bool),
    /// The process holds `limits.max_connections` sockets.
    ServerFull,
    /// The user holds `limits.max_connections_per_user` sockets here.
    UserFull,
    /// A frame or message over `limits.max_frame_bytes`.
    TooBig,
    /// The client broke the WebSocket protocol (RFC 6455 §7.4.1, 1002).
    Protocol(&'static str),
    /// A text message or close reason that is not valid UTF-8 (1007).
    InvalidUtf8,
    /// Kept sending over its request rate after being refused (`gateway::limits`).
    Flooding,
    /// Closed for flooding moments ago (`gateway::cooldown`): may connect again in
    /// this many seconds.
    CoolingDown(u64),
    /// The account used `budgets.account_connects_per_minute` (`gateway::account`):
    /// may connect again in this many seconds.
    ConnectingTooOften(u64),
    /// No frame within `session.idle_timeout_secs`.
    Idle,
    /// The same device connected again.
    Duplicate,
    /// Kicked by the server API, or by one_per_platform.
    Kick,
    /// The process is shutting down.
    Restarting,
    /// The client went away or the session ended.
    Normal,
}

impl Closing<'_> {
    pub(crate) fn code(&self) -> u16 {
        match self {
            Self::Auth(..) => close::AUTH_FAILED,
            Self::ServerFull => close::TRY_AGAIN_LATER,
            Self::UserFull
            | Self::Flooding
            | Self::CoolingDown(_)
            | Self::ConnectingTooOften(_) => close::POLICY,
            Self::TooBig => close::TOO_BIG,
            Self::Protocol(_) => PROTOCOL_ERROR,
            Self::InvalidUtf8 => INVALID_PAYLOAD,
            Self::Idle | Self::Duplicate | Self::Normal => close::NORMAL,
            Self::Kick => close::GOING_AWAY,
            Self::Restarting => close::RESTARTING,
        }
    }

    pub(crate) fn reason(&self) -> String {
        match self {
            Self::Auth(f, zh) => f.reason(*zh),
            Self::ServerFull => "connection limit reached".into(),
            Self::UserFull => "too many connections for this user".into(),
            Self::TooBig => "frame too large".into(),
            Self::Protocol(what) => (*what).into(),
            Self::InvalidUtf8 => "invalid UTF-8".into(),
            Self::Flooding => "request rate limit exceeded".into(),
            Self::CoolingDown(secs) => {
                format!("request rate limit exceeded; connect again in {secs} s")
            }
            Self::ConnectingTooOften(secs) => {
                format!("too many connects for this account; connect again in {secs} s")
            }
            Self::Idle => "idle timeout".into(),
            Self::Duplicate => "duplicate connection".into(),
            Self::Kick => "kick".into(),
            Self::Restarting => "server restarting".into(),
            Self::Normal => String::new(),
        }
    }

    /// Closes `conn`'s socket for this reason.
    pub(crate) fn close(&self, closer: &Closer) {
        closer.close(self.code(), &self.reason());
    }

    /// As a (code, reason) pair, for Disconnect records and writers.
    pub(crate) fn pair(&self) -> (u16, String) {
        (self.code(), self.reason())
    }
}

impl Closing<'static> {
    /// Why to close after a failed read, told by the WebSocket error's type (never by
    /// its text), or None when the connection is gone and nothing can be sent
    /// (reset, EOF, already closed). A client's own Close is answered by the
    /// WebSocket layer itself, with the client's code, or 1002 for a code no endpoint
    /// may send.
    pub(crate) fn for_read_error(e: &tokio_tungstenite::tungstenite::Error) -> Option<Self> {
        use tokio_tungstenite::tungstenite::Error as WsError;
        use tokio_tungstenite::tungstenite::error::ProtocolError;
        match e {
            // Over `limits.max_frame_bytes` (a frame, or a message of many frames).
            WsError::Capacity(_) => Some(Self::TooBig),
            WsError::Utf8(_) => Some(Self::InvalidUtf8),
            WsError::Protocol(ProtocolError::InvalidCloseSequence) => {
                Some(Self::Protocol("invalid close sequence"))
            }
            WsError::Protocol(
                ProtocolError::ResetWithoutClosingHandshake | ProtocolError::SendAfterClosing,
            ) => None,
            WsError::Protocol(_) => Some(Self::Protocol("protocol error")),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreError;
    use tokio_tungstenite::tungstenite::Error as WsError;
    use tokio_tungstenite::tungstenite::error::{CapacityError, ProtocolError};

    fn read_error(e: WsError) -> Option<(u16, String)> {
        Closing::for_read_error(&e).map(|c| c.pair())
    }

    #[test]
    fn read_errors_close_by_their_type() {
        let too_long = WsError::Capacity(CapacityError::MessageTooLong {
            size: 2048,
            max_size: 1024,
        });
        assert_eq!(read_error(too_long), Some((1009, "frame too large".into())));
        assert_eq!(
            read_error(WsError::Utf8("invalid utf-8 sequence".into())).map(|p| p.0),
            Some(1007)
        );
        assert_eq!(
            read_error(WsError::Protocol(ProtocolError::UnmaskedFrameFromClient)),
            Some((1002, "protocol error".into()))
        );
        assert_eq!(
            read_error(WsError::Protocol(ProtocolError::InvalidCloseSequence)).map(|p| p.0),
            Some(1002)
        );
        for gone in [
            WsError::ConnectionClosed,
            WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake),
        ] {
            assert_eq!(read_error(gone), None);
        }
        // Told by the type, not the text: an I/O error saying "too long" is not 1009.
        let io = std::io::Error::other("message too long");
        assert_eq!(read_error(WsError::Io(io)), None);
    }

    #[test]
    fn backend_failures_keep_their_details_out_of_the_message() {
        let corrupt = Failure::from(StoreError::Corrupt("row 7: invalid wire type".into()));
        assert_eq!(corrupt.code(), Code::InternalError, "a retry cannot fix it");
        let down = Failure::from(StoreError::Unavailable(
            "Connection refused (os error 111)".into(),
        ));
        assert_eq!(down.code(), Code::RetryError);
        let log = Failure::from(crate::msglog::LogError::Unavailable("broker 1 down".into()));
        assert_eq!(log.code(), Code::RetryError);
        for (f, detail) in [
            (&corrupt, "wire type"),
            (&down, "os error"),
            (&log, "broker"),
        ] {
            let msg = f.to_string();
            assert!(!msg.contains(detail), "{msg}");
            assert!(msg.contains("error id "), "{msg}");
        }
        let m = Failure::malformed("SendMsgListReq", &"invalid varint");
        assert_eq!(m.code(), Code::RequestError);
        assert!(!m.to_string().contains("varint"));
    }
}
