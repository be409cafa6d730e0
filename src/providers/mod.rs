//! Providers: who actually hands a message to a phone network.
//!
//! Each provider sends, maps its own errors to transient (retry) or permanent (fail now), and
//! turns its receipts into [`crate::store::StatusUpdate`]s that go down one path into the
//! store ([`crate::workers::ReceiptSink`]), whether they arrive by webhook or, for the mock,
//! from its own network.

pub mod mock;

use crate::domain::{Channel, MessageId};
use futures::future::BoxFuture;
use std::num::NonZeroU32;
use std::time::Duration;

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

pub trait Provider: Send + Sync {
    /// Stable name, stored with each message it sent (receipts are matched by it).
    fn name(&self) -> &'static str;

    fn send<'a>(
        &'a self,
        request: SendRequest<'a>,
    ) -> BoxFuture<'a, Result<Accepted, ProviderError>>;

    /// Sender id used when a message names none.
    fn default_sender(&self) -> &str;

    /// Messages per second one sender may send (None: no limit).
    fn sender_rate(&self) -> Option<NonZeroU32>;

    /// About how long from hand-over to the handset, for `estimated_delivery`.
    fn typical_delivery(&self) -> Option<Duration>;
}
