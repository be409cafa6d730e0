//! Message search on SQLite: the statements' text and their binding; the rules (which
//! fragments, the window, the cursor) are `store::search`'s.

use crate::domain::{AccountId, Channel, MessageId, MessageStatus, Timestamp};
use crate::store::StoreResult;
use crate::store::search::{
    MessageSearch, MessageSummary, SearchPage, SearchSql, SearchText, SummaryRow, page,
};
use sqlx::sqlite::{Sqlite, SqliteArguments, SqliteConnection, SqlitePool};

impl SearchSql for SqliteConnection {
    const TEXT: SearchText = SearchText {
        base: include_str!("queries/search_messages.sql"),
        phone_number: "AND phone_number = ?2\n",
        campaign_id: "AND campaign_id = ?4\n",
        created_from: "AND created_at >= ?6\n",
        created_to: "AND created_at < ?7\n",
        before: "AND (created_at < ?8 OR (created_at = ?8 AND message_id < ?9))\n",
        status: "AND status = ?3\n",
        channel: "AND channel = ?5\n",
        sender_id: "AND sender_id = ?10\n",
        order: "ORDER BY created_at DESC, message_id DESC ",
        // The limit has the highest number of a statement without the window, so every
        // lower one may be bound unused.
        limit: "LIMIT +?11",
        window: "LIMIT +?12",
        one_at: "LIMIT 1 OFFSET ?11",
    };

    async fn summaries(
        &mut self,
        sql: String,
        account_id: &AccountId,
        search: &MessageSearch,
        eleventh: i64,
        twelfth: Option<i64>,
    ) -> sqlx::Result<Vec<SummaryRow>> {
        bind(
            sqlx::query_as(sqlx::AssertSqlSafe(sql)),
            account_id,
            search,
            eleventh,
            twelfth,
        )
        .fetch_all(self)
        .await
    }
}

pub(in crate::store) async fn search_messages(
    pool: &SqlitePool,
    account_id: &AccountId,
    search: &MessageSearch,
) -> StoreResult<SearchPage> {
    // One read transaction: a short page's cursor comes from the snapshot its rows did.
    let mut tx = pool.begin().await?;
    let found = page(&mut *tx, account_id, search).await?;
    tx.commit().await?;
    Ok(found)
}

/// Binds ?1 to ?10 (the filters and the cursor), ?11, and ?12 when given (SQLite refuses
/// more parameters than the statement has).
fn bind<'q>(
    query: sqlx::query::QueryAs<'q, Sqlite, SummaryRow, SqliteArguments>,
    account_id: &'q AccountId,
    search: &'q MessageSearch,
    eleventh: i64,
    twelfth: Option<i64>,
) -> sqlx::query::QueryAs<'q, Sqlite, SummaryRow, SqliteArguments> {
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
    let row: Option<SummaryRow> = sqlx::query_as(include_str!("queries/load_message_summary.sql"))
        .bind(account_id.as_str())
        .bind(message_id.as_str())
        .fetch_optional(pool)
        .await?;
    row.map(MessageSummary::try_from).transpose()
}
