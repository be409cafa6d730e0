//! A campaign once created: get with live counters, list, pause, resume, cancel, and its
//! rejected rows.

use super::extract::Auth;
use super::extract::PathParam;
use super::{ApiError, AppState};
use crate::domain::{AccountId, CampaignId, CampaignStatus, MessageStatus, Timestamp};
use crate::store::{CampaignCommand, CampaignCounts, CampaignView};
use axum::Json;
use axum::extract::{Query, State};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::time::Duration;

/// A campaign with its live counters.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct CampaignResponse {
    pub campaign_id: String,
    pub name: String,
    /// `scheduled`, `running`, `paused`, `completed` or `canceled`.
    pub status: &'static str,
    /// Why it is paused: `requested`, `insufficient_balance`, `daily_limit_exceeded`.
    pub pause_reason: Option<&'static str>,
    pub channel: &'static str,
    pub priority: &'static str,
    pub sender_id: Option<String>,
    pub template: String,
    pub scheduled_at: String,
    pub created_at: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub recipients_total: i64,
    pub recipients_accepted: i64,
    pub estimated_cost: f64,
    pub estimated_segments: i64,
    pub counters: Counters,
    /// Cost of the messages handed to a provider so far.
    pub cost_so_far: f64,
    /// Messages handed over per second, lately.
    pub send_rate: f64,
    /// When the last message should be handed over at the current rate (RFC 3339).
    pub estimated_completion: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct Counters {
    /// Every row of the list.
    pub total: i64,
    /// Waiting: recipients not yet expanded plus queued messages.
    pub queued: i64,
    pub sending: i64,
    pub sent: i64,
    pub delivered: i64,
    pub read: i64,
    pub failed: i64,
    pub undelivered: i64,
    pub expired: i64,
    pub canceled: i64,
    /// Rows refused when the list was loaded (opted-out numbers included).
    pub rejected: i64,
    /// Recipients never messaged because they opted out (at loading or later).
    pub opted_out: i64,
    /// Messages a provider accepted: sent, delivered, read or undelivered now.
    pub handed_over: i64,
    /// Inbound messages answering one of its messages (`GET …/replies` lists them).
    pub replies: i64,
}

pub(crate) fn campaign_response(
    state: &AppState,
    view: CampaignView,
    counts: &CampaignCounts,
) -> CampaignResponse {
    let handed_over: i64 = MessageStatus::ALL
        .into_iter()
        .filter(|s| s.was_handed_over())
        .map(|s| counts.count(s))
        .sum();
    let pending = (view.totals.recipients_accepted - counts.total() - view.skipped).max(0);
    let queued = if matches!(view.status, CampaignStatus::Canceled) {
        counts.count(MessageStatus::Queued)
    } else {
        pending + counts.count(MessageStatus::Queued)
    };
    let sending = counts.count(MessageStatus::Sending);
    let rate = state.send_rate(&view.campaign_id, handed_over, view.started_at);
    let remaining = queued + sending;
    let estimated_completion = match view.status {
        CampaignStatus::Running if rate > 0.0 && remaining > 0 => {
            let secs = remaining as f64 / rate;
            Some(
                Timestamp::now()
                    .plus(Duration::from_secs_f64(secs.min(1e9)))
                    .to_rfc3339(),
            )
        }
        _ => None,
    };
    CampaignResponse {
        campaign_id: view.campaign_id.to_string(),
        name: view.name,
        status: view.status.as_str(),
        pause_reason: view.pause_reason.map(|r| r.as_str()),
        channel: view.channel.as_str(),
        priority: view.priority.as_str(),
        sender_id: view.sender_id,
        template: view.template,
        scheduled_at: view.scheduled_at.to_rfc3339(),
        created_at: view.created_at.to_rfc3339(),
        started_at: view.started_at.map(|t| t.to_rfc3339()),
        finished_at: view.finished_at.map(|t| t.to_rfc3339()),
        recipients_total: view.totals.recipients_total,
        recipients_accepted: view.totals.recipients_accepted,
        estimated_cost: view.totals.estimated_cost.to_f64(),
        estimated_segments: view.totals.estimated_segments,
        counters: Counters {
            total: view.totals.recipients_total,
            queued,
            sending,
            sent: counts.count(MessageStatus::Sent),
            delivered: counts.count(MessageStatus::Delivered),
            read: counts.count(MessageStatus::Read),
            failed: counts.count(MessageStatus::Failed),
            undelivered: counts.count(MessageStatus::Undelivered),
            expired: counts.count(MessageStatus::Expired),
            canceled: counts.count(MessageStatus::Canceled),
            rejected: view.totals.rejected,
            opted_out: view.totals.opted_out,
            handed_over,
            replies: view.replies,
        },
        cost_so_far: counts.cost_so_far().to_f64(),
        send_rate: (rate * 10.0).round() / 10.0,
        estimated_completion,
    }
}

