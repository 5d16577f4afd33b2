//! One socket's outbound frames. Bounded in frames and in bytes, so a client that
//! stops reading holds at most `max_bytes` (plus the frame being written); allocates
//! nothing until the first frame is queued, and gives its buffer back when it has
//! drained a burst, so an idle socket carries a few words here, not a channel block.
//! It also knows when its socket is closing: a full queue or the session's end
//! closes it, and the fan-out's check is the one lock it takes anyway.

use std::collections::VecDeque;
use std::sync::Mutex;

use bytes::Bytes;

/// Slots kept after a queue drains; a larger buffer (left by a burst) is freed.
const KEEP_SLOTS: usize = 8;

#[derive(Debug)]
pub(crate) struct Outbox {
    queue: Mutex<Queue>,
}

#[derive(Debug)]
struct Queue {
    frames: VecDeque<Bytes>,
    bytes: usize,
    max_frames: usize,
    max_bytes: usize,
    /// Takes nothing more: it overflowed, or its session is ending.
    closed: bool,
}

/// What became of a pushed frame.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Pushed {
    Queued,
    /// It would pass the limit in frames or bytes: nothing queued, and the outbox is
    /// closed from now on (the socket is a slow consumer).
    Overflow,
    /// The socket is closing.
    Closed,
}

impl Outbox {
    pub(crate) fn new(max_frames: usize, max_bytes: usize) -> Self {
        Self {
            queue: Mutex::new(Queue {
                frames: VecDeque::new(),
                bytes: 0,
                max_frames,
                max_bytes,
                closed: false,
            }),
        }
    }

    /// Queues `frame` unless the outbox is closed or the frame would pass the limit
    /// in frames or in bytes (which closes it).
    pub(crate) fn push(&self, frame: Bytes) -> Pushed {
        let mut q = self.queue.lock().unwrap();
        if q.closed {
            return Pushed::Closed;
        }
        let fits = q
            .bytes
            .checked_add(frame.len())
            .is_some_and(|total| total <= q.max_bytes);
        if !fits || q.frames.len() >= q.max_frames {
            q.closed = true;
            return Pushed::Overflow;
        }
        q.bytes += frame.len();
        q.frames.push_back(frame);
        Pushed::Queued
    }

    /// The oldest queued frame, if any.
    pub(crate) fn pop(&self) -> Option<Bytes> {
        let mut q = self.queue.lock().unwrap();
        let frame = q.frames.pop_front()?;
        q.bytes -= frame.len();
        if q.frames.is_empty() && q.frames.capacity() > KEEP_SLOTS {
            q.frames = VecDeque::new();
        }
        Some(frame)
    }

    /// Drops everything queued and takes nothing more (the socket is closing).
    pub(crate) fn close(&self) {
        let mut q = self.queue.lock().unwrap();
        q.closed = true;
        q.frames = VecDeque::new();
        q.bytes = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn push(o: &Outbox, frame: impl Into<Bytes>) -> Pushed {
        o.push(frame.into())
    }

    #[test]
    fn bounded_in_frames_and_in_bytes_and_closed_by_overflow() {
        let by_frames = Outbox::new(2, 1 << 20);
        assert_eq!(push(&by_frames, &b"a"[..]), Pushed::Queued);
        assert_eq!(by_frames.pop().as_deref(), Some(&b"a"[..]));
        assert_eq!(push(&by_frames, &b"b"[..]), Pushed::Queued);
        assert_eq!(push(&by_frames, &b"c"[..]), Pushed::Queued, "room again");
        assert_eq!(push(&by_frames, &b"d"[..]), Pushed::Overflow, "third frame");
        by_frames.pop();
        assert_eq!(
            push(&by_frames, &b"e"[..]),
            Pushed::Closed,
            "an overflowed socket takes nothing more"
        );

        let by_bytes = Outbox::new(100, 10);
        assert_eq!(push(&by_bytes, vec![0; 6]), Pushed::Queued);
        by_bytes.pop();
        assert_eq!(
            push(&by_bytes, vec![0; 6]),
            Pushed::Queued,
            "popped bytes are free"
        );
        assert_eq!(push(&by_bytes, vec![0; 4]), Pushed::Queued);
        assert_eq!(
            push(&by_bytes, vec![0; 1]),
            Pushed::Overflow,
            "11 bytes > 10"
        );
    }

    #[test]
    fn a_closed_outbox_frees_its_frames_and_takes_nothing() {
        let o = Outbox::new(10, 100);
        assert_eq!(push(&o, &b"a"[..]), Pushed::Queued);
        o.close();
        assert_eq!(o.pop(), None);
        assert_eq!(push(&o, &b"b"[..]), Pushed::Closed);
    }

    #[test]
    fn a_drained_burst_gives_its_buffer_back() {
        let o = Outbox::new(1000, 1 << 20);
        for _ in 0..100 {
            assert_eq!(push(&o, &b"x"[..]), Pushed::Queued);
        }
        while o.pop().is_some() {}
        assert_eq!(o.queue.lock().unwrap().frames.capacity(), 0);
    }
}
