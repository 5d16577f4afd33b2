//! What one account may use of this process over all its sockets: requests per
//! second and burst, requests in flight, bytes of answers in flight, and connects
//! per minute. A socket's own limits (`limits.rs`, `session.rs`) bound one socket;
//! an account may hold `limits.max_connections_per_user` of them, so without these
//! it would get that many times a socket's share.
//!
//! An account's state lives while it has a socket here (the sockets hold it); its
//! connect budget outlives them, since connecting and closing is the cost it bounds.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

use super::limits::TokenBucket;
use crate::config::Budgets;
use crate::connections::budget::{Budget, Level};

/// Accounts whose connect budget is remembered at once; past it, accounts whose
/// bucket is full again are forgotten first (they lose nothing), and when none is,
/// a new account is not remembered (its connect is allowed), so memory stays bounded.
const MAX_CONNECT_ENTRIES: usize = 100_000;

/// One account's shared budgets on this process.
pub(crate) struct Account {
    /// Requests per second and burst, over its sockets.
    rate: Mutex<TokenBucket>,
    /// Requests being handled at once, over its sockets.
    pub(crate) in_flight: Arc<Semaphore>,
    /// Bytes of answers in flight, over its sockets.
    bytes: Arc<Level>,
}

impl Account {
    /// Takes one request token from the account's bucket.
    pub(crate) fn take(&self, now: Instant) -> bool {
        self.rate.lock().unwrap().take(now)
    }

    /// When the account's next request token is due.
    pub(crate) fn next_token_in(&self, now: Instant) -> Duration {
        self.rate.lock().unwrap().next_token_in(now)
    }
}

pub(crate) struct Accounts {
    cfg: Budgets,
    /// Bytes of answers in flight over the whole process.
    process: Arc<Level>,
    live: Mutex<HashMap<String, Weak<Account>>>,
    connects: Mutex<HashMap<String, TokenBucket>>,
}

impl Accounts {
    pub(crate) fn new(cfg: &Budgets) -> Self {
        Self {
            cfg: cfg.clone(),
            process: Level::new("process", cfg.process_answer_bytes),
            live: Mutex::new(HashMap::new()),
            connects: Mutex::new(HashMap::new()),
        }
    }

    /// The account's shared state, made when its first socket here connects.
    pub(crate) fn join(&self, user: &str) -> Arc<Account> {
        let mut live = self.live.lock().unwrap();
        if let Some(a) = live.get(user).and_then(Weak::upgrade) {
            return a;
        }
        let a = Arc::new(Account {
            rate: Mutex::new(TokenBucket::new(
                self.cfg.account_requests_per_second,
                self.cfg.account_request_burst,
            )),
            in_flight: Arc::new(Semaphore::new(self.cfg.account_in_flight)),
            bytes: Level::new("account", self.cfg.account_answer_bytes),
        });
        // Amortized: entries of accounts gone are swept when the map has doubled.
        if live.len() >= 1024 && live.len().is_power_of_two() {
            live.retain(|_, w| w.strong_count() > 0);
        }
        live.insert(user.to_owned(), Arc::downgrade(&a));
        a
    }

    /// The answer budget of one new connection of `account`.
    pub(crate) fn budget(&self, account: &Account) -> Budget {
        Budget::new(
            Level::new("connection", self.cfg.connection_answer_bytes),
            account.bytes.clone(),
            self.process.clone(),
            Duration::from_millis(self.cfg.answer_wait_ms),
        )
    }

    /// Counts one connect of `user`; Err with the wait until the next is allowed
    /// when the account used its connects of the minute.
    pub(crate) fn connect(&self, user: &str, now: Instant) -> Result<(), Duration> {
        let per_minute = self.cfg.account_connects_per_minute;
        let mut connects = self.connects.lock().unwrap();
        if !connects.contains_key(user) && connects.len() >= MAX_CONNECT_ENTRIES {
            connects.retain(|_, b| !b.is_full(now));
            if connects.len() >= MAX_CONNECT_ENTRIES {
                return Ok(());
            }
        }
        let bucket = connects
            .entry(user.to_owned())
            .or_insert_with(|| TokenBucket::per_minute(per_minute, now));
        if bucket.take(now) {
            Ok(())
        } else {
            Err(bucket.next_token_in(now))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> Budgets {
        Budgets {
            account_requests_per_second: 10,
            account_request_burst: 3,
            account_connects_per_minute: 2,
            ..Budgets::default()
        }
    }

    #[test]
    fn sockets_of_one_account_share_its_budgets() {
        let accounts = Accounts::new(&cfg());
        let t0 = Instant::now();
        let a = accounts.join("u");
        let b = accounts.join("u");
        assert!(Arc::ptr_eq(&a, &b));
        assert!((0..3).all(|_| a.take(t0) || b.take(t0)));
        assert!(!b.take(t0), "the burst is the account's, not the socket's");
        assert!(accounts.join("v").take(t0), "another account has its own");
        drop((a, b));
        assert!(
            accounts.join("u").take(t0),
            "an account that left starts afresh"
        );
    }

    #[test]
    fn connects_per_minute_are_the_accounts() {
        let accounts = Accounts::new(&cfg());
        let t0 = Instant::now();
        assert!(accounts.connect("u", t0).is_ok());
        assert!(accounts.connect("u", t0).is_ok());
        let wait = accounts.connect("u", t0).unwrap_err();
        // Two a minute: one every 30 s.
        assert_eq!(wait.as_secs_f64().round(), 30.0, "{wait:?}");
        assert!(accounts.connect("v", t0).is_ok());
        assert!(accounts.connect("u", t0 + Duration::from_secs(30)).is_ok());
    }
}
