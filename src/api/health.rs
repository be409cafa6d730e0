//! `/healthz` (the process answers), `/readyz` (and its database does), `/metrics`.

use super::AppState;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use secrecy::ExposeSecret;
use serde_json::json;
use subtle::ConstantTimeEq;

pub(crate) async fn healthz() -> &'static str {
    "ok"
}

/// Ready when the database answers and has not refused a write in the last few seconds.
/// Costs one read and no write: the writer remembers its last refusal, and forgets it by
/// itself a few seconds after writes stop failing.
pub(crate) async fn readyz(State(state): State<AppState>) -> Response {
    let reason = match (state.store().ping().await, state.store().write_refusal()) {
        (Err(e), _) => {
            tracing::warn!(error = %e, "not ready: the database does not answer");
            "the database does not answer".to_owned()
        }
        (Ok(()), Some(refusal)) => format!("the database refuses writes: {}", refusal.reason()),
        (Ok(()), None) => return ready(&state),
    };
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(json!({"ready": false, "reason": reason})),
    )
        .into_response()
}

/// Ready; and, when Redis is configured, whether it answers. A Redis that does not answer
/// does not make Herald unready: it goes on at its local share of each limit, and says so.
fn ready(state: &AppState) -> Response {
    let body = match state.shared_limits() {
        None => json!({"ready": true}),
        Some(shared) => match shared.down_since() {
            None => json!({"ready": true, "redis": "up"}),
            Some(since) => json!({
                "ready": true,
                "redis": "unreachable",
                "redis_unreachable_since": chrono::DateTime::<chrono::Utc>::from(since)
                    .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                "limits": format!(
                    "this process keeps to {} of each limit until Redis answers",
                    shared.local_share()
                ),
            }),
        },
    };
    (StatusCode::OK, Json(body)).into_response()
}

pub(crate) async fn metrics(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let token = state.settings().server.metrics_token.expose_secret();
    if !token.is_empty() {
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default();
        if !bool::from(given.as_bytes().ct_eq(token.as_bytes())) {
            return super::ApiError::Unauthorized.into_response();
        }
    }
    match state.store().queue_depth().await {
        Ok(depth) => {
            for (priority, waiting) in depth {
                state.metrics().set_queue_depth(priority, waiting);
            }
        }
        Err(e) => tracing::warn!(error = %e, "could not read the queue depth for /metrics"),
    }
    match state.store().pending_receipts().await {
        Ok(held) => state.metrics().set_pending_receipts(held),
        Err(e) => tracing::warn!(error = %e, "could not count held receipts for /metrics"),
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics().render(),
    )
        .into_response()
}
