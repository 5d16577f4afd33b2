//! `ferry replay`: rebuilds the store from the inbound topic.
//!
//! Every inbound partition is read from its beginning up to its end *now* (the high
//! watermark taken at the start: replay stops there instead of following) and run
//! through the simulated sequencer (`sim`). Records before the chosen start only
//! rebuild the simulation's state; the effects of records at or after it are
//! compared with the store: a message absent is written, identical is left alone,
//! different is a conflict and is overwritten (the log is the truth). Finally each
//! touched conversation's seq row is set to the simulated state, and member changes
//! are applied. Every write carries the version of the record that produced it at
//! the repair step (`store::Step::Repair`): above that record's own write, below any
//! later record's, so a live sequencer that moved on keeps its writes whatever the
//! order. Running it twice changes nothing the second time.
//!
//! Next to a live cluster: replay reads outside any consumer group (nothing is
//! committed, the `sequencer` group never moves), never deletes, and leaves alone a
//! seq row the live sequencer has moved past the replay's end.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Write as _;
use std::time::{Duration, Instant};

use super::sim::{ConvSim, Position};
use crate::domain::{ConvId, Message};
use crate::msglog::{LogError, MsgLog, Watermarks};
use crate::pipeline::records::{self, Inbound};
use crate::store::{
    MemberWrite, MessageWrite, RowWrite, Step, Store, StoreError, Writes, convs, version,
};

/// Seqs read or written per store request.
const CHUNK: usize = 500;
/// A read that delivers nothing for this long while records remain has stalled.
const STALL: Duration = Duration::from_secs(60);
/// How often the progress line is refreshed.
const PROGRESS_EVERY: Duration = Duration::from_millis(500);

#[derive(Debug, thiserror::Error)]
pub(crate) enum ReplayError {
    #[error(transparent)]
    Log(#[from] LogError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(
        "partition {partition} of {topic} starts at offset {low}: records before it were deleted \
         (retention), so the seqs they took cannot be recomputed; replay needs the whole topic \
         (create it with retention.ms=-1, see `ferry topics create`)"
    )]
    Truncated {
        topic: String,
        partition: i32,
        low: i64,
    },
    #[error("--from-offsets names partition {0}, which {1} does not have")]
    UnknownPartition(i32, String),
    #[error(
        "reading stalled: partition {partition} delivered nothing for {STALL:?} at offset {at} of {high}"
    )]
    Stalled { partition: i32, at: i64, high: i64 },
}

/// Where the writes start.
#[derive(Clone, Debug)]
pub(crate) enum Start {
    Beginning,
    /// Records with a timestamp at or after this (epoch ms).
    Time(i64),
    /// Per partition; partitions not listed write nothing.
    Offsets(BTreeMap<i32, i64>),
}

pub(crate) struct Options {
    pub(crate) start: Start,
    /// Only these (normalised) conversations; None: all.
    pub(crate) convs: Option<BTreeSet<String>>,
    pub(crate) execute: bool,
    /// Print a progress line on stderr.
    pub(crate) progress: bool,
}

/// One partition's part in the replay.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PartitionPlan {
    pub(crate) marks: Watermarks,
    /// Effects of records from this offset on are written.
    pub(crate) write_from: i64,
}

/// What replay read and what it found (dry run) or did (execute).
#[derive(Debug, Default)]
pub(crate) struct Report {
    pub(crate) topic: String,
    pub(crate) executed: bool,
    pub(crate) partitions: Vec<PartitionPlan>,
    pub(crate) records_read: u64,
    /// Records at or after the start (their effects are compared and written).
    pub(crate) records_in_window: u64,
    pub(crate) undecodable: u64,
    pub(crate) invalid_conv: u64,
    pub(crate) read_time: Duration,
    pub(crate) total_time: Duration,
    /// Stored messages absent from the store.
    pub(crate) missing: u64,
    /// Stored with other content than the log says.
    pub(crate) conflicts: u64,
    pub(crate) present: u64,
    /// Seq rows differing from the simulation (set on execute).
    pub(crate) rows_set: u64,
    pub(crate) rows_same: u64,
    /// Rows the live sequencer moved past the replay's end: left alone.
    pub(crate) rows_ahead: u64,
    /// Rows that moved between the comparison and the write (execute only).
    pub(crate) rows_lost: u64,
    pub(crate) members_changed: u64,
    pub(crate) members_same: u64,
    /// The conversation index's entries (`replay_convs`).
    pub(crate) index: super::replay_convs::IndexCounts,
    /// A few conversations with conflicts, for the operator to look at.
    pub(crate) conflict_convs: Vec<String>,
    pub(crate) convs_touched: u64,
}

