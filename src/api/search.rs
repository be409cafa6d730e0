//! `GET /messages`: finding an account's messages by number, status, campaign, channel and
//! time, newest first, a page at a time; and `GET /campaigns/{id}/export`, a campaign's
//! results as CSV.

use super::extract::{Auth, PathParam};
use super::inbox::{cursor, page_limit, parse_cursor};
use super::{ApiError, AppState};
use crate::domain::{AccountId, CampaignId, Channel, E164, MessageStatus, Region, Timestamp};
use crate::store::search::{MessageSearch, MessageSummary};
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Json, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Deserialize)]
pub(crate) struct SearchQuery {
    phone_number: Option<String>,
    /// Region for a number written without its country code.
    country: Option<String>,
    status: Option<String>,
    campaign_id: Option<String>,
    channel: Option<String>,
    created_from: Option<String>,
    created_to: Option<String>,
    limit: Option<usize>,
    before: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct MessageItem {
    pub message_id: String,
    pub phone_number: String,
    /// `sms` or `whatsapp`.
    pub channel: String,
    pub status: String,
    pub message: String,
    pub sender_id: Option<String>,
    pub campaign_id: Option<String>,
    pub priority: String,
    pub segments: i64,
    pub cost: f64,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct MessageList {
    pub messages: Vec<MessageItem>,
    /// Pass as `before` for the next page; null on the last. A page examines at most 10,000
    /// messages when `status` or `channel` filter them, so a rare status may give a short
    /// (even empty) page that still has a `next_before`.
    pub next_before: Option<String>,
}

/// Longest campaign id searched for (campaigns' own ids are 30 characters; a client's
/// free-form `campaign_id` on a send is kept as given).
const MAX_CAMPAIGN_ID: usize = 128;

fn search_from(
    state: &AppState,
    account: &AccountId,
    q: SearchQuery,
) -> Result<MessageSearch, ApiError> {
    // Checked even without a number: a bad value is refused wherever it stands.
    let region = match q.country.as_deref() {
        None => state.region_of(account),
        Some(c) => Region::parse(c).map_err(|e| ApiError::invalid("country", e.to_string()))?,
    };
    let phone_number = q
        .phone_number
        .as_deref()
        .map(|raw| E164::parse(raw, region).map_err(|e| ApiError::phone("phone_number", &e)))
        .transpose()?
        .map(|number| number.as_str().to_owned());
    let status = q
        .status
        .as_deref()
        .map(|s| {
            MessageStatus::parse(s).ok_or_else(|| {
                ApiError::invalid(
                    "status",
                    "must be queued, sending, sent, delivered, read, failed, undelivered, \
                     expired or canceled",
                )
            })
        })
        .transpose()?;
    let channel = q
        .channel
        .as_deref()
        .map(|c| {
            Channel::parse(c).ok_or_else(|| ApiError::invalid("channel", "must be sms or whatsapp"))
        })
        .transpose()?;
    if q.campaign_id
        .as_ref()
        .is_some_and(|c| c.is_empty() || c.len() > MAX_CAMPAIGN_ID)
    {
        return Err(ApiError::invalid(
            "campaign_id",
            "must be 1 to 128 characters",
        ));
    }
    let time = |field: &'static str, raw: Option<&str>| {
        raw.map(|r| {
            Timestamp::parse_rfc3339(r).ok_or_else(|| {
                ApiError::invalid(field, "must be an RFC 3339 time, e.g. 2026-12-05T10:00:00Z")
            })
        })
        .transpose()
    };
    let created_from = time("created_from", q.created_from.as_deref())?;
    let created_to = time("created_to", q.created_to.as_deref())?;
    Ok(MessageSearch {
        phone_number,
        status,
        campaign_id: q.campaign_id,
        channel,
        sender_id: None,
        created_from,
        created_to,
        before: parse_cursor("before", q.before.as_deref())?,
        limit: page_limit(q.limit)?,
    })
}

fn item(m: MessageSummary) -> MessageItem {
    MessageItem {
        message_id: m.message_id.to_string(),
        phone_number: m.phone_number,
        channel: m.channel.as_str().to_owned(),
        status: m.status.as_str().to_owned(),
        message: m.body,
        sender_id: m.sender_id,
        campaign_id: m.campaign_id,
        priority: m.priority.as_str().to_owned(),
        segments: m.segments,
        cost: m.cost.to_f64(),
        error_code: m.error_code,
        error_message: m.error_message,
        created_at: m.created_at.to_rfc3339(),
        updated_at: m.updated_at.to_rfc3339(),
    }
}

/// The account's messages matching every filter given, newest first, a page at a time.
/// Pages hold still while new messages arrive: those sort before the first page.
#[utoipa::path(get, path = "/api/messaging/messages", tag = "messages",
    params(
        ("phone_number" = Option<String>, Query, description = "the recipient, in any format the send endpoints take"),
        ("country" = Option<String>, Query, description = "ISO region for a number without its country code"),
        ("status" = Option<String>, Query, description = "queued, sending, sent, delivered, read, failed, undelivered, expired or canceled"),
        ("campaign_id" = Option<String>, Query, description = "a campaign's id, or the campaign_id a send gave"),
        ("channel" = Option<String>, Query, description = "sms or whatsapp"),
        ("created_from" = Option<String>, Query, description = "RFC 3339: created at or after"),
        ("created_to" = Option<String>, Query, description = "RFC 3339: created before"),
        ("limit" = Option<usize>, Query, description = "1-200, default 50"),
        ("before" = Option<String>, Query, description = "`next_before` of the previous page")),
    responses((status = 200, body = MessageList),
        (status = 400, description = "invalid_field or invalid_phone_number")),
    security(("bearer" = [])))]
