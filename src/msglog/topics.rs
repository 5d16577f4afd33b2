//! Topic and consumer group names, all derived from one prefix.

/// The names of every topic ferry uses.
#[derive(Clone, Debug)]
pub(crate) struct Topics {
    prefix: String,
}

impl Topics {
    pub(crate) fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
        }
    }
    /// Messages and membership changes to sequence, keyed by convId.
    pub(crate) fn inbound(&self) -> String {
        format!("{}inbound", self.prefix)
    }
    /// One topic per delay tier, named by its hold time.
    pub(crate) fn delay(&self, tier_secs: u64) -> String {
        format!("{}delay.{tier_secs}s", self.prefix)
    }
    /// The push topic of one pod.
    pub(crate) fn push(&self, pod: &str) -> String {
        format!("{}push.{pod}", self.prefix)
    }
    pub(crate) fn notices(&self) -> String {
        format!("{}notices", self.prefix)
    }
    pub(crate) fn presence(&self) -> String {
        format!("{}presence", self.prefix)
    }
    /// Offline hand-off events for mobile push, keyed by userId.
    pub(crate) fn offline(&self) -> String {
        format!("{}offline", self.prefix)
    }
    pub(crate) fn dead_letter(&self) -> String {
        format!("{}dead-letter", self.prefix)
    }
    /// Offline events the push service refused (`ferry offline dead`, `redrive`).
    pub(crate) fn offline_dead_letter(&self) -> String {
        format!("{}offline.dead-letter", self.prefix)
    }
    pub(crate) fn group(&self, role: &str) -> String {
        format!("{}{role}", self.prefix)
    }
}
