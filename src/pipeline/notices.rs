//! Notices: server-originated notifications a user must acknowledge. They live in the
//! compacted notices topic keyed `user|convId|noticeId` (the same key replaces, an ack
//! writes a tombstone); every gateway follows the topic into this book and pushes a
//! user's pending notices on connect, on arrival and again at an interval until acked.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use prost::Message as _;
use tokio_util::sync::CancellationToken;

use crate::config::NoticeLimits;
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

/// The bytes a notice counts for against `limits.notices.*`: its encoded size.
pub(crate) fn notice_bytes(n: &Notice) -> usize {
    pb::NoticeData::from(n).encoded_len()
}

/// Why a notice is not taken: over a per-notice or per-user limit. Each names the
/// configuration key.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum NoticeOver {
    #[error("notice title is {0} bytes, more than limits.notices.max_title_bytes ({1})")]
    Title(usize, usize),
    #[error("notice content is {0} bytes, more than limits.notices.max_content_bytes ({1})")]
    Content(usize, usize),
    #[error(
        "user {user} has {max} pending notices (limits.notices.max_pending_per_user): they must be acked first"
    )]
    Count { user: String, max: usize },
    #[error(
        "user {user}'s pending notices would take more than {max} bytes (limits.notices.max_pending_bytes_per_user): they must be acked first"
    )]
    Bytes { user: String, max: usize },
}

/// Checks one notice's own sizes, before it is copied to anyone.
pub(crate) fn check_notice(n: &Notice, limits: &NoticeLimits) -> Result<(), NoticeOver> {
    if n.title.len() > limits.max_title_bytes {
        return Err(NoticeOver::Title(n.title.len(), limits.max_title_bytes));
    }
    if n.content.len() > limits.max_content_bytes {
        return Err(NoticeOver::Content(
            n.content.len(),
            limits.max_content_bytes,
        ));
    }
    Ok(())
}

pub(crate) struct NoticeBook {
    pending: RwLock<Pending>,
    /// Per-user bounds, enforced again as records are applied: whatever wrote the
    /// record, a user's pending notices stay within them.
    limits: NoticeLimits,
}

impl NoticeBook {
    pub(crate) fn new(limits: NoticeLimits) -> Arc<Self> {
        Arc::new(Self {
            pending: RwLock::default(),
            limits,
        })
    }

    /// Whether `notice` may become pending for `user` within the per-user limits
    /// (a notice replacing one with the same ids counts once).
    pub(crate) fn admit(
        &self,
        user: &str,
        notice: &Notice,
        limits: &NoticeLimits,
    ) -> Result<(), NoticeOver> {
        let pending = self.pending.read().unwrap();
        fits(pending.get(user), user, notice, limits)
    }

    pub(crate) fn pending(&self, user: &str) -> Vec<Notice> {
        self.pending
            .read()
            .unwrap()
            .get(user)
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Whether (`conv`, `notice_id`) is pending for `user`.
    pub(crate) fn is_pending(&self, user: &str, conv: &str, notice_id: &str) -> bool {
        self.pending
            .read()
            .unwrap()
            .get(user)
            .is_some_and(|m| m.contains_key(&(conv.to_owned(), notice_id.to_owned())))
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
                if let Err(over) = check_notice(&n, &self.limits)
                    .and_then(|()| fits(pending.get(user), user, &n, &self.limits))
                {
                    metrics::counter!("ferry_notices_refused_total").increment(1);
                    tracing::warn!(error = %over, "notice record over the limits: not kept");
                    return None;
                }
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

/// Whether `notice` fits beside `mine` (a user's pending notices) within `limits`.
fn fits(
    mine: Option<&BTreeMap<(String, String), Notice>>,
    user: &str,
    notice: &Notice,
    limits: &NoticeLimits,
) -> Result<(), NoticeOver> {
    let Some(mine) = mine else {
        return if notice_bytes(notice) > limits.max_pending_bytes_per_user {
            Err(NoticeOver::Bytes {
                user: user.to_owned(),
                max: limits.max_pending_bytes_per_user,
            })
        } else {
            Ok(())
        };
    };
    let id = (notice.conv_id.clone(), notice.notice_id.clone());
    let replaced = mine.get(&id);
    if replaced.is_none() && mine.len() >= limits.max_pending_per_user {
        return Err(NoticeOver::Count {
            user: user.to_owned(),
            max: limits.max_pending_per_user,
        });
    }
    let bytes: usize = mine
        .iter()
        .filter(|(k, _)| **k != id)
        .map(|(_, n)| notice_bytes(n))
        .sum::<usize>()
        + notice_bytes(notice);
    if bytes > limits.max_pending_bytes_per_user {
        return Err(NoticeOver::Bytes {
            user: user.to_owned(),
            max: limits.max_pending_bytes_per_user,
        });
    }
    Ok(())
}

/// Largest notices frame pushed, bytes (a single larger notice goes alone): pending
/// notices leave in several frames, so the socket's queue, bounded in bytes, takes
/// them on connect however many there are (they are bounded per user to half of it).
pub(crate) const NOTICE_FRAME_BYTES: usize = 64 << 10;

/// Pushes every pending notice of `user` to their local sockets.
pub(crate) fn push_pending(book: &NoticeBook, registry: &Registry, user: &str) {
    let pending = book.pending(user);
    for frame in notice_frames(&pending) {
        registry.deliver(user, &frame);
    }
}

/// `pending` as notices frames of at most [`NOTICE_FRAME_BYTES`] each (one notice
/// larger than that alone in its frame), in order.
pub(crate) fn notice_frames(pending: &[Notice]) -> Vec<bytes::Bytes> {
    let mut frames = Vec::new();
    let mut start = 0;
    let mut bytes = 0;
    for (i, n) in pending.iter().enumerate() {
        let b = notice_bytes(n);
        if i > start && bytes + b > NOTICE_FRAME_BYTES {
            frames.push(frames::notices(&pending[start..i]));
            start = i;
            bytes = 0;
        }
        bytes += b;
    }
    if start < pending.len() {
        frames.push(frames::notices(&pending[start..]));
    }
    frames
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notice(id: &str, title_bytes: usize) -> Notice {
        Notice {
            conv_id: "notice:T".into(),
            notice_id: id.into(),
            unread_count: 1,
            unread_absolute: false,
            create_time_ms: 1,
            title: "t".repeat(title_bytes),
            content_type: 0,
            content: Default::default(),
            storage_for_client: false,
            update_conv_msg: false,
            online_push_once: false,
            ext: Default::default(),
        }
    }

    #[test]
    fn pending_notices_leave_in_frames_under_the_frame_size() {
        let pending: Vec<_> = (0..40).map(|i| notice(&i.to_string(), 10 << 10)).collect();
        let frames = notice_frames(&pending);
        assert!(frames.len() >= 6, "{} frames", frames.len());
        assert!(frames.iter().all(|f| f.len() <= NOTICE_FRAME_BYTES + 64));
        let big = notice_frames(&[notice("big", 100 << 10)]);
        assert_eq!(big.len(), 1);
        assert!(notice_frames(&[]).is_empty());
    }
}