impl Report {
    pub(crate) fn written(&self) -> u64 {
        self.missing + self.conflicts
    }

    pub(crate) fn records_per_sec(&self) -> f64 {
        self.records_read as f64 / self.read_time.as_secs_f64().max(1e-6)
    }

    /// The report as an operator reads it.
    pub(crate) fn render(&self) -> String {
        use std::fmt::Write as _;
        let mut o = String::new();
        let mode = if self.executed {
            "executed"
        } else {
            "dry run: nothing was written; add --execute to apply"
        };
        let _ = writeln!(o, "replay of {} ({mode})", self.topic);
        for p in &self.partitions {
            let m = p.marks;
            let window = (m.high - p.write_from.clamp(m.low, m.high)).max(0);
            let _ = writeln!(
                o,
                "  partition {}: reads offsets {}..{} ({} records), writes effects from offset {} ({} records)",
                m.partition,
                m.low,
                m.high,
                m.high - m.low,
                p.write_from.min(m.high),
                window
            );
        }
        let _ = writeln!(
            o,
            "read {} records in {:.1}s ({:.0} records/s); {} in the write window; skipped {} undecodable, {} with an invalid convId",
            self.records_read,
            self.read_time.as_secs_f64(),
            self.records_per_sec(),
            self.records_in_window,
            self.undecodable,
            self.invalid_conv
        );
        let verb = if self.executed { "written" } else { "to write" };
        let _ = writeln!(
            o,
            "messages: {} {verb} ({} missing, {} conflicting{}), {} already present and identical",
            self.written(),
            self.missing,
            self.conflicts,
            if self.executed { ", overwritten" } else { "" },
            self.present
        );
        if !self.conflict_convs.is_empty() {
            let _ = writeln!(o, "  conflicts in: {}", self.conflict_convs.join(", "));
        }
        let _ = writeln!(
            o,
            "conversations: {} touched; seq rows: {} {}, {} already right, {} ahead of the replay (live sequencer moved on; left alone){}",
            self.convs_touched,
            self.rows_set - self.rows_lost,
            if self.executed { "set" } else { "to set" },
            self.rows_same,
            self.rows_ahead,
            if self.rows_lost > 0 {
                format!(", {} moved during the replay (left alone)", self.rows_lost)
            } else {
                String::new()
            }
        );
        let _ = writeln!(
            o,
            "members: {} {}, {} already right",
            self.members_changed,
            if self.executed {
                "changed"
            } else {
                "to change"
            },
            self.members_same
        );
        let _ = writeln!(
            o,
            "conversation index: {} entries {}, {} already right",
            self.index.set,
            if self.executed { "set" } else { "to set" },
            self.index.same
        );
        let _ = writeln!(
            o,
            "took {:.1}s in all ({:.0} records/s end to end)",
            self.total_time.as_secs_f64(),
            self.records_read as f64 / self.total_time.as_secs_f64().max(1e-6)
        );
        let _ = writeln!(
            o,
            "result: records={} window={} written={} missing={} conflicts={} present={} rows_set={} rows_same={} rows_ahead={} rows_lost={} members_changed={} members_same={} undecodable={} invalid_conv={} index_set={} index_same={}",
            self.records_read,
            self.records_in_window,
            self.written(),
            self.missing,
            self.conflicts,
            self.present,
            self.rows_set - self.rows_lost,
            self.rows_same,
            self.rows_ahead,
            self.rows_lost,
            self.members_changed,
            self.members_same,
            self.undecodable,
            self.invalid_conv,
            self.index.set,
            self.index.same
        );
        o
    }
}

