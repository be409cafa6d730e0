//! Twilio's Messages API on Herald (SPEC §1, "Twilio-compatible endpoints"), so an
//! application written for Twilio switches by changing its base URL and credentials:
//! `POST/GET /2010-04-01/Accounts/{AccountSid}/Messages.json` and
//! `GET …/Messages/{Sid}.json`. HTTP Basic auth with the Herald account id as user and an API
//! key as password; `{AccountSid}` is that account id; a message's `sid` is its Herald id.
//! Requests are form-encoded, answers are Twilio's Message resource and error shapes, and a
//! send goes through exactly the path `send-message` takes (validation, pricing, limits).

use super::extract::PathParam;
use super::inbox::{cursor, parse_cursor};
use super::send;
use super::{ApiError, AppState};
use crate::domain::{AccountId, Channel, MessageId, MessageStatus, Timestamp};
use crate::events::twilio_format;
use crate::store::search::{MessageSearch, MessageSummary};
use crate::store::{AcceptOutcome, AcceptRequest, ItemOutcome, StoredResponse};
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde_json::{Value, json};

/// Twilio's answer when credentials do not hold.
const AUTHENTICATE: u32 = 20003;

/// A Twilio-shaped error: `{code, message, more_info, status}`.
struct TwilioError {
    status: StatusCode,
    code: u32,
    message: String,
    /// Herald's own error, for its headers (`Retry-After`).
    source: Option<ApiError>,
}

impl TwilioError {
    fn body(&self) -> String {
        json!({
            "code": self.code,
            "message": self.message,
            "more_info": format!("https://www.twilio.com/docs/errors/{}", self.code),
            "status": self.status.as_u16(),
        })
        .to_string()
    }

    fn unauthorized() -> Self {
        Self {
            status: StatusCode::UNAUTHORIZED,
            code: AUTHENTICATE,
            message: "Authenticate".to_owned(),
            source: None,
        }
    }

    fn not_found(what: &str) -> Self {
        Self {
            status: StatusCode::NOT_FOUND,
            code: 20404,
            message: format!("The requested resource {what} was not found"),
            source: None,
        }
    }
}

impl From<ApiError> for TwilioError {
    fn from(e: ApiError) -> Self {
        let code = match (e.code(), e.field()) {
            ("missing_field", Some("phone_number")) => 21604,
            ("missing_field", Some("message")) => 21602,
            ("invalid_phone_number", _) => 21211,
            ("recipient_opted_out", _) => 21610,
            ("insufficient_balance", _) => 20005,
            ("rate_limited" | "daily_limit_exceeded", _) => 20429,
            ("unauthorized", _) => AUTHENTICATE,
            ("not_found", _) => 20404,
            ("service_unavailable", _) => 20503,
            ("whatsapp_window_closed", _) => 63016,
            // Twilio's "Invalid StatusCallback": not a URL, or one Herald may not post to.
            (_, Some("status_callback")) if e.status().is_client_error() => 21609,
            // Twilio's "invalid parameter" family has no closer code for the rest.
            _ if e.status().is_client_error() => 20001,
            _ => 20500,
        };
        Self {
            status: e.status(),
            code,
            message: e.to_string(),
            source: Some(e),
        }
    }
}

impl IntoResponse for TwilioError {
    fn into_response(self) -> Response {
        let mut response = json_answer(self.status, self.body());
        if let Some(source) = &self.source {
            source.decorate(&mut response);
        }
        response
    }
}

fn json_answer(status: StatusCode, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// Checks Basic auth against the path's account: the user must be the account id the API
/// key (the password) belongs to. Returns the account and the key (which signs the
/// account's Twilio-format status callbacks).
async fn authorize(
    state: &AppState,
    headers: &HeaderMap,
    account_sid: &str,
) -> Result<(AccountId, String), TwilioError> {
    let (user, key) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| {
            base64::engine::general_purpose::STANDARD
                .decode(b.trim())
                .ok()
        })
        .and_then(|raw| String::from_utf8(raw).ok())
        .and_then(|pair| {
            pair.split_once(':')
                .map(|(u, k)| (u.to_owned(), k.to_owned()))
        })
        .ok_or_else(TwilioError::unauthorized)?;
    let found = state
        .authenticate(&key)
        .await
        .map_err(TwilioError::from)?
        .ok_or_else(TwilioError::unauthorized)?;
    if found.account_id.as_str() != user || user != account_sid {
        return Err(TwilioError::unauthorized());
    }
    state
        .check_rate(&found)
        .await
        .map_err(|retry_after| TwilioError::from(ApiError::RateLimited { retry_after }))?;
    Ok((found.account_id, key))
}

