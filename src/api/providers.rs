//! An account's own provider credentials (issue 8): `PUT`, `GET` and `DELETE
//! /api/messaging/providers/{provider}` and the list. Secrets are write-only: they are sealed
//! before they are stored and never answered back; the answer names which are set.

use super::extract::{Auth, JsonBody, PathParam, fields};
use super::{ApiError, AppState};
use crate::config::{TWILIO, WHATSAPP_CLOUD};
use crate::domain::Channel;
use crate::providers::accounts::{
    CredentialError, Credentials, CredentialsView, PublicPart, SenderRate,
};
use crate::store::credentials::SaveOutcome;
use axum::Json;
use axum::extract::State;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

/// Most senders one Twilio account may list.
const MAX_SENDERS: usize = 100;
/// Highest rate a sender or number may be given (Meta's most for a WhatsApp number).
const MAX_PER_SECOND: u32 = 1000;

/// Your own Twilio account: your SMS go out with it instead of the deployment's.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub(crate) struct TwilioCredentialsInput {
    /// `AC` and 32 hex digits.
    pub account_sid: String,
    /// Write-only: stored sealed, never shown again.
    pub auth_token: String,
    /// Your senders, the first the default (a message's `sender_id` may name another).
    pub senders: Vec<SenderInput>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub(crate) struct SenderInput {
    /// A number in E.164, an alphanumeric sender id, or a Messaging Service SID (`MG…`).
    pub from: String,
    /// Messages per second Twilio allows this sender (long code 1, toll-free 3, short code
    /// 100); default 1.
    pub per_second: Option<u32>,
}

/// Your own WhatsApp Business number: your WhatsApp messages go out from it.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub(crate) struct WhatsappCredentialsInput {
    /// The business phone number's id (digits, not the number).
    pub phone_number_id: String,
    /// Write-only: a system user's token with whatsapp_business_messaging.
    pub access_token: String,
    /// Write-only: your Meta app's secret, which signs its webhooks to /webhooks/whatsapp.
    pub app_secret: String,
    /// Write-only: what your app's webhook settings send as the verify token.
    pub verify_token: Option<String>,
    /// Messages per second from the number; default 80.
    pub per_second: Option<u32>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct SenderView {
    pub from: String,
    pub per_second: u32,
}

/// Credentials as they are shown: everything but the secrets.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct ProviderCredentials {
    /// `twilio` or `whatsapp_cloud`.
    pub provider: &'static str,
    /// The channel whose messages it carries: `sms` or `whatsapp`.
    #[schema(value_type = String)]
    pub channel: Channel,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account_sid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub senders: Option<Vec<SenderView>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phone_number_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub per_second: Option<u32>,
    /// Which secrets are stored; their values are never shown.
    pub secrets_set: Vec<&'static str>,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct ProviderCredentialsList {
    pub providers: Vec<ProviderCredentials>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct ProviderCredentialsRemoved {
    pub success: bool,
    pub provider: &'static str,
    pub removed: bool,
}

/// The providers whose credentials you brought.
#[utoipa::path(get, path = "/api/messaging/providers", tag = "providers",
    responses((status = 200, body = ProviderCredentialsList)), security(("bearer" = [])))]
pub(crate) async fn list_providers(
    State(state): State<AppState>,
    Auth(key): Auth,
) -> Result<Json<ProviderCredentialsList>, ApiError> {
    let views = state.accounts().views(&key.account_id).await?;
    Ok(Json(ProviderCredentialsList {
        providers: views.into_iter().map(shown).collect(),
    }))
}

/// Your credentials for one provider (without secrets).
#[utoipa::path(get, path = "/api/messaging/providers/{provider}", tag = "providers",
    responses((status = 200, body = ProviderCredentials),
        (status = 404, description = "not_found: no such provider, or you set no credentials for it")),
    security(("bearer" = [])))]
pub(crate) async fn get_provider(
    State(state): State<AppState>,
    Auth(key): Auth,
    PathParam(provider): PathParam,
) -> Result<Json<ProviderCredentials>, ApiError> {
    let provider = provider_name(&provider)?;
    match state.accounts().view(&key.account_id, provider).await? {
        Some(view) => Ok(Json(shown(view))),
        None => Err(ApiError::NotFound("credentials for this provider")),
    }
}

