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
use super::{Backend, Store, StoreError, StoreResult};
use crate::domain::{AccountId, Channel, MessageId, MessageStatus, Money, Priority, Timestamp};
use std::future::Future;

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
        match &self.backend {
            Backend::Sqlite(s) => sql::search_messages(s.reads(), account_id, search).await,
            Backend::Postgres(p) => p.search_messages(account_id, search).await,
        }
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
        match &self.backend {
            Backend::Sqlite(s) => sql::message_summary(s.reads(), account_id, message_id).await,
            Backend::Postgres(p) => p.message_summary(account_id, message_id).await,
        }
    }
}

/// A message as every dialect's search statements select it.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct SummaryRow {
    message_id: String,
    campaign_id: Option<String>,
    channel: String,
    phone_number: String,
    sender_id: Option<String>,
    body: String,
    priority: i64,
    status: String,
    segments: i64,
    cost: i64,
    error_code: Option<String>,
    error_message: Option<String>,
    created_at: i64,
    updated_at: i64,
}

impl TryFrom<SummaryRow> for MessageSummary {
    type Error = StoreError;

    fn try_from(row: SummaryRow) -> StoreResult<Self> {
        let corrupt = |what: &str, value: &str| {
            StoreError::Invalid(format!("a stored {what} Herald never writes: {value:?}"))
        };
        Ok(MessageSummary {
            channel: Channel::parse(&row.channel)
                .ok_or_else(|| corrupt("channel", &row.channel))?,
            priority: Priority::from_rank(row.priority)
                .ok_or_else(|| corrupt("priority", &row.priority.to_string()))?,
            status: MessageStatus::parse(&row.status)
                .ok_or_else(|| corrupt("status", &row.status))?,
            message_id: MessageId::from_stored(row.message_id),
            campaign_id: row.campaign_id,
            phone_number: row.phone_number,
            sender_id: row.sender_id,
            body: row.body,
            segments: row.segments,
            cost: Money::from_units(row.cost),
            error_code: row.error_code,
            error_message: row.error_message,
            created_at: Timestamp::from_millis(row.created_at),
            updated_at: Timestamp::from_millis(row.updated_at),
        })
    }
}

/// One dialect's text of the search statements. Parameters, bound on every statement whether
/// its text uses them or not: 1 the account, 2 the number, 3 the status, 4 the campaign, 5
/// the channel, 6 created from, 7 created to, 8 and 9 the cursor (`created_at`,
/// `message_id`), 10 the sender; 11 the page's limit (or the offset of
/// [`SearchText::one_at`]); 12 the window, bound only when the text uses it.
pub(crate) struct SearchText {
    /// `queries/search_messages.sql`: the account's messages, ending in its WHERE clause.
    pub base: &'static str,
    /// `AND …` lines for the filters the indexes serve, and the cursor.
    pub phone_number: &'static str,
    pub campaign_id: &'static str,
    pub created_from: &'static str,
    pub created_to: &'static str,
    pub before: &'static str,
    /// `AND …` lines for the filters checked row by row.
    pub status: &'static str,
    pub channel: &'static str,
    pub sender_id: &'static str,
    /// Newest first, the cursor's order.
    pub order: &'static str,
    /// `LIMIT` parameter 11.
    pub limit: &'static str,
    /// `LIMIT` parameter 12.
    pub window: &'static str,
    /// One row, after skipping parameter 11.
    pub one_at: &'static str,
}

/// A dialect's search: its text, and running it (inside the caller's read transaction, so
/// a page and its cursor see one snapshot).
pub(crate) trait SearchSql: Send {
    const TEXT: SearchText;

    /// The rows `sql` (assembled from [`SearchSql::TEXT`]) selects, with `search` bound as
    /// parameters 1 to 10, `eleventh` as 11 and `twelfth`, when given, as 12.
    fn summaries(
        &mut self,
        sql: String,
        account_id: &AccountId,
        search: &MessageSearch,
        eleventh: i64,
        twelfth: Option<i64>,
    ) -> impl Future<Output = sqlx::Result<Vec<SummaryRow>>> + Send;
}

