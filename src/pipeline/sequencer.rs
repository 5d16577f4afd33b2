//! The sequencer role: a consumer group on the inbound topic. Per conversation it
//! assigns seqs 1, 2, 3, … with no gaps and no duplicates, stores the messages,
//! commits the offset only after the store write, then hands them to the router.
//!
//! # Why no compare-and-set is needed
//!
//! After a rebalance a zombie that still believes it owns a partition may keep
//! writing, and a redelivered record may be applied twice. Earlier versions fenced
//! both with a lightweight transaction (a Paxos round) on the conversation's seq row
//! per record. Now the store is a pure projection of the log instead:
//!
//! 1. *Deterministic.* What a record writes is a pure function of the
//!    conversation's records before it (`stamping::plan`/`stamp`: seqs follow the
//!    previous max_seq, serverTime is the record's timestamp, retries and edits
//!    follow the clientMsgId index). Two processes applying the same record from
//!    the same state write the very same cells.
//! 2. *Versioned.* Every cell is written with the version of the record that
//!    produced it, its log position (`store::version`; on ScyllaDB the write
//!    timestamp). Last-write-wins then keeps, for each cell, the write of the
//!    latest record whatever order the writes arrive in: a zombie's late write of
//!    record r loses to the owner's write of any later record, and equals the
//!    owner's write of r itself.
//! 3. *Applied in order, row last.* A lane applies a conversation's records one at
//!    a time, in log order, each one's writes finished before the next starts; the
//!    seq row (max_seq and the record that took seqs `first_seq..=max_seq`) is
//!    written after the record's messages, members and index. So any write of a
//!    record r' proves every earlier record of the conversation was applied whole
//!    by the same writer, and a seq row naming r proves r was.
//! 4. *Conversations apart, written together.* Nothing in 1.–3. relates two
//!    conversations: state, claim, versions and row are each one conversation's.
//!    So a lane applies what it has queued as a wave (`lane`, `wave.rs`): one chain
//!    per key (a conversation; a group's member changes carry the group's key),
//!    applied in steps, step k taking the k-th record of every chain. A step's
//!    records are of different conversations; their writes go as one
//!    `Store::write`, in its three phases (messages and members of all of them,
//!    then all their index cells, then all their seq rows, on ScyllaDB as unlogged
//!    batches), and their pushes as one append; step k+1 starts only when step k's
//!    writes are all made. Per conversation that is 3. exactly: one record at a
//!    time, in log order, row last. A crash mid-step leaves, per conversation of
//!    the step, a prefix of its record's phases (some or all messages, then some
//!    index cells; a row only once every message and index cell of the step is
//!    written), which is the state a crash of a lone record can leave: the next
//!    owner's lookups find those cells `written_by` the record itself (`own`) and
//!    rewrite the very same cells (1.), or its seq row names the record and it is
//!    re-applied with the seqs it took. A zombie stalled mid-step holds records of
//!    several conversations instead of one; for each, its late writes are the
//!    owner's own writes of that record (1.) or lose to a later record's (2.).
//!    A record whose step fails is applied again on its own, with retries, the
//!    same way. Offsets are committed only below the oldest record of the
//!    partition not yet applied whole (`progress.rs`), whatever order steps and
//!    records finish in.
//!
//! Hence every writer's state before a record is the right one, by induction: a
//! lane starts from the seq row (the state after a record applied whole; records
//! up to it are skipped, the one it names is re-applied with the seqs it took),
//! then keeps the state in memory (`memory.rs`) while it reads the partition
//! without a break. When a lookup finds a cell written by a *later* record than the
//! one at hand, someone is ahead: the record was applied before that write, so it
//! is skipped and the state read again from the row (`Outcome::Behind`). A cell
//! written by the record at hand is its own partial earlier application (the
//! writer died or stalled before the row), not a retry (`own`).
//!
//! So a zombie can only write what the rightful owner writes (same record, same
//! state, same cells, same versions) or lose to it (an earlier record's version
//! is lower than any later record's write to the same cell). The embedded backend
//! has a single writer by construction (its files are locked by one process) and
//! applies each record's writes in one transaction.
//!
//! A record that arrives while another is partially applied: the owner's lookups
//! see the partial writes as its own (same offset) and finish them; what it
//! computes is identical, as 1. says.
//!
//! The store may forget: a database that acknowledges writes before they are on
//! disk (ScyllaDB's and Cassandra's default periodic commit log) comes back from a
//! crash without its last seconds. So offsets are committed only for records
//! applied longer ago than the store's durability horizon, and when the store lost
//! its connections, or a seq row is behind what a lane wrote, the lanes drop their
//! memory and the partitions are read again from the committed offsets. Re-applying
//! keeps all of the above: the store then holds what a crash of its writer leaves,
//! from which records take the very seqs they took before and rewrite the very same
//! cells (deterministic, versioned); their pushes go out again with the same seqs
//! (at-least-once). `horizon.rs` has the argument; the embedded backend (one
//! process, each write synced) has a horizon of 0.
//!
//! Assumptions and limits: a conversation's records stay in one partition (the
//! inbound topic's partition count is fixed; offsets order versions only within a
//! partition). A delayed batch's membership check reads the members as stored when
//! it is sequenced, not as of its log position: a zombie and the owner applying it on
//! either side of a member change of the same group could decide differently.
//!
//! Retries and edits: a message whose (convId, senderId, clientMsgId) is stored with
//! the same content gets no new seq; different content updates the original and is
//! appended with a new seq.
//!
//! Offline hand-off: before the message write, messages for recipients the routing
//! hook counts as offline are appended to the offline topic; `handoff.rs` explains
//! why there and how a redelivery avoids a second event.

