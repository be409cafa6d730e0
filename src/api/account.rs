//! `GET /account/balance/` (seed 004).

use super::extract::Auth;
use super::{ApiError, AppState};
use crate::store::Balance;
use axum::Json;
use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct BalanceResponse {
    /// Available: the balance after the cost of accepted, not yet sent messages is reserved.
    #[schema(example = 999.9925)]
    pub balance: f64,
    #[schema(example = "USD")]
    pub currency: String,
    /// Messages handed to a provider today (UTC).
    pub messages_sent_today: i64,
    pub messages_limit_daily: i64,
    /// How many more messages may be accepted today.
    pub messages_remaining: i64,
}

/// The account's balance and today's usage.
#[utoipa::path(
    get,
    path = "/api/messaging/account/balance/",
    tag = "account",
    responses((status = 200, body = BalanceResponse), (status = 401, description = "unauthorized")),
    security(("bearer" = []))
)]
pub(crate) async fn balance(
    State(state): State<AppState>,
    Auth(key): Auth,
) -> Result<Json<BalanceResponse>, ApiError> {
    let b = state.store().balance(&key.account_id).await?;
    Ok(Json(BalanceResponse::from(b)))
}

impl From<Balance> for BalanceResponse {
    fn from(b: Balance) -> Self {
        BalanceResponse {
            balance: b.available.to_f64(),
            currency: b.currency,
            messages_sent_today: b.sent_today,
            messages_limit_daily: b.daily_limit,
            // The daily limit counts accepted messages (queued ones included), so this is
            // what can still be accepted today.
            messages_remaining: (b.daily_limit - b.accepted_today).max(0),
        }
    }
}
