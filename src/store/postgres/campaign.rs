//! Campaign writes on PostgreSQL: staging a list, finishing it, the fan-out step, state
//! changes and templates. What SQLite's single writer gave for free is a lock here: the
//! fan-out step locks its campaign row before it looks at the checkpoint (a step in another
//! worker process waits and starts from the checkpoint this one moved; a pause or cancel
//! waits for the step), and its account row, as every accept does, before it commits to
//! what the money covers.

use super::PgStore;
use crate::domain::{
    AccountId, CampaignId, CampaignStatus, Channel, IdBlock, PauseReason, Priority, Timestamp,
};
use crate::store::accept::{AccountFigures, Batch};
use crate::store::campaigns::{Settle, canceled_unsent, step_end};
use crate::store::receive::InboundSql;
use crate::store::{
    AcceptOutcome, FanOutRequest, FanOutResult, FinishCampaign, HELD, NewCampaign, Rejection,
    StagedRecipient, StoreError, StoreResult,
};
use sqlx::postgres::PgConnection;
use sqlx::{Connection, Row};
use std::time::Duration;

fn limit(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl PgStore {
    pub(in crate::store) async fn insert_campaign(&self, c: &NewCampaign) -> StoreResult<()> {
        sqlx::query(include_str!("queries/insert_campaign.sql"))
            .bind(c.campaign_id.as_str())
            .bind(c.account_id.as_str())
            .bind(&c.name)
            .bind(&c.template)
            .bind(c.channel.as_str())
            .bind(c.priority.rank())
            .bind(c.sender_id.as_deref())
            .bind(c.scheduled_at.millis())
            .bind(Timestamp::now().millis())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Adds a chunk of the list, and marks the campaign as still loading, in one transaction.
    pub(in crate::store) async fn stage_recipients(
        &self,
        campaign_id: &CampaignId,
        recipients: &[StagedRecipient],
        rejections: &[Rejection],
    ) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(include_str!("queries/stage_recipients.sql"))
            .bind(campaign_id.as_str())
            .bind(recipients.iter().map(|r| r.seq).collect::<Vec<_>>())
            .bind(
                recipients
                    .iter()
                    .map(|r| r.phone_number.as_str())
                    .collect::<Vec<_>>(),
            )
            .bind(
                recipients
                    .iter()
                    .map(|r| r.body.as_str())
                    .collect::<Vec<_>>(),
            )
            .bind(
                recipients
                    .iter()
                    .map(|r| i64::from(r.segments))
                    .collect::<Vec<_>>(),
            )
            .bind(
                recipients
                    .iter()
                    .map(|r| r.cost.units())
                    .collect::<Vec<_>>(),
            )
            .execute(&mut *tx)
            .await?;
        if !rejections.is_empty() {
            sqlx::query(include_str!("queries/stage_rejections.sql"))
                .bind(campaign_id.as_str())
                .bind(rejections.iter().map(|r| r.seq).collect::<Vec<_>>())
                .bind(
                    rejections
                        .iter()
                        .map(|r| r.phone_number.as_str())
                        .collect::<Vec<_>>(),
                )
                .bind(
                    rejections
                        .iter()
                        .map(|r| r.code.as_str())
                        .collect::<Vec<_>>(),
                )
                .bind(
                    rejections
                        .iter()
                        .map(|r| r.error.as_str())
                        .collect::<Vec<_>>(),
                )
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query(include_str!("queries/touch_loading_campaign.sql"))
            .bind(campaign_id.as_str())
            .bind(Timestamp::now().millis())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Deletes a campaign that never finished loading, with what was staged for it.
    pub(in crate::store) async fn discard_campaign(
        &self,
        campaign_id: &CampaignId,
    ) -> StoreResult<u64> {
        let mut tx = self.pool.begin().await?;
        let mut deleted = 0;
        for sql in [
            include_str!("queries/discard_campaign_recipients.sql"),
            include_str!("queries/discard_campaign_rejections.sql"),
            include_str!("queries/discard_campaign.sql"),
        ] {
            deleted = sqlx::query(sql)
                .bind(campaign_id.as_str())
                .execute(&mut *tx)
                .await?
                .rows_affected();
        }
        tx.commit().await?;
        Ok(deleted)
    }

    pub(in crate::store) async fn discard_stale_campaigns(
        &self,
        age: Duration,
    ) -> StoreResult<u64> {
        let stale: Vec<String> =
            sqlx::query_scalar(include_str!("queries/stale_loading_campaigns.sql"))
                .bind(Timestamp::now().minus(age).millis())
                .fetch_all(&self.pool)
                .await?;
        let mut discarded = 0;
        for id in stale {
            discarded += self.discard_campaign(&CampaignId::from_stored(id)).await?;
        }
        Ok(discarded)
    }

    /// Moves a campaign to `to` if the lifecycle allows it from where it is; the count of
    /// campaigns moved (0 or 1).
    pub(in crate::store) async fn set_campaign_status(
        &self,
        campaign_id: &CampaignId,
        account_id: &AccountId,
        to: CampaignStatus,
        reason: Option<PauseReason>,
    ) -> StoreResult<u64> {
        let from: Vec<&str> = CampaignStatus::predecessors(to)
            .iter()
            .map(|s| s.as_str())
            .collect();
        Ok(sqlx::query(include_str!("queries/set_campaign_status.sql"))
            .bind(campaign_id.as_str())
            .bind(account_id.as_str())
            .bind(to.as_str())
            .bind(reason.map(PauseReason::as_str))
            .bind(from)
            .bind(Timestamp::now().millis())
            .execute(&self.pool)
            .await?
            .rows_affected())
    }

    pub(in crate::store) async fn start_due_campaigns(&self) -> StoreResult<u64> {
        Ok(sqlx::query(include_str!("queries/start_due_campaigns.sql"))
            .bind(Timestamp::now().millis())
            .execute(&self.pool)
            .await?
            .rows_affected())
    }

    pub(in crate::store) async fn complete_campaign(
        &self,
        campaign_id: &CampaignId,
    ) -> StoreResult<u64> {
        Ok(sqlx::query(include_str!("queries/complete_campaign.sql"))
            .bind(campaign_id.as_str())
            .bind(Timestamp::now().millis())
            .execute(&self.pool)
            .await?
            .rows_affected())
    }

    /// One chunk of up to `chunk` messages held, released or canceled; how many.
    pub(in crate::store) async fn settle_chunk(
        &self,
        campaign_id: &CampaignId,
        how: Settle,
        chunk: usize,
    ) -> StoreResult<u64> {
        let now = Timestamp::now();
        match how {
            Settle::Park => Ok(
                sqlx::query(include_str!("queries/park_campaign_messages.sql"))
                    .bind(campaign_id.as_str())
                    .bind(HELD)
                    .bind(limit(chunk))
                    .execute(&self.pool)
                    .await?
                    .rows_affected(),
            ),
            Settle::Unpark => Ok(
                sqlx::query(include_str!("queries/unpark_campaign_messages.sql"))
                    .bind(campaign_id.as_str())
                    .bind(HELD)
                    .bind(now.millis())
                    .bind(limit(chunk))
                    .execute(&self.pool)
                    .await?
                    .rows_affected(),
            ),
            Settle::Cancel => {
                self.write(|conn| {
                    let campaign_id = campaign_id.clone();
                    Box::pin(
                        async move { Ok(cancel_queued(conn, &campaign_id, chunk, now).await?) },
                    )
                })
                .await
            }
        }
    }

    pub(in crate::store) async fn upsert_template(
        &self,
        account_id: &AccountId,
        name: &str,
        body: &str,
    ) -> StoreResult<()> {
        sqlx::query(include_str!("queries/upsert_template.sql"))
            .bind(account_id.as_str())
            .bind(name)
            .bind(body)
            .bind(Timestamp::now().millis())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Makes a loaded campaign visible, unless its idempotency key was answered already. The
    /// account row is locked first, as in every accept, so two processes finishing campaigns
    /// under the same key cannot both find it free.
    pub(in crate::store) async fn finish_campaign(
        &self,
        finish: FinishCampaign,
    ) -> StoreResult<AcceptOutcome> {
        self.write(|conn| {
            let f = finish.clone();
            Box::pin(async move {
                conn.lock_account(f.account_id.as_str()).await?;
                let mut batch = Batch::default();
                let now = Timestamp::now();
                if let Some(record) = &f.idempotency
                    && let Some(earlier) = batch
                        .earlier_answer(&mut *conn, &f.account_id, record, now)
                        .await?
                {
                    return Ok(earlier);
                }
                let t = &f.totals;
                sqlx::query(include_str!("queries/finish_campaign.sql"))
                    .bind(f.campaign_id.as_str())
                    .bind(f.status.as_str())
                    .bind(t.recipients_total)
                    .bind(t.recipients_accepted)
                    .bind(t.rejected)
                    .bind(t.opted_out)
                    .bind(t.estimated_cost.units())
                    .bind(t.estimated_segments)
                    .bind(t.last_seq)
                    .bind(now.millis())
                    .execute(&mut *conn)
                    .await?;
                if let Some(record) = f.idempotency {
                    batch.remember(f.account_id, record, f.response.clone(), now);
                }
                batch.flush(&mut *conn).await?;
                Ok(AcceptOutcome::Done(f.response))
            })
        })
        .await
    }

    /// One fan-out step (the rules and the plan are SQLite's: `sqlite/campaign.rs`; the
    /// messages and their first history rows are one statement here), in a transaction
    /// that holds the campaign row throughout and the account row at its end.
    pub(in crate::store) async fn fan_out(
        &self,
        request: FanOutRequest,
    ) -> StoreResult<FanOutResult> {
        self.write(|conn| {
            let request = request.clone();
            Box::pin(async move { fan_out(conn, request).await })
        })
        .await
    }
}

/// What one fan-out step expands, as planned for an account's figures.
struct Step {
    /// The last recipient (seq) the step is done with.
    reached: i64,
    messages: i64,
    cost: i64,
    /// The first recipient the figures could not pay for, if one was.
    first_refused: Option<i64>,
    paused: Option<PauseReason>,
}

impl Step {
    /// Whether the plan made with `planned` is still the plan under `locked`, the figures
    /// read with the account row locked: what it expanded is paid for, and a step that
    /// stopped at the money stopped where the locked figures would stop it.
    fn holds(&self, planned: (i64, i64), locked: (i64, i64)) -> bool {
        self.cost <= locked.0
            && self.messages <= locked.1
            && (self.first_refused.is_none() || planned == locked)
    }
}

/// The campaign's settings a fan-out step copies into every message.
struct Expansion<'a> {
    campaign_id: &'a CampaignId,
    account_id: &'a AccountId,
    channel: Channel,
    priority: Priority,
    sender_id: Option<String>,
    checkpoint: i64,
    limit: i64,
    validity: Duration,
}

/// Plans the step for `(available, daily_left)` and inserts its messages with the first
/// row of their histories; `None` when no recipient is left.
async fn expand(
    conn: &mut PgConnection,
    e: &Expansion<'_>,
    (available, daily_left): (i64, i64),
    now: Timestamp,
) -> StoreResult<Option<Step>> {
    let plan = sqlx::query(include_str!("queries/fanout_window.sql"))
        .bind(e.campaign_id.as_str())
        .bind(e.account_id.as_str())
        .bind(e.checkpoint)
        .bind(e.limit)
        .bind(available)
        .bind(daily_left)
        .fetch_one(&mut *conn)
        .await?;
    let Some(window_end) = plan.try_get::<Option<i64>, _>("window_end")? else {
        return Ok(None);
    };
    let first_refused: Option<i64> = plan.try_get("first_refused")?;
    let messages: i64 = plan.try_get("messages")?;
    let (reached, paused) = step_end(window_end, first_refused, messages, daily_left);
    let step = Step {
        reached,
        messages,
        cost: plan.try_get("cost")?,
        first_refused,
        paused,
    };
    if step.messages > 0 {
        let block = IdBlock::new();
        sqlx::query(include_str!("queries/fanout_insert.sql"))
            .bind(e.campaign_id.as_str())
            .bind(e.checkpoint)
            .bind(step.reached)
            .bind(e.account_id.as_str())
            .bind(block.prefix())
            .bind(e.channel.as_str())
            .bind(e.sender_id.as_deref())
            .bind(e.priority.rank())
            .bind(now.millis())
            .bind(now.plus(e.validity).millis())
            .bind(block.start())
            .bind(IdBlock::ALPHABET)
            .execute(&mut *conn)
            .await?;
    }
    Ok(Some(step))
}

/// One fan-out step. The account row is locked only at the end, for as long as the commit
/// takes: expanding 2,000 recipients takes about 200 ms here, and a single send to the same
/// account waited that long behind the lock when the step took it first (campaigns'
/// `urgent_single_sends_during_a_100k_campaign…` on PostgreSQL). The plan is made on the
/// figures read unlocked, inside a savepoint; if the locked figures no longer give the same
/// plan (another request spent the money meanwhile), the savepoint is rolled back and the
/// step planned again under the lock.
async fn fan_out(conn: &mut PgConnection, request: FanOutRequest) -> StoreResult<FanOutResult> {
    let now = Timestamp::now();
    let campaign_id = &request.campaign_id;
    let Some(row) = sqlx::query(include_str!("queries/load_campaign_for_fanout.sql"))
        .bind(campaign_id.as_str())
        .fetch_optional(&mut *conn)
        .await?
    else {
        return Ok(FanOutResult::default());
    };
    let status: String = row.try_get("status")?;
    let checkpoint: i64 = row.try_get("fanned_out")?;
    let last_seq: i64 = row.try_get("last_seq")?;
    if status != CampaignStatus::Running.as_str() || checkpoint >= last_seq {
        return Ok(FanOutResult {
            done: checkpoint >= last_seq,
            ..FanOutResult::default()
        });
    }
    let account_id = AccountId::from_stored(row.try_get("account_id")?);
    let expansion = Expansion {
        campaign_id,
        account_id: &account_id,
        channel: Channel::parse(&row.try_get::<String, _>("channel")?).unwrap_or(Channel::Sms),
        priority: Priority::from_rank(row.try_get("priority")?).unwrap_or(Priority::Normal),
        sender_id: row.try_get("sender_id")?,
        checkpoint,
        limit: limit(request.limit),
        validity: request.validity,
    };

    let unlocked: AccountFigures = sqlx::query_as(include_str!("queries/account_figures.sql"))
        .bind(account_id.as_str())
        .bind(now.day())
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| StoreError::NoSuchAccount(account_id.to_string()))?;
    let planned = unlocked.headroom();
    let mut savepoint = conn.begin().await?;
    let Some(step) = expand(&mut savepoint, &expansion, planned, now).await? else {
        return Ok(FanOutResult::default());
    };
    let mut accepts = Batch::default();
    let locked = accepts.headroom(&mut *savepoint, &account_id).await?;
    let step = if step.holds(planned, locked) {
        savepoint.commit().await?;
        step
    } else {
        savepoint.rollback().await?;
        accepts = Batch::default();
        let locked = accepts.headroom(&mut *conn, &account_id).await?;
        match expand(conn, &expansion, locked, now).await? {
            Some(step) => step,
            None => return Ok(FanOutResult::default()),
        }
    };
    if step.messages > 0 {
        accepts.reserve_elsewhere(&account_id, step.cost, step.messages);
    }
    let skipped = sqlx::query(include_str!("queries/fanout_skip_opted_out.sql"))
        .bind(campaign_id.as_str())
        .bind(checkpoint)
        .bind(step.reached)
        .bind(account_id.as_str())
        .execute(&mut *conn)
        .await?
        .rows_affected();
    sqlx::query(include_str!("queries/advance_fanout.sql"))
        .bind(campaign_id.as_str())
        .bind(step.reached)
        .bind(i64::try_from(skipped).unwrap_or(0))
        .bind(step.paused.map(PauseReason::as_str))
        .bind(now.millis())
        .execute(&mut *conn)
        .await?;
    accepts.flush(&mut *conn).await?;
    Ok(FanOutResult {
        messages: usize::try_from(step.messages).unwrap_or(0),
        opted_out: usize::try_from(skipped).unwrap_or(0),
        done: step.reached >= last_seq,
        paused: step.paused,
    })
}

/// Cancels a chunk of a canceled campaign's unsent messages and gives their reservations
/// back, accounts in one order.
async fn cancel_queued(
    conn: &mut PgConnection,
    campaign_id: &CampaignId,
    chunk: usize,
    now: Timestamp,
) -> sqlx::Result<u64> {
    let canceled: Vec<(String, String, i64)> =
        sqlx::query_as(include_str!("queries/cancel_campaign_messages.sql"))
            .bind(campaign_id.as_str())
            .bind(now.millis())
            .bind(limit(chunk))
            .bind(HELD)
            .fetch_all(&mut *conn)
            .await?;
    canceled_unsent(conn, &canceled, now).await?;
    Ok(canceled.len() as u64)
}
