//! Waits between the retries of work that must eventually succeed (a store write, a
//! log append, a POST): how long to wait, and a wait that ends early on shutdown.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// The wait before retry number `attempt` (1-based): `step` more per attempt, capped
/// at `max`.
pub(crate) fn linear(step: Duration, max: Duration, attempt: u32) -> Duration {
    step.saturating_mul(attempt).min(max)
}

/// The wait before retry number `attempt` (1-based): doubling from `initial`, capped
/// at `max`, with up to a quarter taken off at random so that pods do not retry in step.
pub(crate) fn exponential(initial: Duration, max: Duration, attempt: u32) -> Duration {
    let base = initial
        .saturating_mul(1u32 << attempt.saturating_sub(1).min(20))
        .min(max);
    let jitter: f64 = rand::random::<f64>() * 0.25;
    base.mul_f64(1.0 - jitter)
}

/// Sleeps for `delay`; false when `cancel` fired first (the caller stops retrying).
pub(crate) async fn wait(cancel: &CancellationToken, delay: Duration) -> bool {
    tokio::select! {
        _ = cancel.cancelled() => false,
        _ = tokio::time::sleep(delay) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linear_grows_by_step_up_to_the_cap() {
        let (s, m) = (Duration::from_millis(100), Duration::from_secs(5));
        for (attempt, ms) in [
            (1, 100),
            (2, 200),
            (49, 4900),
            (50, 5000),
            (51, 5000),
            (u32::MAX, 5000),
        ] {
            assert_eq!(
                linear(s, m, attempt),
                Duration::from_millis(ms),
                "attempt {attempt}"
            );
        }
    }

    #[test]
    fn exponential_doubles_up_to_the_cap_with_bounded_jitter() {
        let (i, m) = (Duration::from_millis(100), Duration::from_millis(1000));
        for (attempt, base) in [
            (1, 100),
            (2, 200),
            (3, 400),
            (4, 800),
            (5, 1000),
            (60, 1000),
        ] {
            let d = exponential(i, m, attempt).as_millis() as u64;
            assert!(
                (base * 3 / 4..=base).contains(&d),
                "attempt {attempt}: {d} ms, expected 75-100% of {base}"
            );
        }
    }
}
