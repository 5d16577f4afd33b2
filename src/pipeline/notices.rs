//! Notices: server-originated notifications a user must acknowledge. They live in the
//! compacted notices topic keyed `user|convId|noticeId` (the same key replaces, an ack
//! writes a tombstone); every gateway follows the topic into this book and pushes a
//! user's pending notices on connect, on arrival and again at an interval until acked.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use prost::Message as _;
use tokio_util::sync::CancellationToken;

use crate::connections::frames;
use crate::connections::registry::Registry;
use crate::domain::Notice;
use crate::msglog::{LogRecord, MsgLog, Outgoing, Topics};
use crate::proto::pb;
use crate::proto::records::NoticeRecord;

pub(crate) fn key(user: &str, conv: &str, notice_id: &str) -> String {
    format!("{user}|{conv}|{notice_id}")
}

/// The record that makes `notice` pending for `user`.
pub(crate) fn record(topics: &Topics, user: &str, notice: &Notice) -> Outgoing {
    let rec = NoticeRecord {
        user_id: user.to_owned(),
        notice: Some(pb::NoticeData::from(notice)),
    };
    Outgoing::new(
        topics.notices(),
        key(user, &notice.conv_id, &notice.notice_id),
        rec.encode_to_vec(),
    )
}

/// The tombstone that acks it.
pub(crate) fn ack(topics: &Topics, user: &str, conv: &str, notice_id: &str) -> Outgoing {
    Outgoing::tombstone(topics.notices(), key(user, conv, notice_id))
}

/// Pending notices by user, then by (convId, noticeId).
type Pending = HashMap<String, BTreeMap<(String, String), Notice>>;

#[derive(Default)]
pub(crate) struct NoticeBook {
    pending: RwLock<Pending>,
}

impl NoticeBook {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    pub(crate) fn pending(&self, user: &str) -> Vec<Notice> {
        self.pending
            .read()
            .unwrap()
            .get(user)
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default()
    }

    pub(crate) fn total(&self) -> usize {
        self.pending
            .read()
            .unwrap()
            .values()
            .map(BTreeMap::len)
            .sum()
    }

    /// Applies one record; returns the notice that became pending, and for whom.
    pub(crate) fn apply(&self, rec: &LogRecord) -> Option<(String, Notice)> {
        let key = String::from_utf8_lossy(&rec.key).into_owned();
        let mut parts = key.splitn(3, '|');
        let (user, conv, id) = (parts.next()?, parts.next()?, parts.next()?);
        let mut pending = self.pending.write().unwrap();
        match rec.value.as_deref() {
            None => {
                if let Some(m) = pending.get_mut(user) {
                    m.remove(&(conv.to_owned(), id.to_owned()));
                    if m.is_empty() {
                        pending.remove(user);
                    }
                }
                None
            }
            Some(v) => {
                let n = Notice::from(NoticeRecord::decode(v).ok()?.notice?);
                pending
                    .entry(user.to_owned())
                    .or_default()
                    .insert((conv.to_owned(), id.to_owned()), n.clone());
                Some((user.to_owned(), n))
            }
        }
    }
}

/// Follows the notices topic and pushes to local sockets; re-pushes at `interval`.
pub(crate) struct NoticeRole {
    pub(crate) log: Arc<dyn MsgLog>,
    pub(crate) topics: Topics,
    pub(crate) book: Arc<NoticeBook>,
    pub(crate) registry: Arc<Registry>,
    pub(crate) interval: Duration,
}

impl NoticeRole {
    pub(crate) async fn run(self, cancel: CancellationToken) -> anyhow::Result<()> {
        let mut sub = self.log.read_from_start(&self.topics.notices()).await?;
        let mut tick = tokio::time::interval(self.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return Ok(()),
                _ = tick.tick() => {
                    for user in self.registry.users() {
                        push_pending(&self.book, &self.registry, &user);
                    }
                }
                rec = sub.next() => {
                    if let Some((user, notice)) = self.book.apply(&rec?) {
                        self.registry.deliver(&user, &frames::notices(std::slice::from_ref(&notice)));
                    }
                    metrics::gauge!("ferry_notices_pending").set(self.book.total() as f64);
                }
            }
        }
    }
}

/// Pushes every pending notice of `user` to their local sockets.
pub(crate) fn push_pending(book: &NoticeBook, registry: &Registry, user: &str) {
    let pending = book.pending(user);
    if !pending.is_empty() {
        registry.deliver(user, &frames::notices(&pending));
    }
}
