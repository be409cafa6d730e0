//! The account's webhook (SPEC §7): where Herald posts its events, the secret that signs
//! them, and every delivery with its attempts, which the account can send again.

use super::extract::{Auth, JsonBody, PathParam, fields};
use super::{ApiError, AppState};
use crate::events::{event_id, new_secret, target};
use crate::store::events::{AttemptView, DeliveryView, WebhookEndpoint};
use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct WebhookInput {
    /// An http(s) URL on a public address; Herald POSTs every event of the account to it.
    pub url: String,
}

/// The account's webhook. `secret` only in the answers of `PUT` and `rotate-secret`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct WebhookView {
    pub url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// False when no URL is set, or when it was disabled after failing for too long.
    pub enabled: bool,
    /// Since when every attempt failed (null while it works).
    pub failing_since: Option<String>,
    pub disabled_at: Option<String>,
}

fn view(endpoint: WebhookEndpoint, with_secret: bool) -> WebhookView {
    WebhookView {
        enabled: endpoint.url.is_some() && endpoint.enabled,
        url: endpoint.url,
        secret: with_secret.then_some(endpoint.secret),
        failing_since: endpoint.failing_since.map(|t| t.to_rfc3339()),
        disabled_at: endpoint.disabled_at.map(|t| t.to_rfc3339()),
    }
}

/// Set the account's webhook URL (and enable it). Answers the signing secret.
#[utoipa::path(put, path = "/api/messaging/webhook", tag = "webhook",
    request_body = WebhookInput,
    responses((status = 200, body = WebhookView),
        (status = 400, description = "invalid_field: not an http(s) URL, or one on a loopback, private or link-local address")),
    security(("bearer" = [])))]
pub(crate) async fn put_webhook(
    State(state): State<AppState>,
    Auth(key): Auth,
    JsonBody(body): JsonBody,
) -> Result<Json<WebhookView>, ApiError> {
    let input: WebhookInput = fields(body, "")?;
    let url = super::send::url("url".into(), Some(input.url))?.unwrap_or_default();
    if let Some(why) = target::refusal(&url, state.settings().webhooks.allow_private_targets) {
        return Err(ApiError::invalid("url", why));
    }
    state.store().set_webhook(&key.account_id, url).await?;
    Ok(Json(view(
        state.store().webhook(&key.account_id).await?,
        true,
    )))
}

/// The account's webhook, without its secret.
#[utoipa::path(get, path = "/api/messaging/webhook", tag = "webhook",
    responses((status = 200, body = WebhookView)), security(("bearer" = [])))]
pub(crate) async fn get_webhook(
    State(state): State<AppState>,
    Auth(key): Auth,
) -> Result<Json<WebhookView>, ApiError> {
    Ok(Json(view(
        state.store().webhook(&key.account_id).await?,
        false,
    )))
}

/// Remove the account's webhook URL; what was pending for it is given up. Status callbacks
/// and the event stream go on.
#[utoipa::path(delete, path = "/api/messaging/webhook", tag = "webhook",
    responses((status = 204, description = "removed"),
        (status = 404, description = "not_found: no webhook is set")),
    security(("bearer" = [])))]
pub(crate) async fn delete_webhook(
    State(state): State<AppState>,
    Auth(key): Auth,
) -> Result<StatusCode, ApiError> {
    if state.store().delete_webhook(&key.account_id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound("webhook"))
    }
}

/// Replace the signing secret at once; answers the new one (shown only here). Posts made
/// from now on, retries included, are signed with it.
#[utoipa::path(post, path = "/api/messaging/webhook/rotate-secret", tag = "webhook",
    responses((status = 200, body = WebhookView)), security(("bearer" = [])))]
pub(crate) async fn rotate_secret(
    State(state): State<AppState>,
    Auth(key): Auth,
) -> Result<Json<WebhookView>, ApiError> {
    state
        .store()
        .set_webhook_secret(&key.account_id, new_secret())
        .await?;
    Ok(Json(view(
        state.store().webhook(&key.account_id).await?,
        true,
    )))
}

/// Prefix of a delivery's public id.
const DELIVERY_PREFIX: &str = "dlv_";

