//! Which provider takes a message: the channel's primary, or its fallback while the primary
//! keeps failing.
//!
//! A circuit breaker per channel watches the primary. After `failure_threshold` transient
//! failures in a row (5xx, 429, timeouts) it opens and new sends go to the fallback; after
//! `open_seconds` one message is let through to the primary as a probe, and its answer
//! closes the circuit (traffic returns) or opens it again.
//!
//! A message never goes to both: once a provider may have taken it (the request went out
//! and no answer came), the message is bound to that provider and every later attempt goes
//! there, whatever the circuit says. A definite refusal (an HTTP error answer) leaves the
//! message free to go elsewhere.

use crate::domain::{AccountId, Channel};
use crate::metrics::Metrics;
use crate::providers::Provider;
use crate::providers::accounts::{AccountProviders, CredentialError};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Every channel's route, and the accounts' own providers that take their place.
pub struct Routes {
    pub sms: Route,
    pub whatsapp: Route,
    pub accounts: AccountProviders,
}

/// The route one message takes: its channel's, or its account's own provider alone.
pub enum Chosen<'a> {
    Shared(&'a Route),
    Own(Route),
}

impl std::ops::Deref for Chosen<'_> {
    type Target = Route;

    fn deref(&self) -> &Route {
        match self {
            Chosen::Shared(route) => route,
            Chosen::Own(route) => route,
        }
    }
}

impl Routes {
    /// The route for a message of `account` on `channel`.
    ///
    /// # Errors
    /// The account brought its own provider but it cannot be built now (its credentials do
    /// not open, the database failed). The message must wait, not go out through the
    /// deployment's provider: that would be another sender, billed to another account.
    pub async fn for_message(
        &self,
        account: &AccountId,
        channel: Channel,
        metrics: &Metrics,
    ) -> Result<Chosen<'_>, CredentialError> {
        Ok(match self.accounts.for_channel(account, channel).await? {
            Some(own) => Chosen::Own(Route::new(
                channel,
                own,
                None,
                Breaker::new(1, Duration::ZERO),
                metrics.clone(),
            )),
            None => Chosen::Shared(match channel {
                Channel::Sms => &self.sms,
                Channel::Whatsapp => &self.whatsapp,
            }),
        })
    }
}

/// The providers of one channel and the breaker that chooses between them.
pub struct Route {
    channel: Channel,
    primary: Arc<dyn Provider>,
    fallback: Option<Arc<dyn Provider>>,
    breaker: Breaker,
    metrics: Metrics,
}

/// What one attempt at the primary showed about its health.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// It answered: accepted, or refused for the message's own sake (an invalid number).
    Answered,
    /// It failed transiently: an error status, throttling, no answer.
    Failed,
}

impl Route {
    pub fn new(
        channel: Channel,
        primary: Arc<dyn Provider>,
        fallback: Option<Arc<dyn Provider>>,
        breaker: Breaker,
        metrics: Metrics,
    ) -> Self {
        Self {
            channel,
            primary,
            fallback,
            breaker,
            metrics,
        }
    }

    /// The primary and the fallback, each once.
    pub fn providers(&self) -> impl Iterator<Item = &Arc<dyn Provider>> {
        std::iter::once(&self.primary).chain(self.fallback.iter())
    }

    /// The provider for this attempt. `bound`: the provider a previous attempt may have
    /// handed the message to, which must take it again.
    pub fn choose(&self, bound: Option<&str>) -> &dyn Provider {
        if let Some(name) = bound
            && let Some(p) = self.providers().find(|p| p.name() == name)
        {
            return p.as_ref();
        }
        match &self.fallback {
            Some(fallback) if !self.breaker.allows(Instant::now()) => fallback.as_ref(),
            _ => self.primary.as_ref(),
        }
    }

    /// Tells the breaker how an attempt at `provider` went (only the primary's count).
    pub fn report(&self, provider: &str, health: Health) {
        if self.fallback.is_none() || provider != self.primary.name() {
            return;
        }
        let open = self.breaker.record(health, Instant::now());
        self.metrics
            .set_circuit_open(self.channel, self.primary.name(), open);
    }
}

