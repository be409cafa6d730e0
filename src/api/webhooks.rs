//! Provider webhooks (SPEC §5): no API key; each provider proves itself by signature, which
//! its adapter checks. These handlers only read the request, hand it to the adapter, and
//! commit what it parsed through the receipt path before answering, so a `200` means the
//! receipts are on disk and the provider may stop retrying.
//!
//! Whose secret checks the signature: the request names a provider account (Twilio's
//! `AccountSid`) or number (WhatsApp's `phone_number_id`). One that an account brought
//! itself is checked with that account's secrets; anything else with the deployment's. The
//! name is read before the signature is checked only to pick the key: a request that names
//! another account than the one whose key signed it fails the check.

use super::{ApiError, AppState};
use crate::domain::{AccountId, Channel, E164};
use crate::inbound::Incoming;
use crate::providers::{Provider, WebhookError, WebhookEvents, WebhookKind, WebhookRequest};
use crate::providers::{twilio, whatsapp};
use crate::workers::ReceiptSink;
use axum::body::{Body, Bytes};
use axum::extract::{Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::collections::HashMap;
use std::sync::Arc;

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
    let (parts, body) = request.into_parts();
    let body = read_body(&state, body, WEBHOOK_MAX_BYTES).await?;
    let (_, twilio) = twilio_signer(&state, &body).await?;
    let events = verified(twilio.as_ref(), WebhookKind::Status, &parts, &body)?;
    // Inbound messages are not parsed from a status callback; the inbound webhook (a later
    // issue) stores `events.inbound`.
    ReceiptSink::new(state.store().clone(), state.metrics().clone())
        .deliver(events.receipts)
        .await?;
    Ok(StatusCode::OK)
}

/// The adapter whose auth token signs this webhook: the account's own (and the account) when
/// the request names an `AccountSid` an account brought, else the deployment's.
async fn twilio_signer(state: &AppState, body: &[u8]) -> Result<Signer, ApiError> {
    let named = serde_urlencoded::from_bytes::<Vec<(String, String)>>(body)
        .ok()
        .and_then(|fields| {
            fields
                .into_iter()
                .find_map(|(name, value)| (name == "AccountSid").then_some(value))
        });
    if let Some(sid) = named
        && sid != state.settings().providers.twilio.account_sid
        && let Some((account, own)) = state.accounts().by_webhook_key(twilio::NAME, &sid).await?
    {
        return Ok((Some(account), own));
    }
    // Without an auth token no signature can be checked, so none is accepted.
    match state.twilio_adapter() {
        Some(deployment) => Ok((None, deployment)),
        None => Err(ApiError::InvalidSignature(
            "this Herald has no Twilio credentials to check the signature with",
        )),
    }
}

/// Who signs a webhook: the account that brought the provider account (None: the
/// deployment's), and the adapter that checks it.
type Signer = (Option<AccountId>, Arc<dyn Provider>);

/// `POST /webhooks/twilio/inbound`: an incoming SMS, form-encoded and signed like a status
/// callback. Stored (once per `MessageSid`) before the answer, an empty TwiML response (no
/// reply from Twilio itself; STOP and HELP are answered by Herald).
pub(super) async fn twilio_inbound(
    State(state): State<AppState>,
    request: Request,
) -> Result<Response, ApiError> {
    let (parts, body) = request.into_parts();
    let body = read_body(&state, body, WEBHOOK_MAX_BYTES).await?;
    let (account, twilio) = twilio_signer(&state, &body).await?;
    let events = verified(twilio.as_ref(), WebhookKind::Inbound, &parts, &body)?;
    let incoming = events
        .inbound
        .into_iter()
        .map(|m| Incoming::from_provider(normalized(&state, m), Channel::Sms, account.clone()))
        .collect();
    state.receiver().receive(incoming).await?;
    Ok((
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/xml; charset=utf-8"),
        )],
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response></Response>",
    )
        .into_response())
}

/// A provider's sender in E.164 where it reads as a number (Twilio sends `+1…`; Meta digits
/// without the `+`), so a reply finds the thread its number's sends are in.
fn normalized(
    state: &AppState,
    mut m: crate::providers::InboundMessage,
) -> crate::providers::InboundMessage {
    if let Ok(e164) = E164::parse(&m.from, state.settings().messaging.default_region) {
        m.from = e164.into_string();
    }
    m
}

/// Has `provider` check a webhook request's signature and parse it; nothing is applied yet.
fn verified(
    provider: &dyn Provider,
    kind: WebhookKind,
    parts: &axum::http::request::Parts,
    body: &[u8],
) -> Result<WebhookEvents, ApiError> {
    let path_and_query = parts
        .uri
        .path_and_query()
        .map_or(parts.uri.path(), |p| p.as_str());
    provider
        .parse_webhook(WebhookRequest {
            kind,
            path_and_query,
            headers: &parts.headers,
            body,
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
    let field = |name: &str| query.get(name).map(String::as_str);
    let (mode, token, challenge) = (
        field("hub.mode"),
        field("hub.verify_token"),
        field("hub.challenge"),
    );
    let deployment = state
        .whatsapp()
        .and_then(|p| p.verify_subscription(mode, token, challenge));
    // Or an account's own app, which subscribed with its own verify token.
    let challenge = match deployment {
        Some(c) => Some(c),
        None if mode == Some("subscribe") => match token {
            Some(token) if state.accounts().verify_token_known(token).await? => challenge,
            _ => None,
        },
        None => None,
    };
    match challenge {
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
            "hub.mode must be `subscribe` and hub.verify_token must be providers.whatsapp_cloud.verify_token or an account's own (with a hub.challenge to echo)",
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
    let (parts, body) = request.into_parts();
    let body = read_body(&state, body, WHATSAPP_WEBHOOK_MAX_BYTES).await?;
    let (account, provider) = whatsapp_signer(&state, &body).await?;
    let events = verified(provider.as_ref(), WebhookKind::Status, &parts, &body)?;
    let incoming = events
        .inbound
        .into_iter()
        .map(|m| Incoming::from_provider(normalized(&state, m), Channel::Whatsapp, account.clone()))
        .collect();
    state.receiver().receive(incoming).await?;
    ReceiptSink::new(state.store().clone(), state.metrics().clone())
        .deliver(events.receipts)
        .await?;
    Ok(StatusCode::OK)
}

/// The adapter whose app secret signs this notification: the account's own when it concerns
/// a phone number an account brought, else the deployment's.
async fn whatsapp_signer(state: &AppState, body: &[u8]) -> Result<Signer, ApiError> {
    let number = whatsapp::notified_phone_number_id(body);
    if let Some(number) = number
        && number != state.settings().providers.whatsapp_cloud.phone_number_id
        && let Some((account, own)) = state
            .accounts()
            .by_webhook_key(whatsapp::NAME, &number)
            .await?
    {
        return Ok((Some(account), own));
    }
    // Without the app secret no signature can be checked, so none is accepted.
    match state.whatsapp_adapter() {
        Some(p) => Ok((None, p)),
        None => Err(ApiError::InvalidSignature(
            "this Herald has no WhatsApp app secret to check the signature with",
        )),
    }
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