fn delivery_id(raw: &str) -> Option<i64> {
    raw.strip_prefix(DELIVERY_PREFIX)?
        .parse()
        .ok()
        .filter(|n: &i64| *n > 0)
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct DeliveryItem {
    pub delivery_id: String,
    pub event_id: String,
    /// `message.status` or `message.inbound`.
    pub event: String,
    pub message_id: String,
    /// `webhook` (the account's URL) or `status_callback` (the message's).
    pub target: &'static str,
    /// `pending`, `delivered` or `failed` (given up; can be retried).
    pub state: String,
    pub attempts: i64,
    pub next_attempt_at: Option<String>,
    pub created_at: String,
    pub finished_at: Option<String>,
}

fn item(d: DeliveryView) -> DeliveryItem {
    DeliveryItem {
        delivery_id: format!("{DELIVERY_PREFIX}{}", d.delivery_id),
        event_id: event_id(d.event_seq),
        event: d.event,
        message_id: d.message_id,
        target: d.target.as_str(),
        state: d.state,
        attempts: d.attempts,
        next_attempt_at: d.next_attempt_at.map(|t| t.to_rfc3339()),
        created_at: d.created_at.to_rfc3339(),
        finished_at: d.finished_at.map(|t| t.to_rfc3339()),
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct DeliveryList {
    pub deliveries: Vec<DeliveryItem>,
    /// Pass as `before` for the next (older) page; null on the last page.
    pub next_before: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct DeliveryQuery {
    state: Option<String>,
    before: Option<String>,
    limit: Option<usize>,
}

/// The account's deliveries, newest first.
#[utoipa::path(get, path = "/api/messaging/webhook/deliveries", tag = "webhook",
    params(("state" = Option<String>, Query, description = "pending, delivered or failed"),
        ("before" = Option<String>, Query, description = "a delivery id: the page after it"),
        ("limit" = Option<usize>, Query, description = "1-1000, default 100")),
    responses((status = 200, body = DeliveryList)), security(("bearer" = [])))]
pub(crate) async fn list_deliveries(
    State(state): State<AppState>,
    Auth(key): Auth,
    query: Result<Query<DeliveryQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<DeliveryList>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::invalid("query", e.body_text()))?;
    let limit = query.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::invalid("limit", "must be from 1 to 1000"));
    }
    if let Some(s) = query.state.as_deref()
        && !matches!(s, "pending" | "delivered" | "failed")
    {
        return Err(ApiError::invalid(
            "state",
            "must be pending, delivered or failed",
        ));
    }
    let before = match query.before.as_deref() {
        None => None,
        Some(raw) => Some(
            delivery_id(raw).ok_or_else(|| ApiError::invalid("before", "must be a delivery id"))?,
        ),
    };
    let rows = state
        .store()
        .webhook_deliveries(&key.account_id, query.state.as_deref(), before, limit)
        .await?;
    let next_before = (rows.len() == limit)
        .then(|| {
            rows.last()
                .map(|d| format!("{DELIVERY_PREFIX}{}", d.delivery_id))
        })
        .flatten();
    Ok(Json(DeliveryList {
        deliveries: rows.into_iter().map(item).collect(),
        next_before,
    }))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct AttemptItem {
    pub attempt: i64,
    pub at: String,
    pub latency_ms: i64,
    /// The receiver's HTTP status; null when none came.
    pub response_status: Option<i64>,
    /// Why there was no 2xx, when there was no answer at all.
    pub error: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct DeliveryDetail {
    #[serde(flatten)]
    pub delivery: DeliveryItem,
    pub attempt_log: Vec<AttemptItem>,
}

fn attempt(a: AttemptView) -> AttemptItem {
    AttemptItem {
        attempt: a.attempt,
        at: a.at.to_rfc3339(),
        latency_ms: a.latency_ms,
        response_status: a.response_status,
        error: a.error,
    }
}

/// One delivery with each attempt: when, how long it took, what the receiver answered.
#[utoipa::path(get, path = "/api/messaging/webhook/deliveries/{delivery_id}", tag = "webhook",
    params(("delivery_id" = String, Path)),
    responses((status = 200, body = DeliveryDetail),
        (status = 404, description = "not_found: no such delivery of this account")),
    security(("bearer" = [])))]
pub(crate) async fn get_delivery(
    State(state): State<AppState>,
    Auth(key): Auth,
    PathParam(raw): PathParam,
) -> Result<Json<DeliveryDetail>, ApiError> {
    let id = delivery_id(&raw).ok_or(ApiError::NotFound("delivery"))?;
    let (delivery, attempts) = state
        .store()
        .webhook_delivery(&key.account_id, id)
        .await?
        .ok_or(ApiError::NotFound("delivery"))?;
    Ok(Json(DeliveryDetail {
        delivery: item(delivery),
        attempt_log: attempts.into_iter().map(attempt).collect(),
    }))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct Redelivery {
    pub delivery_id: String,
    pub state: &'static str,
}

/// Send a delivery again (a failed one, or a delivered one the receiver lost), now.
#[utoipa::path(post, path = "/api/messaging/webhook/deliveries/{delivery_id}/retry", tag = "webhook",
    params(("delivery_id" = String, Path)),
    responses((status = 202, body = Redelivery),
        (status = 404, description = "not_found: no such delivery of this account"),
        (status = 409, description = "invalid_state: it is pending already")),
    security(("bearer" = [])))]
pub(crate) async fn retry_delivery(
    State(state): State<AppState>,
    Auth(key): Auth,
    PathParam(raw): PathParam,
) -> Result<(StatusCode, Json<Redelivery>), ApiError> {
    let id = delivery_id(&raw).ok_or(ApiError::NotFound("delivery"))?;
    if !state.store().redeliver(&key.account_id, id).await? {
        return match state.store().webhook_delivery(&key.account_id, id).await? {
            None => Err(ApiError::NotFound("delivery")),
            Some(_) => Err(ApiError::InvalidState(
                "the delivery is pending already".into(),
            )),
        };
    }
    Ok((
        StatusCode::ACCEPTED,
        Json(Redelivery {
            delivery_id: raw,
            state: "pending",
        }),
    ))
}
