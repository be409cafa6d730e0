//! Finding an account's messages: by number, status, campaign, channel and time, newest
//! first, a page at a time. The cursor is the last row's `(created_at, message_id)`, so pages
//! never repeat or skip a message while new ones arrive (they sort before the first page).
//!
//! Number, campaign and time are served by indexes; status, channel and sender are checked
//! row by row. So that a rare status cannot make one request walk every message of the
//! account (a million rows, half a second), a page examines at most [`SCAN_LIMIT`] of the
//! messages the indexes give: it may come back short, even empty, with a cursor to go on.
//! (An index on status would avoid it, but every status change would move an entry in it:
//! measured at 10 % of dispatch throughput.)

use super::sqlite::search as sql;
use super::{Store, StoreResult};
use crate::domain::{AccountId, Channel, MessageId, MessageStatus, Money, Priority, Timestamp};

/// What to look for; every filter given must hold.
#[derive(Debug, Clone, Default)]
pub struct MessageSearch {
    /// E.164.
    pub phone_number: Option<String>,
    pub status: Option<MessageStatus>,
    pub campaign_id: Option<String>,
    pub channel: Option<Channel>,
    /// The sender id the message was sent with.
    pub sender_id: Option<String>,
    /// Created at or after.
    pub created_from: Option<Timestamp>,
    /// Created before.
    pub created_to: Option<Timestamp>,
    /// The cursor: `(created_at, message_id)` of the last message of the previous page.
    pub before: Option<(Timestamp, String)>,
    pub limit: usize,
}

/// Messages a page examines at most when status, channel or sender filter them.
pub const SCAN_LIMIT: usize = 10_000;

/// A page of results.
#[derive(Debug, Clone)]
pub struct SearchPage {
    pub messages: Vec<MessageSummary>,
    /// Where the next page starts (`before`); None when nothing older is left to examine.
    pub next: Option<(Timestamp, String)>,
}

/// One message as search lists it (its history is one `message/{id}/status/` away).
#[derive(Debug, Clone)]
pub struct MessageSummary {
    pub message_id: MessageId,
    pub campaign_id: Option<String>,
    pub channel: Channel,
    pub phone_number: String,
    pub sender_id: Option<String>,
    pub body: String,
    pub priority: Priority,
    pub status: MessageStatus,
    pub segments: i64,
    pub cost: Money,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl Store {
    /// The account's messages that match `search`, newest first.
    ///
    /// # Errors
    /// The database failed the read.
    pub async fn search_messages(
        &self,
        account_id: &AccountId,
        search: &MessageSearch,
    ) -> StoreResult<SearchPage> {
        sql::search_messages(self.sqlite()?.reads(), account_id, search).await
    }

    /// One of the account's messages as search lists it; None for another account's.
    ///
    /// # Errors
    /// The database failed the read.
    pub async fn message_summary(
        &self,
        account_id: &AccountId,
        message_id: &MessageId,
    ) -> StoreResult<Option<MessageSummary>> {
        sql::message_summary(self.sqlite()?.reads(), account_id, message_id).await
    }
}
