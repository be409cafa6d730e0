//! Rows both dialects return for the same read, decoded once (`FromRow` is generic over the
//! row type) and shaped into the store's types.

use crate::domain::{
    AccountId, CampaignId, CampaignStatus, Channel, MessageId, MessageStatus, Money, PauseReason,
    Priority, Timestamp,
};
use crate::store::{
    ActiveCampaign, AwaitingReceipt, Balance, CampaignCounts, CampaignTotals, CampaignView,
    MessageView, ReceiptCursor, StatsRow, StoredTemplate,
};

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

/// A campaign as `load_campaign.sql` and `list_campaigns.sql` return it.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct CampaignRow {
    campaign_id: String,
    name: String,
    status: String,
    pause_reason: Option<String>,
    template: String,
    channel: String,
    priority: i64,
    sender_id: Option<String>,
    scheduled_at: i64,
    created_at: i64,
    started_at: Option<i64>,
    finished_at: Option<i64>,
    recipients_total: i64,
    recipients_accepted: i64,
    rejected: i64,
    opted_out: i64,
    estimated_cost: i64,
    estimated_segments: i64,
    skipped: i64,
    last_seq: i64,
    replies: i64,
}

impl From<CampaignRow> for CampaignView {
    fn from(row: CampaignRow) -> Self {
        CampaignView {
            campaign_id: CampaignId::from_stored(row.campaign_id),
            name: row.name,
            status: CampaignStatus::parse(&row.status).unwrap_or(CampaignStatus::Paused),
            pause_reason: row.pause_reason.as_deref().and_then(PauseReason::parse),
            template: row.template,
            channel: Channel::parse(&row.channel).unwrap_or(Channel::Sms),
            priority: Priority::from_rank(row.priority).unwrap_or(Priority::Normal),
            sender_id: row.sender_id,
            scheduled_at: Timestamp::from_millis(row.scheduled_at),
            created_at: Timestamp::from_millis(row.created_at),
            started_at: row.started_at.map(Timestamp::from_millis),
            finished_at: row.finished_at.map(Timestamp::from_millis),
            totals: CampaignTotals {
                recipients_total: row.recipients_total,
                recipients_accepted: row.recipients_accepted,
                rejected: row.rejected,
                opted_out: row.opted_out,
                estimated_cost: Money::from_units(row.estimated_cost),
                estimated_segments: row.estimated_segments,
                last_seq: row.last_seq,
            },
            skipped: row.skipped,
            replies: row.replies,
        }
    }
}

/// A campaign's messages in one status (`campaign_counts.sql`).
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct StatusCountRow {
    status: String,
    n: i64,
    cost: Option<i64>,
}

impl FromIterator<StatusCountRow> for CampaignCounts {
    fn from_iter<I: IntoIterator<Item = StatusCountRow>>(rows: I) -> Self {
        CampaignCounts {
            by_status: rows
                .into_iter()
                .filter_map(|row| {
                    Some((
                        MessageStatus::parse(&row.status)?,
                        row.n,
                        Money::from_units(row.cost.unwrap_or(0)),
                    ))
                })
                .collect(),
        }
    }
}

/// A campaign the workers have work for (`active_campaigns.sql`).
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct ActiveCampaignRow {
    campaign_id: String,
    status: String,
    scheduled_at: i64,
    fanned_out: i64,
    last_seq: i64,
}

impl ActiveCampaignRow {
    /// `None` for a status the workers have nothing to do with.
    pub(crate) fn into_active(self) -> Option<ActiveCampaign> {
        Some(ActiveCampaign {
            status: CampaignStatus::parse(&self.status)?,
            campaign_id: CampaignId::from_stored(self.campaign_id),
            scheduled_at: Timestamp::from_millis(self.scheduled_at),
            fanned_out: self.fanned_out,
            last_seq: self.last_seq,
        })
    }
}

/// An account's template (`list_templates.sql`, `load_template.sql`).
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct TemplateRow {
    name: String,
    body: String,
    created_at: i64,
    updated_at: i64,
}

impl From<TemplateRow> for StoredTemplate {
    fn from(row: TemplateRow) -> Self {
        StoredTemplate {
            name: row.name,
            body: row.body,
            created_at: Timestamp::from_millis(row.created_at),
            updated_at: Timestamp::from_millis(row.updated_at),
        }
    }
}

/// Messages of one day, channel and status (`stats.sql`).
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct StatsSqlRow {
    day: String,
    channel: String,
    status: String,
    n: i64,
    cost: Option<i64>,
}

impl StatsSqlRow {
    /// `None` for a channel or status this build does not know.
    pub(crate) fn into_stats(self) -> Option<StatsRow> {
        Some(StatsRow {
            day: self.day,
            channel: Channel::parse(&self.channel)?,
            status: MessageStatus::parse(&self.status)?,
            count: self.n,
            cost: Money::from_units(self.cost.unwrap_or(0)),
        })
    }
}
