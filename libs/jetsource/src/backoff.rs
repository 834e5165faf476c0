//! One backoff for every retry: exponential from a base to a ceiling, optionally with full
//! jitter (a random delay up to the exponential one, so contenders spread out).

use std::time::Duration;

/// Delays between attempts: `base × 2^attempt`, at most `max`.
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    jitter: bool,
    attempt: u32,
}

impl Backoff {
    /// From `base`, doubling up to `max`.
    pub fn new(base: Duration, max: Duration) -> Self {
        Self { base, max: max.max(base), jitter: false, attempt: 0 }
    }

    /// Each delay is random, up to the exponential one (full jitter).
    #[must_use]
    pub fn with_jitter(mut self) -> Self {
        self.jitter = true;
        self
    }

    /// The delay before attempt `attempt` (0 for the first retry), without changing state.
    pub fn delay(&self, attempt: u32) -> Duration {
        let ceiling = self.base.saturating_mul(1_u32 << attempt.min(20)).min(self.max);
        if self.jitter {
            let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
            Duration::from_nanos(fastrand::u64(0..=nanos))
        } else {
            ceiling
        }
    }

    /// The next delay; each call doubles it (up to the ceiling).
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.delay(self.attempt);
        self.attempt = self.attempt.saturating_add(1);
        delay
    }

    /// Sleeps for the next delay.
    pub async fn wait(&mut self) {
        tokio::time::sleep(self.next_delay()).await;
    }

    /// Starts again from the base.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_ceiling_and_jitter_stays_below_them() {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_millis(500));
        let delays: Vec<u128> = (0..5).map(|_| backoff.next_delay().as_millis()).collect();
        assert_eq!(delays, [100, 200, 400, 500, 500]);
        backoff.reset();
        assert_eq!(backoff.next_delay(), Duration::from_millis(100));
        let jittered = Backoff::new(Duration::from_millis(10), Duration::from_secs(1)).with_jitter();
        assert!((0..100).all(|_| jittered.delay(3) <= Duration::from_millis(80)));
    }
}
