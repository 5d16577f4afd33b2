//! The local connection registry: this pod's sockets by user. Delivery never blocks:
//! a socket whose queue is full is a slow consumer and is closed, so one client can
//! never hold up fan-out to the others.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use bytes::Bytes;
use std::task::{Context, Poll};

use futures_util::task::AtomicWaker;
use tokio::sync::Notify;

use super::outbox::{Outbox, Pushed};

/// Close codes used by ferry, beside 3000 (authentication failed).
pub(crate) mod close {
    pub(crate) const AUTH_FAILED: u16 = 3000;
    pub(crate) const NORMAL: u16 = 1000;
    pub(crate) const GOING_AWAY: u16 = 1001;
    pub(crate) const POLICY: u16 = 1008;
    pub(crate) const TOO_BIG: u16 = 1009;
    pub(crate) const RESTARTING: u16 = 1012;
    pub(crate) const TRY_AGAIN_LATER: u16 = 1013;
}

/// One socket as the registry, its session and its request handlers share it: one
/// allocation per socket, so every holder has the ids without a copy of its own.
pub(crate) type Conn = Arc<Connection>;

#[derive(Debug)]
pub(crate) struct Connection {
    pub(crate) conn_id: String,
    pub(crate) user: String,
    pub(crate) platform: String,
    pub(crate) device_id: String,
    /// Frames waiting for the session to write them.
    pub(crate) outbox: Outbox,
    pub(crate) closer: Closer,
}

/// Closes one socket from anywhere, ahead of whatever is queued for it, and wakes
/// its session for a queued frame. The session waits on `poll_woken` alone: flags, a
/// waker slot and a `Notify` instead of a child of the shutdown token, whose every
/// poll takes the token tree's mutex (once per delivery and per ping) and whose node
/// costs ~100 bytes per socket. Shutdown reaches every socket through
/// `Registry::shut_down`.
#[derive(Debug, Default)]
pub(crate) struct Closer {
    closed: AtomicBool,
    why: Mutex<Option<(u16, String)>>,
    /// Set when the session is to look again: a frame was queued, or the socket is
    /// to close. It stays set while the session is busy, so no wake-up is lost.
    woke: AtomicBool,
    /// The session's waker. Lock-free, unlike a `Notify` (whose wait takes its mutex
    /// on every poll: each ping and each delivery polls it).
    session: AtomicWaker,
    /// Wakes a write stuck on a client that does not read once the socket is to close.
    abort: Notify,
}

impl Closer {
    /// The first reason given wins.
    pub(crate) fn close(&self, code: u16, reason: &str) {
        let mut why = self.why.lock().unwrap();
        if why.is_none() {
            *why = Some((code, reason.to_owned()));
        }
        drop(why);
        self.fire();
    }

    /// Closes without a reason of its own: the process is shutting down (1012).
    pub(crate) fn shut_down(&self) {
        self.fire();
    }

    fn fire(&self) {
        self.closed.store(true, Ordering::Release);
        self.wake();
        self.abort.notify_waiters();
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// A frame was queued for the session.
    pub(crate) fn frame_queued(&self) {
        self.wake();
    }

    fn wake(&self) {
        self.woke.store(true, Ordering::Release);
        self.session.wake();
    }

    /// Ready once a frame may have been queued, or the socket is to close, since it
    /// was last ready; otherwise wakes `cx` when that happens. Polled by one task (the
    /// session) at a time.
    pub(crate) fn poll_woken(&self, cx: &mut Context<'_>) -> Poll<()> {
        if self.woke.swap(false, Ordering::AcqRel) {
            return Poll::Ready(());
        }
        self.session.register(cx.waker());
        // Checked again after registering: a wake in between found no waker.
        if self.woke.swap(false, Ordering::AcqRel) {
            return Poll::Ready(());
        }
        Poll::Pending
    }

    /// `poll_woken` as a future, holding nothing but `self` (it is part of every
    /// idle session's future).
    pub(crate) fn woken(&self) -> impl std::future::Future<Output = ()> + '_ {
        std::future::poll_fn(|cx| self.poll_woken(cx))
    }

