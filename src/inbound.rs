//! Receiving: what every inbound path (`POST /sms/receive`, Twilio's and Meta's webhooks)
//! does with a message a handset sent. It is stored once (a provider's retry carries the same
//! id), in its thread, linked to the message it answers; a keyword (SPEC §7) opts the number
//! out or back in, and STOP and HELP are answered, all in the transaction that stores it, so
//! the webhook's `200` means all of that is on disk.

use crate::billing::{self, Pricing};
use crate::config::Settings;
use crate::domain::{AccountId, Channel, Keyword, MessageId, Priority, Timestamp};
use crate::metrics::Metrics;
use crate::providers::InboundMessage;
use crate::store::inbound::{InboundOutcome, KeywordReply, NewInbound};
use crate::store::{NewMessage, Store, StoreResult};
use std::time::Duration;

/// A message a handset sent, as a path parsed it.
#[derive(Debug, Clone)]
pub struct Incoming {
    /// The account, where the path says (the generic webhook's API key, a provider account
    /// an account brought); otherwise the store finds it.
    pub account_id: Option<AccountId>,
    pub channel: Channel,
    pub provider: &'static str,
    pub provider_message_id: Option<String>,
    /// The sender, in E.164.
    pub from: String,
    /// The number written to, where known.
    pub to: Option<String>,
    pub body: String,
    pub media_urls: Vec<String>,
    pub received_at: Timestamp,
}

impl Incoming {
    /// A message a provider's webhook carried, for `account_id` where known.
    pub fn from_provider(
        m: InboundMessage,
        channel: Channel,
        account_id: Option<AccountId>,
    ) -> Self {
        Incoming {
            account_id,
            channel,
            provider: m.provider,
            provider_message_id: Some(m.provider_message_id).filter(|id| !id.is_empty()),
            from: m.from,
            to: Some(m.to).filter(|to| !to.is_empty()),
            body: m.body,
            media_urls: m.media_urls,
            received_at: m.received_at,
        }
    }
}

/// Stores what handsets send.
#[derive(Clone)]
pub struct Receiver {
    store: Store,
    metrics: Metrics,
    pricing: Pricing,
    fallback_account: Option<String>,
    stop_reply: String,
    help_reply: String,
    validity: Duration,
}

impl Receiver {
    pub fn new(store: Store, settings: &Settings, metrics: Metrics) -> Self {
        let i = &settings.inbound;
        Receiver {
            store,
            metrics,
            pricing: Pricing::from_settings(&settings.pricing),
            fallback_account: Some(i.fallback_account.clone()).filter(|a| !a.is_empty()),
            stop_reply: i.stop_reply.clone(),
            help_reply: i.help_reply.clone(),
            validity: settings.validity_period(),
        }
    }

    /// Stores `batch` (each message once) and returns once it is committed.
    ///
    /// # Errors
    /// The database refused the write; nothing of the batch was stored.
    pub async fn receive(&self, batch: Vec<Incoming>) -> StoreResult<Vec<InboundOutcome>> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let providers: Vec<&'static str> = batch.iter().map(|i| i.provider).collect();
        let prepared = batch.into_iter().map(|i| self.prepare(i)).collect();
        let outcomes = self.store.record_inbound(prepared).await?;
        for (outcome, provider) in outcomes.iter().zip(providers) {
            let result = if outcome.repeat {
                "repeat"
            } else if outcome.account_id.is_none() {
                tracing::info!(
                    provider,
                    "an inbound message no account owns was kept as unroutable"
                );
                "unroutable"
            } else {
                "stored"
            };
            self.metrics.inbound(provider, result);
        }
        Ok(outcomes)
    }

    fn prepare(&self, i: Incoming) -> NewInbound {
        // Made before the reply's, so the two list in this order.
        let message_id = MessageId::generate();
        let keyword = Keyword::of(&i.body);
        // The deployment's text (perhaps empty); the store puts the account's own in its place.
        let reply_text = match keyword {
            Some(Keyword::Stop) => Some(self.stop_reply.as_str()),
            Some(Keyword::Help) => Some(self.help_reply.as_str()),
            Some(Keyword::Start) | None => None,
        };
        let reply = reply_text.map(|reply_text| {
            let segments = billing::measure(i.channel, reply_text);
            let now = Timestamp::now();
            let message = NewMessage {
                message_id: MessageId::generate(),
                campaign_id: None,
                channel: i.channel,
                phone_number: i.from.clone(),
                // From the number that was written to (WhatsApp's is fixed by the provider).
                sender_id: i.to.clone().filter(|_| i.channel == Channel::Sms),
                body: reply_text.to_owned(),
                attachment_url: None,
                whatsapp_template: None,
                priority: Priority::Urgent,
                segments: segments.count,
                cost: self.pricing.cost(i.channel, segments),
                due_at: now,
                expires_at: now.plus(self.validity),
                status_callback: None,
                twilio_callback_signer: None,
                metadata: None,
            };
            KeywordReply {
                message,
                pricing: self.pricing.clone(),
            }
        });
        NewInbound {
            message_id,
            account_id: i.account_id,
            fallback_account: self.fallback_account.clone(),
            channel: i.channel,
            provider: i.provider,
            provider_message_id: i.provider_message_id,
            from: i.from,
            to: i.to,
            body: i.body,
            media_urls: i.media_urls,
            received_at: i.received_at,
            keyword,
            reply,
        }
    }
}
