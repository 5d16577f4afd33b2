//! Replay's part in the conversation index (`store::convs`): the entries the live
//! sequencer writes are a pure function of the records (a message record that took
//! seqs writes both participants' entries of a single conversation from its new seq
//! row; a member change writes the member's), so replay computes them with the same
//! functions from the simulated state, keeps the latest per (user, conversation),
//! and repairs those written by records in the window that the store does not hold.

use std::collections::{BTreeMap, HashMap};

use crate::store::convs::ConvIndexWrite;
use crate::store::{Step, Store, StoreError, Writes, version};

#[derive(Default)]
pub(super) struct IndexSim {
    /// (user, conv) -> the latest entry in the log, and whether a record in the
    /// write window wrote it.
    entries: HashMap<(String, String), (ConvIndexWrite, bool)>,
}

/// What the comparison found.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct IndexCounts {
    /// Entries absent or different (set on execute).
    pub(crate) set: u64,
    pub(crate) same: u64,
}

impl IndexSim {
    /// Records the entries a record writes, in log order per key.
    pub(super) fn record(&mut self, writes: Vec<ConvIndexWrite>, in_window: bool) {
        for w in writes {
            self.entries
                .insert((w.user.clone(), w.conv.clone()), (w, in_window));
        }
    }

    /// Compares the window's entries with the store, user by user, and on execute
    /// writes those that differ at the repair step of the record that wrote them
    /// (above its own write, below any later record's).
    pub(super) async fn apply(
        &self,
        store: &dyn Store,
        execute: bool,
    ) -> Result<IndexCounts, StoreError> {
        let mut by_user: BTreeMap<&str, Vec<&ConvIndexWrite>> = BTreeMap::new();
        for (w, in_window) in self.entries.values() {
            if *in_window {
                by_user.entry(w.user.as_str()).or_default().push(w);
            }
        }
        let mut counts = IndexCounts::default();
        for (user, wants) in by_user {
            let have: HashMap<String, _> = store.user_convs(user).await?.into_iter().collect();
            let mut write = Vec::new();
            for w in wants {
                if have.get(&w.conv) == Some(&w.entry) {
                    counts.same += 1;
                    continue;
                }
                counts.set += 1;
                write.push(ConvIndexWrite {
                    version: version(w.entry.offset, Step::Repair),
                    ..w.clone()
                });
            }
            if execute && !write.is_empty() {
                store
                    .write(&Writes {
                        convs: write,
                        ..Writes::default()
                    })
                    .await?;
            }
        }
        Ok(counts)
    }
}
