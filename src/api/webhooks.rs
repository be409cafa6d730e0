//! Provider webhooks (SPEC §5): no API key; each provider proves itself by signature, which
//! its adapter checks. These handlers only read the request, hand it to the adapter, and
//! commit what it parsed through the receipt path before answering, so a `200` means the
//! receipts are on disk and the provider may stop retrying.

use super::{ApiError, AppState};
use crate::providers::whatsapp;
use crate::providers::{Provider, WebhookError, WebhookEvents, WebhookKind, WebhookRequest};
use crate::workers::ReceiptSink;
use axum::body::{Body, Bytes};
use axum::extract::{Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::collections::HashMap;

/// A status callback is a few hundred bytes; anything near this is not one.
const WEBHOOK_MAX_BYTES: usize = 64 * 1024;
/// Meta batches many statuses and messages into one notification.
const WHATSAPP_WEBHOOK_MAX_BYTES: usize = 1024 * 1024;

/// `POST /webhooks/twilio/status`: Twilio's `StatusCallback`, form-encoded and signed with
/// `X-Twilio-Signature`. Answers `200` with an empty body once the receipt is committed.
pub(super) async fn twilio_status(
    State(state): State<AppState>,
    request: Request,
) -> Result<StatusCode, ApiError> {
    let Some(twilio) = state.twilio() else {
        // Without an auth token no signature can be checked, so none is accepted.
        return Err(ApiError::InvalidSignature(
            "this Herald has no Twilio credentials to check the signature with",
        ));
    };
    let events = verified(&state, twilio, request, WEBHOOK_MAX_BYTES).await?;
    // Inbound messages are not parsed from a status callback; the inbound webhook (a later
    // issue) stores `events.inbound`.
    ReceiptSink::new(state.store().clone(), state.metrics().clone())
        .deliver(events.receipts)
        .await?;
    Ok(StatusCode::OK)
}

/// Reads a webhook request (at most `limit` bytes of body) and has `provider` check its
/// signature and parse it; nothing is applied yet.
async fn verified(
    state: &AppState,
    provider: &dyn Provider,
    request: Request,
    limit: usize,
) -> Result<WebhookEvents, ApiError> {
    let (parts, body) = request.into_parts();
    let body = read_body(state, body, limit).await?;
    let path_and_query = parts
        .uri
        .path_and_query()
        .map_or(parts.uri.path(), |p| p.as_str());
    provider
        .parse_webhook(WebhookRequest {
            kind: WebhookKind::Status,
            path_and_query,
            headers: &parts.headers,
            body: &body,
        })
        .map_err(ApiError::from)
}

/// Reads a webhook's raw body (signatures cover it byte for byte), within the limit.
async fn read_body(state: &AppState, body: Body, limit: usize) -> Result<Bytes, ApiError> {
    let max = limit.min(state.max_body_bytes());
    axum::body::to_bytes(body, max).await.map_err(|e| {
        if std::error::Error::source(&e).is_some_and(|s| s.is::<http_body_util::LengthLimitError>())
        {
            ApiError::PayloadTooLarge { max }
        } else {
            ApiError::invalid("body", "the request body could not be read")
        }
    })
}

/// `GET /webhooks/whatsapp`: Meta's verification of the callback URL. `hub.mode=subscribe`
/// with our verify token: `200` with `hub.challenge` as a plain-text body; anything else is
/// `403` in the error shape.
pub(super) async fn whatsapp_verify(
    State(state): State<AppState>,
    query: Result<Query<HashMap<String, String>>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::invalid("query", e.body_text()))?;
    let Some(provider) = state.whatsapp() else {
        return Err(ApiError::InvalidSignature(
            "this Herald has no WhatsApp Cloud API app configured to verify",
        ));
    };
    let field = |name: &str| query.get(name).map(String::as_str);
    match provider.verify_subscription(
        field("hub.mode"),
        field("hub.verify_token"),
        field("hub.challenge"),
    ) {
        Some(challenge) => Ok((
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            )],
            challenge.to_owned(),
        )
            .into_response()),
        None => Err(ApiError::InvalidSignature(
            "hub.mode must be `subscribe` and hub.verify_token must be providers.whatsapp_cloud.verify_token (with a hub.challenge to echo)",
        )),
    }
}

/// `POST /webhooks/whatsapp`: Meta's event notifications, signed with
/// `X-Hub-Signature-256`. Statuses are committed through the receipt path before the `200`
/// (Meta retries anything else); inbound messages are parsed and counted, and stored by a
/// later issue.
pub(super) async fn whatsapp_events(
    State(state): State<AppState>,
    request: Request,
) -> Result<StatusCode, ApiError> {
    let Some(provider) = state.whatsapp() else {
        // Without the app secret no signature can be checked, so none is accepted.
        return Err(ApiError::InvalidSignature(
            "this Herald has no WhatsApp app secret to check the signature with",
        ));
    };
    let events = verified(&state, provider, request, WHATSAPP_WEBHOOK_MAX_BYTES).await?;
    if !events.inbound.is_empty() {
        let count = u64::try_from(events.inbound.len()).unwrap_or(u64::MAX);
        tracing::info!(
            count,
            "inbound WhatsApp messages are not stored yet; dropped"
        );
        state.metrics().inbound_unstored(whatsapp::NAME, count);
    }
    ReceiptSink::new(state.store().clone(), state.metrics().clone())
        .deliver(events.receipts)
        .await?;
    Ok(StatusCode::OK)
}

impl From<WebhookError> for ApiError {
    fn from(e: WebhookError) -> Self {
        match e {
            WebhookError::BadSignature(reason) => ApiError::InvalidSignature(reason),
            WebhookError::Malformed { field, reason } => ApiError::InvalidField { field, reason },
            WebhookError::Unsupported => ApiError::NotFound("webhook"),
        }
    }
}
