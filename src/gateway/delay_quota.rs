//! The per-user quota of pending delayed messages: a message sent with deliverAfter
//! counts against its sender on this process until its due time. A send that would
//! take the sender past `limits.max_pending_delayed_per_user` is refused whole
//! before anything is appended, so one user cannot fill the delay tiers: with the
//! quota, what all users can have pending, and so the backlog a tier may have to
//! forward at once, grows with the number of users, not with one user's rate.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::Mutex;

/// Pending delayed messages per sender: each user's due times (one entry per
/// message, at most the quota per user, so memory is bounded by the quota times the
/// users with messages pending).
pub(crate) struct DelayQuota {
    limit: usize,
    pending: Mutex<HashMap<String, BinaryHeap<Reverse<i64>>>>,
}

/// A refused reservation: how many the sender has pending and the limit.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct OverQuota {
    pub(crate) pending: usize,
    pub(crate) limit: usize,
}

impl DelayQuota {
    pub(crate) fn new(limit: usize) -> Self {
        Self {
            limit,
            pending: Mutex::new(HashMap::new()),
        }
    }

    /// Counts `n` messages of `user` due at `due_ms` as pending, or refuses them all
    /// when that would exceed the limit. Messages whose due time has passed at
    /// `now_ms` no longer count.
    pub(crate) fn reserve(
        &self,
        user: &str,
        n: usize,
        due_ms: i64,
        now_ms: i64,
    ) -> Result<(), OverQuota> {
        let mut pending = self.pending.lock().expect("quota lock");
        if pending.len() >= SWEEP_AT && pending.len().is_power_of_two() {
            forget_idle(&mut pending, now_ms);
        }
        let heap = pending.entry(user.to_owned()).or_default();
        while heap.peek().is_some_and(|Reverse(d)| *d <= now_ms) {
            heap.pop();
        }
        if heap.len() + n > self.limit {
            let refused = OverQuota {
                pending: heap.len(),
                limit: self.limit,
            };
            if heap.is_empty() {
                pending.remove(user);
            }
            return Err(refused);
        }
        heap.extend(std::iter::repeat_n(Reverse(due_ms), n));
        Ok(())
    }

    /// Gives back a reservation whose append failed.
    pub(crate) fn release(&self, user: &str, n: usize, due_ms: i64) {
        let mut pending = self.pending.lock().expect("quota lock");
        let Some(heap) = pending.get_mut(user) else {
            return;
        };
        let mut left = n;
        heap.retain(|Reverse(d)| {
            if left > 0 && *d == due_ms {
                left -= 1;
                false
            } else {
                true
            }
        });
        if heap.is_empty() {
            pending.remove(user);
        }
    }
}

/// Users tracked before the map is swept of those with nothing pending (again at
/// each doubling), so it does not keep every user who ever sent a delayed message.
const SWEEP_AT: usize = 4096;

fn forget_idle(pending: &mut HashMap<String, BinaryHeap<Reverse<i64>>>, now_ms: i64) {
    pending.retain(|_, heap| {
        while heap.peek().is_some_and(|Reverse(d)| *d <= now_ms) {
            heap.pop();
        }
        !heap.is_empty()
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_past_the_limit_and_frees_at_due_time() {
        let q = DelayQuota::new(3);
        q.reserve("a", 2, 5_000, 0).unwrap();
        assert_eq!(
            q.reserve("a", 2, 6_000, 0),
            Err(OverQuota {
                pending: 2,
                limit: 3
            })
        );
        q.reserve("b", 3, 6_000, 0).unwrap();
        q.reserve("a", 1, 6_000, 0).unwrap();
        // The first two are due at 5 s: they no longer count.
        q.reserve("a", 2, 9_000, 5_000).unwrap();
        assert!(q.reserve("a", 1, 9_000, 5_000).is_err());
    }

    #[test]
    fn a_failed_append_gives_its_reservation_back() {
        let q = DelayQuota::new(2);
        q.reserve("a", 2, 5_000, 0).unwrap();
        q.release("a", 2, 5_000);
        q.reserve("a", 2, 7_000, 0).unwrap();
        forget_idle(&mut q.pending.lock().unwrap(), 7_000);
        assert!(q.pending.lock().unwrap().is_empty());
    }
}
