//! The store's campaign, opt-out, template and statistics types.

use crate::domain::{
    AccountId, CampaignId, CampaignStatus, Channel, MessageStatus, Money, PauseReason, Priority,
    Timestamp,
};
use crate::store::delivery::{DeliverySql, status_events};
use crate::store::{IdempotencyRecord, StoredResponse};
use std::collections::BTreeMap;
use std::time::Duration;

/// `due_at` of a queued message whose campaign is paused: past every real time, so the
/// claim (which stops at `due_at <= now`) never reaches it until resume sets it back.
pub const HELD: i64 = i64::MAX;

/// A campaign as first written, in status `loading`, before its list streams in.
#[derive(Debug, Clone)]
pub struct NewCampaign {
    pub campaign_id: CampaignId,
    pub account_id: AccountId,
    pub name: String,
    pub template: String,
    pub channel: Channel,
    pub priority: Priority,
    pub sender_id: Option<String>,
    pub scheduled_at: Timestamp,
}

/// One validated recipient, rendered and priced.
#[derive(Debug, Clone)]
pub struct StagedRecipient {
    /// Position in the input, from 0.
    pub seq: i64,
    pub phone_number: String,
    pub body: String,
    pub segments: u32,
    pub cost: Money,
}

/// One input row that will not be messaged.
#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow)]
pub struct Rejection {
    #[serde(skip)]
    pub seq: i64,
    pub phone_number: String,
    pub code: String,
    pub error: String,
}

/// What validation found in the whole list.
#[derive(Debug, Clone, Default)]
pub struct CampaignTotals {
    pub recipients_total: i64,
    pub recipients_accepted: i64,
    pub rejected: i64,
    pub opted_out: i64,
    pub estimated_cost: Money,
    pub estimated_segments: i64,
    /// The highest `seq` staged (-1 when none).
    pub last_seq: i64,
}

/// Makes a loaded campaign visible and startable, answering an idempotent request.
#[derive(Debug, Clone)]
pub struct FinishCampaign {
    pub campaign_id: CampaignId,
    pub account_id: AccountId,
    pub totals: CampaignTotals,
    pub status: CampaignStatus,
    pub idempotency: Option<IdempotencyRecord>,
    pub response: StoredResponse,
}

/// One step of a campaign's fan-out.
#[derive(Debug, Clone)]
pub struct FanOutRequest {
    pub campaign_id: CampaignId,
    pub limit: usize,
    /// Validity period of the messages created.
    pub validity: Duration,
}

/// Where a fan-out step ends, from its plan: everything before the first recipient the
/// money or the daily limit could not cover (`first_refused`) is done, and that recipient
/// pauses the campaign for whichever of the two ran out.
pub(crate) fn step_end(
    window_end: i64,
    first_refused: Option<i64>,
    messages: i64,
    daily_left: i64,
) -> (i64, Option<PauseReason>) {
    let reached = first_refused.map_or(window_end, |seq| seq - 1);
    let paused = first_refused.map(|_| {
        if messages >= daily_left {
            PauseReason::DailyLimitExceeded
        } else {
            PauseReason::InsufficientBalance
        }
    });
    (reached, paused)
}

/// A canceled campaign's unsent messages, just canceled (message_id, account_id, cost): their
/// `canceled` history and events, and their reservations given back, accounts in one order
/// (so two cancels never wait for each other's accounts).
pub(crate) async fn canceled_unsent(
    conn: &mut impl DeliverySql,
    canceled: &[(String, String, i64)],
    now: Timestamp,
) -> sqlx::Result<()> {
    if canceled.is_empty() {
        return Ok(());
    }
    let events = status_events(
        canceled
            .iter()
            .map(|(id, account, _)| (id.as_str(), account.as_str(), now.millis())),
    );
    conn.insert_status_events(events, MessageStatus::Canceled.as_str())
        .await?;
    let mut released: BTreeMap<&str, i64> = BTreeMap::new();
    for (_, account, cost) in canceled {
        *released.entry(account.as_str()).or_default() += cost;
    }
    for (account, amount) in released {
        conn.release_reservation(account, amount, now.millis())
            .await?;
    }
    Ok(())
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FanOutResult {
    /// Messages created in this step.
    pub messages: usize,
    /// Recipients skipped because they opted out.
    pub opted_out: usize,
    /// Every recipient has been expanded.
    pub done: bool,
    /// The step stopped the campaign (money or daily limit ran out).
    pub paused: Option<PauseReason>,
}

/// Changes to a campaign's state requested through the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CampaignCommand {
    Pause,
    Resume,
    Cancel,
}