fn rfc2822(t: Timestamp) -> String {
    chrono::DateTime::from_timestamp_millis(t.millis())
        .map(|d| d.to_rfc2822())
        .unwrap_or_default()
}

fn error_code(code: Option<&str>) -> Value {
    code.map_or(Value::Null, |c| json!(twilio_format::error_code(c)))
}

/// One message as Twilio's Message resource.
fn resource(account: &AccountId, m: &MessageSummary) -> Value {
    let uri = format!(
        "/2010-04-01/Accounts/{account}/Messages/{}.json",
        m.message_id
    );
    let whatsapp = m.channel == Channel::Whatsapp;
    let address = |n: &str| {
        if whatsapp {
            format!("whatsapp:{n}")
        } else {
            n.to_owned()
        }
    };
    let handed_over = m.status.was_handed_over();
    json!({
        "account_sid": account.as_str(),
        "api_version": "2010-04-01",
        "body": m.body,
        "date_created": rfc2822(m.created_at),
        "date_sent": handed_over.then(|| rfc2822(m.updated_at)),
        "date_updated": rfc2822(m.updated_at),
        "direction": "outbound-api",
        "error_code": error_code(m.error_code.as_deref()),
        "error_message": m.error_message,
        "from": m.sender_id.as_deref().map(address),
        "messaging_service_sid": Value::Null,
        "num_media": "0",
        "num_segments": m.segments.to_string(),
        "price": handed_over.then(|| format!("-{:.5}", m.cost.to_f64())),
        "price_unit": "USD",
        "sid": m.message_id.as_str(),
        "status": twilio_format::status_name(m.status),
        "subresource_uris": {"media": uri.replace(".json", "/Media.json")},
        "to": address(&m.phone_number),
        "uri": uri,
    })
}

/// The form's fields, repeated names kept (`MediaUrl`).
fn form(body: &[u8]) -> Result<Vec<(String, String)>, TwilioError> {
    serde_urlencoded::from_bytes(body).map_err(|_| {
        TwilioError::from(ApiError::invalid(
            "body",
            "must be form-encoded (application/x-www-form-urlencoded)",
        ))
    })
}

fn first<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// `POST …/Messages.json`: Twilio's send, through Herald's own.
pub(crate) async fn create_message(
    State(state): State<AppState>,
    PathParam(account_sid): PathParam,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match create(&state, &account_sid, &headers, &body).await {
        Ok(response) => response,
        Err(e) => e.into_response(),
    }
}