pub(crate) mod applied;
mod horizon;
mod memory;
mod progress;
mod wave;

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use futures_util::future::try_join_all;

use self::applied::{APPLIED_EVERY, APPLIED_GROUP, AppliedMark};
use self::horizon::LOOK_EVERY;
use self::memory::{Epochs, Memory};
use self::progress::Progress;
use super::handoff;
use super::records::{self, Inbound};
use super::router::{PushPayload, PushRouter};
use super::routing::Route;
use super::stamping::{Stamped, plan, stamp};
use crate::access;
use crate::backoff;
use crate::domain::{ConvId, Message};
use crate::msglog::{LogRecord, MsgLog, Outgoing, Topics};
use crate::proto::records::{MemberChange, MessageBatch, PushRecord};
use crate::store::{
    Claim, ConvState, MemberWrite, MessageWrite, RowWrite, Step, Store, StoreError, Stored, Writes,
    convs, version,
};

/// Conversations sequenced concurrently by one process; a conversation always maps to
/// the same lane, so its records are applied in log order. A wave step waits on a few
/// store round trips and a push append (no store lock is held), so throughput is
/// about lanes × records per step / step latency.
const LANES: usize = 128;
/// Records queued per lane before reading the log waits.
const LANE_QUEUE: usize = 64;

fn lane_of(key: &[u8]) -> usize {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    key.hash(&mut h);
    (h.finish() % LANES as u64) as usize
}

/// Records a lane takes from its queue as one wave.
const WAVE: usize = LANE_QUEUE;
/// Records of a wave step that failed together retried one at a time, at most this
/// many at once (a wave step itself holds at most `WAVE`).
const CHAINS: usize = 16;

/// Splits a wave into chains by key, each in log order, chains in order of their
/// first record.
fn chains(wave: Vec<(LogRecord, u64)>) -> Vec<Vec<(LogRecord, u64)>> {
    let mut index: std::collections::HashMap<bytes::Bytes, usize> =
        std::collections::HashMap::new();
    let mut chains: Vec<Vec<(LogRecord, u64)>> = Vec::new();
    for (rec, epoch) in wave {
        let i = *index.entry(rec.key.clone()).or_insert_with(|| {
            chains.push(Vec::new());
            chains.len() - 1
        });
        chains[i].push((rec, epoch));
    }
    chains
}

/// Offsets are committed at most this long after their record was applied…
const CHECKPOINT_EVERY: Duration = Duration::from_millis(20);
/// …or after this many records, whichever comes first.
const CHECKPOINT_RECORDS: usize = 1000;
/// A failed store write or flush is retried after 100 ms more per attempt, at most 5 s.
const RETRY_STEP: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(5);

pub(crate) struct Sequencer {
    pub(crate) log: Arc<dyn MsgLog>,
    pub(crate) store: Arc<dyn Store>,
    pub(crate) topics: Topics,
    pub(crate) router: PushRouter,
    /// Hand off messages for offline recipients (`offline.enabled`).
    pub(crate) offline: bool,
    /// Records being retried, for readiness (`stalls.rs`).
    pub(crate) stalls: super::stalls::Stalls,
    /// What a dead letter may carry of its original (`budget.rs`).
    pub(crate) budget: crate::budget::Budget,
}

