//! Message search: the base query plus only the filters given, so each filter can use its
//! index (`?2 IS NULL OR …` would keep SQLite from using any).

use crate::domain::{AccountId, Channel, MessageId, MessageStatus, Money, Priority, Timestamp};
use crate::store::search::{MessageSearch, MessageSummary};
use crate::store::{StoreError, StoreResult};
use sqlx::Row;
use sqlx::sqlite::{SqlitePool, SqliteRow};

pub(in crate::store) async fn search_messages(
    pool: &SqlitePool,
    account_id: &AccountId,
    search: &MessageSearch,
) -> StoreResult<Vec<MessageSummary>> {
    let mut sql = String::from(include_str!("queries/search_messages.sql"));
    // Fixed fragments only: what the caller gave is bound, never written into the text.
    let filters = [
        (search.phone_number.is_some(), "AND phone_number = ?2\n"),
        (search.status.is_some(), "AND status = ?3\n"),
        (search.campaign_id.is_some(), "AND campaign_id = ?4\n"),
        (search.channel.is_some(), "AND channel = ?5\n"),
        (search.sender_id.is_some(), "AND sender_id = ?10\n"),
        (search.created_from.is_some(), "AND created_at >= ?6\n"),
        (search.created_to.is_some(), "AND created_at < ?7\n"),
        (
            search.before.is_some(),
            "AND (created_at < ?8 OR (created_at = ?8 AND message_id < ?9))\n",
        ),
    ];
    for (given, fragment) in filters {
        if given {
            sql.push_str(fragment);
        }
    }
    // The limit has the highest number and is always there, so every lower one may be bound
    // unused.
    sql.push_str("ORDER BY created_at DESC, message_id DESC LIMIT ?11");
    let (before_at, before_id) = match &search.before {
        Some((at, id)) => (Some(at.millis()), Some(id.as_str())),
        None => (None, None),
    };
    // Safe: the text is the query file and the fixed fragments above, nothing else.
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(account_id.as_str())
        .bind(search.phone_number.as_deref())
        .bind(search.status.map(MessageStatus::as_str))
        .bind(search.campaign_id.as_deref())
        .bind(search.channel.map(Channel::as_str))
        .bind(search.created_from.map(Timestamp::millis))
        .bind(search.created_to.map(Timestamp::millis))
        .bind(before_at)
        .bind(before_id)
        .bind(search.sender_id.as_deref())
        .bind(i64::try_from(search.limit).unwrap_or(i64::MAX))
        .fetch_all(pool)
        .await?;
    rows.iter().map(summary).collect()
}

pub(in crate::store) async fn message_summary(
    pool: &SqlitePool,
    account_id: &AccountId,
    message_id: &MessageId,
) -> StoreResult<Option<MessageSummary>> {
    let row = sqlx::query(include_str!("queries/load_message_summary.sql"))
        .bind(account_id.as_str())
        .bind(message_id.as_str())
        .fetch_optional(pool)
        .await?;
    row.as_ref().map(summary).transpose()
}

fn summary(row: &SqliteRow) -> StoreResult<MessageSummary> {
    let channel: String = row.try_get("channel")?;
    let status: String = row.try_get("status")?;
    let priority: i64 = row.try_get("priority")?;
    let corrupt = |what: &str, value: &str| {
        StoreError::Invalid(format!("a stored {what} Herald never writes: {value:?}"))
    };
    Ok(MessageSummary {
        message_id: MessageId::from_stored(row.try_get("message_id")?),
        campaign_id: row.try_get("campaign_id")?,
        channel: Channel::parse(&channel).ok_or_else(|| corrupt("channel", &channel))?,
        phone_number: row.try_get("phone_number")?,
        sender_id: row.try_get("sender_id")?,
        body: row.try_get("body")?,
        priority: Priority::from_rank(priority)
            .ok_or_else(|| corrupt("priority", &priority.to_string()))?,
        status: MessageStatus::parse(&status).ok_or_else(|| corrupt("status", &status))?,
        segments: row.try_get("segments")?,
        cost: Money::from_units(row.try_get("cost")?),
        error_code: row.try_get("error_code")?,
        error_message: row.try_get("error_message")?,
        created_at: Timestamp::from_millis(row.try_get("created_at")?),
        updated_at: Timestamp::from_millis(row.try_get("updated_at")?),
    })
}
