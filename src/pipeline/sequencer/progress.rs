//! Which inbound offsets the sequencer may commit: records start in log order on
//! their lanes and finish in any order, so per partition only what lies below the
//! oldest unfinished record is applied.

use std::collections::{BTreeSet, HashMap};

use crate::msglog::LogRecord;

/// Which offsets are safe to commit, per partition: records are started in log order
/// and finish in any order, so everything below the oldest unfinished one is applied.
#[derive(Default)]
pub(super) struct Progress {
    partitions: HashMap<(String, i32), PartitionProgress>,
    pub(super) done_since_checkpoint: usize,
}

#[derive(Default)]
struct PartitionProgress {
    in_flight: BTreeSet<i64>,
    done_max: Option<i64>,
    committed: Option<i64>,
}

impl Progress {
    pub(super) fn start(&mut self, rec: &LogRecord) {
        let p = self
            .partitions
            .entry((rec.topic.clone(), rec.partition))
            .or_default();
        p.in_flight.insert(rec.offset);
    }

    pub(super) fn done(&mut self, topic: String, partition: i32, offset: i64) {
        let p = self.partitions.entry((topic, partition)).or_default();
        p.in_flight.remove(&offset);
        p.done_max = p.done_max.max(Some(offset));
        self.done_since_checkpoint += 1;
    }

    /// The last applied record of each partition that can be committed now.
    pub(super) fn committable(&mut self) -> Vec<LogRecord> {
        let mut out = Vec::new();
        for ((topic, partition), p) in &mut self.partitions {
            // Committing offset o means "resume at o + 1".
            let safe = match p.in_flight.first() {
                Some(oldest) if *oldest > 0 => Some(oldest - 1),
                Some(_) => None,
                None => p.done_max,
            };
            if let Some(offset) = safe
                && Some(offset) > p.committed
            {
                p.committed = Some(offset);
                out.push(LogRecord {
                    topic: topic.clone(),
                    partition: *partition,
                    offset,
                    key: bytes::Bytes::new(),
                    value: None,
                    timestamp_ms: 0,
                    headers: Vec::new(),
                });
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(offset: i64) -> LogRecord {
        LogRecord::at(0, offset)
    }

    #[test]
    fn commits_stop_below_the_oldest_unfinished_record() {
        let mut p = Progress::default();
        for o in 10..15 {
            p.start(&rec(o));
        }
        p.done("t".into(), 0, 12);
        p.done("t".into(), 0, 13);
        // 10 and 11 are still running: resume at 10.
        assert_eq!(
            p.committable().iter().map(|r| r.offset).collect::<Vec<_>>(),
            [9]
        );
        p.done("t".into(), 0, 10);
        p.done("t".into(), 0, 11);
        assert_eq!(
            p.committable()[0].offset,
            13,
            "resume at 14, the one still running"
        );
        p.done("t".into(), 0, 14);
        assert_eq!(p.committable()[0].offset, 14);
        assert!(p.committable().is_empty(), "nothing new to commit");
    }
}