/// What a record's pass over its conversation's state decided.
enum Outcome {
    /// To apply (or found applied): its writes, the conversation's new state when it
    /// took seqs, and its pushes once written (None: nothing to push, and no
    /// "written" fault point, as for a record skipped before its writes).
    Apply {
        writes: Writes,
        next: Option<ConvState>,
        pushes: Option<Box<Pushes>>,
    },
    /// The store holds a write of a later record of the conversation: this one was
    /// applied before it, and this process's state is behind.
    Behind,
}

impl Outcome {
    fn nothing() -> Self {
        Outcome::Apply {
            writes: Writes::default(),
            next: None,
            pushes: None,
        }
    }
}

/// A record's effect, computed from its conversation's state and not yet written:
/// `apply_in` writes one on its own, a wave step (`wave.rs`) writes its chains'
/// together.
#[derive(Default)]
struct Prepared {
    writes: Writes,
    /// The state to remember once written: (conv, partition, epoch, state).
    remember: Option<(String, i32, u64, ConvState)>,
    pushes: Option<Box<Pushes>>,
}

/// The live pushes of a record, appended once its writes are made.
struct Pushes {
    /// What was written, for the log: (offset, first seq, redo, messages); None when
    /// the record wrote nothing.
    written: Option<(i64, u64, bool, usize)>,
    conv: ConvId,
    sender: String,
    route: Option<Route>,
    push: Vec<Message>,
    echo: Vec<Message>,
}

/// A lane's memory; a panic elsewhere cannot leave it half updated (each call is one
/// map operation), so a poisoned lock is taken as is.
fn lock(memory: &Mutex<Memory>) -> MutexGuard<'_, Memory> {
    memory.lock().unwrap_or_else(|e| e.into_inner())
}

