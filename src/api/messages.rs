//! `POST /send-message/` and `GET /message/{id}/status/` (seed 004).

use super::extract::{Auth, Idempotency, JsonBody, PathParam};
use super::send::{self, Envelope, SendFields};
use super::{ApiError, AppState};
use crate::domain::{MessageId, MessageStatus};
use crate::store::{AcceptRequest, ItemOutcome, StoredResponse};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde::Serialize;
use utoipa::ToSchema;

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct SendMessageResponse {
    pub success: bool,
    #[schema(example = "msg_01JDZ8K5Q6V0X3M2N4P7R9S1T2")]
    pub message_id: String,
    #[schema(example = "queued")]
    pub status: &'static str,
    #[schema(example = "normal")]
    pub priority: &'static str,
    /// RFC 3339, or null when unknown.
    pub estimated_delivery: Option<String>,
    pub segments: u32,
    /// In the account's currency.
    pub cost: f64,
}

/// Send one message.
#[utoipa::path(
    post,
    path = "/api/messaging/send-message/",
    tag = "messages",
    request_body = SendFields,
    params(("Idempotency-Key" = Option<String>, Header, description = "Replays the first answer for the same key and body")),
    responses(
        (status = 202, description = "Stored and queued", body = SendMessageResponse),
        (status = 400, description = "invalid_json, missing_field, invalid_field, invalid_phone_number"),
        (status = 401, description = "unauthorized"),
        (status = 402, description = "insufficient_balance"),
        (status = 409, description = "idempotency_conflict"),
        (status = 413, description = "payload_too_large"),
        (status = 415, description = "unsupported_media_type"),
        (status = 422, description = "whatsapp_window_closed: a free-form WhatsApp message to a number that has not written in 24 hours (through the Cloud API); send a whatsapp_template"),
        (status = 429, description = "rate_limited, daily_limit_exceeded"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn send_message(
    State(state): State<AppState>,
    Auth(key): Auth,
    Idempotency(idempotency): Idempotency,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let idempotency = send::idempotency_record(idempotency, "send-message", &body);
    let prepared = send::prepare_value(&state, &key.account_id, body, "")?;
    send::check_whatsapp_window(&state, &key.account_id, &prepared.message, "").await?;
    let m = &prepared.message;
    let accepted = SendMessageResponse {
        success: true,
        message_id: m.message_id.to_string(),
        status: MessageStatus::Queued.as_str(),
        priority: m.priority.as_str(),
        estimated_delivery: prepared.estimated_delivery.map(|t| t.to_rfc3339()),
        segments: m.segments,
        cost: m.cost.to_f64(),
    };
    let channel = m.channel;
    let outcome = state
        .store()
        .accept(AcceptRequest {
            account_id: key.account_id,
            idempotency,
            messages: vec![prepared.message],
            render: Box::new(move |outcomes| render_one(outcomes, &accepted, &Envelope::Plain)),
        })
        .await?;
    if matches!(&outcome, crate::store::AcceptOutcome::Done(r) if r.status == 202) {
        state.metrics().accepted(channel, 1);
    }
    Ok(send::respond(outcome, &Envelope::Plain))
}

/// The stored answer for a one-message request.
pub(crate) fn render_one(
    outcomes: &[ItemOutcome],
    accepted: &impl Serialize,
    envelope: &Envelope,
) -> StoredResponse {
    match outcomes.first().copied().and_then(send::refusal) {
        None => StoredResponse {
            status: StatusCode::ACCEPTED.as_u16(),
            body: envelope.ok_body(accepted),
        },
        Some(e) => StoredResponse {
            status: e.status().as_u16(),
            body: envelope.error_body(&e),
        },
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct HistoryEntry {
    pub status: &'static str,
    /// RFC 3339.
    pub at: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct MessageStatusResponse {
    pub message_id: String,
    pub status: &'static str,
    pub phone_number: String,
    pub channel: &'static str,
    pub priority: &'static str,
    pub segments: u32,
    pub cost: f64,
    pub provider: Option<String>,
    pub provider_message_id: Option<String>,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub created_at: String,
    pub sent_at: Option<String>,
    pub delivered_at: Option<String>,
    pub read_at: Option<String>,
    /// Oldest first; each status at most once.
    pub history: Vec<HistoryEntry>,
}

/// A message's status and history.
#[utoipa::path(
    get,
    path = "/api/messaging/message/{message_id}/status/",
    tag = "messages",
    params(("message_id" = String, Path, description = "The `msg_…` id from the send")),
    responses(
        (status = 200, body = MessageStatusResponse),
        (status = 401, description = "unauthorized"),
        (status = 404, description = "not_found: no such message in this account"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn message_status(
    State(state): State<AppState>,
    Auth(key): Auth,
    PathParam(message_id): PathParam,
) -> Result<Json<MessageStatusResponse>, ApiError> {
    let id = MessageId::parse(&message_id).ok_or(ApiError::NotFound("message"))?;
    let m = state
        .store()
        .message(&key.account_id, &id)
        .await?
        .ok_or(ApiError::NotFound("message"))?;
    let at = |s: MessageStatus| m.reached(s).map(|t| t.to_rfc3339());
    Ok(Json(MessageStatusResponse {
        message_id: m.message_id.to_string(),
        status: m.status.as_str(),
        phone_number: m.phone_number.clone(),
        channel: m.channel.as_str(),
        priority: m.priority.as_str(),
        segments: m.segments,
        cost: m.cost.to_f64(),
        sent_at: at(MessageStatus::Sent),
        delivered_at: at(MessageStatus::Delivered),
        read_at: at(MessageStatus::Read),
        history: m
            .history
            .iter()
            .map(|(status, t)| HistoryEntry {
                status: status.as_str(),
                at: t.to_rfc3339(),
            })
            .collect(),
        provider: m.provider,
        provider_message_id: m.provider_message_id,
        error_code: m.error_code,
        error_message: m.error_message,
        created_at: m.created_at.to_rfc3339(),
    }))
}
