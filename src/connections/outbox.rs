//! One socket's outbound frames. Bounded in frames and in bytes, so a client that
//! stops reading holds at most `max_bytes` (plus the frame being written); allocates
//! nothing until the first frame is queued, and gives its buffer back when it has
//! drained a burst, so an idle socket carries a few words here, not a channel block.

use std::collections::VecDeque;
use std::sync::Mutex;

use bytes::Bytes;
use tokio::sync::Notify;

/// Slots kept after a queue drains; a larger buffer (left by a burst) is freed.
const KEEP_SLOTS: usize = 8;

#[derive(Debug)]
pub(crate) struct Outbox {
    queue: Mutex<Queue>,
    /// Wakes the socket's session when a frame is queued. `notify_one` keeps a
    /// permit when the session is busy, so a wake-up is never lost.
    ready: Notify,
}

#[derive(Debug)]
struct Queue {
    frames: VecDeque<Bytes>,
    bytes: usize,
    max_frames: usize,
    max_bytes: usize,
}

impl Outbox {
    pub(crate) fn new(max_frames: usize, max_bytes: usize) -> Self {
        Self {
            queue: Mutex::new(Queue {
                frames: VecDeque::new(),
                bytes: 0,
                max_frames,
                max_bytes,
            }),
            ready: Notify::new(),
        }
    }

    /// Queues `frame`; false (nothing queued) when that would pass the limit in
    /// frames or in bytes.
    pub(crate) fn push(&self, frame: Bytes) -> bool {
        let mut q = self.queue.lock().unwrap();
        let fits = q
            .bytes
            .checked_add(frame.len())
            .is_some_and(|total| total <= q.max_bytes);
        if !fits || q.frames.len() >= q.max_frames {
            return false;
        }
        q.bytes += frame.len();
        q.frames.push_back(frame);
        drop(q);
        self.ready.notify_one();
        true
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

    /// Drops everything queued (the socket is closing).
    pub(crate) fn clear(&self) {
        let mut q = self.queue.lock().unwrap();
        q.frames = VecDeque::new();
        q.bytes = 0;
    }

    /// Resolves once a frame may have been queued since the last call resolved.
    pub(crate) async fn ready(&self) {
        self.ready.notified().await
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn bounded_in_frames_and_in_bytes() {
        let by_frames = Outbox::new(2, 1 << 20);
        assert!(by_frames.push(Bytes::from_static(b"a")));
        assert!(by_frames.push(Bytes::from_static(b"b")));
        assert!(!by_frames.push(Bytes::from_static(b"c")), "third frame");
        assert_eq!(by_frames.pop().as_deref(), Some(&b"a"[..]));
        assert!(by_frames.push(Bytes::from_static(b"c")), "room again");

        let by_bytes = Outbox::new(100, 10);
        assert!(by_bytes.push(Bytes::from(vec![0; 6])));
        assert!(!by_bytes.push(Bytes::from(vec![0; 5])), "11 bytes > 10");
        assert!(by_bytes.push(Bytes::from(vec![0; 4])));
        by_bytes.pop();
        assert!(
            by_bytes.push(Bytes::from(vec![0; 6])),
            "popped bytes are free"
        );
    }

    #[test]
    fn a_drained_burst_gives_its_buffer_back() {
        let o = Outbox::new(1000, 1 << 20);
        for _ in 0..100 {
            assert!(o.push(Bytes::from_static(b"x")));
        }
        while o.pop().is_some() {}
        assert_eq!(o.queue.lock().unwrap().frames.capacity(), 0);
    }

    #[tokio::test]
    async fn a_frame_queued_before_the_wait_still_wakes_it() {
        let o = Outbox::new(10, 100);
        assert!(o.push(Bytes::from_static(b"early")));
        tokio::time::timeout(Duration::from_millis(200), o.ready())
            .await
            .expect("the push left a wake-up");
        assert_eq!(o.pop().as_deref(), Some(&b"early"[..]));
    }
}
