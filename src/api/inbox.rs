//! The inbox: inbound messages and threads. Seed 000's endpoints (`/sms/receive`,
//! `/sms/threads`, `/message/read`, `/unread/count`; plain or JSON-RPC, answered in the style
//! asked, SPEC §1) and Herald's own cursor-paginated `GET /threads` and
//! `GET /threads/{thread_id}/messages`.

use super::compat_odoo::enveloped;
use super::extract::{Auth, MaybeJsonBody, PathParam, fields};
use super::{ApiError, AppState};
use crate::domain::{AccountId, Channel, E164, ThreadId, Timestamp};
use crate::inbound::Incoming;
use crate::store::inbound::{ThreadMessage, ThreadSummary};
use axum::Json;
use axum::extract::{Query, State};
use axum::response::Response;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Longest inbound text taken, in characters (WhatsApp's limit; SMS arrive shorter).
const MAX_INBOUND_CHARS: usize = 4096;
/// Most media URLs one inbound message may carry.
const MAX_MEDIA: usize = 10;
/// Threads seed 000's `/sms/threads` and `/unread/count` list at most (most recent first).
const SEED_THREADS_MAX: usize = 1000;
/// Most ids one `/message/read` may name.
const MAX_READ_IDS: usize = 1000;

#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct ReceiveFields {
    /// The sender's number.
    pub phone_number: String,
    pub message: String,
    /// `sms` (default) or `whatsapp`.
    pub channel: Option<String>,
    /// Your gateway's id for the message: a retry with the same id is stored once.
    pub external_id: Option<String>,
    /// The number written to, if your gateway knows it.
    pub to: Option<String>,
    pub media_urls: Option<Vec<String>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ReceiveResult {
    pub success: bool,
    pub message_id: String,
    /// The thread it went into.
    pub thread_id: Option<String>,
    /// A repeat of an `external_id` already stored (nothing new was stored).
    pub duplicate: bool,
}

/// Store an inbound SMS from your own gateway (seed 000); plain or JSON-RPC.
#[utoipa::path(post, path = "/api/messaging/sms/receive", tag = "seed 000 (Odoo SMS)",
    request_body(content = ReceiveFields, description = "Plain, or inside a JSON-RPC envelope's `params`"),
    responses((status = 200, description = "Stored (inside `result` when enveloped)", body = ReceiveResult),
        (status = 400, description = "invalid_phone_number, missing_field, invalid_field")),
    security(("bearer" = [])))]
pub(crate) async fn sms_receive(
    State(state): State<AppState>,
    Auth(key): Auth,
    MaybeJsonBody(body): MaybeJsonBody,
) -> Response {
    enveloped(body, |params| receive(&state, &key.account_id, params)).await
}

async fn receive(
    state: &AppState,
    account: &AccountId,
    params: serde_json::Value,
) -> Result<ReceiveResult, ApiError> {
    let f: ReceiveFields = fields(params, "")?;
    let channel = match f.channel.as_deref() {
        None => Channel::Sms,
        Some(c) => Channel::parse(c)
            .ok_or_else(|| ApiError::invalid("channel", "must be `sms` or `whatsapp`"))?,
    };
    let region = state.region_of(account);
    let from =
        E164::parse(&f.phone_number, region).map_err(|e| ApiError::phone("phone_number", &e))?;
    let to = match f.to {
        Some(to) => Some(
            E164::parse(&to, region)
                .map_err(|e| ApiError::phone("to", &e))?
                .into_string(),
        ),
        None => None,
    };
    if f.message.chars().count() > MAX_INBOUND_CHARS {
        return Err(ApiError::invalid(
            "message",
            format!("must be at most {MAX_INBOUND_CHARS} characters"),
        ));
    }
    if f.message
        .chars()
        .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
    {
        return Err(ApiError::invalid(
            "message",
            "must not contain control characters other than new lines and tabs",
        ));
    }
    let external_id = match f.external_id {
        Some(id) if id.is_empty() || id.len() > 255 || id.chars().any(char::is_control) => {
            return Err(ApiError::invalid(
                "external_id",
                "must be 1 to 255 characters without control characters",
            ));
        }
        other => other,
    };
    let media_urls = f.media_urls.unwrap_or_default();
    if media_urls.len() > MAX_MEDIA
        || media_urls.iter().any(|u| {
            !(u.starts_with("https://") || u.starts_with("http://"))
                || u.len() > 2048
                || u.chars().any(|c| c.is_whitespace() || c.is_control())
        })
    {
        return Err(ApiError::invalid(
            "media_urls",
            format!("must be at most {MAX_MEDIA} http(s) URLs"),
        ));
    }
    let outcomes = state
        .receiver()
        .receive(vec![Incoming {
            account_id: Some(account.clone()),
            channel,
            provider: "api",
            // Each account's gateway names its own messages.
            provider_message_id: external_id.map(|id| format!("{}:{id}", account.as_str())),
            from: from.into_string(),
            to,
            body: f.message,
            media_urls,
            received_at: Timestamp::now(),
        }])
        .await?;
    let outcome = outcomes
        .into_iter()
        .next()
        .ok_or_else(|| ApiError::Unexpected(anyhow::anyhow!("the store answered nothing")))?;
    // A repeated external id of another account's message is not this account's to see.
    if outcome.account_id.as_ref() != Some(account) {
        return Err(ApiError::InvalidState(
            "this external_id was already used for another account's message".into(),
        ));
    }
    Ok(ReceiveResult {
        success: true,
        message_id: outcome.message_id.to_string(),
        thread_id: outcome.thread_id.map(|t| t.to_string()),
        duplicate: outcome.repeat,
    })
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct SeedThread {
    pub id: String,
    pub name: String,
    pub phone_number: String,
    pub last_message: String,
    /// `YYYY-MM-DD HH:MM:SS` (UTC).
    #[schema(example = "2025-12-03 10:30:00")]
    pub last_message_date: String,
    pub unread_count: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct SeedThreads {
    pub threads: Vec<SeedThread>,
}

/// The account's threads, most recent first (seed 000); plain or JSON-RPC.
#[utoipa::path(post, path = "/api/messaging/sms/threads", tag = "seed 000 (Odoo SMS)",
    responses((status = 200, description = "Threads (inside `result` when enveloped)", body = SeedThreads)),
    security(("bearer" = [])))]
