//! What a lane remembers of its groups' members, so that routing a group message
//! reads no member rows.
//!
//! Why it stays right: a group's member changes are inbound records keyed by the
//! group's convId (`records::member`), like its messages, so they reach the same
//! lane in log order, and the lane forgets the group when it applies one. Between
//! two changes the member rows cannot change (the sequencer writes them from those
//! records only; replay writes the same ones). As with `memory.rs`, a list is valid
//! only within the epoch of its partition it was read in: after a break another
//! process may have applied changes this lane never saw.
//!
//! The list is used to route pushes and offline hand-offs, never to assign seqs.

use std::collections::HashMap;

/// Member entries remembered per lane, summed over its groups; beyond it the memory
/// starts over (each group then costs one read of its members).
const REMEMBERED_MEMBERS: usize = 16_384;

#[derive(Default)]
pub(super) struct Members {
    groups: HashMap<String, Known>,
    entries: usize,
}

struct Known {
    partition: i32,
    epoch: u64,
    users: Vec<String>,
}

impl Members {
    /// The remembered members of `group`, if still valid.
    pub(super) fn get(&self, group: &str, partition: i32, epoch: u64) -> Option<&[String]> {
        self.groups
            .get(group)
            .filter(|k| k.partition == partition && k.epoch == epoch && epoch > 0)
            .map(|k| k.users.as_slice())
    }

    pub(super) fn set(&mut self, group: &str, partition: i32, epoch: u64, users: Vec<String>) {
        if epoch == 0 {
            return;
        }
        self.forget(group);
        if self.entries + users.len() > REMEMBERED_MEMBERS {
            self.groups.clear();
            self.entries = 0;
        }
        self.entries += users.len();
        self.groups.insert(
            group.to_owned(),
            Known {
                partition,
                epoch,
                users,
            },
        );
    }

    /// A member change of `group` was applied: read its members again next time.
    pub(super) fn forget(&mut self, group: &str) {
        if let Some(k) = self.groups.remove(group) {
            self.entries -= k.users.len();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn users(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("u{i}")).collect()
    }

    #[test]
    fn members_are_valid_in_their_epoch_until_a_change() {
        let mut m = Members::default();
        assert!(m.get("g", 0, 1).is_none());
        m.set("g", 0, 1, users(2));
        assert_eq!(m.get("g", 0, 1), Some(&users(2)[..]));
        assert!(m.get("g", 0, 2).is_none(), "a later epoch reads again");
        assert!(m.get("g", 1, 1).is_none());
        m.forget("g");
        assert!(m.get("g", 0, 1).is_none(), "a member change reads again");
        m.set("h", 0, 0, users(1));
        assert!(m.get("h", 0, 0).is_none(), "epoch 0 remembers nothing");
    }

    #[test]
    fn the_memory_is_bounded_by_member_entries() {
        let mut m = Members::default();
        m.set("g", 0, 1, users(REMEMBERED_MEMBERS - 1));
        m.set("g", 0, 1, users(REMEMBERED_MEMBERS - 1));
        assert!(
            m.get("g", 0, 1).is_some(),
            "replacing a list frees its entries"
        );
        m.set("h", 0, 1, users(2));
        assert!(m.get("g", 0, 1).is_none(), "over the bound: started over");
        assert_eq!(m.get("h", 0, 1).map(<[String]>::len), Some(2));
        assert_eq!(m.entries, 2);
    }
}
