//! Exponential backoff with jitter: one formula for every retry loop.

use std::time::Duration;

/// Waits that double after each failure in a row, up to a cap, each
/// shortened by a random factor in [0.5, 1] so that many nodes do not retry
/// in step.
///
/// ```
/// use std::time::Duration;
/// use dragonfly_api::Backoff;
///
/// let backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
/// assert_eq!(backoff.delay_with(3, 1.0), Duration::from_secs(4));
/// assert_eq!(backoff.delay_with(3, 0.0), Duration::from_secs(2));
/// assert_eq!(backoff.delay_with(30, 1.0), Duration::from_secs(60));
/// // A server's Retry-After wins.
/// assert_eq!(backoff.after(3, Some(Duration::from_secs(7))), Duration::from_secs(7));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The longest wait after the first failure.
    pub base: Duration,
    /// The longest wait at all.
    pub max: Duration,
}

impl Backoff {
    /// Waits starting at `base`, capped at `max`.
    pub const fn new(base: Duration, max: Duration) -> Backoff {
        Backoff { base, max }
    }

    /// The wait after `failures` failures in a row (1 is the first), with
    /// `jitter` in [0, 1] (1: the full wait, 0: half of it).
    pub fn delay_with(&self, failures: u32, jitter: f64) -> Duration {
        let exponent = failures.saturating_sub(1).min(31);
        let full = self.base.saturating_mul(1u32 << exponent).min(self.max);
        full.mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0))
    }

    /// The wait after `failures` failures in a row, with random jitter.
    pub fn delay(&self, failures: u32) -> Duration {
        self.delay_with(failures, fastrand::f64())
    }

    /// The server's `Retry-After` when it gave one (capped), otherwise
    /// [`Backoff::delay`].
    pub fn after(&self, failures: u32, retry_after: Option<Duration>) -> Duration {
        retry_after.map_or_else(|| self.delay(failures), |wait| wait.min(self.max))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_exponentially_with_jitter_and_a_cap() {
        let backoff = Backoff::new(Duration::from_secs(2), Duration::from_secs(600));
        assert_eq!(backoff.delay_with(1, 1.0), Duration::from_secs(2));
        assert_eq!(backoff.delay_with(1, 0.0), Duration::from_secs(1));
        assert_eq!(backoff.delay_with(3, 1.0), Duration::from_secs(8));
        assert_eq!(backoff.delay_with(3, 0.0), Duration::from_secs(4));
        assert_eq!(backoff.delay_with(40, 1.0), backoff.max);
        assert_eq!(backoff.delay_with(u32::MAX, 0.5), Duration::from_secs(450));
        for _ in 0..100 {
            let delay = backoff.delay(5);
            assert!(delay >= Duration::from_secs(16) && delay <= Duration::from_secs(32), "{delay:?}");
        }
        assert_eq!(backoff.after(2, Some(Duration::from_secs(3600))), backoff.max, "Retry-After is capped");
    }
}