/// A campaign the workers have work for.
#[derive(Debug, Clone)]
pub struct ActiveCampaign {
    pub campaign_id: CampaignId,
    pub status: CampaignStatus,
    pub scheduled_at: Timestamp,
    pub fanned_out: i64,
    pub last_seq: i64,
}

/// A campaign as the API shows it.
#[derive(Debug, Clone)]
pub struct CampaignView {
    pub campaign_id: CampaignId,
    pub name: String,
    pub status: CampaignStatus,
    pub pause_reason: Option<PauseReason>,
    pub template: String,
    pub channel: Channel,
    pub priority: Priority,
    pub sender_id: Option<String>,
    pub scheduled_at: Timestamp,
    pub created_at: Timestamp,
    pub started_at: Option<Timestamp>,
    pub finished_at: Option<Timestamp>,
    pub totals: CampaignTotals,
    /// Recipients the fan-out skipped because they opted out after loading.
    pub skipped: i64,
    /// Inbound messages answering one of its messages.
    pub replies: i64,
}

/// A campaign's messages by current status, with their cost.
#[derive(Debug, Clone, Default)]
pub struct CampaignCounts {
    pub by_status: Vec<(MessageStatus, i64, Money)>,
}

impl CampaignCounts {
    pub fn count(&self, status: MessageStatus) -> i64 {
        self.by_status
            .iter()
            .filter(|(s, _, _)| *s == status)
            .map(|(_, n, _)| n)
            .sum()
    }

    pub fn total(&self) -> i64 {
        self.by_status.iter().map(|(_, n, _)| n).sum()
    }

    /// What the provider was paid for: messages that were handed over.
    pub fn cost_so_far(&self) -> Money {
        Money::from_units(
            self.by_status
                .iter()
                .filter(|(s, _, _)| s.was_handed_over())
                .map(|(_, _, c)| c.units())
                .sum(),
        )
    }
}

#[derive(Debug, Clone)]
pub struct OptOut {
    pub phone_number: String,
    pub source: String,
    pub created_at: Timestamp,
}

#[derive(Debug, Clone)]
pub struct StoredTemplate {
    pub name: String,
    pub body: String,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// Messages created on one UTC day, on one channel, now in one status.
#[derive(Debug, Clone)]
pub struct StatsRow {
    pub day: String,
    pub channel: Channel,
    pub status: MessageStatus,
    pub count: i64,
    /// Cost of those of them that were handed over (and so charged).
    pub cost: Money,
}

use super::sqlite::campaign::CampaignWrite;
use super::sqlite::campaign_reads as reads;
use super::{AcceptOutcome, Backend, Store, StoreResult};
use crate::domain::CampaignId as Id;
use std::collections::HashSet;

/// Rows per step when a campaign's queued messages are held, released or canceled: small
/// enough that single sends committed in between never wait long.
const CHUNK: usize = 5_000;

/// How a campaign's unsent messages are brought in line with its state.
#[derive(Debug, Clone, Copy)]
pub(in crate::store) enum Settle {
    /// Held while paused.
    Park,
    /// Due again once running.
    Unpark,
    /// Canceled and refunded once canceled.
    Cancel,
}

impl Store {
    /// Writes a new campaign in status `loading`.
    pub async fn insert_campaign(&self, campaign: NewCampaign) -> StoreResult<()> {
        match &self.backend {
            Backend::Sqlite(s) => s
                .campaign_write(CampaignWrite::Insert(campaign))
                .await
                .map(drop),
            Backend::Postgres(p) => p.insert_campaign(&campaign).await,
        }
    }

    /// Adds validated recipients and rejected rows to a loading campaign.
    pub async fn stage_recipients(
        &self,
        campaign_id: &Id,
        recipients: Vec<StagedRecipient>,
        rejections: Vec<Rejection>,
    ) -> StoreResult<()> {
        match &self.backend {
            Backend::Sqlite(s) => s
                .campaign_write(CampaignWrite::Stage {
                    campaign_id: campaign_id.clone(),
                    recipients,
                    rejections,
                })
                .await
                .map(drop),
            Backend::Postgres(p) => {
                p.stage_recipients(campaign_id, &recipients, &rejections)
                    .await
            }
        }
    }

