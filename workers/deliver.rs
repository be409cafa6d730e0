//! One delivery: claim → (resolve a doubt) → route → limit → send → record.
//!
//! No transaction is held across the provider call (the claim committed before, the outcome
//! commits after). A worker that dies in between leaves the attempt *in doubt*: the store
//! marks it when it releases the dead worker's claim (and a live worker marks an attempt
//! that got no answer, a timeout or a broken connection, the same way). The next worker
//! first asks the provider whether that attempt arrived ([`Provider::find_sent`]; the
//! provider the message is bound to, else each provider of its channel's route, since the
//! dead worker's choice was not recorded). Found: the send is recorded with the provider's
//! id and nothing is sent. Not found: sent normally. The provider cannot be asked: sent
//! again (to that provider) under the same message id, which is also the provider
//! idempotency key where the provider has one, and counted (`herald_resent_in_doubt_total`).
//! Asking failed: nothing is sent, the message is asked about again after a backoff, and
//! once its attempts are used up it is sent again (and counted): a duplicate after a crash
//! is what SPEC §4 allows, a lost message is not.

use super::campaign::CampaignGate;
use super::route::{Health, Route, Routes};
use super::{ReceiptSink, RetryPolicy};
use crate::domain::CampaignStatus;
use crate::domain::{MessageStatus, Timestamp};
use crate::metrics::{InDoubtResult, Metrics};
use crate::providers::{
    InDoubt, Provider, ProviderError, RECIPIENT_OPTED_OUT, SendRequest, SentMatch,
};
use crate::ratelimit::{DeliveryLimits, sender_key};
use crate::store::{ClaimedMessage, DeliveryOutcome, DeliveryReport, StatusUpdate, Store};
use apalis_core::task::data::Data;
use std::sync::Arc;

/// What one attempt decided: the outcome to record, and a receipt to apply once it is
/// recorded (an in-doubt lookup that found the message already delivered, say).
struct Attempted {
    outcome: DeliveryOutcome,
    receipt: Option<StatusUpdate>,
}

impl From<DeliveryOutcome> for Attempted {
    fn from(outcome: DeliveryOutcome) -> Self {
        Self {
            outcome,
            receipt: None,
        }
    }
}

/// What asking the providers about an in-doubt attempt leads to.
enum Resolution {
    /// Recorded without sending (found), or asked again later (the lookup failed).
    Done(Attempted),
    /// Send it. `unverified`: the provider that could not tell whether the earlier attempt
    /// reached it; the message goes (again) to that provider, and is counted.
    Send { unverified: Option<&'static str> },
}

pub struct Deliverer {
    store: Store,
    sink: ReceiptSink,
    routes: Routes,
    limits: DeliveryLimits,
    retry: RetryPolicy,
    metrics: Metrics,
    campaigns: CampaignGate,
}

impl Deliverer {
    pub fn new(
        store: Store,
        sink: ReceiptSink,
        routes: Routes,
        limits: DeliveryLimits,
        retry: RetryPolicy,
        metrics: Metrics,
    ) -> Self {
        Self {
            campaigns: CampaignGate::new(store.clone()),
            store,
            sink,
            routes,
            limits,
            retry,
            metrics,
        }
    }

