//! Inbound messages, threads, opt-outs and keyword answers on PostgreSQL: the statements of
//! `store::receive`'s rules, the inbound messages of one process stored together (one
//! transaction per waiting group, as accepts are), and the reads.
//!
//! Many API processes may receive the same message at once (a provider retrying while the
//! first delivery is still being stored): `insert_inbound.sql`'s `ON CONFLICT DO NOTHING` on
//! the unique index of the provider's id lets one copy in, and the other waits for it and
//! answers as a repeat. A keyword locks its account's row (`lock_account.sql`, as accepts do)
//! before the opt-out changes and before the accept rules decide its answer.

use super::{BATCH_MAX, Job, PgStore, Writer};
use crate::domain::{AccountId, Channel, ThreadId, Timestamp};
use crate::store::accept::Batch;
use crate::store::delivery::json_array;
use crate::store::inbound::{
    CampaignReply, InboundOutcome, KeywordReplies, NewInbound, ThreadMessage, ThreadSummary,
};
use crate::store::receive::{
    self, CampaignReplyRow, InboundSql, LastOutbound, StoredInbound, ThreadKey, ThreadMessageRow,
    ThreadRow, cursor_binds,
};
use crate::store::{OptOut, StoreError, StoreResult};
use sqlx::Row;
use sqlx::postgres::PgConnection;
use std::collections::HashSet;
use std::sync::OnceLock;
use tokio::sync::{mpsc, oneshot};

impl InboundSql for PgConnection {
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

    async fn lock_account(&mut self, account_id: &str) -> sqlx::Result<()> {
        sqlx::query(include_str!("queries/lock_account.sql"))
            .bind(json_array(&[account_id]))
            .fetch_all(self)
            .await?;
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

/// Inbound messages handed to this process, waiting to be stored; the task that stores them
/// starts with the first.
#[derive(Default)]
pub(super) struct Inbox {
    jobs: OnceLock<mpsc::Sender<Job<NewInbound, Vec<InboundOutcome>>>>,
}

impl PgStore {
    pub(in crate::store) async fn record_inbound(
        &self,
        batch: Vec<NewInbound>,
    ) -> StoreResult<Vec<InboundOutcome>> {
        let jobs = self.inbox.jobs.get_or_init(|| {
            let (jobs, waiting) = mpsc::channel(BATCH_MAX);
            tokio::spawn(self.writer().write_inbound(waiting));
            jobs
        });
        let (reply, answer) = oneshot::channel();
        jobs.send((batch, reply))
            .await
            .map_err(|_| StoreError::WriterGone)?;
        answer.await.map_err(|_| StoreError::WriterGone)?
    }

    pub(in crate::store) async fn mark_read(
        &self,
        account_id: &AccountId,
        ids: Vec<String>,
    ) -> StoreResult<u64> {
        self.write(|conn| {
            let (account_id, ids) = (account_id.clone(), ids.clone());
            Box::pin(async move { receive::mark_read(conn, &account_id, &ids).await })
        })
        .await
    }

    pub(in crate::store) async fn set_keyword_replies(
        &self,
        account_id: &AccountId,
        replies: &KeywordReplies,
    ) -> StoreResult<u64> {
        let now = Timestamp::now();
        self.write(|conn| {
            let (account_id, replies) = (account_id.clone(), replies.clone());
            Box::pin(async move {
                Ok(sqlx::query(include_str!("queries/set_keyword_replies.sql"))
                    .bind(account_id.as_str())
                    .bind(replies.stop_reply.as_deref())
                    .bind(replies.help_reply.as_deref())
                    .bind(now.millis())
                    .execute(&mut *conn)
                    .await?
                    .rows_affected())
            })
        })
        .await
    }

    /// Opts a number out (the account locked first, as a STOP does); true if it was not
    /// already.
    pub(in crate::store) async fn add_opt_out(
        &self,
        account_id: &AccountId,
        phone_number: &str,
        source: &str,
    ) -> StoreResult<bool> {
        let now = Timestamp::now();
        self.write(|conn| {
            let (account_id, phone_number, source) = (
                account_id.clone(),
                phone_number.to_owned(),
                source.to_owned(),
            );
            Box::pin(async move {
                conn.lock_account(account_id.as_str()).await?;
                let written = conn
                    .insert_opt_out(account_id.as_str(), &phone_number, &source, now.millis())
                    .await?;
                Ok(written > 0)
            })
        })
        .await
    }

    /// Opts a number back in (the account locked first, as a START does); true if it was
    /// opted out.
    pub(in crate::store) async fn remove_opt_out(
        &self,
        account_id: &AccountId,
        phone_number: &str,
    ) -> StoreResult<bool> {
        self.write(|conn| {
            let (account_id, phone_number) = (account_id.clone(), phone_number.to_owned());
            Box::pin(async move {
                conn.lock_account(account_id.as_str()).await?;
                let removed = conn
                    .delete_opt_out(account_id.as_str(), &phone_number)
                    .await?;
                Ok(removed > 0)
            })
        })
        .await
    }

    pub(in crate::store) async fn opt_outs(
        &self,
        account_id: &AccountId,
        after: &str,
        limit: usize,
    ) -> StoreResult<Vec<OptOut>> {
        let rows = sqlx::query(include_str!("queries/list_opt_outs.sql"))
            .bind(account_id.as_str())
            .bind(after)
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| {
                Ok(OptOut {
                    phone_number: row.try_get("phone_number")?,
                    source: row.try_get("source")?,
                    created_at: Timestamp::from_millis(row.try_get("created_at")?),
                })
            })
            .collect()
    }

    pub(in crate::store) async fn opt_out_set(
        &self,
        account_id: &AccountId,
    ) -> StoreResult<HashSet<String>> {
        let numbers: Vec<String> = sqlx::query_scalar(include_str!("queries/load_opt_outs.sql"))
            .bind(account_id.as_str())
            .fetch_all(&self.pool)
            .await?;
        Ok(numbers.into_iter().collect())
    }

    pub(in crate::store) async fn keyword_replies(
        &self,
        account_id: &AccountId,
    ) -> StoreResult<KeywordReplies> {
        let replies: Option<KeywordReplies> =
            sqlx::query_as(include_str!("queries/load_keyword_replies.sql"))
                .bind(account_id.as_str())
                .fetch_optional(&self.pool)
                .await?;
        Ok(replies.unwrap_or_default())
    }

    pub(in crate::store) async fn campaign_replies(
        &self,
        account_id: &AccountId,
        campaign_id: &str,
        after: Option<(Timestamp, String)>,
        limit: usize,
    ) -> StoreResult<Vec<CampaignReply>> {
        let (at, id) = cursor_binds(after);
        let rows: Vec<CampaignReplyRow> =
            sqlx::query_as(include_str!("queries/campaign_replies.sql"))
                .bind(campaign_id)
                .bind(account_id.as_str())
                .bind(at)
                .bind(id)
                .bind(i64::try_from(limit).unwrap_or(i64::MAX))
                .fetch_all(&self.pool)
                .await?;
        Ok(rows.into_iter().map(CampaignReply::from).collect())
    }

    pub(in crate::store) async fn threads(
        &self,
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
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.into_iter().map(ThreadSummary::from).collect())
    }