/// A consecutive-failure circuit breaker.
pub struct Breaker {
    threshold: u32,
    open_for: Duration,
    state: Mutex<State>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Closed {
        failures: u32,
    },
    Open {
        until: Instant,
    },
    /// One probe is on its way to the primary; the rest still go to the fallback. A probe
    /// that never reports (its task was stopped) is replaced at `until`.
    Probing {
        until: Instant,
    },
}

impl Breaker {
    pub fn new(threshold: u32, open_for: Duration) -> Self {
        Self {
            threshold: threshold.max(1),
            open_for,
            state: Mutex::new(State::Closed { failures: 0 }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether this attempt may go to the primary (a closed circuit, or the one probe).
    fn allows(&self, now: Instant) -> bool {
        let mut state = self.state();
        match *state {
            State::Closed { .. } => true,
            State::Open { until } | State::Probing { until } if now < until => false,
            State::Open { .. } | State::Probing { .. } => {
                *state = State::Probing {
                    until: now + self.open_for,
                };
                true
            }
        }
    }

    /// Records an attempt's health; answers whether the circuit is now open.
    fn record(&self, health: Health, now: Instant) -> bool {
        let mut state = self.state();
        *state = match (health, *state) {
            (Health::Answered, _) => State::Closed { failures: 0 },
            (Health::Failed, State::Closed { failures }) if failures + 1 < self.threshold => {
                State::Closed {
                    failures: failures + 1,
                }
            }
            // The threshold reached, a probe failed, or a straggler sent before the circuit
            // opened failed too: (re)open from now.
            (Health::Failed, _) => State::Open {
                until: now + self.open_for,
            },
        };
        !matches!(*state, State::Closed { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPEN: Duration = Duration::from_secs(10);

    #[test]
    fn opens_after_the_threshold_of_failures_in_a_row() {
        let b = Breaker::new(3, OPEN);
        let t = Instant::now();
        assert!(!b.record(Health::Failed, t));
        assert!(!b.record(Health::Failed, t));
        // An answer in between starts the count again.
        assert!(!b.record(Health::Answered, t));
        assert!(!b.record(Health::Failed, t));
        assert!(!b.record(Health::Failed, t));
        assert!(b.allows(t));
        assert!(b.record(Health::Failed, t));
        assert!(!b.allows(t + OPEN / 2));
    }

    #[test]
    fn after_the_open_time_one_probe_goes_to_the_primary() {
        let b = Breaker::new(1, OPEN);
        let t = Instant::now();
        assert!(b.record(Health::Failed, t));
        assert!(!b.allows(t + OPEN - Duration::from_millis(1)));
        // The first attempt after the open time is the probe; the next ones wait for it.
        assert!(b.allows(t + OPEN));
        assert!(!b.allows(t + OPEN));
        assert!(!b.allows(t + OPEN + OPEN / 2));
        // The probe answered: traffic returns.
        assert!(!b.record(Health::Answered, t + OPEN));
        assert!(b.allows(t + OPEN));
        assert!(b.allows(t + OPEN));
    }

    #[test]
    fn a_failed_probe_opens_the_circuit_again() {
        let b = Breaker::new(1, OPEN);
        let t = Instant::now();
        b.record(Health::Failed, t);
        assert!(b.allows(t + OPEN));
        assert!(b.record(Health::Failed, t + OPEN));
        assert!(!b.allows(t + OPEN + OPEN / 2));
        assert!(b.allows(t + OPEN * 2));
    }

    #[test]
    fn a_probe_that_never_reports_is_replaced() {
        let b = Breaker::new(1, OPEN);
        let t = Instant::now();
        b.record(Health::Failed, t);
        assert!(b.allows(t + OPEN));
        assert!(!b.allows(t + OPEN * 2 - Duration::from_millis(1)));
        assert!(b.allows(t + OPEN * 2));
    }
}