/// The simulation and what the write window touched.
#[derive(Default)]
struct Sim {
    convs: HashMap<String, ConvSim>,
    /// Conversation -> seqs written by records in the window.
    touched: BTreeMap<String, BTreeSet<u64>>,
    /// (group, user) -> (min_seq, None when removed; offset of the change).
    members: HashMap<(String, String), (Option<u64>, i64)>,
    touched_members: BTreeSet<(String, String)>,
    /// The conversation index as the log says it is.
    index: super::replay_convs::IndexSim,
}

pub(crate) async fn replay(
    log: &dyn MsgLog,
    store: &dyn Store,
    topic: &str,
    opts: &Options,
) -> Result<Report, ReplayError> {
    let started = Instant::now();
    let marks = log.watermarks(topic).await?;
    if let Some(m) = marks.iter().find(|m| m.low > 0) {
        return Err(ReplayError::Truncated {
            topic: topic.to_owned(),
            partition: m.partition,
            low: m.low,
        });
    }
    let write_from: BTreeMap<i32, i64> = match &opts.start {
        Start::Beginning => marks.iter().map(|m| (m.partition, m.low)).collect(),
        Start::Time(ts) => log
            .offsets_for_time(topic, *ts)
            .await?
            .into_iter()
            .collect(),
        Start::Offsets(o) => {
            if let Some(p) = o.keys().find(|p| !marks.iter().any(|m| m.partition == **p)) {
                return Err(ReplayError::UnknownPartition(*p, topic.to_owned()));
            }
            marks
                .iter()
                .map(|m| (m.partition, o.get(&m.partition).copied().unwrap_or(m.high)))
                .collect()
        }
    };
    let mut report = Report {
        topic: topic.to_owned(),
        executed: opts.execute,
        partitions: marks
            .iter()
            .map(|m| PartitionPlan {
                marks: *m,
                write_from: write_from.get(&m.partition).copied().unwrap_or(m.high),
            })
            .collect(),
        ..Report::default()
    };
    let sim = read(log, topic, opts, &mut report).await?;
    report.read_time = started.elapsed();
    apply(store, opts, &sim, &marks, &mut report).await?;
    report.total_time = started.elapsed();
    Ok(report)
}

