//! What single and bulk sends share: turning request fields into a priced, validated
//! [`NewMessage`], and turning the store's decision into the HTTP answer.

use super::extract::fields;
use super::{ApiError, AppState};
use crate::domain::{
    AccountId, Channel, E164, MessageId, MessageText, NumberType, Priority, Timestamp,
    WhatsappTemplate, phone,
};
use crate::idempotency::{IdempotencyKey, request_hash};
use crate::store::{AcceptOutcome, IdempotencyRecord, ItemOutcome, NewMessage, StoredResponse};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use std::time::Duration;
use utoipa::ToSchema;

/// The fields of one message, as seed 004 names them, plus Herald's own.
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct SendFields {
    /// The recipient, as people type it; national formats are read in the account's region.
    #[schema(example = "+14155550123")]
    pub phone_number: String,
    /// The text: at most 1,600 characters for SMS, 4,096 for WhatsApp.
    #[schema(example = "Hello World!")]
    pub message: String,
    pub campaign_id: Option<String>,
    /// `low`, `normal` (default), `high` or `urgent`.
    pub priority: Option<String>,
    /// Media to attach (WhatsApp; MMS where the provider supports it).
    pub attachment_url: Option<String>,
    /// `sms` (default) or `whatsapp`.
    pub channel: Option<String>,
    /// Sender id or number to send from; the provider's default when absent.
    pub sender_id: Option<String>,
    /// RFC 3339 time to send at; now when absent or past.
    pub scheduled_at: Option<String>,
    /// URL that receives a signed POST at every status change.
    pub status_callback: Option<String>,
    /// Your own data, returned with the message.
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<serde_json::Map<String, serde_json::Value>>,
    /// Send as this approved WhatsApp template instead of as free text (`channel` must be
    /// `whatsapp`; not with `attachment_url`). Needed to reach someone whose last message is
    /// more than 24 hours old. `message` is then Herald's copy of the text, not sent.
    pub whatsapp_template: Option<TemplateFields>,
}

/// A WhatsApp template as a request names it.
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct TemplateFields {
    /// The template's name as approved in WhatsApp Manager.
    #[schema(example = "order_update")]
    pub name: String,
    /// The language of the approved translation, as Meta spells it.
    #[schema(example = "en_US")]
    pub language: String,
    /// Values of the body's `{{1}}`, `{{2}}`, … in order.
    pub variables: Option<Vec<String>>,
}

/// A message ready for the store, with what its answer reports.
pub(crate) struct Prepared {
    pub message: NewMessage,
    pub estimated_delivery: Option<Timestamp>,
}

/// WhatsApp's limit on a media caption (Meta's `caption.maxLength`).
const WHATSAPP_CAPTION_MAX: usize = 1024;
/// The furthest ahead a send may be scheduled.
const MAX_SCHEDULE_AHEAD: Duration = Duration::from_secs(366 * 24 * 60 * 60);
/// In characters, as JSON Schema's `maxLength` counts (the contract says 2048).
const MAX_URL_LEN: usize = 2048;

pub(crate) fn url(field: String, value: Option<String>) -> Result<Option<String>, ApiError> {
    match value {
        None => Ok(None),
        Some(v)
            if (v.starts_with("https://") || v.starts_with("http://"))
                && v.chars().count() <= MAX_URL_LEN
                && !v.chars().any(|c| c.is_whitespace() || c.is_control()) =>
        {
            Ok(Some(v))
        }
        Some(_) => Err(ApiError::invalid(
            field,
            format!("must be an http(s) URL of at most {MAX_URL_LEN} characters"),
        )),
    }
}

