//! The local connection registry: this pod's sockets by user. Delivery never blocks:
//! a socket whose queue is full is a slow consumer and is closed, so one client can
//! never hold up fan-out to the others.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use bytes::Bytes;
use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};

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

/// Closes one socket from anywhere, ahead of whatever is queued for it.
#[derive(Debug, Default)]
pub(crate) struct Closer {
    token: CancellationToken,
    why: Mutex<Option<(u16, String)>>,
}

impl Closer {
    /// A closer that also fires when `parent` (the process's shutdown token) is
    /// cancelled; `why` is then None.
    pub(crate) fn child_of(parent: &CancellationToken) -> Self {
        Self {
            token: parent.child_token(),
            why: Mutex::new(None),
        }
    }

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

    /// Resolves once the socket is to close.
    pub(crate) fn closed(&self) -> WaitForCancellationFuture<'_> {
        self.token.cancelled()
    }

    /// The code and reason the socket was closed with; None when it was closed by
    /// its parent token (shutdown) or is still open.
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
        Pushed::Queued => true,
        Pushed::Closed => false,
        Pushed::Overflow => {
            slow_consumer(c);
            false
        }
    }
}

/// Runs once per socket: the outbox overflows once, then is closed.
fn slow_consumer(c: &Connection) {
    if !c.closer.is_closed() {
        metrics::counter!("ferry_slow_consumer_disconnects_total").increment(1);
        tracing::warn!(user = %c.user, conn = %c.conn_id, "slow consumer disconnected");
    }
    c.closer.close(close::TRY_AGAIN_LATER, "slow consumer");
}
