//! Accounts cut off for flooding wait before they connect again. The request budget
//! (burst and refusals, `limits.rs`) belongs to a connection, so without this a
//! flooder closed with 1008 reconnects at once with a fresh burst and a fresh refusal
//! allowance, and the close bounds nothing. Keyed by account (the authenticated
//! user), never by what the client chooses: keyed by deviceId, a flooder would
//! reconnect at once under a new one.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Accounts remembered at once; beyond this new cut-offs are not remembered until
/// older ones expire (the close itself still happens), so memory stays bounded.
const MAX_ENTRIES: usize = 100_000;

pub(crate) struct Cooldown {
    period: Duration,
    until: Mutex<HashMap<String, Instant>>,
}

impl Cooldown {
    /// A cut-off account waits `period`; zero turns the cooldown off.
    pub(crate) fn new(period: Duration) -> Self {
        Self {
            period,
            until: Mutex::new(HashMap::new()),
        }
    }

    /// The account was closed for flooding at `now`.
    pub(crate) fn start(&self, user: &str, now: Instant) {
        if self.period.is_zero() {
            return;
        }
        let mut until = self.until.lock().unwrap();
        if until.len() >= MAX_ENTRIES {
            until.retain(|_, t| *t > now);
            if until.len() >= MAX_ENTRIES {
                return;
            }
        }
        until.insert(user.to_owned(), now + self.period);
    }

    /// How long the account must still wait before connecting, if at all.
    pub(crate) fn remaining(&self, user: &str, now: Instant) -> Option<Duration> {
        if self.period.is_zero() {
            return None;
        }
        let mut until = self.until.lock().unwrap();
        let t = *until.get(user)?;
        if t <= now {
            until.remove(user);
            return None;
        }
        Some(t - now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cut_off_account_waits_the_period_and_others_do_not() {
        let c = Cooldown::new(Duration::from_secs(10));
        let t0 = Instant::now();
        c.start("u", t0);
        let left = c.remaining("u", t0 + Duration::from_secs(4));
        assert_eq!(left, Some(Duration::from_secs(6)));
        assert_eq!(c.remaining("v", t0), None);
        assert_eq!(c.remaining("u", t0 + Duration::from_secs(10)), None);
        // Expired entries are dropped when looked at.
        assert!(c.until.lock().unwrap().is_empty());
    }

    #[test]
    fn zero_turns_it_off() {
        let c = Cooldown::new(Duration::ZERO);
        let t0 = Instant::now();
        c.start("u", t0);
        assert_eq!(c.remaining("u", t0), None);
    }
}