fn campaign_id(raw: &str) -> Result<CampaignId, ApiError> {
    CampaignId::parse(raw).ok_or(ApiError::NotFound("campaign"))
}

async fn load(
    state: &AppState,
    account: &AccountId,
    id: &CampaignId,
) -> Result<CampaignResponse, ApiError> {
    let (view, counts) = state
        .store()
        .campaign_with_counts(account, id)
        .await?
        .ok_or(ApiError::NotFound("campaign"))?;
    Ok(campaign_response(state, view, &counts))
}

/// A campaign with live counters.
#[utoipa::path(
    get,
    path = "/api/messaging/campaigns/{campaign_id}",
    tag = "campaigns",
    responses((status = 200, body = CampaignResponse), (status = 404, description = "not_found")),
    security(("bearer" = []))
)]
pub(crate) async fn get_campaign(
    State(state): State<AppState>,
    Auth(key): Auth,
    PathParam(raw): PathParam,
) -> Result<Json<CampaignResponse>, ApiError> {
    let id = campaign_id(&raw)?;
    Ok(Json(load(&state, &key.account_id, &id).await?))
}

#[derive(Debug, Deserialize)]
pub(crate) struct ListQuery {
    before: Option<String>,
    limit: Option<usize>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct CampaignList {
    pub campaigns: Vec<CampaignResponse>,
    /// Pass as `before` for the next (older) page; null on the last page.
    pub next_before: Option<String>,
}

/// The account's campaigns, newest first (`before` and `limit` page through them).
#[utoipa::path(
    get,
    path = "/api/messaging/campaigns",
    tag = "campaigns",
    params(("before" = Option<String>, Query), ("limit" = Option<usize>, Query, description = "1-100, default 20")),
    responses((status = 200, body = CampaignList)),
    security(("bearer" = []))
)]
pub(crate) async fn list_campaigns(
    State(state): State<AppState>,
    Auth(key): Auth,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<CampaignList>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::invalid("query", e.body_text()))?;
    let limit = query.limit.unwrap_or(20);
    if !(1..=100).contains(&limit) {
        return Err(ApiError::invalid("limit", "must be from 1 to 100"));
    }
    let before = match query.before.as_deref() {
        None => None,
        Some(raw) => Some(
            CampaignId::parse(raw)
                .ok_or_else(|| ApiError::invalid("before", "must be a campaign id"))?,
        ),
    };
    let listed = state
        .store()
        .campaigns_with_counts(&key.account_id, before.as_ref(), limit)
        .await?;
    let next_before = (listed.len() == limit)
        .then(|| listed.last().map(|(v, _)| v.campaign_id.to_string()))
        .flatten();
    let campaigns = listed
        .into_iter()
        .map(|(view, counts)| campaign_response(&state, view, &counts))
        .collect();
    Ok(Json(CampaignList {
        campaigns,
        next_before,
    }))
}