pub(crate) async fn search_messages(
    State(state): State<AppState>,
    Auth(key): Auth,
    query: Result<Query<SearchQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<MessageList>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::invalid("query", e.body_text()))?;
    let search = search_from(&state, &key.account_id, query)?;
    let page = state
        .store()
        .search_messages(&key.account_id, &search)
        .await?;
    Ok(Json(MessageList {
        next_before: page.next.map(|(at, id)| cursor(at, &id)),
        messages: page.messages.into_iter().map(item).collect(),
    }))
}

/// Rows per read while a campaign's export streams.
const EXPORT_PAGE: usize = 1000;

const EXPORT_HEADER: [&str; 10] = [
    "message_id",
    "phone_number",
    "status",
    "error_code",
    "error_message",
    "segments",
    "cost",
    "channel",
    "created_at",
    "updated_at",
];

/// A campaign's messages and where each one got to, as CSV (newest first), streamed a page
/// at a time so a million-recipient campaign costs no more memory than a small one.
#[utoipa::path(get, path = "/api/messaging/campaigns/{campaign_id}/export", tag = "campaigns",
    params(("campaign_id" = String, Path, description = "cmp_…")),
    responses((status = 200, content_type = "text/csv", description = "message_id, phone_number, status, error_code, error_message, segments, cost, channel, created_at, updated_at"),
        (status = 404, description = "not_found")),
    security(("bearer" = [])))]
pub(crate) async fn export_campaign(
    State(state): State<AppState>,
    Auth(key): Auth,
    PathParam(raw): PathParam,
) -> Result<Response, ApiError> {
    let id = CampaignId::parse(&raw).ok_or(ApiError::NotFound("campaign"))?;
    state
        .store()
        .campaign(&key.account_id, &id)
        .await?
        .ok_or(ApiError::NotFound("campaign"))?;
    let store = state.store().clone();
    let account = key.account_id.clone();
    let first = MessageSearch {
        campaign_id: Some(id.to_string()),
        limit: EXPORT_PAGE,
        ..MessageSearch::default()
    };
    // State: the next page's search, or None once a short page was sent.
    let pages = futures::stream::unfold((Some(first), true), move |(next, header)| {
        let store = store.clone();
        let account = account.clone();
        async move {
            let mut search = next?;
            let page = match store.search_messages(&account, &search).await {
                Ok(page) => page,
                Err(e) => {
                    tracing::warn!(error = %e, "a campaign export stopped: the read failed");
                    return Some((Err(std::io::Error::other("the read failed")), (None, false)));
                }
            };
            let chunk = csv_rows(header, page.messages);
            let next = page.next.map(|before| {
                search.before = Some(before);
                search
            });
            Some((chunk, (next, false)))
        }
    });
    let filename = format!("attachment; filename=\"{id}.csv\"");
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (header::CONTENT_DISPOSITION, filename),
        ],
        Body::from_stream(pages),
    )
        .into_response())
}

fn csv_rows(header: bool, rows: Vec<MessageSummary>) -> Result<Vec<u8>, std::io::Error> {
    let mut out = csv::Writer::from_writer(Vec::new());
    if header {
        out.write_record(EXPORT_HEADER)?;
    }
    for m in rows {
        out.write_record([
            m.message_id.as_str(),
            &m.phone_number,
            m.status.as_str(),
            m.error_code.as_deref().unwrap_or(""),
            m.error_message.as_deref().unwrap_or(""),
            &m.segments.to_string(),
            &m.cost.to_f64().to_string(),
            m.channel.as_str(),
            &m.created_at.to_rfc3339(),
            &m.updated_at.to_rfc3339(),
        ])?;
    }
    out.into_inner().map_err(|e| e.into_error())
}