pub(crate) async fn sms_threads(
    State(state): State<AppState>,
    Auth(key): Auth,
    MaybeJsonBody(body): MaybeJsonBody,
) -> Response {
    answer_from_threads(&state, &key.account_id, body, |threads| SeedThreads {
        threads: threads
            .into_iter()
            .map(|t| SeedThread {
                id: t.thread_id.to_string(),
                name: t.phone_number.clone(),
                phone_number: t.phone_number,
                last_message: t.last_message,
                last_message_date: t.last_message_at.to_odoo(),
                unread_count: t.unread_count,
            })
            .collect(),
    })
    .await
}

/// Seed 000's thread endpoints: the account's most recent threads, answered as `shape`
/// makes them, in the style the request was made in.
async fn answer_from_threads<T: Serialize>(
    state: &AppState,
    account: &AccountId,
    body: Option<serde_json::Value>,
    shape: impl FnOnce(Vec<ThreadSummary>) -> T,
) -> Response {
    enveloped(body, |_| async move {
        let threads = state
            .store()
            .threads(account, None, SEED_THREADS_MAX)
            .await?;
        Ok(shape(threads))
    })
    .await
}

#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct ReadFields {
    pub message_id: Option<String>,
    pub message_ids: Option<Vec<String>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ReadResult {
    pub success: bool,
    /// How many went from unread to read.
    pub marked_count: u64,
}

/// Mark inbound messages read (seed 000): `message_id` or `message_ids`.
#[utoipa::path(post, path = "/api/messaging/message/read", tag = "seed 000 (Odoo SMS)",
    request_body(content = ReadFields, description = "Plain, or inside a JSON-RPC envelope's `params`"),
    responses((status = 200, description = "Marked (inside `result` when enveloped)", body = ReadResult),
        (status = 400, description = "missing_field: neither message_id nor message_ids")),
    security(("bearer" = [])))]
pub(crate) async fn message_read(
    State(state): State<AppState>,
    Auth(key): Auth,
    MaybeJsonBody(body): MaybeJsonBody,
) -> Response {
    enveloped(body, |params| async move {
        let f: ReadFields = fields(params, "")?;
        let mut ids: Vec<String> = f.message_ids.unwrap_or_default();
        if ids.len() > MAX_READ_IDS {
            return Err(ApiError::invalid(
                "message_ids",
                format!("at most {MAX_READ_IDS} ids at once"),
            ));
        }
        ids.extend(f.message_id);
        if ids.is_empty() {
            return Err(ApiError::MissingField {
                field: "message_ids".into(),
            });
        }
        let marked_count = state.store().mark_read(&key.account_id, ids).await?;
        Ok(ReadResult {
            success: true,
            marked_count,
        })
    })
    .await
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct UnreadThread {
    pub thread_id: String,
    pub thread_name: String,
    pub unread_count: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct UnreadCount {
    pub unread_count: i64,
    /// Threads with unread messages.
    pub unread_by_thread: Vec<UnreadThread>,
}

/// Unread inbound messages, in all and by thread (seed 000); plain or JSON-RPC.
#[utoipa::path(post, path = "/api/messaging/unread/count", tag = "seed 000 (Odoo SMS)",
    responses((status = 200, description = "Counts (inside `result` when enveloped)", body = UnreadCount)),
    security(("bearer" = [])))]