    /// Resolves once the socket is to close (for a write that may not finish).
    pub(crate) async fn closed(&self) {
        let aborted = self.abort.notified();
        tokio::pin!(aborted);
        // Registered before the flag is read: a close in between still wakes it.
        aborted.as_mut().enable();
        if self.is_closed() {
            return;
        }
        aborted.await
    }

    /// The code and reason the socket was closed with; None when it was closed by
    /// shutdown or is still open.
    pub(crate) fn why(&self) -> Option<(u16, String)> {
        self.why.lock().unwrap().clone()
    }
}

#[derive(Default)]
pub(crate) struct Registry {
    users: RwLock<HashMap<String, Vec<Conn>>>,
}

impl Registry {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    pub(crate) fn connection_count(&self) -> usize {
        self.users.read().unwrap().values().map(Vec::len).sum()
    }

    /// Adds `conn`; returns the local connections it displaces under `one_per_platform`
    /// (same platform) or always (same platform and device). None, and nothing
    /// changed, when the user would keep more than `per_user` sockets.
    pub(crate) fn insert(
        &self,
        conn: Conn,
        one_per_platform: bool,
        per_user: usize,
    ) -> Option<Vec<(Conn, bool)>> {
        let mut users = self.users.write().unwrap();
        let list = users.entry(conn.user.clone()).or_default();
        let replaces = |c: &Conn| {
            let same_platform = c.platform == conn.platform;
            let same_device = same_platform && c.device_id == conn.device_id;
            (
                same_device || (one_per_platform && same_platform),
                same_device,
            )
        };
        let kept = list.iter().filter(|c| !replaces(c).0).count();
        if kept >= per_user {
            if list.is_empty() {
                users.remove(&conn.user);
            }
            return None;
        }
        let mut displaced = Vec::new();
        list.retain(|c| match replaces(c) {
            (true, same_device) => {
                displaced.push((c.clone(), same_device));
                false
            }
            (false, _) => true,
        });
        list.push(conn);
        Some(displaced)
    }

    /// Removes a connection; true if it was still registered.
    pub(crate) fn remove(&self, user: &str, conn_id: &str) -> bool {
        let mut users = self.users.write().unwrap();
        let Some(list) = users.get_mut(user) else {
            return false;
        };
        let before = list.len();
        list.retain(|c| c.conn_id != conn_id);
        let removed = list.len() != before;
        if list.is_empty() {
            users.remove(user);
        }
        removed
    }

    pub(crate) fn conns(&self, user: &str) -> Vec<Conn> {
        self.users
            .read()
            .unwrap()
            .get(user)
            .cloned()
            .unwrap_or_default()
    }

    /// Closes every socket here for shutdown. A session registering after this
    /// sees the shutdown token cancelled and closes itself (`lifecycle::connected`).
    pub(crate) fn shut_down(&self) {
        for list in self.users.read().unwrap().values() {
            list.iter().for_each(|c| c.closer.shut_down());
        }
    }

    /// Whether `user` has a socket here.
    pub(crate) fn has(&self, user: &str) -> bool {
        self.users.read().unwrap().contains_key(user)
    }

    pub(crate) fn users(&self) -> Vec<String> {
        self.users.read().unwrap().keys().cloned().collect()
    }

    /// Queues `frame` on every socket of each of `users` under one read lock;
    /// returns how many sockets took it.
    pub(crate) fn deliver_all(&self, users: &[String], frame: &Bytes) -> usize {
        let map = self.users.read().unwrap();
        users
            .iter()
            .filter_map(|u| map.get(u))
            .flatten()
            .filter(|c| send_or_close(c, frame.clone()))
            .count()
    }