/// Set (or replace) your credentials for a provider: a Twilio body for `twilio`, a WhatsApp
/// body for `whatsapp_cloud`. Secrets are write-only. Your messages on the provider's
/// channel go out with them from then on, and its webhooks for your account or number are
/// checked with your secrets.
#[utoipa::path(put, path = "/api/messaging/providers/{provider}", tag = "providers",
    request_body(content = inline(CredentialsBody), description = "TwilioCredentialsInput for twilio, WhatsappCredentialsInput for whatsapp_cloud"),
    responses((status = 200, body = ProviderCredentials),
        (status = 400, description = "the body is not this provider's (missing_field, invalid_field)"),
        (status = 404, description = "not_found: no such provider"),
        (status = 409, description = "invalid_state: another account already uses this Twilio account or WhatsApp number"),
        (status = 422, description = "unsupported: this Herald keeps no account credentials (no credentials.key, or no server.public_url for Twilio's callbacks)")),
    security(("bearer" = [])))]
pub(crate) async fn put_provider(
    State(state): State<AppState>,
    Auth(key): Auth,
    PathParam(provider): PathParam,
    JsonBody(body): JsonBody,
) -> Result<Json<ProviderCredentials>, ApiError> {
    let provider = provider_name(&provider)?;
    let credentials = if provider == TWILIO {
        let input: TwilioCredentialsInput = fields(body, "")?;
        if state.settings().server.public_url.is_empty() {
            return Err(ApiError::Unsupported(
                "this Herald has no server.public_url, so Twilio could not send it status callbacks; the operator sets it".into(),
            ));
        }
        twilio(input)?
    } else {
        whatsapp(fields(body, "")?)?
    };
    let (outcome, view) = state.accounts().save(&key.account_id, credentials).await?;
    match (outcome, view) {
        (SaveOutcome::Saved, Some(view)) => Ok(Json(shown(view))),
        (SaveOutcome::TakenByOtherAccount, _) => Err(ApiError::InvalidState(
            "another account already uses this provider account or number; its webhooks could not tell the two apart".into(),
        )),
        // Removed again between the write and the read.
        (SaveOutcome::Saved, None) => Err(ApiError::NotFound("credentials for this provider")),
    }
}

/// Remove your credentials for a provider: your messages go back to the deployment's.
#[utoipa::path(delete, path = "/api/messaging/providers/{provider}", tag = "providers",
    responses((status = 200, body = ProviderCredentialsRemoved),
        (status = 404, description = "not_found: no such provider, or no credentials set for it")),
    security(("bearer" = [])))]
pub(crate) async fn delete_provider(
    State(state): State<AppState>,
    Auth(key): Auth,
    PathParam(provider): PathParam,
) -> Result<Json<ProviderCredentialsRemoved>, ApiError> {
    let provider = provider_name(&provider)?;
    if !state.accounts().delete(&key.account_id, provider).await? {
        return Err(ApiError::NotFound("credentials for this provider"));
    }
    Ok(Json(ProviderCredentialsRemoved {
        success: true,
        provider,
        removed: true,
    }))
}

/// The request body of `put_provider`, for the document only (the path decides which).
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
enum CredentialsBody {
    Twilio(TwilioCredentialsInput),
    Whatsapp(WhatsappCredentialsInput),
}

fn provider_name(raw: &str) -> Result<&'static str, ApiError> {
    match raw {
        TWILIO => Ok(TWILIO),
        WHATSAPP_CLOUD => Ok(WHATSAPP_CLOUD),
        _ => Err(ApiError::NotFound("provider (twilio or whatsapp_cloud)")),
    }
}

fn twilio(input: TwilioCredentialsInput) -> Result<Credentials, ApiError> {
    if !is_sid(&input.account_sid, "AC") {
        return Err(ApiError::invalid(
            "account_sid",
            "must be AC followed by 32 hex digits (Twilio Console > Account info)",
        ));
    }
    let auth_token = token("auth_token", input.auth_token, 128)?;
    if input.senders.is_empty() || input.senders.len() > MAX_SENDERS {
        return Err(ApiError::invalid(
            "senders",
            format!("must list 1 to {MAX_SENDERS} senders"),
        ));
    }
    let mut senders: Vec<SenderRate> = Vec::with_capacity(input.senders.len());
    for (i, s) in input.senders.into_iter().enumerate() {
        if !is_twilio_sender(&s.from) {
            return Err(ApiError::invalid(
                format!("senders[{i}].from"),
                "must be a number in E.164 (+15017122661), an alphanumeric sender id (a letter, then up to 10 letters, digits or spaces) or a Messaging Service SID (MG and 32 hex digits)",
            ));
        }
        if senders.iter().any(|known| known.from == s.from) {
            return Err(ApiError::invalid(
                format!("senders[{i}].from"),
                "is listed twice",
            ));
        }
        let per_second = rate(&format!("senders[{i}].per_second"), s.per_second, 1)?;
        senders.push(SenderRate {
            from: s.from,
            per_second,
        });
    }
    Ok(Credentials::Twilio {
        account_sid: input.account_sid,
        auth_token,
        senders,
    })
}

