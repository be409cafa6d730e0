//! When to try a transiently failed message again: exponential backoff with jitter, never
//! sooner than the provider's `Retry-After`.

use crate::config::WorkerSettings;
use rand::Rng;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    initial: Duration,
    max: Duration,
    jitter: f64,
}

impl RetryPolicy {
    pub fn from_settings(s: &WorkerSettings) -> Self {
        Self {
            max_attempts: s.max_attempts,
            initial: Duration::from_millis(s.backoff_initial_ms),
            max: Duration::from_millis(s.backoff_max_ms),
            jitter: s.backoff_jitter,
        }
    }

    /// A policy from its parts (webhook deliveries have their own settings).
    pub fn new(max_attempts: u32, initial: Duration, max: Duration, jitter: f64) -> Self {
        Self {
            max_attempts,
            initial,
            max,
            jitter,
        }
    }

    /// The step before attempt `attempt + 1`: initial × 2^(attempt−1), capped at the maximum.
    fn step(&self, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(1).min(30);
        self.initial.saturating_mul(1u32 << doublings).min(self.max)
    }

    /// Delay before the next attempt after `attempt` attempts failed: the jittered step, but
    /// never sooner than the provider's `Retry-After`. That is capped at the backoff maximum,
    /// so a hostile value cannot park a message past its validity.
    pub fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        let step = self.step(attempt);
        let factor = 1.0 + rand::rng().random_range(-self.jitter..=self.jitter);
        // try_from: a configured maximum near Duration's limit must not overflow (mul_f64
        // would panic).
        let jittered =
            Duration::try_from_secs_f64(step.as_secs_f64() * factor.max(0.0)).unwrap_or(step);
        match retry_after {
            Some(wait) => jittered.max(wait.min(self.max)),
            None => jittered,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(jitter: f64) -> RetryPolicy {
        RetryPolicy {
            max_attempts: 5,
            initial: Duration::from_secs(1),
            max: Duration::from_secs(60),
            jitter,
        }
    }

    #[test]
    fn backoff_doubles_from_one_second_up_to_a_minute() {
        let p = policy(0.0);
        let delays: Vec<u64> = (1..=8).map(|a| p.delay(a, None).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 32, 60, 60]);
    }

    #[test]
    fn jitter_stays_within_twenty_percent() {
        let p = policy(0.2);
        for _ in 0..1000 {
            let d = p.delay(3, None).as_secs_f64();
            assert!((3.2..=4.8).contains(&d), "{d}");
        }
    }

    #[test]
    fn a_huge_configured_maximum_does_not_overflow() {
        let p = RetryPolicy {
            max_attempts: 5,
            initial: Duration::MAX,
            max: Duration::MAX,
            jitter: 0.2,
        };
        assert!(p.delay(40, Some(Duration::MAX)) > Duration::ZERO);
    }

    #[test]
    fn retry_after_is_honoured_but_capped_at_the_maximum() {
        let p = policy(0.0);
        assert_eq!(
            p.delay(1, Some(Duration::from_millis(1500))),
            Duration::from_millis(1500)
        );
        assert_eq!(
            p.delay(1, Some(Duration::from_secs(3600))),
            Duration::from_secs(60)
        );
        assert_eq!(p.delay(2, Some(Duration::ZERO)), Duration::from_secs(2));
    }

    #[test]
    fn jitter_never_brings_a_retry_before_retry_after() {
        let p = policy(0.2);
        for _ in 0..1000 {
            assert!(p.delay(1, Some(Duration::from_secs(2))) >= Duration::from_secs(2));
        }
    }
}