/// Validates and prices one message. `prefix` names where it sits in the body
/// (`messages[3].`), so errors point at the right field.
pub(crate) fn prepare(
    state: &AppState,
    account: &AccountId,
    f: SendFields,
    prefix: &str,
) -> Result<Prepared, ApiError> {
    let at = |name: &str| format!("{prefix}{name}");
    let MessageOptions {
        channel,
        priority,
        sender_id,
        due_at,
    } = options(
        f.channel.as_deref(),
        f.priority.as_deref(),
        f.sender_id,
        f.scheduled_at.as_deref(),
        prefix,
    )?;
    let text =
        MessageText::parse(f.message, channel).map_err(|e| ApiError::text(at("message"), &e))?;
    if channel == Channel::Whatsapp
        && f.attachment_url.is_some()
        && text.as_str().chars().count() > WHATSAPP_CAPTION_MAX
    {
        return Err(ApiError::invalid(
            at("message"),
            format!(
                "a WhatsApp message with `attachment_url` goes as the media's caption, which takes at most {WHATSAPP_CAPTION_MAX} characters"
            ),
        ));
    }
    let whatsapp_template = template(
        f.whatsapp_template,
        channel,
        f.attachment_url.is_some(),
        &at("whatsapp_template"),
    )?;
    let region = state.region_of(account);
    let phone_number = if state.settings().messaging.reject_fixed_line {
        let info = phone::inspect(&f.phone_number, region)
            .map_err(|e| ApiError::phone(at("phone_number"), &e))?;
        if info.number_type == NumberType::FixedLine {
            return Err(ApiError::InvalidPhoneNumber {
                field: at("phone_number"),
                reason: format!(
                    "{} is a fixed line, which cannot receive messages",
                    info.e164
                ),
            });
        }
        info.e164
    } else {
        E164::parse(&f.phone_number, region).map_err(|e| ApiError::phone(at("phone_number"), &e))?
    };
    let segments = crate::billing::measure(channel, text.as_str());
    let metadata = f.metadata.map(|m| serde_json::Value::Object(m).to_string());
    let status_callback = url(at("status_callback"), f.status_callback)?;
    if let Some(why) = status_callback.as_deref().and_then(|u| {
        crate::events::target::refusal(u, state.settings().webhooks.allow_private_targets)
    }) {
        return Err(ApiError::invalid(at("status_callback"), why));
    }
    let message = NewMessage {
        message_id: MessageId::generate(),
        campaign_id: f.campaign_id,
        channel,
        phone_number: phone_number.into_string(),
        sender_id,
        body: text.into_string(),
        attachment_url: url(at("attachment_url"), f.attachment_url)?,
        whatsapp_template,
        priority,
        segments: segments.count,
        cost: state.pricing().cost(channel, segments),
        due_at,
        expires_at: due_at.plus(state.settings().validity_period()),
        status_callback,
        twilio_callback_signer: None,
        metadata,
    };
    Ok(Prepared {
        estimated_delivery: state.typical_delivery(channel).map(|d| due_at.plus(d)),
        message,
    })
}

/// Parses a template reference; `at` names the field (`messages[2].whatsapp_template`).
fn template(
    fields: Option<TemplateFields>,
    channel: Channel,
    with_attachment: bool,
    at: &str,
) -> Result<Option<WhatsappTemplate>, ApiError> {
    let Some(t) = fields else { return Ok(None) };
    if channel != Channel::Whatsapp {
        return Err(ApiError::invalid(
            at,
            "templates are WhatsApp's: send it with `channel: \"whatsapp\"`, or leave `whatsapp_template` out of an SMS",
        ));
    }
    // A template's media lives in its header component, which Herald does not fill yet.
    if with_attachment {
        return Err(ApiError::invalid(
            at,
            "a template message cannot carry `attachment_url` (media in template headers is not supported yet): send the media as a message of its own",
        ));
    }
    WhatsappTemplate::parse(t.name, t.language, t.variables.unwrap_or_default())
        .map(Some)
        .map_err(|e| ApiError::invalid(format!("{at}.{}", e.field), e.reason))
}

/// A message's delivery options, as every kind of send spells them.
pub(crate) struct MessageOptions {
    pub channel: Channel,
    pub priority: Priority,
    pub sender_id: Option<String>,
    /// `scheduled_at`, or now when absent or past.
    pub due_at: Timestamp,
}

/// Parses the options shared by single sends, bulk items and campaigns.
pub(crate) fn options(
    channel: Option<&str>,
    priority: Option<&str>,
    sender_id: Option<String>,
    scheduled_at: Option<&str>,
    prefix: &str,
) -> Result<MessageOptions, ApiError> {
    let at = |name: &str| format!("{prefix}{name}");
    let channel = match channel {
        None => Channel::Sms,
        Some(c) => Channel::parse(c).ok_or_else(|| {
            ApiError::invalid(
                at("channel"),
                format!("unknown channel `{c}`; use `sms` or `whatsapp`"),
            )
        })?,
    };
    let priority = match priority {
        None => Priority::Normal,
        Some(p) => Priority::parse(p).ok_or_else(|| {
            ApiError::invalid(
                at("priority"),
                format!("unknown priority `{p}`; use `low`, `normal`, `high` or `urgent`"),
            )
        })?,
    };
    let sender_id = match sender_id {
        None => None,
        Some(s)
            if !s.is_empty()
                && s.len() <= 16
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '+' || c == ' ') =>
        {
            Some(s)
        }
        Some(_) => {
            return Err(ApiError::invalid(
                at("sender_id"),
                "must be 1 to 16 letters, digits, spaces or `+`",
            ));
        }
    };
    let now = Timestamp::now();
    let due_at = match scheduled_at {
        None => now,
        Some(s) => {
            let t = Timestamp::parse_rfc3339(s).ok_or_else(|| {
                ApiError::invalid(
                    at("scheduled_at"),
                    "must be an RFC 3339 time, e.g. 2026-01-31T09:00:00Z",
                )
            })?;
            if t > now.plus(MAX_SCHEDULE_AHEAD) {
                return Err(ApiError::invalid(
                    at("scheduled_at"),
                    "may be at most 366 days ahead",
                ));
            }
            t.max(now)
        }
    };
    Ok(MessageOptions {
        channel,
        priority,
        sender_id,
        due_at,
    })
}

