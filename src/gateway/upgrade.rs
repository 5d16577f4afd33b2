//! The WebSocket upgrade (RFC 6455 §4.2), done here instead of by axum's
//! `WebSocketUpgrade`: axum's task keeps the socket it hands to the callback next to
//! the callback's own copy, plus its configuration and the handshake's leftovers,
//! for the socket's whole life (≈ 500 bytes per idle socket). Here the handler
//! answers 101 and hands over an [`Pending`] upgrade; the session turns it into its
//! socket inside its own future, so the socket exists once.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};

/// An accepted socket.
pub(crate) type Socket = WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>;

/// An upgrade answered with 101 whose connection is not yet handed over.
pub(crate) struct Pending(OnUpgrade);

impl Pending {
    /// The socket, once the 101 has gone out; None when the connection went away.
    pub(crate) async fn socket(self, cfg: WebSocketConfig) -> Option<Socket> {
        let io = self.0.await.ok()?;
        Some(WebSocketStream::from_raw_socket(TokioIo::new(io), Role::Server, Some(cfg)).await)
    }
}

/// Why a handshake was refused: the status and body to answer with.
pub(crate) type Refusal = (StatusCode, &'static str);

/// Checks the handshake request; the 101 answer and the pending upgrade, or why not
/// (as axum answers: 405 for a method other than GET, 400 for a missing or wrong
/// header, 426 when the connection cannot be upgraded).
pub(crate) fn accept(req: &mut Request) -> Result<(Response, Pending), Refusal> {
    if req.method() != Method::GET {
        return Err((
            StatusCode::METHOD_NOT_ALLOWED,
            "WebSocket upgrade needs GET",
        ));
    }
    let h = req.headers();
    if !has_token(h, header::CONNECTION, "upgrade") {
        return Err(bad("Connection header did not include 'upgrade'"));
    }
    if !is(h, header::UPGRADE, "websocket") {
        return Err(bad("`Upgrade` header did not include 'websocket'"));
    }
    if !is(h, header::SEC_WEBSOCKET_VERSION, "13") {
        return Err(bad("`Sec-WebSocket-Version` header did not include '13'"));
    }
    let Some(key) = h.get(header::SEC_WEBSOCKET_KEY) else {
        return Err(bad("`Sec-WebSocket-Key` header missing"));
    };
    let accept = derive_accept_key(key.as_bytes());
    let Some(on_upgrade) = req.extensions_mut().remove::<OnUpgrade>() else {
        return Err((
            StatusCode::UPGRADE_REQUIRED,
            "WebSocket request couldn't be upgraded since no upgrade state was present",
        ));
    };
    let response = Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::CONNECTION, HeaderValue::from_static("upgrade"))
        .header(header::UPGRADE, HeaderValue::from_static("websocket"))
        .header(header::SEC_WEBSOCKET_ACCEPT, accept)
        .body(Body::empty())
        .map_err(|_| (StatusCode::INTERNAL_SERVER_ERROR, "bad handshake answer"))?;
    Ok((response, Pending(on_upgrade)))
}

fn bad(why: &'static str) -> Refusal {
    (StatusCode::BAD_REQUEST, why)
}

/// Whether header `name` equals `value`, ignoring ASCII case.
fn is(h: &HeaderMap, name: header::HeaderName, value: &str) -> bool {
    h.get(name)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(value.as_bytes()))
}

/// Whether header `name` lists `token` among its comma-separated values.
fn has_token(h: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    h.get_all(name).iter().any(|v| {
        v.to_str()
            .is_ok_and(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(headers: &[(&str, &str)]) -> Request {
        let mut b = Request::builder().method(Method::GET).uri("/ws");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(Body::empty()).unwrap()
    }

    const GOOD: [(&str, &str); 4] = [
        ("connection", "keep-alive, Upgrade"),
        ("upgrade", "WebSocket"),
        ("sec-websocket-version", "13"),
        ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ];

    #[test]
    fn each_missing_header_is_refused_with_400() {
        for (skip, (name, _)) in GOOD.iter().enumerate() {
            let headers: Vec<_> = GOOD
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != skip)
                .map(|(_, h)| *h)
                .collect();
            let status = accept(&mut request(&headers)).err().map(|r| r.0);
            assert_eq!(status, Some(StatusCode::BAD_REQUEST), "without {name}");
        }
    }

    #[test]
    fn a_request_hyper_cannot_upgrade_gets_426() {
        // Every header right, but no upgrade state (not served by hyper).
        let status = accept(&mut request(&GOOD)).err().map(|r| r.0);
        assert_eq!(status, Some(StatusCode::UPGRADE_REQUIRED));
    }
}
