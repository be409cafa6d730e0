//! One delivery: claim → route → limit → send → record.
//!
//! No transaction is held across the provider call (the claim committed before, the outcome
//! commits after). A crash between the provider's accept and our write re-sends the message
//! later under the same message id, which is also the provider idempotency key.

use super::RetryPolicy;
use super::campaign::CampaignGate;
use super::route::{Health, Route};
use crate::domain::CampaignStatus;
use crate::domain::{Channel, MessageStatus, Timestamp};
use crate::metrics::Metrics;
use crate::providers::{ProviderError, RECIPIENT_OPTED_OUT, SendRequest};
use crate::ratelimit::{DeliveryLimits, sender_key};
use crate::store::{ClaimedMessage, DeliveryOutcome, DeliveryReport, Store};
use apalis_core::task::data::Data;
use std::sync::Arc;

pub struct Deliverer {
    store: Store,
    sms: Route,
    whatsapp: Route,
    limits: DeliveryLimits,
    retry: RetryPolicy,
    metrics: Metrics,
    campaigns: CampaignGate,
}

impl Deliverer {
    pub fn new(
        store: Store,
        sms: Route,
        whatsapp: Route,
        limits: DeliveryLimits,
        retry: RetryPolicy,
        metrics: Metrics,
    ) -> Self {
        Self {
            campaigns: CampaignGate::new(store.clone()),
            store,
            sms,
            whatsapp,
            limits,
            retry,
            metrics,
        }
    }

    fn route(&self, channel: Channel) -> &Route {
        match channel {
            Channel::Sms => &self.sms,
            Channel::Whatsapp => &self.whatsapp,
        }
    }

    /// Decides and performs one delivery attempt, returning what the store must record.
    async fn attempt(&self, m: &ClaimedMessage) -> DeliveryOutcome {
        if Timestamp::now() > m.expires_at {
            return unsent(
                MessageStatus::Expired,
                "expired",
                "the message was not sent within its validity period",
            );
        }
        let route = self.route(m.channel);
        let provider = route.choose(m.bound_to.as_deref());
        let from = provider.sender(m.sender_id.as_deref());
        // The key is only built when a sender limit exists (not on the unlimited mock).
        let sender_key = || sender_key(provider.name(), m.channel, from);
        self.limits
            .until_ready(provider.name(), sender_key, &m.account_id, m.priority)
            .await;
        // Checked after the rate-limit wait, which can be long: a campaign paused or
        // canceled meanwhile must not send this message.
        if let Some(campaign) = m.campaign_id.as_deref() {
            match self.campaigns.state(campaign).await {
                Some(CampaignStatus::Paused) => return DeliveryOutcome::Held,
                Some(CampaignStatus::Canceled) => {
                    return unsent(
                        MessageStatus::Canceled,
                        "campaign_canceled",
                        "the campaign was canceled before this message was sent",
                    );
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
        match result {
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
                    bound_to,
                }
            }
        }
    }
}

impl Deliverer {
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
    let outcome = deliverer.attempt(&message).await;
    let metric = match &outcome {
        DeliveryOutcome::Sent { .. } => Some(MessageStatus::Sent),
        DeliveryOutcome::Unsent { status, .. } => Some(*status),
        DeliveryOutcome::Retry { error_code, .. } => {
            tracing::info!(code = %error_code, "transient failure; will retry");
            None
        }
        DeliveryOutcome::Released | DeliveryOutcome::Held => None,
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
    Ok(())
}
