//! Rows both dialects return for the same read, decoded once (`FromRow` is generic over the
//! row type) and shaped into the store's types.

use crate::domain::{AccountId, Channel, MessageId, MessageStatus, Money, Priority, Timestamp};
use crate::store::{AwaitingReceipt, Balance, MessageView, ReceiptCursor};

/// A message as `load_message.sql` returns it.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct MessageRow {
    message_id: String,
    status: String,
    phone_number: String,
    channel: String,
    priority: i64,
    segments: i64,
    cost: i64,
    provider: Option<String>,
    provider_message_id: Option<String>,
    error_code: Option<String>,
    error_message: Option<String>,
    created_at: i64,
}

/// One status of a message's history (`load_history.sql`).
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct HistoryRow {
    status: String,
    at: i64,
}

impl MessageRow {
    /// The view with its history in lifecycle order. Both must come from one snapshot.
    pub(crate) fn into_view(self, events: Vec<HistoryRow>) -> MessageView {
        let mut history: Vec<(MessageStatus, Timestamp)> = events
            .into_iter()
            .filter_map(|e| {
                Some((
                    MessageStatus::parse(&e.status)?,
                    Timestamp::from_millis(e.at),
                ))
            })
            .collect();
        history.sort_by_key(|(status, at)| (status.order(), *at));
        MessageView {
            message_id: MessageId::from_stored(self.message_id),
            status: MessageStatus::parse(&self.status).unwrap_or(MessageStatus::Queued),
            phone_number: self.phone_number,
            channel: Channel::parse(&self.channel).unwrap_or(Channel::Sms),
            priority: Priority::from_rank(self.priority).unwrap_or(Priority::Normal),
            segments: u32::try_from(self.segments).unwrap_or(0),
            cost: Money::from_units(self.cost),
            provider: self.provider,
            provider_message_id: self.provider_message_id,
            error_code: self.error_code,
            error_message: self.error_message,
            created_at: Timestamp::from_millis(self.created_at),
            history,
        }
    }
}

/// A `sent` message past its receipt time (`awaiting_receipt.sql`).
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct AwaitingRow {
    message_id: String,
    account_id: String,
    provider_message_id: String,
    updated_at: i64,
}

impl From<AwaitingRow> for AwaitingReceipt {
    fn from(row: AwaitingRow) -> Self {
        AwaitingReceipt {
            account_id: AccountId::from_stored(row.account_id),
            provider_message_id: row.provider_message_id,
            cursor: ReceiptCursor {
                updated_at: Timestamp::from_millis(row.updated_at),
                message_id: row.message_id,
            },
        }
    }
}

/// An account's balance and today's usage (`load_balance.sql`).
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct BalanceRow {
    available: i64,
    currency: String,
    sent_today: i64,
    accepted_today: i64,
    daily_limit: i64,
}

impl From<BalanceRow> for Balance {
    fn from(row: BalanceRow) -> Self {
        Balance {
            available: Money::from_units(row.available),
            currency: row.currency,
            sent_today: row.sent_today,
            accepted_today: row.accepted_today,
            daily_limit: row.daily_limit,
        }
    }
}
