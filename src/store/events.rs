//! Events and the webhooks that carry them to customers, as stored (SPEC §7).
//!
//! An event is written for every status a message reaches (by the statements that add it to
//! the history, `DeliverySql::insert_status_events`) and every inbound message (by a
//! trigger), in the transaction that makes the change, and a trigger queues one delivery per
//! target (the account's webhook, the message's `status_callback`). So an event is never lost nor invented: what
//! follows (signing, posting, retrying, streaming) only reads and marks them.

use super::outbox::{EventWrite, EventWritten};
use super::sqlite::events as sql;
use super::{Backend, Store, StoreResult};
use crate::domain::{AccountId, Timestamp};
use std::time::Duration;

/// One event with what its payload shows, read back from the log.
#[derive(Debug, Clone)]
pub struct EventRecord {
    /// Monotonic in commit order: the stream's id and the webhooks' `event_id`.
    pub seq: i64,
    pub account_id: AccountId,
    pub kind: EventKind,
    pub message_id: String,
    pub status: String,
    pub previous_status: Option<String>,
    pub at: Timestamp,
    pub channel: Option<String>,
    pub campaign_id: Option<String>,
    /// Outbound: the recipient. Inbound: the sender.
    pub phone_number: Option<String>,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    /// Outbound: the metadata the message was sent with (JSON text).
    pub metadata: Option<String>,
    pub inbound: Option<InboundDetail>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Status,
    Inbound,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Status => "message.status",
            EventKind::Inbound => "message.inbound",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "message.status" => Some(EventKind::Status),
            "message.inbound" => Some(EventKind::Inbound),
            _ => None,
        }
    }
}

/// What only an inbound message's event carries.
#[derive(Debug, Clone)]
pub struct InboundDetail {
    pub to: Option<String>,
    pub body: String,
    pub media_urls: Vec<String>,
    pub thread_id: Option<String>,
    pub keyword: Option<String>,
    pub in_reply_to: Option<String>,
}

/// The account's webhook endpoint.
#[derive(Debug, Clone)]
pub struct WebhookEndpoint {
    pub url: Option<String>,
    pub secret: String,
    pub enabled: bool,
    /// Since when every attempt failed (None: the last one succeeded).
    pub failing_since: Option<Timestamp>,
    pub disabled_at: Option<Timestamp>,
}

/// Where a delivery goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Webhook,
    StatusCallback,
}

impl Target {
    pub fn as_str(self) -> &'static str {
        match self {
            Target::Webhook => "webhook",
            Target::StatusCallback => "status_callback",
        }
    }

    pub(super) fn parse(s: &str) -> Self {
        if s == "status_callback" {
            Target::StatusCallback
        } else {
            Target::Webhook
        }
    }
}

/// A claimed delivery, ready to post.
#[derive(Debug, Clone)]
pub struct DeliveryJob {
    /// None: an event read from the log by the webhooks' cursor, with no row yet (its row is
    /// written with its outcome).
    pub delivery_id: Option<i64>,
    /// This attempt's number: the claim's fencing token.
    pub attempt: i64,
    pub target: Target,
    /// None: the endpoint was removed meanwhile (or the message has no callback).
    pub url: Option<String>,
    pub secret: String,
    /// A status_callback to post in Twilio's format: the sealed key that signs it
    /// (`events::twilio_format`), and the sender the message went out from.
    pub twilio: Option<TwilioCallback>,
    pub created_at: Timestamp,
    pub event: EventRecord,
}

#[derive(Debug, Clone)]
pub struct TwilioCallback {
    pub sealed_signer: String,
    pub from: Option<String>,
}

