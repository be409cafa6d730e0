//! Limits shared by every process through Redis: a GCRA (the algorithm governor uses) whose
//! state, one "theoretical arrival time" per limit, lives in Redis and moves only inside a
//! Lua script, on Redis's clock.
//!
//! One call reserves several permits: `reserve_ahead`'s worth, or as many as the caller has
//! messages waiting for if fewer. A worker pays one round trip per batch of messages, not per
//! message, and the permits are times, so a process spreads its batch evenly instead of
//! bursting it.
//!
//! While Redis cannot be reached, callers fall back to a local limiter at `local_share` of
//! the limit and Redis is asked again after a second, so nothing waits on a dead Redis and
//! nothing is lost; the limit is then only as exact as the share is.

use crate::config::RedisSettings;
use crate::metrics::Metrics;
use anyhow::Context;
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client, Script};
use secrecy::ExposeSecret;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};
use tokio::time::Instant;

/// Reserves permits of one limit. KEYS[1]: the limit. ARGV: the interval between permits
/// (µs), the tolerance ((burst − 1) × interval, µs), permits wanted, how far ahead of now
/// (µs) the first permit may lie, and the permits one call may take even when fewer fall
/// within that (a horizon's worth: several processes sharing a busy limit would otherwise
/// each get one permit per call). Permit i may be used at max(now, tat + i·interval −
/// tolerance). Answers {permits granted, tat − now}; with none granted, {0, µs until one
/// would be}.
const RESERVE: &str = r"
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local want = tonumber(ARGV[3])
local ahead = tonumber(ARGV[4])
local chunk = tonumber(ARGV[5])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
local room = math.floor((now + ahead + tolerance - tat) / interval) + 1
if room < 1 then
  return {0, tat - tolerance - ahead - now}
end
local granted = math.min(want, math.max(room, chunk))
local next_tat = tat + granted * interval
redis.call('SET', KEYS[1], string.format('%d', next_tat), 'PX', math.ceil((next_tat - now) / 1000) + 1)
return {granted, tat - now}
";

/// Permits reserved by one call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reservation {
    /// When each permit may be used, in order.
    Granted(Vec<Instant>),
    /// None fits yet; ask again after this long.
    Wait(Duration),
}

/// Redis could not be asked; the caller uses its local share.
#[derive(Debug, Clone, Copy)]
pub struct Unreachable;

/// A limit's shape: one permit per `interval`, up to `burst` at once.
#[derive(Debug, Clone, Copy)]
pub struct Rate {
    pub interval: Duration,
    pub burst: u32,
}

/// One process's handle on the shared limits. Cheap to clone.
#[derive(Clone)]
pub struct SharedLimits {
    inner: Arc<Inner>,
}

struct Inner {
    client: Client,
    config: AsyncConnectionConfig,
    script: Script,
    connection: tokio::sync::Mutex<Option<MultiplexedConnection>>,
    state: Mutex<Health>,
    local_share: f64,
    reserve_ahead: Duration,
    metrics: Metrics,
}

#[derive(Default)]
struct Health {
    /// Since when Redis has not answered (None: it answers).
    down_since: Option<SystemTime>,
    /// No call before this (a failed one is not repeated for every waiter).
    retry_at: Option<Instant>,
}

/// After a failed call, Redis is left alone this long.
const RETRY_AFTER: Duration = Duration::from_secs(1);

impl SharedLimits {
    /// None when no Redis is configured.
    ///
    /// # Errors
    /// The URL is not a Redis URL. An unreachable Redis is not an error: Herald starts on
    /// its local share and connects when Redis answers.
    pub fn from_settings(
        settings: &RedisSettings,
        metrics: Metrics,
    ) -> anyhow::Result<Option<Self>> {
        let url = settings.url.expose_secret();
        if url.is_empty() {
            return Ok(None);
        }
        // The URL may hold a password: the error says what is wrong, not what it was.
        let client = Client::open(url)
            .ok()
            .context("redis.url is not a Redis URL")?;
        let timeout = Some(Duration::from_millis(settings.timeout_ms));
        metrics.set_redis_up(true);
        Ok(Some(Self {
            inner: Arc::new(Inner {
                client,
                config: AsyncConnectionConfig::new()
                    .set_connection_timeout(timeout)
                    .set_response_timeout(timeout),
                script: Script::new(RESERVE),
                connection: tokio::sync::Mutex::new(None),
                state: Mutex::new(Health::default()),
                local_share: settings.local_share,
                reserve_ahead: Duration::from_millis(settings.reserve_ahead_ms),
                metrics,
            }),
        }))
    }