pub(crate) async fn unread_count(
    State(state): State<AppState>,
    Auth(key): Auth,
    MaybeJsonBody(body): MaybeJsonBody,
) -> Response {
    answer_from_threads(&state, &key.account_id, body, |threads| {
        let unread: Vec<UnreadThread> = threads
            .into_iter()
            .filter(|t| t.unread_count > 0)
            .map(|t| UnreadThread {
                thread_id: t.thread_id.to_string(),
                thread_name: t.phone_number,
                unread_count: t.unread_count,
            })
            .collect();
        UnreadCount {
            unread_count: unread.iter().map(|t| t.unread_count).sum(),
            unread_by_thread: unread,
        }
    })
    .await
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ThreadItem {
    pub thread_id: String,
    /// `sms` or `whatsapp`.
    pub channel: String,
    pub phone_number: String,
    /// The latest message either way.
    pub last_message: String,
    pub last_message_at: String,
    /// When the number last wrote (WhatsApp's 24-hour window counts from it).
    pub last_inbound_at: String,
    pub unread_count: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ThreadList {
    pub threads: Vec<ThreadItem>,
    /// Pass as `before` for the next page; null on the last.
    pub next_before: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct PageQuery {
    limit: Option<usize>,
    before: Option<String>,
    after: Option<String>,
}

fn item(t: ThreadSummary) -> ThreadItem {
    ThreadItem {
        thread_id: t.thread_id.to_string(),
        channel: t.channel.as_str().to_owned(),
        phone_number: t.phone_number,
        last_message: t.last_message,
        last_message_at: t.last_message_at.to_rfc3339(),
        last_inbound_at: t.last_inbound_at.to_rfc3339(),
        unread_count: t.unread_count,
    }
}

/// A page cursor: `<milliseconds>.<id>` of the last item seen.
pub(super) fn cursor(at: Timestamp, id: &str) -> String {
    format!("{}.{id}", at.millis())
}

pub(super) fn parse_cursor(
    field: &str,
    raw: Option<&str>,
) -> Result<Option<(Timestamp, String)>, ApiError> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    let bad = || {
        ApiError::invalid(
            field,
            "must be a cursor this API answered (next_before / next_after)",
        )
    };
    let (at, id) = raw.split_once('.').ok_or_else(bad)?;
    let at: i64 = at.parse().map_err(|_| bad())?;
    if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
    {
        return Err(bad());
    }
    Ok(Some((Timestamp::from_millis(at), id.to_owned())))
}

pub(super) fn page_limit(limit: Option<usize>) -> Result<usize, ApiError> {
    let limit = limit.unwrap_or(50);
    if (1..=200).contains(&limit) {
        Ok(limit)
    } else {
        Err(ApiError::invalid("limit", "must be from 1 to 200"))
    }
}

/// The account's threads, most recent inbound first, a page at a time.
#[utoipa::path(get, path = "/api/messaging/threads", tag = "inbox",
    params(("limit" = Option<usize>, Query, description = "1-200, default 50"),
        ("before" = Option<String>, Query, description = "`next_before` of the previous page")),
    responses((status = 200, body = ThreadList)), security(("bearer" = [])))]
pub(crate) async fn list_threads(
    State(state): State<AppState>,
    Auth(key): Auth,
    query: Result<Query<PageQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<ThreadList>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::invalid("query", e.body_text()))?;
    let limit = page_limit(query.limit)?;
    let before = parse_cursor("before", query.before.as_deref())?;
    let threads = state
        .store()
        .threads(&key.account_id, before, limit)
        .await?;
    let next_before = (threads.len() == limit)
        .then(|| {
            threads
                .last()
                .map(|t| cursor(t.last_inbound_at, t.thread_id.as_str()))
        })
        .flatten();
    Ok(Json(ThreadList {
        threads: threads.into_iter().map(item).collect(),
        next_before,
    }))
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ThreadMessageItem {
    pub message_id: String,
    /// `inbound` or `outbound`.
    pub direction: &'static str,
    pub body: String,
    /// Received (inbound) or accepted (outbound).
    pub at: String,
    /// Outbound: its status; inbound: `received`.
    pub status: String,
    /// Inbound only.
    pub read: Option<bool>,
    /// `stop`, `start` or `help` when an inbound message was that keyword.
    pub keyword: Option<String>,
    pub campaign_id: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ThreadMessages {
    pub thread: ThreadItem,
    pub messages: Vec<ThreadMessageItem>,
    /// Pass as `after` for the next page; null on the last.
    pub next_after: Option<String>,
}

/// A thread's messages both ways, oldest first, a page at a time.
#[utoipa::path(get, path = "/api/messaging/threads/{thread_id}/messages", tag = "inbox",
    params(("limit" = Option<usize>, Query, description = "1-200, default 50"),
        ("after" = Option<String>, Query, description = "`next_after` of the previous page")),
    responses((status = 200, body = ThreadMessages), (status = 404, description = "not_found")),
    security(("bearer" = [])))]
