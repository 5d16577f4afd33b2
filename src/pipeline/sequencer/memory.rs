//! What a lane remembers of its conversations between records, so that sequencing
//! a record reads no seq row: the state it left each conversation in, valid only
//! while this process has read the conversation's partition without a break.
//!
//! A break (the next record of a partition is not the one after the last, e.g. the
//! partition was revoked and assigned again, possibly after another process moved
//! it on) starts a new epoch of that partition; a state remembered in an older
//! epoch is read from the store again. Reading again is always safe: the seq row is
//! written after everything its record wrote, so it is the state after a record
//! applied whole.

use std::collections::HashMap;
use std::sync::Arc;

use super::horizon::Alarm;
use crate::msglog::LogRecord;
use crate::store::ConvState;

/// Conversations remembered per lane; beyond it the memory starts over (each
/// conversation then costs one read of its seq row).
const REMEMBERED: usize = 10_000;

#[derive(Default)]
pub(super) struct Memory {
    convs: HashMap<String, Known>,
    /// Rung when the store may have forgotten what this memory remembers (None: a
    /// record applied on its own, from the store's state alone).
    pub(super) alarm: Option<Arc<Alarm>>,
}

struct Known {
    partition: i32,
    epoch: u64,
    state: Option<ConvState>,
}

impl Memory {
    /// An empty memory of a lane, valid until `alarm` rings.
    pub(super) fn watched(alarm: Arc<Alarm>) -> Self {
        Self {
            convs: HashMap::new(),
            alarm: Some(alarm),
        }
    }

    /// The remembered state (None inside: no seq row yet), if still valid.
    pub(super) fn get(&self, conv: &str, partition: i32, epoch: u64) -> Option<Option<ConvState>> {
        self.convs
            .get(conv)
            .filter(|k| k.partition == partition && k.epoch == epoch && epoch > 0)
            .map(|k| k.state.clone())
    }

    pub(super) fn set(&mut self, conv: &str, partition: i32, epoch: u64, state: Option<ConvState>) {
        if self.convs.len() >= REMEMBERED && !self.convs.contains_key(conv) {
            self.convs.clear();
        }
        self.convs.insert(
            conv.to_owned(),
            Known {
                partition,
                epoch,
                state,
            },
        );
    }
}

/// Each partition's current epoch, as records are read.
#[derive(Default)]
pub(super) struct Epochs {
    partitions: HashMap<(String, i32), (u64, i64)>,
}

impl Epochs {
    /// The epoch `rec` belongs to: a new one unless it directly follows the last
    /// record read from its partition. Epochs start at 1 (0: remember nothing).
    pub(super) fn next(&mut self, rec: &LogRecord) -> u64 {
        let e = self
            .partitions
            .entry((rec.topic.clone(), rec.partition))
            .or_insert((0, -1));
        if e.0 == 0 || rec.offset != e.1 + 1 {
            e.0 += 1;
        }
        e.1 = rec.offset;
        e.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(partition: i32, offset: i64) -> LogRecord {
        LogRecord::at(partition, offset)
    }

    #[test]
    fn a_break_in_a_partition_starts_a_new_epoch() {
        let mut e = Epochs::default();
        assert_eq!(e.next(&rec(0, 10)), 1);
        assert_eq!(e.next(&rec(0, 11)), 1);
        assert_eq!(e.next(&rec(1, 3)), 1, "partitions are independent");
        // Assigned again after someone else moved on, or rewound to a commit.
        assert_eq!(e.next(&rec(0, 20)), 2);
        assert_eq!(e.next(&rec(0, 15)), 3);
        assert_eq!(e.next(&rec(0, 16)), 3);
    }

    #[test]
    fn memory_is_valid_in_its_epoch_only() {
        let mut m = Memory::default();
        assert_eq!(m.get("c", 0, 1), None);
        m.set("c", 0, 1, None);
        assert_eq!(m.get("c", 0, 1), Some(None), "known to have no row");
        assert_eq!(m.get("c", 0, 2), None, "a later epoch reads again");
        assert_eq!(m.get("c", 1, 1), None);
        m.set("c", 0, 0, None);
        assert_eq!(m.get("c", 0, 0), None, "epoch 0 remembers nothing");
    }
}
