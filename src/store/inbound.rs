//! Inbound messages and threads, as stored. The API and the webhooks parse what a handset
//! sent into a [`NewInbound`]; the writer stores it, finds (or makes) its thread, applies a
//! keyword (SPEC §7) and queues the confirmation, all in one transaction. The rules are
//! `store::receive`'s, on either database.

use super::sqlite::inbound as sql;
use super::{Backend, NewMessage, Store, StoreResult};
use crate::billing::Pricing;
use crate::domain::{AccountId, Channel, Keyword, MessageId, ThreadId, Timestamp};

/// A message from a handset, before it is stored.
#[derive(Debug, Clone)]
pub struct NewInbound {
    pub message_id: MessageId,
    /// The account, when the path it came by says (the generic webhook's key, a provider
    /// account an account brought). Otherwise the store finds it: the account that last
    /// sent to the number on that channel, else `fallback_account`.
    pub account_id: Option<AccountId>,
    /// The account inbound messages go to when nothing else names one (by name or id).
    pub fallback_account: Option<String>,
    pub channel: Channel,
    /// `api`, `twilio`, `whatsapp_cloud`, `mock`.
    pub provider: &'static str,
    /// The provider's id: a retry of the same message is stored once.
    pub provider_message_id: Option<String>,
    pub from: String,
    pub to: Option<String>,
    pub body: String,
    pub media_urls: Vec<String>,
    pub received_at: Timestamp,
    pub keyword: Option<Keyword>,
    /// The answer to a STOP or HELP, queued when the message is one (and is new, and its
    /// account is known), past the opt-out the STOP just recorded.
    pub reply: Option<KeywordReply>,
}

/// The answer to a STOP or HELP, with the deployment's text; the account's own text, where
/// it set one, replaces it once the store knows whose the message is.
#[derive(Debug, Clone)]
pub struct KeywordReply {
    pub message: NewMessage,
    pub pricing: Pricing,
}

/// An account's own answers to STOP and HELP (None: the deployment's; empty: none).
#[derive(Debug, Clone, Default, PartialEq, Eq, sqlx::FromRow)]
pub struct KeywordReplies {
    pub stop_reply: Option<String>,
    pub help_reply: Option<String>,
}

/// What storing an inbound message did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundOutcome {
    /// The stored message's id (the first one's, for a repeat).
    pub message_id: MessageId,
    /// A repeat of a message already stored: nothing changed.
    pub repeat: bool,
    /// None: no account could be found; kept, unroutable.
    pub account_id: Option<AccountId>,
    pub thread_id: Option<ThreadId>,
    /// Whether the confirmation was queued.
    pub replied: bool,
}

/// A thread as listed.
#[derive(Debug, Clone)]
pub struct ThreadSummary {
    pub thread_id: ThreadId,
    pub channel: Channel,
    pub phone_number: String,
    /// The latest message either way, and when.
    pub last_message: String,
    pub last_message_at: Timestamp,
    pub last_inbound_at: Timestamp,
    pub unread_count: i64,
}

/// An inbound message answering one of a campaign's messages.
#[derive(Debug, Clone)]
pub struct CampaignReply {
    pub message_id: String,
    pub thread_id: Option<String>,
    pub phone_number: String,
    pub body: String,
    pub keyword: Option<String>,
    pub in_reply_to: Option<String>,
    pub received_at: Timestamp,
}

/// One message of a thread, either way.
#[derive(Debug, Clone)]
pub struct ThreadMessage {
    pub message_id: String,
    /// `inbound` or `outbound`.
    pub direction: &'static str,
    pub body: String,
    pub at: Timestamp,
    /// Outbound: its status. Inbound: `received`.
    pub status: String,
    /// Inbound only: whether it was read.
    pub read: Option<bool>,
    pub keyword: Option<String>,
    pub campaign_id: Option<String>,
}

impl Store {
    /// Stores inbound messages (each once), in one transaction.
    ///
    /// # Errors
    /// The database refused the write.
    pub async fn record_inbound(&self, batch: Vec<NewInbound>) -> StoreResult<Vec<InboundOutcome>> {
        let outcomes = match &self.backend {
            Backend::Sqlite(s) => s.record_inbound(batch).await,
            Backend::Postgres(p) => p.record_inbound(batch).await,
        }?;
        // A STOP's or HELP's answer is due now.
        if outcomes.iter().any(|o| o.replied) {
            self.ready.notify_waiters();
        }
        Ok(outcomes)
    }

