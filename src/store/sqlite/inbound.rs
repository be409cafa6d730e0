//! Inbound messages and threads on SQLite: the statements of `store::receive`'s rules, run in
//! the writer's transaction (with the accepts of the same batch, so a STOP's confirmation is
//! queued with it), and the reads on the read pool.

use crate::domain::{AccountId, Channel, ThreadId, Timestamp};
use crate::store::StoreResult;
use crate::store::inbound::{
    CampaignReply, InboundOutcome, KeywordReplies, NewInbound, ThreadMessage, ThreadSummary,
};
use crate::store::receive::{
    CampaignReplyRow, InboundRow, InboundSql, LastOutbound, StoredInbound, ThreadMessageRow,
    ThreadRow, cursor_binds,
};
use sqlx::sqlite::{SqliteConnection, SqlitePool};

impl InboundSql for SqliteConnection {
    async fn find_inbound(
        &mut self,
        provider: &str,
        reference: &str,
    ) -> sqlx::Result<Option<StoredInbound>> {
        sqlx::query_as(include_str!("queries/find_inbound_by_ref.sql"))
            .bind(provider)
            .bind(reference)
            .fetch_optional(self)
            .await
    }

    async fn last_outbound_to(
        &mut self,
        phone_number: &str,
        channel: &str,
        account_id: Option<&str>,
    ) -> sqlx::Result<Option<LastOutbound>> {
        sqlx::query_as(include_str!("queries/last_outbound_to.sql"))
            .bind(phone_number)
            .bind(channel)
            .bind(account_id)
            .fetch_optional(self)
            .await
    }

    async fn find_account(&mut self, name_or_id: &str) -> sqlx::Result<Option<String>> {
        sqlx::query_scalar(include_str!("queries/find_account_by_name.sql"))
            .bind(name_or_id)
            .fetch_optional(self)
            .await
    }

    async fn insert_inbound(&mut self, row: &InboundRow<'_>) -> sqlx::Result<bool> {
        let inserted = sqlx::query(include_str!("queries/insert_inbound.sql"))
            .bind(row.message_id)
            .bind(row.account_id)
            .bind(row.channel)
            .bind(row.provider)
            .bind(row.provider_message_id)
            .bind(row.from)
            .bind(row.to)
            .bind(row.body)
            .bind(row.media_urls.as_deref())
            .bind(row.keyword)
            .bind(row.in_reply_to)
            .bind(row.campaign_id)
            .bind(row.received_at)
            .execute(self)
            .await?;
        Ok(inserted.rows_affected() > 0)
    }

    async fn upsert_thread(
        &mut self,
        thread_id: &str,
        account_id: &str,
        row: &InboundRow<'_>,
    ) -> sqlx::Result<String> {
        sqlx::query_scalar(include_str!("queries/upsert_thread.sql"))
            .bind(thread_id)
            .bind(account_id)
            .bind(row.channel)
            .bind(row.from)
            .bind(row.body)
            .bind(row.received_at)
            .fetch_one(self)
            .await
    }

    async fn attach_thread(&mut self, message_id: &str, thread_id: &str) -> sqlx::Result<()> {
        sqlx::query(include_str!("queries/attach_thread.sql"))
            .bind(message_id)
            .bind(thread_id)
            .execute(self)
            .await?;
        Ok(())
    }

    /// Nothing to lock: the writer runs one transaction at a time.
    async fn lock_account(&mut self, _account_id: &str) -> sqlx::Result<()> {
        Ok(())
    }

    async fn insert_opt_out(
        &mut self,
        account_id: &str,
        phone_number: &str,
        source: &str,
        at: i64,
    ) -> sqlx::Result<u64> {
        Ok(sqlx::query(include_str!("queries/insert_opt_out.sql"))
            .bind(account_id)
            .bind(phone_number)
            .bind(source)
            .bind(at)
            .execute(self)
            .await?
            .rows_affected())
    }

    async fn delete_opt_out(&mut self, account_id: &str, phone_number: &str) -> sqlx::Result<u64> {
        Ok(sqlx::query(include_str!("queries/delete_opt_out.sql"))
            .bind(account_id)
            .bind(phone_number)
            .execute(self)
            .await?
            .rows_affected())
    }

    async fn keyword_replies(&mut self, account_id: &str) -> sqlx::Result<Option<KeywordReplies>> {
        sqlx::query_as(include_str!("queries/load_keyword_replies.sql"))
            .bind(account_id)
            .fetch_optional(self)
            .await
    }

