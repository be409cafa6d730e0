//! Providers: who actually hands a message to a phone network.
//!
//! Each provider sends, maps its own errors to transient (retry) or permanent (fail now),
//! verifies and parses its own webhooks, and, where it can be asked, looks up what became of
//! a message. Receipts, however they arrive (a webhook, a lookup, the mock's own network),
//! become [`crate::store::StatusUpdate`]s that go down one path into the store
//! ([`crate::workers::ReceiptSink`]).
//!
//! The trait's webhook and lookup methods have defaults ("not a webhook of mine", "cannot be
//! asked") so a provider implements only what its network offers. Two lookups exist: what
//! became of a message the provider accepted ([`Provider::lookup`], for receipts that never
//! came), and whether an attempt left in doubt by a crash reached it at all
//! ([`Provider::find_sent`]).

pub mod accounts;
mod http;
pub mod mock;
pub mod twilio;
pub mod whatsapp;

use crate::domain::{Channel, MessageId, Timestamp, WhatsappTemplate};
use crate::store::StatusUpdate;
use futures::future::BoxFuture;
use reqwest::header::HeaderMap;
use std::num::NonZeroU32;
use std::time::Duration;

/// The code of a permanent [`ProviderError`] saying the recipient unsubscribed at the
/// provider (Twilio's 21610: they replied STOP to that sender). The deliverer then opts the
/// number out of the account, as an inbound STOP would (SPEC §7).
pub const RECIPIENT_OPTED_OUT: &str = "recipient_opted_out";

/// The code of a transient [`ProviderError`] for a request that got no answer in time: the
/// provider may have taken the message.
pub const TIMEOUT: &str = "timeout";

/// The code of a transient [`ProviderError`] for a connection that broke after the request
/// was written: the provider may have taken the message.
pub const NETWORK_ERROR: &str = "network_error";

/// What a provider is asked to send.
#[derive(Debug, Clone, Copy)]
pub struct SendRequest<'a> {
    /// Also the idempotency key: a retry after a crash carries the same one, so a provider
    /// that honours such keys sends the message once.
    pub message_id: &'a MessageId,
    pub channel: Channel,
    pub to: &'a str,
    pub from: &'a str,
    pub body: &'a str,
    pub media_url: Option<&'a str>,
    /// Send as this approved WhatsApp template (the body is then Herald's copy only; the
    /// provider renders the template). Only WhatsApp messages carry one.
    pub template: Option<&'a WhatsappTemplate>,
    /// After this the message is worthless; providers that can drop a message they could
    /// not deliver in time (Twilio's `ValidityPeriod`) are told.
    pub expires_at: Timestamp,
}

/// The provider accepted the message and named it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    pub provider_message_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    /// Worth retrying: timeouts, 5xx, throttling.
    #[error("{code}: {message}")]
    Transient {
        code: String,
        message: String,
        retry_after: Option<Duration>,
    },
    /// Retrying cannot help: the number is unreachable, the recipient unsubscribed, …
    #[error("{code}: {message}")]
    Permanent { code: String, message: String },
}

impl ProviderError {
    /// Whether the provider may have taken the message despite the error: the request went
    /// out and no answer came back. Such a message must not be given to another provider.
    pub fn outcome_unknown(&self) -> bool {
        matches!(self, ProviderError::Transient { code, .. } if code == TIMEOUT || code == NETWORK_ERROR)
    }
}

/// Which of a provider's webhooks a request came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookKind {
    /// Delivery receipts (Twilio's `StatusCallback`).
    Status,
    /// Messages from handsets (Twilio's incoming-message webhook).
    Inbound,
}

/// A webhook request as the provider sent it, before anything is trusted.
#[derive(Debug, Clone, Copy)]
pub struct WebhookRequest<'a> {
    pub kind: WebhookKind,
    /// The path and query the provider called (signatures cover them).
    pub path_and_query: &'a str,
    pub headers: &'a HeaderMap,
    /// The raw body: signatures are computed over it (or over its fields).
    pub body: &'a [u8],
}

/// A message a handset sent to one of our numbers. Parsed by providers for the inbound
/// issue (threads, opt-out keywords, SPEC §7), which will store it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundMessage {
    pub provider: &'static str,
    pub provider_message_id: String,
    pub from: String,
    pub to: String,
    pub body: String,
    pub media_urls: Vec<String>,
    pub received_at: Timestamp,
}

