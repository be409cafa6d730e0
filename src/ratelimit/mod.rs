//! Rate limits (governor): per provider sender and per account on the delivery side, per API
//! key on the API side.
//!
//! Without Redis these limiters live in one process, which is exact for one process. With
//! `redis.url` set, each limit's permits come from Redis ([`shared`]), so the limit holds for
//! every process together; which waiter of this process gets the next permit is still
//! decided here, in priority order.

mod api;
pub mod shared;

pub use api::ApiLimits;

use crate::domain::{AccountId, Channel, Priority};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use shared::{Rate, Reservation, SharedLimits};
use std::cmp::Reverse;
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::fmt::Display;
use std::hash::Hash;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// The key one sender's messages are limited under.
pub fn sender_key(provider: &str, channel: Channel, from: &str) -> String {
    format!("{provider}:{channel}:{from}")
}

/// A sender limited to N/s sends evenly, never N at once: the burst is 25 ms worth (at least
/// one). With a burst of one, every wake-up that comes late (timers fire up to a millisecond
/// late) loses that slot for good: 80/s came out 2 % short. A slot's worth of slack keeps the
/// long-run rate on the limit and never above it. Below 80/s the burst stays one, so no
/// one-second window ever holds more than the limit; from 80/s, at most a slot more.
fn per_second(rate: NonZeroU32) -> Quota {
    let burst = NonZeroU32::new(rate.get() / 40).unwrap_or(NonZeroU32::MIN);
    Quota::per_second(rate).allow_burst(burst)
}

/// Limits applied before each hand-over to a provider.
///
/// A sender's rate is whatever its provider says it is at the time
/// ([`crate::providers::Provider::sender_rate`]): the deployment's Twilio long codes at 1/s, a
/// sender an account registered with its own rate, the mock unlimited. So senders that
/// appear while Herald runs (an account's own credentials) need no registration here.
#[derive(Clone)]
pub struct DeliveryLimits {
    senders: Arc<Gates<String>>,
    account: Option<(Quota, Arc<Gates<AccountId>>)>,
    pauses: Arc<Pauses>,
}

impl DeliveryLimits {
    /// `account_per_minute`: messages each account may hand over per minute (0: no limit).
    /// `shared`: Redis, when the limits hold across processes.
    pub fn new(account_per_minute: u32, shared: Option<SharedLimits>) -> Self {
        Self {
            senders: Arc::new(Gates::new(shared.clone().map(|s| (s, "sender")))),
            account: NonZeroU32::new(account_per_minute).map(|rate| {
                (
                    Quota::per_minute(rate),
                    Arc::new(Gates::new(shared.map(|s| (s, "account")))),
                )
            }),
            pauses: Arc::default(),
        }
    }

    /// Waits until both the account and the sender may send one more message. Messages
    /// waiting for the same key go in priority order, so an urgent message overtakes a
    /// rate-limited backlog instead of queueing behind it. `sender_rate`: the sender's
    /// messages per second (None: not limited).
    pub async fn until_ready(
        &self,
        sender_rate: Option<NonZeroU32>,
        sender_key: impl FnOnce() -> String,
        account: &AccountId,
        priority: Priority,
    ) {
        if let Some((quota, gates)) = &self.account {
            gates.pass(account, *quota, priority).await;
        }
        let paused = self.pauses.any();
        if sender_rate.is_none() && !paused {
            return;
        }
        let key = sender_key();
        if paused {
            self.pauses.wait(&key).await;
        }
        if let Some(rate) = sender_rate {
            self.senders.pass(&key, per_second(rate), priority).await;
        }
    }

    /// The provider told this sender to wait (a 429 with `Retry-After`): none of its
    /// messages is handed over for `wait`, while other senders go on. `sender_key` is the
    /// key [`DeliveryLimits::until_ready`] is given for that sender.
    pub fn pause_sender(&self, sender_key: String, wait: Duration) {
        self.pauses
            .pause(sender_key, tokio::time::Instant::now() + wait);
    }

    /// Forgets keys idle long enough to be back at full capacity (they grow with every key
    /// otherwise).
    pub fn forget_idle(&self) {
        self.pauses.forget_past();
        self.senders.forget_idle();
        if let Some((_, g)) = &self.account {
            g.forget_idle();
        }
    }
}

