//! Inbound messages and threads on SQLite: the statements of `store::receive`'s rules, run in
//! the writer's transaction (all the inbound requests of a batch together, in a savepoint with
//! the accepts of their STOP and HELP answers), and the reads on the read pool.

use crate::domain::{AccountId, Channel, ThreadId, Timestamp};
use crate::store::accept::Batch;
use crate::store::inbound::{
    CampaignReply, InboundOutcome, KeywordReplies, NewInbound, ThreadMessage, ThreadSummary,
};
use crate::store::receive::{
    self, CampaignReplyRow, InboundSql, LastOutbound, StoredInbound, ThreadKey, ThreadMessageRow,
    ThreadRow, cursor_binds,
};
use crate::store::{StoreError, StoreResult, WriteRefusal};
use sqlx::Connection as _;
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

    async fn last_outbound(&mut self, lookups: String) -> sqlx::Result<Vec<LastOutbound>> {
        sqlx::query_as(include_str!("queries/last_outbound.sql"))
            .bind(lookups)
            .fetch_all(self)
            .await
    }

    async fn find_account(&mut self, name_or_id: &str) -> sqlx::Result<Option<String>> {
        sqlx::query_scalar(include_str!("queries/find_account_by_name.sql"))
            .bind(name_or_id)
            .fetch_optional(self)
            .await
    }

    async fn insert_inbound(&mut self, rows: String) -> sqlx::Result<Vec<String>> {
        sqlx::query_scalar(include_str!("queries/insert_inbound.sql"))
            .bind(rows)
            .fetch_all(self)
            .await
    }

    async fn upsert_threads(&mut self, counts: String) -> sqlx::Result<Vec<ThreadKey>> {
        sqlx::query_as(include_str!("queries/upsert_threads.sql"))
            .bind(counts)
            .fetch_all(self)
            .await
    }

    async fn attach_threads(&mut self, attachments: String) -> sqlx::Result<()> {
        sqlx::query(include_str!("queries/attach_threads.sql"))
            .bind(attachments)
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

/// Stores the inbound messages of every request in a writer's batch: all of them together,
/// in a savepoint (a few statements for the lot); should that fail, each request in a
/// savepoint of its own, so that a bad request fails only itself and writes nothing. Runs
/// before the batch's other operations, with accepts of its own (the answers keywords queue)
/// flushed inside the savepoint: what a rolled-back attempt offered goes with it, and the
/// batch's own accepts then load the account's figures with these answers already counted.
/// Answers one result per request; fails only when the database refuses writes, which fails
/// the whole transaction.
pub(super) async fn record_requests(
    conn: &mut SqliteConnection,
    requests: Vec<Vec<NewInbound>>,
) -> sqlx::Result<Vec<StoreResult<Vec<InboundOutcome>>>> {
    let sizes: Vec<usize> = requests.iter().map(Vec::len).collect();
    let together = match requests.as_slice() {
        [_] => None,
        _ => Some(record_in_savepoint(conn, requests.iter().flatten().cloned().collect()).await),
    };
    match together {
        Some(Ok(mut outcomes)) => Ok(sizes
            .into_iter()
            .map(|size| {
                let rest = outcomes.split_off(size.min(outcomes.len()));
                Ok(std::mem::replace(&mut outcomes, rest))
            })
            .collect()),
        Some(Err(StoreError::Database(e))) if WriteRefusal::of(&e).is_some() => Err(e),
        Some(Err(_)) | None => {
            let mut results = Vec::with_capacity(requests.len());
            for request in requests {
                match record_in_savepoint(conn, request).await {
                    Err(StoreError::Database(e)) if WriteRefusal::of(&e).is_some() => {
                        return Err(e);
                    }
                    result => results.push(result),
                }
            }
            Ok(results)
        }
    }
}

/// `store::receive`'s rules for `messages` in a savepoint, released if they all succeed and
/// rolled back otherwise.
async fn record_in_savepoint(
    conn: &mut SqliteConnection,
    messages: Vec<NewInbound>,
) -> StoreResult<Vec<InboundOutcome>> {
    let mut savepoint = conn.begin().await?;
    let mut accepts = Batch::default();
    let result = async {
        let outcomes = receive::record_all(&mut *savepoint, &mut accepts, messages).await?;
        accepts.flush(&mut *savepoint).await?;
        Ok(outcomes)
    }
    .await;
    match result {
        Ok(outcomes) => {
            savepoint.commit().await?;
            Ok(outcomes)
        }
        Err(e) => {
            // A refusal may have rolled the whole transaction back already; the writer
            // recovers from that.
            let _ = savepoint.rollback().await;
            Err(e)
        }
    }
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
