//! The durability horizon: the store may forget, the log does not.
//!
//! A ScyllaDB or Cassandra node with `commitlog_sync: periodic` (their default)
//! acknowledges a write before it is on disk; killed, it comes back without the
//! writes of its last sync period (10 s by default), and a cluster does as well when
//! its replicas fail together. The log keeps every record, so the sequencer makes
//! the store a projection that heals:
//!
//! 1. *Offsets held back.* A record's offset is committed only once it was applied
//!    longer ago than the store's durability horizon (`Store::durability_horizon`,
//!    `scylla.durability_horizon_secs`, `progress.rs`). Whatever the store can still
//!    lose lies above the committed offsets, so whoever reads the partition next (this
//!    process after a rewind, or the next owner after a restart or a rebalance)
//!    applies it again.
//! 2. *Noticing.* When the store lost its connections (`Store::outages`: a node this
//!    process was connected to no longer is; it may come back without its last
//!    writes) or a lookup contradicts a lane's memory (a seq row behind the state the
//!    lane itself wrote), the lanes' memory is worthless: the `Alarm` rings, every
//!    write is refused from then on (checked before each one, `check_store`), the
//!    lanes stop, and the partitions are read again from the committed offsets
//!    (`rewind`) by new lanes with an empty memory, which read each conversation's
//!    state from the store as it now is.
//!
//! Why re-applying the window keeps the guarantees (see the sequencer's module docs
//! for 1.–4.): the store after a loss holds a prefix of the writes it acknowledged
//! (a commit log is replayed up to its last sync), so each conversation is as a
//! crash of its writer would have left it: records applied whole up to some point,
//! perhaps one partially. That is the state a new owner starts from after any crash,
//! and the argument there applies unchanged: a record whose seq row survived is
//! skipped or finished with the seqs it took; the first one whose row was lost is
//! sequenced from the surviving row, and since what a record writes is a pure
//! function of the records before it, it takes the very seqs it took the first time
//! and writes the very cells, with the same versions; so does every record after it.
//! The holes are filled with the original messages, and no seq is given to two
//! messages: the lost messages were the only ones that held those seqs, and no write
//! made with the old memory reaches the store after it came back (refused before the
//! write, and the lanes are stopped, their writes finished or failed, before the
//! rewind). Pushes of the re-applied records go out again with the same seqs and
//! messages: at-least-once, as always (clients drop a seq they hold).
//!
//! The cost: a restart (or a rebalance, or a rewind) re-applies up to a horizon of
//! records, and that many offsets are uncommitted at any time (BENCHMARKS.md).
//!
//! The embedded backend is unaffected: one process owns the store and syncs each
//! write's transaction before it returns, so its horizon is 0 and it never has an
//! outage; offsets are committed as soon as their records are applied.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::memory::Memory;
use super::progress::Progress;
use super::{LANE_QUEUE, LANES, Sequencer, lock};
use crate::msglog::{LogRecord, Subscription};
use crate::store::{ConvState, Store, StoreError};

/// How often the sequencer looks at the store's connections between writes.
pub(super) const LOOK_EVERY: Duration = Duration::from_millis(100);

/// Rings when the store may have forgotten writes made since the lanes started.
pub(super) struct Alarm {
    /// The store's outages when the lanes started.
    since: u64,
    /// A lane found the store behind its memory.
    raised: AtomicBool,
    /// The lanes' stop: a lane that finds the alarm rung stops them all (records
    /// failing give up, the run loop stops feeding them and rewinds).
    stop: CancellationToken,
}

impl Alarm {
    fn new(store: &dyn Store, stop: CancellationToken) -> Arc<Self> {
        Arc::new(Self {
            since: store.outages(),
            raised: AtomicBool::new(false),
            stop,
        })
    }

    /// Why the store may have forgotten, if it may have.
    pub(super) fn rung(&self, store: &dyn Store) -> Option<&'static str> {
        if self.raised.load(Ordering::Acquire) {
            Some("a seq row is behind what this process wrote")
        } else if store.outages() != self.since {
            Some("the store lost its connections")
        } else {
            None
        }
    }
}

/// Whether the store's seq row contradicts the state a lane remembers writing: it
/// is behind it (or gone), which only a store that lost acknowledged writes does
/// (writes carry their record's version, so a late write of an earlier record
/// loses to the lane's).
pub(super) fn contradicts(row: Option<&ConvState>, remembered: Option<&ConvState>) -> bool {
    match (row, remembered) {
        (None, Some(_)) => true,
        (Some(r), Some(m)) => r.max_seq < m.max_seq,
        _ => false,
    }
}

