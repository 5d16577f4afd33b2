//! Bytes of answers in flight, bounded at three levels: one connection, one account
//! (all its sockets on this process) and the process. An answer takes budget before
//! the store is read (its worst case, `gateway::sync`), keeps what it built while it
//! is built and queued, and gives it back when its frame is handed to the socket
//! (`attach`). The outbox bounds frames queued per socket; this bounds what is being
//! built, and what one account holds over all its sockets, which the outbox cannot:
//! without it 20 sockets × 32 requests of one account each build a multi-megabyte
//! answer at once.
//!
//! Each level is a semaphore counting KiB, taken in one order (connection, account,
//! process), so takers never wait on each other in opposite orders; a wait is
//! bounded, and an answer that cannot get its budget in time is refused (RetryError).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Budgets count in KiB: a process budget of terabytes stays within a semaphore's
/// permits, and a small answer rounds up, never down.
const UNIT: usize = 1024;

fn units(bytes: usize) -> usize {
    bytes.div_ceil(UNIT)
}

/// One level's budget.
#[derive(Debug)]
pub(crate) struct Level {
    /// "connection", "account" or "process", for the refusal's reason.
    what: &'static str,
    /// The budget in units (what the semaphore started with).
    units: usize,
    sem: Arc<Semaphore>,
}

impl Level {
    pub(crate) fn new(what: &'static str, limit_bytes: usize) -> Arc<Self> {
        let units = units(limit_bytes).clamp(1, Semaphore::MAX_PERMITS);
        Arc::new(Self {
            what,
            units,
            sem: Arc::new(Semaphore::new(units)),
        })
    }

    /// Bytes held now (a multiple of the unit).
    #[cfg(test)]
    pub(crate) fn in_use(&self) -> usize {
        (self.units - self.sem.available_permits()) * UNIT
    }

    fn over(&self) -> Over {
        Over {
            what: self.what,
            limit: self.units * UNIT,
        }
    }
}

/// The answer did not get its bytes within the wait: retry later.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the {what}'s {limit} bytes of answers in flight are taken; retry later")]
pub(crate) struct Over {
    pub(crate) what: &'static str,
    pub(crate) limit: usize,
}

/// The levels one connection's answers count against, innermost first.
#[derive(Clone, Debug)]
pub(crate) struct Budget {
    levels: [Arc<Level>; 3],
    /// Longest wait for room before an answer is refused.
    wait: Duration,
}

/// Budget taken by one answer, given back when dropped.
#[derive(Debug)]
pub(crate) struct Held {
    /// One permit per level, in the budget's order.
    permits: Vec<OwnedSemaphorePermit>,
    units: usize,
}

impl Held {
    #[cfg(test)]
    pub(crate) fn bytes(&self) -> usize {
        self.units * UNIT
    }

    /// Keeps `bytes` (rounded up to the unit) and gives the rest back at once.
    pub(crate) fn shrink_to(&mut self, bytes: usize) {
        let keep = units(bytes);
        if keep >= self.units {
            return;
        }
        for p in &mut self.permits {
            drop(p.split(self.units - keep));
        }
        self.units = keep;
    }
}

impl Budget {
    pub(crate) fn new(
        connection: Arc<Level>,
        account: Arc<Level>,
        process: Arc<Level>,
        wait: Duration,
    ) -> Self {
        Self {
            levels: [connection, account, process],
            wait,
        }
    }

    /// Nothing held yet.
    pub(crate) fn none(&self) -> Held {
        let permits = self
            .levels
            .iter()
            .map(|l| {
                l.sem
                    .clone()
                    .try_acquire_many_owned(0)
                    // Zero permits are always there; only a closed semaphore refuses,
                    // and these are never closed.
                    .expect("zero permits of an open semaphore")
            })
            .collect();
        Held { permits, units: 0 }
    }

