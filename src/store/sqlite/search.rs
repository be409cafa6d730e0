//! Message search: the base query plus only the filters given, so each filter can use its
//! index (`?2 IS NULL OR …` would keep SQLite from using any).

use crate::domain::{AccountId, Channel, MessageId, MessageStatus, Money, Priority, Timestamp};
use crate::store::search::{MessageSearch, MessageSummary, SCAN_LIMIT, SearchPage};
use crate::store::{StoreError, StoreResult};
use sqlx::Row;
use sqlx::sqlite::{SqlitePool, SqliteRow};

/// The filters indexes serve, and the cursor, as fixed fragments.
fn indexed_filters(search: &MessageSearch) -> [(bool, &'static str); 5] {
    [
        (search.phone_number.is_some(), "AND phone_number = ?2\n"),
        (search.campaign_id.is_some(), "AND campaign_id = ?4\n"),
        (search.created_from.is_some(), "AND created_at >= ?6\n"),
        (search.created_to.is_some(), "AND created_at < ?7\n"),
        (
            search.before.is_some(),
            "AND (created_at < ?8 OR (created_at = ?8 AND message_id < ?9))\n",
        ),
    ]
}

pub(in crate::store) async fn search_messages(
    pool: &SqlitePool,
    account_id: &AccountId,
    search: &MessageSearch,
) -> StoreResult<SearchPage> {
    let mut base = String::from(include_str!("queries/search_messages.sql"));
    // Fixed fragments only: what the caller gave is bound, never written into the text.
    for (given, fragment) in indexed_filters(search) {
        if given {
            base.push_str(fragment);
        }
    }
    let checked = [
        (search.status.is_some(), "AND status = ?3\n"),
        (search.channel.is_some(), "AND channel = ?5\n"),
        (search.sender_id.is_some(), "AND sender_id = ?10\n"),
    ];
    let limit = i64::try_from(search.limit).unwrap_or(i64::MAX);
    let order = "ORDER BY created_at DESC, message_id DESC ";
    if !checked.iter().any(|(given, _)| *given) {
        // The limit has the highest number and is always there, so every lower one may be
        // bound unused.
        let sql = format!("{base}{order}LIMIT ?11");
        let rows = bind(
            sqlx::query(sqlx::AssertSqlSafe(sql)),
            account_id,
            search,
            limit,
            None,
        )
        .fetch_all(pool)
        .await?;
        let messages = rows.iter().map(summary).collect::<StoreResult<Vec<_>>>()?;
        let next = full_page_cursor(&messages, search.limit);
        return Ok(SearchPage { messages, next });
    }
    // The window (the newest SCAN_LIMIT messages the indexes give) is a co-routine that yields
    // its rows in its ORDER BY order; with no ORDER BY outside it, SQLite checks them as they
    // come and stops at the page's last match, so a common status costs a page's worth of
    // rows and a rare one at most the window.
    let mut sql = format!("SELECT * FROM ({base}{order}LIMIT ?12) AS w WHERE TRUE\n");
    for (given, fragment) in checked {
        if given {
            sql.push_str(fragment);
        }
    }
    sql.push_str("LIMIT ?11");
    let window = i64::try_from(SCAN_LIMIT).unwrap_or(i64::MAX);
    let mut conn = pool.begin().await?;
    let rows = bind(
        sqlx::query(sqlx::AssertSqlSafe(sql)),
        account_id,
        search,
        limit,
        Some(window),
    )
    .fetch_all(&mut *conn)
    .await?;
    let mut messages = rows.iter().map(summary).collect::<StoreResult<Vec<_>>>()?;
    // The co-routine's order is SQLite's doing, not a promise: the page is put in order here.
    messages.sort_by(|a, b| {
        (b.created_at, b.message_id.as_str()).cmp(&(a.created_at, a.message_id.as_str()))
    });
    let next = if let Some(cursor) = full_page_cursor(&messages, search.limit) {
        Some(cursor)
    } else {
        // A short page: the next one starts after the window's oldest message, if the
        // window was full (fewer than SCAN_LIMIT left: the search is over).
        let sql = format!("{base}{order}LIMIT 1 OFFSET ?11");
        let offset = i64::try_from(SCAN_LIMIT - 1).unwrap_or(i64::MAX);
        let row = bind(
            sqlx::query(sqlx::AssertSqlSafe(sql)),
            account_id,
            search,
            offset,
            None,
        )
        .fetch_optional(&mut *conn)
        .await?;
        match row {
            Some(r) => Some((
                Timestamp::from_millis(r.try_get("created_at")?),
                r.try_get("message_id")?,
            )),
            None => None,
        }
    };
    conn.commit().await?;
    Ok(SearchPage { messages, next })
}

/// A full page goes on after its last message; a short one (None) may still go on, when
/// the scan stopped at its window.
fn full_page_cursor(messages: &[MessageSummary], limit: usize) -> Option<(Timestamp, String)> {
    (messages.len() == limit)
        .then(|| messages.last())
        .flatten()
        .map(|m| (m.created_at, m.message_id.to_string()))
}

/// Binds ?1 to ?10 (the filters and the cursor), ?11, and ?12 when given.
fn bind<'q>(
    query: sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments>,
    account_id: &'q AccountId,
    search: &'q MessageSearch,
    eleventh: i64,
    twelfth: Option<i64>,
) -> sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments> {
    let (before_at, before_id) = match &search.before {
        Some((at, id)) => (Some(at.millis()), Some(id.as_str())),
        None => (None, None),
    };
    let query = query
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
        .bind(eleventh);
    match twelfth {
        Some(n) => query.bind(n),
        None => query,
    }
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