impl Sequencer {
    pub(crate) async fn run(self, cancel: CancellationToken) -> anyhow::Result<()> {
        let this = Arc::new(self);
        let mut sub = this
            .log
            .subscribe(&this.topics.group("sequencer"), &[this.topics.inbound()])
            .await?;
        let (done_tx, mut done_rx) = mpsc::unbounded_channel::<(String, i32, i64)>();
        let mut lanes = this.spawn_lanes(&done_tx, &cancel);
        // Offsets are committed a durability horizon behind (`horizon.rs`).
        let mut progress = Progress::new(this.store.durability_horizon());
        let mut epochs = Epochs::default();
        let mut since: Option<tokio::time::Instant> = None;
        let mut last_checkpoint = tokio::time::Instant::now();
        let mut look = tokio::time::interval(LOOK_EVERY);
        look.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // What is applied, for discovery, when commits trail it (`applied.rs`).
        let mark = (!this.store.durability_horizon().is_zero()).then(|| {
            AppliedMark::spawn(
                this.log.clone(),
                this.topics.group(APPLIED_GROUP),
                this.topics.inbound(),
                cancel.child_token(),
            )
        });
        let mut publish = tokio::time::interval(APPLIED_EVERY);
        publish.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            // Soon after records are done, and when held-back ones pass the horizon.
            let held = progress
                .next_due()
                .map(|t| t.max(last_checkpoint + CHECKPOINT_EVERY));
            let due = match (since.map(|t| t + CHECKPOINT_EVERY), held) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = tokio::time::sleep_until(due.unwrap_or_else(tokio::time::Instant::now)), if due.is_some() => {
                    if !this.checkpoint(&mut *sub, &mut progress, &cancel).await? {
                        break;
                    }
                    since = None;
                    last_checkpoint = tokio::time::Instant::now();
                }
                _ = look.tick() => {
                    if let Some(why) = lanes.alarm.rung(this.store.as_ref()) {
                        lanes = this
                            .rewind(lanes, why, &mut *sub, &mut progress, &mut done_rx, &done_tx, &cancel)
                            .await?;
                        since = None;
                        if let Some(m) = &mark {
                            m.publish(progress.applied());
                        }
                    }
                }
                _ = publish.tick(), if mark.is_some() => {
                    if let Some(m) = &mark {
                        m.publish(progress.applied());
                    }
                }
                Some((topic, partition, offset)) = done_rx.recv() => {
                    progress.done(topic, partition, offset);
                    since.get_or_insert_with(tokio::time::Instant::now);
                    if progress.done_since_checkpoint >= CHECKPOINT_RECORDS {
                        if !this.checkpoint(&mut *sub, &mut progress, &cancel).await? {
                            break;
                        }
                        since = None;
                    }
                }
                rec = sub.next() => {
                    let rec = rec?;
                    progress.start(&rec);
                    let epoch = epochs.next(&rec);
                    // One conversation, one lane: its records stay in order.
                    let lane = lane_of(&rec.key);
                    // A full lane waits on the store; the alarm is still looked at.
                    let permit = loop {
                        tokio::select! {
                            p = lanes.senders[lane].reserve() => break Some(p),
                            // Stopping for a rewind, which reads this record again.
                            _ = lanes.stop.cancelled() => break None,
                            _ = look.tick() => {
                                if lanes.alarm.rung(this.store.as_ref()).is_some() {
                                    lanes.stop.cancel();
                                }
                            }
                        }
                    };
                    match permit {
                        Some(Ok(p)) => p.send((rec, epoch)),
                        Some(Err(_)) if !lanes.stop.is_cancelled() => break,
                        _ => {}
                    }
                }
            }
        }
        // Lanes finish the record in hand (or give up on cancel); what they finished
        // longer ago than the horizon is committed, the rest is read again by the
        // next owner.
        Self::join_lanes(lanes).await;
        while let Ok((topic, partition, offset)) = done_rx.try_recv() {
            progress.done(topic, partition, offset);
        }
        this.checkpoint(&mut *sub, &mut progress, &cancel).await?;
        sub.flush_commits().await?;
        Ok(())
    }

    /// Applies one lane's records, each retried until it is applied (a store outage
    /// pauses its conversation and resumes without loss), and reports each as done.
    ///
    /// The lane takes whatever has queued (up to `WAVE` records) as one wave: the
    /// wave's records are split into chains by key (one conversation, or one group
    /// with its member changes), and the chains applied together in steps, one
    /// record of each chain per step (`wave.rs`): a step's store writes are one
    /// `Store::write` and its pushes one append, instead of one record's round trips
    /// after another's. Chains share nothing the safety argument relies on: every
    /// step of it (state, claim, versions, the row written last) is about one
    /// conversation, and a conversation is one key.
    async fn lane(
        self: Arc<Self>,
        mut rx: mpsc::Receiver<(LogRecord, u64)>,
        memory: Memory,
        done: mpsc::UnboundedSender<(String, i32, i64)>,
        cancel: CancellationToken,
    ) {
        let memory = Mutex::new(memory);
        let mut wave = Vec::with_capacity(WAVE);
        let mut in_flight = None;
        loop {
            // Nothing more queued: the last step's records are reported done before
            // the lane waits, not whenever the next record comes.
            if rx.is_empty()
                && let Some(f) = in_flight.take()
            {
                self.settle(f, &done).await;
            }
            if rx.recv_many(&mut wave, WAVE).await == 0 {
                break;
            }
            metrics::histogram!("ferry_sequencer_wave_records").record(wave.len() as f64);
            let chains = chains(std::mem::take(&mut wave));
            if !self
                .wave(chains, &memory, &done, &cancel, &mut in_flight)
                .await
            {
                break;
            }
        }
        if let Some(f) = in_flight.take() {
            self.settle(f, &done).await;
        }
    }

    /// Applies one record on its own until it is applied, or dead-lettered when it
    /// can never be. False when cancelled while it was still failing (not done, not
    /// committed).
    async fn retry(
        &self,
        rec: &LogRecord,
        epoch: u64,
        span: &tracing::Span,
        memory: &Mutex<Memory>,
        cancel: &CancellationToken,
    ) -> bool {
        let mut attempt = 0u32;
        loop {
            let res = match self
                .apply_in(rec, epoch, memory)
                .instrument(span.clone())
                .await
            {
                // Retrying cannot help (a value the store refuses, a record the log
                // refuses): the record leaves the lane for the dead-letter topic
                // instead of stalling the records behind it.
                Err(StoreError::Invalid(why)) => {
                    self.dead_letter(rec, &why).instrument(span.clone()).await
                }
                res => res,
            };
            match res {
                Ok(()) => {
                    self.stalls.cleared(rec.partition, rec.offset);
                    return true;
                }
                Err(e) => {
                    attempt += 1;
                    self.stalls.failed(rec.partition, rec.offset);
                    metrics::counter!("ferry_sequencer_retries_total").increment(1);
                    tracing::warn!(error = %e, attempt, offset = rec.offset, partition = rec.partition, "sequencing failed; retrying");
                    if !backoff::wait(cancel, backoff::linear(RETRY_STEP, RETRY_MAX, attempt)).await
                    {
                        return false;
                    }
                }
            }
        }
    }

    /// Makes the applied writes durable, then commits every partition up to the last
    /// record below which everything is applied: commit after the write. False when
    /// cancelled while the store was unreachable (nothing committed; the records are
    /// read again after a restart).
    async fn checkpoint(
        &self,
        sub: &mut dyn crate::msglog::Subscription,
        progress: &mut Progress,
        cancel: &CancellationToken,
    ) -> anyhow::Result<bool> {
        if !progress.any_committable() {
            progress.done_since_checkpoint = 0;
            metrics::gauge!("ferry_sequencer_held_back_records").set(progress.held_back() as f64);
            return Ok(true);
        }
        let mut attempt = 0u32;
        while let Err(e) = self.store.flush().await {
            attempt += 1;
            tracing::warn!(error = %e, attempt, "store flush failed; retrying");
            if !backoff::wait(cancel, backoff::linear(RETRY_STEP, RETRY_MAX, attempt)).await {
                return Ok(false);
            }
        }
        for rec in progress.committable() {
            sub.commit(&rec)?;
        }
        metrics::gauge!("ferry_sequencer_held_back_records").set(progress.held_back() as f64);
        Ok(true)
    }

    /// Applies one record on its own, with the conversation's state read from the
    /// store.
    pub(crate) async fn apply(&self, rec: &LogRecord) -> Result<(), StoreError> {
        self.apply_in(rec, 0, &Mutex::new(Memory::default())).await
    }

    /// Applies one record with a lane's memory of its conversations' states, valid
    /// while `epoch` (the partition's, see `run`) is unchanged.
    async fn apply_in(
        &self,
        rec: &LogRecord,
        epoch: u64,
        memory: &Mutex<Memory>,
    ) -> Result<(), StoreError> {
        let mut p = self.prepare(rec, epoch, memory).await?;
        if !p.writes.is_empty() {
            let writes = std::mem::take(&mut p.writes);
            self.write(&writes, &[], memory).await?;
        }
        let pushes = self.complete(p, memory).await;
        self.append_pushes(self.router.coalesce(pushes)).await;
        Ok(())
    }

    /// What a record writes, from its conversation's state (remembered, or read from
    /// the seq row); nothing is written yet, but a dead letter or an offline hand-off
    /// (which precede the write) are made.
    async fn prepare(
        &self,
        rec: &LogRecord,
        epoch: u64,
        memory: &Mutex<Memory>,
    ) -> Result<Prepared, StoreError> {
        match records::read_inbound(rec) {
            Inbound::Messages(b) => self.sequence(rec, b, epoch, memory).await,
            Inbound::Member(m) => Ok(Prepared {
                writes: Self::member(rec, m),
                ..Prepared::default()
            }),
            Inbound::Undecodable => {
                self.dead_letter(rec, "undecodable inbound record").await?;
                Ok(Prepared::default())
            }
        }
    }

    /// Makes `writes` (one record's, or a wave step's records' together), under a
    /// span in the current record's trace that links to the other records' (`also`).
    /// Refused when the store may have forgotten what the lane's memory holds
    /// (`horizon.rs`).
    async fn write(
        &self,
        writes: &Writes,
        also: &[tracing::Span],
        memory: &Mutex<Memory>,
    ) -> Result<(), StoreError> {
        self.check_store(memory)?;
        let span = tracing::info_span!(
            "store.write",
            otel.name = "store write",
            messages = writes.messages.len(),
            rows = writes.rows.len()
        );
        for other in also {
            span.follows_from(other);
        }
        self.store.write(writes).instrument(span).await
    }

    /// What follows a prepared record's writes once they are made: its memory, and
    /// its push records (returned, for the caller to append with others).
    async fn complete(&self, p: Prepared, memory: &Mutex<Memory>) -> Vec<(String, PushRecord)> {
        let Some(pushes) = p.pushes else {
            return Vec::new();
        };
        if let Some((offset, first, redo, n)) = pushes.written {
            tracing::debug!(conv = %pushes.conv, offset, first, redo, n, "written");
        }
        // Written, offset not yet committed, nothing pushed: redelivery must not
        // sequence these again.
        crate::faults::point("sequencer.written").await;
        if let Some((conv, partition, epoch, state)) = p.remember {
            lock(memory).set(&conv, partition, epoch, Some(state));
        }
        self.push_records(pushes).await
    }

    /// Sets `rec` aside on the dead-letter topic; an error when that append failed
    /// (the caller retries the record rather than lose it).
    async fn dead_letter(&self, rec: &LogRecord, why: &str) -> Result<(), StoreError> {
        let o = records::dead_letter(&self.topics, rec, why, self.budget.record_max());
        self.log.append(vec![o]).await.map_err(|e| {
            tracing::warn!(error = %e, offset = rec.offset, "dead-letter append failed");
            StoreError::Unavailable(format!("dead-letter topic: {e}"))
        })?;
        metrics::counter!("ferry_dead_letters_total").increment(1);
        tracing::error!(
            offset = rec.offset,
            partition = rec.partition,
            why,
            "record sent to the dead-letter topic"
        );
        Ok(())
    }

    fn member(rec: &LogRecord, m: MemberChange) -> Writes {
        let w = MemberWrite {
            group: m.group_id,
            user: m.user_id,
            min_seq: (!m.removed).then_some(m.min_seq),
            version: version(rec.offset, Step::New),
        };
        // The member's entry in the conversation index (store::convs).
        let at = (rec.partition, rec.offset, rec.timestamp_ms);
        let entry = convs::member(&w.group, &w.user, w.min_seq, at, w.version);
        Writes {
            members: vec![w],
            convs: vec![entry],
            ..Writes::default()
        }
    }

    async fn sequence(
        &self,
        rec: &LogRecord,
        batch: MessageBatch,
        epoch: u64,
        memory: &Mutex<Memory>,
    ) -> Result<Prepared, StoreError> {
        let Ok(conv) = ConvId::parse(&batch.conv_id) else {
            self.dead_letter(rec, "invalid convId").await?;
            return Ok(Prepared::default());
        };
        let delayed = batch.due_at_ms > 0;
        let msgs: Vec<Message> = batch.msgs.into_iter().map(Message::from).collect();
        let conv_s = conv.to_string();
        // Only this conversation's chain touches its entry; the lock is never held
        // across an await.
        let remembered = lock(memory).get(&conv_s, rec.partition, epoch);
        let from_memory = remembered.is_some();
        let state = match remembered {
            Some(s) => s,
            None => {
                let s = self.load(&conv_s).await?;
                lock(memory).set(&conv_s, rec.partition, epoch, s.clone());
                s
            }
        };
        match self
            .pass(rec, &conv, &batch.sender_id, &msgs, delayed, state.as_ref())
            .await?
        {
            Outcome::Apply {
                writes,
                next,
                pushes,
            } => Ok(Prepared {
                writes,
                remember: next.map(|s| (conv_s, rec.partition, epoch, s)),
                pushes,
            }),
            Outcome::Behind => {
                // Someone applied this record and later ones: catch up from the row,
                // which covers every record before the later write that was seen.
                let row = self.load(&conv_s).await?;
                if from_memory && horizon::contradicts(row.as_ref(), state.as_ref()) {
                    return Err(self.store_behind(memory, &conv_s));
                }
                let newer = match (&row, &state) {
                    (Some(r), Some(s)) => r.claim.offset > s.claim.offset,
                    (Some(_), None) => true,
                    _ => false,
                };
                if newer {
                    lock(memory).set(&conv_s, rec.partition, epoch, row);
                }
                tracing::debug!(conv = %conv_s, offset = rec.offset, "a later record is already written; skipped");
                Ok(Prepared::default())
            }
        }
    }

    async fn load(&self, conv: &str) -> Result<Option<ConvState>, StoreError> {
        self.store
            .conv_state(conv)
            .instrument(tracing::info_span!("store.read", otel.name = "store read", conv = %conv))
            .await
    }

    /// Applies one batch given the conversation's state before it (`state`).
    async fn pass(
        &self,
        rec: &LogRecord,
        conv: &ConvId,
        sender: &str,
        msgs: &[Message],
        delayed: bool,
        state: Option<&ConvState>,
    ) -> Result<Outcome, StoreError> {
        let conv_s = conv.to_string();
        let here = |s: &ConvState| s.claim.partition == rec.partition && s.max_seq > 0;
        let ours = match state {
            Some(s) if here(s) && s.claim.offset > rec.offset => {
                tracing::debug!(conv = %conv_s, offset = rec.offset, claimed_by = s.claim.offset, "already sequenced; skipped");
                // Read again below the committed offsets' horizon (`horizon.rs`).
                metrics::counter!("ferry_sequencer_found_applied_total").increment(1);
                return Ok(Outcome::nothing());
            }
            // The row is written last: this record was applied whole and is applied
            // again (a redelivery), with the seqs it took.
            Some(s) if here(s) && s.claim.offset == rec.offset => {
                metrics::counter!("ferry_sequencer_found_applied_total").increment(1);
                Some((s.claim.first_seq, s.max_seq))
            }
            _ => None,
        };
        // A delayed batch was checked when it was sent; the sender may have left the
        // group since. Checked when first sequenced only: a redelivered record that
        // already took its seqs finishes what it started.
        if delayed
            && ours.is_none()
            && !sender.is_empty()
            && let Ok(user) = crate::domain::UserId::parse(sender)
            && !access::can_write(self.store.as_ref(), &user, conv).await?
        {
            metrics::counter!("ferry_delayed_dropped_total", "reason" => "sender_not_member")
                .increment(1);
            tracing::info!(conv = %conv_s, sender, offset = rec.offset, "delayed batch dropped: the sender may no longer write here");
            return Ok(Outcome::nothing());
        }
        let lookups = msgs.iter().map(|m| {
            let (id, conv_s) = (m.client_msg_id.as_str(), conv_s.as_str());
            async move {
                match id {
                    "" => Ok(None),
                    id => self.store.by_client_msg_id(conv_s, sender, id).await,
                }
            }
        });
        let found = try_join_all(lookups).await?;
        let by = |f: &Option<Stored>| f.as_ref().and_then(|f| f.written_by);
        if found.iter().any(|f| by(f).is_some_and(|o| o > rec.offset)) {
            return Ok(Outcome::Behind);
        }
        // This record's own earlier, partial application (it died or stalled before
        // the seq row): those messages are its own, not retries of older ones.
        let own = found.iter().any(|f| by(f) == Some(rec.offset));
        let existing: Vec<Option<Message>> = found
            .into_iter()
            .map(|f| {
                f.filter(|f| f.written_by != Some(rec.offset))
                    .map(|f| f.msg)
            })
            .collect();
        let fates = plan(msgs, existing, ours);
        let takes = fates.iter().filter(|f| f.takes_seq()).count() as u64;
        let base = match (state, ours) {
            (_, Some((first, _))) => first,
            (Some(s), None) => s.max_seq + 1,
            (None, None) => 1,
        };
        let next = (takes > 0 && ours.is_none()).then(|| ConvState {
            max_seq: base + takes - 1,
            update_time_ms: rec.timestamp_ms,
            claim: Claim {
                partition: rec.partition,
                offset: rec.offset,
                first_seq: base,
            },
        });
        if next.is_some() {
            tracing::debug!(conv = %conv_s, partition = rec.partition, offset = rec.offset, first = base, last = base + takes - 1, own, "claimed");
            metrics::counter!("ferry_seqs_assigned_total").increment(takes);
            // Seqs taken, nothing written yet: the window a redelivery must repair.
            crate::faults::point("sequencer.claimed").await;
        }
        let Stamped {
            stored,
            originals,
            push,
            echo,
        } = stamp(conv, sender, rec.timestamp_ms, msgs, fates, base);
        // One routing decision serves the hand-off and the live push: a recipient is
        // either pushed live or handed off, never judged twice.
        let hand_off = self.offline && stored.iter().any(|m| m.options.offline_push);
        let route = if push.is_empty() {
            None
        } else {
            self.route(conv, hand_off).await?
        };
        if hand_off && let Some(route) = &route {
            self.hand_off(&conv_s, sender, &stored, route, ours.is_some() || own)
                .await?;
        }
        let writes = Writes {
            messages: originals
                .iter()
                .map(|m| (m, Step::Original))
                .chain(stored.iter().map(|m| (m, Step::New)))
                .map(|(m, step)| MessageWrite {
                    msg: m.clone(),
                    version: version(rec.offset, step),
                })
                .collect(),
            members: Vec::new(),
            // A single conversation's participants' index entries (store::convs); a
            // group message writes none.
            convs: next
                .as_ref()
                .map(|s| convs::for_record(conv, s))
                .unwrap_or_default(),
            rows: next
                .iter()
                .map(|s| RowWrite {
                    conv: conv_s.clone(),
                    state: s.clone(),
                    version: version(rec.offset, Step::New),
                })
                .collect(),
        };
        Ok(Outcome::Apply {
            next,
            pushes: Some(Box::new(Pushes {
                written: (!writes.is_empty()).then_some((
                    rec.offset,
                    base,
                    ours.is_some(),
                    stored.len(),
                )),
                conv: conv.clone(),
                sender: sender.to_owned(),
                route,
                push,
                echo,
            })),
            writes,
        })
    }

    /// Routes the conversation's recipients. Without a hand-off to make, recipients
    /// that cannot be read only cost the live push (clients resync); with one, the
    /// record is retried rather than lose the events.
    async fn route(&self, conv: &ConvId, hand_off: bool) -> Result<Option<Route>, StoreError> {
        match access::recipients(self.store.as_ref(), conv).await {
            Ok(users) => Ok(Some(self.router.route(&users).await)),
            Err(e) if hand_off => Err(e),
            Err(e) => {
                tracing::warn!(error = %e, conv = %conv, "recipients unavailable; push dropped");
                Ok(None)
            }
        }
    }

    /// Appends the offline events of `stored` before they are written. `redo`: this
    /// record claimed these seqs before (it is redelivered); if its messages are all
    /// stored, that earlier run got past this point and the events are out already.
    async fn hand_off(
        &self,
        conv: &str,
        sender: &str,
        stored: &[Message],
        route: &Route,
        redo: bool,
    ) -> Result<(), StoreError> {
        let events = handoff::events(sender, stored, &route.offline);
        if events.is_empty() {
            return Ok(());
        }
        if redo {
            let seqs: Vec<u64> = stored.iter().map(|m| m.seq).collect();
            if self.store.messages(conv, &seqs).await?.len() == seqs.len() {
                tracing::debug!(conv, "redelivered record already handed off");
                return Ok(());
            }
        }
        let n = events.len() as u64;
        let records = events
            .iter()
            .map(|e| handoff::record(&self.topics, e))
            .collect();
        self.log
            .append(records)
            .instrument(tracing::info_span!(
                "offline.handoff",
                otel.name = "offline hand-off",
                events = n
            ))
            .await
            .map_err(|e| {
                if e.can_heal() {
                    StoreError::Unavailable(format!("offline topic: {e}"))
                } else {
                    // The log will never take these events: the record cannot be
                    // applied as it is and goes to the dead-letter topic (`retry`).
                    StoreError::Invalid(format!("offline hand-off refused: {e}"))
                }
            })?;
        metrics::counter!("ferry_offline_events_produced_total").increment(n);
        tracing::debug!(conv, events = n, redo, "handed off");
        Ok(())
    }

    /// A record's pushes, as (push topic, record): its messages to the routed
    /// recipients, the echo to the sender's other devices. They continue the
    /// record's trace.
    async fn push_records(&self, p: Box<Pushes>) -> Vec<(String, PushRecord)> {
        let span = tracing::info_span!(
            "push.route",
            otel.name = "push route",
            messages = p.push.len()
        );
        let mut headers = Vec::new();
        span.in_scope(|| crate::telemetry::inject(&mut headers));
        let mut out = Vec::new();
        if let Some(route) = p.route.as_ref().filter(|_| !p.push.is_empty()) {
            out = PushRouter::items(route, PushPayload::Messages(&p.push), &headers);
        }
        if !p.echo.is_empty() && !p.sender.is_empty() {
            let route = self.router.route(&[p.sender]).await;
            out.extend(PushRouter::items(
                &route,
                PushPayload::Messages(&p.echo),
                &headers,
            ));
        }
        tracing::trace!(conv = %p.conv, records = out.len(), "pushes");
        out
    }

    /// Best effort: pushes that cannot be appended are dropped (clients resync). One
    /// append for all of them: the lane waits on one produce, not one per record.
    async fn append_pushes(&self, pushes: Vec<Outgoing>) {
        if pushes.is_empty() {
            return;
        }
        let n = pushes.len() as u64;
        if let Err(e) = self
            .log
            .append(pushes)
            .instrument(tracing::info_span!(
                "push.append",
                otel.name = "push append",
                records = n
            ))
            .await
        {
            pushes_dropped(&e, n);
        }
    }
}

/// Push records that could not be appended: dropped, counted in records (one per
/// message batch and push topic); clients resync.
fn pushes_dropped(e: &crate::msglog::LogError, records: u64) {
    metrics::counter!("ferry_pushes_dropped_total").increment(records);
    tracing::warn!(error = %e, records, "pushes dropped");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(key: &'static str, offset: i64) -> (LogRecord, u64) {
        let mut r = LogRecord::at(0, offset);
        r.key = bytes::Bytes::from_static(key.as_bytes());
        (r, 1)
    }

    #[test]
    fn a_wave_splits_into_one_chain_per_key_each_in_log_order() {
        let wave = vec![
            rec("si_a_b", 1),
            rec("group:g", 2),
            rec("si_a_b", 3),
            rec("si_c_d", 4),
            rec("group:g", 5),
            rec("si_a_b", 6),
        ];
        let offsets: Vec<Vec<i64>> = chains(wave)
            .iter()
            .map(|c| c.iter().map(|(r, _)| r.offset).collect())
            .collect();
        assert_eq!(offsets, [vec![1, 3, 6], vec![2, 5], vec![4]]);
    }
}