    /// Takes `bytes` more for `held`, waiting at most the budget's wait for room.
    /// Refused at once when a level could never hold that much.
    pub(crate) async fn grow(&self, held: &mut Held, bytes: usize) -> Result<(), Over> {
        let n = units(bytes);
        if n == 0 {
            return Ok(());
        }
        if let Some(l) = self.levels.iter().find(|l| held.units + n > l.units) {
            return Err(l.over());
        }
        let deadline = tokio::time::Instant::now() + self.wait;
        // n <= the smallest level's units <= Semaphore::MAX_PERMITS < u32::MAX.
        let want = u32::try_from(n).map_err(|_| self.levels[0].over())?;
        let mut got = Vec::with_capacity(self.levels.len());
        for l in &self.levels {
            match tokio::time::timeout_at(deadline, l.sem.clone().acquire_many_owned(want)).await {
                Ok(Ok(p)) => got.push(p),
                // What was taken on the inner levels goes back as `got` drops.
                _ => {
                    metrics::counter!("ferry_answer_budget_refusals_total", "level" => l.what)
                        .increment(1);
                    return Err(l.over());
                }
            }
        }
        for (h, g) in held.permits.iter_mut().zip(got) {
            h.merge(g);
        }
        held.units += n;
        Ok(())
    }

    /// A new hold of `bytes`.
    pub(crate) async fn take(&self, bytes: usize) -> Result<Held, Over> {
        let mut held = self.none();
        self.grow(&mut held, bytes).await?;
        Ok(held)
    }
}

/// `frame`, keeping `held` until the last copy of it is dropped: when the socket's
/// writer has copied it into its write buffer, or a closing outbox drops it.
pub(crate) fn attach(frame: Bytes, held: Held) -> Bytes {
    Bytes::from_owner(Attached { frame, _held: held })
}

struct Attached {
    frame: Bytes,
    _held: Held,
}

impl AsRef<[u8]> for Attached {
    fn as_ref(&self) -> &[u8] {
        &self.frame
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(conn: usize, account: &Arc<Level>, process: &Arc<Level>) -> Budget {
        Budget::new(
            Level::new("connection", conn),
            account.clone(),
            process.clone(),
            Duration::from_millis(50),
        )
    }

    #[tokio::test]
    async fn each_level_bounds_what_is_held_and_gets_it_back() {
        let process = Level::new("process", 64 << 10);
        let account = Level::new("account", 16 << 10);
        let a = budget(10 << 10, &account, &process);
        let b = budget(10 << 10, &account, &process);
        let h1 = a.take(8 << 10).await.unwrap();
        assert_eq!(
            a.take(4 << 10).await.unwrap_err().what,
            "connection",
            "8 + 4 KiB > the connection's 10"
        );
        let err = b.take(9 << 10).await.unwrap_err();
        assert_eq!(err.what, "account", "8 + 9 KiB > the account's 16");
        assert_eq!(account.in_use(), 8 << 10, "a refusal holds nothing");
        assert_eq!(process.in_use(), 8 << 10);
        drop(h1);
        assert_eq!(account.in_use(), 0);
        assert!(b.take(9 << 10).await.is_ok());
        assert_eq!(
            a.take(11 << 10).await.unwrap_err().what,
            "connection",
            "more than a level holds is refused at once"
        );
    }

    #[tokio::test]
    async fn a_waiting_answer_gets_what_is_given_back() {
        let process = Level::new("process", 64 << 10);
        let account = Level::new("account", 16 << 10);
        let a = Budget {
            wait: Duration::from_secs(5),
            ..budget(16 << 10, &account, &process)
        };
        let mut h = a.take(12 << 10).await.unwrap();
        let waiter = tokio::spawn({
            let a = a.clone();
            async move { a.take(8 << 10).await.map(|h| h.bytes()) }
        });
        tokio::task::yield_now().await;
        h.shrink_to(3000);
        assert_eq!(h.bytes(), 3 << 10, "rounded up to the unit");
        assert_eq!(waiter.await.unwrap(), Ok(8 << 10));
    }

    #[tokio::test]
    async fn an_attached_frame_holds_its_budget_until_dropped() {
        let process = Level::new("process", 64 << 10);
        let account = Level::new("account", 16 << 10);
        let a = budget(16 << 10, &account, &process);
        let h = a.take(5 << 10).await.unwrap();
        let frame = attach(Bytes::from(vec![7u8; 100]), h);
        let copy = frame.clone();
        assert_eq!(&copy[..], &[7u8; 100][..]);
        drop(frame);
        assert_eq!(process.in_use(), 5 << 10, "a copy is still queued");
        drop(copy);
        assert_eq!(process.in_use(), 0);
    }
}
