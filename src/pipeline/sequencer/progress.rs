//! Which inbound offsets the sequencer may commit: records start in log order on
//! their lanes and finish in any order, so per partition only what lies below the
//! oldest unfinished record is applied; and of that, only what was applied longer
//! ago than the store's durability horizon (`horizon.rs`) is committed, so that the
//! records whose writes the store could still lose are read again after a restart.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use tokio::time::Instant;

use crate::msglog::LogRecord;

/// Which offsets are safe to commit, per partition.
pub(super) struct Progress {
    partitions: HashMap<(String, i32), PartitionProgress>,
    /// Records are committed only once applied at least this long ago.
    horizon: Duration,
    pub(super) done_since_checkpoint: usize,
    /// Records applied and not yet committed, over all partitions.
    applied: usize,
}

#[derive(Default)]
struct PartitionProgress {
    /// Records started and not yet committed: None while being applied, then when
    /// they were applied.
    pending: BTreeMap<i64, Option<Instant>>,
    /// Where to read again from to re-apply everything not committed: the offset
    /// after the last commit, or the first record read since a break (the partition
    /// assigned again: reading resumed at the group's committed offset).
    floor: Option<i64>,
    last_started: Option<i64>,
}

/// A partition to read again, from `offset`; `records` of it had been read past it.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Rewind {
    pub(super) topic: String,
    pub(super) partition: i32,
    pub(super) offset: i64,
    pub(super) records: u64,
}

impl Progress {
    pub(super) fn new(horizon: Duration) -> Self {
        Self {
            partitions: HashMap::new(),
            horizon,
            done_since_checkpoint: 0,
            applied: 0,
        }
    }

    pub(super) fn start(&mut self, rec: &LogRecord) {
        let p = self
            .partitions
            .entry((rec.topic.clone(), rec.partition))
            .or_default();
        if p.last_started.is_none_or(|l| rec.offset != l + 1) {
            // The lower of the two is safe: reading again from below what is needed
            // only re-applies more.
            p.floor = Some(p.floor.map_or(rec.offset, |f| f.min(rec.offset)));
        }
        p.last_started = Some(rec.offset);
        p.pending.insert(rec.offset, None);
    }

    pub(super) fn done(&mut self, topic: String, partition: i32, offset: i64) {
        self.done_at(topic, partition, offset, Instant::now());
    }

    fn done_at(&mut self, topic: String, partition: i32, offset: i64, now: Instant) {
        if let Some(p) = self.partitions.get_mut(&(topic, partition))
            && let Some(when) = p.pending.get_mut(&offset)
            && when.is_none()
        {
            *when = Some(now);
            self.done_since_checkpoint += 1;
            self.applied += 1;
        }
    }

    /// Each partition's committable prefix now: the last record such that it and
    /// every record before it were applied at least `horizon` ago.
    fn committable_now(&self, now: Instant) -> Vec<((String, i32), i64)> {
        let mut out = Vec::new();
        for (key, p) in &self.partitions {
            let mut last = None;
            for (offset, when) in &p.pending {
                match when {
                    Some(t) if now.duration_since(*t) >= self.horizon => last = Some(*offset),
                    _ => break,
                }
            }
            if let Some(offset) = last {
                out.push((key.clone(), offset));
            }
        }
        out
    }

    /// Whether `committable` would return anything now.
    pub(super) fn any_committable(&self) -> bool {
        !self.committable_now(Instant::now()).is_empty()
    }

    /// The last record of each partition that can be committed now; marked committed.
    pub(super) fn committable(&mut self) -> Vec<LogRecord> {
        self.committable_at(Instant::now())
    }

    fn committable_at(&mut self, now: Instant) -> Vec<LogRecord> {
        let mut out = Vec::new();
        for ((topic, partition), offset) in self.committable_now(now) {
            let p = self
                .partitions
                .get_mut(&(topic.clone(), partition))
                .expect("listed above");
            let rest = p.pending.split_off(&(offset + 1));
            // Every record committed was applied.
            self.applied -= p.pending.len();
            p.pending = rest;
            p.floor = Some(offset + 1);
            out.push(LogRecord {
                topic,
                partition,
                offset,
                key: bytes::Bytes::new(),
                value: None,
                timestamp_ms: 0,
                headers: Vec::new(),
            });
        }
        self.done_since_checkpoint = 0;
        out
    }

    /// When the oldest record applied but held back by the horizon becomes
    /// committable; None when nothing is held back.
    pub(super) fn next_due(&self) -> Option<Instant> {
        self.partitions
            .values()
            .filter_map(|p| p.pending.values().next().copied().flatten())
            .min()
            .map(|t| t + self.horizon)
    }

