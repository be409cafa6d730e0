//! `POST /validate-phone/` (seed 004): what Herald knows about a number, without sending.

use super::extract::{Auth, JsonBody, fields};
use super::{ApiError, AppState};
use crate::domain::{NumberType, Region, Timestamp, phone};
use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct ValidatePhoneRequest {
    #[schema(example = "(415) 555-0123")]
    pub phone_number: String,
    /// ISO 3166 region for numbers in national format; the account's region by default.
    #[schema(example = "US")]
    pub country: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ValidatePhoneResponse {
    pub is_valid: bool,
    /// E.164, null when invalid.
    pub formatted_number: Option<String>,
    pub can_receive_messages: bool,
    pub carrier_info: Option<String>,
    #[schema(example = "mobile")]
    pub number_type: &'static str,
    pub region: Option<String>,
    pub country_code: Option<u32>,
    /// Unix seconds.
    pub checked_at: f64,
    /// Why the number is invalid (absent when valid).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Validate and normalize a phone number.
#[utoipa::path(
    post,
    path = "/api/messaging/validate-phone/",
    tag = "phone numbers",
    request_body = ValidatePhoneRequest,
    responses(
        (status = 200, description = "Valid or not, with what is known", body = ValidatePhoneResponse),
        (status = 400, description = "missing_field, invalid_field (e.g. an unknown country)"),
        (status = 401, description = "unauthorized"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn validate_phone(
    State(state): State<AppState>,
    Auth(key): Auth,
    JsonBody(body): JsonBody,
) -> Result<Json<ValidatePhoneResponse>, ApiError> {
    let request: ValidatePhoneRequest = fields(body, "")?;
    let region = match request.country.as_deref() {
        None => state.region_of(&key.account_id),
        Some(code) => {
            Region::parse(code).map_err(|e| ApiError::invalid("country", e.to_string()))?
        }
    };
    let checked_at = Timestamp::now().unix_seconds_f64();
    Ok(Json(match phone::inspect(&request.phone_number, region) {
        Ok(info) => ValidatePhoneResponse {
            is_valid: true,
            formatted_number: Some(info.e164.to_string()),
            can_receive_messages: info.number_type.can_receive_messages(),
            carrier_info: None,
            number_type: info.number_type.as_str(),
            region: info.region.map(|r| r.as_str().to_owned()),
            country_code: Some(info.country_code),
            checked_at,
            reason: None,
        },
        Err(e) => ValidatePhoneResponse {
            is_valid: false,
            formatted_number: None,
            can_receive_messages: false,
            carrier_info: None,
            number_type: NumberType::Unknown.as_str(),
            region: None,
            country_code: None,
            checked_at,
            reason: Some(e.to_string()),
        },
    }))
}