/// Senders paused until a time their provider named.
#[derive(Default)]
struct Pauses {
    until: Mutex<HashMap<String, tokio::time::Instant>>,
    /// Whether `until` holds anything, read without the lock on every delivery.
    any: AtomicBool,
}

impl Pauses {
    fn any(&self) -> bool {
        self.any.load(Ordering::Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, tokio::time::Instant>> {
        self.until.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn pause(&self, key: String, until: tokio::time::Instant) {
        let mut pauses = self.lock();
        let entry = pauses.entry(key).or_insert(until);
        *entry = (*entry).max(until);
        self.any.store(true, Ordering::Relaxed);
    }

    /// Waits out the sender's pause, and any pause set on it meanwhile.
    async fn wait(&self, key: &str) {
        loop {
            let until = self.lock().get(key).copied();
            match until {
                Some(until) if until > tokio::time::Instant::now() => {
                    tokio::time::sleep_until(until).await;
                }
                _ => return,
            }
        }
    }

    fn forget_past(&self) {
        let mut pauses = self.lock();
        let now = tokio::time::Instant::now();
        pauses.retain(|_, until| *until > now);
        self.any.store(!pauses.is_empty(), Ordering::Relaxed);
    }
}

/// A key unused this long has its whole quota back (the longest quota period is a minute).
const IDLE_AFTER: Duration = Duration::from_secs(61);

/// One [`Gate`] per key, created on first use.
struct Gates<K> {
    gates: Mutex<HashMap<K, Arc<Gate>>>,
    tickets: AtomicU64,
    /// Redis, and the kind of limit (the keys' namespace there).
    shared: Option<(SharedLimits, &'static str)>,
}

impl<K: Clone + Eq + Hash + Display> Gates<K> {
    fn new(shared: Option<(SharedLimits, &'static str)>) -> Self {
        Self {
            gates: Mutex::new(HashMap::new()),
            tickets: AtomicU64::new(0),
            shared,
        }
    }

    fn pacing(&self, key: &K, quota: Quota) -> Pacing {
        match &self.shared {
            None => Pacing::Local(RateLimiter::direct(quota)),
            Some((limits, kind)) => Pacing::Shared(SharedPace::new(
                limits.clone(),
                format!("{kind}:{key}"),
                quota,
            )),
        }
    }

    /// Waits for the key's turn under `quota`. A key whose quota changed (an account gave
    /// its sender another rate) gets a fresh gate; waiters already at the old one finish
    /// there.
    async fn pass(&self, key: &K, quota: Quota, priority: Priority) {
        let gate = {
            let mut gates = self.gates.lock().unwrap_or_else(PoisonError::into_inner);
            let gate = gates
                .entry(key.clone())
                .or_insert_with(|| Arc::new(Gate::new(quota, self.pacing(key, quota))));
            if gate.quota != quota {
                *gate = Arc::new(Gate::new(quota, self.pacing(key, quota)));
            }
            Arc::clone(gate)
        };
        let ticket = (
            Reverse(priority),
            self.tickets.fetch_add(1, Ordering::Relaxed),
        );
        gate.pass(ticket).await;
    }

    fn forget_idle(&self) {
        let mut gates = self.gates.lock().unwrap_or_else(PoisonError::into_inner);
        gates.retain(|_, gate| Arc::strong_count(gate) > 1 || !gate.idle_for(IDLE_AFTER));
    }
}

/// Position in a gate's line: higher priority first, then first come.
type Ticket = (Reverse<Priority>, u64);

/// A rate limiter whose waiters are let through one at a time in priority order (governor
/// serves concurrent waiters in no particular order).
struct Gate {
    quota: Quota,
    pacing: Pacing,
    line: Mutex<Line>,
    turn: Notify,
}

/// Where a gate's permits come from.
enum Pacing {
    /// This process alone.
    Local(DefaultDirectRateLimiter),
    /// Redis, for every process together.
    Shared(SharedPace),
}

impl Pacing {
    /// Waits for one permit; `waiting`: how many more wait behind (one Redis round trip
    /// reserves for them too).
    async fn until_ready(&self, waiting: usize) {
        match self {
            Self::Local(limiter) => limiter.until_ready().await,
            Self::Shared(pace) => pace.until_ready(waiting).await,
        }
    }
}

/// A reserved permit used later than this is dropped: used, it would add to a moment that
/// has passed, above the limit.
const STALE_PERMIT: Duration = Duration::from_millis(50);

/// Most permits one round trip asks for.
const MAX_RESERVED: u32 = 1000;

/// A limit whose permits are reserved from Redis, a batch per round trip.
struct SharedPace {
    limits: SharedLimits,
    key: String,
    rate: Rate,
    /// Permits reserved and not yet used, in time order. Only the waiter at the limiter
    /// takes from it.
    reserved: Mutex<VecDeque<tokio::time::Instant>>,
    /// This process's share of the limit, while Redis does not answer.
    fallback: DefaultDirectRateLimiter,
}

impl SharedPace {
    fn new(limits: SharedLimits, key: String, quota: Quota) -> Self {
        let share = limits.local_share();
        let rate = Rate {
            interval: quota.replenish_interval(),
            burst: quota.burst_size().get(),
        };
        // The share of the rate (and burst), never below one permit per interval ÷ share.
        let fallback = Quota::with_period(rate.interval.div_f64(share))
            .unwrap_or(quota)
            .allow_burst(share_of(quota.burst_size(), share));
        Self {
            limits,
            key,
            rate,
            reserved: Mutex::new(VecDeque::new()),
            fallback: RateLimiter::direct(fallback),
        }
    }

    fn next_reserved(&self) -> Option<tokio::time::Instant> {
        let mut reserved = self.reserved.lock().unwrap_or_else(PoisonError::into_inner);
        let now = tokio::time::Instant::now();
        while let Some(at) = reserved.pop_front() {
            if at + STALE_PERMIT >= now {
                return Some(at);
            }
        }
        None
    }

    async fn until_ready(&self, waiting: usize) {
        loop {
            if let Some(at) = self.next_reserved() {
                tokio::time::sleep_until(at).await;
                return;
            }
            let want = u32::try_from(waiting.saturating_add(1))
                .unwrap_or(MAX_RESERVED)
                .min(MAX_RESERVED);
            let ahead = self.limits.reserve_ahead();
            match self.limits.reserve(&self.key, self.rate, want, ahead).await {
                Ok(Reservation::Granted(times)) => self
                    .reserved
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .extend(times),
                Ok(Reservation::Wait(wait)) => tokio::time::sleep(wait).await,
                Err(shared::Unreachable) => {
                    self.fallback.until_ready().await;
                    return;
                }
            }
        }
    }
}

/// `share` of a count, at least one.
fn share_of(n: NonZeroU32, share: f64) -> NonZeroU32 {
    // A share is in (0, 1], so the product fits; the cast only drops the fraction.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let part = (f64::from(n.get()) * share) as u32;
    NonZeroU32::new(part).unwrap_or(NonZeroU32::MIN)
}

struct Line {
    waiting: BTreeSet<Ticket>,
    /// Someone is at the limiter, waiting for its cell.
    busy: bool,
    last_used: Instant,
}

impl Gate {
    fn new(quota: Quota, pacing: Pacing) -> Self {
        Self {
            quota,
            pacing,
            line: Mutex::new(Line {
                waiting: BTreeSet::new(),
                busy: false,
                last_used: Instant::now(),
            }),
            turn: Notify::new(),
        }
    }

    fn line(&self) -> std::sync::MutexGuard<'_, Line> {
        self.line.lock().unwrap_or_else(PoisonError::into_inner)
    }

    async fn pass(&self, ticket: Ticket) {
        self.line().waiting.insert(ticket);
        // Leaves the line (or the limiter) however this future ends, also when it is dropped
        // at shutdown, so a cancelled waiter never blocks the ones behind it.
        let mut place = Place {
            gate: self,
            ticket,
            at_limiter: false,
        };
        let behind = loop {
            let turn = self.turn.notified();
            tokio::pin!(turn);
            turn.as_mut().enable();
            {
                let mut line = self.line();
                if !line.busy && line.waiting.first() == Some(&ticket) {
                    line.waiting.remove(&ticket);
                    line.busy = true;
                    place.at_limiter = true;
                    break line.waiting.len();
                }
            }
            turn.await;
        };
        self.pacing.until_ready(behind).await;
    }

    fn idle_for(&self, d: Duration) -> bool {
        let line = self.line();
        line.waiting.is_empty() && !line.busy && line.last_used.elapsed() >= d
    }
}

struct Place<'a> {
    gate: &'a Gate,
    ticket: Ticket,
    at_limiter: bool,
}

impl Drop for Place<'_> {
    fn drop(&mut self) {
        {
            let mut line = self.gate.line();
            if self.at_limiter {
                line.busy = false;
            } else {
                line.waiting.remove(&self.ticket);
            }
            line.last_used = Instant::now();
        }
        self.gate.turn.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn each_sender_goes_at_the_rate_it_is_given_and_a_new_rate_applies_at_once() {
        let limits = DeliveryLimits::new(0, None);
        let account = AccountId::from_stored("acct".to_owned());
        let pass_n = async |sender: &str, rate: u32, n: usize| {
            let started = tokio::time::Instant::now();
            for _ in 0..n {
                let key = sender_key("twilio", Channel::Sms, sender);
                limits
                    .until_ready(NonZeroU32::new(rate), || key, &account, Priority::Normal)
                    .await;
            }
            started.elapsed()
        };
        // At 1/s, five sends would take four seconds.
        assert!(pass_n("+18005550100", 1000, 5).await < Duration::from_millis(500));
        assert!(pass_n("MGfree", 0, 5).await < Duration::from_millis(500));
        // 1/s, evenly.
        assert!(pass_n("+15017122661", 1, 3).await >= Duration::from_millis(1900));
        // The same sender given a higher rate (its account raised it) is not held to 1/s.
        assert!(pass_n("+15017122661", 1000, 5).await < Duration::from_millis(500));
    }

    #[tokio::test]
    async fn a_paused_sender_waits_while_other_senders_go_on() {
        const PAUSE: Duration = Duration::from_secs(2);
        let limits = DeliveryLimits::new(0, None);
        let account = AccountId::from_stored("acct".to_owned());
        let pass = async |sender: &str| {
            let key = format!("twilio:sms:{sender}");
            limits
                .until_ready(None, || key, &account, Priority::Normal)
                .await;
        };
        limits.pause_sender("twilio:sms:+15550001".to_owned(), PAUSE);
        let started = tokio::time::Instant::now();

        // Another sender is not held up (it would wait the whole pause if it were).
        pass("+15550002").await;
        assert!(started.elapsed() < PAUSE / 2, "{:?}", started.elapsed());

        // The paused one waits until its pause is over.
        pass("+15550001").await;
        assert!(started.elapsed() >= PAUSE, "{:?}", started.elapsed());

        // Over: forgotten, and no longer waited for.
        limits.forget_idle();
        assert!(!limits.pauses.any());
        let again = tokio::time::Instant::now();
        pass("+15550001").await;
        assert!(again.elapsed() < PAUSE / 2);
    }

    #[tokio::test]
    async fn waiters_for_a_limited_sender_go_in_priority_order() {
        // 20 messages a second; after a first send, a low, a normal and an urgent one wait.
        let limits = DeliveryLimits::new(0, None);
        let rate = NonZeroU32::new(20);
        let account = AccountId::generate();
        limits
            .until_ready(rate, || "s".into(), &account, Priority::Low)
            .await;
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        for priority in [Priority::Low, Priority::Normal, Priority::Urgent] {
            let (limits, account, tx) = (limits.clone(), account.clone(), tx.clone());
            tokio::spawn(async move {
                limits
                    .until_ready(rate, || "s".into(), &account, priority)
                    .await;
                let _ = tx.send(priority);
            });
            tokio::task::yield_now().await;
        }
        let mut order = Vec::new();
        for _ in 0..3 {
            order.extend(rx.recv().await);
        }
        // The low one was already first in line when the others came; after it, priority.
        assert_eq!(order, [Priority::Low, Priority::Urgent, Priority::Normal]);
    }
}
