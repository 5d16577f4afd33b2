//! The applied mark: per inbound partition, the offset below which every record is
//! applied to the store, kept as the committed offsets of a second consumer group
//! (`APPLIED_GROUP`) that no one consumes with.
//!
//! The sequencer's own committed offsets trail what it applied by the store's
//! durability horizon (`horizon.rs`), 10 s by default on CQL: they say where to read
//! again from, not what the store holds. Conversation discovery
//! (docs/conversation-discovery.md) lists a change once it is applied, so it reads
//! this mark (and the committed offsets, whichever is higher: the mark is written at
//! most every `APPLIED_EVERY`, and not at all on the embedded backend, whose horizon
//! is 0).
//!
//! What the mark claims: every record below it was applied, its writes acknowledged
//! by the store. A store that forgets its last writes (`horizon.rs`) makes the claim
//! false until those records are applied again: when the sequencer notices and
//! rewinds, the mark goes back with it to where reading resumes (the committed
//! offset) and then follows the re-applied records up. A process that starts on a
//! partition writes its own mark from where it resumes, likewise. Only each
//! partition's changes are written, so a partition this process no longer owns (its
//! mark frozen) does not overwrite its new owner's.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::msglog::MsgLog;

/// The consumer group whose committed offsets on the inbound topic are the applied
/// mark (prefixed like every group, `Topics::group`).
pub(crate) const APPLIED_GROUP: &str = "sequencer-applied";
/// How often the mark is published and written when it moved: a change becomes
/// discoverable about this long after it is applied.
pub(super) const APPLIED_EVERY: Duration = Duration::from_secs(1);

/// The sequencer's side: publishes the mark; a task writes what changed.
pub(super) struct AppliedMark {
    tx: watch::Sender<BTreeMap<i32, i64>>,
}

impl AppliedMark {
    /// Starts the writer of `group`'s offsets on `topic`; it stops on `cancel`.
    pub(super) fn spawn(
        log: Arc<dyn MsgLog>,
        group: String,
        topic: String,
        cancel: CancellationToken,
    ) -> Self {
        let (tx, rx) = watch::channel(BTreeMap::new());
        tokio::spawn(write(log, group, topic, rx, cancel));
        Self { tx }
    }

    /// The mark now, per partition (what `Progress::applied` says).
    pub(super) fn publish(&self, marks: impl IntoIterator<Item = (i32, i64)>) {
        let marks: BTreeMap<i32, i64> = marks.into_iter().collect();
        self.tx.send_if_modified(|m| {
            let changed = *m != marks;
            *m = marks;
            changed
        });
    }
}

/// Every `APPLIED_EVERY`, writes the partitions whose mark differs from what was
/// last written (a failed write is tried again at the next round).
async fn write(
    log: Arc<dyn MsgLog>,
    group: String,
    topic: String,
    rx: watch::Receiver<BTreeMap<i32, i64>>,
    cancel: CancellationToken,
) {
    let mut written: BTreeMap<i32, i64> = BTreeMap::new();
    let mut every = tokio::time::interval(APPLIED_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = every.tick() => {}
        }
        // The sequencer stopped.
        if rx.has_changed().is_err() {
            return;
        }
        let changed: Vec<(i32, i64)> = rx
            .borrow()
            .iter()
            .filter(|(p, o)| written.get(p) != Some(o))
            .map(|(p, o)| (*p, *o))
            .collect();
        if changed.is_empty() {
            continue;
        }
        match log.set_committed(&group, &topic, &changed).await {
            Ok(()) => written.extend(changed),
            Err(e) => {
                metrics::counter!("ferry_sequencer_applied_mark_failures_total").increment(1);
                tracing::warn!(error = %e, "writing the applied mark failed; trying again");
            }
        }
    }
}
