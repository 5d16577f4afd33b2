//! Server pings for silent sockets. Browsers cannot send WebSocket pings, but they
//! answer ours with a pong by themselves: a socket silent for half the idle timeout
//! is pinged, and any frame (the pong included) counts as activity. A socket that
//! stays silent for the rest of the timeout is closed. Native clients that ping every
//! few seconds are never silent long enough to be pinged.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

/// What to do when a read wait ran out.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Silence {
    /// Ask the writer to ping, and wait for the rest of the timeout.
    Ping,
    /// Nothing arrived for the whole timeout, ping included: close.
    Close,
}

/// The read side's view of one socket's liveness.
pub(crate) struct Keepalive {
    ping_after: Duration,
    rest: Duration,
    pinged: bool,
    /// Wakes the writer task to send a ping (it owns the sink). A permit is kept
    /// when the writer is busy, so a ping is never lost.
    ping: Arc<Notify>,
}

impl Keepalive {
    pub(crate) fn new(idle_timeout: Duration, ping: Arc<Notify>) -> Self {
        let ping_after = idle_timeout / 2;
        Self {
            ping_after,
            rest: idle_timeout - ping_after,
            pinged: false,
            ping,
        }
    }

    /// How long the next read may wait.
    pub(crate) fn wait(&self) -> Duration {
        if self.pinged {
            self.rest
        } else {
            self.ping_after
        }
    }

    /// A frame arrived (data, ping or pong): the socket is alive.
    pub(crate) fn on_frame(&mut self) {
        self.pinged = false;
    }

    /// The wait returned by `wait` ran out with nothing read.
    pub(crate) fn on_silence(&mut self) -> Silence {
        if self.pinged {
            return Silence::Close;
        }
        self.pinged = true;
        self.ping.notify_one();
        Silence::Ping
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silence_pings_once_then_closes_and_any_frame_resets() {
        let notify = Arc::new(Notify::new());
        let mut k = Keepalive::new(Duration::from_secs(60), notify);
        assert_eq!(k.wait(), Duration::from_secs(30));
        assert_eq!(k.on_silence(), Silence::Ping);
        assert_eq!(k.wait(), Duration::from_secs(30));
        k.on_frame();
        assert_eq!(k.on_silence(), Silence::Ping);
        assert_eq!(k.on_silence(), Silence::Close);
    }

    #[tokio::test]
    async fn a_ping_request_is_kept_until_the_writer_looks() {
        let notify = Arc::new(Notify::new());
        let mut k = Keepalive::new(Duration::from_secs(2), notify.clone());
        k.on_silence();
        tokio::time::timeout(Duration::from_millis(100), notify.notified())
            .await
            .expect("the ping request is stored");
    }
}