async fn create(
    state: &AppState,
    account_sid: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, TwilioError> {
    let (account, api_key) = authorize(state, headers, account_sid).await?;
    let fields = form(body)?;
    // Twilio posts status callbacks form-encoded and signed with the auth token (here, the
    // API key, which Herald keeps only hashed): the message carries the key sealed with
    // credentials.key. Without one the callback is refused rather than ignored, so no
    // application waits for callbacks that never come.
    let callback = first(&fields, "StatusCallback");
    let sealing = match callback {
        None => None,
        Some(_) => Some(state.accounts().sealing_key().ok_or_else(|| {
            TwilioError {
                status: StatusCode::BAD_REQUEST,
                code: 21609,
                message: "StatusCallback needs this Herald to have credentials.key set \
                              (it seals the key that signs callbacks); receive status changes \
                              through the account's webhook (PUT /api/messaging/webhook) instead"
                    .to_owned(),
                source: None,
            }
        })?),
    };
    let validity = match first(&fields, "ValidityPeriod") {
        None => None,
        Some(v) => Some(
            v.parse::<i64>()
                .ok()
                .filter(|s| (1..=36_000).contains(s))
                .ok_or_else(|| ApiError::invalid("ValidityPeriod", "must be 1 to 36000 seconds"))?,
        ),
    };
    let to = first(&fields, "To");
    let from = first(&fields, "From").or_else(|| first(&fields, "MessagingServiceSid"));
    let whatsapp = to.is_some_and(|t| t.starts_with("whatsapp:"));
    let mut send = serde_json::Map::new();
    if let Some(to) = to {
        send.insert(
            "phone_number".into(),
            json!(to.trim_start_matches("whatsapp:")),
        );
    }
    if let Some(text) = first(&fields, "Body") {
        send.insert("message".into(), json!(text));
    }
    if let Some(from) = from {
        send.insert(
            "sender_id".into(),
            json!(from.trim_start_matches("whatsapp:")),
        );
    }
    if whatsapp {
        send.insert("channel".into(), json!("whatsapp"));
    }
    if let Some(url) = first(&fields, "MediaUrl") {
        send.insert("attachment_url".into(), json!(url));
    }
    if let Some(at) = first(&fields, "SendAt") {
        send.insert("scheduled_at".into(), json!(at));
    }
    if let Some(url) = callback {
        send.insert("status_callback".into(), json!(url));
    }
    let mut prepared = send::prepare_value(state, &account, Value::Object(send), "")?;
    if let Some(sealing) = &sealing {
        let m = &mut prepared.message;
        m.twilio_callback_signer = Some(twilio_format::seal_signer(
            sealing,
            &api_key,
            m.message_id.as_str(),
        ));
    }
    if let Some(seconds) = validity {
        let m = &mut prepared.message;
        let until = Timestamp::from_millis(m.due_at.millis().saturating_add(seconds * 1000));
        m.expires_at = m.expires_at.min(until);
    }
    send::check_whatsapp_window(state, &account, &prepared.message, "").await?;
    let m = &prepared.message;
    let now = Timestamp::now();
    let summary = MessageSummary {
        message_id: m.message_id.clone(),
        campaign_id: None,
        channel: m.channel,
        phone_number: m.phone_number.clone(),
        sender_id: m.sender_id.clone(),
        body: m.body.clone(),
        priority: m.priority,
        status: MessageStatus::Queued,
        segments: i64::from(m.segments),
        cost: m.cost,
        error_code: None,
        error_message: None,
        created_at: now,
        updated_at: now,
    };
    let created = resource(&account, &summary).to_string();
    let outcome = state
        .store()
        .accept(AcceptRequest {
            account_id: account,
            idempotency: None,
            messages: vec![prepared.message],
            render: Box::new(move |outcomes: &[ItemOutcome]| {
                match outcomes.first().copied().and_then(send::refusal) {
                    None => StoredResponse {
                        status: StatusCode::CREATED.as_u16(),
                        body: created,
                    },
                    Some(e) => {
                        let e = TwilioError::from(e);
                        StoredResponse {
                            status: e.status.as_u16(),
                            body: e.body(),
                        }
                    }
                }
            }),
        })
        .await
        .map_err(|e| TwilioError::from(ApiError::from(e)))?;
    let stored = match outcome {
        AcceptOutcome::Done(s) | AcceptOutcome::Replayed(s) => s,
        AcceptOutcome::Conflict => return Err(ApiError::IdempotencyConflict.into()),
    };
    if stored.status == StatusCode::CREATED.as_u16() {
        state.metrics().accepted(summary.channel, 1);
    }
    let status = StatusCode::from_u16(stored.status).unwrap_or(StatusCode::CREATED);
    Ok(json_answer(status, stored.body))
}

/// `GET …/Messages/{Sid}.json`.
pub(crate) async fn fetch_message(
    State(state): State<AppState>,
    path: Result<axum::extract::Path<(String, String)>, axum::extract::rejection::PathRejection>,
    headers: HeaderMap,
) -> Response {
    let found = async {
        let axum::extract::Path((account_sid, sid)) =
            path.map_err(|_| TwilioError::not_found("path"))?;
        let (account, _) = authorize(&state, &headers, &account_sid).await?;
        let sid = sid.strip_suffix(".json").unwrap_or(&sid);
        let id = MessageId::parse(sid).ok_or_else(|| TwilioError::not_found(sid))?;
        let summary = state
            .store()
            .message_summary(&account, &id)
            .await
            .map_err(|e| TwilioError::from(ApiError::from(e)))?
            .ok_or_else(|| TwilioError::not_found(sid))?;
        Ok::<_, TwilioError>(resource(&account, &summary))
    }
    .await;
    match found {
        Ok(resource) => json_answer(StatusCode::OK, resource.to_string()),
        Err(e) => e.into_response(),
    }
}

/// Twilio's largest page.
const MAX_PAGE_SIZE: usize = 1000;

/// `GET …/Messages.json`: newest first, `To`, `From`, `DateSent` (also `DateSent<` and
/// `DateSent>`), Twilio's paging (`PageSize`, `Page`, `PageToken`, `next_page_uri`).
pub(crate) async fn list_messages(
    State(state): State<AppState>,
    PathParam(account_sid): PathParam,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    match list(
        &state,
        &account_sid,
        &headers,
        query.as_deref().unwrap_or(""),
    )
    .await
    {
        Ok(page) => json_answer(StatusCode::OK, page.to_string()),
        Err(e) => e.into_response(),
    }
}

/// A `DateSent` value: a day (`2026-12-05`) or a time; the day it falls on, in UTC.
fn day_of(field: &str, raw: &str) -> Result<(Timestamp, Timestamp), TwilioError> {
    let date = raw
        .get(..10)
        .and_then(|d| chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d").ok());
    let start = date
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| Timestamp::from_millis(t.and_utc().timestamp_millis()))
        .ok_or_else(|| TwilioError::from(ApiError::invalid(field, "must be a date, YYYY-MM-DD")))?;
    Ok((start, Timestamp::from_millis(start.millis() + 86_400_000)))
}

async fn list(
    state: &AppState,
    account_sid: &str,
    headers: &HeaderMap,
    query: &str,
) -> Result<Value, TwilioError> {
    let (account, _) = authorize(state, headers, account_sid).await?;
    let params: Vec<(String, String)> = serde_urlencoded::from_str(query)
        .map_err(|_| TwilioError::from(ApiError::invalid("query", "must be URL-encoded")))?;
    let get = |name: &str| first(&params, name);
    let page_size = match get("PageSize") {
        None => 50,
        Some(n) => n
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_PAGE_SIZE).contains(n))
            .ok_or_else(|| ApiError::invalid("PageSize", "must be from 1 to 1000"))?,
    };
    let page: u64 = get("Page").and_then(|p| p.parse().ok()).unwrap_or(0);
    let mut search = MessageSearch {
        limit: page_size,
        before: parse_cursor("PageToken", get("PageToken"))?,
        ..MessageSearch::default()
    };
    if let Some(to) = get("To") {
        let region = state.region_of(&account);
        let number = crate::domain::E164::parse(to.trim_start_matches("whatsapp:"), region)
            .map_err(|e| ApiError::phone("To", &e))?;
        search.phone_number = Some(number.as_str().to_owned());
    }
    if let Some(from) = get("From") {
        search.sender_id = Some(from.trim_start_matches("whatsapp:").to_owned());
    }
    if let Some(day) = get("DateSent") {
        let (start, end) = day_of("DateSent", day)?;
        search.created_from = Some(start);
        search.created_to = Some(end);
    }
    if let Some(day) = get("DateSent<") {
        search.created_to = Some(day_of("DateSent<", day)?.1);
    }
    if let Some(day) = get("DateSent>") {
        search.created_from = Some(day_of("DateSent>", day)?.0);
    }
    let page_found = state
        .store()
        .search_messages(&account, &search)
        .await
        .map_err(|e| TwilioError::from(ApiError::from(e)))?;
    let found = page_found.messages;
    // Paging links repeat the filters; the token carries the position.
    let filters: Vec<(&str, &str)> = params
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "Page" | "PageSize" | "PageToken"))
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let base = format!("/2010-04-01/Accounts/{account}/Messages.json");
    let link = |page: u64, token: Option<&str>| {
        let mut pairs: Vec<(&str, String)> =
            filters.iter().map(|(k, v)| (*k, (*v).to_owned())).collect();
        pairs.push(("PageSize", page_size.to_string()));
        pairs.push(("Page", page.to_string()));
        if let Some(token) = token {
            pairs.push(("PageToken", token.to_owned()));
        }
        format!(
            "{base}?{}",
            serde_urlencoded::to_string(&pairs).unwrap_or_default()
        )
    };
    let next = page_found.next.map(|(at, id)| cursor(at, &id));
    let start = page.saturating_mul(page_size as u64);
    let messages: Vec<Value> = found.iter().map(|m| resource(&account, m)).collect();
    Ok(json!({
        "end": start.saturating_add(messages.len() as u64).saturating_sub(1),
        "first_page_uri": link(0, None),
        "messages": messages,
        "next_page_uri": next.as_deref().map(|token| link(page.saturating_add(1), Some(token))),
        "page": page,
        "page_size": page_size,
        "previous_page_uri": Value::Null,
        "start": start,
        "uri": link(page, get("PageToken")),
    }))
}
