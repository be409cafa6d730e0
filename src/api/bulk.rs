//! `POST /send-bulk/` (seed 004): up to `messaging.max_messages_per_batch` messages, each
//! accepted or refused on its own, all stored in one transaction.

use super::extract::{Auth, Idempotency, JsonBody};
use super::send::{self, Envelope, SendFields};
use super::{ApiError, AppState};
use crate::domain::MessageStatus;
use crate::store::{AcceptOutcome, AcceptRequest, ItemOutcome, StoredResponse};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde::Serialize;
use std::collections::HashMap;
use utoipa::ToSchema;

#[derive(Debug, serde::Deserialize, ToSchema)]
#[allow(dead_code)] // documents the body; the handler reads it item by item
pub(crate) struct SendBulkRequest {
    messages: Vec<SendFields>,
    /// Applied to every item that names none.
    campaign_id: Option<String>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct BulkResult {
    /// Position in `messages`, from 0.
    pub index: usize,
    pub success: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<&'static str>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct SendBulkResponse {
    pub success: bool,
    pub accepted: usize,
    pub rejected: usize,
    pub results: Vec<BulkResult>,
}

/// Each item before the store decides.
enum Slot {
    Refused(ApiError),
    /// Same number and text as item `of`.
    Duplicate {
        of: usize,
    },
    /// Sent to the store as its `n`-th message.
    Stored {
        n: usize,
        message_id: String,
    },
}

impl BulkResult {
    fn refused(index: usize, e: &ApiError) -> Self {
        Self {
            index,
            success: false,
            message_id: None,
            status: None,
            error: Some(e.to_string()),
            code: Some(e.code()),
        }
    }
}

/// Send many messages in one request.
#[utoipa::path(
    post,
    path = "/api/messaging/send-bulk/",
    tag = "messages",
    request_body = SendBulkRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "Replays the first answer for the same key and body")),
    responses(
        (status = 202, description = "Every item accepted or refused on its own", body = SendBulkResponse),
        (status = 400, description = "invalid_json, missing_field, invalid_field"),
        (status = 401, description = "unauthorized"),
        (status = 409, description = "idempotency_conflict"),
        (status = 413, description = "batch_too_large, payload_too_large"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn send_bulk(
    State(state): State<AppState>,
    Auth(key): Auth,
    Idempotency(idempotency): Idempotency,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let idempotency = send::idempotency_record(idempotency, "send-bulk", &body);
    let serde_json::Value::Object(mut body) = body else {
        return Err(ApiError::InvalidJson(
            "the body must be a JSON object".into(),
        ));
    };
    let items = match body.remove("messages") {
        Some(serde_json::Value::Array(items)) => items,
        Some(_) => {
            return Err(ApiError::invalid(
                "messages",
                "`messages` must be an array of messages",
            ));
        }
        None => {
            return Err(ApiError::MissingField {
                field: "messages".into(),
            });
        }
    };
    let max = state.settings().messaging.max_messages_per_batch;
    if items.len() > max {
        return Err(ApiError::BatchTooLarge { max });
    }
    if items.is_empty() {
        return Err(ApiError::invalid(
            "messages",
            "`messages` must hold at least one message",
        ));
    }
    let campaign_id = match body.remove("campaign_id") {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(s)) => Some(s),
        Some(_) => {
            return Err(ApiError::invalid(
                "campaign_id",
                "`campaign_id` must be a string",
            ));
        }
    };

    let mut slots = Vec::with_capacity(items.len());
    let mut messages = Vec::new();
    let mut seen: HashMap<(String, String), usize> = HashMap::new();
    for (index, item) in items.into_iter().enumerate() {
        let prefix = format!("messages[{index}].");
        let prepared = match item {
            serde_json::Value::Object(_) => {
                match send::prepare_value(&state, &key.account_id, item, &prefix) {
                    Ok(p) => {
                        send::check_whatsapp_window(&state, &key.account_id, &p.message, &prefix)
                            .await
                            .map(|()| p)
                    }
                    Err(e) => Err(e),
                }
            }
            _ => Err(ApiError::invalid(
                format!("messages[{index}]"),
                "each message must be a JSON object",
            )),
        };
        let slot = match prepared {
            Err(e) => Slot::Refused(e),
            Ok(mut p) => {
                let identity = (p.message.phone_number.clone(), p.message.body.clone());
                if let Some(of) = seen.get(&identity) {
                    Slot::Duplicate { of: *of }
                } else {
                    seen.insert(identity, index);
                    if p.message.campaign_id.is_none() {
                        p.message.campaign_id.clone_from(&campaign_id);
                    }
                    let slot = Slot::Stored {
                        n: messages.len(),
                        message_id: p.message.message_id.to_string(),
                    };
                    messages.push(p.message);
                    slot
                }
            }
        };
        slots.push(slot);
    }

    if messages.is_empty() {
        // Nothing to store: answer at once, remember nothing.
        let response = render(&slots, &[]);
        return Ok(send::json_response(StatusCode::ACCEPTED, response.body));
    }
    let channels: Vec<_> = messages.iter().map(|m| m.channel).collect();
    let outcome = state
        .store()
        .accept(AcceptRequest {
            account_id: key.account_id,
            idempotency,
            messages,
            render: Box::new(move |outcomes| render(&slots, outcomes)),
        })
        .await?;
    if let AcceptOutcome::Done(_) = &outcome {
        // Counted per channel, for what the store actually took.
        for channel in channels {
            state.metrics().accepted(channel, 1);
        }
    }
    Ok(send::respond(outcome, &Envelope::Plain))
}

fn render(slots: &[Slot], outcomes: &[ItemOutcome]) -> StoredResponse {
    let mut results: Vec<BulkResult> = Vec::with_capacity(slots.len());
    for (index, slot) in slots.iter().enumerate() {
        let result = match slot {
            Slot::Refused(e) => BulkResult::refused(index, e),
            Slot::Stored { n, message_id } => {
                match outcomes.get(*n).copied().and_then(send::refusal) {
                    None => BulkResult {
                        index,
                        success: true,
                        message_id: Some(message_id.clone()),
                        status: Some(MessageStatus::Queued.as_str()),
                        error: None,
                        code: None,
                    },
                    Some(e) => BulkResult::refused(index, &e),
                }
            }
            Slot::Duplicate { of } => {
                let earlier = results.get(*of).and_then(|r| r.message_id.clone());
                BulkResult {
                    index,
                    success: false,
                    message_id: earlier,
                    status: None,
                    error: Some(format!(
                        "the same number and text as messages[{of}]; sent once"
                    )),
                    code: Some("duplicate_recipient"),
                }
            }
        };
        results.push(result);
    }
    let accepted = results.iter().filter(|r| r.success).count();
    let body = SendBulkResponse {
        success: true,
        accepted,
        rejected: results.len() - accepted,
        results,
    };
    StoredResponse {
        status: StatusCode::ACCEPTED.as_u16(),
        body: serde_json::to_string(&body).unwrap_or_default(),
    }
}