    /// Decides and performs one delivery attempt, returning what the store must record.
    async fn attempt(&self, m: &ClaimedMessage) -> Attempted {
        let route = match self
            .routes
            .for_message(&m.account_id, m.channel, &self.metrics)
            .await
        {
            Ok(route) => route,
            // Its own credentials cannot be opened (credentials.key changed, the database
            // failed): it waits and is tried again (`Routes::for_message`).
            Err(e) => {
                tracing::warn!(error = %e, "an account's own provider is unavailable; its message waits");
                let code = "provider_credentials_unavailable".to_owned();
                return self
                    .after_transient(m, code, e.to_string(), None, None)
                    .into();
            }
        };
        let route = &*route;
        // Before anything else, expiry and pauses included: an attempt that did reach a
        // provider is a send, and must be recorded (and charged) as one.
        let mut unverified = None;
        if let Some(since) = m.in_doubt_since {
            match self.resolve(m, route, since).await {
                Resolution::Done(attempted) => return attempted,
                Resolution::Send { unverified: u } => unverified = u,
            }
        }
        if m.opted_out {
            return unsent(
                MessageStatus::Failed,
                RECIPIENT_OPTED_OUT,
                "the recipient opted out after the message was accepted",
            )
            .into();
        }
        if Timestamp::now() > m.expires_at {
            return unsent(
                MessageStatus::Expired,
                "expired",
                "the message was not sent within its validity period",
            )
            .into();
        }
        let provider = route.choose(m.bound_to.as_deref().or(unverified));
        let from = provider.sender(m.sender_id.as_deref());
        // The key is only built when a sender limit exists (not on the unlimited mock).
        let sender_key = || sender_key(provider.name(), m.channel, from);
        self.limits
            .until_ready(
                provider.sender_rate(from),
                sender_key,
                &m.account_id,
                m.priority,
            )
            .await;
        // Checked after the rate-limit wait, which can be long: a campaign paused or
        // canceled meanwhile must not send this message.
        if let Some(campaign) = m.campaign_id.as_deref() {
            match self.campaigns.state(campaign).await {
                Some(CampaignStatus::Paused) => return DeliveryOutcome::Held.into(),
                Some(CampaignStatus::Canceled) => {
                    return unsent(
                        MessageStatus::Canceled,
                        "campaign_canceled",
                        "the campaign was canceled before this message was sent",
                    )
                    .into();
                }
                _ => {}
            }
        }

        let request = SendRequest {
            message_id: &m.message_id,
            channel: m.channel,
            to: &m.phone_number,
            from,
            body: &m.body,
            media_url: m.attachment_url.as_deref(),
            template: m.whatsapp_template.as_ref(),
            expires_at: m.expires_at,
        };
        if unverified.is_some() {
            self.metrics.resent_in_doubt(provider.name());
        }
        let attempt_started = Timestamp::now();
        let result = provider.send(request).await;
        let health = match &result {
            Err(ProviderError::Transient { .. }) => Health::Failed,
            Ok(_) | Err(ProviderError::Permanent { .. }) => Health::Answered,
        };
        route.report(provider.name(), health);
        // The sender is over its rate (Twilio's 429): its next messages wait out Retry-After
        // too, rather than each hitting the refusal; other senders go on.
        if let Err(
            e @ ProviderError::Transient {
                retry_after: Some(wait),
                ..
            },
        ) = &result
            && provider.throttles_sender(e)
        {
            self.limits.pause_sender(sender_key(), *wait);
        }
        // A provider that may have the message already (no answer came) keeps it.
        let bound_to = matches!(&result, Err(e) if e.outcome_unknown()).then_some(provider.name());
        let outcome = match result {
            Ok(accepted) => DeliveryOutcome::Sent {
                provider: provider.name(),
                provider_message_id: accepted.provider_message_id,
                at: Timestamp::now(),
            },
            Err(ProviderError::Permanent { code, message }) => {
                if code == RECIPIENT_OPTED_OUT {
                    self.opt_out(m, provider.name()).await;
                }
                unsent(MessageStatus::Failed, &code, &message)
            }
            Err(ProviderError::Transient {
                code,
                message,
                retry_after,
            }) => {
                let unanswered = bound_to.map(|provider| (provider, attempt_started));
                self.after_transient(m, code, message, retry_after, unanswered)
            }
        };
        outcome.into()
    }

