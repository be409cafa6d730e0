//! The opt-out list (SPEC §7): numbers that asked an account to stop. Sends to them are
//! refused (`recipient_opted_out`), campaigns skip them, and a message already queued for a
//! number that opts out fails instead of going out.

use super::extract::{Auth, JsonBody, PathParam, fields};
use super::{ApiError, AppState};
use crate::domain::{AccountId, E164, Region};
use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct OptOutItem {
    pub phone_number: String,
    /// `api`, or the channel a STOP arrived on.
    pub source: String,
    pub created_at: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct OptOutList {
    pub opt_outs: Vec<OptOutItem>,
    /// Pass as `after` for the next page; null on the last page.
    pub next_after: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct ListQuery {
    after: Option<String>,
    limit: Option<usize>,
}

/// The account's opted-out numbers, in number order.
#[utoipa::path(get, path = "/api/messaging/opt-outs", tag = "opt-outs",
    params(("after" = Option<String>, Query), ("limit" = Option<usize>, Query, description = "1-1000, default 100")),
    responses((status = 200, body = OptOutList)), security(("bearer" = [])))]
pub(crate) async fn list_opt_outs(
    State(state): State<AppState>,
    Auth(key): Auth,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<OptOutList>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::invalid("query", e.body_text()))?;
    let limit = query.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::invalid("limit", "must be from 1 to 1000"));
    }
    let rows = state
        .store()
        .opt_outs(&key.account_id, query.after.as_deref().unwrap_or(""), limit)
        .await?;
    let next_after = (rows.len() == limit)
        .then(|| rows.last().map(|r| r.phone_number.clone()))
        .flatten();
    Ok(Json(OptOutList {
        opt_outs: rows
            .into_iter()
            .map(|r| OptOutItem {
                phone_number: r.phone_number,
                source: r.source,
                created_at: r.created_at.to_rfc3339(),
            })
            .collect(),
        next_after,
    }))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub(crate) struct NewOptOut {
    pub phone_number: String,
    /// ISO region for a national-format number; the account's by default.
    pub country: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct OptOutChange {
    pub success: bool,
    pub phone_number: String,
    pub opted_out: bool,
    /// Whether this request changed anything (false: it already was so).
    pub changed: bool,
}

fn number(
    state: &AppState,
    account: &AccountId,
    raw: &str,
    country: Option<&str>,
) -> Result<E164, ApiError> {
    let region = match country {
        None => state.region_of(account),
        Some(c) => Region::parse(c).map_err(|e| ApiError::invalid("country", e.to_string()))?,
    };
    E164::parse(raw, region).map_err(|e| ApiError::phone("phone_number", &e))
}

/// Opt a number out of the account.
#[utoipa::path(post, path = "/api/messaging/opt-outs", tag = "opt-outs", request_body = NewOptOut,
    responses((status = 201, body = OptOutChange), (status = 200, description = "already opted out", body = OptOutChange),
        (status = 400, description = "invalid_phone_number")),
    security(("bearer" = [])))]
pub(crate) async fn add_opt_out(
    State(state): State<AppState>,
    Auth(key): Auth,
    JsonBody(body): JsonBody,
) -> Result<(StatusCode, Json<OptOutChange>), ApiError> {
    let new: NewOptOut = fields(body, "")?;
    let e164 = number(
        &state,
        &key.account_id,
        &new.phone_number,
        new.country.as_deref(),
    )?;
    let changed = state
        .store()
        .add_opt_out(&key.account_id, e164.as_str(), "api")
        .await?;
    let status = if changed {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(OptOutChange {
            success: true,
            phone_number: e164.into_string(),
            opted_out: true,
            changed,
        }),
    ))
}

/// Opt a number back in (`+` may be written `%2B`, or left out for an international number
/// with its country code).
#[utoipa::path(delete, path = "/api/messaging/opt-outs/{phone_number}", tag = "opt-outs",
    responses((status = 200, body = OptOutChange), (status = 404, description = "not_found: the number is not opted out")),
    security(("bearer" = [])))]
pub(crate) async fn remove_opt_out(
    State(state): State<AppState>,
    Auth(key): Auth,
    PathParam(raw): PathParam,
) -> Result<Json<OptOutChange>, ApiError> {
    let e164 = number(&state, &key.account_id, &raw, None)?;
    let changed = state
        .store()
        .remove_opt_out(&key.account_id, e164.as_str())
        .await?;
    if !changed {
        return Err(ApiError::NotFound("opt-out for this number"));
    }
    Ok(Json(OptOutChange {
        success: true,
        phone_number: e164.into_string(),
        opted_out: false,
        changed,
    }))
}
