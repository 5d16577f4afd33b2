//! Server pings for silent sockets. Browsers cannot send WebSocket pings, but they
//! answer ours with a pong by themselves: a socket silent for half the idle timeout
//! is pinged, and any frame (the pong included) counts as activity. A socket that
//! stays silent for the rest of the timeout is closed. Native clients that ping every
//! few seconds are never silent long enough to be pinged.
//!
//! A frame only records the time: the session's one timer is not re-armed per
//! frame, it wakes at the deadline it was last given and asks `on_timer` what is due,
//! so a socket that pings every two seconds costs no timer-wheel work per ping.

use std::time::Duration;

use tokio::time::Instant;

/// What the timer found due.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Silence {
    /// Ping the client, and wait for the rest of the timeout.
    Ping,
    /// Nothing arrived for the whole timeout, ping included: close.
    Close,
}

/// One socket's liveness.
pub(crate) struct Keepalive {
    ping_after: Duration,
    rest: Duration,
    last_frame: Instant,
    pinged_at: Option<Instant>,
}

impl Keepalive {
    pub(crate) fn new(idle_timeout: Duration, now: Instant) -> Self {
        let ping_after = idle_timeout / 2;
        Self {
            ping_after,
            rest: idle_timeout - ping_after,
            last_frame: now,
            pinged_at: None,
        }
    }

    /// When something is next due, if no frame arrives before.
    pub(crate) fn deadline(&self) -> Instant {
        match self.pinged_at {
            Some(at) => at + self.rest,
            None => self.last_frame + self.ping_after,
        }
    }

    /// A frame arrived (data, ping or pong): the socket is alive.
    pub(crate) fn on_frame(&mut self, now: Instant) {
        self.last_frame = now;
        self.pinged_at = None;
    }

    /// The timer fired at `now`: what is due, if anything (a frame may have moved the
    /// deadline since the timer was set).
    pub(crate) fn on_timer(&mut self, now: Instant) -> Option<Silence> {
        if now < self.deadline() {
            return None;
        }
        if self.pinged_at.is_some() {
            return Some(Silence::Close);
        }
        self.pinged_at = Some(now);
        Some(Silence::Ping)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silence_pings_once_then_closes_and_any_frame_resets() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut k = Keepalive::new(s(60), t0);
        assert_eq!(k.deadline(), t0 + s(30));
        assert_eq!(k.on_timer(t0 + s(29)), None, "not due yet");
        assert_eq!(k.on_timer(t0 + s(30)), Some(Silence::Ping));
        assert_eq!(k.deadline(), t0 + s(60));
        assert_eq!(k.on_timer(t0 + s(45)), None);
        k.on_frame(t0 + s(50));
        assert_eq!(k.on_timer(t0 + s(60)), None, "the frame moved the deadline");
        assert_eq!(k.deadline(), t0 + s(80));
        assert_eq!(k.on_timer(t0 + s(80)), Some(Silence::Ping));
        assert_eq!(k.on_timer(t0 + s(110)), Some(Silence::Close));
    }
}
