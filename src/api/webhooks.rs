//! Provider webhooks (SPEC §5): no API key; each provider proves itself by signature, which
//! its adapter checks. These handlers only read the request, hand it to the adapter, and
//! commit what it parsed through the receipt path before answering, so a `200` means the
//! receipts are on disk and the provider may stop retrying.

use super::{ApiError, AppState};
use crate::providers::{WebhookError, WebhookKind, WebhookRequest};
use crate::workers::ReceiptSink;
use axum::extract::{Request, State};
use axum::http::StatusCode;

/// A status callback is a few hundred bytes; anything near this is not one.
const WEBHOOK_MAX_BYTES: usize = 64 * 1024;

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
    let (parts, body) = request.into_parts();
    let max = WEBHOOK_MAX_BYTES.min(state.max_body_bytes());
    let body = axum::body::to_bytes(body, max).await.map_err(|e| {
        if std::error::Error::source(&e).is_some_and(|s| s.is::<http_body_util::LengthLimitError>())
        {
            ApiError::PayloadTooLarge { max }
        } else {
            ApiError::invalid("body", "the request body could not be read")
        }
    })?;
    let path_and_query = parts
        .uri
        .path_and_query()
        .map_or(parts.uri.path(), |p| p.as_str());
    let events = twilio
        .parse_webhook(WebhookRequest {
            kind: WebhookKind::Status,
            path_and_query,
            headers: &parts.headers,
            body: &body,
        })
        .map_err(ApiError::from)?;
    // Inbound messages are not parsed from a status callback; the inbound webhook (a later
    // issue) stores `events.inbound`.
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