    /// Queues `frame` on every socket of `user`; returns how many took it. Runs under
    /// the read lock without copying the connections: queuing never waits, and this is
    /// the per-recipient step of every fan-out.
    pub(crate) fn deliver(&self, user: &str, frame: &Bytes) -> usize {
        let users = self.users.read().unwrap();
        let Some(list) = users.get(user) else {
            return 0;
        };
        list.iter()
            .filter(|c| send_or_close(c, frame.clone()))
            .count()
    }
}

/// Queues without waiting; a queue full in frames or in bytes closes the socket as a
/// slow consumer (its session then drops what is queued). A socket whose outbox is
/// closed takes nothing. The only lock taken is the outbox's own: this is the
/// per-recipient step of every fan-out.
pub(crate) fn send_or_close(c: &Connection, frame: Bytes) -> bool {
    match c.outbox.push(frame) {
        Pushed::Queued => {
            c.closer.frame_queued();
            true
        }
        Pushed::Closed => false,
        Pushed::Overflow => {
            slow_consumer(c);
            false
        }
    }
}

/// Closes `c` as a slow consumer (1013): its outbox overflowed, or a frame could not
/// be written within the write timeout. Counted and logged once per socket.
pub(crate) fn slow_consumer(c: &Connection) {
    if !c.closer.is_closed() {
        metrics::counter!("ferry_slow_consumer_disconnects_total").increment(1);
        tracing::warn!(user = %c.user, conn = %c.conn_id, "slow consumer disconnected");
    }
    c.closer.close(close::TRY_AGAIN_LATER, "slow consumer");
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn conn() -> Conn {
        Arc::new(Connection {
            conn_id: "c1".into(),
            user: "u1".into(),
            platform: "ios".into(),
            device_id: "d1".into(),
            outbox: Outbox::new(10, 1000),
            closer: Closer::default(),
        })
    }

    const WAIT: Duration = Duration::from_millis(500);

    #[tokio::test]
    async fn a_frame_or_a_close_before_the_wait_still_wakes_the_session() {
        let c = conn();
        assert!(send_or_close(&c, Bytes::from_static(b"early")));
        tokio::time::timeout(WAIT, c.closer.woken())
            .await
            .expect("the queued frame left a wake-up");
        c.closer.close(close::NORMAL, "bye");
        tokio::time::timeout(WAIT, c.closer.woken())
            .await
            .expect("the close left a wake-up");
        tokio::time::timeout(WAIT, c.closer.closed())
            .await
            .expect("closed resolves after the fact");
        assert_eq!(c.closer.why(), Some((close::NORMAL, "bye".into())));
    }

    #[tokio::test]
    async fn a_frame_queued_while_the_session_waits_wakes_it_once() {
        let c = conn();
        let waiting = c.clone();
        let session = tokio::spawn(async move { waiting.closer.woken().await });
        // The session is waiting (its waker registered) before the frame comes.
        tokio::task::yield_now().await;
        assert!(!session.is_finished());
        assert!(send_or_close(&c, Bytes::from_static(b"late")));
        tokio::time::timeout(WAIT, session)
            .await
            .expect("the queued frame woke the waiting session")
            .unwrap();
        // That wake-up was taken: the next wait waits for the next frame.
        let again = tokio::time::timeout(Duration::from_millis(50), c.closer.woken()).await;
        assert!(again.is_err(), "a wake-up is taken once");
    }

    #[tokio::test]
    async fn shutdown_reaches_every_registered_socket_and_a_blocked_write() {
        let r = Registry::new();
        let c = conn();
        assert!(r.insert(c.clone(), false, 5).is_some());
        let waiting = tokio::spawn({
            let c = c.clone();
            async move { c.closer.closed().await }
        });
        tokio::task::yield_now().await;
        r.shut_down();
        tokio::time::timeout(WAIT, waiting)
            .await
            .expect("the waiting write was woken")
            .unwrap();
        assert!(c.closer.is_closed());
        assert_eq!(c.closer.why(), None, "shutdown closes with 1012");
    }
}
