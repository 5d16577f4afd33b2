//! Per-connection request rate limiting: a token bucket, and the refusals a connection
//! may collect before it is closed.

use std::time::Instant;

pub(crate) struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    pub(crate) fn new(rate_per_sec: u32, burst: u32) -> Self {
        let burst = f64::from(burst.max(1));
        Self {
            rate: f64::from(rate_per_sec),
            burst,
            tokens: burst,
            last: Instant::now(),
        }
    }

    /// Takes one token if available.
    pub(crate) fn take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

impl TokenBucket {
    /// `per_minute` tokens at once, refilled evenly over a minute.
    pub(crate) fn per_minute(per_minute: u32, now: Instant) -> Self {
        let burst = f64::from(per_minute.max(1));
        Self {
            rate: burst / 60.0,
            burst,
            tokens: burst,
            last: now,
        }
    }

    /// Whether the bucket has refilled to its burst by `now` (nothing to remember).
    pub(crate) fn is_full(&self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens + elapsed * self.rate >= self.burst
    }

    /// How long after `now` the next token is due (zero when one is there).
    pub(crate) fn next_token_in(&self, now: Instant) -> std::time::Duration {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        let tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        if tokens >= 1.0 || self.rate <= 0.0 {
            return std::time::Duration::ZERO;
        }
        std::time::Duration::from_secs_f64((1.0 - tokens) / self.rate)
    }
}

/// Refusals (frames over the rate) a connection may collect: a client that bursts now
/// and then is refused a few times, one that keeps flooding runs out within seconds
/// and is closed, so it stops costing reads, refusals and scheduling at all.
pub(crate) struct Refusals(TokenBucket);

impl Refusals {
    /// `allowed` refusals at once, one more per second.
    pub(crate) fn new(allowed: u32) -> Self {
        Self(TokenBucket::new(1, allowed))
    }

    /// Counts one refusal; false once the connection has used them up.
    pub(crate) fn refuse(&mut self, now: Instant) -> bool {
        self.0.take(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn allows_the_burst_then_the_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(10, 3);
        assert!((0..3).all(|_| b.take(t0)));
        assert!(!b.take(t0));
        assert!(b.take(t0 + Duration::from_millis(100)));
        assert!(!b.take(t0 + Duration::from_millis(100)));
        let wait = b.next_token_in(t0 + Duration::from_millis(100));
        assert!(wait > Duration::from_millis(99) && wait <= Duration::from_millis(100));
    }

    #[test]
    fn refusals_run_out_for_a_flood_not_for_a_burst() {
        let t0 = Instant::now();
        let mut r = Refusals::new(3);
        assert!(
            (0..3).all(|_| r.refuse(t0)),
            "a burst is refused, not closed"
        );
        assert!(!r.refuse(t0), "a fourth refusal at once closes");
        let mut r = Refusals::new(3);
        // One refusal a second, forever: never closed.
        assert!((0..100).all(|s| r.refuse(t0 + Duration::from_secs(s))));
    }
}