async fn command(
    state: &AppState,
    account: &AccountId,
    raw: &str,
    command: CampaignCommand,
) -> Result<Json<CampaignResponse>, ApiError> {
    let id = campaign_id(raw)?;
    let view = state
        .store()
        .campaign(account, &id)
        .await?
        .ok_or(ApiError::NotFound("campaign"))?;
    let target = match command {
        CampaignCommand::Pause => CampaignStatus::Paused,
        CampaignCommand::Cancel => CampaignStatus::Canceled,
        CampaignCommand::Resume if view.scheduled_at > Timestamp::now() => {
            CampaignStatus::Scheduled
        }
        CampaignCommand::Resume => CampaignStatus::Running,
    };
    // Asking again for the state it is in is not an error (a retried request).
    let already = view.status == target
        || (command == CampaignCommand::Resume
            && matches!(
                view.status,
                CampaignStatus::Running | CampaignStatus::Scheduled
            ));
    if !already {
        let moved = state
            .store()
            .command_campaign(account, &id, command, target)
            .await?;
        if !moved {
            let now = state
                .store()
                .campaign(account, &id)
                .await?
                .ok_or(ApiError::NotFound("campaign"))?;
            return Err(ApiError::InvalidState(format!(
                "the campaign is {}; it cannot be {}",
                now.status.as_str(),
                match command {
                    CampaignCommand::Pause => "paused",
                    CampaignCommand::Resume => "resumed",
                    CampaignCommand::Cancel => "canceled",
                }
            )));
        }
    }
    // Messages already queued follow the campaign: held, released or canceled now, so
    // the answer describes a settled campaign (workers also skip them at claim time).
    state.store().settle_campaign_messages(&id, target).await?;
    Ok(Json(load(state, account, &id).await?))
}

/// Pause: no new message of the campaign is handed over from now on.
#[utoipa::path(post, path = "/api/messaging/campaigns/{campaign_id}/pause", tag = "campaigns",
    responses((status = 200, body = CampaignResponse), (status = 404, description = "not_found"), (status = 409, description = "invalid_state")),
    security(("bearer" = [])))]
pub(crate) async fn pause_campaign(
    State(state): State<AppState>,
    Auth(key): Auth,
    PathParam(raw): PathParam,
) -> Result<Json<CampaignResponse>, ApiError> {
    command(&state, &key.account_id, &raw, CampaignCommand::Pause).await
}

/// Resume a paused campaign (also one paused for lack of balance, after a top-up).
#[utoipa::path(post, path = "/api/messaging/campaigns/{campaign_id}/resume", tag = "campaigns",
    responses((status = 200, body = CampaignResponse), (status = 404, description = "not_found"), (status = 409, description = "invalid_state")),
    security(("bearer" = [])))]
pub(crate) async fn resume_campaign(
    State(state): State<AppState>,
    Auth(key): Auth,
    PathParam(raw): PathParam,
) -> Result<Json<CampaignResponse>, ApiError> {
    command(&state, &key.account_id, &raw, CampaignCommand::Resume).await
}

/// Cancel: nothing more is sent; queued messages are canceled and refunded.
#[utoipa::path(post, path = "/api/messaging/campaigns/{campaign_id}/cancel", tag = "campaigns",
    responses((status = 200, body = CampaignResponse), (status = 404, description = "not_found"), (status = 409, description = "invalid_state")),
    security(("bearer" = [])))]
pub(crate) async fn cancel_campaign(
    State(state): State<AppState>,
    Auth(key): Auth,
    PathParam(raw): PathParam,
) -> Result<Json<CampaignResponse>, ApiError> {
    command(&state, &key.account_id, &raw, CampaignCommand::Cancel).await
}

#[derive(Debug, Deserialize)]
pub(crate) struct RejectionQuery {
    after: Option<i64>,
    limit: Option<usize>,
}