/// What one attempt came to.
#[derive(Debug, Clone)]
pub struct AttemptOutcome {
    /// None: an event read from the log; its row is written with this outcome.
    pub delivery_id: Option<i64>,
    pub event_seq: i64,
    /// When the event was recorded (a new row's `created_at`).
    pub created_at: Timestamp,
    pub account_id: AccountId,
    pub target: Target,
    pub attempt: i64,
    pub at: Timestamp,
    pub latency: Duration,
    pub response_status: Option<u16>,
    pub error: Option<String>,
    pub next: NextStep,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextStep {
    Delivered,
    RetryAt(Timestamp),
    GiveUp,
}

/// A delivery as the account sees it.
#[derive(Debug, Clone)]
pub struct DeliveryView {
    pub delivery_id: i64,
    pub event_seq: i64,
    pub event: String,
    pub message_id: String,
    pub target: Target,
    pub state: String,
    pub attempts: i64,
    pub next_attempt_at: Option<Timestamp>,
    pub created_at: Timestamp,
    pub finished_at: Option<Timestamp>,
}

/// One attempt of a delivery.
#[derive(Debug, Clone)]
pub struct AttemptView {
    pub attempt: i64,
    pub at: Timestamp,
    pub latency_ms: i64,
    pub response_status: Option<i64>,
    pub error: Option<String>,
}

impl Store {
    /// An outbox write, in the backend's transaction.
    async fn events_write(&self, write: EventWrite) -> StoreResult<EventWritten> {
        match &self.backend {
            Backend::Sqlite(s) => s.events_write(write).await,
            Backend::Postgres(p) => p.events_write(write).await,
        }
    }

    /// Events after `after` in number order, of one account or of all: none numbered lower
    /// than the last one given can still appear (on PostgreSQL, whose numbers are not in
    /// commit order, only events up to a settled horizon are given: `postgres/stream.rs`).
    pub async fn events_after(
        &self,
        after: i64,
        account_id: Option<&AccountId>,
        limit: usize,
    ) -> StoreResult<Vec<EventRecord>> {
        match &self.backend {
            Backend::Sqlite(s) => sql::events_after(s.reads(), after, account_id, limit).await,
            Backend::Postgres(p) => p.events_after(after, account_id, limit).await,
        }
    }

    /// Where a new stream starts: the newest event's number (0 when there is none), or on
    /// PostgreSQL the horizon below which every event is final.
    pub async fn last_event_seq(&self) -> StoreResult<i64> {
        match &self.backend {
            Backend::Sqlite(s) => sql::last_event_seq(s.reads()).await,
            Backend::Postgres(p) => p.last_event_seq().await,
        }
    }

    pub async fn webhook(&self, account_id: &AccountId) -> StoreResult<WebhookEndpoint> {
        match &self.backend {
            Backend::Sqlite(s) => sql::webhook(s.reads(), account_id).await,
            Backend::Postgres(p) => p.webhook(account_id).await,
        }
    }

    /// Sets (and enables) the account's webhook URL.
    pub async fn set_webhook(&self, account_id: &AccountId, url: String) -> StoreResult<()> {
        self.events_write(EventWrite::SetWebhook {
            account_id: account_id.clone(),
            url,
        })
        .await?;
        Ok(())
    }

    /// Removes the account's webhook URL; what was pending for it is given up.
    pub async fn delete_webhook(&self, account_id: &AccountId) -> StoreResult<bool> {
        let removed = self
            .events_write(EventWrite::DeleteWebhook {
                account_id: account_id.clone(),
            })
            .await?;
        Ok(removed.count() > 0)
    }

    pub async fn set_webhook_secret(
        &self,
        account_id: &AccountId,
        secret: String,
    ) -> StoreResult<()> {
        self.events_write(EventWrite::SetSecret {
            account_id: account_id.clone(),
            secret,
        })
        .await?;
        Ok(())
    }

    /// Whether any delivery is due by `now` (a read, so an idle dispatcher writes nothing).
    pub async fn webhook_work_due(&self, now: Timestamp) -> StoreResult<bool> {
        match &self.backend {
            Backend::Sqlite(s) => sql::work_due(s.reads(), now).await,
            Backend::Postgres(p) => p.webhook_work_due(now).await,
        }
    }