    async fn mark_inbound_read(
        &mut self,
        account_id: &str,
        ids: String,
        at: i64,
    ) -> sqlx::Result<Vec<Option<String>>> {
        sqlx::query_scalar(include_str!("queries/mark_inbound_read.sql"))
            .bind(account_id)
            .bind(ids)
            .bind(at)
            .fetch_all(self)
            .await
    }

    async fn lower_unread(&mut self, thread_id: &str, count: i64) -> sqlx::Result<()> {
        sqlx::query(include_str!("queries/lower_unread.sql"))
            .bind(thread_id)
            .bind(count)
            .execute(self)
            .await?;
        Ok(())
    }
}

/// Stores one inbound message (once), in its thread, with its keyword's effect.
pub(super) async fn record(
    conn: &mut SqliteConnection,
    accepts: &mut crate::store::accept::Batch,
    inbound: NewInbound,
) -> StoreResult<InboundOutcome> {
    crate::store::receive::record(conn, accepts, inbound).await
}

/// Marks the account's unread messages among `ids` read and lowers their threads' counts.
pub(super) async fn mark_read(
    conn: &mut SqliteConnection,
    account_id: &AccountId,
    ids: &[String],
) -> StoreResult<u64> {
    crate::store::receive::mark_read(conn, account_id, ids).await
}

pub(in crate::store) async fn campaign_replies(
    pool: &SqlitePool,
    account_id: &AccountId,
    campaign_id: &str,
    after: Option<(Timestamp, String)>,
    limit: usize,
) -> StoreResult<Vec<CampaignReply>> {
    let (at, id) = cursor_binds(after);
    let rows: Vec<CampaignReplyRow> = sqlx::query_as(include_str!("queries/campaign_replies.sql"))
        .bind(campaign_id)
        .bind(account_id.as_str())
        .bind(at)
        .bind(id)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(pool)
        .await?;
    Ok(rows.into_iter().map(CampaignReply::from).collect())
}

pub(in crate::store) async fn keyword_replies(
    pool: &SqlitePool,
    account_id: &AccountId,
) -> StoreResult<KeywordReplies> {
    let replies: Option<KeywordReplies> =
        sqlx::query_as(include_str!("queries/load_keyword_replies.sql"))
            .bind(account_id.as_str())
            .fetch_optional(pool)
            .await?;
    Ok(replies.unwrap_or_default())
}

pub(in crate::store) async fn threads(
    pool: &SqlitePool,
    account_id: &AccountId,
    before: Option<(Timestamp, String)>,
    limit: usize,
) -> StoreResult<Vec<ThreadSummary>> {
    let (at, id) = cursor_binds(before);
    let rows: Vec<ThreadRow> = sqlx::query_as(include_str!("queries/list_threads.sql"))
        .bind(account_id.as_str())
        .bind(at)
        .bind(id)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(pool)
        .await?;
    Ok(rows.into_iter().map(ThreadSummary::from).collect())
}

pub(in crate::store) async fn last_inbound_at(
    pool: &SqlitePool,
    account_id: &AccountId,
    channel: Channel,
    phone_number: &str,
) -> StoreResult<Option<Timestamp>> {
    let at: Option<i64> = sqlx::query_scalar(include_str!("queries/last_inbound_at.sql"))
        .bind(account_id.as_str())
        .bind(channel.as_str())
        .bind(phone_number)
        .fetch_optional(pool)
        .await?;
    Ok(at.map(Timestamp::from_millis))
}

pub(in crate::store) async fn thread(
    pool: &SqlitePool,
    account_id: &AccountId,
    thread_id: &ThreadId,
) -> StoreResult<Option<ThreadSummary>> {
    let row: Option<ThreadRow> = sqlx::query_as(include_str!("queries/load_thread.sql"))
        .bind(account_id.as_str())
        .bind(thread_id.as_str())
        .fetch_optional(pool)
        .await?;
    Ok(row.map(ThreadSummary::from))
}

pub(in crate::store) async fn thread_messages(
    pool: &SqlitePool,
    account_id: &AccountId,
    thread: &ThreadSummary,
    after: Option<(Timestamp, String)>,
    limit: usize,
) -> StoreResult<Vec<ThreadMessage>> {
    let (at, id) = cursor_binds(after);
    let rows: Vec<ThreadMessageRow> = sqlx::query_as(include_str!("queries/thread_messages.sql"))
        .bind(thread.thread_id.as_str())
        .bind(&thread.phone_number)
        .bind(thread.channel.as_str())
        .bind(account_id.as_str())
        .bind(at)
        .bind(id)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(pool)
        .await?;
    Ok(rows.into_iter().map(ThreadMessage::from).collect())
}
