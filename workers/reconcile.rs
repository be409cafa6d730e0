//! Reconciliation: a message `sent` for longer than its provider's usual receipt time may
//! have lost its receipt (a webhook that never came, or came while Herald was down). Such
//! messages are looked up at the provider, a page per round, and what the provider says
//! goes through the receipt path like any webhook, so it can only move a status forward.
//!
//! A pass walks every waiting message once, oldest first, with a keyset cursor; the next
//! pass starts no sooner than one receipt time later, so a message the carrier never reports
//! on is asked about once per receipt time, not once per round, until it is too old to ask.
//!
//! A message is asked about through whoever sent it: its account's own provider account
//! where it brought one, else the deployment's.

use super::ReceiptSink;
use crate::domain::{Channel, Timestamp};
use crate::providers::accounts::AccountProviders;
use crate::providers::{Lookup, Provider};
use crate::store::{ReceiptCursor, Store};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub(super) struct Reconciler {
    /// The provider whose messages these are (only Twilio can be asked today).
    pub(super) name: &'static str,
    pub(super) channel: Channel,
    /// How long a `sent` message waits for its receipt before it is asked about.
    pub(super) wait: Duration,
    /// The deployment's adapter, when it has this provider.
    pub(super) deployment: Option<Arc<dyn Provider>>,
    pub(super) accounts: AccountProviders,
    pub(super) store: Store,
    pub(super) sink: ReceiptSink,
    pub(super) every: Duration,
    pub(super) batch: usize,
    pub(super) max_age: Duration,
}

impl Reconciler {
    pub(super) async fn run_until(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let wait = self.wait;
        let mut ticker = tokio::time::interval(self.every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut cursor: Option<ReceiptCursor> = None;
        let mut pass_started: Option<Instant> = None;
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                () = shutdown.cancelled() => return Ok(()),
            }
            if cursor.is_none() && pass_started.is_some_and(|at| at.elapsed() < wait) {
                continue;
            }
            let now = Timestamp::now();
            let oldest = ReceiptCursor::from(now.minus(self.max_age));
            let start = match cursor.take() {
                Some(c) if c.updated_at >= oldest.updated_at => c,
                _ => {
                    pass_started = Some(Instant::now());
                    oldest
                }
            };
            match self.round(&start, now.minus(wait)).await {
                Ok(Round::More(next)) => cursor = Some(next),
                Ok(Round::PassDone) => {}
                Ok(Round::CannotAsk) => return Ok(()),
                Ok(Round::Stopped(at)) => cursor = Some(at),
                Err(e) => {
                    tracing::warn!(error = %e, "reconciliation failed; trying again next round");
                    cursor = Some(start);
                }
            }
        }
    }

    /// Looks up one page and commits what the provider said.
    async fn round(&self, start: &ReceiptCursor, sent_before: Timestamp) -> anyhow::Result<Round> {
        let page = self
            .store
            .awaiting_receipt(self.name, start, sent_before, self.batch)
            .await?;
        let full = page.len() == self.batch;
        let mut updates = Vec::new();
        let mut reached = start.clone();
        let mut stopped = false;
        for message in page {
            let own = match self
                .accounts
                .for_channel(&message.account_id, self.channel)
                .await
            {
                Ok(own) => own,
                Err(e) => {
                    tracing::warn!(error = %e, "an account's own provider cannot be built; its messages are not looked up");
                    reached = message.cursor;
                    continue;
                }
            };
            let Some(provider) = own.as_ref().or(self.deployment.as_ref()) else {
                reached = message.cursor;
                continue;
            };
            match provider.lookup(&message.provider_message_id).await {
                Lookup::Status(update) => updates.push(update),
                Lookup::NoNews | Lookup::NotFound => {}
                Lookup::CannotAsk => return Ok(Round::CannotAsk),
                Lookup::Failed(e) => {
                    // The provider is struggling: stop here and ask again next round, from
                    // this message on, rather than pressing on through the page.
                    tracing::warn!(error = %e, "a status lookup failed; pausing reconciliation until the next round");
                    stopped = true;
                    break;
                }
            }
            reached = message.cursor;
        }
        let found = updates.len();
        self.sink.deliver(updates).await?;
        if found > 0 {
            tracing::info!(
                found,
                provider = self.name,
                "reconciliation found receipts that never came"
            );
        }
        Ok(if stopped {
            Round::Stopped(reached)
        } else if full {
            Round::More(reached)
        } else {
            Round::PassDone
        })
    }
}

enum Round {
    /// The page was full: go on from here next round.
    More(ReceiptCursor),
    /// Every waiting message was asked about.
    PassDone,
    /// A lookup failed; resume from here.
    Stopped(ReceiptCursor),
    CannotAsk,
}