#[derive(Debug, Serialize)]
struct RejectionItem {
    /// Position in the input, from 0.
    row: i64,
    phone_number: String,
    code: String,
    error: String,
}

/// Every rejected row of a campaign, in input order (`after` = the last `row` seen).
#[utoipa::path(get, path = "/api/messaging/campaigns/{campaign_id}/rejections", tag = "campaigns",
    responses((status = 200, description = "{rejections: [{row, phone_number, code, error}], next_after}"), (status = 404, description = "not_found")),
    security(("bearer" = [])))]
pub(crate) async fn campaign_rejections(
    State(state): State<AppState>,
    Auth(key): Auth,
    PathParam(raw): PathParam,
    query: Result<Query<RejectionQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::invalid("query", e.body_text()))?;
    let id = campaign_id(&raw)?;
    state
        .store()
        .campaign(&key.account_id, &id)
        .await?
        .ok_or(ApiError::NotFound("campaign"))?;
    let limit = query.limit.unwrap_or(1000).clamp(1, 10_000);
    let rows = state
        .store()
        .campaign_rejections(&id, query.after.unwrap_or(-1), limit)
        .await?;
    let next_after = (rows.len() == limit)
        .then(|| rows.last().map(|r| r.seq))
        .flatten();
    let rejections: Vec<RejectionItem> = rows
        .into_iter()
        .map(|r| RejectionItem {
            row: r.seq,
            phone_number: r.phone_number,
            code: r.code,
            error: r.error,
        })
        .collect();
    Ok(Json(
        serde_json::json!({"rejections": rejections, "next_after": next_after}),
    ))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct ReplyItem {
    pub message_id: String,
    pub thread_id: Option<String>,
    /// Who answered.
    pub phone_number: String,
    pub body: String,
    /// `stop`, `start` or `help` when the reply was that keyword.
    pub keyword: Option<String>,
    /// The campaign's message it answers.
    pub in_reply_to: Option<String>,
    pub received_at: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct ReplyList {
    pub replies: Vec<ReplyItem>,
    /// Pass as `after` for the next page; null on the last.
    pub next_after: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct RepliesQuery {
    limit: Option<usize>,
    after: Option<String>,
}

/// The replies to a campaign's messages, oldest first, a page at a time.
#[utoipa::path(get, path = "/api/messaging/campaigns/{campaign_id}/replies", tag = "campaigns",
    params(("limit" = Option<usize>, Query, description = "1-200, default 50"),
        ("after" = Option<String>, Query, description = "`next_after` of the previous page")),
    responses((status = 200, body = ReplyList), (status = 404, description = "not_found")),
    security(("bearer" = [])))]
pub(crate) async fn campaign_replies(
    State(state): State<AppState>,
    Auth(key): Auth,
    PathParam(raw): PathParam,
    query: Result<Query<RepliesQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<ReplyList>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::invalid("query", e.body_text()))?;
    let limit = super::inbox::page_limit(query.limit)?;
    let after = super::inbox::parse_cursor("after", query.after.as_deref())?;
    let id = campaign_id(&raw)?;
    state
        .store()
        .campaign(&key.account_id, &id)
        .await?
        .ok_or(ApiError::NotFound("campaign"))?;
    let replies = state
        .store()
        .campaign_replies(&key.account_id, id.as_str(), after, limit)
        .await?;
    let next_after = (replies.len() == limit)
        .then(|| {
            replies
                .last()
                .map(|r| super::inbox::cursor(r.received_at, &r.message_id))
        })
        .flatten();
    Ok(Json(ReplyList {
        replies: replies
            .into_iter()
            .map(|r| ReplyItem {
                message_id: r.message_id,
                thread_id: r.thread_id,
                phone_number: r.phone_number,
                body: r.body,
                keyword: r.keyword,
                in_reply_to: r.in_reply_to,
                received_at: r.received_at.to_rfc3339(),
            })
            .collect(),
        next_after,
    }))
}