    pub fn local_share(&self) -> f64 {
        self.inner.local_share
    }

    pub fn reserve_ahead(&self) -> Duration {
        self.inner.reserve_ahead
    }

    /// Since when Redis has not answered, if it has not (for `/readyz`).
    pub fn down_since(&self) -> Option<SystemTime> {
        self.health().down_since
    }

    fn health(&self) -> std::sync::MutexGuard<'_, Health> {
        self.inner
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Reserves up to `want` permits of the limit `key`, those that fall within `ahead` of
    /// now (zero: only permits usable at once).
    ///
    /// # Errors
    /// [`Unreachable`] when Redis does not answer, or failed less than a second ago.
    pub async fn reserve(
        &self,
        key: &str,
        rate: Rate,
        want: u32,
        ahead: Duration,
    ) -> Result<Reservation, Unreachable> {
        if self.health().retry_at.is_some_and(|at| Instant::now() < at) {
            return Err(Unreachable);
        }
        let interval = micros(rate.interval).max(1);
        let tolerance = interval.saturating_mul(i64::from(rate.burst.saturating_sub(1)));
        // A horizon's worth of permits, at least one.
        let chunk = (micros(ahead) / interval).max(1);
        let want = i64::from(want.max(1));
        let answer = self
            .call(key, [interval, tolerance, want, micros(ahead), chunk])
            .await;
        let received = Instant::now();
        match answer {
            Ok((granted, offset)) => {
                self.answered();
                let granted = u32::try_from(granted).unwrap_or(0);
                if granted == 0 {
                    return Ok(Reservation::Wait(
                        from_micros(offset).min(Duration::from_secs(60)),
                    ));
                }
                // Saturating, and capped at a minute out: the numbers come from Redis, and
                // a corrupted key must not overflow an Instant.
                let times = (0..i64::from(granted))
                    .map(|i| {
                        let at = offset
                            .saturating_add(i.saturating_mul(interval))
                            .saturating_sub(tolerance);
                        received + from_micros(at).min(Duration::from_secs(60))
                    })
                    .collect();
                Ok(Reservation::Granted(times))
            }
            Err(e) => {
                self.failed(&e);
                Err(Unreachable)
            }
        }
    }

    async fn call(&self, key: &str, args: [i64; 5]) -> redis::RedisResult<(i64, i64)> {
        let mut connection = {
            let mut held = self.inner.connection.lock().await;
            match held.as_ref() {
                Some(c) => c.clone(),
                None => {
                    let c = self
                        .inner
                        .client
                        .get_multiplexed_async_connection_with_config(&self.inner.config)
                        .await?;
                    *held = Some(c.clone());
                    c
                }
            }
        };
        let mut invocation = self.inner.script.key(format!("herald:limit:{key}"));
        for arg in args {
            invocation.arg(arg);
        }
        let answer = invocation.invoke_async(&mut connection).await;
        if answer.is_err() {
            // A broken connection is not reused; the next call after the pause reconnects.
            *self.inner.connection.lock().await = None;
        }
        answer
    }

    fn answered(&self) {
        let mut health = self.health();
        health.retry_at = None;
        if health.down_since.take().is_some() {
            tracing::info!("Redis answers again: limits are shared by every process again");
            self.inner.metrics.set_redis_up(true);
        }
    }

    fn failed(&self, error: &redis::RedisError) {
        let mut health = self.health();
        health.retry_at = Some(Instant::now() + RETRY_AFTER);
        if health.down_since.is_none() {
            health.down_since = Some(SystemTime::now());
            tracing::warn!(
                error = %error,
                share = self.inner.local_share,
                "Redis does not answer: each limit falls back to this process's share of it"
            );
            self.inner.metrics.set_redis_up(false);
        }
    }
}

fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

/// Negative offsets (a permit usable already) are zero.
fn from_micros(us: i64) -> Duration {
    Duration::from_micros(u64::try_from(us).unwrap_or(0))
}
