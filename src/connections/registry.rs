//! The local connection registry: this pod's sockets by user. Delivery never blocks:
//! a socket whose queue is full is a slow consumer and is closed, so one client can
//! never hold up fan-out to the others.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use bytes::Bytes;
use tokio::sync::mpsc;

/// What a session's writer task sends.
#[derive(Debug)]
pub(crate) enum Outbound {
    Binary(Bytes),
}

impl Outbound {
    pub(crate) fn len(&self) -> usize {
        match self {
            Outbound::Binary(b) => b.len(),
        }
    }
}

/// Bytes queued for one socket, against its limit: the queue is bounded in bytes as
/// well as in frames, so a client that stops reading holds at most `limit` bytes.
#[derive(Clone, Debug)]
pub(crate) struct QueuedBytes {
    used: Arc<AtomicUsize>,
    limit: usize,
}

impl QueuedBytes {
    pub(crate) fn new(limit: usize) -> Self {
        Self {
            used: Arc::new(AtomicUsize::new(0)),
            limit,
        }
    }

    /// Reserves `n` bytes; false (nothing reserved) when that would pass the limit.
    fn reserve(&self, n: usize) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(n).filter(|total| *total <= self.limit)
            })
            .is_ok()
    }

    /// Gives back `n` bytes (the frame was written, or never queued).
    pub(crate) fn release(&self, n: usize) {
        self.used.fetch_sub(n, Ordering::AcqRel);
    }
}

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

#[derive(Clone, Debug)]
pub(crate) struct Conn {
    pub(crate) conn_id: String,
    pub(crate) user: String,
    pub(crate) platform: String,
    pub(crate) device_id: String,
    pub(crate) tx: mpsc::Sender<Outbound>,
    pub(crate) queued: QueuedBytes,
    pub(crate) closer: Closer,
}

/// Closes one socket from anywhere, ahead of whatever is queued for it.
#[derive(Clone, Debug, Default)]
pub(crate) struct Closer {
    token: tokio_util::sync::CancellationToken,
    why: Arc<std::sync::Mutex<Option<(u16, String)>>>,
}

impl Closer {
    /// The first reason given wins.
    pub(crate) fn close(&self, code: u16, reason: &str) {
        let mut why = self.why.lock().unwrap();
        if why.is_none() {
            *why = Some((code, reason.to_owned()));
        }
        self.token.cancel();
    }
    pub(crate) fn is_closed(&self) -> bool {
        self.token.is_cancelled()
    }
    pub(crate) async fn closed(&self) -> (u16, String) {
        self.token.cancelled().await;
        self.why
            .lock()
            .unwrap()
            .clone()
            .unwrap_or((close::NORMAL, String::new()))
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

    pub(crate) fn users(&self) -> Vec<String> {
        self.users.read().unwrap().keys().cloned().collect()
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
            .filter(|c| send_or_close(c, Outbound::Binary(frame.clone())))
            .count()
    }
}

/// Queues without waiting; a queue full in frames or in bytes closes the socket as a
/// slow consumer (its writer then drops what is queued).
pub(crate) fn send_or_close(c: &Conn, out: Outbound) -> bool {
    let n = out.len();
    if !c.queued.reserve(n) {
        slow_consumer(c);
        return false;
    }
    match c.tx.try_send(out) {
        Ok(()) => true,
        Err(mpsc::error::TrySendError::Full(_)) => {
            c.queued.release(n);
            slow_consumer(c);
            false
        }
        Err(mpsc::error::TrySendError::Closed(_)) => {
            c.queued.release(n);
            false
        }
    }
}

fn slow_consumer(c: &Conn) {
    if !c.closer.is_closed() {
        metrics::counter!("ferry_slow_consumer_disconnects_total").increment(1);
        tracing::warn!(user = %c.user, conn = %c.conn_id, "slow consumer disconnected");
    }
    c.closer.close(close::TRY_AGAIN_LATER, "slow consumer");
}