/// Reads every partition up to its high watermark, simulating as it goes.
async fn read(
    log: &dyn MsgLog,
    topic: &str,
    opts: &Options,
    report: &mut Report,
) -> Result<Sim, ReplayError> {
    let mut sim = Sim::default();
    let plans: HashMap<i32, PartitionPlan> = report
        .partitions
        .iter()
        .map(|p| (p.marks.partition, *p))
        .collect();
    let starts: Vec<(i32, i64)> = report
        .partitions
        .iter()
        .filter(|p| p.marks.high > p.marks.low)
        .map(|p| (p.marks.partition, p.marks.low))
        .collect();
    if starts.is_empty() {
        return Ok(sim);
    }
    let total: i64 = report
        .partitions
        .iter()
        .map(|p| p.marks.high - p.marks.low)
        .sum();
    // Partition -> next offset expected, while below the high watermark.
    let mut open: HashMap<i32, i64> = starts.iter().copied().collect();
    let mut sub = log.read_from(topic, &starts).await?;
    let t0 = Instant::now();
    let mut last_progress = Instant::now();
    while !open.is_empty() {
        let rec = match tokio::time::timeout(STALL, sub.next()).await {
            Ok(r) => r?,
            Err(_) => {
                let (p, at) = open
                    .iter()
                    .next()
                    .map(|(p, a)| (*p, *a))
                    .unwrap_or_default();
                return Err(ReplayError::Stalled {
                    partition: p,
                    at,
                    high: plans.get(&p).map_or(0, |x| x.marks.high),
                });
            }
        };
        let Some(plan) = plans.get(&rec.partition) else {
            continue;
        };
        // Records appended after the start belong to the live sequencer, not to us.
        if rec.offset >= plan.marks.high {
            open.remove(&rec.partition);
            continue;
        }
        if rec.offset + 1 >= plan.marks.high {
            open.remove(&rec.partition);
        } else {
            open.insert(rec.partition, rec.offset + 1);
        }
        report.records_read += 1;
        let in_window = rec.offset >= plan.write_from;
        if in_window {
            report.records_in_window += 1;
        }
        let at = Position {
            partition: rec.partition,
            offset: rec.offset,
            timestamp_ms: rec.timestamp_ms,
        };
        match records::read_inbound(&rec) {
            Inbound::Messages(b) => {
                let Ok(conv) = ConvId::parse(&b.conv_id) else {
                    report.invalid_conv += 1;
                    continue;
                };
                let conv_s = conv.to_string();
                if opts.convs.as_ref().is_some_and(|c| !c.contains(&conv_s)) {
                    continue;
                }
                // As the live sequencer: a delayed batch whose sender has left the
                // group by the time it is due is dropped.
                if b.due_at_ms > 0
                    && !b.sender_id.is_empty()
                    && let Some(g) = conv.group_id()
                    && !matches!(
                        sim.members.get(&(g.to_owned(), b.sender_id.clone())),
                        Some((Some(_), _))
                    )
                {
                    continue;
                }
                let msgs: Vec<Message> = b.msgs.into_iter().map(Message::from).collect();
                let cs = sim.convs.entry(conv_s.clone()).or_default();
                let wrote = cs.step(&conv, &b.sender_id, at, &msgs);
                // Took seqs: the index entries the live sequencer writes with them.
                if let Some(s) = cs
                    .state
                    .as_ref()
                    .filter(|s| (s.claim.partition, s.claim.offset) == (rec.partition, rec.offset))
                {
                    sim.index.record(convs::for_record(&conv, s), in_window);
                }
                if in_window {
                    sim.touched.entry(conv_s).or_default().extend(wrote);
                }
            }
            Inbound::Member(m) => {
                let conv_s = format!("group:{}", m.group_id);
                if opts.convs.as_ref().is_some_and(|c| !c.contains(&conv_s)) {
                    continue;
                }
                // The live sequencer sends a minSeq the store cannot hold to the
                // dead-letter topic.
                if !m.removed && m.min_seq > crate::domain::MAX_SEQ {
                    report.undecodable += 1;
                    continue;
                }
                let min = (!m.removed).then_some(m.min_seq);
                let at = (rec.partition, rec.offset, rec.timestamp_ms);
                let entry = convs::member(&m.group_id, &m.user_id, min, at, 0);
                sim.index.record(vec![entry], in_window);
                let key = (m.group_id, m.user_id);
                sim.members
                    .insert(key.clone(), ((!m.removed).then_some(m.min_seq), rec.offset));
                if in_window {
                    sim.touched_members.insert(key);
                }
            }
            // The live sequencer sends these to the dead-letter topic.
            Inbound::Undecodable => report.undecodable += 1,
        }
        if opts.progress && last_progress.elapsed() >= PROGRESS_EVERY {
            last_progress = Instant::now();
            let rate = report.records_read as f64 / t0.elapsed().as_secs_f64().max(1e-6);
            eprint!(
                "\rreplay: read {}/{} records ({rate:.0} records/s)   ",
                report.records_read, total
            );
            let _ = std::io::stderr().flush();
        }
    }
    if opts.progress {
        let rate = report.records_read as f64 / t0.elapsed().as_secs_f64().max(1e-6);
        eprintln!(
            "\rreplay: read {}/{} records ({rate:.0} records/s)   ",
            report.records_read, total
        );
    }
    Ok(sim)
}