    pub(in crate::store) async fn thread(
        &self,
        account_id: &AccountId,
        thread_id: &ThreadId,
    ) -> StoreResult<Option<ThreadSummary>> {
        let row: Option<ThreadRow> = sqlx::query_as(include_str!("queries/load_thread.sql"))
            .bind(account_id.as_str())
            .bind(thread_id.as_str())
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(ThreadSummary::from))
    }

    pub(in crate::store) async fn thread_messages(
        &self,
        account_id: &AccountId,
        thread: &ThreadSummary,
        after: Option<(Timestamp, String)>,
        limit: usize,
    ) -> StoreResult<Vec<ThreadMessage>> {
        let (at, id) = cursor_binds(after);
        let rows: Vec<ThreadMessageRow> =
            sqlx::query_as(include_str!("queries/thread_messages.sql"))
                .bind(thread.thread_id.as_str())
                .bind(&thread.phone_number)
                .bind(thread.channel.as_str())
                .bind(account_id.as_str())
                .bind(at)
                .bind(id)
                .bind(i64::try_from(limit).unwrap_or(i64::MAX))
                .fetch_all(&self.pool)
                .await?;
        Ok(rows.into_iter().map(ThreadMessage::from).collect())
    }

    pub(in crate::store) async fn last_inbound_at(
        &self,
        account_id: &AccountId,
        channel: Channel,
        phone_number: &str,
    ) -> StoreResult<Option<Timestamp>> {
        let at: Option<i64> = sqlx::query_scalar(include_str!("queries/last_inbound_at.sql"))
            .bind(account_id.as_str())
            .bind(channel.as_str())
            .bind(phone_number)
            .fetch_optional(&self.pool)
            .await?;
        Ok(at.map(Timestamp::from_millis))
    }
}

impl Writer {
    /// Stores the inbound messages waiting together in one transaction (run again while
    /// PostgreSQL aborts it for contention), until the store closes. Should the group fail
    /// otherwise, each request is tried in a transaction of its own, so one bad request fails
    /// only itself.
    async fn write_inbound(self, mut jobs: mpsc::Receiver<Job<NewInbound, Vec<InboundOutcome>>>) {
        let mut waiting = Vec::with_capacity(BATCH_MAX);
        while jobs.recv_many(&mut waiting, BATCH_MAX).await > 0 {
            let (batches, replies): (Vec<_>, Vec<_>) = waiting.drain(..).unzip();
            let together = match batches.as_slice() {
                [_] => None,
                _ => Some(self.store_inbound(batches.concat()).await),
            };
            match together {
                Some(Ok(mut outcomes)) => {
                    for (batch, reply) in batches.iter().zip(replies) {
                        let rest = outcomes.split_off(batch.len().min(outcomes.len()));
                        let _ = reply.send(Ok(outcomes));
                        outcomes = rest;
                    }
                }
                Some(Err(_)) | None => {
                    for (batch, reply) in batches.into_iter().zip(replies) {
                        let _ = reply.send(self.store_inbound(batch).await);
                    }
                }
            }
        }
    }

    /// One transaction storing `messages` in order, with the answers their keywords queue.
    async fn store_inbound(&self, messages: Vec<NewInbound>) -> StoreResult<Vec<InboundOutcome>> {
        self.write(|conn| {
            let messages = messages.clone();
            Box::pin(async move {
                let mut accepts = Batch::default();
                let outcomes = receive::record_all(&mut *conn, &mut accepts, messages).await?;
                accepts.flush(&mut *conn).await?;
                Ok(outcomes)
            })
        })
        .await
    }
}