/// What a verified webhook carried.
#[derive(Debug, Clone, Default)]
pub struct WebhookEvents {
    pub receipts: Vec<StatusUpdate>,
    pub inbound: Vec<InboundMessage>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    /// The signature is missing or wrong: the request may not come from the provider.
    #[error("{0}")]
    BadSignature(&'static str),
    /// Signed, but not what this webhook carries.
    #[error("{field}: {reason}")]
    Malformed { field: String, reason: String },
    /// This provider has no such webhook (or is not configured to take it).
    #[error("this provider does not take this webhook")]
    Unsupported,
}

/// What the provider says about a message, when asked.
#[derive(Debug, Clone)]
pub enum Lookup {
    /// A status to apply through the receipt path (it only moves a message forward).
    Status(StatusUpdate),
    /// Nothing beyond what we know: still on its way, no receipt yet.
    NoNews,
    /// The provider does not know this id.
    NotFound,
    /// This provider cannot be asked (the mock's network, WhatsApp).
    CannotAsk,
    /// Asking failed this time; ask again later.
    Failed(ProviderError),
}

/// A message the provider has that may be the one an in-doubt attempt handed over.
#[derive(Debug, Clone)]
pub struct SentMatch {
    pub provider_message_id: String,
    /// Where the provider's answer already shows a receipt's status (delivered, failed, …),
    /// that receipt, to apply through the receipt path once the send is recorded.
    pub receipt: Option<StatusUpdate>,
}

/// Whether an attempt whose outcome we never learned (its worker died, or no answer came)
/// reached the provider, as the provider answers [`Provider::find_sent`].
#[derive(Debug, Clone)]
pub enum InDoubt {
    /// The provider has it: these candidates match (oldest first, never empty). The first one
    /// no other message of ours already carries is recorded as this attempt's send.
    Found(Vec<SentMatch>),
    /// The provider has no such message: it never arrived, send it.
    NotFound,
    /// This provider cannot be asked (it absorbs a replay by id, or has no way to search):
    /// send again, and count it (`herald_resent_in_doubt_total`).
    CannotAsk,
    /// Asking failed this time (timeout, 5xx, 429): send nothing, ask again later.
    Failed(ProviderError),
}

pub trait Provider: Send + Sync {
    /// Stable name, stored with each message it sent (receipts are matched by it).
    fn name(&self) -> &'static str;

    fn send<'a>(
        &'a self,
        request: SendRequest<'a>,
    ) -> BoxFuture<'a, Result<Accepted, ProviderError>>;

    /// Sender id used when a message names none.
    fn default_sender(&self) -> &str;

    /// The sender a message goes out from, given the one it names (if any); its rate limit
    /// is this sender's. Providers whose sender is fixed by their credentials (a WhatsApp
    /// phone number id) ignore the message's own.
    fn sender<'a>(&'a self, requested: Option<&'a str>) -> &'a str {
        requested.unwrap_or(self.default_sender())
    }

    /// Messages per second `sender` (as [`Provider::sender`] answered) may send (None: no
    /// limit). Asked before each hand-over, so a rate set while Herald runs applies at once.
    fn sender_rate(&self, sender: &str) -> Option<NonZeroU32>;

    /// Whether `error` says the sender as a whole is over its rate (so its next messages
    /// should wait out `Retry-After` too), rather than this one attempt being refused.
    fn throttles_sender(&self, error: &ProviderError) -> bool {
        let _ = error;
        false
    }

    /// About how long from hand-over to the handset, for `estimated_delivery`.
    fn typical_delivery(&self) -> Option<Duration>;

    /// Verifies a webhook request and parses what it carries. Nothing is applied here: the
    /// caller commits the receipts before answering the provider.
    ///
    /// # Errors
    /// A missing or wrong signature, a body that is not this webhook's, or a webhook this
    /// provider does not have.
    fn parse_webhook(&self, request: WebhookRequest<'_>) -> Result<WebhookEvents, WebhookError> {
        let _ = request;
        Err(WebhookError::Unsupported)
    }

    /// Asks the provider what became of a message it accepted.
    fn lookup<'a>(&'a self, provider_message_id: &'a str) -> BoxFuture<'a, Lookup> {
        let _ = provider_message_id;
        Box::pin(std::future::ready(Lookup::CannotAsk))
    }

    /// Asks the provider whether the attempt to send `request` that started at
    /// `attempt_started` reached it (the worker that made it died before recording what the
    /// provider answered, or the provider never answered). `attempt_started` is when that
    /// attempt claimed the message (or, for one that got no answer, called the provider), so
    /// the provider, if it has the message, created it then or later.
    fn find_sent<'a>(
        &'a self,
        request: SendRequest<'a>,
        attempt_started: Timestamp,
    ) -> BoxFuture<'a, InDoubt> {
        let _ = (request, attempt_started);
        Box::pin(std::future::ready(InDoubt::CannotAsk))
    }
}