/// The lanes of one memory: a rewind stops them and starts new ones.
pub(super) struct Lanes {
    pub(super) senders: Vec<mpsc::Sender<(LogRecord, u64)>>,
    workers: Vec<tokio::task::JoinHandle<()>>,
    /// Cancelled on shutdown, or when the alarm rings: a failing record gives up.
    pub(super) stop: CancellationToken,
    pub(super) alarm: Arc<Alarm>,
}

impl Sequencer {
    pub(super) fn spawn_lanes(
        self: &Arc<Self>,
        done: &mpsc::UnboundedSender<(String, i32, i64)>,
        cancel: &CancellationToken,
    ) -> Lanes {
        let stop = cancel.child_token();
        let alarm = Alarm::new(self.store.as_ref(), stop.clone());
        let mut senders = Vec::with_capacity(LANES);
        let mut workers = Vec::with_capacity(LANES);
        for _ in 0..LANES {
            let (tx, rx) = mpsc::channel::<(LogRecord, u64)>(LANE_QUEUE);
            let memory = Memory::watched(alarm.clone());
            workers.push(tokio::spawn(self.clone().lane(
                rx,
                memory,
                done.clone(),
                stop.clone(),
            )));
            senders.push(tx);
        }
        Lanes {
            senders,
            workers,
            stop,
            alarm,
        }
    }

    /// Lets the lanes finish what they hold (on shutdown); what they finished is
    /// reported done.
    pub(super) async fn join_lanes(lanes: Lanes) {
        drop(lanes.senders);
        for w in lanes.workers {
            let _ = w.await;
        }
    }

    /// Refuses a write when the store may have forgotten what the lane's memory
    /// holds: the write would be made from a state the store no longer has.
    pub(super) fn check_store(&self, memory: &Mutex<Memory>) -> Result<(), StoreError> {
        let Some(alarm) = lock(memory).alarm.clone() else {
            return Ok(());
        };
        match alarm.rung(self.store.as_ref()) {
            Some(why) => {
                alarm.stop.cancel();
                Err(StoreError::Unavailable(format!(
                    "{why}: it may have forgotten its last writes; reading the log again"
                )))
            }
            None => Ok(()),
        }
    }

    /// A lookup found the store behind the lane's memory.
    pub(super) fn store_behind(&self, memory: &Mutex<Memory>, conv: &str) -> StoreError {
        if let Some(a) = &lock(memory).alarm {
            a.raised.store(true, Ordering::Release);
            a.stop.cancel();
        }
        tracing::warn!(
            conv,
            "the store's seq row is behind what this process wrote"
        );
        StoreError::Unavailable(format!("{conv}: the store is behind this process's memory"))
    }

    /// Stops the lanes (their writes finished or failed), forgets what was applied
    /// and not committed, reads each partition again from its committed offset, and
    /// starts new lanes with an empty memory. Returns the new lanes.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn rewind(
        self: &Arc<Self>,
        lanes: Lanes,
        why: &str,
        sub: &mut dyn Subscription,
        progress: &mut Progress,
        done_rx: &mut mpsc::UnboundedReceiver<(String, i32, i64)>,
        done: &mpsc::UnboundedSender<(String, i32, i64)>,
        cancel: &CancellationToken,
    ) -> anyhow::Result<Lanes> {
        let started = tokio::time::Instant::now();
        lanes.stop.cancel();
        Self::join_lanes(lanes).await;
        // Applied with the old memory: applied again, like everything uncommitted.
        while done_rx.try_recv().is_ok() {}
        let rewinds = progress.rewind();
        let mut records = 0;
        for r in &rewinds {
            sub.seek(&r.topic, r.partition, r.offset).await?;
            records += r.records;
        }
        metrics::counter!("ferry_sequencer_rewinds_total").increment(1);
        metrics::counter!("ferry_sequencer_reapplied_records_total").increment(records);
        tracing::warn!(
            why,
            partitions = rewinds.len(),
            reapplied = records,
            stopped_in_ms = started.elapsed().as_millis() as u64,
            "the store may have forgotten its last writes: memory dropped, partitions read again from their committed offsets, records re-applied"
        );
        Ok(self.spawn_lanes(done, cancel))
    }
}
