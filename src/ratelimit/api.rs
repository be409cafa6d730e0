//! API requests per key (`limits.api_requests_per_second`, `limits.api_burst`).
//!
//! With Redis, a process takes a key's permits in leases of several (one round trip per
//! lease, not per request) and spends them locally; a lease not spent within a second is
//! dropped, so no process can save permits up into a burst above the limit.

use super::share_of;
use super::shared::{Rate, Reservation, SharedLimits, Unreachable};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::time::Instant;

/// How long an unspent lease stays good.
const LEASE_LIFETIME: Duration = Duration::from_secs(1);

#[derive(Clone)]
pub struct ApiLimits {
    /// The whole limit without Redis; this process's share of it while Redis does not
    /// answer.
    local: Arc<DefaultKeyedRateLimiter<String>>,
    shared: Option<Arc<Leases>>,
}

struct Leases {
    limits: SharedLimits,
    rate: Rate,
    /// Permits per round trip.
    size: u32,
    /// Per key: permits leased and not spent yet, and when they were leased.
    held: Mutex<HashMap<String, (u32, Instant)>>,
}

impl ApiLimits {
    pub fn new(per_second: u32, burst: u32, shared: Option<SharedLimits>) -> Self {
        let rate = NonZeroU32::new(per_second).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(burst).unwrap_or(rate);
        let quota = Quota::per_second(rate).allow_burst(burst);
        let local = match &shared {
            None => quota,
            Some(s) => Quota::per_second(share_of(rate, s.local_share()))
                .allow_burst(share_of(burst, s.local_share())),
        };
        Self {
            local: Arc::new(RateLimiter::keyed(local)),
            shared: shared.map(|limits| {
                Arc::new(Leases {
                    limits,
                    rate: Rate {
                        interval: quota.replenish_interval(),
                        burst: burst.get(),
                    },
                    // A twentieth of a second's requests, at most a twentieth of the burst:
                    // one round trip per 50 requests at the default 1,000/s.
                    size: (rate.get() / 20).min(burst.get() / 20).clamp(1, 100),
                    held: Mutex::new(HashMap::new()),
                })
            }),
        }
    }

    /// `Err(wait)` when the key has used its budget: how long until the next request fits.
    pub async fn check(&self, key: &str) -> Result<(), Duration> {
        // Without an answer from Redis, the local share decides.
        if let Some(leases) = &self.shared
            && let Ok(answer) = leases.take(key).await
        {
            return answer;
        }
        self.local
            .check_key(&key.to_owned())
            .map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
    }

    pub fn forget_idle(&self) {
        self.local.retain_recent();
        if let Some(leases) = &self.shared {
            leases
                .lock()
                .retain(|_, (_, leased)| leased.elapsed() < LEASE_LIFETIME);
        }
    }
}

impl Leases {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (u32, Instant)>> {
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }

    async fn take(&self, key: &str) -> Result<Result<(), Duration>, Unreachable> {
        if let Some((left, leased)) = self.lock().get_mut(key)
            && *left > 0
            && leased.elapsed() < LEASE_LIFETIME
        {
            *left -= 1;
            return Ok(Ok(()));
        }
        let reservation = self
            .limits
            .reserve(&format!("api:{key}"), self.rate, self.size, Duration::ZERO)
            .await?;
        Ok(match reservation {
            Reservation::Granted(permits) => {
                let rest = u32::try_from(permits.len().saturating_sub(1)).unwrap_or(0);
                self.lock().insert(key.to_owned(), (rest, Instant::now()));
                Ok(())
            }
            Reservation::Wait(wait) => Err(wait.max(Duration::from_millis(1))),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn api_limit_refuses_past_the_burst_and_says_how_long_to_wait() {
        let limits = ApiLimits::new(1, 3, None);
        for _ in 0..3 {
            assert!(limits.check("key").await.is_ok());
        }
        let wait = limits.check("key").await.err();
        assert!(
            wait.is_some_and(|w| w <= Duration::from_secs(1)),
            "{wait:?}"
        );
        assert!(
            limits.check("other key").await.is_ok(),
            "keys are limited separately"
        );
    }
}