    /// Marks the account's inbound messages read; answers how many went from unread to read.
    ///
    /// # Errors
    /// The database refused the write.
    pub async fn mark_read(&self, account_id: &AccountId, ids: Vec<String>) -> StoreResult<u64> {
        match &self.backend {
            Backend::Sqlite(s) => s.mark_read(account_id.clone(), ids).await,
            Backend::Postgres(p) => p.mark_read(account_id, ids).await,
        }
    }

    /// The account's threads, most recent inbound first, after `before` (a cursor:
    /// `(last_inbound_at, thread_id)` of the last one seen).
    pub async fn threads(
        &self,
        account_id: &AccountId,
        before: Option<(Timestamp, String)>,
        limit: usize,
    ) -> StoreResult<Vec<ThreadSummary>> {
        match &self.backend {
            Backend::Sqlite(s) => sql::threads(s.reads(), account_id, before, limit).await,
            Backend::Postgres(p) => p.threads(account_id, before, limit).await,
        }
    }

    /// Replies to the account's campaign, oldest first, after `after` (a cursor: the
    /// `(received_at, message_id)` of the last one seen).
    pub async fn campaign_replies(
        &self,
        account_id: &AccountId,
        campaign_id: &str,
        after: Option<(Timestamp, String)>,
        limit: usize,
    ) -> StoreResult<Vec<CampaignReply>> {
        match &self.backend {
            Backend::Sqlite(s) => {
                sql::campaign_replies(s.reads(), account_id, campaign_id, after, limit).await
            }
            Backend::Postgres(p) => {
                p.campaign_replies(account_id, campaign_id, after, limit)
                    .await
            }
        }
    }

    /// The account's own answers to STOP and HELP.
    pub async fn keyword_replies(&self, account_id: &AccountId) -> StoreResult<KeywordReplies> {
        match &self.backend {
            Backend::Sqlite(s) => sql::keyword_replies(s.reads(), account_id).await,
            Backend::Postgres(p) => p.keyword_replies(account_id).await,
        }
    }

    /// Sets the account's own answers to STOP and HELP.
    pub async fn set_keyword_replies(
        &self,
        account_id: &AccountId,
        replies: KeywordReplies,
    ) -> StoreResult<()> {
        match &self.backend {
            Backend::Sqlite(s) => {
                s.campaign_write(super::sqlite::campaign::CampaignWrite::SetKeywordReplies {
                    account_id: account_id.clone(),
                    replies,
                })
                .await?;
            }
            Backend::Postgres(p) => {
                p.set_keyword_replies(account_id, &replies).await?;
            }
        }
        Ok(())
    }

    /// When `phone_number` last wrote to the account on `channel` (None: never).
    pub async fn last_inbound_at(
        &self,
        account_id: &AccountId,
        channel: Channel,
        phone_number: &str,
    ) -> StoreResult<Option<Timestamp>> {
        match &self.backend {
            Backend::Sqlite(s) => {
                sql::last_inbound_at(s.reads(), account_id, channel, phone_number).await
            }
            Backend::Postgres(p) => p.last_inbound_at(account_id, channel, phone_number).await,
        }
    }

    /// One thread of the account.
    pub async fn thread(
        &self,
        account_id: &AccountId,
        thread_id: &ThreadId,
    ) -> StoreResult<Option<ThreadSummary>> {
        match &self.backend {
            Backend::Sqlite(s) => sql::thread(s.reads(), account_id, thread_id).await,
            Backend::Postgres(p) => p.thread(account_id, thread_id).await,
        }
    }

    /// A thread's messages both ways, oldest first, after `after` (a cursor: the
    /// `(at, message_id)` of the last one seen).
    pub async fn thread_messages(
        &self,
        account_id: &AccountId,
        thread: &ThreadSummary,
        after: Option<(Timestamp, String)>,
        limit: usize,
    ) -> StoreResult<Vec<ThreadMessage>> {
        match &self.backend {
            Backend::Sqlite(s) => {
                sql::thread_messages(s.reads(), account_id, thread, after, limit).await
            }
            Backend::Postgres(p) => p.thread_messages(account_id, thread, after, limit).await,
        }
    }
}
