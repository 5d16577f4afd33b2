//! Records the sequencer is retrying, and since when: a record that fails for an
//! error that can heal (store or log unavailable) is retried, and its conversation's
//! lane waits meanwhile. One failing for longer than `pipeline.stuck_lane_secs`
//! makes `/readyz` answer 503, so a pod that is stuck is seen as such, not as
//! healthy while it delivers nothing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Clone, Default)]
pub(crate) struct Stalls {
    /// (partition, offset) of each record being retried -> when its first attempt
    /// failed.
    failing: Arc<Mutex<HashMap<(i32, i64), Instant>>>,
}

impl Stalls {
    /// The record at (partition, offset) failed; the first call starts its clock.
    pub(crate) fn failed(&self, partition: i32, offset: i64) {
        self.lock()
            .entry((partition, offset))
            .or_insert_with(Instant::now);
        metrics::gauge!("ferry_sequencer_failing_records").set(self.lock().len() as f64);
    }

    /// The record is applied or set aside: no longer failing.
    pub(crate) fn cleared(&self, partition: i32, offset: i64) {
        let mut m = self.lock();
        if m.remove(&(partition, offset)).is_some() {
            metrics::gauge!("ferry_sequencer_failing_records").set(m.len() as f64);
        }
    }

    /// How long the oldest failing record has been failing.
    pub(crate) fn longest(&self) -> Option<Duration> {
        self.lock().values().map(Instant::elapsed).max()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(i32, i64), Instant>> {
        // Each call is one map operation: a panic elsewhere cannot leave it half done.
        self.failing.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_failing_record_counts_until_it_is_cleared() {
        let s = Stalls::default();
        assert_eq!(s.longest(), None);
        s.failed(0, 7);
        std::thread::sleep(Duration::from_millis(20));
        s.failed(1, 3);
        // A second failure of the same record keeps its first time.
        s.failed(0, 7);
        assert!(s.longest().unwrap() >= Duration::from_millis(20));
        s.cleared(0, 7);
        assert!(s.longest().unwrap() < Duration::from_millis(20));
        s.cleared(1, 3);
        assert_eq!(s.longest(), None);
    }
}