    /// A transient failure: retry after a backoff, or give up (attempts used up, or the
    /// next try would come after the message expires). `unanswered`: no answer came (a
    /// timeout, a broken connection), so the provider named may have the message; the retry
    /// is bound to it, and in doubt since the attempt started: it asks that provider first,
    /// as after a crash.
    fn after_transient(
        &self,
        m: &ClaimedMessage,
        code: String,
        message: String,
        retry_after: Option<std::time::Duration>,
        unanswered: Option<(&'static str, Timestamp)>,
    ) -> DeliveryOutcome {
        if m.attempts >= self.retry.max_attempts {
            let message = format!("{message} (gave up after {} attempts)", m.attempts);
            return unsent(MessageStatus::Failed, &code, &message);
        }
        let due_at = Timestamp::now().plus(self.retry.delay(m.attempts, retry_after));
        if due_at > m.expires_at {
            return unsent(
                MessageStatus::Expired,
                "expired",
                "the message could not be sent within its validity period",
            );
        }
        DeliveryOutcome::Retry {
            due_at,
            error_code: code,
            error_message: message,
            bound_to: unanswered.map(|(provider, _)| provider),
            in_doubt_since: unanswered.map(|(_, started)| started),
        }
    }
}

impl Deliverer {
    /// Asks whether the in-doubt attempt (started at `since`) reached a provider: the one the
    /// message is bound to, else each of its channel's providers (the dead worker's choice
    /// between primary and fallback was never recorded).
    async fn resolve(&self, m: &ClaimedMessage, route: &Route, since: Timestamp) -> Resolution {
        let bound: Vec<&Arc<dyn Provider>> = route
            .providers()
            .filter(|p| m.bound_to.as_deref() == Some(p.name()))
            .collect();
        let asked: Vec<&Arc<dyn Provider>> = if bound.is_empty() {
            route.providers().collect()
        } else {
            bound
        };
        let mut cannot_ask = None;
        let mut failure: Option<(&'static str, ProviderError)> = None;
        for provider in asked {
            let name = provider.name();
            let request = SendRequest {
                message_id: &m.message_id,
                channel: m.channel,
                to: &m.phone_number,
                from: provider.sender(m.sender_id.as_deref()),
                body: &m.body,
                media_url: m.attachment_url.as_deref(),
                template: m.whatsapp_template.as_ref(),
                expires_at: m.expires_at,
            };
            let answer = match provider.find_sent(request, since).await {
                InDoubt::Found(candidates) => self.first_unclaimed(name, candidates).await,
                InDoubt::NotFound => Ok(None),
                InDoubt::CannotAsk => {
                    self.metrics.in_doubt(name, InDoubtResult::CannotAsk);
                    cannot_ask.get_or_insert(name);
                    continue;
                }
                InDoubt::Failed(e) => Err(e),
            };
            match answer {
                Ok(Some(found)) => {
                    self.metrics.in_doubt(name, InDoubtResult::Found);
                    tracing::info!(
                        provider = name,
                        "an attempt left in doubt had reached the provider; recorded, not sent again"
                    );
                    return Resolution::Done(Attempted {
                        outcome: DeliveryOutcome::Sent {
                            provider: name,
                            provider_message_id: found.provider_message_id,
                            at: Timestamp::now(),
                        },
                        receipt: found.receipt,
                    });
                }
                Ok(None) => self.metrics.in_doubt(name, InDoubtResult::NotFound),
                Err(e) => {
                    self.metrics.in_doubt(name, InDoubtResult::Failed);
                    failure.get_or_insert((name, e));
                }
            }
        }
        let Some((name, failure)) = failure else {
            return Resolution::Send {
                unverified: cannot_ask,
            };
        };
        let (code, message, retry_after) = match failure {
            ProviderError::Transient {
                code,
                message,
                retry_after,
            } => (code, message, retry_after),
            ProviderError::Permanent { code, message } => (code, message, None),
        };
        if m.attempts >= self.retry.max_attempts {
            tracing::warn!(
                provider = name,
                code = %code,
                "could not learn whether an attempt left in doubt arrived, after {} attempts; sending again",
                m.attempts
            );
            return Resolution::Send {
                unverified: Some(name),
            };
        }
        tracing::info!(provider = name, code = %code, "could not ask the provider about an attempt left in doubt; asking again later");
        Resolution::Done(
            DeliveryOutcome::Unresolved {
                due_at: Timestamp::now().plus(self.retry.delay(m.attempts, retry_after)),
                in_doubt_since: since,
                error_code: code,
                error_message: format!("in doubt, not sent again: {message}"),
            }
            .into(),
        )
    }

    /// The first candidate no other message of ours carries: a message with the same
    /// recipient, sender and body sent about the same time is that message's, not this one's.
    async fn first_unclaimed(
        &self,
        provider: &str,
        candidates: Vec<SentMatch>,
    ) -> Result<Option<SentMatch>, ProviderError> {
        for candidate in candidates {
            match self
                .store
                .provider_ref_taken(provider, &candidate.provider_message_id)
                .await
            {
                Ok(true) => {}
                Ok(false) => return Ok(Some(candidate)),
                Err(e) => {
                    return Err(ProviderError::Transient {
                        code: "in_doubt_unchecked".into(),
                        message: format!(
                            "could not check the provider's answer against our sends: {e}"
                        ),
                        retry_after: None,
                    });
                }
            }
        }
        Ok(None)
    }

    /// The recipient unsubscribed at the provider: later sends to them are refused at the
    /// API (`recipient_opted_out`) instead of each failing at the provider. Best effort: if
    /// this write fails the message still fails, and the next refusal tries again.
    async fn opt_out(&self, m: &ClaimedMessage, provider: &str) {
        let source = format!("provider:{provider}");
        if let Err(e) = self
            .store
            .add_opt_out(&m.account_id, &m.phone_number, &source)
            .await
        {
            tracing::warn!(error = %e, "could not record the opt-out the provider reported");
        }
    }
}

fn unsent(status: MessageStatus, code: &str, message: &str) -> DeliveryOutcome {
    DeliveryOutcome::Unsent {
        status,
        error_code: code.to_owned(),
        error_message: message.to_owned(),
        at: Timestamp::now(),
    }
}

/// Attempts at recording one outcome before giving up on an unexpected error (about 3 s).
const RECORD_ATTEMPTS: u32 = 6;

/// Longest pause between attempts at recording an outcome.
const RECORD_PAUSE_MAX: std::time::Duration = std::time::Duration::from_secs(5);

/// The apalis task handler.
///
/// # Errors
/// The outcome could not be recorded even after retries. The message stays claimed by this
/// process (its lease is renewed while the process lives) and is sent again, under the same
/// idempotency key, by the next start's orphan recovery.
// At debug level: an info span per delivery (thousands a second) formats its fields into a
// fresh string each time, for logs that rarely need them.
#[tracing::instrument(level = "debug", skip_all, fields(message_id = %message.message_id, attempt = message.attempts))]
pub(super) async fn deliver(
    message: ClaimedMessage,
    deliverer: Data<Arc<Deliverer>>,
) -> Result<(), crate::store::StoreError> {
    let Attempted { outcome, receipt } = deliverer.attempt(&message).await;
    let metric = match &outcome {
        DeliveryOutcome::Sent { .. } => Some(MessageStatus::Sent),
        DeliveryOutcome::Unsent { status, .. } => Some(*status),
        DeliveryOutcome::Retry { error_code, .. } => {
            tracing::info!(code = %error_code, "transient failure; will retry");
            None
        }
        DeliveryOutcome::Unresolved { .. } | DeliveryOutcome::Released | DeliveryOutcome::Held => {
            None
        }
    };
    let report = DeliveryReport::of(&message, outcome);
    // The provider may already have the message: losing this write would mean sending it
    // again. While the database refuses writes (disk full, lock held elsewhere) the outcome
    // waits for as long as that lasts: given up on, the message would stay claimed by this
    // live process until its next start. Other failures are retried a few times.
    let mut pause = std::time::Duration::from_millis(100);
    let mut attempt = 0;
    loop {
        match deliverer.store.record_outcomes(vec![report.clone()]).await {
            Ok(()) => break,
            Err(e) if e.refusal().is_some() => {
                // The writer logs the refusal once for everyone; one line per delivery per
                // retry would bury it.
                tracing::debug!(error = %e, "the database refuses writes; recording the outcome later");
            }
            Err(e) => {
                attempt += 1;
                if attempt == RECORD_ATTEMPTS {
                    return Err(e);
                }
                tracing::warn!(error = %e, "recording a delivery outcome failed; retrying");
            }
        }
        tokio::time::sleep(pause).await;
        pause = pause.saturating_mul(2).min(RECORD_PAUSE_MAX);
    }
    if let Some(status) = metric {
        deliverer.metrics.delivery_finished(message.channel, status);
    }
    // Applied only now that the send is recorded: the receipt path holds a receipt that
    // overtakes its send, but there is no reason to make it. Lost here (the database
    // refuses), it is found again by reconciliation, which looks up overdue `sent` messages.
    if let Some(receipt) = receipt
        && let Err(e) = deliverer.sink.deliver(vec![receipt]).await
    {
        tracing::warn!(error = %e, "could not apply the status an in-doubt lookup found; reconciliation will look it up again");
    }
    Ok(())
}