/// Compares the window's effects with the store and, on execute, writes them.
async fn apply(
    store: &dyn Store,
    opts: &Options,
    sim: &Sim,
    marks: &[Watermarks],
    report: &mut Report,
) -> Result<(), ReplayError> {
    let high: HashMap<i32, i64> = marks.iter().map(|m| (m.partition, m.high)).collect();
    let mut last_progress = Instant::now();
    let n = sim.touched.len();
    for (i, (conv, seqs)) in sim.touched.iter().enumerate() {
        report.convs_touched += 1;
        let Some(cs) = sim.convs.get(conv) else {
            continue;
        };
        let seqs: Vec<u64> = seqs.iter().copied().collect();
        let mut conflicted = false;
        for chunk in seqs.chunks(CHUNK) {
            let stored: HashMap<u64, Message> = store
                .messages(conv, chunk)
                .await?
                .into_iter()
                .map(|m| (m.seq, m))
                .collect();
            let mut write: Vec<MessageWrite> = Vec::new();
            let repair = |want: &Message| MessageWrite {
                msg: want.clone(),
                version: version(
                    cs.written_by.get(&want.seq).copied().unwrap_or(-1),
                    Step::Repair,
                ),
            };
            for seq in chunk {
                // Every seq in `touched` was put into the simulation by `step`.
                let Some(want) = cs.messages.get(seq) else {
                    continue;
                };
                match stored.get(seq) {
                    None => {
                        report.missing += 1;
                        write.push(repair(want));
                    }
                    Some(have) if have == want => report.present += 1,
                    Some(_) => {
                        report.conflicts += 1;
                        conflicted = true;
                        write.push(repair(want));
                    }
                }
            }
            if opts.execute && !write.is_empty() {
                store
                    .write(&Writes {
                        messages: write,
                        ..Writes::default()
                    })
                    .await?;
            }
        }
        if conflicted && report.conflict_convs.len() < 20 {
            report.conflict_convs.push(conv.clone());
        }
        // The seq row goes last: a reader that sees max_seq finds the messages.
        if let Some(want) = &cs.state {
            let have = store.conv_state(conv).await?;
            match &have {
                Some(h) if h == want => report.rows_same += 1,
                // Claimed by a record past the replay's end: the live sequencer has
                // moved on; setting the row back would hand out its seqs again.
                Some(h)
                    if high
                        .get(&h.claim.partition)
                        .is_some_and(|hi| h.claim.offset >= *hi) =>
                {
                    report.rows_ahead += 1
                }
                _ => {
                    report.rows_set += 1;
                    if opts.execute {
                        let row = RowWrite {
                            conv: conv.clone(),
                            state: want.clone(),
                            version: version(want.claim.offset, Step::Repair),
                        };
                        store
                            .write(&Writes {
                                rows: vec![row],
                                ..Writes::default()
                            })
                            .await?;
                        // A live sequencer's later write wins over the repair.
                        if store.conv_state(conv).await?.as_ref() != Some(want) {
                            report.rows_lost += 1;
                        }
                    }
                }
            }
        }
        if opts.progress && last_progress.elapsed() >= PROGRESS_EVERY {
            last_progress = Instant::now();
            eprint!("\rreplay: compared {}/{n} conversations   ", i + 1);
            let _ = std::io::stderr().flush();
        }
    }
    // A repair is stamped with the group's last member record, not the member's: on
    // CQL a group's members share bucket rows (store::scylla_members) that any of the
    // group's member records may have written last; above all of them, below the next.
    let mut group_at: HashMap<&str, i64> = HashMap::new();
    for ((g, _), (_, at)) in &sim.members {
        let e = group_at.entry(g.as_str()).or_insert(-1);
        *e = (*e).max(*at);
    }
    // A group's repairs share that version, so they go in one write: on CQL the
    // repairs of one bucket become one rewrite of it (two writes of a cell at one
    // timestamp would keep either).
    let mut repairs: BTreeMap<&str, Vec<MemberWrite>> = BTreeMap::new();
    for (g, u) in &sim.touched_members {
        let want = sim
            .members
            .get(&(g.clone(), u.clone()))
            .and_then(|(want, _)| *want);
        let at = group_at.get(g.as_str()).copied().unwrap_or(-1);
        if store.member(g, u).await? == want {
            report.members_same += 1;
            continue;
        }
        report.members_changed += 1;
        repairs.entry(g.as_str()).or_default().push(MemberWrite {
            group: g.clone(),
            user: u.clone(),
            min_seq: want,
            version: version(at, Step::Repair),
        });
    }
    if opts.execute {
        for (_, members) in repairs {
            store
                .write(&Writes {
                    members,
                    ..Writes::default()
                })
                .await?;
        }
    }
    report.index = sim.index.apply(store, opts.execute).await?;
    if opts.execute {
        store.flush().await?;
    }
    if opts.progress && n > 0 {
        eprintln!("\rreplay: compared {n}/{n} conversations   ");
    }
    Ok(())
}