pub(crate) async fn thread_messages(
    State(state): State<AppState>,
    Auth(key): Auth,
    PathParam(thread_id): PathParam,
    query: Result<Query<PageQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<ThreadMessages>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::invalid("query", e.body_text()))?;
    let limit = page_limit(query.limit)?;
    let after = parse_cursor("after", query.after.as_deref())?;
    let id = ThreadId::parse(&thread_id).ok_or(ApiError::NotFound("thread"))?;
    let thread = state
        .store()
        .thread(&key.account_id, &id)
        .await?
        .ok_or(ApiError::NotFound("thread"))?;
    let messages = state
        .store()
        .thread_messages(&key.account_id, &thread, after, limit)
        .await?;
    let next_after = (messages.len() == limit)
        .then(|| messages.last().map(|m| cursor(m.at, &m.message_id)))
        .flatten();
    Ok(Json(ThreadMessages {
        thread: item(thread),
        messages: messages.into_iter().map(message_item).collect(),
        next_after,
    }))
}

fn message_item(m: ThreadMessage) -> ThreadMessageItem {
    ThreadMessageItem {
        message_id: m.message_id,
        direction: m.direction,
        body: m.body,
        at: m.at.to_rfc3339(),
        status: m.status,
        read: m.read,
        keyword: m.keyword,
        campaign_id: m.campaign_id,
    }
}

/// Longest answer to STOP or HELP, in characters (a few SMS segments).
const MAX_REPLY_CHARS: usize = 480;

#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct KeywordRepliesInput {
    /// The answer to STOP; null: the deployment's; "": none.
    pub stop_reply: Option<String>,
    /// The answer to HELP; null: the deployment's; "": none.
    pub help_reply: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct KeywordRepliesView {
    /// What is sent in answer to STOP ("" : nothing).
    pub stop_reply: String,
    /// Whether that is the account's own text (false: the deployment's).
    pub stop_reply_own: bool,
    pub help_reply: String,
    pub help_reply_own: bool,
}

async fn replies_view(
    state: &AppState,
    account: &AccountId,
) -> Result<KeywordRepliesView, ApiError> {
    let own = state.store().keyword_replies(account).await?;
    let inbound = &state.settings().inbound;
    Ok(KeywordRepliesView {
        stop_reply_own: own.stop_reply.is_some(),
        stop_reply: own.stop_reply.unwrap_or_else(|| inbound.stop_reply.clone()),
        help_reply_own: own.help_reply.is_some(),
        help_reply: own.help_reply.unwrap_or_else(|| inbound.help_reply.clone()),
    })
}

/// What the account answers STOP and HELP with.
#[utoipa::path(get, path = "/api/messaging/keyword-replies", tag = "inbox",
    responses((status = 200, body = KeywordRepliesView)), security(("bearer" = [])))]
pub(crate) async fn get_keyword_replies(
    State(state): State<AppState>,
    Auth(key): Auth,
) -> Result<Json<KeywordRepliesView>, ApiError> {
    Ok(Json(replies_view(&state, &key.account_id).await?))
}

/// Set the account's own answers to STOP and HELP (both fields; null goes back to the
/// deployment's, "" sends none).
#[utoipa::path(put, path = "/api/messaging/keyword-replies", tag = "inbox",
    request_body = KeywordRepliesInput,
    responses((status = 200, body = KeywordRepliesView)), security(("bearer" = [])))]
pub(crate) async fn put_keyword_replies(
    State(state): State<AppState>,
    Auth(key): Auth,
    super::extract::JsonBody(body): super::extract::JsonBody,
) -> Result<Json<KeywordRepliesView>, ApiError> {
    let input: KeywordRepliesInput = fields(body, "")?;
    for (field, text) in [
        ("stop_reply", &input.stop_reply),
        ("help_reply", &input.help_reply),
    ] {
        if let Some(text) = text {
            if text.chars().count() > MAX_REPLY_CHARS {
                return Err(ApiError::invalid(
                    field,
                    format!("must be at most {MAX_REPLY_CHARS} characters"),
                ));
            }
            if text
                .chars()
                .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
            {
                return Err(ApiError::invalid(
                    field,
                    "must not contain control characters other than new lines and tabs",
                ));
            }
        }
    }
    state
        .store()
        .set_keyword_replies(
            &key.account_id,
            crate::store::inbound::KeywordReplies {
                stop_reply: input.stop_reply,
                help_reply: input.help_reply,
            },
        )
        .await?;
    Ok(Json(replies_view(&state, &key.account_id).await?))
}