    /// Deletes a campaign that never finished loading, with what was staged for it.
    pub async fn discard_campaign(&self, campaign_id: &Id) -> StoreResult<()> {
        match &self.backend {
            Backend::Sqlite(s) => s
                .campaign_write(CampaignWrite::Discard(campaign_id.clone()))
                .await
                .map(drop),
            Backend::Postgres(p) => p.discard_campaign(campaign_id).await.map(drop),
        }
    }

    /// Discards campaigns whose loading stopped more than `age` ago (the process died).
    pub async fn discard_stale_campaigns(&self, age: Duration) -> StoreResult<u64> {
        match &self.backend {
            Backend::Sqlite(s) => s.campaign_write(CampaignWrite::DiscardStale(age)).await,
            Backend::Postgres(p) => p.discard_stale_campaigns(age).await,
        }
    }

    /// Makes a loaded campaign visible and startable; replays or refuses a repeated
    /// idempotency key instead (the caller then discards the campaign it staged).
    pub async fn finish_campaign(&self, finish: FinishCampaign) -> StoreResult<AcceptOutcome> {
        let outcome = match &self.backend {
            Backend::Sqlite(s) => s.finish_campaign(finish).await?,
            Backend::Postgres(p) => p.finish_campaign(finish).await?,
        };
        self.ready.notify_waiters();
        Ok(outcome)
    }

    /// Expands the next recipients of a running campaign into messages.
    pub async fn fan_out(&self, request: FanOutRequest) -> StoreResult<FanOutResult> {
        let result = match &self.backend {
            Backend::Sqlite(s) => s.fan_out(request).await?,
            Backend::Postgres(p) => p.fan_out(request).await?,
        };
        if result.messages > 0 {
            self.ready.notify_waiters();
        }
        Ok(result)
    }

    /// Applies a pause, resume or cancel. Returns false when the campaign is not in a state
    /// the command applies to (or not the account's).
    pub async fn command_campaign(
        &self,
        account_id: &AccountId,
        campaign_id: &Id,
        command: CampaignCommand,
        resume_to: CampaignStatus,
    ) -> StoreResult<bool> {
        let (to, reason) = match command {
            CampaignCommand::Pause => (CampaignStatus::Paused, Some(PauseReason::Requested)),
            CampaignCommand::Resume => (resume_to, None),
            CampaignCommand::Cancel => (CampaignStatus::Canceled, None),
        };
        let changed = match &self.backend {
            Backend::Sqlite(s) => {
                s.campaign_write(CampaignWrite::SetStatus {
                    campaign_id: campaign_id.clone(),
                    account_id: account_id.clone(),
                    to,
                    reason,
                })
                .await?
            }
            Backend::Postgres(p) => {
                p.set_campaign_status(campaign_id, account_id, to, reason)
                    .await?
            }
        };
        Ok(changed > 0)
    }

    /// Brings a campaign's queued messages in line with its state, in chunks: held while
    /// paused, due again while running, canceled (and refunded) once canceled.
    pub async fn settle_campaign_messages(
        &self,
        campaign_id: &Id,
        status: CampaignStatus,
    ) -> StoreResult<u64> {
        let how = match status {
            CampaignStatus::Paused => Settle::Park,
            CampaignStatus::Running => Settle::Unpark,
            CampaignStatus::Canceled => Settle::Cancel,
            CampaignStatus::Scheduled | CampaignStatus::Completed => return Ok(0),
        };
        let mut total = 0;
        loop {
            let done = match &self.backend {
                Backend::Sqlite(s) => {
                    let id = campaign_id.clone();
                    s.campaign_write(match how {
                        Settle::Park => CampaignWrite::Park(id, CHUNK),
                        Settle::Unpark => CampaignWrite::Unpark(id, CHUNK),
                        Settle::Cancel => CampaignWrite::CancelQueued(id, CHUNK),
                    })
                    .await?
                }
                Backend::Postgres(p) => p.settle_chunk(campaign_id, how, CHUNK).await?,
            };
            total += done;
            if done < CHUNK as u64 {
                break;
            }
        }
        if status == CampaignStatus::Running && total > 0 {
            self.ready.notify_waiters();
        }
        Ok(total)
    }