    /// Per partition, the offset below which every record read is applied (the
    /// first started and not yet applied, or the one after the last started); after
    /// a rewind, where reading resumes. The applied mark (`applied.rs`).
    pub(super) fn applied(&self) -> impl Iterator<Item = (i32, i64)> + '_ {
        self.partitions.iter().filter_map(|((_, partition), p)| {
            let unapplied = p.pending.iter().find(|(_, when)| when.is_none());
            let mark = match unapplied {
                Some((offset, _)) => *offset,
                None => p.last_started? + 1,
            };
            Some((*partition, mark))
        })
    }

    /// Records applied and not yet committed (the horizon's cost in records a
    /// restart applies again).
    pub(super) fn held_back(&self) -> usize {
        self.applied
    }

    /// Forgets every record not committed, and says where to read each partition
    /// again from to re-apply them.
    pub(super) fn rewind(&mut self) -> Vec<Rewind> {
        let mut out = Vec::new();
        for ((topic, partition), p) in &mut self.partitions {
            let (Some(floor), Some(last)) = (p.floor, p.last_started) else {
                continue;
            };
            p.pending.clear();
            if last >= floor {
                out.push(Rewind {
                    topic: topic.clone(),
                    partition: *partition,
                    offset: floor,
                    records: (last + 1 - floor) as u64,
                });
            }
            // Reading resumes at the floor: not a break.
            p.last_started = Some(floor - 1);
        }
        self.done_since_checkpoint = 0;
        self.applied = 0;
        out.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(offset: i64) -> LogRecord {
        LogRecord::at(0, offset)
    }

    fn offsets(p: &mut Progress, now: Instant) -> Vec<i64> {
        p.committable_at(now).iter().map(|r| r.offset).collect()
    }

    fn done(p: &mut Progress, offset: i64, now: Instant) {
        p.done_at("t".into(), 0, offset, now);
    }

    #[test]
    fn commits_stop_below_the_oldest_unfinished_record() {
        let now = Instant::now();
        let mut p = Progress::new(Duration::ZERO);
        for o in 10..15 {
            p.start(&rec(o));
        }
        done(&mut p, 12, now);
        done(&mut p, 13, now);
        // 10 and 11 are still running: nothing to commit, resume at 10.
        assert!(offsets(&mut p, now).is_empty());
        done(&mut p, 10, now);
        done(&mut p, 11, now);
        assert_eq!(
            offsets(&mut p, now),
            [13],
            "resume at 14, the one still running"
        );
        done(&mut p, 14, now);
        assert_eq!(offsets(&mut p, now), [14]);
        assert!(offsets(&mut p, now).is_empty(), "nothing new to commit");
    }

    #[test]
    fn records_are_committed_once_applied_longer_ago_than_the_horizon() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut p = Progress::new(s(10));
        for o in 0..3 {
            p.start(&rec(o));
        }
        done(&mut p, 0, t0);
        done(&mut p, 1, t0);
        assert!(
            offsets(&mut p, t0).is_empty(),
            "applied just now: held back"
        );
        assert_eq!(p.held_back(), 2);
        assert_eq!(p.next_due(), Some(t0 + s(10)));
        done(&mut p, 2, t0 + s(4));
        assert!(offsets(&mut p, t0 + s(9)).is_empty());
        assert_eq!(
            offsets(&mut p, t0 + s(10)),
            [1],
            "2 was applied 6 s ago only"
        );
        assert_eq!(p.held_back(), 1);
        assert_eq!(p.next_due(), Some(t0 + s(14)));
        assert_eq!(offsets(&mut p, t0 + s(14)), [2]);
        assert_eq!(p.next_due(), None);
        assert_eq!(p.held_back(), 0);
    }

    #[test]
    fn a_rewind_reads_again_from_the_last_commit() {
        let t0 = Instant::now();
        let mut p = Progress::new(Duration::from_secs(10));
        for o in 5..9 {
            p.start(&rec(o));
        }
        done(&mut p, 5, t0);
        done(&mut p, 6, t0);
        // Nothing committed yet: from the first record read.
        assert_eq!(
            p.rewind(),
            [Rewind {
                topic: "t".into(),
                partition: 0,
                offset: 5,
                records: 4
            }]
        );
        assert_eq!(p.held_back(), 0, "what was applied is forgotten");
        for o in 5..9 {
            p.start(&rec(o));
            done(&mut p, o, t0);
        }
        p.start(&rec(9));
        assert_eq!(offsets(&mut p, t0 + Duration::from_secs(10)), [8]);
        let again = p.rewind();
        assert_eq!(
            (again[0].offset, again[0].records),
            (9, 1),
            "after the last commit"
        );
        done(&mut p, 9, t0);
        assert_eq!(
            p.held_back(),
            0,
            "a record of before the rewind is not counted"
        );
    }

    #[test]
    fn the_applied_mark_leads_the_commits_and_goes_back_with_a_rewind() {
        let t0 = Instant::now();
        let mut p = Progress::new(Duration::from_secs(10));
        let marks = |p: &Progress| p.applied().collect::<Vec<_>>();
        assert!(marks(&p).is_empty(), "nothing read: no mark");
        for o in 5..9 {
            p.start(&rec(o));
        }
        assert_eq!(marks(&p), [(0, 5)], "nothing applied yet");
        done(&mut p, 5, t0);
        done(&mut p, 7, t0);
        assert_eq!(marks(&p), [(0, 6)], "6 is still being applied");
        done(&mut p, 6, t0);
        done(&mut p, 8, t0);
        assert_eq!(marks(&p), [(0, 9)], "all applied, none committed");
        assert!(offsets(&mut p, t0).is_empty(), "held back by the horizon");
        // The store forgot: reading resumes at 5, and so does the mark.
        p.rewind();
        assert_eq!(marks(&p), [(0, 5)]);
        for o in 5..9 {
            p.start(&rec(o));
            done(&mut p, o, t0);
        }
        assert_eq!(offsets(&mut p, t0 + Duration::from_secs(10)), [8]);
        assert_eq!(marks(&p), [(0, 9)], "committed and applied agree");
    }

    #[test]
    fn a_break_moves_the_floor_down_only() {
        let mut p = Progress::new(Duration::ZERO);
        p.start(&rec(20));
        p.start(&rec(21));
        // Assigned again after another member moved on: the floor stays lower.
        p.start(&rec(30));
        assert_eq!(p.rewind()[0].offset, 20);
        // Assigned again from further back.
        p.start(&rec(12));
        assert_eq!(p.rewind()[0].offset, 12);
    }
}
