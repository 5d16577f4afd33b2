//! Large frames leave in fragments (RFC 6455 §5.4: a Binary frame without FIN, then
//! Continuation frames). The WebSocket layer copies a frame into its write buffer
//! before writing it, and that buffer keeps its largest size for the socket's life:
//! a 4 MB answer written whole left every socket that ever got one holding 4 MB
//! (20 sockets of one account, 80 MB) after the answer was gone. In fragments the
//! buffer stays near one fragment, and the answer's own bytes (with the answer budget
//! they hold, `connections::budget`) are kept until the last fragment is taken.

use bytes::Bytes;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};

/// Largest fragment written at once.
pub(crate) const FRAGMENT_BYTES: usize = 64 << 10;

/// The first message to write for `frame`: the whole frame when it is small, else its
/// first fragment, with what is left in `rest`.
/// `rest` is boxed: it is part of the future every socket keeps, and is only Some
/// while a large frame is being written.
pub(crate) fn first(frame: Bytes, rest: &mut Option<Box<Bytes>>) -> WsMessage {
    if frame.len() <= FRAGMENT_BYTES {
        return WsMessage::Binary(frame);
    }
    let head = frame.slice(..FRAGMENT_BYTES);
    *rest = Some(Box::new(frame.slice(FRAGMENT_BYTES..)));
    WsMessage::Frame(Frame::message(head, OpCode::Data(Data::Binary), false))
}

/// The next fragment of what is left, the last one with FIN set; None when nothing is.
pub(crate) fn next(rest: &mut Option<Box<Bytes>>) -> Option<WsMessage> {
    let mut left = rest.take()?;
    let chunk = if left.len() > FRAGMENT_BYTES {
        let chunk = left.split_to(FRAGMENT_BYTES);
        *rest = Some(left);
        chunk
    } else {
        *left
    };
    let last = rest.is_none();
    Some(WsMessage::Frame(Frame::message(
        chunk,
        OpCode::Data(Data::Continue),
        last,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(m: &WsMessage) -> (usize, bool) {
        match m {
            WsMessage::Binary(b) => (b.len(), true),
            WsMessage::Frame(f) => (f.payload().len(), f.header().is_final),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn small_frames_go_whole_and_large_ones_in_fragments() {
        let mut rest = None;
        assert_eq!(
            payload(&first(Bytes::from(vec![1; 100]), &mut rest)),
            (100, true)
        );
        assert!(rest.is_none());
        let big = Bytes::from(vec![2; 2 * FRAGMENT_BYTES + 5]);
        let mut sizes = vec![payload(&first(big, &mut rest))];
        while let Some(m) = next(&mut rest) {
            sizes.push(payload(&m));
        }
        assert_eq!(
            sizes,
            [(FRAGMENT_BYTES, false), (FRAGMENT_BYTES, false), (5, true)]
        );
    }
}