    /// Starts scheduled campaigns whose time has come; returns how many.
    pub async fn start_due_campaigns(&self) -> StoreResult<u64> {
        match &self.backend {
            Backend::Sqlite(s) => s.campaign_write(CampaignWrite::StartDue).await,
            Backend::Postgres(p) => p.start_due_campaigns().await,
        }
    }

    /// Completes a running campaign with nothing left to send; true if it did.
    pub async fn complete_campaign(&self, campaign_id: &Id) -> StoreResult<bool> {
        let completed = match &self.backend {
            Backend::Sqlite(s) => {
                s.campaign_write(CampaignWrite::Complete(campaign_id.clone()))
                    .await?
            }
            Backend::Postgres(p) => p.complete_campaign(campaign_id).await?,
        };
        Ok(completed > 0)
    }

    pub async fn campaign(
        &self,
        account_id: &AccountId,
        campaign_id: &Id,
    ) -> StoreResult<Option<CampaignView>> {
        match &self.backend {
            Backend::Sqlite(s) => {
                let mut conn = s.reads().acquire().await?;
                reads::campaign(&mut conn, account_id, campaign_id).await
            }
            Backend::Postgres(p) => p.campaign(account_id, campaign_id).await,
        }
    }

    /// A campaign with its live counters, read from one snapshot, so the counters add up to
    /// what the campaign says it has.
    pub async fn campaign_with_counts(
        &self,
        account_id: &AccountId,
        campaign_id: &Id,
    ) -> StoreResult<Option<(CampaignView, CampaignCounts)>> {
        let s = match &self.backend {
            Backend::Sqlite(s) => s,
            Backend::Postgres(p) => return p.campaign_with_counts(account_id, campaign_id).await,
        };
        let mut tx = s.reads().begin().await?;
        let Some(view) = reads::campaign(&mut tx, account_id, campaign_id).await? else {
            return Ok(None);
        };
        let counts = reads::campaign_counts(&mut tx, campaign_id).await?;
        tx.commit().await?;
        Ok(Some((view, counts)))
    }

    /// The account's campaigns with their counters, newest first, created before `before`,
    /// all read from one snapshot.
    pub async fn campaigns_with_counts(
        &self,
        account_id: &AccountId,
        before: Option<&Id>,
        limit: usize,
    ) -> StoreResult<Vec<(CampaignView, CampaignCounts)>> {
        let s = match &self.backend {
            Backend::Sqlite(s) => s,
            Backend::Postgres(p) => {
                return p.campaigns_with_counts(account_id, before, limit).await;
            }
        };
        let mut tx = s.reads().begin().await?;
        let views = reads::campaigns(&mut tx, account_id, before, limit).await?;
        let mut listed = Vec::with_capacity(views.len());
        for view in views {
            let counts = reads::campaign_counts(&mut tx, &view.campaign_id).await?;
            listed.push((view, counts));
        }
        tx.commit().await?;
        Ok(listed)
    }

    /// Rejected rows after input position `after`.
    pub async fn campaign_rejections(
        &self,
        campaign_id: &Id,
        after: i64,
        limit: usize,
    ) -> StoreResult<Vec<Rejection>> {
        match &self.backend {
            Backend::Sqlite(s) => reads::rejections(s.reads(), campaign_id, after, limit).await,
            Backend::Postgres(p) => p.campaign_rejections(campaign_id, after, limit).await,
        }
    }

    pub async fn active_campaigns(&self) -> StoreResult<Vec<ActiveCampaign>> {
        match &self.backend {
            Backend::Sqlite(s) => reads::active_campaigns(s.reads()).await,
            Backend::Postgres(p) => p.active_campaigns().await,
        }
    }

    /// The status of a campaign, if it exists.
    pub async fn campaign_state(&self, campaign_id: &str) -> StoreResult<Option<CampaignStatus>> {
        match &self.backend {
            Backend::Sqlite(s) => reads::campaign_state(s.reads(), campaign_id).await,
            Backend::Postgres(p) => p.campaign_state(campaign_id).await,
        }
    }