/// A page of `search`: the base statement plus only the filters given (fixed fragments;
/// what the caller gave is bound, never written into the text), so each filter can use its
/// index (`$2 IS NULL OR …` would keep SQLite from using any, and PostgreSQL's generic
/// plans too).
pub(crate) async fn page<C: SearchSql>(
    conn: &mut C,
    account_id: &AccountId,
    search: &MessageSearch,
) -> StoreResult<SearchPage> {
    let text = C::TEXT;
    let mut base = String::from(text.base);
    for (given, fragment) in [
        (search.phone_number.is_some(), text.phone_number),
        (search.campaign_id.is_some(), text.campaign_id),
        (search.created_from.is_some(), text.created_from),
        (search.created_to.is_some(), text.created_to),
        (search.before.is_some(), text.before),
    ] {
        if given {
            base.push_str(fragment);
        }
    }
    let checked = [
        (search.status.is_some(), text.status),
        (search.channel.is_some(), text.channel),
        (search.sender_id.is_some(), text.sender_id),
    ];
    let limit = i64::try_from(search.limit).unwrap_or(i64::MAX);
    let order = text.order;
    if !checked.iter().any(|(given, _)| *given) {
        let sql = format!("{base}{order}{}", text.limit);
        let rows = conn.summaries(sql, account_id, search, limit, None).await?;
        let messages = summaries(rows)?;
        let next = full_page_cursor(&messages, search.limit);
        return Ok(SearchPage { messages, next });
    }
    // The window (the newest SCAN_LIMIT messages the indexes give) is a subquery that yields
    // its rows in its ORDER BY order (a co-routine on SQLite, a Limit over an index scan on
    // PostgreSQL); with no ORDER BY outside it, the filters are checked as rows come and the
    // scan stops at the page's last match, so a common status costs a page's worth of rows
    // and a rare one at most the window.
    let mut sql = format!(
        "SELECT * FROM ({base}{order}{}) AS w WHERE TRUE\n",
        text.window
    );
    for (given, fragment) in checked {
        if given {
            sql.push_str(fragment);
        }
    }
    sql.push_str(text.limit);
    let window = i64::try_from(SCAN_LIMIT).unwrap_or(i64::MAX);
    let rows = conn
        .summaries(sql, account_id, search, limit, Some(window))
        .await?;
    let mut messages = summaries(rows)?;
    // The subquery's order is the engine's doing, not a promise: the page is put in order here.
    messages.sort_by(|a, b| {
        (b.created_at, b.message_id.as_str()).cmp(&(a.created_at, a.message_id.as_str()))
    });
    let next = match full_page_cursor(&messages, search.limit) {
        Some(cursor) => Some(cursor),
        None => {
            // A short page: the next one starts after the window's oldest message, if the
            // window was full (fewer than SCAN_LIMIT left: the search is over).
            let sql = format!("{base}{order}{}", text.one_at);
            let offset = i64::try_from(SCAN_LIMIT - 1).unwrap_or(i64::MAX);
            let rows = conn
                .summaries(sql, account_id, search, offset, None)
                .await?;
            rows.into_iter()
                .next()
                .map(|r| (Timestamp::from_millis(r.created_at), r.message_id))
        }
    };
    Ok(SearchPage { messages, next })
}

fn summaries(rows: Vec<SummaryRow>) -> StoreResult<Vec<MessageSummary>> {
    rows.into_iter().map(MessageSummary::try_from).collect()
}

/// A full page goes on after its last message; a short one (None) may still go on, when
/// the scan stopped at its window.
fn full_page_cursor(messages: &[MessageSummary], limit: usize) -> Option<(Timestamp, String)> {
    (messages.len() == limit)
        .then(|| messages.last())
        .flatten()
        .map(|m| (m.created_at, m.message_id.to_string()))
}