/// Parses one message object into fields, then prepares it.
pub(crate) fn prepare_value(
    state: &AppState,
    account: &AccountId,
    value: serde_json::Value,
    prefix: &str,
) -> Result<Prepared, ApiError> {
    prepare(state, account, fields(value, prefix)?, prefix)
}

/// How the answer is dressed: plainly, or in seed 000's JSON-RPC envelope.
#[derive(Debug, Clone)]
pub(crate) enum Envelope {
    Plain,
    JsonRpc { id: serde_json::Value },
}

impl Envelope {
    pub(crate) fn ok_body(&self, result: &impl Serialize) -> String {
        let result = serde_json::to_value(result).unwrap_or_default();
        match self {
            Envelope::Plain => result.to_string(),
            Envelope::JsonRpc { id } => {
                serde_json::json!({"jsonrpc": "2.0", "id": id, "result": result}).to_string()
            }
        }
    }

    pub(crate) fn error_body(&self, e: &ApiError) -> String {
        match self {
            Envelope::Plain => e.body(),
            Envelope::JsonRpc { id } => serde_json::json!({
                "jsonrpc": "2.0",
                "id": id,
                "error": {
                    "code": e.status().as_u16(),
                    "message": e.to_string(),
                    "data": {"code": e.code(), "field": e.field()},
                },
            })
            .to_string(),
        }
    }

    pub(crate) fn error(&self, e: ApiError) -> Response {
        let mut response = json_response(e.status(), self.error_body(&e));
        e.decorate(&mut response);
        response
    }
}

/// The error for a message the store refused.
pub(crate) fn refusal(outcome: ItemOutcome) -> Option<ApiError> {
    match outcome {
        ItemOutcome::Accepted => None,
        ItemOutcome::OptedOut => Some(ApiError::RecipientOptedOut {
            field: "phone_number".to_owned(),
        }),
        ItemOutcome::InsufficientBalance => Some(ApiError::InsufficientBalance),
        ItemOutcome::DailyLimitExceeded => Some(ApiError::DailyLimitExceeded {
            retry_after: until_utc_midnight(),
        }),
    }
}

fn until_utc_midnight() -> Duration {
    const DAY_MS: i64 = 24 * 60 * 60 * 1000;
    let ms = DAY_MS - Timestamp::now().millis().rem_euclid(DAY_MS);
    Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

pub(crate) fn idempotency_record(
    key: Option<IdempotencyKey>,
    endpoint: &str,
    body: &serde_json::Value,
) -> Option<IdempotencyRecord> {
    key.map(|key| IdempotencyRecord {
        key: key.into_string(),
        request_hash: request_hash(endpoint, body),
    })
}

pub(crate) fn json_response(status: StatusCode, body: String) -> Response {
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}

/// The HTTP answer for what the store decided.
pub(crate) fn respond(outcome: AcceptOutcome, envelope: &Envelope) -> Response {
    match outcome {
        AcceptOutcome::Done(stored) => stored_response(stored, false),
        AcceptOutcome::Replayed(stored) => stored_response(stored, true),
        AcceptOutcome::Conflict => envelope.error(ApiError::IdempotencyConflict),
    }
}

fn stored_response(stored: StoredResponse, replayed: bool) -> Response {
    let status = StatusCode::from_u16(stored.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = json_response(status, stored.body);
    if replayed {
        response
            .headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    if status == StatusCode::TOO_MANY_REQUESTS
        && let Ok(v) = HeaderValue::from_str(&until_utc_midnight().as_secs().max(1).to_string())
    {
        response.headers_mut().insert(header::RETRY_AFTER, v);
    }
    response
}

/// How long after a customer's last message WhatsApp takes free-form messages to them.
const WHATSAPP_WINDOW: std::time::Duration = std::time::Duration::from_secs(24 * 60 * 60);

/// Refuses a free-form WhatsApp message to a number that has not written to the account in
/// the last 24 hours, where the message would go through Meta's Cloud API (which refuses it
/// with 131047): the deployment's WhatsApp provider, or the account's own number. A template
/// message may go at any time. `prefix` names the item in a bulk request.
pub(crate) async fn check_whatsapp_window(
    state: &AppState,
    account: &AccountId,
    message: &NewMessage,
    prefix: &str,
) -> Result<(), ApiError> {
    if message.channel != Channel::Whatsapp || message.whatsapp_template.is_some() {
        return Ok(());
    }
    let through_meta = state.settings().providers.whatsapp == crate::config::WHATSAPP_CLOUD
        || state
            .accounts()
            .for_channel(account, Channel::Whatsapp)
            .await?
            .is_some();
    if !through_meta {
        return Ok(());
    }
    let last = state
        .store()
        .last_inbound_at(account, Channel::Whatsapp, &message.phone_number)
        .await?;
    let open = last.is_some_and(|at| {
        Timestamp::now().millis().saturating_sub(at.millis()) < WHATSAPP_WINDOW.as_millis() as i64
    });
    if open {
        Ok(())
    } else {
        Err(ApiError::WhatsappWindowClosed {
            field: format!("{prefix}whatsapp_template"),
        })
    }
}
