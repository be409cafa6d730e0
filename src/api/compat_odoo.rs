//! Seed 000's SMS endpoints (`/sms/send`, `/sms/status/{id}`), which its clients call with a
//! JSON-RPC envelope (`{"jsonrpc": "2.0", "params": {…}, "id": …}`) and read `result` from.
//! Plain bodies work too; the answer comes in the style the request was made in.

use super::extract::{Auth, Idempotency, MaybeJsonBody, PathParam};
use super::messages::render_one;
use super::send::{self, Envelope};
use super::{ApiError, AppState};
use crate::domain::{MessageId, MessageStatus};
use crate::store::AcceptRequest;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde::Serialize;
use utoipa::ToSchema;

/// Unwraps a JSON-RPC envelope if there is one.
pub(super) fn unwrap(
    body: Option<serde_json::Value>,
) -> Result<(Envelope, serde_json::Value), ApiError> {
    let Some(serde_json::Value::Object(mut object)) = body else {
        return Ok((Envelope::Plain, serde_json::json!({})));
    };
    if !object.contains_key("jsonrpc") && !object.contains_key("params") {
        return Ok((Envelope::Plain, serde_json::Value::Object(object)));
    }
    let id = object.remove("id").unwrap_or(serde_json::Value::Null);
    let envelope = Envelope::JsonRpc { id };
    match object.remove("params") {
        Some(params @ serde_json::Value::Object(_)) => Ok((envelope, params)),
        None | Some(serde_json::Value::Null) => Ok((envelope, serde_json::json!({}))),
        Some(_) => Err(ApiError::InvalidJson(
            "`params` must be a JSON object".into(),
        )),
    }
}

/// Runs `handle` on a seed 000 request's parameters (the envelope unwrapped) and answers
/// `200` with its result, or its error, in the style the request was made in.
pub(super) async fn enveloped<T, Fut>(
    body: Option<serde_json::Value>,
    handle: impl FnOnce(serde_json::Value) -> Fut,
) -> Response
where
    T: Serialize,
    Fut: std::future::Future<Output = Result<T, ApiError>>,
{
    let (envelope, params) = match unwrap(body) {
        Ok(parts) => parts,
        Err(e) => return Envelope::Plain.error(e),
    };
    match handle(params).await {
        Ok(result) => send::json_response(StatusCode::OK, envelope.ok_body(&result)),
        Err(e) => envelope.error(e),
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct SmsSendResult {
    pub success: bool,
    pub message_id: String,
    /// The same id (seed 000 names it twice).
    pub sms_id: String,
    #[schema(example = "queued")]
    pub status: &'static str,
}

/// Send an SMS (seed 000); plain or JSON-RPC.
#[utoipa::path(
    post,
    path = "/api/messaging/sms/send",
    tag = "seed 000 (Odoo SMS)",
    request_body(content = super::send::SendFields, description = "Plain, or inside a JSON-RPC envelope's `params`"),
    responses(
        (status = 200, description = "Queued (inside `result` when enveloped)", body = SmsSendResult),
        (status = 400, description = "invalid_phone_number, missing_field, …"),
        (status = 401, description = "unauthorized"),
        (status = 402, description = "insufficient_balance"),
        (status = 422, description = "whatsapp_window_closed (a free-form WhatsApp message outside the 24-hour window)"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn sms_send(
    State(state): State<AppState>,
    Auth(key): Auth,
    Idempotency(idempotency): Idempotency,
    MaybeJsonBody(body): MaybeJsonBody,
) -> Response {
    let (envelope, params) = match unwrap(body) {
        Ok(parts) => parts,
        Err(e) => return Envelope::Plain.error(e),
    };
    match send_one(&state, key.account_id, idempotency, params, &envelope).await {
        Ok(response) => response,
        Err(e) => envelope.error(e),
    }
}

async fn send_one(
    state: &AppState,
    account_id: crate::domain::AccountId,
    idempotency: Option<crate::idempotency::IdempotencyKey>,
    params: serde_json::Value,
    envelope: &Envelope,
) -> Result<Response, ApiError> {
    let idempotency = send::idempotency_record(idempotency, "sms/send", &params);
    let prepared = send::prepare_value(state, &account_id, params, "")?;
    send::check_whatsapp_window(state, &account_id, &prepared.message, "").await?;
    let id = prepared.message.message_id.to_string();
    let result = SmsSendResult {
        success: true,
        message_id: id.clone(),
        sms_id: id,
        status: MessageStatus::Queued.as_str(),
    };
    let channel = prepared.message.channel;
    let style = envelope.clone();
    let outcome = state
        .store()
        .accept(AcceptRequest {
            account_id,
            idempotency,
            messages: vec![prepared.message],
            render: Box::new(move |outcomes| {
                let mut stored = render_one(outcomes, &result, &style);
                // Seed 000 answers 200 where seed 004 answers 202.
                if stored.status == StatusCode::ACCEPTED.as_u16() {
                    stored.status = StatusCode::OK.as_u16();
                }
                stored
            }),
        })
        .await?;
    if matches!(&outcome, crate::store::AcceptOutcome::Done(r) if r.status == 200) {
        state.metrics().accepted(channel, 1);
    }
    Ok(send::respond(outcome, envelope))
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct SmsStatusResult {
    pub message_id: String,
    pub status: &'static str,
    pub phone_number: String,
    /// `YYYY-MM-DD HH:MM:SS` (UTC), null until sent.
    #[schema(example = "2025-12-03 10:30:00")]
    pub sent_date: Option<String>,
}

/// An SMS's status (seed 000); plain or JSON-RPC.
#[utoipa::path(
    post,
    path = "/api/messaging/sms/status/{message_id}",
    tag = "seed 000 (Odoo SMS)",
    params(("message_id" = String, Path)),
    responses(
        (status = 200, description = "The status (inside `result` when enveloped)", body = SmsStatusResult),
        (status = 401, description = "unauthorized"),
        (status = 404, description = "not_found"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn sms_status(
    State(state): State<AppState>,
    Auth(key): Auth,
    PathParam(message_id): PathParam,
    MaybeJsonBody(body): MaybeJsonBody,
) -> Response {
    let envelope = match unwrap(body) {
        Ok((envelope, _)) => envelope,
        Err(e) => return Envelope::Plain.error(e),
    };
    let found = async {
        let id = MessageId::parse(&message_id).ok_or(ApiError::NotFound("message"))?;
        state
            .store()
            .message(&key.account_id, &id)
            .await?
            .ok_or(ApiError::NotFound("message"))
    }
    .await;
    match found {
        Ok(m) => {
            let result = SmsStatusResult {
                message_id: m.message_id.to_string(),
                status: m.status.as_str(),
                sent_date: m.reached(MessageStatus::Sent).map(|t| t.to_odoo()),
                phone_number: m.phone_number,
            };
            send::json_response(StatusCode::OK, envelope.ok_body(&result))
        }
        Err(e) => envelope.error(e),
    }
}
