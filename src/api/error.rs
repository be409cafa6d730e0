//! The one error shape every endpoint answers with:
//! `{"success": false, "error": "<sentence>", "code": "<snake_case>", "field": "<name>"}`.
//!
//! Domain and store errors acquire their HTTP meaning here and nowhere else; the SPEC's codes
//! are spelled once, in [`ApiError::code`].

use crate::domain::{PhoneError, TextError};
use crate::store::{StoreError, WriteRefusal};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    InvalidJson(String),
    /// Says what to send instead.
    #[error("{0}")]
    UnsupportedMediaType(&'static str),
    #[error("the field `{field}` is required")]
    MissingField { field: String },
    #[error("{reason}")]
    InvalidField { field: String, reason: String },
    #[error("{reason}")]
    InvalidPhoneNumber { field: String, reason: String },
    #[error("the recipient opted out of messages from this account (replied STOP)")]
    RecipientOptedOut { field: String },
    #[error("{reason}")]
    TemplateError { field: String, reason: String },
    /// Meta's rule, checked before the message is taken rather than failing at Meta.
    #[error(
        "WhatsApp takes free-form messages only within 24 hours of the customer's last message to you; send an approved template with `whatsapp_template` instead"
    )]
    WhatsappWindowClosed { field: String },
    #[error("none of the campaign's recipients can be messaged")]
    NoValidRecipients,
    #[error("{0}")]
    InvalidState(String),
    #[error("send `Authorization: Bearer <api key>` with a valid API key")]
    Unauthorized,
    /// A provider webhook whose signature is missing or wrong; nothing was changed.
    #[error("{0}")]
    InvalidSignature(&'static str),
    #[error("the account's available balance does not cover this message")]
    InsufficientBalance,
    #[error("no such {0}")]
    NotFound(&'static str),
    /// The path exists, the method does not (the `Allow` header lists those that do).
    #[error("this endpoint does not answer {0}; the Allow header lists the methods it does")]
    MethodNotAllowed(String),
    #[error("this Idempotency-Key was already used with a different request body")]
    IdempotencyConflict,
    #[error("at most {max} messages may be sent in one request")]
    BatchTooLarge { max: usize },
    #[error("the request body is larger than {max} bytes")]
    PayloadTooLarge { max: usize },
    #[error("too many requests; retry after {} s", retry_after_secs(*.retry_after))]
    RateLimited { retry_after: Duration },
    #[error("the account's daily message limit is used up; it resets at midnight UTC")]
    DailyLimitExceeded { retry_after: Duration },
    #[error("{0}")]
    Unsupported(String),
    /// The database refuses writes; the reason is for operators (`/readyz`, the logs).
    #[error(
        "the service cannot store anything right now; nothing of this request was kept, retry after {} s",
        retry_after_secs(unavailable_for(*.0))
    )]
    ServiceUnavailable(WriteRefusal),
    #[error("something went wrong on our side; the request may be retried")]
    Unexpected(#[from] anyhow::Error),
}

/// How long a client should wait before retrying a write the database refused: a lock
/// held by another process is usually released within a second; a full disk or a failing
/// device needs someone to act, and clients retrying every second would only add load.
fn unavailable_for(refusal: WriteRefusal) -> Duration {
    match refusal {
        WriteRefusal::Busy => Duration::from_secs(1),
        WriteRefusal::DiskFull | WriteRefusal::Io | WriteRefusal::ReadOnly => {
            Duration::from_secs(5)
        }
    }
}