    /// Claims up to `limit` due deliveries for `lease`, skipping the accounts in `busy` (whose
    /// endpoints already have all they may have in flight), and loads what they carry.
    pub async fn claim_webhook_deliveries(
        &self,
        limit: usize,
        lease: Duration,
        busy: Vec<String>,
    ) -> StoreResult<Vec<DeliveryJob>> {
        let now = Timestamp::now();
        let claimed = self
            .events_write(EventWrite::Claim {
                now,
                lease_until: now.plus(lease),
                limit,
                busy,
            })
            .await?
            .claimed();
        if claimed.is_empty() {
            return Ok(Vec::new());
        }
        match &self.backend {
            Backend::Sqlite(s) => sql::delivery_jobs(s.reads(), &claimed).await,
            Backend::Postgres(p) => p.delivery_jobs(&claimed).await,
        }
    }

    /// Where the webhooks' reading of the event log resumes; None where deliveries to
    /// accounts' webhooks are rows the event's trigger writes (PostgreSQL).
    pub async fn webhook_cursor(&self) -> StoreResult<Option<i64>> {
        match &self.backend {
            Backend::Sqlite(s) => Ok(Some(sql::webhook_cursor(s.reads()).await?)),
            Backend::Postgres(_) => Ok(None),
        }
    }

    /// Up to `limit` events after `after` that go to an account's webhook, as deliveries
    /// without rows, and how far the log was read (past events no webhook takes).
    pub async fn fresh_webhook_events(
        &self,
        after: i64,
        limit: usize,
    ) -> StoreResult<(Vec<DeliveryJob>, i64)> {
        match &self.backend {
            Backend::Sqlite(s) => sql::fresh_webhook_events(s.reads(), after, limit).await,
            Backend::Postgres(_) => Ok((Vec::new(), after)),
        }
    }

    /// Moves the webhooks' cursor to `cursor` (never back) with no outcome to record: while
    /// no account has a webhook, nothing else moves it past the events the purge may drop.
    pub async fn move_webhook_cursor(&self, cursor: i64) -> StoreResult<()> {
        self.record_webhook_attempts(Vec::new(), Some(cursor), Duration::ZERO)
            .await?;
        Ok(())
    }

    /// Records attempts (and the rows of deliveries read from the log, with the cursor moved
    /// to `cursor`); an endpoint failing for longer than `disable_after` is disabled.
    /// Answers the accounts whose endpoints this disabled.
    pub async fn record_webhook_attempts(
        &self,
        outcomes: Vec<AttemptOutcome>,
        cursor: Option<i64>,
        disable_after: Duration,
    ) -> StoreResult<Vec<String>> {
        Ok(self
            .events_write(EventWrite::Record {
                outcomes,
                cursor,
                disable_after,
            })
            .await?
            .disabled())
    }

    /// The account's deliveries, newest first, before `before` (a delivery id).
    pub async fn webhook_deliveries(
        &self,
        account_id: &AccountId,
        state: Option<&str>,
        before: Option<i64>,
        limit: usize,
    ) -> StoreResult<Vec<DeliveryView>> {
        match &self.backend {
            Backend::Sqlite(s) => {
                sql::deliveries(s.reads(), account_id, state, before, limit).await
            }
            Backend::Postgres(p) => p.deliveries(account_id, state, before, limit).await,
        }
    }

    /// One delivery of the account with its attempts, read together.
    pub async fn webhook_delivery(
        &self,
        account_id: &AccountId,
        delivery_id: i64,
    ) -> StoreResult<Option<(DeliveryView, Vec<AttemptView>)>> {
        match &self.backend {
            Backend::Sqlite(s) => sql::delivery(s.reads(), account_id, delivery_id).await,
            Backend::Postgres(p) => p.delivery(account_id, delivery_id).await,
        }
    }

    /// Queues a delivery of the account again, due now. False: no such delivery.
    pub async fn redeliver(&self, account_id: &AccountId, delivery_id: i64) -> StoreResult<bool> {
        let done = self
            .events_write(EventWrite::Redeliver {
                account_id: account_id.clone(),
                delivery_id,
                now: Timestamp::now(),
            })
            .await?;
        Ok(done.count() > 0)
    }

    /// Forgets events, finished deliveries and their attempts older than `max_age`; what is
    /// still pending stays.
    pub async fn purge_events(&self, max_age: Duration) -> StoreResult<u64> {
        let done = self
            .events_write(EventWrite::Purge {
                before: Timestamp::now().minus(max_age),
            })
            .await?;
        Ok(done.count())
    }
}