fn whatsapp(input: WhatsappCredentialsInput) -> Result<Credentials, ApiError> {
    let id = &input.phone_number_id;
    if id.is_empty() || id.len() > 32 || !id.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ApiError::invalid(
            "phone_number_id",
            "must be the phone number's id: 1 to 32 digits (WhatsApp Manager > Phone numbers)",
        ));
    }
    Ok(Credentials::WhatsappCloud {
        access_token: token("access_token", input.access_token, 4096)?,
        app_secret: token("app_secret", input.app_secret, 256)?,
        verify_token: input
            .verify_token
            .map(|t| token("verify_token", t, 256))
            .transpose()?,
        per_second: rate("per_second", input.per_second, 80)?,
        phone_number_id: input.phone_number_id,
    })
}

/// A secret: printable ASCII without spaces, as every provider issues them.
fn token(field: &str, value: String, max: usize) -> Result<SecretString, ApiError> {
    if value.is_empty() || value.len() > max || !value.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ApiError::invalid(
            field,
            format!("must be 1 to {max} printable characters without spaces"),
        ));
    }
    Ok(SecretString::from(value))
}

fn rate(field: &str, value: Option<u32>, default: u32) -> Result<u32, ApiError> {
    let rate = value.unwrap_or(default);
    if !(1..=MAX_PER_SECOND).contains(&rate) {
        return Err(ApiError::invalid(
            field,
            format!("must be from 1 to {MAX_PER_SECOND} messages per second"),
        ));
    }
    Ok(rate)
}

/// `prefix` and 32 hex digits: a Twilio SID.
fn is_sid(value: &str, prefix: &str) -> bool {
    value.len() == 34
        && value.starts_with(prefix)
        && value
            .get(2..)
            .is_some_and(|hex| hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

fn is_twilio_sender(from: &str) -> bool {
    if let Some(digits) = from.strip_prefix('+') {
        return (7..=15).contains(&digits.len())
            && !digits.starts_with('0')
            && digits.bytes().all(|b| b.is_ascii_digit());
    }
    if is_sid(from, "MG") {
        return true;
    }
    let mut chars = from.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && from.len() <= 11
        && chars.all(|c| c.is_ascii_alphanumeric() || c == ' ')
}

fn shown(view: CredentialsView) -> ProviderCredentials {
    let (channel, account_sid, senders, phone_number_id, per_second) = match view.public {
        PublicPart::Twilio {
            account_sid,
            senders,
        } => (
            Channel::Sms,
            Some(account_sid),
            Some(
                senders
                    .into_iter()
                    .map(|s| SenderView {
                        from: s.from,
                        per_second: s.per_second,
                    })
                    .collect(),
            ),
            None,
            None,
        ),
        PublicPart::WhatsappCloud {
            phone_number_id,
            per_second,
        } => (
            Channel::Whatsapp,
            None,
            None,
            Some(phone_number_id),
            Some(per_second),
        ),
    };
    ProviderCredentials {
        provider: view.provider,
        channel,
        account_sid,
        senders,
        phone_number_id,
        per_second,
        secrets_set: view.secrets,
        created_at: view.created_at.to_rfc3339(),
        updated_at: view.updated_at.to_rfc3339(),
    }
}

impl From<CredentialError> for ApiError {
    fn from(e: CredentialError) -> Self {
        match e {
            CredentialError::NoKey => ApiError::Unsupported(e.to_string()),
            CredentialError::Store(e) => e.into(),
            // Never a secret in these: they say which key or what failed to parse.
            other => ApiError::Unexpected(anyhow::Error::new(other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn twilio_senders_are_numbers_alphanumeric_ids_or_messaging_services() {
        for ok in [
            "+15017122661",
            "ACME",
            "Acme Shop 1",
            "MG0123456789abcdef0123456789abcdef",
        ] {
            assert!(is_twilio_sender(ok), "{ok}");
        }
        for bad in [
            "",
            "+0123456789",
            "+12",
            "15017122661",
            "Acme Shop 12",
            "1STBANK",
            "ACME!",
            "+1501712266x",
        ] {
            assert!(!is_twilio_sender(bad), "{bad}");
        }
    }
}