fn retry_after_secs(d: Duration) -> u64 {
    // Retry-After is whole seconds; never tell a client 0 when it must wait.
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    success: bool,
    error: String,
    code: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<&'a str>,
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::InvalidJson(_)
            | Self::MissingField { .. }
            | Self::InvalidField { .. }
            | Self::InvalidPhoneNumber { .. }
            | Self::RecipientOptedOut { .. } => StatusCode::BAD_REQUEST,
            Self::TemplateError { .. }
            | Self::NoValidRecipients
            | Self::WhatsappWindowClosed { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Self::InvalidState(_) => StatusCode::CONFLICT,
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::InvalidSignature(_) => StatusCode::FORBIDDEN,
            Self::InsufficientBalance => StatusCode::PAYMENT_REQUIRED,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            Self::IdempotencyConflict => StatusCode::CONFLICT,
            Self::BatchTooLarge { .. } | Self::PayloadTooLarge { .. } => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            Self::Unsupported(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::RateLimited { .. } | Self::DailyLimitExceeded { .. } => {
                StatusCode::TOO_MANY_REQUESTS
            }
            Self::ServiceUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Unexpected(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidJson(_) => "invalid_json",
            Self::UnsupportedMediaType(_) => "unsupported_media_type",
            Self::MissingField { .. } => "missing_field",
            Self::InvalidField { .. } => "invalid_field",
            Self::InvalidPhoneNumber { .. } => "invalid_phone_number",
            Self::RecipientOptedOut { .. } => "recipient_opted_out",
            Self::TemplateError { .. } => "template_error",
            Self::NoValidRecipients => "no_valid_recipients",
            Self::WhatsappWindowClosed { .. } => "whatsapp_window_closed",
            Self::InvalidState(_) => "invalid_state",
            Self::Unauthorized => "unauthorized",
            Self::InvalidSignature(_) => "invalid_signature",
            Self::InsufficientBalance => "insufficient_balance",
            Self::NotFound(_) => "not_found",
            Self::MethodNotAllowed(_) => "method_not_allowed",
            Self::IdempotencyConflict => "idempotency_conflict",
            Self::BatchTooLarge { .. } => "batch_too_large",
            Self::PayloadTooLarge { .. } => "payload_too_large",
            Self::Unsupported(_) => "unsupported",
            Self::RateLimited { .. } => "rate_limited",
            Self::DailyLimitExceeded { .. } => "daily_limit_exceeded",
            Self::ServiceUnavailable(_) => "service_unavailable",
            Self::Unexpected(_) => "internal_error",
        }
    }

    pub fn field(&self) -> Option<&str> {
        match self {
            Self::MissingField { field }
            | Self::InvalidField { field, .. }
            | Self::InvalidPhoneNumber { field, .. }
            | Self::RecipientOptedOut { field, .. }
            | Self::TemplateError { field, .. }
            | Self::WhatsappWindowClosed { field } => Some(field),
            _ => None,
        }
    }

    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::InvalidField {
            field: field.into(),
            reason: reason.into(),
        }
    }

    pub fn phone(field: impl Into<String>, e: &PhoneError) -> Self {
        Self::InvalidPhoneNumber {
            field: field.into(),
            reason: e.to_string(),
        }
    }

    pub fn text(field: impl Into<String>, e: &TextError) -> Self {
        Self::invalid(field, e.to_string())
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::RateLimited { retry_after } | Self::DailyLimitExceeded { retry_after } => {
                Some(*retry_after)
            }
            Self::ServiceUnavailable(refusal) => Some(unavailable_for(*refusal)),
            _ => None,
        }
    }

    /// The body as JSON text (also what idempotent replays store).
    pub fn body(&self) -> String {
        serde_json::to_string(&ErrorBody {
            success: false,
            error: self.to_string(),
            code: self.code(),
            field: self.field(),
        })
        .unwrap_or_default()
    }

    /// Headers that go with this error (`Retry-After`, `WWW-Authenticate`).
    pub fn decorate(&self, response: &mut Response) {
        if let Some(wait) = self.retry_after()
            && let Ok(value) = HeaderValue::from_str(&retry_after_secs(wait).to_string())
        {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        if matches!(self, Self::Unauthorized) {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
    }

    fn log(&self) {
        if let Self::Unexpected(e) = self {
            // The whole chain, once, here; the client gets a fixed sentence.
            tracing::error!(error = format!("{e:#}"), "request failed");
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e.refusal() {
            // Logged by the writer, once per episode rather than once per request.
            Some(refusal) => Self::ServiceUnavailable(refusal),
            None => Self::Unexpected(anyhow::Error::new(e)),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        self.log();
        let mut response = (
            self.status(),
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            self.body(),
        )
            .into_response();
        self.decorate(&mut response);
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_has_the_one_shape() {
        let e = ApiError::InvalidField {
            field: "priority".into(),
            reason: "unknown priority `asap`".into(),
        };
        let body: serde_json::Value = serde_json::from_str(&e.body()).unwrap_or_default();
        assert_eq!(body["success"], false);
        assert_eq!(body["code"], "invalid_field");
        assert_eq!(body["field"], "priority");
        assert_eq!(body["error"], "unknown priority `asap`");
        assert_eq!(e.status(), StatusCode::BAD_REQUEST);
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_secs(2)), 2);
    }
}
