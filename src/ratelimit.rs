//! Rate limits (governor): per provider sender and per account on the delivery side, per API
//! key on the API side.
//!
//! These limiters live in one process. With several worker processes each enforces its own
//! share; a limit shared across processes needs a common store (Redis) behind this same API,
//! which arrives with the Redis backend.

use crate::domain::AccountId;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

/// Limits applied before each hand-over to a provider.
#[derive(Clone, Default)]
pub struct DeliveryLimits {
    sender: Option<Arc<DefaultKeyedRateLimiter<String>>>,
    account: Option<Arc<DefaultKeyedRateLimiter<AccountId>>>,
}

impl DeliveryLimits {
    pub fn new(sender_per_second: Option<NonZeroU32>, account_per_minute: u32) -> Self {
        Self {
            // burst 1: a sender limited to N/s sends evenly, never N at once.
            sender: sender_per_second.map(|rate| {
                Arc::new(RateLimiter::keyed(
                    Quota::per_second(rate).allow_burst(NonZeroU32::MIN),
                ))
            }),
            account: NonZeroU32::new(account_per_minute)
                .map(|rate| Arc::new(RateLimiter::keyed(Quota::per_minute(rate)))),
        }
    }

    /// Waits until both the sender and the account may send one more message.
    pub async fn until_ready(&self, sender_key: &str, account: &AccountId) {
        if let Some(limiter) = &self.account {
            limiter.until_key_ready(account).await;
        }
        if let Some(limiter) = &self.sender {
            let key = sender_key.to_owned();
            limiter.until_key_ready(&key).await;
        }
    }

    /// Forgets keys idle long enough to be back at full capacity (keyed limiters grow
    /// with every key otherwise).
    pub fn forget_idle(&self) {
        if let Some(l) = &self.sender {
            l.retain_recent();
        }
        if let Some(l) = &self.account {
            l.retain_recent();
        }
    }
}

/// API requests per key.
#[derive(Clone)]
pub struct ApiLimits {
    limiter: Arc<DefaultKeyedRateLimiter<String>>,
}

impl ApiLimits {
    pub fn new(per_second: u32, burst: u32) -> Self {
        let rate = NonZeroU32::new(per_second).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(burst).unwrap_or(rate);
        Self {
            limiter: Arc::new(RateLimiter::keyed(
                Quota::per_second(rate).allow_burst(burst),
            )),
        }
    }

    /// `Err(wait)` when the key has used its budget: how long until the next request fits.
    pub fn check(&self, key: &str) -> Result<(), Duration> {
        self.limiter
            .check_key(&key.to_owned())
            .map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
    }

    pub fn forget_idle(&self) {
        self.limiter.retain_recent();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_limit_refuses_past_the_burst_and_says_how_long_to_wait() {
        let limits = ApiLimits::new(1, 3);
        for _ in 0..3 {
            assert!(limits.check("key").is_ok());
        }
        let wait = limits.check("key").err();
        assert!(
            wait.is_some_and(|w| w <= Duration::from_secs(1)),
            "{wait:?}"
        );
        assert!(
            limits.check("other key").is_ok(),
            "keys are limited separately"
        );
    }
}