    /// Whether any message of the campaign still waits for delivery.
    pub async fn campaign_waiting(&self, campaign_id: &Id) -> StoreResult<bool> {
        match &self.backend {
            Backend::Sqlite(s) => reads::campaign_waiting(s.reads(), campaign_id).await,
            Backend::Postgres(p) => p.campaign_waiting(campaign_id).await,
        }
    }

    /// Whether a pause holds any of the campaign's messages.
    pub async fn campaign_held(&self, campaign_id: &Id) -> StoreResult<bool> {
        match &self.backend {
            Backend::Sqlite(s) => reads::campaign_held(s.reads(), campaign_id).await,
            Backend::Postgres(p) => p.campaign_held(campaign_id).await,
        }
    }

    /// Opts a number out of an account; true if it was not already.
    pub async fn add_opt_out(
        &self,
        account_id: &AccountId,
        phone_number: &str,
        source: &str,
    ) -> StoreResult<bool> {
        match &self.backend {
            Backend::Sqlite(s) => Ok(s
                .campaign_write(CampaignWrite::AddOptOut {
                    account_id: account_id.clone(),
                    phone_number: phone_number.to_owned(),
                    source: source.to_owned(),
                })
                .await?
                > 0),
            Backend::Postgres(p) => p.add_opt_out(account_id, phone_number, source).await,
        }
    }

    /// Opts a number back in; true if it was opted out.
    pub async fn remove_opt_out(
        &self,
        account_id: &AccountId,
        phone_number: &str,
    ) -> StoreResult<bool> {
        match &self.backend {
            Backend::Sqlite(s) => Ok(s
                .campaign_write(CampaignWrite::RemoveOptOut {
                    account_id: account_id.clone(),
                    phone_number: phone_number.to_owned(),
                })
                .await?
                > 0),
            Backend::Postgres(p) => p.remove_opt_out(account_id, phone_number).await,
        }
    }

    /// Opted-out numbers after `after`, in number order.
    pub async fn opt_outs(
        &self,
        account_id: &AccountId,
        after: &str,
        limit: usize,
    ) -> StoreResult<Vec<OptOut>> {
        match &self.backend {
            Backend::Sqlite(s) => reads::opt_outs(s.reads(), account_id, after, limit).await,
            Backend::Postgres(p) => p.opt_outs(account_id, after, limit).await,
        }
    }

    /// Every opted-out number of the account.
    pub async fn opt_out_set(&self, account_id: &AccountId) -> StoreResult<HashSet<String>> {
        match &self.backend {
            Backend::Sqlite(s) => reads::opt_out_set(s.reads(), account_id).await,
            Backend::Postgres(p) => p.opt_out_set(account_id).await,
        }
    }

    pub async fn upsert_template(
        &self,
        account_id: &AccountId,
        name: &str,
        body: &str,
    ) -> StoreResult<()> {
        match &self.backend {
            Backend::Sqlite(s) => s
                .campaign_write(CampaignWrite::UpsertTemplate {
                    account_id: account_id.clone(),
                    name: name.to_owned(),
                    body: body.to_owned(),
                })
                .await
                .map(drop),
            Backend::Postgres(p) => p.upsert_template(account_id, name, body).await,
        }
    }

    pub async fn templates(&self, account_id: &AccountId) -> StoreResult<Vec<StoredTemplate>> {
        match &self.backend {
            Backend::Sqlite(s) => reads::templates(s.reads(), account_id).await,
            Backend::Postgres(p) => p.templates(account_id).await,
        }
    }

    pub async fn template(
        &self,
        account_id: &AccountId,
        name: &str,
    ) -> StoreResult<Option<StoredTemplate>> {
        match &self.backend {
            Backend::Sqlite(s) => reads::template(s.reads(), account_id, name).await,
            Backend::Postgres(p) => p.template(account_id, name).await,
        }
    }

    /// Messages created since `since`, by day, channel and current status.
    pub async fn stats(
        &self,
        account_id: &AccountId,
        since: Timestamp,
    ) -> StoreResult<Vec<StatsRow>> {
        match &self.backend {
            Backend::Sqlite(s) => reads::stats(s.reads(), account_id, since).await,
            Backend::Postgres(p) => p.stats(account_id, since).await,
        }
    }
}
